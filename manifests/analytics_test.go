package manifests

import (
	"bytes"
	"flag"
	"fmt"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/perchedge/perch/airgap"
)

var update = flag.Bool("update", false, "rewrite testdata/analytics/*.golden.yaml from the current chart")

const (
	testRegistry   = "10.0.0.1:5000"
	testPullSecret = "perch-registry"
	testNamespace  = "perch"
	// testCameraURL is a camera with credentials, as installers find them
	// on site; TestAnalyticsCameraCredentials follows its userinfo.
	testCameraURL = "rtsp://admin:s3cret@10.0.0.5/stream"
)

func streams(n int) []Stream {
	out := make([]Stream, n)
	for i := range out {
		out[i] = Stream{
			Name: fmt.Sprintf("cam-%02d", i+1),
			URL:  fmt.Sprintf("rtsp://viewer:secret@192.0.2.%d:554/stream1", 10+i),
		}
	}
	return out
}

// appliance is what installer/apps makes of config.Default() with the
// example file's camera, the config
// a fresh appliance runs.
func appliance(mut func(*Appliance)) *Appliance {
	a := Appliance{
		GPU:        GPU{Replicas: 1},
		Pipeline:   Pipeline{Enabled: true, Streams: []Stream{{Name: "gate-1", URL: "rtsp://192.0.2.10:554/stream1"}}},
		Monitoring: Monitoring{Enabled: true, Retention: "7d", Grafana: true},
	}
	if mut != nil {
		mut(&a)
	}
	return &a
}

type goldenCase struct {
	name string
	cfg  *Appliance
	env  Node
	// worker slots: GPUs x shares, or CPU workers; those with a stream
	// render a worker.
	maxSlots int
	gpu      bool
}

func goldenCases() []goldenCase {
	env := func(gpus int) Node {
		return Node{GPUs: gpus, Registry: testRegistry, PullSecret: testPullSecret}
	}
	return []goldenCase{
		{name: "default", cfg: appliance(nil), env: env(1), maxSlots: 1, gpu: true},
		{name: "no-gpu", cfg: appliance(func(a *Appliance) {
			a.Pipeline.Streams = append(streams(3), Stream{Name: "dock-1", URL: testCameraURL})
		}), env: env(0), maxSlots: 1},
		{name: "time-sliced", cfg: appliance(func(a *Appliance) {
			a.GPU.Replicas = 4
			a.Pipeline.Streams = streams(6)
		}), env: env(1), maxSlots: 4, gpu: true},
		{name: "16-streams", cfg: appliance(func(a *Appliance) {
			a.GPU.Replicas = 4
			a.Pipeline.Streams = streams(16)
		}), env: env(2), maxSlots: 8, gpu: true},
	}
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	return loadChartFS(t, AnalyticsChart())
}

func loadMonitoringChart(t *testing.T) *chart.Chart {
	t.Helper()
	return loadChartFS(t, MonitoringChart())
}

func loadChartFS(t *testing.T, fsys fs.FS) *chart.Chart {
	t.Helper()
	var files []*loader.BufferedFile
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(fsys, p)
		files = append(files, &loader.BufferedFile{Name: p, Data: data})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := loader.LoadFiles(files)
	if err != nil {
		t.Fatalf("load embedded chart: %v", err)
	}
	return c
}

func capabilities(monitoringAPI bool) *chartutil.Capabilities {
	caps := chartutil.DefaultCapabilities.Copy()
	caps.KubeVersion = chartutil.KubeVersion{Version: "v1.31.1+k3s1", Major: "1", Minor: "31"}
	if monitoringAPI {
		caps.APIVersions = append(slices.Clone(caps.APIVersions), "monitoring.coreos.com/v1", "monitoring.coreos.com/v1/ServiceMonitor")
	}
	return caps
}

// doc is one rendered object: its template and text, and its fields.
type doc struct {
	source string
	text   string
	obj    map[string]any
}

func (d doc) kind() string { return fmt.Sprint(d.obj["kind"]) }
func (d doc) name() string {
	return fmt.Sprint(d.obj["metadata"].(map[string]any)["name"])
}

func render(t *testing.T, c *chart.Chart, vals map[string]any, caps *chartutil.Capabilities) []doc {
	t.Helper()
	rv, err := chartutil.ToRenderValues(c, vals, chartutil.ReleaseOptions{
		Name: "perch-analytics", Namespace: testNamespace, Revision: 1, IsInstall: true,
	}, caps)
	if err != nil {
		t.Fatalf("values: %v", err)
	}
	out, err := engine.Render(c, rv)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	var docs []doc
	for _, src := range slices.Sorted(mapsKeys(out)) {
		if strings.HasSuffix(src, "NOTES.txt") {
			continue
		}
		for _, part := range strings.Split(out[src], "\n---") {
			text := strings.TrimSpace(strings.TrimPrefix(part, "---"))
			if text == "" {
				continue
			}
			var obj map[string]any
			if err := yaml.Unmarshal([]byte(text), &obj); err != nil {
				t.Fatalf("%s does not parse as YAML: %v\n%s", src, err, text)
			}
			if obj == nil {
				continue // only comments
			}
			if obj["apiVersion"] == nil || obj["kind"] == nil || obj["metadata"] == nil {
				t.Fatalf("%s: an object without apiVersion, kind or metadata:\n%s", src, text)
			}
			docs = append(docs, doc{source: src, text: text, obj: obj})
		}
	}
	return docs
}

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func golden(docs []doc) []byte {
	var b bytes.Buffer
	for _, d := range docs {
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", d.source, d.text)
	}
	return b.Bytes()
}

