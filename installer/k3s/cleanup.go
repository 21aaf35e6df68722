package k3s

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// containerdSocket is fixed by k3s whatever its data dir.
const containerdSocket = "/run/k3s/containerd/containerd.sock"

// Kernel state a k3s agent leaves behind when it stops: stopping k3s does
// not stop pods (their shims are reparented), and interfaces, iptables
// chains and cgroups are not files. The names are those of upstream's
// k3s-killall.sh.
var (
	nodeInterfaces = []string{"cni0", "flannel.1", "flannel-v6.1", "flannel-wg", "flannel-wg-v6", "kube-ipvs0"}
	ruleMarkers    = []string{"KUBE-", "CNI-", "FLANNEL-", "flanneld"}
)

// CleanupNode removes what the node's pods and kubelet left in the kernel:
// container shims of k3s's containerd and their containers, the CNI and
// flannel interfaces, KUBE-/CNI-/FLANNEL- iptables rules, and kubelet's
// cgroups. It is for after the k3s service has stopped; each part is a
// no-op when there is nothing to remove.
func CleanupNode(ctx context.Context) ([]string, error) {
	var done []string
	if n := killShims(); n > 0 {
		done = append(done, fmt.Sprintf("stopped %d container shims and their containers", n))
	}
	for _, dev := range nodeInterfaces {
		if _, err := os.Stat(filepath.Join("/sys/class/net", dev)); err != nil {
			continue
		}
		if out, err := exec.CommandContext(ctx, "ip", "link", "delete", dev).CombinedOutput(); err != nil {
			return done, fmt.Errorf("delete network interface %s: %v: %s", dev, err, bytes.TrimSpace(out))
		}
		done = append(done, "removed network interface "+dev)
	}
	for _, tool := range []string{"iptables", "ip6tables"} {
		n, err := dropRules(ctx, tool)
		if err != nil {
			return done, err
		}
		if n > 0 {
			done = append(done, fmt.Sprintf("removed %d %s lines of kubelet, kube-proxy and CNI", n, tool))
		}
	}
	if n := removeCgroups(); n > 0 {
		done = append(done, fmt.Sprintf("removed %d kubepods cgroups", n))
	}
	return done, nil
}

// killShims kills every containerd-shim serving k3s's containerd, with
// the containers it runs, and says how many shims there were.
func killShims() int {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var shims []int
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") || !slices.Contains(args, containerdSocket) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		shims = append(shims, pid)
	}
	for _, pid := range shims {
		for _, child := range children(pid) {
			syscall.Kill(child, syscall.SIGKILL)
		}
		syscall.Kill(pid, syscall.SIGKILL)
	}
	// the interfaces and cgroups go only once the processes are gone
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range shims {
		for time.Now().Before(deadline) && syscall.Kill(pid, 0) == nil {
			time.Sleep(20 * time.Millisecond)
		}
	}
	return len(shims)
}

func children(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// dropRules rewrites the tables without the rules and chains of kubelet,
// kube-proxy and the CNI plugins, as k3s-killall.sh does. A kube-proxy
// that was stopping may still apply a last batch, so it checks again.
func dropRules(ctx context.Context, tool string) (int, error) {
	if _, err := exec.LookPath(tool + "-save"); err != nil {
		return 0, nil
	}
	total := 0
	for try := 0; try < 5; try++ {
		saved, err := exec.CommandContext(ctx, tool+"-save").Output()
		if err != nil {
			return total, fmt.Errorf("%s-save: %w", tool, err)
		}
		var keep bytes.Buffer
		n := 0
		for line := range strings.Lines(string(saved)) {
			if slices.ContainsFunc(ruleMarkers, func(m string) bool { return strings.Contains(line, m) }) {
				n++
				continue
			}
			keep.WriteString(line)
		}
		if n == 0 {
			return total, nil
		}
		cmd := exec.CommandContext(ctx, tool+"-restore")
		cmd.Stdin = &keep
		if out, err := cmd.CombinedOutput(); err != nil {
			return total, fmt.Errorf("%s-restore without the KUBE-/CNI- rules: %v: %s", tool, err, bytes.TrimSpace(out))
		}
		total += n
		time.Sleep(200 * time.Millisecond)
	}
	return total, nil
}

// removeCgroups removes kubelet's kubepods hierarchy, deepest first, in
// every cgroup v1 controller and in the v2 tree. Empty cgroups are all
// that remain once the containers are gone.
func removeCgroups() int {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods")
	if fi, err := os.Stat("/sys/fs/cgroup/kubepods"); err == nil && fi.IsDir() {
		roots = append(roots, "/sys/fs/cgroup/kubepods")
	}
	n := 0
	for _, r := range roots {
		n += RemoveCgroupTree(r)
	}
	return n
}

// RemoveCgroupTree removes the cgroup at root and every cgroup below it,
// deepest first, and says how many went; one that still holds a process
// stays.
func RemoveCgroupTree(root string) int {
	var dirs []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	slices.SortFunc(dirs, func(a, b string) int { return len(b) - len(a) })
	n := 0
	for _, d := range dirs {
		if os.Remove(d) == nil {
			n++
		}
	}
	return n
}
