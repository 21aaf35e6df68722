//go:build integration

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/perchedge/perch/installer/k3s"
	"github.com/perchedge/perch/internal/testimages"
	"github.com/perchedge/perch/internal/testreg"
)

// The cluster tier's network: a bridge of its own on the host with a
// private subnet, one network namespace per node on it, and each node's
// pod subnet routed to it from every other node, as flannel's host-gw
// backend routes (the k3s fixture has no flannel; Debian's bridge and
// host-local plugins give each node its pods). Nothing leaves the bridge.
const (
	clusterBridge = "perch-cl0"
	clusterNet    = "10.77.0."
	clusterToken  = "cluster-planted-token-4c1e9a07b2d3"
)

func nodeIP(i int) string        { return fmt.Sprintf("%s%d", clusterNet, i) }
func podSubnet(i int) string     { return fmt.Sprintf("10.42.%d.0/24", i) }
func nodeNamespace(i int) string { return fmt.Sprintf("perch-cl%d", i) }

func sh(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// clusterNetwork makes the bridge and n nodes' namespaces, removed when
// the test ends.
func clusterNetwork(t *testing.T, n int) {
	exec.Command("ip", "link", "del", clusterBridge).Run() // a run killed before cleanup
	sh(t, "ip", "link", "add", clusterBridge, "type", "bridge")
	t.Cleanup(func() { exec.Command("ip", "link", "del", clusterBridge).Run() })
	sh(t, "ip", "addr", "add", clusterNet+"254/24", "dev", clusterBridge)
	sh(t, "ip", "link", "set", clusterBridge, "up")
	for i := 1; i <= n; i++ {
		ns, veth := nodeNamespace(i), fmt.Sprintf("pcl%d", i)
		exec.Command("ip", "netns", "del", ns).Run()
		sh(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		sh(t, "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
		sh(t, "ip", "link", "set", veth, "master", clusterBridge, "up")
		in := []string{"ip", "netns", "exec", ns}
		sh(t, append(in, "ip", "link", "set", "lo", "up")...)
		sh(t, append(in, "ip", "addr", "add", nodeIP(i)+"/24", "dev", "eth0")...)
		sh(t, append(in, "ip", "link", "set", "eth0", "up")...)
		sh(t, append(in, "ip", "route", "add", "default", "via", clusterNet+"254")...)
		sh(t, append(in, "sysctl", "-qw", "net.ipv4.ip_forward=1")...)
		for j := 1; j <= n; j++ {
			if j != i {
				sh(t, append(in, "ip", "route", "add", podSubnet(j), "via", nodeIP(j))...)
			}
		}
	}
}

// clusterNode is one node of the cluster tier: a sandbox in its own
// network namespace.
type clusterNode struct {
	*sandbox
	name string
	i    int
}

// TestClusterForms: three servers with embedded etcd (the first with
// clusterInit, two joining) and two agents, each in its own network
// namespace and sandbox, installed by perch install from one signed
// bundle on the real k3s fixture, become five Ready nodes whose pods reach
// each other across nodes, and every node's registries.yaml lists every
// server's registry.
func TestClusterForms(t *testing.T) {
	const servers, agents = 3, 2
	clusterNetwork(t, servers+agents)

	up := testreg.Start(t)
	ref := func(name string) string { return up.Addr + "/perch-test/" + name + ":1" }
	pause, err := testimages.Pause(t.TempDir())
	must(t, err)
	box, err := testimages.Busybox("sleep", "3600")
	must(t, err)
	// an image no node pulls before a server dies: pulling it then proves
	// the registries that are left serve it
	late, err := testimages.Busybox("sleep", "3601")
	must(t, err)
	var refs []string
	for name, img := range map[string]v1.Image{"pause": pause, "busybox": box, "busybox-late": late} {
		must(t, remote.Write(mustParse(t, ref(name)), img))
		refs = append(refs, ref(name))
	}
	slices.Sort(refs)

	var nodes []*clusterNode
	for i := 1; i <= servers+agents; i++ {
		name := fmt.Sprintf("srv-%d", i)
		if i > servers {
			name = fmt.Sprintf("agent-%d", i-servers)
		}
		cgroupRoot(t, "perch-"+name)
		n := &clusterNode{sandbox: newSandbox(t), name: name, i: i}
		// nsenter, not ip netns exec: that remounts /sys, and the cgroup
		// mounts under it with it, which the kubelet needs
		n.wrap = []string{"nsenter", "--net=/run/netns/" + nodeNamespace(i)}
		n.env = []string{"PERCH_SANDBOX_CNI=bridge", "PERCH_SANDBOX_POD_SUBNET=" + podSubnet(i)}
		nodes = append(nodes, n)
	}
	// one signed bundle, built once outside the nodes' namespaces (where
	// the upstream registry on the host's loopback is), carried to every
	// node
	bundle, key := newSandbox(t).imageBundle("site-cluster", "1.0.0", refs)
	must(t, os.RemoveAll(up.Storage))

	for _, n := range nodes {
		node := fmt.Sprintf("  hostname: %s\n  nodeIP: %s\n  token: %s\n", n.name, nodeIP(n.i), clusterToken)
		// five kubelets share the machine's cgroups: each keeps its pods
		// under a root of its own, or it would take the others' pod
		// cgroups for orphans and remove them
		agentArgs := "--pause-image=" + ref("pause") + ", --kubelet-arg=cgroup-root=/perch-" + n.name
		k3sArgs := "  extraArgs: [--flannel-backend=none, --disable-network-policy, " + agentArgs + "]\n"
		switch {
		case n.i == 1:
			node += "  clusterInit: true\n"
		case n.i <= servers:
			node += "  serverURL: https://" + nodeIP(1) + ":6443\n"
		default:
			node += "  serverURL: https://" + nodeIP(1) + ":6443\n"
			// the cluster's flags are the servers'
			k3sArgs = "  extraArgs: [" + agentArgs + "]\n"
		}
		cfg := readFile(t, n.cfg)
		if n.i > servers {
			cfg = strings.Replace(cfg, "  role: server\n", "  role: agent\n", 1)
		}
		for old, repl := range map[string]string{
			"  hostname: perch-test\n":                       node,
			"  binary: " + os.Getenv("PERCH_K3S_BIN") + "\n": "",
			"  disableAgent: true\n":                         "",
			"  extraArgs: [--flannel-backend=none]\n":        k3sArgs,
		} {
			if !strings.Contains(cfg, old) {
				t.Fatalf("test config lacks %q", old)
			}
			cfg = strings.Replace(cfg, old, repl, 1)
		}
		cfg += fmt.Sprintf("bundle:\n  source: %s\n  publicKey: %s.pub\n  allowMissing: [docker.io/rancher/klipper-helm:v0.9.3-build20241008]\npipeline:\n  enabled: false\n", bundle, key)
		must(t, os.WriteFile(n.cfg, []byte(cfg), 0o644))
		bin := filepath.Join(n.root, "usr/local/bin")
		must(t, os.MkdirAll(bin, 0o755))
		must(t, os.Symlink("k3s", filepath.Join(bin, "containerd")))
	}

	start := time.Now()
	// servers join etcd one at a time, as k3s wants; agents together
	for _, n := range nodes[:servers] {
		_, took := n.install()
		t.Logf("timing: %s installed in %s", n.name, took.Round(time.Second))
	}
	var wg sync.WaitGroup
	outs := make([]string, agents)
	codes := make([]int, agents)
	for k, n := range nodes[servers:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[k], codes[k] = n.perch("install", "--config", n.cfg, "--root", n.root, "--init", "none", "--yes")
		}()
	}
	wg.Wait()
	for k, code := range codes {
		if code != 0 {
			n := nodes[servers+k]
			logs, _ := filepath.Glob(filepath.Join(n.root, "var/log/perch/*"))
			for _, l := range append(logs, filepath.Join(n.root, "etc/rancher/k3s/config.yaml")) {
				b, _ := os.ReadFile(l)
				if len(b) > 4000 {
					b = b[len(b)-4000:]
				}
				t.Logf("%s: %s:\n%s", n.name, l, b)
			}
			t.Fatalf("%s: install exited %d:\n%s", n.name, code, outs[k])
		}
	}

	cs := clusterClient(t, nodes[0])
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	waitReady(ctx, t, cs, servers+agents)
	t.Logf("timing: first server started to %d nodes Ready in %s", servers+agents, time.Since(start).Round(time.Second))

	for _, n := range nodes {
		reg := readFile(t, filepath.Join(n.root, "etc/rancher/k3s/registries.yaml"))
		// a server lists the servers that were there when it installed;
		// the ones that join later reach its registries.yaml only when
		// its install runs again (an in-cluster reconciler is to come)
		last := servers
		if n.i <= servers {
			last = n.i
		}
		for i := 1; i <= last; i++ {
			host := nodeIP(i) + ":5000"
			if n.i == i {
				host = "127.0.0.1:5000"
			}
			if !strings.Contains(reg, "https://"+host) {
				t.Errorf("%s: registries.yaml does not list %s:\n%s", n.name, host, reg)
			}
		}
	}
	podsReachEachOther(ctx, t, cs, ref("busybox"), nodes)

	serverDies(t, nodes, servers, ref("busybox-late"))
}

// clusterClient reaches the cluster through the first server's address
// on the bridge: its kubeconfig names 127.0.0.1, its own namespace's.
func clusterClient(t *testing.T, first *clusterNode) *kubernetes.Clientset {
	raw, err := os.ReadFile(filepath.Join(first.root, "etc/perch/kubeconfig"))
	must(t, err)
	rc, err := clientcmd.RESTConfigFromKubeConfig(raw)
	must(t, err)
	rc.Host = "https://" + nodeIP(first.i) + ":6443"
	rc.Timeout = 10 * time.Second
	cs, err := kubernetes.NewForConfig(rc)
	must(t, err)
	return cs
}

func waitReady(ctx context.Context, t *testing.T, cs kubernetes.Interface, want int) {
	t.Helper()
	for {
		ready, state, err := readyNodes(ctx, cs)
		if len(ready) == want {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("%d of %d nodes Ready: %v (%v)", len(ready), want, state, err)
		}
		time.Sleep(2 * time.Second)
	}
}

// readyNodes are the names of the Ready nodes, and every node's state.
func readyNodes(ctx context.Context, cs kubernetes.Interface) (ready map[string]bool, state []string, err error) {
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, err
	}
	ready = map[string]bool{}
	for _, n := range nodes.Items {
		r := "NotReady"
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				r = "Ready"
				ready[n.Name] = true
			}
		}
		state = append(state, n.Name+" "+r)
	}
	return ready, state, nil
}

