package status

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	helmv1 "github.com/k3s-io/helm-controller/pkg/apis/helm.cattle.io/v1"
	helmfake "github.com/k3s-io/helm-controller/pkg/generated/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"github.com/perchedge/perch/manifests/render"
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

// failedProxy is the API server's answer when the service proxy cannot
// reach a Prometheus pod.
type failedProxy struct{}

func (failedProxy) DoRaw(context.Context) ([]byte, error) {
	return nil, apierrors.NewServiceUnavailable(`no endpoints available for service "` + PrometheusService + `"`)
}

func (failedProxy) Stream(context.Context) (io.ReadCloser, error) {
	return nil, errors.New("no stream")
}

// With monitoring deployed, status that cannot ask Prometheus cannot say
// that no alert fires: the report is not healthy, in text and JSON.
func TestCollectPrometheusUnreachable(t *testing.T) {
	c := newCluster(t, render.Monitoring)
	c.release(render.Monitoring, kpsNS, 1, kpsManifest)
	c.operatorReady()
	c.prometheus(1)
	c.add(readyPod(kpsNS, promPod, ownedBy("apps/v1", "StatefulSet", promSts), nil),
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "edge-01"}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: PrometheusService, Namespace: MonitoringNamespace}})
	c.cs.AddProxyReactor("services", func(k8stesting.Action) (bool, rest.ResponseWrapper, error) {
		return true, failedProxy{}, nil
	})
	hc := helmfake.NewSimpleClientset(&helmv1.HelmChart{
		ObjectMeta: metav1.ObjectMeta{Name: render.Monitoring, Namespace: render.HelmChartNamespace, Labels: map[string]string{render.LabelManagedBy: render.ManagedBy}},
		Spec:       helmv1.HelmChartSpec{TargetNamespace: kpsNS, Chart: "https://%{KUBERNETES_API}%/static/charts/kube-prometheus-stack-65.1.1.tgz"}})

	for _, tc := range []struct {
		name string
		src  Sources
	}{
		{"through the API server", Sources{Kube: c.cs, Helm: hc}},
		{"at a URL", Sources{Kube: c.cs, Helm: hc, PrometheusURL: closedURL(t)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := Collect(context.Background(), tc.src)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Apps) != 1 || rep.Apps[0].State != AppReady {
				t.Fatalf("apps %+v: want perch-monitoring ready", rep.Apps)
			}
			if rep.Healthy || strings.Join(rep.Reasons, ", ") != "Prometheus not reachable" {
				t.Fatalf("healthy=%v reasons=%q, want not healthy: Prometheus not reachable", rep.Healthy, rep.Reasons)
			}
			var text, js bytes.Buffer
			if err := WriteText(&text, rep); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(text.String(), "Alerts    Prometheus not reachable: ") || !strings.HasSuffix(text.String(), "Status    not healthy: Prometheus not reachable\n") {
				t.Errorf("text:\n%s", text.String())
			}
			if err := WriteJSON(&js, rep); err != nil {
				t.Fatal(err)
			}
			var back struct {
				Alerts  Alerts `json:"alerts"`
				Healthy bool   `json:"healthy"`
			}
			if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Alerts.Available || back.Healthy || !strings.HasPrefix(back.Alerts.Note, "Prometheus not reachable: ") {
				t.Errorf("JSON (%v):\n%s", err, js.String())
			}
		})
	}
}

func closedURL(t *testing.T) string {
	srv := prometheus(t, http.StatusOK, nil)
	srv.Close()
	return srv.URL
}
