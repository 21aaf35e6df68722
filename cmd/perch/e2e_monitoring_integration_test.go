//go:build integration

package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/perchedge/perch/installer/apps"
	"github.com/perchedge/perch/installer/host"
	"github.com/perchedge/perch/installer/k3s"
	"github.com/perchedge/perch/installer/registry"
	"github.com/perchedge/perch/installer/status"
)

// The monitoring checks of the e2e tier, against the appliance's live
// Prometheus and a central store it remote-writes to.

const (
	monitoringFiles = "../../manifests/charts/perch-monitoring/files"
	// e2eScrape is testdata/e2e.yaml's monitoring.scrapeInterval, which
	// is also the rule evaluation interval.
	e2eScrape = 15 * time.Second
	// centralIP is the gateway of the sandbox CNI's bridge (scripts/sandbox:
	// cni0, 10.42.0.0/24): an address of this test's own network that the
	// appliance's pods reach, where the host's loopback is not theirs.
	centralIP = "10.42.0.1"
)

// central is the store fifty sites would forward to: a second Prometheus
// (the one the bundle carries, built from its module) on the host with
// --web.enable-remote-write-receiver, reached as a real site reaches its
// store, over TLS with a private CA and basic auth.
type central struct {
	bin, dir string
	addr     string // host:port
	password string
	client   *http.Client
	cmd      *exec.Cmd
}