// strict decodes a doc into its typed API object, refusing unknown fields, so
// a misspelt or misplaced key in a template fails here, not on the node.
func strict[T any](t *testing.T, d doc) *T {
	t.Helper()
	var v T
	if err := yaml.UnmarshalStrict([]byte(d.text), &v); err != nil {
		t.Fatalf("%s %s (%s): %v", d.kind(), d.name(), d.source, err)
	}
	return &v
}

func values(t *testing.T, a *Appliance, env Node) map[string]any {
	t.Helper()
	v, err := AnalyticsValues(a, env)
	if err != nil {
		t.Fatalf("AnalyticsValues: %v", err)
	}
	// The values travel to helm-controller as YAML; render what survives that.
	y, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := yaml.Unmarshal(y, &back); err != nil {
		t.Fatal(err)
	}
	return back
}

type lintRun struct {
	name string
	vals map[string]any
}

// lintRuns are the values the lint tests check: what a plain `helm install`
// gets, and what Perch computes for each golden config.
func lintRuns(t *testing.T) []lintRun {
	t.Helper()
	runs := []lintRun{{"chart defaults", map[string]any{}}}
	for _, gc := range goldenCases() {
		runs = append(runs, lintRun{gc.name, values(t, gc.cfg, gc.env)})
	}
	return runs
}

// TestAnalyticsHelmLint is `helm lint --strict` on the chart as the binary
// embeds it, for the chart defaults and every golden config: a warning is
// something helm-controller may reject on a newer Kubernetes, so it fails
// too. Only INFO ("icon is recommended") passes.
func TestAnalyticsHelmLint(t *testing.T) {
	// pkg/lint loads the chart from a directory named after it, as
	// `helm lint` would find it in a checkout.
	dir := filepath.Join(t.TempDir(), "perch-analytics")
	if err := os.CopyFS(dir, AnalyticsChart()); err != nil {
		t.Fatal(err)
	}
	kube := capabilities(false).KubeVersion
	for _, r := range lintRuns(t) {
		t.Run(r.name, func(t *testing.T) {
			res := lint.AllWithKubeVersion(dir, r.vals, testNamespace, &kube)
			for _, m := range res.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("helm lint: %v", m)
				} else {
					t.Logf("helm lint: %v", m)
				}
			}
		})
	}
}

// TestAnalyticsChartLint checks what `helm lint` does not: values.yaml
// against the schema, and a render of the chart defaults and of every
// golden config, each object with a valid name and its typed fields, with
// the monitoring API present.
func TestAnalyticsChartLint(t *testing.T) {
	c := loadChart(t)
	if err := c.Validate(); err != nil {
		t.Fatalf("Chart.yaml: %v", err)
	}
	if c.Metadata.APIVersion != chart.APIVersionV2 || c.Metadata.Type != "application" {
		t.Errorf("Chart.yaml: apiVersion %q type %q, want v2 application", c.Metadata.APIVersion, c.Metadata.Type)
	}
	for _, r := range lintRuns(t) {
		t.Run(r.name, func(t *testing.T) {
			if err := chartutil.ValidateAgainstSchema(c, r.vals); err != nil {
				t.Errorf("values schema: %v", err)
			}
			for _, d := range render(t, c, r.vals, capabilities(true)) {
				lintDoc(t, d)
			}
		})
	}
}

func lintDoc(t *testing.T, d doc) {
	t.Helper()
	if strings.HasPrefix(d.text, " ") {
		t.Errorf("%s: the document starts indented", d.source)
	}
	nameErrs := validation.IsDNS1123Subdomain(d.name())
	if d.kind() == "Service" {
		nameErrs = validation.IsDNS1035Label(d.name())
	}
	for _, e := range nameErrs {
		t.Errorf("%s %s: invalid name: %s", d.kind(), d.name(), e)
	}
	if _, ok := d.obj["metadata"].(map[string]any)["namespace"]; ok {
		t.Errorf("%s %s: sets a namespace; the release namespace should decide", d.kind(), d.name())
	}
	switch d.kind() {
	case "ConfigMap":
		strict[corev1.ConfigMap](t, d)
	case "Secret":
		strict[corev1.Secret](t, d)
	case "Service":
		svc := strict[corev1.Service](t, d)
		if len(svc.Spec.Selector) == 0 {
			t.Errorf("Service %s selects nothing", svc.Name)
		}
	case "Ingress":
		strict[networkingv1.Ingress](t, d)
	case "Deployment", "StatefulSet":
		pod, _, _ := podSpec(t, d)
		var sel *metav1.LabelSelector
		var tmpl map[string]string
		if d.kind() == "Deployment" {
			dep := strict[appsv1.Deployment](t, d)
			sel, tmpl = dep.Spec.Selector, dep.Spec.Template.Labels
		} else {
			sts := strict[appsv1.StatefulSet](t, d)
			sel, tmpl = sts.Spec.Selector, sts.Spec.Template.Labels
		}
		if sel == nil || len(sel.MatchLabels) == 0 {
			t.Errorf("%s %s has no selector", d.kind(), d.name())
		}
		for k, v := range sel.MatchLabels {
			if tmpl[k] != v {
				t.Errorf("%s %s: selector %s=%s does not match its pod template", d.kind(), d.name(), k, v)
			}
		}
		if len(pod.Containers) == 0 {
			t.Errorf("%s %s has no container", d.kind(), d.name())
		}
	default:
		t.Errorf("%s %s: a kind the chart is not known to render; add it to lintDoc", d.kind(), d.name())
	}
}

