//go:build integration

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/perchedge/perch/internal/e2e"
	"github.com/perchedge/perch/internal/testimages"
)

// e2eClusterToken is node.token in testdata/e2e.yaml.
const e2eClusterToken = "e2e-planted-cluster-token-6f1d2c"

// TestE2EAppliance is the end-to-end tier (scripts/e2e, make e2e): a whole
// appliance from a signed bundle that perch bundle build made, on the real
// k3s fixture with real pods. Its images are built here from source
// (internal/e2e names the stand-ins); ffmpeg plays the camera.
func TestE2EAppliance(t *testing.T) {
	s := newSandbox(t)
	s.env = []string{"PERCH_SANDBOX_CNI=bridge", fmt.Sprintf("PERCH_REGISTRY_PORT=%d", freePort(t))}
	cfg := readFile(t, "../../testdata/e2e.yaml")
	if !strings.Contains(cfg, "  token: "+e2eClusterToken+"\n") {
		t.Fatal("testdata/e2e.yaml must set node.token to e2eClusterToken, which the test looks for in perch's output")
	}
	must(t, os.WriteFile(s.cfg, []byte(cfg), 0o644))
	// the fixture's k3s lacks the containerd binary upstream's unpacks: a
	// link to the multi-call binary stands in (see newAgentNode)
	bin := filepath.Join(s.root, "usr/local/bin")
	must(t, os.MkdirAll(bin, 0o755))
	must(t, os.Symlink("k3s", filepath.Join(bin, "containerd")))

	work := t.TempDir()
	bundle, key, images := filepath.Join(work, "perch-e2e"), filepath.Join(work, "site"), filepath.Join(work, "images")
	start := time.Now()
	_, err := e2e.Build(context.Background(), e2e.Options{Perch: perchBin, K3s: os.Getenv("PERCH_K3S_BIN"), Out: bundle, Key: key,
		Config: "../../testdata/e2e.yaml", Log: logWriter{t}, Work: images})
	must(t, err)
	t.Logf("timing: images and signed bundle built in %s", time.Since(start).Round(time.Millisecond))

	// the site forwards to a central store: the same Prometheus, on the
	// host, started once the sandbox's bridge has its address
	promBin, err := testimages.MonitoringBinary(images, "prometheus")
	must(t, err)
	store := newCentral(t, promBin)
	cfg = readFile(t, s.cfg)
	if !strings.HasSuffix(cfg, "  scrapeInterval: 15s\n") {
		t.Fatal("testdata/e2e.yaml must end with monitoring.scrapeInterval: 15s (the test appends remoteWrite after it, and times the alerts by it)")
	}
	must(t, os.WriteFile(s.cfg, []byte(cfg+store.remoteWrite()), 0o644))
	rules := readRules(t)

	installArgs := []string{"--bundle", bundle, "--pubkey", key + ".pub"}
	cam := startCamera(t, s.root)
	start = time.Now()
	out, took := s.install(installArgs...)
	t.Logf("install:\n%s", out)
	t.Logf("timing: install %s; node Ready after %s, gateway and NATS Running after %s, camera publishing after %s",
		took.Round(time.Millisecond), cam.since(start, "node Ready"), cam.since(start, "gateway and NATS Running"), cam.since(start, "camera publishing"))
	if !strings.Contains(out, "[registry-images] 11 images") {
		t.Errorf("install did not load the bundle's 11 images:\n%s", out)
	}

	outputs := []string{out}
	cs := s.client()
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	for _, sel := range []string{"app.kubernetes.io/component=gateway", "app.kubernetes.io/component=nats", "app.kubernetes.io/component=worker"} {
		pods, err := cs.CoreV1().Pods("perch").List(ctx, metav1.ListOptions{LabelSelector: sel})
		must(t, err)
		if len(pods.Items) == 0 || pods.Items[0].Status.Phase != corev1.PodRunning {
			t.Errorf("%s: pods %v, want one Running", sel, podPhases(pods.Items))
		}
	}
	// every source Prometheus scrapes answers: the pipeline, the
	// exporters, the kubelet and cAdvisor, the API server, the registry
	targets := waitTargetsUp(ctx, t, cs, []string{"prometheus", "alertmanager", "perch-gateway", "perch-nats", "node-exporter",
		"kube-state-metrics", "kubelet", "cadvisor", "apiserver", "perch-registry", "etcd"})
	for _, tg := range targets {
		t.Logf("target up: %-20s %s", tg.Labels["job"], tg.ScrapeURL)
	}
	// the stack's own memory, from cAdvisor through Prometheus
	sleepCtx(ctx, 30*time.Second)
	if rss, err := promQuery(ctx, cs, `sum(container_memory_rss{namespace="monitoring",container!=""})`, time.Time{}); err != nil || len(rss) != 1 {
		t.Errorf("monitoring stack RSS: %v %v", rss, err)
	} else {
		t.Logf("memory: monitoring stack RSS %.1f MiB (goal 350 MiB)", rss[0]/(1<<20))
	}

	st, code := s.perch("status", "--config", s.cfg, "--root", s.root)
	t.Logf("perch status (exit %d):\n%s", code, st)
	if code != 0 {
		t.Errorf("perch status exited %d after install; want healthy (camera: %s)", code, cam.err())
	}
	js, _ := s.perch("status", "--config", s.cfg, "--root", s.root, "-o", "json")
	outputs = append(outputs, st, js)
	store.start(t)
	t.Logf("timing: the central store got the site's samples %s after it started", store.waitForwarded(ctx, t, 3*time.Minute).Round(time.Second))

	// a Prometheus restart keeps what it had: an instant query at a time
	// before the restart still answers
	beforeRestart := time.Now()
	sleepCtx(ctx, 20*time.Second)
	const promPod = "perch-monitoring-prometheus-0"
	old, err := cs.CoreV1().Pods("monitoring").Get(ctx, promPod, metav1.GetOptions{})
	must(t, err)
	must(t, cs.CoreV1().Pods("monitoring").Delete(ctx, promPod, metav1.DeleteOptions{}))
	restarted := time.Now()
	waitReplaced(ctx, t, cs, "monitoring", promPod, old.UID)
	var v []float64
	for time.Since(restarted) < 4*time.Minute {
		if v, err = promQuery(ctx, cs, `up{job="prometheus"}`, beforeRestart); err == nil {
			break
		}
		sleepCtx(ctx, 2*time.Second)
	}
	if err != nil || len(v) != 1 || v[0] != 1 {
		t.Errorf("after a Prometheus restart, the samples from before it are gone: %v %v", v, err)
	} else {
		t.Logf("timing: Prometheus replaced and answering in %s; samples from before the restart are kept", time.Since(restarted).Round(time.Second))
	}

	// the central store cut while the camera is down
	cam = outageAndStreamDown(ctx, t, s, cs, cam, store, rules)
	// what the alerts and dashboards read exists, now that the stream
	// has been down and up again
	checkRuleSeries(ctx, t, cs, rules)
	checkDashboards(ctx, t, cs)

	// a second install changes nothing
	start = time.Now()
	out, took = s.install(installArgs...)
	outputs = append(outputs, out)
	t.Logf("timing: no-op rerun %s", took.Round(time.Millisecond))
	if !strings.Contains(out, "no changes, the node already matched the config") {
		t.Errorf("second install changed something:\n%s", out)
	}

	// the stream is readable as HLS through the gateway's Service
	hls := cam.gatewayURL(8888) + "/cam1/index.m3u8"
	seg := hlsSegment(ctx, t, hls)
	probe, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0", seg).Output()
	if err != nil || !strings.HasPrefix(strings.TrimSpace(string(probe)), "h264,320,240") {
		t.Errorf("HLS segment of %s: ffprobe says %q (%v), want h264,320,240", hls, probe, err)
	}

	// one camera URL changes: the gateway rolls, nothing else restarts
	before := podUIDs(ctx, t, cs)
	must(t, os.WriteFile(s.cfg, []byte(strings.Replace(readFile(t, s.cfg), "rtsp://127.0.0.1:8554/ingest/cam1", "rtsp://localhost:8554/ingest/cam1", 1)), 0o644))
	out, took = s.install(installArgs...)
	t.Logf("install after the camera URL changed:\n%s", out)
	outputs = append(outputs, out)
	t.Logf("timing: camera URL change rolled out in %s", took.Round(time.Millisecond))
	if !strings.Contains(out, "waiting for helm-controller to start installing the new values of perch-analytics") ||
		!strings.Contains(out, "0 created, 1 updated, 0 deleted, 0 started, 0 restarted") {
		t.Errorf("install after a camera URL change: want the app's manifest alone updated, then its rollout waited for:\n%s", out)
	}
	after := podUIDs(ctx, t, cs)
	for comp, uid := range before {
		if comp == "gateway" && after[comp] == uid {
			t.Errorf("the gateway pod %s was not replaced after its camera URL changed", uid)
		}
		if comp != "gateway" && after[comp] != uid {
			t.Errorf("%s pod replaced (%s -> %s) by a camera URL change that is the gateway's alone", comp, uid, after[comp])
		}
	}
	st, code = s.perch("status", "--config", s.cfg, "--root", s.root)
	if code != 0 {
		t.Errorf("perch status exited %d after the camera change:\n%s", code, st)
	}
	// a power cut: perch install brings the node back, and Prometheus
	// starts from what it had on disk. Its WAL page in memory when it was
	// killed (a scrape or so) is lost, as on a real cut; what is older is
	// counted again to the sample.
	const kept = `count_over_time(up{job="prometheus"}[15m])`
	cutAt := time.Now()
	had, err := promQuery(ctx, cs, kept, cutAt.Add(-time.Minute))
	if err != nil || len(had) == 0 {
		t.Fatalf("before the power cut: %s: %v %v", kept, had, err)
	}
	s.powerCycle(ctx)
	out, took = s.install(installArgs...)
	outputs = append(outputs, out)
	t.Logf("timing: install after the power cut %s", took.Round(time.Millisecond))
	var still []float64
	for time.Since(cutAt) < 5*time.Minute {
		if still, err = promQuery(ctx, cs, kept, cutAt.Add(-time.Minute)); err == nil && len(still) > 0 {
			break
		}
		sleepCtx(ctx, 2*time.Second)
	}
	p, perr := cs.CoreV1().Pods("monitoring").Get(ctx, promPod, metav1.GetOptions{})
	switch {
	case perr != nil || len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].State.Running == nil ||
		!p.Status.ContainerStatuses[0].State.Running.StartedAt.After(cutAt):
		t.Errorf("Prometheus did not start again after the power cut: %v", perr)
	case err != nil || len(still) != 1 || still[0] != had[0]:
		t.Errorf("after the power cut Prometheus has %v samples of up{job=\"prometheus\"} from before it, had %v (%v)", still, had, err)
	default:
		t.Logf("power cut: Prometheus started again with all %.0f samples of up{job=\"prometheus\"} of the 15 minutes to a minute before it", had[0])
	}
	for start := time.Now(); time.Since(start) < 4*time.Minute; sleepCtx(ctx, 5*time.Second) {
		if st, code = s.perch("status", "--config", s.cfg, "--root", s.root); code == 0 {
			break
		}
	}
	if code != 0 {
		t.Errorf("perch status exited %d after the power cut:\n%s", code, st)
	}

	// the remote-write password is in its Secret alone
	assertSecretAbsent(t, s.root, store.password, append(outputs, st)...)
	// the cluster token is k3s's, in its own files, and never in perch's
	// output
	for i, out := range append(outputs, st) {
		if strings.Contains(out, e2eClusterToken) {
			t.Errorf("output %d contains the cluster token", i)
		}
	}
	cam.stop()

	out, code = s.perch("uninstall", "--root", s.root, "--init", "none", "--purge", "--yes")
	if code != 0 {
		t.Fatalf("uninstall exited %d:\n%s", code, out)
	}
	t.Logf("uninstall:\n%s", out)
	if strings.Contains(out, store.password) {
		t.Error("uninstall printed the remote-write password")
	}
	must(t, os.Remove(filepath.Join(bin, "containerd"))) // the test's own stand-in
	assertNothingLeft(t, s.root)
}

