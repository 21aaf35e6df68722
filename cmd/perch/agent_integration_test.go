//go:build integration

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/perchedge/perch/internal/testimages"
	"github.com/perchedge/perch/internal/testreg"
)

// agentNode is a sandboxed server that runs pods itself, with a signed
// bundle whose images exist only in the Perch registry once installed:
// the upstream registry they were built in is emptied before install.
//
// The k3s fixture lacks what upstream's binary unpacks at start (its own
// containerd binary and flannel), so the node gets the same parts as
// stand-ins: a `containerd` link to the multi-call binary, found on the
// service PATH under --root, and a bridge CNI from Debian's plugins
// (scripts/sandbox). The pipeline is off: its images are not built here.
type agentNode struct {
	*sandbox
	up  *testreg.Registry
	app v1.Image // busybox running sleep, as perch-test/busybox:1
}

// ref is where an image of the bundle was built: perch-test/NAME:1.
func (n *agentNode) ref(name string) string { return n.up.Addr + "/perch-test/" + name + ":1" }

// newAgentNode writes the node's config; the bundle holds pause, busybox
// and extra; flags maps a k3s flag to the name of the image it names.
func newAgentNode(t *testing.T, bundle string, extra map[string]v1.Image, flags map[string]string) *agentNode {
	t.Helper()
	n := &agentNode{sandbox: newSandbox(t), up: testreg.Start(t)}
	n.env = []string{"PERCH_SANDBOX_CNI=bridge"}
	pause, err := testimages.Pause(t.TempDir())
	must(t, err)
	n.app, err = testimages.Busybox("sleep", "3600")
	must(t, err)
	images := map[string]v1.Image{"pause": pause, "busybox": n.app}
	for name, img := range extra {
		images[name] = img
	}
	var refs []string
	for name, img := range images {
		must(t, remote.Write(mustParse(t, n.ref(name)), img))
		refs = append(refs, n.ref(name))
	}
	slices.Sort(refs)
	dir, key := n.imageBundle(bundle, "1.0.0", refs)
	must(t, os.RemoveAll(n.up.Storage))

	args := []string{"--flannel-backend=none", "--disable-network-policy", "--pause-image=" + n.ref("pause")}
	for flag, name := range flags {
		args = append(args, flag+"="+n.ref(name))
	}
	cfg := readFile(t, n.cfg)
	for old, repl := range map[string]string{
		"  binary: " + os.Getenv("PERCH_K3S_BIN") + "\n": "",
		"  disableAgent: true\n":                         "",
		"  extraArgs: [--flannel-backend=none]\n":        "  extraArgs: [" + strings.Join(args, ", ") + "]\n",
	} {
		if !strings.Contains(cfg, old) {
			t.Fatalf("test config lacks %q", old)
		}
		cfg = strings.Replace(cfg, old, repl, 1)
	}
	// k3s's helm job image is not built here; a node given none by flag
	// runs no HelmChart in these tests
	cfg += fmt.Sprintf("bundle:\n  source: %s\n  publicKey: %s.pub\n  allowMissing: [docker.io/rancher/klipper-helm:v0.9.3-build20241008]\nregistry:\n  port: %d\npipeline:\n  enabled: false\n", dir, key, freePort(t))
	must(t, os.WriteFile(n.cfg, []byte(cfg), 0o644))
	bin := filepath.Join(n.root, "usr/local/bin")
	must(t, os.MkdirAll(bin, 0o755))
	must(t, os.Symlink("k3s", filepath.Join(bin, "containerd")))
	return n
}
