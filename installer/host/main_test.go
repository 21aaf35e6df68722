package host

import (
	"context"
	"fmt"
	"os"
	"testing"
)

// TestMain lets the test binary be its own `perch supervise`: the none init
// starts "<binary> supervise --root ROOT NAME" as a real detached process,
// and this is what that process runs.
func TestMain(m *testing.M) {
	if len(os.Args) == 5 && os.Args[1] == "supervise" && os.Args[2] == "--root" {
		os.Exit(superviseMain(os.Args[3], os.Args[4]))
	}
	os.Exit(m.Run())
}

func superviseMain(root, name string) int {
	h, err := Open(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer h.Close()
	if err := Supervise(context.Background(), h, name); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func newHost(t *testing.T) *Host {
	t.Helper()
	h, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}
