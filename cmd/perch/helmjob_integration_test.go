//go:build integration

package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	helmv1 "github.com/k3s-io/helm-controller/pkg/apis/helm.cattle.io/v1"
	"helm.sh/helm/v3/pkg/chart"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/perchedge/perch/installer/bundle"
	"github.com/perchedge/perch/installer/host"
	"github.com/perchedge/perch/installer/status"
	"github.com/perchedge/perch/internal/testimages"
	"github.com/perchedge/perch/manifests/render"
)

// TestIntegrationHelmChartThroughHelmJob deploys a chart the way Perch
// deploys every app: a HelmChart whose chart k3s serves from
// server/static/charts, installed by helm-controller's Job, with the
// workload's image pulled through the appliance registry; Perch's own
// readiness judgement (the one apps-ready and perch status use) sees the
// app become ready, finding its pod through the release helm wrote (no
// object carries the release label); new values naming an image the
// installed bundle lacks fail the app with that image named; and deleting
// the HelmChart uninstalls the release.
//
// The Job runs the test tier's helm job image (internal/testimages/helmjob,
// named as a stand-in for rancher/klipper-helm, which is only on the
// internet), given to k3s with --helm-job-image, so the pipeline charts can
// be deployed here at all.
func TestIntegrationHelmChartThroughHelmJob(t *testing.T) {
	job, err := testimages.HelmJob(t.TempDir())
	must(t, err)
	s := newAgentNode(t, "site-helm", map[string]v1.Image{"helm-job": job}, map[string]string{"--helm-job-image": "helm-job"})
	appRef := s.ref("busybox")
	s.install()

	// a chart with one Deployment, served by k3s like Perch's charts
	ch := &chart.Chart{
		Metadata: &chart.Metadata{APIVersion: chart.APIVersionV2, Name: "probe", Version: "0.1.0"},
		Values:   map[string]any{"image": "busybox"},
		Templates: []*chart.File{{Name: "templates/deploy.yaml", Data: []byte(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
spec:
  replicas: 1
  selector: {matchLabels: {app: probe}}
  template:
    metadata: {labels: {app: probe}}
    spec:
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 1
      containers: [{name: sleep, image: {{ .Values.image | quote }}}]
`)}},
	}
	tgz, err := render.Pack(ch)
	must(t, err)
	// the directory is Perch's to make, as the apps step does: whether k3s
	// made it already depends on the static content it was built with
	charts := filepath.Join(s.root, "var/lib/rancher/k3s/server/static/charts")
	must(t, os.MkdirAll(charts, 0o755))
	must(t, os.WriteFile(filepath.Join(charts, "probe-0.1.0.tgz"), tgz, 0o644))
	hc := s.helmClient()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	_, err = hc.HelmV1().HelmCharts("kube-system").Create(ctx, &helmv1.HelmChart{
		ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: "kube-system"},
		Spec: helmv1.HelmChartSpec{
			Chart:           "https://%{KUBERNETES_API}%/static/charts/probe-0.1.0.tgz",
			TargetNamespace: "probe", CreateNamespace: true,
			ValuesContent: "image: " + appRef + "\n",
		},
	}, metav1.CreateOptions{})
	must(t, err)
	cs := s.client()
	rc, err := clientcmd.BuildConfigFromFlags("", filepath.Join(s.root, "etc/perch/kubeconfig"))
	must(t, err)
	checker := status.Checker{Kube: cs, Meta: metadata.NewForConfigOrDie(rc)}
	var last status.App
	for {
		last, err = checker.App(ctx, "probe", "probe")
		if err == nil && last.State == status.AppReady {
			break
		}
		if ctx.Err() != nil || last.State == status.AppFailed {
			logs := ""
			if pods, err := cs.CoreV1().Pods("kube-system").List(context.Background(), metav1.ListOptions{LabelSelector: "job-name=helm-install-probe"}); err == nil && len(pods.Items) > 0 {
				raw, _ := cs.CoreV1().Pods("kube-system").GetLogs(pods.Items[0].Name, &corev1.PodLogOptions{}).DoRaw(context.Background())
				logs = string(raw)
			}
			t.Fatalf("app probe not ready: %+v (%v)\nhelm job log:\n%s\nk3s log:\n%s", last, err, logs, tailFile(filepath.Join(s.root, "var/log/perch/k3s.log"), 30))
		}
		time.Sleep(time.Second)
	}
	t.Logf("HelmChart to app ready (helm job, image through the mirror): %s", time.Since(start).Round(time.Millisecond))
	// nothing carries the release label: the pod was traced from the
	// release helm wrote, through its ReplicaSet to the Deployment
	if last.Release < 1 || last.Pods != 1 || last.PodsReady != 1 || len(last.Workloads) != 1 {
		t.Errorf("app probe: release %d, %d/%d pods ready, workloads %+v: want release 1 or later, 1/1, the Deployment", last.Release, last.PodsReady, last.Pods, last.Workloads)
	}

	// new values name an image the installed bundle lacks: helm upgrades
	// the release, the new pod cannot pull, and the judgement says why
	h, err := host.Open(s.root)
	must(t, err)
	defer h.Close()
	installed, err := bundle.InstalledManifests(h)
	must(t, err)
	if len(installed) != 1 {
		t.Fatalf("installed bundles: %d, want 1", len(installed))
	}
	checker.Images = status.NewBundleImages(nil, installed...)
	missing := s.ref("missing")
	got, err := hc.HelmV1().HelmCharts("kube-system").Get(ctx, "probe", metav1.GetOptions{})
	must(t, err)
	got.Spec.ValuesContent = "image: " + missing + "\n"
	upgraded := time.Now()
	_, err = hc.HelmV1().HelmCharts("kube-system").Update(ctx, got, metav1.UpdateOptions{})
	must(t, err)
	for {
		last, err = checker.App(ctx, "probe", "probe")
		if err == nil && last.State == status.AppFailed {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("an image not in the bundle did not fail the app: %+v (%v)", last, err)
		}
		time.Sleep(time.Second)
	}
	if !strings.Contains(last.Reason, missing) || !strings.Contains(last.Reason, "not in the bundle") || last.Release < 2 {
		t.Errorf("app probe failed with %q (release %d): want %s named, not in the bundle, release 2 or later", last.Reason, last.Release, missing)
	}
	t.Logf("new values to app failed: %s: %s", time.Since(upgraded).Round(time.Second), last.Reason)

	must(t, hc.HelmV1().HelmCharts("kube-system").Delete(ctx, "probe", metav1.DeleteOptions{}))
	for {
		_, err := cs.AppsV1().Deployments("probe").Get(ctx, "probe", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("deleting the HelmChart did not uninstall the release: %v", err)
		}
		time.Sleep(time.Second)
	}
}