// logWriter sends the bundle build's lines to the test log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// camera pushes ffmpeg's test pattern into the gateway's ingest path as
// soon as the gateway's Service exists, as a camera that reconnects would,
// and records when the appliance reached each milestone.
type camera struct {
	mu        sync.Mutex
	at        map[string]time.Time
	clusterIP string
	metricsIP string // the gateway's metrics Service, kept off the LoadBalancer
	lastErr   string
	cancel    context.CancelFunc
	done      chan struct{}
}

func startCamera(t *testing.T, root string) *camera {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Fatal("ffmpeg not found: install it (scripts/test-deps)")
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &camera{at: map[string]time.Time{}, cancel: cancel, done: make(chan struct{})}
	t.Cleanup(c.stop)
	go c.run(ctx, filepath.Join(root, "etc/perch/kubeconfig"))
	return c
}

func (c *camera) mark(what string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.at[what]; !ok {
		c.at[what] = time.Now()
	}
}

func (c *camera) since(start time.Time, what string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	at, ok := c.at[what]
	if !ok {
		return "(not seen)"
	}
	return at.Sub(start).Round(time.Millisecond).String()
}

func (c *camera) err() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastErr == "" {
		return "ffmpeg said nothing"
	}
	return "ffmpeg: " + c.lastErr
}

