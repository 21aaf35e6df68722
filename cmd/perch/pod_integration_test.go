//go:build integration

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/perchedge/perch/internal/testimages"
	"github.com/perchedge/perch/internal/testreg"
)

// TestIntegrationPodThroughMirror runs a real pod on a k3s server with its
// agent, whose image and pause image exist only in the Perch registry: the
// bundle's images are loaded into it, the upstream registry they were
// built in is emptied, and containerd pulls both through the mirror
// registries.yaml describes, over TLS with the generated credentials. Then
// uninstall leaves no shim, interface, iptables rule or cgroup behind.
//
// The k3s fixture lacks what upstream's binary unpacks at start (its own
// containerd binary and flannel), so the test gives it the same parts:
// a `containerd` link to the multi-call binary, found on the service PATH
// under --root, and a bridge CNI from Debian's plugins (scripts/sandbox).
func TestIntegrationPodThroughMirror(t *testing.T) {
	s := newSandbox(t)
	s.env = []string{"PERCH_SANDBOX_CNI=bridge"}
	up := testreg.Start(t)
	pause, err := testimages.Pause(t.TempDir())
	must(t, err)
	app, err := testimages.Busybox("sleep", "3600")
	must(t, err)
	pauseRef, appRef := up.Addr+"/perch-test/pause:1", up.Addr+"/perch-test/busybox:1"
	for ref, img := range map[string]v1.Image{pauseRef: pause, appRef: app} {
		must(t, remote.Write(mustParse(t, ref), img))
	}

	dir, key := s.imageBundle("site-pods", "1.0.0", []string{pauseRef, appRef})
	// from here on only the Perch registry has the images
	must(t, os.RemoveAll(up.Storage))

	cfg := readFile(t, s.cfg)
	for old, repl := range map[string]string{
		"  binary: " + os.Getenv("PERCH_K3S_BIN") + "\n": "",
		"  disableAgent: true\n":                         "",
		"  extraArgs: [--flannel-backend=none]\n":        "  extraArgs: [--flannel-backend=none, --disable-network-policy, --pause-image=" + pauseRef + "]\n",
	} {
		if !strings.Contains(cfg, old) {
			t.Fatalf("test config lacks %q", old)
		}
		cfg = strings.Replace(cfg, old, repl, 1)
	}
	// no pipeline: its helm-install Job needs helm-controller's job image,
	// which is not built here yet
	cfg += fmt.Sprintf("bundle:\n  source: %s\n  publicKey: %s.pub\nregistry:\n  port: %d\npipeline:\n  enabled: false\n", dir, key, freePort(t))
	must(t, os.WriteFile(s.cfg, []byte(cfg), 0o644))
	bin := filepath.Join(s.root, "usr/local/bin")
	must(t, os.MkdirAll(bin, 0o755))
	must(t, os.Symlink("k3s", filepath.Join(bin, "containerd")))

	out, took := s.install()
	t.Logf("install of a server with agent, registry and images: %s", took.Round(time.Millisecond))
	if !strings.Contains(out, "[registry-images] 2 images") {
		t.Errorf("install did not load the 2 images:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(s.root, "var/lib/rancher/k3s/agent/etc/containerd/config.toml.tmpl")); err != nil {
		t.Errorf("no containerd template on a host without CAP_SYS_RESOURCE: %v", err)
	}

	cs := s.client()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "mirror-probe", Namespace: "default"},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken:  new(bool),
			TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{
				Name: "sleep", Image: appRef, ImagePullPolicy: corev1.PullAlways,
			}},
		},
	}
	start := time.Now()
	// the default ServiceAccount, which admission wants, comes a moment
	// after the API
	for {
		_, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("create pod: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	var got *corev1.Pod
	for {
		got, err = cs.CoreV1().Pods("default").Get(ctx, "mirror-probe", metav1.GetOptions{})
		if err == nil && got.Status.Phase == corev1.PodRunning {
			break
		}
		if ctx.Err() != nil {
			ev, _ := cs.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=mirror-probe"})
			var lines []string
			if ev != nil {
				for _, e := range ev.Items {
					lines = append(lines, e.Reason+": "+e.Message)
				}
			}
			t.Fatalf("pod not Running in time (%v):\n%s\nk3s log:\n%s", err, strings.Join(lines, "\n"), tailFile(filepath.Join(s.root, "var/log/perch/k3s.log"), 40))
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("pod Running %s after it was created", time.Since(start).Round(time.Millisecond))
	want, _ := app.Digest()
	if st := got.Status.ContainerStatuses; len(st) != 1 || !strings.HasSuffix(st[0].ImageID, want.String()) {
		t.Errorf("container image %+v, want digest %s", st, want)
	}

	if out, code := s.perch("uninstall", "--root", s.root, "--init", "none", "--purge", "--yes"); code != 0 {
		t.Fatalf("uninstall exited %d:\n%s", code, out)
	} else {
		t.Logf("uninstall:\n%s", out)
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
	if shims, _ := exec.Command("pgrep", "-f", "containerd-shim.*/run/k3s/containerd").Output(); len(shims) > 0 {
		t.Errorf("container shims still run after uninstall: %s", shims)
	}
	if left, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods"); len(left) > 0 {
		t.Errorf("kubepods cgroups left: %v", left)
	}
}

func tailFile(p string, n int) string {
	b, _ := os.ReadFile(p)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
