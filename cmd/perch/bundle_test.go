package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// bundleSpec writes a BundleSpec whose k3s is a stand-in script, with
// extra appended, and returns its path.
func bundleSpec(t *testing.T, extra string) string {
	t.Helper()
	dir := t.TempDir()
	k3s := filepath.Join(dir, "k3s")
	if err := os.WriteFile(k3s, []byte("#!/bin/sh\necho 'k3s version v1.31.1+k3s1 (abcdef)'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	spec := fmt.Sprintf("apiVersion: perch.dev/v1alpha1\nkind: BundleSpec\nname: site-a\nversion: 1.0.0\narch: %s\nk3s:\n  binary: %s\n%s", runtime.GOARCH, k3s, extra)
	p := filepath.Join(dir, "bundle.yaml")
	if err := os.WriteFile(p, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBundleBuildUnverifiedSourceIsUsageError(t *testing.T) {
	spec := bundleSpec(t, "files:\n- source: http://127.0.0.1:9/model.onnx\n  dest: models/model.onnx\n")
	out := filepath.Join(t.TempDir(), "b.tar.zst")
	_, errOut, code := perch(t, "", "bundle", "build", "--spec", spec, "--out", out)
	if code != 2 || !strings.Contains(errOut, "files[0].source") || !strings.Contains(errOut, "--allow-unverified-sources") {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 2 naming files[0].source and --allow-unverified-sources", code, errOut)
	}
}

// TestBundleBuildOut runs the README's builds: a directory (site-a/) and an
// archive; another archive name is bad usage.
func TestBundleBuildOut(t *testing.T) {
	spec := bundleSpec(t, "")
	parent := t.TempDir()
	for _, out := range []string{filepath.Join(parent, "site-a") + "/", filepath.Join(parent, "site-a.tar.zst")} {
		if o, e, code := perch(t, "", "bundle", "build", "--spec", spec, "--out", out); code != 0 {
			t.Errorf("bundle build --out %s exited %d:\n%s%s", out, code, o, e)
		}
		if _, _, code := perch(t, "", "bundle", "verify", "--insecure-skip-signature", out); code != 0 {
			t.Errorf("%s does not verify", out)
		}
	}
	_, errOut, code := perch(t, "", "bundle", "build", "--spec", spec, "--out", filepath.Join(parent, "site-b.tar.gz"))
	if code != 2 || !strings.Contains(errOut, ".tar.zst") {
		t.Errorf("--out site-b.tar.gz: exit %d, stderr:\n%s\nwant exit 2 pointing at .tar.zst", code, errOut)
	}
}