// podsReachEachOther runs busybox's httpd on every node (a DaemonSet) and
// on every node a pod that fetches a file from each of them: every pod
// reaches every other across the nodes' routes.
func podsReachEachOther(ctx context.Context, t *testing.T, cs kubernetes.Interface, image string, nodes []*clusterNode) {
	t.Helper()
	labels := map[string]string{"app": "reach"}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "reach", Namespace: "default"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					AutomountServiceAccountToken:  new(bool),
					TerminationGracePeriodSeconds: new(int64),
					Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					Containers: []corev1.Container{{Name: "httpd", Image: image,
						Command: []string{"/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/bin"}}},
				},
			},
		},
	}
	for {
		_, err := cs.AppsV1().DaemonSets("default").Create(ctx, ds, metav1.CreateOptions{})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("create DaemonSet: %v", err)
		}
		time.Sleep(time.Second) // the default ServiceAccount comes a moment after the API
	}
	var ips []string
	for {
		pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=reach"})
		ips = ips[:0]
		if err == nil {
			for _, p := range pods.Items {
				if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
					ips = append(ips, p.Status.PodIP)
				}
			}
		}
		if len(ips) == len(nodes) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%d of %d httpd pods running: %v", len(ips), len(nodes), err)
		}
		time.Sleep(2 * time.Second)
	}
	// From every node's namespace to every node's pod: the routes between
	// pod subnets and each node's bridge carry it. Probed with bash's
	// /dev/tcp from the node: busybox-static's wget crashes in glibc's
	// getaddrinfo inside a pod, and a pod-side probe program is still to
	// come.
	for _, n := range nodes {
		for _, ip := range ips {
			probe := exec.Command("nsenter", "--net=/run/netns/"+nodeNamespace(n.i), "timeout", "5", "bash", "-c",
				fmt.Sprintf("exec 3<>/dev/tcp/%s/8080 && printf 'GET /sh HTTP/1.0\\r\\n\\r\\n' >&3 && head -c 12 <&3", ip))
			out, err := probe.CombinedOutput()
			if err != nil || !strings.HasPrefix(string(out), "HTTP/1.") {
				t.Errorf("from %s to pod %s: %v %q", n.name, ip, err, out)
			}
		}
	}
	t.Logf("pods: each of %d nodes reached every node's pod (%v)", len(nodes), ips)
}

// cgroupRoot makes a cgroup of that name in every v1 hierarchy, for one
// node's kubelet to keep its pods under (--cgroup-root, which must
// exist), and removes it, deepest first, once the node is uninstalled.
func cgroupRoot(t *testing.T, name string) {
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*")
	var made []string
	for _, h := range hierarchies {
		if fi, err := os.Lstat(h); err != nil || !fi.IsDir() {
			continue // cpu and cpuacct are links to cpu,cpuacct
		}
		dir := filepath.Join(h, name)
		if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
			continue // a hierarchy that takes no children (unified under v1)
		}
		made = append(made, dir)
	}
	t.Cleanup(func() {
		for _, dir := range made {
			k3s.RemoveCgroupTree(dir)
		}
	})
}
