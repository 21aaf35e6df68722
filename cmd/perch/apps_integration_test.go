//go:build integration

package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	helmv1 "github.com/k3s-io/helm-controller/pkg/apis/helm.cattle.io/v1"
	helmclient "github.com/k3s-io/helm-controller/pkg/generated/clientset/versioned"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
)

// TestIntegrationAppsDeployOnlyWhatChanged deploys the pipeline app through
// k3s's auto-deploy directory and reads its HelmChart back from the API;
// a changed camera URL rewrites only the pipeline's manifest (its chart
// archive is untouched) and k3s updates the HelmChart; an app the config
// drops has its HelmChart deleted, which deleting the file alone would not.
func TestIntegrationAppsDeployOnlyWhatChanged(t *testing.T) {
	s := newSandbox(t)
	base := readFile(t, s.cfg)
	withStreams := func(urlA string) string {
		return base + "pipeline:\n  enabled: true\n  streams:\n    - {name: cam-a, url: '" + urlA + "'}\n    - {name: cam-b, url: 'rtsp://192.0.2.11/live'}\n"
	}
	must(t, os.WriteFile(s.cfg, []byte(withStreams("rtsp://192.0.2.10/live")), 0o644))
	out, _ := s.install()
	if !strings.Contains(out, "[apps] wrote /var/lib/rancher/k3s/server/manifests/perch-analytics.yaml") || !strings.Contains(out, "[apps-ready] warning: this server runs no pods") {
		t.Errorf("install output does not show the apps step and why it does not wait:\n%s", out)
	}
	manifest := filepath.Join(s.root, "var/lib/rancher/k3s/server/manifests/perch-analytics.yaml")
	charts, _ := filepath.Glob(filepath.Join(s.root, "var/lib/rancher/k3s/server/static/charts/perch-analytics-*.tgz"))
	if len(charts) != 1 {
		t.Fatalf("chart archives: %v", charts)
	}
	if fi, err := os.Stat(manifest); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("manifest %s: %v (camera URLs may hold passwords: want 0600)", manifest, err)
	}

	hc := s.helmClient()
	hcWith := func(want string) *helmv1.HelmChart {
		t.Helper()
		var last *helmv1.HelmChart
		deadline := time.Now().Add(60 * time.Second) // k3s polls server/manifests
		for time.Now().Before(deadline) {
			h, err := hc.HelmV1().HelmCharts("kube-system").Get(context.Background(), "perch-analytics", metav1.GetOptions{})
			if err == nil && strings.Contains(h.Spec.ValuesContent, want) {
				return h
			}
			last = h
			time.Sleep(500 * time.Millisecond)
		}
		t.Fatalf("HelmChart perch-analytics never had %q: %+v", want, last)
		return nil
	}
	h := hcWith("rtsp://192.0.2.10/live")
	if h.Spec.Chart != "https://%{KUBERNETES_API}%/static/charts/"+filepath.Base(charts[0]) || h.Spec.ChartContent != "" || h.Spec.TargetNamespace != "perch" {
		t.Errorf("HelmChart spec: chart %q, chartContent %d bytes, targetNamespace %q", h.Spec.Chart, len(h.Spec.ChartContent), h.Spec.TargetNamespace)
	}
	if h.Labels["app.kubernetes.io/managed-by"] != "perch" {
		t.Errorf("HelmChart labels %v", h.Labels)
	}

	// perch status sees the app, the registry and the cluster; the app
	// cannot be ready on a server that runs no pods, so it is not healthy
	st, code := s.perch("status", "--config", s.cfg, "--root", s.root, "-o", "json")
	var rep struct {
		Cluster  struct{ Reachable bool }
		Apps     []struct{ Name, Namespace, State string }
		Registry struct{ Healthy bool }
		Healthy  bool
	}
	if err := json.Unmarshal([]byte(st), &rep); err != nil {
		t.Fatalf("perch status -o json (exit %d): %v\n%s", code, err, st)
	}
	if code != 1 || rep.Healthy || !rep.Cluster.Reachable || !rep.Registry.Healthy || len(rep.Apps) != 1 ||
		rep.Apps[0].Name != "perch-analytics" || rep.Apps[0].Namespace != "perch" || rep.Apps[0].State == "ready" {
		t.Errorf("perch status (exit %d): %+v\n%s", code, rep, st)
	}

	chartBefore := statOf(t, charts[0])
	must(t, os.WriteFile(s.cfg, []byte(withStreams("rtsp://192.0.2.99/live")), 0o644))
	plan, _ := s.perch("plan", "--config", s.cfg, "--root", s.root, "--init", "none")
	if !strings.Contains(plan, "~ update file /var/lib/rancher/k3s/server/manifests/perch-analytics.yaml") || !strings.Contains(plan, "Plan: 0 to create, 1 to update, 0 to delete") {
		t.Errorf("plan after one camera URL changed:\n%s", plan)
	}
	s.install()
	hcWith("rtsp://192.0.2.99/live")
	if statOf(t, charts[0]) != chartBefore {
		t.Error("the chart archive was rewritten though the chart did not change")
	}

	must(t, os.WriteFile(s.cfg, []byte(base+"pipeline:\n  enabled: false\n"), 0o644))
	plan, _ = s.perch("plan", "--config", s.cfg, "--root", s.root, "--init", "none")
	for _, want := range []string{"- delete file /var/lib/rancher/k3s/server/manifests/perch-analytics.yaml", "- delete app perch-analytics"} {
		if !strings.Contains(plan, want) {
			t.Errorf("plan after dropping the pipeline lacks %q:\n%s", want, plan)
		}
	}
	s.install()
	if _, err := os.Stat(manifest); !os.IsNotExist(err) {
		t.Errorf("manifest still there: %v", err)
	}
	h, err := hc.HelmV1().HelmCharts("kube-system").Get(context.Background(), "perch-analytics", metav1.GetOptions{})
	if err == nil && h.DeletionTimestamp == nil {
		t.Error("HelmChart perch-analytics is still there and not being deleted")
	} else if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	if plan, _ = s.perch("plan", "--config", s.cfg, "--root", s.root, "--init", "none"); !strings.Contains(plan, "No changes") {
		t.Errorf("not converged after dropping the pipeline:\n%s", plan)
	}
}

type fileStat struct {
	size  int64
	mtime time.Time
}

func statOf(t *testing.T, p string) fileStat {
	t.Helper()
	fi, err := os.Stat(p)
	must(t, err)
	return fileStat{fi.Size(), fi.ModTime()}
}

func (s *sandbox) helmClient() helmclient.Interface {
	s.t.Helper()
	rc, err := clientcmd.BuildConfigFromFlags("", filepath.Join(s.root, "etc/perch/kubeconfig"))
	must(s.t, err)
	hc, err := helmclient.NewForConfig(rc)
	must(s.t, err)
	return hc
}