func (c *camera) gatewayURL(port int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("http://%s:%d", c.clusterIP, port)
}

func (c *camera) metricsURL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("http://%s:9998/metrics", c.metricsIP)
}

func (c *camera) stop() {
	c.cancel()
	<-c.done
}

func (c *camera) run(ctx context.Context, kubeconfig string) {
	defer close(c.done)
	var cs *kubernetes.Clientset
	for ctx.Err() == nil {
		if cs == nil {
			if rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig); err == nil {
				cs, _ = kubernetes.NewForConfig(rc)
			}
		}
		if cs != nil {
			c.observe(ctx, cs)
		}
		c.mu.Lock()
		ip := c.clusterIP
		c.mu.Unlock()
		if ip == "" {
			sleepCtx(ctx, time.Second)
			continue
		}
		cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
			"-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
			"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25", "-pix_fmt", "yuv420p",
			"-f", "rtsp", "-rtsp_transport", "tcp", "rtsp://"+ip+":8554/ingest/cam1")
		stderr, _ := cmd.StderrPipe()
		if err := cmd.Start(); err != nil {
			c.mu.Lock()
			c.lastErr = err.Error()
			c.mu.Unlock()
			return
		}
		go c.observeWhile(ctx, cs)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			c.mu.Lock()
			c.lastErr = sc.Text()
			c.mu.Unlock()
		}
		cmd.Wait()
		sleepCtx(ctx, 2*time.Second)
	}
}