func TestAnalyticsChartGolden(t *testing.T) {
	c := loadChart(t)
	for _, gc := range goldenCases() {
		t.Run(gc.name, func(t *testing.T) {
			docs := render(t, c, values(t, gc.cfg, gc.env), capabilities(false))
			got := golden(docs)
			path := filepath.Join("testdata", "analytics", gc.name+".golden.yaml")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./manifests/ -run Golden -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the rendered chart; review the change and run with -update:\n%s", path, firstDiff(want, got))
			}

			checkWorkers(t, docs, gc)
			checkPods(t, docs, gc.env)
			checkMonitoring(t, docs, true)
			req := totalRequests(t, docs)
			t.Logf("%d objects; requests cpu %s memory %s", len(docs), req.Cpu(), req.Memory())
		})
	}
}

// Camera URLs hold passwords: they may be in the gateway's Secret, never in
// a ConfigMap, which more people and tools may read. Checked on the golden
// files, what a reviewer approves and what a node gets.
func TestAnalyticsCameraCredentials(t *testing.T) {
	var sawTestCamera bool
	for _, gc := range goldenCases() {
		t.Run(gc.name, func(t *testing.T) {
			path := filepath.Join("testdata", "analytics", gc.name+".golden.yaml")
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var secret *corev1.Secret
			for _, d := range goldenDocs(t, raw) {
				switch {
				case d.kind() == "Secret" && strings.HasSuffix(d.name(), "-gateway"):
					secret = strict[corev1.Secret](t, d)
				case d.kind() == "ConfigMap":
					for _, s := range gc.cfg.Pipeline.Streams {
						u, err := url.Parse(s.URL)
						if err != nil || u.User == nil {
							continue
						}
						if strings.Contains(d.text, u.User.String()) {
							t.Errorf("%s: ConfigMap %s holds the credentials of stream %s", path, d.name(), s.Name)
						}
					}
				}
			}
			if secret == nil {
				t.Fatalf("%s: no gateway Secret", path)
			}
			conf := secret.StringData["mediamtx.yml"] + string(secret.Data["mediamtx.yml"])
			for _, s := range gc.cfg.Pipeline.Streams {
				if !strings.Contains(conf, s.URL) {
					t.Errorf("%s: the gateway Secret lacks the source of stream %s", path, s.Name)
				}
				sawTestCamera = sawTestCamera || s.URL == testCameraURL
			}
		})
	}
	if !sawTestCamera {
		t.Errorf("no golden config has the camera %s", testCameraURL)
	}
}

// A camera's new password reaches MediaMTX only through a new pod: a
// Secret change alone does not restart the gateway.
func TestAnalyticsGatewayRollsOnCameraChange(t *testing.T) {
	c := loadChart(t)
	podTemplate := func(cameraURL string) string {
		a := appliance(func(a *Appliance) { a.Pipeline.Streams[0].URL = cameraURL })
		for _, d := range render(t, c, values(t, a, Node{GPUs: 1}), capabilities(false)) {
			if d.kind() == "Deployment" && strings.HasSuffix(d.name(), "-gateway") {
				dep := strict[appsv1.Deployment](t, d)
				y, err := yaml.Marshal(dep.Spec.Template)
				if err != nil {
					t.Fatal(err)
				}
				return string(y)
			}
		}
		t.Fatal("no gateway Deployment")
		return ""
	}
	if podTemplate(testCameraURL) == podTemplate(strings.Replace(testCameraURL, "s3cret", "n3w", 1)) {
		t.Error("a changed camera password leaves the gateway's pod template as it was; the gateway would keep the old one")
	}
}

// goldenDocs splits a golden file back into its objects.
func goldenDocs(t *testing.T, raw []byte) []doc {
	t.Helper()
	var docs []doc
	for _, part := range strings.Split(string(raw), "\n---\n") {
		text := strings.TrimSpace(strings.TrimPrefix(part, "---\n"))
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(text), &obj); err != nil {
			t.Fatalf("golden does not parse as YAML: %v\n%s", err, text)
		}
		if obj == nil {
			continue
		}
		docs = append(docs, doc{text: text, obj: obj})
	}
	return docs
}

func firstDiff(want, got []byte) string {
	w, g := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\n  golden:   %q\n  rendered: %q", i+1, wl, gl)
		}
	}
	return "(same lines, different bytes)"
}

// workerStreams reads each worker slot's stream list from its ConfigMap.
func workerStreams(t *testing.T, docs []doc) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, d := range docs {
		if d.kind() != "ConfigMap" || !strings.Contains(d.name(), "-worker-") {
			continue
		}
		cm := strict[corev1.ConfigMap](t, d)
		slot := cm.Labels["perch.dev/worker-slot"]
		for _, line := range strings.Split(strings.TrimSpace(cm.Data["streams.txt"]), "\n") {
			name, url, ok := strings.Cut(line, " ")
			if !ok {
				t.Fatalf("worker %s: stream line %q is not \"name url\"", slot, line)
			}
			if want := fmt.Sprintf("rtsp://perch-analytics-gateway.%s.svc:8554/%s", testNamespace, name); url != want {
				t.Errorf("worker %s reads %s from %s, want the gateway's %s", slot, name, url, want)
			}
			out[slot] = append(out[slot], name)
		}
	}
	return out
}

