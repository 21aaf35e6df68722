//go:build integration

package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	helmv1 "github.com/k3s-io/helm-controller/pkg/apis/helm.cattle.io/v1"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/perchedge/perch/gpu"
	"github.com/perchedge/perch/installer/apps"
	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/manifests"
	"github.com/perchedge/perch/manifests/render"
)

// TestIntegrationRenderedObjectsDryRun sends every object the pipeline
// chart renders, and every HelmChart Perch renders, to the real k3s API as
// a server-side dry run: the API server's own validation (schemas, names,
// HelmChart CRD) accepts them. The Prometheus Operator's CRDs are not
// available offline here, so the chart is rendered without monitoring
// objects; the unit tests decode those against their types. The device
// plugin's and dcgm-exporter's HelmCharts are then created for real and
// read back, values included.
func TestIntegrationRenderedObjectsDryRun(t *testing.T) {
	s := newSandbox(t)
	s.install()
	raw := readFile(t, s.root+"/etc/perch/kubeconfig")
	rc, err := clientcmd.RESTConfigFromKubeConfig([]byte(raw))
	must(t, err)
	dyn, err := dynamic.NewForConfig(rc)
	must(t, err)
	cs := s.client()
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cs.Discovery()))
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "perch"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	ch, err := render.LoadChartFS(manifests.AnalyticsChart())
	must(t, err)

	cases := map[string]func(*config.Appliance) manifests.Node{
		"no GPU": func(*config.Appliance) manifests.Node { return manifests.Node{} },
		"1 GPU":  func(*config.Appliance) manifests.Node { return manifests.Node{GPUs: 1} },
		"time-sliced, 16 streams": func(a *config.Appliance) manifests.Node {
			a.GPU.Sharing.Replicas = 4
			a.Pipeline.Streams = nil
			for i := range 16 {
				a.Pipeline.Streams = append(a.Pipeline.Streams, config.Stream{Name: fmt.Sprintf("cam-%02d", i), URL: fmt.Sprintf("rtsp://192.0.2.%d/live", i+1)})
			}
			return manifests.Node{GPUs: 2, Registry: "10.0.0.1:5000", PullSecret: "perch-registry"}
		},
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			a := config.Default()
			a.Pipeline.Streams = []config.Stream{{Name: "gate-1", URL: "rtsp://admin:pw@192.0.2.10/stream1"}}
			env := mod(&a)
			vals, err := manifests.AnalyticsValues(apps.Spec(&a), env)
			must(t, err)
			caps := chartutil.DefaultCapabilities.Copy()
			caps.KubeVersion = chartutil.KubeVersion{Version: "v1.31.1+k3s1", Major: "1", Minor: "31"}
			rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: render.Analytics, Namespace: "perch", Revision: 1, IsInstall: true}, caps)
			must(t, err)
			out, err := engine.Render(ch, rv)
			must(t, err)
			n := 0
			for _, src := range slices.Sorted(maps.Keys(out)) {
				for _, part := range strings.Split(out[src], "\n---") {
					var obj map[string]any
					must(t, yaml.Unmarshal([]byte(part), &obj))
					if obj == nil {
						continue
					}
					dryRun(t, ctx, dyn, mapper, &unstructured.Unstructured{Object: obj}, "perch")
					n++
				}
			}
			if n < 8 {
				t.Errorf("only %d objects rendered", n)
			}
			t.Logf("%d objects accepted by the API server", n)
		})
	}

	t.Run("HelmCharts", func(t *testing.T) {
		// every app: a GPU node (an inventory as NVML would give it) and a
		// bundle carrying the upstream charts (stand-ins made by helm
		// create: only their names and versions matter to a HelmChart)
		a := config.Default()
		a.GPU.Sharing.Replicas = 4
		var charts []render.Chart
		for _, name := range []string{render.DevicePlugin, render.DCGMExporter, render.Monitoring} {
			dir, err := chartutil.Create(name, t.TempDir())
			must(t, err)
			ch, err := loader.LoadDir(dir)
			must(t, err)
			data, err := render.Pack(ch)
			must(t, err)
			p := filepath.Join(t.TempDir(), name+".tgz")
			must(t, os.WriteFile(p, data, 0o644))
			charts = append(charts, render.Chart{Name: name, Version: ch.Metadata.Version, Path: p})
		}
		inv := &gpu.Inventory{DriverVersion: "550.54.15", GPUs: []gpu.Device{{Name: "NVIDIA L4", UUID: "GPU-1", MemoryMiB: 23034}}}
		rendered, err := render.Apps(apps.Spec(&a), render.Inputs{GPU: inv.Capacity(), Charts: charts})
		must(t, err)
		if len(rendered) != 4 {
			t.Fatalf("%d apps rendered, want 4", len(rendered))
		}
		hc := s.helmClient()
		for _, app := range rendered {
			var obj map[string]any
			must(t, yaml.Unmarshal(app.YAML, &obj))
			if dryRun(t, ctx, dyn, mapper, &unstructured.Unstructured{Object: obj}, render.HelmChartNamespace) == nil {
				continue
			}
			if app.Name != render.DevicePlugin && app.Name != render.DCGMExporter {
				continue
			}
			// the GPU apps for real, read back from the API (this server
			// runs no pods, so helm-controller's Job only waits)
			u := &unstructured.Unstructured{Object: obj}
			if _, err := dyn.Resource(helmv1.SchemeGroupVersion.WithResource("helmcharts")).Namespace(render.HelmChartNamespace).
				Apply(ctx, app.Name, u, metav1.ApplyOptions{FieldManager: "perch-test", Force: true}); err != nil {
				t.Fatalf("create HelmChart %s: %v", app.Name, err)
			}
			got, err := hc.HelmV1().HelmCharts(render.HelmChartNamespace).Get(ctx, app.Name, metav1.GetOptions{})
			must(t, err)
			if got.Spec.TargetNamespace != "nvidia-device-plugin" || !strings.HasPrefix(got.Spec.Chart, "https://%{KUBERNETES_API}%/static/charts/") {
				t.Errorf("%s read back: %+v", app.Name, got.Spec)
			}
			values := got.Spec.ValuesContent
			if !strings.Contains(values, "runtimeClassName: nvidia") {
				t.Errorf("%s values as stored lack runtimeClassName nvidia:\n%s", app.Name, values)
			}
			if app.Name == render.DevicePlugin {
				for _, want := range []string{"runtimeClassName: nvidia", "replicas: 4", "name: nvidia.com/gpu"} {
					if !strings.Contains(values, want) {
						t.Errorf("device plugin values as stored lack %q:\n%s", want, values)
					}
				}
			}
		}
	})
}

func dryRun(t *testing.T, ctx context.Context, dyn dynamic.Interface, mapper meta.RESTMapper, u *unstructured.Unstructured, ns string) *unstructured.Unstructured {
	t.Helper()
	gvk := u.GroupVersionKind()
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	// k3s registers its CRDs (HelmChart) a moment after the API answers
	for deadline := time.Now().Add(60 * time.Second); meta.IsNoMatchError(err) && time.Now().Before(deadline); {
		time.Sleep(time.Second)
		mapper.(*restmapper.DeferredDiscoveryRESTMapper).Reset()
		m, err = mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		t.Errorf("%s %s: the API server does not serve this kind: %v", gvk, u.GetName(), err)
		return nil
	}
	var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		if u.GetNamespace() == "" {
			u.SetNamespace(ns)
		}
		ri = dyn.Resource(m.Resource).Namespace(u.GetNamespace())
	}
	// server-side apply: validates whether or not the object exists (the
	// install itself deployed perch-analytics)
	got, err := ri.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: "perch-test", Force: true, DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Errorf("%s %s refused: %v", gvk.Kind, u.GetName(), err)
	}
	return got
}
