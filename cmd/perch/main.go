// Command perch turns a Linux box with an NVIDIA GPU into a video-analytics
// appliance. Commands parse flags, call a package and print; the work lives
// in installer, bundles, airgap and gpu.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/perchedge/perch/installer/config"
)

// Exit codes of the CLI contract.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := newRootCmd(&streams{in: stdin, out: stdout, err: stderr})
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var quiet *alreadyReported
	if !errors.As(err, &quiet) {
		fmt.Fprintf(stderr, "Error: %v\n", err)
	}
	var usage *usageError
	if errors.As(err, &usage) || errors.Is(err, config.ErrInvalid) {
		return exitUsage
	}
	return exitFailure
}

type streams struct {
	in       io.Reader
	out, err io.Writer
}

// usageError is bad usage: exit 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// alreadyReported is an error the command has printed in full itself; it
// still sets the exit code.
type alreadyReported struct{ err error }

func (e *alreadyReported) Error() string { return e.err.Error() }
func (e *alreadyReported) Unwrap() error { return e.err }