func checkWorkers(t *testing.T, docs []doc, gc goldenCase) {
	t.Helper()
	assigned := workerStreams(t, docs)
	owner := map[string]string{}
	for slot, names := range assigned {
		for _, n := range names {
			if prev, dup := owner[n]; dup {
				t.Errorf("stream %s is decoded by both %s and %s", n, prev, slot)
			}
			owner[n] = slot
		}
	}
	slots := gc.maxSlots
	var names []string
	for _, s := range gc.cfg.Pipeline.Streams {
		names = append(names, s.Name)
	}
	want := Assign(names, slots, nil)
	for _, s := range gc.cfg.Pipeline.Streams {
		if owner[s.Name] == "" {
			t.Errorf("stream %s is assigned to no worker", s.Name)
		}
		if owner[s.Name] != want[s.Name] {
			t.Errorf("stream %s went to %s, the balanced assignment over %d slots says %s", s.Name, owner[s.Name], slots, want[s.Name])
		}
	}
	if len(owner) != len(gc.cfg.Pipeline.Streams) {
		t.Errorf("workers decode %d streams, the config has %d", len(owner), len(gc.cfg.Pipeline.Streams))
	}

	var deployments int
	for _, d := range docs {
		if d.kind() == "HorizontalPodAutoscaler" {
			t.Errorf("%s: an autoscaled worker would decode its streams twice", d.name())
		}
		if d.kind() != "Deployment" || !strings.Contains(d.name(), "-worker-") {
			continue
		}
		deployments++
		dep := strict[appsv1.Deployment](t, d)
		slot := dep.Spec.Template.Labels["perch.dev/worker-slot"]
		if len(assigned[slot]) == 0 {
			t.Errorf("%s runs with no stream", dep.Name)
		}
		if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 1 {
			t.Errorf("%s: replicas %v, want exactly 1", dep.Name, dep.Spec.Replicas)
		}
		pod := dep.Spec.Template.Spec
		ctr := pod.Containers[0]
		gpuLimit, hasGPU := ctr.Resources.Limits["nvidia.com/gpu"]
		// a surge pod would decode the same cameras beside the old one,
		// and on a GPU never gets the share its predecessor holds
		if dep.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
			t.Errorf("%s: strategy %q, want Recreate", dep.Name, dep.Spec.Strategy.Type)
		}
		if gc.gpu {
			tolerates := slices.ContainsFunc(pod.Tolerations, func(tl corev1.Toleration) bool {
				return tl.Key == "nvidia.com/gpu" && tl.Operator == corev1.TolerationOpExists && tl.Effect == corev1.TaintEffectNoSchedule
			})
			if !tolerates {
				t.Errorf("%s: tolerations %v lack nvidia.com/gpu, which GPU-only nodes are tainted with", dep.Name, pod.Tolerations)
			}
			if pod.RuntimeClassName == nil || *pod.RuntimeClassName != "nvidia" {
				t.Errorf("%s: runtimeClassName %v, want nvidia", dep.Name, pod.RuntimeClassName)
			}
			if pod.NodeSelector["nvidia.com/gpu.present"] != "true" {
				t.Errorf("%s: nodeSelector %v lacks nvidia.com/gpu.present=true", dep.Name, pod.NodeSelector)
			}
			if !hasGPU || gpuLimit.Value() != 1 {
				t.Errorf("%s: nvidia.com/gpu limit %v, want 1", dep.Name, ctr.Resources.Limits)
			}
			if ctr.StartupProbe == nil || ctr.StartupProbe.FailureThreshold*ctr.StartupProbe.PeriodSeconds < 600 {
				t.Errorf("%s: startupProbe %+v allows less than 10 minutes for a TensorRT build", dep.Name, ctr.StartupProbe)
			}
			if !strings.Contains(ctr.Image, "deepstream") {
				t.Errorf("%s: image %s, want the DeepStream profile", dep.Name, ctr.Image)
			}
		} else {
			if hasGPU || pod.RuntimeClassName != nil || len(pod.NodeSelector) != 0 || len(pod.Tolerations) != 0 {
				t.Errorf("%s: CPU-only worker asks for a GPU: limits %v, runtimeClassName %v, nodeSelector %v",
					dep.Name, ctr.Resources.Limits, pod.RuntimeClassName, pod.NodeSelector)
			}
			if strings.Contains(ctr.Image, "deepstream") {
				t.Errorf("%s: CPU-only worker runs %s", dep.Name, ctr.Image)
			}
		}
		var cache bool
		for _, v := range pod.Volumes {
			cache = cache || (v.Name == "engine-cache" && v.HostPath != nil)
		}
		if !cache {
			t.Errorf("%s has no engine-cache volume", dep.Name)
		}
	}
	if deployments != len(assigned) || deployments > slots {
		t.Errorf("%d worker Deployments for %d slots with streams (at most %d)", deployments, len(assigned), slots)
	}
}

// checkPods holds every pod of the chart to one registry and one set of pull
// secrets, and to resource requests and limits on every container.
func checkPods(t *testing.T, docs []doc, env Node) {
	t.Helper()
	var pods int
	for _, d := range docs {
		spec, _, ok := podSpec(t, d)
		if !ok {
			continue
		}
		pods++
		want := []corev1.LocalObjectReference{{Name: env.PullSecret}}
		if !slices.Equal(spec.ImagePullSecrets, want) {
			t.Errorf("%s %s: imagePullSecrets %v, want %v", d.kind(), d.name(), spec.ImagePullSecrets, want)
		}
		checkSecurity(t, d, spec)
		for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
			checkImage(t, d, c.Image, env.Registry)
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if _, ok := c.Resources.Requests[r]; !ok {
					t.Errorf("%s %s container %s: no %s request", d.kind(), d.name(), c.Name, r)
				}
				if _, ok := c.Resources.Limits[r]; !ok {
					t.Errorf("%s %s container %s: no %s limit", d.kind(), d.name(), c.Name, r)
				}
			}
		}
	}
	if pods < 3 {
		t.Errorf("%d pod templates, want at least gateway, worker and NATS", pods)
	}
}