func newCentral(t *testing.T, bin string) *central {
	t.Helper()
	c := &central{bin: bin, dir: t.TempDir(), addr: net.JoinHostPort(centralIP, fmt.Sprint(freePort(t)))}
	secret := make([]byte, 16)
	_, err := rand.Read(secret)
	must(t, err)
	c.password = "central-" + hex.EncodeToString(secret)
	hash, err := bcrypt.GenerateFromPassword([]byte(c.password), bcrypt.MinCost)
	must(t, err)

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "perch-e2e central CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	must(t, err)
	ca, err := x509.ParseCertificate(caDER)
	must(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "central"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP(centralIP)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	must(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	must(t, err)

	write := func(name string, data []byte, mode os.FileMode) {
		must(t, os.WriteFile(filepath.Join(c.dir, name), data, mode))
	}
	write("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)
	write("tls.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}), 0o644)
	write("tls.key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	write("password", []byte(c.password+"\n"), 0o600)
	write("web.yml", []byte(fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  perch-e2e: %q\n",
		filepath.Join(c.dir, "tls.crt"), filepath.Join(c.dir, "tls.key"), hash)), 0o600)
	write("prometheus.yml", []byte("global:\n  scrape_interval: 1m\n"), 0o644)

	pool := x509.NewCertPool()
	pool.AddCert(ca)
	c.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	t.Cleanup(c.stop)
	return c
}

// remoteWrite is the monitoring.remoteWrite entry that forwards to c.
func (c *central) remoteWrite() string {
	return fmt.Sprintf(`  remoteWrite:
    - name: central
      url: https://%s/api/v1/write
      username: perch-e2e
      passwordFile: %s
      caFile: %s
`, c.addr, filepath.Join(c.dir, "password"), filepath.Join(c.dir, "ca.pem"))
}

// start runs the store on its data dir (kept across restarts) and waits
// until it is ready.
func (c *central) start(t *testing.T) {
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(c.dir, "central.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	must(t, err)
	defer logf.Close()
	c.cmd = exec.Command(c.bin, "--config.file="+filepath.Join(c.dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(c.dir, "data"), "--web.listen-address="+c.addr,
		"--web.config.file="+filepath.Join(c.dir, "web.yml"), "--web.enable-remote-write-receiver")
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	must(t, c.cmd.Start())
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if _, err := c.get(context.Background(), "/-/ready", nil); err == nil {
			return
		}
		time.Sleep(time.Second)
	}
	log, _ := os.ReadFile(filepath.Join(c.dir, "central.log"))
	t.Fatalf("central Prometheus on %s not ready within 1m:\n%s", c.addr, log)
}

func (c *central) stop() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	c.cmd.Wait()
	c.cmd = nil
}

func (c *central) get(ctx context.Context, path string, q url.Values) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+c.addr+path+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth("perch-e2e", c.password)
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s: %s", path, resp.Status, body)
	}
	return body, nil
}

// sampleTimes are the timestamps of every sample the store holds of
// selector over the last span, all series merged, in order.
func (c *central) sampleTimes(ctx context.Context, selector string, span time.Duration) ([]time.Time, error) {
	body, err := c.get(ctx, "/api/v1/query", url.Values{"query": {fmt.Sprintf("%s[%ds]", selector, int(span.Seconds())+1)}})
	if err != nil {
		return nil, err
	}
	return parseSampleTimes(body)
}

// siteSampleTimes is sampleTimes of the site's own Prometheus.
func siteSampleTimes(ctx context.Context, cs *kubernetes.Clientset, selector string, span time.Duration) ([]time.Time, error) {
	body, err := prometheusGet(ctx, cs, "api/v1/query", map[string]string{"query": fmt.Sprintf("%s[%ds]", selector, int(span.Seconds())+1)})
	if err != nil {
		return nil, err
	}
	return parseSampleTimes(body)
}

// parseSampleTimes reads a range vector's sample times, all series
// merged, in order.
func parseSampleTimes(body []byte) ([]time.Time, error) {
	var resp struct {
		Data struct {
			Result []struct {
				Values [][2]any `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, err
	}
	var out []time.Time
	for _, r := range resp.Data.Result {
		for _, v := range r.Values {
			f, _ := v[0].(float64)
			out = append(out, time.UnixMilli(int64(f*1000)))
		}
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return slices.CompactFunc(out, func(a, b time.Time) bool { return a.Equal(b) }), nil
}

// waitForwarded waits until the store holds a sample of the site's
// Prometheus from the last minute, and returns when it did.
func (c *central) waitForwarded(ctx context.Context, t *testing.T, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var lastErr error
	for time.Since(start) < within {
		ts, err := c.sampleTimes(ctx, `up{job="prometheus",site="e2e"}`, time.Minute)
		if err == nil && len(ts) > 0 && time.Since(ts[len(ts)-1]) < 45*time.Second {
			return time.Since(start)
		}
		lastErr = err
		sleepCtx(ctx, 2*time.Second)
	}
	log, _ := os.ReadFile(filepath.Join(c.dir, "central.log"))
	t.Fatalf("the central store got no recent sample of the site within %s (last error %v); its log:\n%s", within, lastErr, log)
	return 0
}

// longestGap is the longest stretch without a sample within [from, to],
// the window's edges included, so samples missing at either end count.
func longestGap(ts []time.Time, from, to time.Time) (time.Duration, int) {
	var gap time.Duration
	prev, n := from, 0
	for _, at := range ts {
		if at.Before(from) || at.After(to) {
			continue
		}
		gap = max(gap, at.Sub(prev))
		prev = at
		n++
	}
	return max(gap, to.Sub(prev)), n
}

// firing reads the appliance's firing alerts as perch status does.
func firing(ctx context.Context, cs *kubernetes.Clientset) ([]status.Alert, error) {
	body, err := prometheusGet(ctx, cs, "api/v1/alerts", nil)
	if err != nil {
		return nil, err
	}
	return status.ParseAlerts(body, time.Now())
}

func hasAlert(alerts []status.Alert, name, stream string) bool {
	return slices.ContainsFunc(alerts, func(a status.Alert) bool { return a.Name == name && a.Labels["name"] == stream })
}

// ruleFile is the appliance's alert rules, as promtool tests them.
type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert string `json:"alert"`
			Expr  string `json:"expr"`
			For   string `json:"for"`
		} `json:"rules"`
	} `json:"groups"`
}

func readRules(t *testing.T) ruleFile {
	t.Helper()
	var rf ruleFile
	must(t, yaml.Unmarshal([]byte(readFile(t, filepath.Join(monitoringFiles, "perch-alerts.yaml"))), &rf))
	if len(rf.Groups) == 0 {
		t.Fatal("perch-alerts.yaml has no rule groups")
	}
	return rf
}

func ruleFor(t *testing.T, rf ruleFile, alert string) time.Duration {
	t.Helper()
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == alert {
				d, err := time.ParseDuration(r.For)
				must(t, err)
				return d
			}
		}
	}
	t.Fatalf("no rule %s in perch-alerts.yaml", alert)
	return 0
}

// selector is a series selector of a parsed PromQL expression.
type selector struct {
	Name     string `json:"name"`
	Matchers []struct {
		Type  string `json:"type"`
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"matchers"`
}

// selectors asks the live Prometheus to parse expr (/api/v1/parse_query)
// and returns every series selector in it, so the check reads PromQL as
// Prometheus does rather than by pattern.
func selectors(ctx context.Context, cs *kubernetes.Clientset, expr string) ([]selector, error) {
	body, err := prometheusGet(ctx, cs, "api/v1/parse_query", map[string]string{"query": expr})
	if err != nil {
		return nil, fmt.Errorf("parse %q: %v", expr, err)
	}
	var resp struct {
		Data any `json:"data"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, err
	}
	var out []selector
	var walk func(any)
	walk = func(n any) {
		switch n := n.(type) {
		case map[string]any:
			if typ := n["type"]; typ == "vectorSelector" || typ == "matrixSelector" {
				raw, _ := json.Marshal(n)
				var s selector
				json.Unmarshal(raw, &s)
				out = append(out, s)
			}
			for _, v := range n {
				walk(v)
			}
		case []any:
			for _, v := range n {
				walk(v)
			}
		}
	}
	walk(resp.Data)
	return out, nil
}

// seriesLabels are the label names the series of metric name carried over
// the last hour, or nil when there were none.
func seriesLabels(ctx context.Context, cs *kubernetes.Clientset, name string) (map[string]bool, error) {
	body, err := prometheusGet(ctx, cs, "api/v1/series", map[string]string{
		"match[]": fmt.Sprintf("{__name__=%q}", name), "start": fmt.Sprint(time.Now().Add(-time.Hour).Unix())})
	if err != nil {
		return nil, err
	}
	var resp struct {
		Data []map[string]string `json:"data"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, err
	}
	if len(resp.Data) == 0 {
		return nil, nil
	}
	labels := map[string]bool{}
	for _, s := range resp.Data {
		for l := range s {
			labels[l] = true
		}
	}
	return labels, nil
}

// gpuOnly are the series a GPU-less node cannot have: dcgm-exporter runs
// on GPU nodes only.
var gpuOnly = regexp.MustCompile(`^DCGM_`)

// checkRuleSeries fails for every rule that reads a metric no scrape
// produced, or a label its series never carry: such a rule never fires.
func checkRuleSeries(ctx context.Context, t *testing.T, cs *kubernetes.Clientset, rf ruleFile) {
	t.Helper()
	checked := map[string]bool{}
	n := 0
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			sels, err := selectors(ctx, cs, r.Expr)
			if err != nil {
				t.Errorf("rule %s: %v", r.Alert, err)
				continue
			}
			for _, s := range sels {
				if gpuOnly.MatchString(s.Name) || checked[s.Name] {
					continue
				}
				checked[s.Name] = true
				labels, err := seriesLabels(ctx, cs, s.Name)
				switch {
				case err != nil:
					t.Errorf("rule %s: series %s: %v", r.Alert, s.Name, err)
				case labels == nil:
					t.Errorf("rule %s reads %s, which no scrape produces", r.Alert, s.Name)
				default:
					n++
					for _, m := range s.Matchers {
						if m.Name != "__name__" && (m.Type == "=" || m.Type == "=~") && m.Value != "" && !labels[m.Name] {
							t.Errorf("rule %s matches %s on label %s, which its series never carry", r.Alert, s.Name, m.Name)
						}
					}
				}
			}
		}
	}
	t.Logf("rules: the %d metrics the alert rules read are all scraped (DCGM's excepted: no GPU here)", n)
}

// panelExceptions are dashboard queries that rightly return nothing here,
// each with why.
var panelExceptions = map[string]string{
	"sum(webrtc_sessions)": "MediaMTX has a webrtc_sessions series per open WebRTC session; nobody watches over WebRTC here (and the gateway stand-in serves none)",
}

// grafanaVars stand in for what Grafana substitutes before a query.
var grafanaVars = strings.NewReplacer("$__rate_interval", "1m", "$__interval", "15s",
	"${node}", ".+", "$node", ".+", "${stream}", ".+", "$stream", ".+")

// checkDashboards runs every panel query of Perch's dashboards against the
// live Prometheus: a query with a wrong metric or label returns nothing.
func checkDashboards(ctx context.Context, t *testing.T, cs *kubernetes.Clientset) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(monitoringFiles, "dashboards", "*.json"))
	must(t, err)
	if len(files) == 0 {
		t.Fatal("no dashboards found")
	}
	labelValues := regexp.MustCompile(`^label_values\((\w+),\s*(\w+)\)$`)
	answered, skipped := 0, 0
	for _, f := range files {
		var d struct {
			Panels     []dashPanel `json:"panels"`
			Templating struct {
				List []struct {
					Name  string `json:"name"`
					Query any    `json:"query"`
				} `json:"list"`
			} `json:"templating"`
		}
		must(t, json.Unmarshal([]byte(readFile(t, f)), &d))
		name := filepath.Base(f)
		for _, v := range d.Templating.List {
			q, ok := v.Query.(map[string]any)
			if !ok {
				continue
			}
			m := labelValues.FindStringSubmatch(fmt.Sprint(q["query"]))
			if m == nil || gpuOnly.MatchString(m[1]) {
				continue
			}
			if labels, err := seriesLabels(ctx, cs, m[1]); err != nil || !labels[m[2]] {
				t.Errorf("%s: variable %s: %s has no label %s (%v)", name, v.Name, m[1], m[2], err)
			}
		}
		for _, p := range flattenPanels(d.Panels) {
			for _, tg := range p.Targets {
				if tg.Expr == "" {
					continue
				}
				if gpuOnly.MatchString(tg.Expr) || strings.Contains(tg.Expr, "DCGM_") || panelExceptions[tg.Expr] != "" {
					skipped++
					continue
				}
				q := grafanaVars.Replace(tg.Expr)
				v, err := promQuery(ctx, cs, q, time.Time{})
				if err != nil || len(v) == 0 {
					t.Errorf("%s: panel %q: %s returns no data (%v)", name, p.Title, q, err)
					continue
				}
				answered++
			}
		}
	}
	t.Logf("dashboards: %d panel queries answered by the live Prometheus, %d excepted (GPU panels on a GPU-less node, WebRTC)", answered, skipped)
}

type dashPanel struct {
	Title   string      `json:"title"`
	Panels  []dashPanel `json:"panels"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

func flattenPanels(ps []dashPanel) []dashPanel {
	var out []dashPanel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, flattenPanels(p.Panels)...)
	}
	return out
}

// outageAndStreamDown cuts the central store and stops the camera at
// once, the two 3-minute waits of the tier run side by side: PerchStreamDown
// must fire within its for plus two scrape intervals, perch status exit 1
// listing it, and resolve once the camera is back (exit 0); the store,
// back after 3 minutes, must hold the site's samples over the cut with no
// gap. It returns the restarted camera.
func outageAndStreamDown(ctx context.Context, t *testing.T, s *sandbox, cs *kubernetes.Clientset, cam *camera, c *central, rf ruleFile) *camera {
	t.Helper()
	const cut = 3 * time.Minute
	fireWithin := ruleFor(t, rf, "PerchStreamDown") + 2*e2eScrape
	cutAt := time.Now()
	c.stop()
	cam.stop()
	var restoredAt, firedAt time.Time
	for firedAt.IsZero() && time.Since(cutAt) < fireWithin+time.Minute {
		if restoredAt.IsZero() && time.Since(cutAt) >= cut {
			c.start(t)
			restoredAt = time.Now()
		}
		if a, err := firing(ctx, cs); err == nil && hasAlert(a, "PerchStreamDown", "cam1") {
			firedAt = time.Now()
		}
		sleepCtx(ctx, 2*time.Second)
	}
	if firedAt.IsZero() {
		t.Fatalf("PerchStreamDown did not fire within %s of the camera stopping", fireWithin+time.Minute)
	}
	// polled every 2s: allow that much past the bound
	t.Logf("timing: PerchStreamDown fired %s after the camera stopped (bound: for + 2 scrape intervals = %s)",
		firedAt.Sub(cutAt).Round(time.Second), fireWithin)
	if firedAt.Sub(cutAt) > fireWithin+3*time.Second {
		t.Errorf("PerchStreamDown fired %s after the camera stopped, later than its for plus two scrape intervals (%s)", firedAt.Sub(cutAt).Round(time.Second), fireWithin)
	}
	st, code := s.perch("status", "--config", s.cfg, "--root", s.root)
	t.Logf("perch status with the camera down (exit %d):\n%s", code, st)
	if code != 1 || !strings.Contains(st, "PerchStreamDown") || !strings.Contains(st, "Camera stream cam1 is down.") {
		t.Errorf("perch status with PerchStreamDown firing: exit %d, want 1 and the alert listed:\n%s", code, st)
	}
	js, code := s.perch("status", "--config", s.cfg, "--root", s.root, "--output", "json")
	var rep status.Report
	if err := json.Unmarshal([]byte(js), &rep); err != nil || code != 1 {
		t.Errorf("perch status --output json: exit %d, %v:\n%s", code, err, js)
	} else if i := slices.IndexFunc(rep.Alerts.Firing, func(a status.Alert) bool { return a.Name == "PerchStreamDown" }); i < 0 ||
		rep.Alerts.Firing[i].Severity != "critical" || rep.Alerts.Firing[i].Since.IsZero() || rep.Healthy {
		t.Errorf("perch status --output json: want PerchStreamDown critical with its start, unhealthy: %+v", rep.Alerts)
	}
	for restoredAt.IsZero() || time.Since(cutAt) < cut {
		if restoredAt.IsZero() && time.Since(cutAt) >= cut {
			c.start(t)
			restoredAt = time.Now()
		}
		sleepCtx(ctx, time.Second)
	}

	// the camera comes back: the alert resolves and status is healthy
	cam = startCamera(t, s.root)
	back := time.Now()
	resolved := false
	for !resolved && time.Since(back) < 3*time.Minute {
		sleepCtx(ctx, 2*time.Second)
		a, err := firing(ctx, cs)
		resolved = err == nil && !hasAlert(a, "PerchStreamDown", "cam1")
	}
	if !resolved {
		t.Errorf("PerchStreamDown still firing 3m after the camera came back")
	}
	t.Logf("timing: PerchStreamDown resolved %s after the camera restarted", time.Since(back).Round(time.Second))
	for time.Since(back) < 4*time.Minute {
		if st, code = s.perch("status", "--config", s.cfg, "--root", s.root); code == 0 {
			break
		}
		sleepCtx(ctx, 5*time.Second)
	}
	if code != 0 {
		t.Errorf("perch status exited %d after the camera came back:\n%s", code, st)
	}

	// the store caught up over the cut: every scrape of the outage is there
	c.waitForwarded(ctx, t, 3*time.Minute)
	from, to := cutAt.Add(-time.Minute), restoredAt.Add(time.Minute)
	for time.Now().Before(to.Add(e2eScrape)) {
		sleepCtx(ctx, time.Second)
	}
	c.waitForwarded(ctx, t, 2*time.Minute)
	ts, err := c.sampleTimes(ctx, `up{job="prometheus",site="e2e"}`, time.Since(from)+time.Minute)
	must(t, err)
	gap, n := longestGap(ts, from, to)
	// what the site itself scraped over the window: a scrape the site
	// missed (a loaded machine) is not one remote write lost
	site, err := siteSampleTimes(ctx, cs, `up{job="prometheus"}`, time.Since(from)+time.Minute)
	must(t, err)
	siteGap, siteN := longestGap(site, from, to)
	t.Logf("remote write: central store down %s (%s to %s); it holds %d samples of the site's up{job=\"prometheus\"} from a minute before to a minute after, the site %d; longest gap %s, the site's %s (scrape interval %s)",
		restoredAt.Sub(cutAt).Round(time.Second), cutAt.Format("15:04:05"), restoredAt.Format("15:04:05"), n, siteN, gap.Round(time.Millisecond), siteGap.Round(time.Millisecond), e2eScrape)
	held := map[int64]bool{}
	for _, at := range ts {
		held[at.UnixMilli()] = true
	}
	var lost []string
	for _, at := range site {
		if !at.Before(from) && !at.After(to) && !held[at.UnixMilli()] {
			lost = append(lost, at.Format("15:04:05.000"))
		}
	}
	if len(lost) > 0 {
		t.Errorf("the central store lacks %d of the site's %d samples over the outage: %v", len(lost), siteN, lost)
	}
	if gap > max(2*e2eScrape, siteGap) {
		t.Errorf("the central store has a gap of %s over the %s outage (samples %v)", gap.Round(time.Second), cut, ts)
	}
	return cam
}

// assertSecretAbsent fails when secret appears in any output or in a file
// under root other than where it must be: the Secret manifest, and k3s's
// and the kubelet's own copies of the Secret.
func assertSecretAbsent(t *testing.T, root, secret string, outputs ...string) {
	t.Helper()
	for i, out := range outputs {
		if strings.Contains(out, secret) {
			t.Errorf("output %d contains the remote-write password", i)
		}
	}
	allowed := []string{"var/lib/rancher/k3s/server/manifests/perch-monitoring-secrets.yaml",
		"var/lib/rancher/k3s/server/db/", "var/lib/rancher/k3s/agent/", "var/lib/kubelet/"}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		if slices.ContainsFunc(allowed, func(a string) bool { return strings.HasPrefix(rel, a) }) {
			return nil
		}
		if info, err := d.Info(); err != nil || info.Size() > 64<<20 {
			return nil
		}
		if data, err := os.ReadFile(p); err == nil && strings.Contains(string(data), secret) {
			t.Errorf("%s contains the remote-write password", rel)
		}
		return nil
	})
	fi, err := os.Stat(filepath.Join(root, allowed[0]))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: %v, want mode 0600", allowed[0], err)
	}
}

// powerCycle does to the node what a power cut does: the k3s and registry
// services stop, every container with them, and what the pods made in the
// kernel goes (k3s.CleanupNode, which uninstall runs too). What is on
// disk stays, for the next perch install to start from.
func (s *sandbox) powerCycle(ctx context.Context) {
	s.t.Helper()
	h, err := host.Open(s.root)
	must(s.t, err)
	in, err := host.NewInit(h, host.InitNone, perchBin)
	must(s.t, err)
	for _, svc := range []string{"k3s", registry.ServiceName, apps.ControllerService} {
		must(s.t, in.Stop(ctx, svc))
	}
	done, err := k3s.CleanupNode(ctx)
	must(s.t, err)
	s.t.Logf("power cut: k3s, the registry and the controller stopped; %s", strings.Join(done, "; "))
}
