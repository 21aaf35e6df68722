//go:build integration

package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestIntegrationPodThroughMirror runs a real pod on a k3s server with its
// agent, whose image and pause image exist only in the Perch registry: the
// bundle's images are loaded into it, the upstream registry they were
// built in is emptied, and containerd pulls both through the mirror
// registries.yaml describes, over TLS with the generated credentials. Then
// uninstall leaves no shim, interface, iptables rule or cgroup behind.
// (newAgentNode says what stands in for what the fixture lacks.)
func TestIntegrationPodThroughMirror(t *testing.T) {
	s := newAgentNode(t, "site-pods", nil, nil)
	appRef := s.ref("busybox")

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
	var err error
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
	want, _ := s.app.Digest()
	if st := got.Status.ContainerStatuses; len(st) != 1 || !strings.HasSuffix(st[0].ImageID, want.String()) {
		t.Errorf("container image %+v, want digest %s", st, want)
	}

	if out, code := s.perch("uninstall", "--root", s.root, "--init", "none", "--purge", "--yes"); code != 0 {
		t.Fatalf("uninstall exited %d:\n%s", code, out)
	} else {
		t.Logf("uninstall:\n%s", out)
	}
	must(t, os.Remove(filepath.Join(s.root, "usr/local/bin/containerd"))) // newAgentNode's stand-in
	assertNothingLeft(t, s.root)
}

func tailFile(p string, n int) string {
	b, _ := os.ReadFile(p)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
