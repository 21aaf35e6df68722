package status

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/perchedge/perch/gpu"
	"github.com/perchedge/perch/manifests/render"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var since = time.Date(2026, 11, 28, 19, 52, 3, 0, time.UTC)

func a100() *gpu.Inventory {
	return &gpu.Inventory{DriverVersion: "550.54.15", CUDADriverVersion: "12.4", GPUs: []gpu.Device{
		{Index: 0, Name: "NVIDIA A100-SXM4-40GB", UUID: "GPU-8a3b2c1d", MemoryMiB: 40960, BusID: "00000000:07:00.0", ComputeMajor: 8, ComputeMinor: 0, Family: "ampere"},
	}}
}

func node1() Node {
	return Node{Name: "edge-01", Ready: true, Roles: []string{"control-plane", "master"}, KubeletVersion: "v1.31.1+k3s1",
		GPUCapacity: 1, GPUAllocatable: 1, GPUProduct: "NVIDIA-A100-SXM4-40GB", GPUCount: 1}
}

func readyApp(name, ns, version string, w ...Workload) App {
	a := App{Name: name, Namespace: ns, Chart: name + "-" + version, Version: version, Job: JobSucceeded, State: AppReady, Workloads: w, Release: 1}
	for _, x := range w {
		a.Pods += int(x.Ready)
	}
	a.PodsReady = a.Pods
	return a
}

// healthyReport is a converged single-node appliance.
func healthyReport() *Report {
	return &Report{
		Cluster: Cluster{Reachable: true},
		Nodes:   []Node{node1()},
		GPUs:    a100(),
		Apps: []App{
			readyApp("nvidia-device-plugin", "nvidia-device-plugin", "0.17.0", Workload{"daemonset", "nvidia-device-plugin", 1, 1, true}),
			readyApp("perch-monitoring", "monitoring", "0.1.0",
				Workload{"deployment", "perch-monitoring-kube-state-metrics", 1, 1, true},
				Workload{"daemonset", "perch-monitoring-node-exporter", 1, 1, true},
				Workload{"statefulset", "perch-monitoring-prometheus", 1, 1, true}),
			readyApp("dcgm-exporter", "nvidia-device-plugin", "4.1.1", Workload{"daemonset", "dcgm-exporter", 1, 1, true}),
			readyApp("perch-analytics", "perch", "0.1.0",
				Workload{"deployment", "perch-analytics-api", 2, 2, true},
				Workload{"deployment", "perch-analytics-worker", 1, 1, true}),
		},
		Registry: Registry{Enabled: true, Address: "127.0.0.1:5000", Healthy: true},
		Alerts:   Alerts{Available: true, Firing: []Alert{}},
	}
}

