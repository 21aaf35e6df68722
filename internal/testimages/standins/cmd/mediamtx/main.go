// Command mediamtx is a stand-in for MediaMTX, not MediaMTX: a small
// static binary for the perch-analytics chart's gateway in tests where
// the real image cannot be pulled. It is invoked as the real one is,
// `/mediamtx /etc/mediamtx/mediamtx.yml`; package gateway says what it
// honours.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/perchedge/perch/internal/testimages/standins/gateway"
)

func main() {
	file := "mediamtx.yml"
	if len(os.Args) > 1 {
		file = os.Args[1]
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg, err := gateway.LoadConfig(file)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mediamtx stand-in:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := gateway.Run(ctx, cfg, log); err != nil {
		fmt.Fprintln(os.Stderr, "mediamtx stand-in:", err)
		os.Exit(1)
	}
	log.Info("stand-in gateway stopped")
}
