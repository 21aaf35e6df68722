package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestWizardRefusesValuesItCannotFix: a PERCH_* variable at a key no
// screen edits would leave a person stuck on the review screen; the wizard
// says which variable before it starts. One it has a screen for is asked.
func TestWizardRefusesValuesItCannotFix(t *testing.T) {
	t.Setenv("PERCH_K3S_READY_TIMEOUT", "1s")
	t.Setenv("PERCH_NODE_HOSTNAME", "Bad_Name")
	var tg target
	fs := pflag.NewFlagSet("install", pflag.ContinueOnError)
	tg.bind(fs, true)
	var out, errb bytes.Buffer
	err := runWizard(context.Background(), &streams{in: strings.NewReader(""), out: &out, err: &errb}, &tg, true)
	var ue *usageError
	if !errors.As(err, &ue) {
		t.Fatalf("want bad usage (exit 2), got %v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "k3s.readyTimeout (from PERCH_K3S_READY_TIMEOUT): must be between 10s and 2h") || strings.Contains(msg, "hostname") {
		t.Errorf("got %q: want the k3s.readyTimeout variable named, and not the hostname, which the node screen edits", msg)
	}
}
