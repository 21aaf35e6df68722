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