// checkSecurity holds every pod to the restricted profile where its image
// allows: a user set explicitly (several images have none, and
// runAsNonRoot alone then refuses to start them), non-root but for the
// GPU worker (DeepStream's image has no other user, and its engine cache is
// a root-owned hostPath), RuntimeDefault seccomp, no privilege escalation,
// no capabilities, a read-only root with a writable /tmp for the workers.
func checkSecurity(t *testing.T, d doc, spec corev1.PodSpec) {
	t.Helper()
	sc := spec.SecurityContext
	if sc == nil || sc.RunAsUser == nil || sc.RunAsNonRoot == nil || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s %s: pod securityContext %+v, want runAsUser, runAsNonRoot and seccomp RuntimeDefault", d.kind(), d.name(), sc)
		return
	}
	root := *sc.RunAsUser == 0
	if root == *sc.RunAsNonRoot {
		t.Errorf("%s %s: runAsUser %d with runAsNonRoot %v", d.kind(), d.name(), *sc.RunAsUser, *sc.RunAsNonRoot)
	}
	gpuWorker := strings.Contains(d.name(), "-worker-") && spec.RuntimeClassName != nil
	natsOnHost := d.kind() == "StatefulSet" && slices.ContainsFunc(spec.Volumes, func(v corev1.Volume) bool { return v.HostPath != nil })
	if root && !gpuWorker && !natsOnHost {
		t.Errorf("%s %s runs as root", d.kind(), d.name())
	}
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		cs := c.SecurityContext
		if cs == nil || cs.AllowPrivilegeEscalation == nil || *cs.AllowPrivilegeEscalation ||
			cs.ReadOnlyRootFilesystem == nil || !*cs.ReadOnlyRootFilesystem ||
			cs.Capabilities == nil || !slices.Equal(cs.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(cs.Capabilities.Add) != 0 {
			t.Errorf("%s %s container %s: securityContext %+v, want no privilege escalation, a read-only root and every capability dropped", d.kind(), d.name(), c.Name, cs)
		}
		if strings.Contains(d.name(), "-worker-") {
			tmp := slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/tmp" })
			if !tmp {
				t.Errorf("%s %s container %s: no writable /tmp under its read-only root", d.kind(), d.name(), c.Name)
			}
		}
	}
}

// checkImage: an image pulled through the appliance registry lives there
// under its upstream host, exactly where airgap loads it.
func checkImage(t *testing.T, d doc, image, registry string) {
	t.Helper()
	rest, ok := strings.CutPrefix(image, registry+"/")
	if !ok {
		t.Errorf("%s %s: image %s is not pulled through %s", d.kind(), d.name(), image, registry)
		return
	}
	repo, tag, ok := strings.Cut(rest, ":")
	if !ok {
		t.Errorf("%s %s: image %s has no tag", d.kind(), d.name(), image)
		return
	}
	host, path, _ := strings.Cut(repo, "/")
	upstream, err := name.ParseReference(host + "/" + path + ":" + tag)
	if err != nil {
		t.Errorf("%s %s: image %s: %v", d.kind(), d.name(), image, err)
		return
	}
	if got := airgap.Repository(upstream); got != repo {
		t.Errorf("%s %s: image %s is under %s, airgap loads it at %s", d.kind(), d.name(), image, repo, got)
	}
}

// checkMonitoring checks that the gateway's and NATS's pods carry the
// annotations Prometheus's pod discovery scrapes them by (perch-monitoring's
// kubernetes-pods job), with their metrics ports, and nothing else does.
func checkMonitoring(t *testing.T, docs []doc, want bool) {
	t.Helper()
	jobs := map[string]string{}
	for _, d := range docs {
		var tmpl corev1.PodTemplateSpec
		switch d.kind() {
		case "Deployment":
			tmpl = strict[appsv1.Deployment](t, d).Spec.Template
		case "StatefulSet":
			tmpl = strict[appsv1.StatefulSet](t, d).Spec.Template
		default:
			continue
		}
		ann := tmpl.Annotations
		if ann["prometheus.io/scrape"] != "true" {
			continue
		}
		port := ann["prometheus.io/port"]
		served := false
		for _, c := range tmpl.Spec.Containers {
			for _, p := range c.Ports {
				if p.Name == "metrics" && fmt.Sprint(p.ContainerPort) == port {
					served = true
				}
			}
		}
		if !served {
			t.Errorf("%s %s is scraped on port %q, which no container serves as metrics", d.kind(), d.name(), port)
		}
		jobs[ann["prometheus.io/job"]] = d.name()
	}
	names := slices.Sorted(maps.Keys(jobs))
	wantJobs := []string{}
	if want {
		wantJobs = []string{"perch-gateway", "perch-nats"}
	}
	if !slices.Equal(names, wantJobs) {
		t.Errorf("scraped jobs %v, want %v", names, wantJobs)
	}
}

// podSpec is the pod template of a workload and its replica count.
func podSpec(t *testing.T, d doc) (corev1.PodSpec, int32, bool) {
	t.Helper()
	switch d.kind() {
	case "Deployment":
		dep := strict[appsv1.Deployment](t, d)
		return dep.Spec.Template.Spec, *dep.Spec.Replicas, true
	case "StatefulSet":
		sts := strict[appsv1.StatefulSet](t, d)
		return sts.Spec.Template.Spec, *sts.Spec.Replicas, true
	case "DaemonSet", "Job", "CronJob", "Pod", "ReplicaSet":
		t.Fatalf("%s %s: the pod checks do not know this workload kind yet", d.kind(), d.name())
	}
	return corev1.PodSpec{}, 0, false
}

func totalRequests(t *testing.T, docs []doc) corev1.ResourceList {
	t.Helper()
	cpu, mem := resource.Quantity{}, resource.Quantity{}
	for _, d := range docs {
		spec, replicas, ok := podSpec(t, d)
		if !ok {
			continue
		}
		for range replicas {
			for _, c := range spec.Containers {
				cpu.Add(c.Resources.Requests[corev1.ResourceCPU])
				mem.Add(c.Resources.Requests[corev1.ResourceMemory])
			}
		}
	}
	return corev1.ResourceList{corev1.ResourceCPU: cpu, corev1.ResourceMemory: mem}
}

