package status

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// EtcdSource is how a server sees its cluster's embedded etcd: k3s's
// /db/info for the members (which k3s answers to local clients), and each
// member's metrics listener for its health and whether it leads.
type EtcdSource struct {
	// Info reads /db/info; nil on a node without embedded etcd.
	Info func(context.Context) ([]byte, error)
	// MetricsURL is the base URL of a member's metrics listener, from the
	// host of its client URL (k3s with etcd-expose-metrics: http://HOST:2381).
	MetricsURL func(host string) string
	HTTP       *http.Client
}

// Etcd is the embedded etcd of a cluster of servers.
type Etcd struct {
	Members []EtcdMember `json:"members"`
	// Leader names the member that leads; empty when none does.
	Leader string `json:"leader,omitempty"`
	Error  string `json:"error,omitempty"`
	// Note says why members' health is not known (no metrics listener to
	// ask); the members are then not judged.
	Note string `json:"note,omitempty"`
}

// EtcdMember is one server's etcd.
type EtcdMember struct {
	Name    string `json:"name"`
	Address string `json:"address"` // the host of its client URL
	Learner bool   `json:"learner,omitempty"`
	Healthy bool   `json:"healthy"`
	Leader  bool   `json:"leader"`
	Error   string `json:"error,omitempty"`
}

// Bounds on what etcd and k3s answer: a member list is a few KiB, a
// member's metrics some hundreds of KiB.
const (
	maxEtcdInfo    = 1 << 20
	maxEtcdMetrics = 8 << 20
	maxEtcdMembers = 16
)

func collectEtcd(ctx context.Context, src EtcdSource) *Etcd {
	if src.Info == nil {
		return nil
	}
	e := &Etcd{Members: []EtcdMember{}}
	raw, err := src.Info(ctx)
	if err != nil {
		e.Error = "read the member list (/db/info): " + err.Error()
		return e
	}
	if len(raw) > maxEtcdInfo {
		e.Error = fmt.Sprintf("/db/info: over %d bytes", maxEtcdInfo)
		return e
	}
	var info struct {
		Members []struct {
			Name       string   `json:"name"`
			ClientURLs []string `json:"clientURLs"`
			IsLearner  bool     `json:"isLearner"`
		} `json:"members"`
	}
	if err := json.Unmarshal(raw, &info); err != nil {
		e.Error = "/db/info: " + err.Error()
		return e
	}
	if len(info.Members) > maxEtcdMembers {
		e.Error = fmt.Sprintf("/db/info lists %d members; no cluster has more than %d", len(info.Members), maxEtcdMembers)
		return e
	}
	hc := cmp.Or(src.HTTP, &http.Client{Timeout: 3 * time.Second})
	for _, m := range info.Members {
		em := EtcdMember{Name: m.Name, Learner: m.IsLearner}
		if len(m.ClientURLs) > 0 {
			if u, err := url.Parse(m.ClientURLs[0]); err == nil && net.ParseIP(u.Hostname()) != nil {
				em.Address = u.Hostname()
			}
		}
		switch {
		case em.Name == "":
			// a member added but not started yet has no name
			em.Name, em.Error = "(not started)", "joined the member list but never started"
		case em.Address == "":
			em.Error = "no client address"
		case src.MetricsURL == nil:
			e.Note = "members' health and leader need etcd's metrics listener, which Perch exposes with monitoring.enabled"
		default:
			em.Healthy, em.Leader, em.Error = memberHealth(ctx, hc, src.MetricsURL(em.Address))
		}
		if em.Leader {
			e.Leader = em.Name
		}
		e.Members = append(e.Members, em)
	}
	slices.SortFunc(e.Members, func(a, b EtcdMember) int { return strings.Compare(a.Name, b.Name) })
	return e
}

// memberHealth asks a member's metrics listener for /health and for
// etcd_server_is_leader.
func memberHealth(ctx context.Context, hc *http.Client, base string) (healthy, leader bool, why string) {
	body, err := getBounded(ctx, hc, base+"/health", 64<<10)
	if err != nil {
		return false, false, err.Error()
	}
	var h struct {
		Health string `json:"health"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(body, &h); err != nil || h.Health != "true" {
		return false, false, "unhealthy: " + cmp.Or(h.Reason, strings.TrimSpace(string(body)))
	}
	metrics, err := getBounded(ctx, hc, base+"/metrics", maxEtcdMetrics)
	if err != nil {
		return true, false, "metrics: " + err.Error()
	}
	sc := bufio.NewScanner(strings.NewReader(string(metrics)))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "etcd_server_is_leader "); ok {
			return true, strings.TrimSpace(v) == "1", ""
		}
	}
	return true, false, "its metrics have no etcd_server_is_leader"
}

func getBounded(ctx context.Context, hc *http.Client, u string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return nil, ue.Err
		}
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("answer over %d bytes", limit)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
		return nil, fmt.Errorf("%s", resp.Status)
	}
	return body, nil
}

// judgeEtcd are the reasons etcd makes the cluster unhealthy.
func judgeEtcd(e *Etcd) []string {
	if e == nil {
		return nil
	}
	if e.Error != "" {
		return []string{"etcd members unknown"}
	}
	if e.Note != "" {
		return nil
	}
	var why []string
	for _, m := range e.Members {
		if !m.Healthy {
			why = append(why, "etcd member "+m.Name+" not healthy")
		}
	}
	if e.Leader == "" {
		why = append(why, "etcd has no leader")
	}
	return why
}

func (p *printer) etcd(r *Report) {
	e := r.Etcd
	if e == nil {
		return
	}
	if e.Error != "" {
		p.section("Etcd", e.Error)
		return
	}
	healthy := 0
	for _, m := range e.Members {
		if m.Healthy {
			healthy++
		}
	}
	head := plural(len(e.Members), "member")
	switch {
	case e.Note != "":
		head += "; " + e.Note
	case e.Leader != "":
		head += fmt.Sprintf(", %d healthy, leader %s", healthy, e.Leader)
	default:
		head += fmt.Sprintf(", %d healthy, no leader", healthy)
	}
	p.section("Etcd", head)
	nameW, addrW := 0, 1
	for _, m := range e.Members {
		nameW, addrW = max(nameW, len(m.Name)), max(addrW, len(m.Address))
	}
	for _, m := range e.Members {
		state := "healthy"
		switch {
		case e.Note != "":
			state = ""
		case !m.Healthy:
			state = "not healthy: " + m.Error
		case m.Leader:
			state = "healthy, leader"
		}
		if m.Learner {
			state = strings.TrimPrefix(state+", learner", ", ")
		}
		// columns, as the apps' lines; a long error wraps under its own
		lead := fmt.Sprintf("  %-*s  %-*s  ", nameW, m.Name, addrW, cmp.Or(m.Address, "-"))
		p.wrapped(lead, strings.Repeat(" ", len(lead)), state)
	}
}