// observe records milestones and the gateway's address.
func (c *camera) observe(ctx context.Context, cs *kubernetes.Clientset) {
	if nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err == nil {
		for _, n := range nodes.Items {
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					c.mark("node Ready")
				}
			}
		}
	}
	if svc, err := cs.CoreV1().Services("perch").Get(ctx, "perch-analytics-gateway", metav1.GetOptions{}); err == nil {
		c.mu.Lock()
		c.clusterIP = svc.Spec.ClusterIP
		c.mu.Unlock()
	}
	if svc, err := cs.CoreV1().Services("perch").Get(ctx, "perch-analytics-gateway-metrics", metav1.GetOptions{}); err == nil {
		c.mu.Lock()
		c.metricsIP = svc.Spec.ClusterIP
		c.mu.Unlock()
	}
	if pods, err := cs.CoreV1().Pods("perch").List(ctx, metav1.ListOptions{}); err == nil {
		running := map[string]bool{}
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				running[p.Labels["app.kubernetes.io/component"]] = true
			}
		}
		if running["gateway"] && running["nats"] {
			c.mark("gateway and NATS Running")
		}
	}
}

// observeWhile keeps observing while ffmpeg runs, and marks the camera
// publishing once the gateway's metrics say so.
func (c *camera) observeWhile(ctx context.Context, cs *kubernetes.Clientset) {
	for ctx.Err() == nil {
		if cs != nil {
			c.observe(ctx, cs)
		}
		if body, err := httpGet(ctx, c.metricsURL()); err == nil && strings.Contains(body, `paths{name="ingest/cam1",state="ready"} 1`) {
			c.mark("camera publishing")
		}
		sleepCtx(ctx, time.Second)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func httpGet(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(body), err
}

// hlsSegment fetches the playlist at url until it lists a segment, and
// saves that segment to a file.
func hlsSegment(ctx context.Context, t *testing.T, url string) string {
	t.Helper()
	var last string
	for ctx.Err() == nil {
		pl, err := httpGet(ctx, url)
		if err == nil {
			for _, line := range strings.Split(pl, "\n") {
				line = strings.TrimSpace(line)
				if line == "" || strings.HasPrefix(line, "#") {
					continue
				}
				segURL := line
				if !strings.HasPrefix(line, "http") {
					segURL = url[:strings.LastIndex(url, "/")+1] + line
				}
				data, err := httpGet(ctx, segURL)
				if err != nil {
					t.Fatalf("segment %s of %s: %v", segURL, url, err)
				}
				p := filepath.Join(t.TempDir(), "segment.ts")
				must(t, os.WriteFile(p, []byte(data), 0o644))
				t.Logf("HLS: %s lists %s (%d bytes)", url, line, len(data))
				return p
			}
		}
		last = fmt.Sprintf("%v %s", err, pl)
		time.Sleep(time.Second)
	}
	t.Fatalf("no HLS segment at %s: %s", url, last)
	return ""
}

func podPhases(pods []corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Name+"="+string(p.Status.Phase))
	}
	return out
}