// The footprint of what a fresh appliance runs: it must leave room on a
// small edge box next to k3s and the monitoring stack.
func TestAnalyticsDefaultFootprint(t *testing.T) {
	docs := render(t, loadChart(t), values(t, appliance(nil), Node{GPUs: 1}), capabilities(false))
	req := totalRequests(t, docs)
	if req.Cpu().Cmp(resource.MustParse("1")) > 0 || req.Memory().Cmp(resource.MustParse("1536Mi")) > 0 {
		t.Errorf("default requests cpu %s memory %s, want at most 1 CPU and 1536Mi", req.Cpu(), req.Memory())
	}
	var objs []string
	for _, d := range docs {
		objs = append(objs, d.kind()+"/"+d.name())
	}
	t.Logf("default config renders %d objects: %s; requests cpu %s memory %s",
		len(objs), strings.Join(objs, ", "), req.Cpu(), req.Memory())
}

// assignmentChart is the chart's helpers and nothing else but their
// assignment, so that the tests over thousands of stream lists render the
// template the workers use without the rest of the chart.
func assignmentChart(t *testing.T) *chart.Chart {
	t.Helper()
	c := loadChart(t)
	var tpls []*chart.File
	for _, f := range c.Templates {
		if f.Name == "templates/_helpers.tpl" {
			tpls = append(tpls, f)
		}
	}
	c.Templates = append(tpls, &chart.File{Name: "templates/assignment.yaml", Data: []byte(`{{ include "perch-analytics.assignment" . }}`)})
	return c
}

// assignChart renders the assignment for streams cam-01..cam-N (less drop, plus
// extra) over slots time-sliced shares of one GPU, and returns each
// stream's worker slot.
func assignChart(t *testing.T, c *chart.Chart, n, slots int, drop string, extra ...string) map[string]string {
	t.Helper()
	return assignChartAfter(t, c, nil, n, slots, drop, extra...)
}

// assignChartAfter is assignChart with the streams where prev put them,
// as an install that changes a deployed appliance renders them.
func assignChartAfter(t *testing.T, c *chart.Chart, prev map[string]string, n, slots int, drop string, extra ...string) map[string]string {
	t.Helper()
	return renderAssignment(t, c, prev, false, n, slots, drop, extra...)
}

// renderAssignment renders the assignment; unpinned drops each stream's
// slot from the values first, as values edited by hand may, so that the
// chart places every stream by its own ranking.
func renderAssignment(t *testing.T, c *chart.Chart, prev map[string]string, unpinned bool, n, slots int, drop string, extra ...string) map[string]string {
	t.Helper()
	a := appliance(func(a *Appliance) {
		a.GPU.Replicas = slots
		a.Pipeline.Streams = slices.DeleteFunc(streams(n), func(s Stream) bool { return s.Name == drop })
		for _, e := range extra {
			a.Pipeline.Streams = append(a.Pipeline.Streams, Stream{Name: e, URL: "rtsp://192.0.2.99/" + e})
		}
	})
	vals := values(t, a, Node{GPUs: 1, Previous: prev})
	if unpinned {
		for _, st := range vals["streams"].([]any) {
			delete(st.(map[string]any), "slot")
		}
	}
	rv, err := chartutil.ToRenderValues(c, vals, chartutil.ReleaseOptions{Name: "perch-analytics", Namespace: testNamespace}, capabilities(false))
	if err != nil {
		t.Fatal(err)
	}
	out, err := engine.Render(c, rv)
	if err != nil {
		t.Fatal(err)
	}
	var assigned map[string][]string
	if err := yaml.Unmarshal([]byte(out["perch-analytics/templates/assignment.yaml"]), &assigned); err != nil {
		t.Fatal(err)
	}
	owner := map[string]string{}
	for slot, names := range assigned {
		for _, n := range names {
			owner[n] = slot
		}
	}
	if len(owner) != len(a.Pipeline.Streams) {
		t.Fatalf("%d slots, %d streams: %d assigned", slots, len(a.Pipeline.Streams), len(owner))
	}
	return owner
}

// moved counts the streams of both assignments whose slot differs.
func moved(a, b map[string]string) int {
	n := 0
	for name, slot := range a {
		if o, ok := b[name]; ok && o != slot {
			n++
		}
	}
	return n
}

// Every slot carries within one stream of the mean, for every slot count
// and stream count a site has: no share idles while another takes two.
// The chart's own ranking, which places streams without a slot (values
// edited by hand), is the one Assign writes into the values.
func TestAnalyticsAssignmentBalanced(t *testing.T) {
	c := assignmentChart(t)
	for slots := 1; slots <= 8; slots++ {
		for n := 0; n <= 20; n++ {
			owner := renderAssignment(t, c, nil, true, n, slots, "")
			checkBalanced(t, owner, n, slots)
			var names []string
			for _, s := range streams(n) {
				names = append(names, s.Name)
			}
			if want := Assign(names, slots, nil); !maps.Equal(owner, want) {
				t.Errorf("%d streams on %d slots: the chart ranks %v, Assign %v", n, slots, owner, want)
			}
		}
	}
}

