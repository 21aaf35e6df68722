package status

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// testdata/alerts.json was recorded from Prometheus 2.42 (Debian) running
// testdata/alerts-rules.yaml: Watchdog, a critical and a warning alert
// firing, and a warning still pending.
func recordedAlerts(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/alerts.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// prometheus serves body at /api/v1/alerts as Prometheus does.
func prometheus(t *testing.T, status int, body []byte) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/alerts" || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestAlertsFromRecordedPrometheus(t *testing.T) {
	srv := prometheus(t, http.StatusOK, recordedAlerts(t))
	activeAt, _ := time.Parse(time.RFC3339Nano, "2026-11-28T19:52:03.700828331Z")
	now := activeAt.Add(12 * time.Minute)

	a := alertsFromURL(context.Background(), srv.Client(), srv.URL+"/", now)
	if !a.Available || a.Note != "" {
		t.Fatalf("available=%v note=%q, want available", a.Available, a.Note)
	}
	var got []string
	for _, al := range a.Firing {
		got = append(got, al.Severity+" "+al.Name+" "+al.For)
	}
	// Watchdog fires by design and the pending alert has not fired
	want := []string{"critical PerchGPUXidErrors 12m", "warning PerchStreamStalled 12m"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Fatalf("firing = %q, want %q", got, want)
	}
	x := a.Firing[0]
	if x.Summary != "GPU 0 reported Xid 79 (fallen off the bus)" || x.Labels["gpu"] != "0" || !x.Since.Equal(activeAt) {
		t.Errorf("first alert = %+v", x)
	}
	if n := a.critical(); n != 1 {
		t.Errorf("critical() = %d, want 1", n)
	}
}

func TestAlertsUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		note   string
	}{
		{"server error", http.StatusServiceUnavailable, "Service Unavailable", "Prometheus not reachable: /api/v1/alerts: 503 Service Unavailable"},
		{"not prometheus", http.StatusOK, "<html>hello</html>", "Prometheus not reachable: /api/v1/alerts: not a Prometheus answer"},
		{"prometheus error", http.StatusOK, `{"status":"error","errorType":"internal","error":"rule manager not ready"}`, "Prometheus not reachable: /api/v1/alerts: error rule manager not ready"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := prometheus(t, tc.status, []byte(tc.body))
			a := alertsFromURL(context.Background(), srv.Client(), srv.URL, time.Now())
			if a.Available || !strings.HasPrefix(a.Note, tc.note) || a.Firing == nil || len(a.Firing) != 0 {
				t.Errorf("got available=%v note=%q firing=%v, want note starting %q", a.Available, a.Note, a.Firing, tc.note)
			}
		})
	}
	t.Run("nothing listening", func(t *testing.T) {
		srv := prometheus(t, http.StatusOK, nil)
		url := srv.URL
		srv.Close()
		a := alertsFromURL(context.Background(), nil, url, time.Now())
		if a.Available || !strings.HasPrefix(a.Note, "Prometheus not reachable: ") {
			t.Errorf("got available=%v note=%q", a.Available, a.Note)
		}
	})
}

func TestAlertsNoneFiring(t *testing.T) {
	srv := prometheus(t, http.StatusOK, []byte(`{"status":"success","data":{"alerts":[]}}`))
	a := alertsFromURL(context.Background(), srv.Client(), srv.URL, time.Now())
	if !a.Available || len(a.Firing) != 0 {
		t.Errorf("got %+v, want available and none firing", a)
	}
}

// Collect with a Prometheus URL and no cluster still reports the alerts:
// status on a node whose API is down can say what Prometheus saw.
func TestCollectWithoutCluster(t *testing.T) {
	srv := prometheus(t, http.StatusOK, recordedAlerts(t))
	rep, err := Collect(context.Background(), Sources{PrometheusURL: srv.URL, HTTP: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Cluster.Reachable || !rep.Alerts.Available || len(rep.Alerts.Firing) != 2 {
		t.Fatalf("cluster=%+v alerts=%+v", rep.Cluster, rep.Alerts)
	}
	want := []string{"cluster not reachable", "1 critical alert firing"}
	if strings.Join(rep.Reasons, ", ") != strings.Join(want, ", ") || rep.Healthy {
		t.Errorf("healthy=%v reasons=%q, want %q", rep.Healthy, rep.Reasons, want)
	}
}