// podUIDs maps each component of the pipeline to its pod's UID.
func podUIDs(ctx context.Context, t *testing.T, cs *kubernetes.Clientset) map[string]string {
	t.Helper()
	pods, err := cs.CoreV1().Pods("perch").List(ctx, metav1.ListOptions{})
	must(t, err)
	out := map[string]string{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			out[p.Labels["app.kubernetes.io/component"]] = string(p.UID)
		}
	}
	return out
}

// assertNothingLeft checks what uninstall --purge promises: no process,
// mount, interface, iptables rule, cgroup or file of the appliance.
func assertNothingLeft(t *testing.T, root string) {
	t.Helper()
	if procs := processesMentioning(root); len(procs) > 0 {
		t.Errorf("processes left after uninstall: %v", procs)
	}
	if shims, _ := exec.Command("pgrep", "-f", "containerd-shim.*/run/k3s/containerd").Output(); len(shims) > 0 {
		t.Errorf("container shims left after uninstall: %s", shims)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, root) || strings.Contains(line, "/run/k3s") || strings.Contains(line, "kubelet") {
			t.Errorf("mount left after uninstall: %s", line)
		}
	}
	if err := exec.Command("ip", "link", "show", "cni0").Run(); err == nil {
		t.Error("cni0 is still there after uninstall")
	}
	for _, tool := range []string{"iptables-save", "ip6tables-save"} {
		rules, _ := exec.Command(tool).Output()
		if strings.Contains(string(rules), "KUBE-") || strings.Contains(string(rules), "CNI-") {
			t.Errorf("%s still has KUBE-/CNI- rules after uninstall", tool)
		}
	}
	if left, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods"); len(left) > 0 {
		t.Errorf("kubepods cgroups left: %v", left)
	}
	if entries, err := os.ReadDir(root); err == nil && len(entries) > 0 {
		var names []string
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				names = append(names, strings.TrimPrefix(p, root))
			}
			return nil
		})
		if len(names) > 0 {
			t.Errorf("files left under the root after uninstall --purge: %v", names)
		}
	}
}