// sickReport has something wrong in every section.
func sickReport() *Report {
	r := healthyReport()
	n2 := Node{Name: "edge-02", Roles: []string{}, KubeletVersion: "v1.31.1+k3s1", Reason: "Kubelet stopped posting node status.", GPUCount: 2, GPUProduct: "NVIDIA-L4"}
	n1 := node1()
	n1.GPUAllocatable = 0
	r.Nodes = []Node{n1, n2}
	r.Apps[0] = App{Name: "nvidia-device-plugin", Namespace: "nvidia-device-plugin", Version: "0.17.0", Job: JobRunning, JobFailures: 3, State: AppProgressing,
		Workloads: []Workload{}, Reason: "helm-install-nvidia-device-plugin is running (3 failed attempts)"}
	r.Apps[3] = App{Name: "perch-analytics", Namespace: "perch", Version: "0.1.0", Job: JobSucceeded,
		Workloads: []Workload{{"deployment", "perch-analytics-api", 2, 2, true}, {"deployment", "perch-analytics-worker", 0, 1, false}},
		Release:   3, Pods: 3, PodsReady: 2,
		Unready: []PodState{{Namespace: "perch", Name: "perch-analytics-worker-7c9d8-k2x4q", Phase: "Pending",
			Image: "nvcr.io/nvidia/deepstream:7.1-triton-multiarch", NotInBundle: true,
			Reason: "cannot pull nvcr.io/nvidia/deepstream:7.1-triton-multiarch (ImagePullBackOff): not in the bundle site 1.0.0; add it to the bundle spec's images, rebuild the bundle and install it"}},
		State:  AppFailed,
		Reason: "pod perch/perch-analytics-worker-7c9d8-k2x4q cannot pull nvcr.io/nvidia/deepstream:7.1-triton-multiarch (ImagePullBackOff): not in the bundle site 1.0.0; add it to the bundle spec's images, rebuild the bundle and install it"}
	r.Apps = append(r.Apps, App{Name: "extra-app", Namespace: "default", Job: JobFailed, State: AppFailed, Workloads: []Workload{},
		Reason: "helm-install-extra-app failed: Job has reached the specified backoff limit"})
	r.Registry = Registry{Enabled: true, Address: "127.0.0.1:5000", Error: "/healthz: dial tcp 127.0.0.1:5000: connect: connection refused"}
	r.Alerts = Alerts{Available: true, Firing: []Alert{
		{Name: "PerchGPUXidErrors", Severity: "critical", Summary: "GPU 0 reported Xid 79 (fallen off the bus)", Since: since, For: "12m", Labels: map[string]string{"alertname": "PerchGPUXidErrors", "gpu": "0", "severity": "critical"}},
		{Name: "PerchStreamStalled", Severity: "warning", Summary: "Stream cam-3 has produced no frames for 2 minutes", Since: since, For: "3h", Labels: map[string]string{"alertname": "PerchStreamStalled", "severity": "warning"}},
	}}
	return r
}

// unreachableReport is a node where k3s is not running: GPUs and registry
// are still known.
func unreachableReport() *Report {
	return &Report{
		Cluster:  Cluster{Error: "API server 127.0.0.1:6443: dial tcp 127.0.0.1:6443: connect: connection refused"},
		Nodes:    []Node{},
		GPUs:     &gpu.Inventory{GPUs: []gpu.Device{}, Reason: gpu.NoDriverReason},
		Apps:     []App{},
		Registry: Registry{Note: "registry.enabled is false"},
		Alerts:   Alerts{Note: "Prometheus not reachable (no cluster)", Firing: []Alert{}},
	}
}

func TestJudge(t *testing.T) {
	for _, tc := range []struct {
		name string
		rep  func() *Report
		want []string
	}{
		{"healthy", healthyReport, nil},
		{"sick", sickReport, []string{
			"node edge-02 not Ready",
			"node edge-01 offers no nvidia.com/gpu",
			"app nvidia-device-plugin progressing",
			"app perch-analytics failed",
			"app extra-app failed",
			"registry not healthy",
			"1 critical alert firing",
		}},
		{"unreachable", unreachableReport, []string{"cluster not reachable"}},
		{"warnings only", func() *Report {
			r := healthyReport()
			r.Alerts.Firing = sickReport().Alerts.Firing[1:]
			return r
		}, nil},
		{"no device plugin: unallocated GPUs are meant", func() *Report {
			r := healthyReport()
			r.Apps = r.Apps[1:]
			r.Nodes[0].GPUAllocatable, r.Nodes[0].GPUCapacity = 0, 0
			return r
		}, nil},
		{"GPU driver broken", func() *Report {
			r := healthyReport()
			r.GPUs, r.GPUError = nil, "nvml Init: ERROR_DRIVER_NOT_LOADED"
			return r
		}, []string{"GPUs unreadable"}},
		{"apps cannot be listed", func() *Report {
			r := healthyReport()
			r.Apps, r.AppsError = []App{}, "list HelmCharts: forbidden"
			return r
		}, []string{"apps unknown"}},
		{"Prometheus down with monitoring deployed", func() *Report {
			r := healthyReport()
			r.Alerts = Alerts{Note: "Prometheus not reachable: no endpoints available", Firing: []Alert{}}
			return r
		}, []string{"Prometheus not reachable"}},
		{"no Prometheus without monitoring", func() *Report {
			r := healthyReport()
			r.Apps = slices.DeleteFunc(r.Apps, func(a App) bool { return a.Name == render.Monitoring })
			r.Alerts = Alerts{Note: "not available (monitoring not deployed)", Firing: []Alert{}}
			return r
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.rep()
			Judge(r)
			if r.Healthy != (len(tc.want) == 0) || !reflect.DeepEqual(r.Reasons, tc.want) {
				t.Errorf("healthy=%v reasons=%q, want %q", r.Healthy, r.Reasons, tc.want)
			}
		})
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it; review the diff):\n--- got\n%s--- want\n%s", p, got, want)
	}
}

