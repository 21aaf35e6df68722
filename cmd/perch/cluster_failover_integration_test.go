//go:build integration

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/perchedge/perch/installer/apps"
)

// serverDies kills every process of the first server, the one that
// started the cluster: its k3s, etcd, containerd, registry, supervisors
// and pods. The API keeps answering through the other servers, the pods
// on other nodes keep running, an agent still pulls an image it never had
// (from the servers' registries that are left), and perch status on
// another server names the dead one. A perch install, what brings a node
// back after a power cut, makes it rejoin.
func serverDies(t *testing.T, nodes []*clusterNode, servers int, lateImage string) {
	dead, alive, agent := nodes[0], nodes[1], nodes[servers]
	cs := clusterClient(t, alive)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	out, code := alive.perch("status", "--config", alive.cfg, "--root", alive.root)
	t.Logf("perch status of the %d-node cluster on %s (exit %d):\n%s", len(nodes), alive.name, code, out)
	if code != 0 {
		t.Errorf("perch status on a healthy cluster exited %d", code)
	}

	leader := leaseHolder(ctx, t, cs)
	t.Logf("failover: %s leads the servers' controllers", leader)
	before := reachPods(ctx, t, cs)
	delete(before, dead.name)
	api := probeAPI(cs)

	start := time.Now()
	killed := killNode(t, dead)
	t.Logf("failover: killed %d processes of %s", killed, dead.name)

	for {
		ready, state, err := readyNodes(ctx, cs)
		if err == nil && !ready[dead.name] {
			t.Logf("timing: %s NotReady %s after it died (%v)", dead.name, time.Since(start).Round(time.Second), state)
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%s still Ready after it died: %v (%v)", dead.name, state, err)
		}
		time.Sleep(2 * time.Second)
	}

	if now := leaseHolder(ctx, t, cs); now == dead.name {
		t.Errorf("the controller's Lease is still %s's after it died", dead.name)
	} else if leader == dead.name {
		t.Logf("failover: %s took over the controller from %s", now, dead.name)
	}

	pullOnAgent(ctx, t, cs, agent.name, lateImage)
	t.Logf("timing: a new pod on %s pulled %s %s after %s died", agent.name, lateImage, time.Since(start).Round(time.Second), dead.name)

	after := reachPods(ctx, t, cs)
	for node, p := range before {
		q, ok := after[node]
		switch {
		case !ok:
			t.Errorf("the pod on %s is gone after %s died", node, dead.name)
		case q.UID != p.UID || q.Status.Phase != corev1.PodRunning || restarts(q) != restarts(p):
			t.Errorf("the pod on %s did not keep running: %s %s, %d restarts (was %s, %d)", node, q.UID, q.Status.Phase, restarts(q), p.UID, restarts(p))
		}
	}

	out, code = alive.perch("status", "--config", alive.cfg, "--root", alive.root)
	t.Logf("perch status on %s with %s dead (exit %d):\n%s", alive.name, dead.name, code, out)
	if code != 1 || !strings.Contains(out, dead.name) || !hasLine(out, dead.name, "NotReady") {
		t.Errorf("perch status on %s exited %d and does not name %s as NotReady", alive.name, code, dead.name)
	}

	_, took := dead.install()
	t.Logf("timing: %s reinstalled in %s", dead.name, took.Round(time.Second))
	waitReady(ctx, t, cs, len(nodes))
	t.Logf("timing: %s Ready again %s after it died", dead.name, time.Since(start).Round(time.Second))

	st := api.stop()
	t.Logf("failover: API through %s answered %d of %d requests while %s was down and rejoining; longest outage %s",
		alive.name, st.ok, st.ok+st.failed, dead.name, st.longest.Round(100*time.Millisecond))
	// an etcd leader election takes a few seconds when the dead server
	// led; anything longer is the API not failing over
	if st.longest > 15*time.Second {
		t.Errorf("the API through %s did not answer for %s (last error: %v)", alive.name, st.longest, st.lastErr)
	}
	out, code = dead.perch("status", "--config", dead.cfg, "--root", dead.root)
	t.Logf("perch status on %s after it rejoined (exit %d):\n%s", dead.name, code, out)
	if code != 0 {
		t.Errorf("perch status on %s after it rejoined exited %d", dead.name, code)
	}
}

