// Command e2ebundle builds the end-to-end bundle (package e2e) for
// scripts/demo: e2ebundle --perch BIN --k3s BIN --out DIR --key PATH [--config FILE].
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/perchedge/perch/internal/e2e"
)

func main() {
	var o e2e.Options
	flag.StringVar(&o.Perch, "perch", "bin/perch", "perch binary")
	flag.StringVar(&o.K3s, "k3s", "", "k3s binary to bundle")
	flag.StringVar(&o.Out, "out", "", "bundle directory to write")
	flag.StringVar(&o.Key, "key", "", "signing key, without .key/.pub (made if missing)")
	flag.StringVar(&o.Config, "config", "testdata/e2e.yaml", "appliance config the bundle is for")
	flag.Parse()
	if o.K3s == "" || o.Out == "" || o.Key == "" {
		fmt.Fprintln(os.Stderr, "e2ebundle: --k3s, --out and --key are required")
		os.Exit(2)
	}
	o.Log = os.Stderr
	if _, err := e2e.Build(context.Background(), o); err != nil {
		fmt.Fprintln(os.Stderr, "e2ebundle:", err)
		os.Exit(1)
	}
}