func TestText(t *testing.T) {
	for _, tc := range []struct {
		name string
		rep  func() *Report
	}{
		{"healthy", healthyReport},
		{"sick", sickReport},
		{"unreachable", unreachableReport},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.rep()
			Judge(r)
			var b bytes.Buffer
			if err := WriteText(&b, r); err != nil {
				t.Fatal(err)
			}
			out := b.String()
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			// all but the verdict, which stays one line for scripts
			for i, l := range lines[:len(lines)-1] {
				if n := len([]rune(l)); n > width {
					t.Errorf("line %d is %d columns, more than %d: %q", i+1, n, width, l)
				}
			}
			last := lines[len(lines)-1]
			if want := "Status    not healthy: " + strings.Join(r.Reasons, ", "); r.Healthy && last != "Status    healthy" || !r.Healthy && last != want {
				t.Errorf("healthy=%v but the last line is %q", r.Healthy, last)
			}
			golden(t, tc.name+".txt", b.Bytes())
		})
	}
}

func TestJSON(t *testing.T) {
	r := sickReport()
	Judge(r)
	var b bytes.Buffer
	if err := WriteJSON(&b, r); err != nil {
		t.Fatal(err)
	}
	golden(t, "sick.json", b.Bytes())
	// what scripts read it back into is the same report
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, r) {
		t.Errorf("JSON does not round-trip:\n got %+v\nwant %+v", back, *r)
	}
}

func TestWrap(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want []string
	}{
		{"", 10, []string{""}},
		{"a b c", 10, []string{"a b c"}},
		{"aaaa bbbb cccc", 9, []string{"aaaa bbbb", "cccc"}},
		{"https://127.0.0.1:6443/a/very/long/url short", 10, []string{"https://127.0.0.1:6443/a/very/long/url", "short"}},
	} {
		if got := wrap(tc.in, tc.n); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("wrap(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestWorkloadJudgement(t *testing.T) {
	two := int32(2)
	for _, tc := range []struct {
		name string
		got  Workload
		want Workload
	}{
		{"deployment rolled out", deploymentWorkload(&appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "api", Generation: 3}, Spec: appsv1.DeploymentSpec{Replicas: &two},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 3, Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2}}),
			Workload{"deployment", "api", 2, 2, true}},
		{"deployment not observed yet", deploymentWorkload(&appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "api", Generation: 4}, Spec: appsv1.DeploymentSpec{Replicas: &two},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 3, Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2}}),
			Workload{"deployment", "api", 2, 2, false}},
		{"deployment with an old pod left", deploymentWorkload(&appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "api"}, Spec: appsv1.DeploymentSpec{Replicas: &two},
			Status: appsv1.DeploymentStatus{Replicas: 3, UpdatedReplicas: 2, AvailableReplicas: 3}}),
			Workload{"deployment", "api", 3, 2, false}},
		{"statefulset defaults to one replica", statefulSetWorkload(&appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Name: "db"}, Status: appsv1.StatefulSetStatus{ReadyReplicas: 1, UpdatedReplicas: 1}}),
			Workload{"statefulset", "db", 1, 1, true}},
		{"daemonset on no node yet", daemonSetWorkload(&appsv1.DaemonSet{
			ObjectMeta: metav1.ObjectMeta{Name: "plugin"}}),
			Workload{"daemonset", "plugin", 0, 0, true}},
		{"daemonset pod not ready", daemonSetWorkload(&appsv1.DaemonSet{
			ObjectMeta: metav1.ObjectMeta{Name: "plugin"}, Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 1, UpdatedNumberScheduled: 1}}),
			Workload{"daemonset", "plugin", 0, 1, false}},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, tc.got, tc.want)
		}
	}
}