// leaseHolder is the server whose controller leads, waiting for one that
// holds a Lease renewed within its duration.
func leaseHolder(ctx context.Context, t *testing.T, cs kubernetes.Interface) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		l, err := cs.CoordinationV1().Leases("kube-system").Get(ctx, apps.ControllerLease, metav1.GetOptions{})
		if err == nil && l.Spec.HolderIdentity != nil && l.Spec.RenewTime != nil && l.Spec.LeaseDurationSeconds != nil &&
			time.Since(l.Spec.RenewTime.Time) < time.Duration(*l.Spec.LeaseDurationSeconds)*time.Second {
			return *l.Spec.HolderIdentity
		}
		if time.Now().After(deadline) {
			t.Fatalf("no server's controller holds the Lease %s: %v", apps.ControllerLease, err)
		}
		time.Sleep(2 * time.Second)
	}
}

// hasLine says whether a line of out holds every one of words.
func hasLine(out string, words ...string) bool {
	for _, l := range strings.Split(out, "\n") {
		all := true
		for _, w := range words {
			all = all && strings.Contains(l, w)
		}
		if all {
			return true
		}
	}
	return false
}

func restarts(p corev1.Pod) int32 {
	var n int32
	for _, c := range p.Status.ContainerStatuses {
		n += c.RestartCount
	}
	return n
}

// reachPods are podsReachEachOther's pods by node.
func reachPods(ctx context.Context, t *testing.T, cs kubernetes.Interface) map[string]corev1.Pod {
	t.Helper()
	pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=reach"})
	must(t, err)
	out := map[string]corev1.Pod{}
	for _, p := range pods.Items {
		out[p.Spec.NodeName] = p
	}
	return out
}

// pullOnAgent runs a pod of image on node, pulled now (Always), and waits
// for it to run.
func pullOnAgent(ctx context.Context, t *testing.T, cs kubernetes.Interface, node, image string) {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "late-pull", Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			AutomountServiceAccountToken:  new(bool),
			TerminationGracePeriodSeconds: new(int64),
			Containers:                    []corev1.Container{{Name: "c", Image: image, ImagePullPolicy: corev1.PullAlways}},
		},
	}
	_, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
	must(t, err)
	for {
		p, err := cs.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{})
		if err == nil && p.Status.Phase == corev1.PodRunning {
			return
		}
		if ctx.Err() != nil {
			var why []string
			if p != nil {
				for _, c := range p.Status.ContainerStatuses {
					if c.State.Waiting != nil {
						why = append(why, c.State.Waiting.Reason+": "+c.State.Waiting.Message)
					}
				}
			}
			t.Fatalf("a new pod of %s on %s did not run: %v %v", image, node, err, why)
		}
		time.Sleep(2 * time.Second)
	}
}

// killNode kills every process of a node: those in its network namespace
// (k3s, containerd and its shims, the registry, the supervisors) and
// those under its kubelet's cgroup root (its pods, in namespaces of their
// own), again until none is left, as a power cut would.
func killNode(t *testing.T, n *clusterNode) int {
	t.Helper()
	var ns syscall.Stat_t
	must(t, syscall.Stat("/run/netns/"+nodeNamespace(n.i), &ns))
	cgroup := "/perch-" + n.name
	killed := 0
	for range 50 {
		var pids []int
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			var st syscall.Stat_t
			inNS := syscall.Stat(filepath.Join("/proc", e.Name(), "ns/net"), &st) == nil && st.Ino == ns.Ino && st.Dev == ns.Dev
			if inNS || underCgroup(pid, cgroup) {
				pids = append(pids, pid)
			}
		}
		if len(pids) == 0 {
			return killed
		}
		for _, pid := range pids {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed++
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("processes of %s still running after 50 rounds of SIGKILL", n.name)
	return killed
}

// underCgroup says whether pid is in root or below it in any hierarchy.
func underCgroup(pid int, root string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) == 3 && (parts[2] == root || strings.HasPrefix(parts[2], root+"/")) {
			return true
		}
	}
	return false
}

// apiProbe asks the API for its nodes every 250 ms until stopped.
type apiProbe struct {
	stopCh chan struct{}
	wg     sync.WaitGroup
	st     apiStats
}

type apiStats struct {
	ok, failed int
	longest    time.Duration // the longest run of failed requests
	lastErr    error
}

func probeAPI(cs kubernetes.Interface) *apiProbe {
	p := &apiProbe{stopCh: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		var downSince time.Time
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			cancel()
			now := time.Now()
			if err == nil {
				p.st.ok++
				downSince = time.Time{}
			} else {
				p.st.failed++
				p.st.lastErr = err
				if downSince.IsZero() {
					downSince = now
				}
				p.st.longest = max(p.st.longest, now.Sub(downSince))
			}
			select {
			case <-p.stopCh:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	return p
}

func (p *apiProbe) stop() apiStats {
	close(p.stopCh)
	p.wg.Wait()
	return p.st
}