// prometheusGet asks the appliance's Prometheus through the API server's
// service proxy, as perch status does.
func prometheusGet(ctx context.Context, cs *kubernetes.Clientset, path string, params map[string]string) ([]byte, error) {
	return cs.CoreV1().Services("monitoring").ProxyGet("http", "perch-monitoring-prometheus", "9090", path, params).DoRaw(ctx)
}

type promTarget struct {
	Labels    map[string]string `json:"labels"`
	Health    string            `json:"health"`
	LastError string            `json:"lastError"`
	ScrapeURL string            `json:"scrapeUrl"`
}

// waitTargetsUp waits until every active target is up and every job in
// want has one, and returns them.
func waitTargetsUp(ctx context.Context, t *testing.T, cs *kubernetes.Clientset, want []string) []promTarget {
	t.Helper()
	var last []promTarget
	var lastErr error
	deadline := time.Now().Add(4 * time.Minute)
	for time.Now().Before(deadline) {
		body, err := prometheusGet(ctx, cs, "api/v1/targets", map[string]string{"state": "active"})
		if err == nil {
			var resp struct {
				Data struct {
					ActiveTargets []promTarget `json:"activeTargets"`
				} `json:"data"`
			}
			err = json.Unmarshal(body, &resp)
			last = resp.Data.ActiveTargets
		}
		lastErr = err
		jobs := map[string]bool{}
		up := err == nil && len(last) > 0
		for _, tg := range last {
			jobs[tg.Labels["job"]] = true
			up = up && tg.Health == "up"
		}
		for _, j := range want {
			up = up && jobs[j]
		}
		if up {
			return last
		}
		sleepCtx(ctx, 5*time.Second)
	}
	for _, tg := range last {
		t.Logf("target %s %s: %s %s", tg.Labels["job"], tg.ScrapeURL, tg.Health, tg.LastError)
	}
	t.Fatalf("Prometheus targets not all up with jobs %v after 4m (last error %v)", want, lastErr)
	return nil
}

// promQuery runs an instant query and returns its vector's values.
func promQuery(ctx context.Context, cs *kubernetes.Clientset, query string, at time.Time) ([]float64, error) {
	params := map[string]string{"query": query}
	if !at.IsZero() {
		params["time"] = fmt.Sprintf("%d", at.Unix())
	}
	body, err := prometheusGet(ctx, cs, "api/v1/query", params)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &resp); err != nil || resp.Status != "success" {
		return nil, fmt.Errorf("query %q: %s (%v)", query, body, err)
	}
	var out []float64
	for _, r := range resp.Data.Result {
		var v float64
		fmt.Sscan(fmt.Sprint(r.Value[1]), &v)
		out = append(out, v)
	}
	return out, nil
}

// waitReplaced waits until the pod name is a new pod (not uid) and Ready.
func waitReplaced(ctx context.Context, t *testing.T, cs *kubernetes.Clientset, ns, name string, uid types.UID) {
	t.Helper()
	deadline := time.Now().Add(4 * time.Minute)
	for time.Now().Before(deadline) {
		if p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); err == nil && p.UID != uid {
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					return
				}
			}
		}
		sleepCtx(ctx, 2*time.Second)
	}
	t.Fatalf("pod %s/%s was not replaced by a Ready pod within 4m", ns, name)
}