// A change of streams or slots moves the fewest streams balance allows,
// through the whole chain an install runs: the streams where the deployed
// values put them (Node.Previous), Assign, and the chart honouring each
// stream's slot. Adding a stream moves no other; removing one moves one
// exactly when its slot drops two below another; a slot added or removed
// moves what the new slot must take or the old one held, plus what
// balance then needs, and nothing more (fewestMoves).
func TestAnalyticsAssignmentMoves(t *testing.T) {
	c := assignmentChart(t)
	for slots := 1; slots <= 6; slots++ {
		for n := 0; n <= 14; n++ {
			base := assignChart(t, c, n, slots, "")
			if m := moved(base, assignChartAfter(t, c, base, n, slots, "", "cam-new")); m != 0 {
				t.Errorf("%d streams on %d slots: adding one moved %d others", n, slots, m)
			}
			for i := 1; i <= n; i++ {
				drop := fmt.Sprintf("cam-%02d", i)
				fewest := 0
				if n%slots != 0 && slotLoad(base, base[drop]) == n/slots {
					fewest = 1
				}
				if m := moved(base, assignChartAfter(t, c, base, n, slots, drop)); m != fewest {
					t.Errorf("%d streams on %d slots: removing %s moved %d others, the fewest is %d", n, slots, drop, m, fewest)
				}
			}
			grown := assignChartAfter(t, c, base, n, slots+1, "")
			if m, want := moved(base, grown), fewestMoves(base, slots+1); m != want {
				t.Errorf("%d streams, slot %d added: %d moved, the fewest is %d", n, slots+1, m, want)
			}
		}
	}
}

// fewestMoves is how many of prev's streams must change slot when they are
// spread over slots: all but the most that can stay, which is each slot's
// streams up to floor(n/slots), plus one more on each of n%slots slots
// that have more.
func fewestMoves(prev map[string]string, slots int) int {
	n := len(prev)
	if n == 0 {
		return 0
	}
	q, r := n/slots, n%slots
	load := map[string]int{}
	for _, s := range prev {
		load[s]++
	}
	stay, over := 0, 0
	for i := range slots {
		l := load[fmt.Sprintf("w%d", i)]
		stay += min(l, q)
		if l > q {
			over++
		}
	}
	return n - stay - min(over, r)
}

func slotLoad(owner map[string]string, slot string) int {
	n := 0
	for _, s := range owner {
		if s == slot {
			n++
		}
	}
	return n
}

// The scrape annotations follow monitoring.enabled, and no Prometheus
// Operator object is rendered, whatever the API server offers.
func TestAnalyticsScrapeAnnotations(t *testing.T) {
	c := loadChart(t)
	vals := values(t, appliance(nil), Node{GPUs: 1})
	for _, caps := range []bool{true, false} {
		docs := render(t, c, vals, capabilities(caps))
		checkMonitoring(t, docs, true)
		for _, d := range docs {
			if strings.HasPrefix(fmt.Sprint(d.obj["apiVersion"]), "monitoring.coreos.com/") {
				t.Errorf("%s %s needs the Prometheus Operator's CRDs", d.kind(), d.name())
			}
		}
	}
	off := values(t, appliance(func(a *Appliance) { a.Monitoring.Enabled = false }), Node{GPUs: 1})
	checkMonitoring(t, render(t, c, off, capabilities(true)), false)
}

// Without a registry or pull secret, images are the upstream references and
// no pod lists a pull secret.
func TestAnalyticsUpstreamImages(t *testing.T) {
	for _, d := range render(t, loadChart(t), values(t, appliance(nil), Node{GPUs: 1}), capabilities(false)) {
		if _, _, ok := podSpec(t, d); !ok {
			continue
		}
		pod, _, _ := podSpec(t, d)
		if len(pod.ImagePullSecrets) != 0 {
			t.Errorf("%s: imagePullSecrets %v without a pull secret", d.name(), pod.ImagePullSecrets)
		}
		for _, ctr := range pod.Containers {
			ref, err := name.ParseReference(ctr.Image, name.StrictValidation)
			if err != nil || !strings.HasPrefix(ctr.Image, airgap.RegistryPrefix(ref.Context().RegistryStr())+"/") {
				t.Errorf("%s: image %s is not a full upstream reference (%v)", d.name(), ctr.Image, err)
			}
		}
	}
}

func TestAnalyticsIngress(t *testing.T) {
	c := loadChart(t)
	vals := values(t, appliance(nil), Node{GPUs: 1})
	vals["gateway"].(map[string]any)["ingress"] = map[string]any{
		"enabled": true,
		"hls":     map[string]any{"host": "hls.site-a.example", "tlsSecret": "site-a-tls"},
		"webrtc":  map[string]any{"host": "webrtc.site-a.example"},
	}
	got := map[string]string{}
	for _, d := range render(t, c, vals, capabilities(false)) {
		if d.kind() != "Ingress" {
			continue
		}
		in := strict[networkingv1.Ingress](t, d)
		if in.Spec.IngressClassName == nil || *in.Spec.IngressClassName != "traefik" || len(in.Spec.TLS) != 1 {
			t.Errorf("%s: class %v, tls %v; want traefik with TLS", in.Name, in.Spec.IngressClassName, in.Spec.TLS)
		}
		got[in.Spec.Rules[0].Host] = in.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Port.Name + "/" + in.Spec.TLS[0].SecretName
	}
	want := map[string]string{"hls.site-a.example": "hls/site-a-tls", "webrtc.site-a.example": "webrtc/"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ingresses %v, want %v", got, want)
	}
}

func TestAnalyticsValuesErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  *Appliance
		env  Node
		want string
	}{
		{"no config", nil, Node{}, "no appliance config"},
		{"negative GPUs", appliance(nil), Node{GPUs: -1}, "-1 GPUs"},
		{"no sharing value", appliance(func(a *Appliance) { a.GPU.Replicas = 0 }), Node{GPUs: 1}, "gpu.sharing.replicas"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := AnalyticsValues(tt.cfg, tt.env)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestAnalyticsValuesGPUOff(t *testing.T) {
	v, err := AnalyticsValues(appliance(func(a *Appliance) { a.GPU.Off = true }), Node{GPUs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := v["gpu"].(map[string]any)["count"]; got != 0 {
		t.Errorf("gpu.mode off: gpu.count %v, want 0 (CPU-only profile)", got)
	}
}

// Without k3s's local-path provisioner a PVC would stay Pending and NATS
// with it: JetStream keeps its store on the node instead.
func TestAnalyticsNATSWithoutStorageProvisioner(t *testing.T) {
	c := loadChart(t)
	for _, disabled := range []bool{false, true} {
		a := appliance(func(a *Appliance) {
			if disabled {
				a.K3s.Disable = append(a.K3s.Disable, "local-storage")
			}
		})
		var sts *appsv1.StatefulSet
		for _, d := range render(t, c, values(t, a, Node{GPUs: 1}), capabilities(false)) {
			if d.kind() == "StatefulSet" {
				sts = strict[appsv1.StatefulSet](t, d)
			}
		}
		if sts == nil {
			t.Fatal("no NATS StatefulSet")
		}
		var hostPath string
		for _, v := range sts.Spec.Template.Spec.Volumes {
			if v.Name == "data" && v.HostPath != nil {
				hostPath = v.HostPath.Path
			}
		}
		if sc := sts.Spec.Template.Spec.SecurityContext; sc == nil || sc.RunAsUser == nil || (*sc.RunAsUser == 0) != disabled {
			t.Errorf("local-storage disabled %v: NATS securityContext %+v; want root only on the root-owned hostPath", disabled, sc)
		}
		if disabled && (hostPath != NATSHostPath || len(sts.Spec.VolumeClaimTemplates) != 0) {
			t.Errorf("local-storage disabled: data hostPath %q, %d PVC templates; want %s and none", hostPath, len(sts.Spec.VolumeClaimTemplates), NATSHostPath)
		}
		if !disabled && (hostPath != "" || len(sts.Spec.VolumeClaimTemplates) != 1) {
			t.Errorf("local-storage on: data hostPath %q, %d PVC templates; want a PVC", hostPath, len(sts.Spec.VolumeClaimTemplates))
		}
	}
}

// The gateway's LoadBalancer puts its ports on the node's addresses: only
// the media ports belong there. Prometheus scrapes a ClusterIP Service.
func TestAnalyticsGatewayMetricsService(t *testing.T) {
	docs := render(t, loadChart(t), values(t, appliance(nil), Node{GPUs: 1}), capabilities(false))
	var lb, metrics *corev1.Service
	for _, d := range docs {
		if d.kind() != "Service" {
			continue
		}
		svc := strict[corev1.Service](t, d)
		if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
			lb = svc
		}
		if slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == "metrics" }) {
			metrics = svc
		}
	}
	if lb == nil || metrics == nil {
		t.Fatalf("LoadBalancer %v, metrics Service %v: want both", lb != nil, metrics != nil)
	}
	if metrics.Name == lb.Name {
		t.Errorf("Service %s publishes the metrics port on the node's addresses", lb.Name)
	}
	if metrics.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("metrics Service %s is %s, want ClusterIP", metrics.Name, metrics.Spec.Type)
	}
}

// The stock worker images (DeepStream, DL Streamer) serve no metrics: a
// scraped worker would be a target that is always down.
func TestAnalyticsScrapesOnlyWhatIsServed(t *testing.T) {
	for _, d := range render(t, loadChart(t), values(t, appliance(nil), Node{GPUs: 1}), capabilities(false)) {
		if d.kind() == "Deployment" && strings.Contains(d.name(), "-worker-") &&
			strict[appsv1.Deployment](t, d).Spec.Template.Annotations["prometheus.io/scrape"] != "" {
			t.Errorf("%s is scraped, but its image serves no metrics", d.name())
		}
	}
}

// Under MIG the workers request what the device plugin advertises: one
// slot per MIG instance (x shares), each asking for its own resource, so
// none waits forever for an nvidia.com/gpu that MIG GPUs do not offer.
func TestAnalyticsMIG(t *testing.T) {
	c := loadChart(t)
	for _, tt := range []struct {
		name string
		res  []GPUResource
		gpus int
		want map[string]int // resource -> workers requesting it
	}{
		{"single", []GPUResource{{Name: "nvidia.com/gpu", Count: 7}}, 1, map[string]int{"nvidia.com/gpu": 7}},
		{"mixed", []GPUResource{{Name: "nvidia.com/gpu", Count: 1}, {Name: "nvidia.com/mig-1g.10gb", Count: 2}, {Name: "nvidia.com/mig-3g.40gb", Count: 1}}, 2,
			map[string]int{"nvidia.com/gpu": 1, "nvidia.com/mig-1g.10gb": 2, "nvidia.com/mig-3g.40gb": 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := appliance(func(a *Appliance) { a.Pipeline.Streams = streams(12) })
			got := map[string]int{}
			for _, d := range render(t, c, values(t, a, Node{GPUs: tt.gpus, GPUResources: tt.res}), capabilities(false)) {
				if d.kind() != "Deployment" || !strings.Contains(d.name(), "-worker-") {
					continue
				}
				ctr := strict[appsv1.Deployment](t, d).Spec.Template.Spec.Containers[0]
				for name, q := range ctr.Resources.Limits {
					if strings.HasPrefix(string(name), "nvidia.com/") {
						if q.Value() != 1 {
							t.Errorf("%s: %s limit %v, want 1", d.name(), name, q.String())
						}
						got[string(name)]++
					}
				}
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("workers request %v, want %v", got, tt.want)
			}
		})
	}
}
