package status

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/perchedge/perch/manifests/render"
)

// Where perch-monitoring's Prometheus is: the chart names its service
// after the release, which is the app's name.
const (
	MonitoringNamespace = "monitoring"
	PrometheusService   = render.Monitoring + "-prometheus"
	PrometheusPort      = "9090"
)

// Alerts are the alerts Prometheus fires, when it can be asked.
type Alerts struct {
	Available bool    `json:"available"`
	Note      string  `json:"note,omitempty"` // why not available
	Firing    []Alert `json:"firing"`
}

// Alert is one firing alert.
type Alert struct {
	Name        string            `json:"name"`
	Severity    string            `json:"severity,omitempty"`
	Summary     string            `json:"summary,omitempty"`
	Since       time.Time         `json:"since"`
	For         string            `json:"for"` // how long it has fired, as of the report
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

func (a Alerts) critical() int {
	n := 0
	for _, al := range a.Firing {
		if al.Severity == "critical" {
			n++
		}
	}
	return n
}

// alwaysFiring are alerts that fire by design, to prove the alerting
// pipeline works (kube-prometheus-stack's, which sites that came from it
// often keep in their own rules); listing them would teach people to
// ignore the list.
var alwaysFiring = []string{"Watchdog", "InfoInhibitor"}

// alertsViaProxy asks perch-monitoring's Prometheus through the API
// server's service proxy. monitored says Perch deployed it, so a missing
// service is a fault, not a choice.
func alertsViaProxy(ctx context.Context, cs kubernetes.Interface, monitored bool, now time.Time) Alerts {
	out := Alerts{Firing: []Alert{}}
	_, err := cs.CoreV1().Services(MonitoringNamespace).Get(ctx, PrometheusService, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err) && monitored:
		out.Note = "Prometheus not reachable: no service " + MonitoringNamespace + "/" + PrometheusService + " (yet)"
		return out
	case apierrors.IsNotFound(err):
		out.Note = "not available (monitoring not deployed)"
		return out
	}
	if err != nil {
		out.Note = "Prometheus not reachable: " + err.Error()
		return out
	}
	body, err := cs.CoreV1().Services(MonitoringNamespace).ProxyGet("http", PrometheusService, PrometheusPort, "api/v1/alerts", nil).DoRaw(ctx)
	if err != nil {
		out.Note = "Prometheus not reachable: " + proxyError(err, body)
		return out
	}
	return parsed(body, now)
}

// proxyError keeps the useful line of a proxy failure: the API server
// wraps a down Prometheus in a long status object.
func proxyError(err error, body []byte) string {
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		if m := se.Status().Message; m != "" {
			return m
		}
	}
	if len(body) > 0 && len(body) < 200 {
		return strings.TrimSpace(string(body))
	}
	return err.Error()
}

// alertsFromURL asks Prometheus at base directly.
func alertsFromURL(ctx context.Context, c *http.Client, base string, now time.Time) Alerts {
	out := Alerts{Firing: []Alert{}}
	if c == nil {
		c = &http.Client{Timeout: 5 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/api/v1/alerts", nil)
	if err != nil {
		out.Note = "Prometheus not reachable: " + err.Error()
		return out
	}
	resp, err := c.Do(req)
	if err != nil {
		out.Note = "Prometheus not reachable: " + err.Error()
		return out
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		out.Note = "Prometheus not reachable: " + err.Error()
		return out
	}
	if resp.StatusCode != http.StatusOK {
		out.Note = "Prometheus not reachable: /api/v1/alerts: " + resp.Status
		return out
	}
	return parsed(body, now)
}

func parsed(body []byte, now time.Time) Alerts {
	firing, err := ParseAlerts(body, now)
	if err != nil {
		return Alerts{Firing: []Alert{}, Note: "Prometheus not reachable: " + err.Error()}
	}
	return Alerts{Available: true, Firing: firing}
}

// ParseAlerts reads a Prometheus /api/v1/alerts response and returns the
// firing alerts, most severe and oldest first. Pending alerts have not
// fired yet, so they are left out.
func ParseAlerts(body []byte, now time.Time) ([]Alert, error) {
	var resp struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Alerts []struct {
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
				State       string            `json:"state"`
				ActiveAt    time.Time         `json:"activeAt"`
			} `json:"alerts"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("/api/v1/alerts: not a Prometheus answer: %w", err)
	}
	if resp.Status != "success" {
		return nil, fmt.Errorf("/api/v1/alerts: %s %s", resp.Status, resp.Error)
	}
	out := []Alert{}
	for _, a := range resp.Data.Alerts {
		name := a.Labels["alertname"]
		if a.State != "firing" || slices.Contains(alwaysFiring, name) {
			continue
		}
		out = append(out, Alert{
			Name:        name,
			Severity:    a.Labels["severity"],
			Summary:     cmp.Or(a.Annotations["summary"], a.Annotations["description"], a.Annotations["message"]),
			Since:       a.ActiveAt,
			For:         age(now.Sub(a.ActiveAt)),
			Labels:      a.Labels,
			Annotations: a.Annotations,
		})
	}
	slices.SortStableFunc(out, func(x, y Alert) int {
		return cmp.Or(cmp.Compare(severityRank(x.Severity), severityRank(y.Severity)), x.Since.Compare(y.Since), strings.Compare(x.Name, y.Name))
	})
	return out, nil
}

func severityRank(s string) int {
	switch s {
	case "critical":
		return 0
	case "warning":
		return 1
	}
	return 2
}

// age is a duration as people read it on a console: 45s, 12m, 3h, 2d.
func age(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
