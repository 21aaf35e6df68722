// Command gst-launch is a stand-in for DL Streamer's gst-launch-1.0, not
// GStreamer: for the perch-analytics chart's CPU worker in tests where
// the real image cannot be pulled. Of the pipeline the worker script
// gives it, it honours rtspsrc's location= (read over TCP, as
// protocols=tcp asks) and gvafpscounter's report; it decodes nothing and
// runs no model. It counts H264 pictures and prints the counter's line
// every 10 s, and fails, so the script restarts it, when the session
// cannot start or no packet arrives for 10 s.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/perchedge/perch/internal/testimages/standins/rtsp"
)

const (
	interval      = 10 * time.Second
	packetTimeout = 10 * time.Second
	keepAlive     = 30 * time.Second
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	location := ""
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "location="); ok {
			location = strings.Trim(v, `"'`)
		}
	}
	if location == "" {
		fmt.Fprintln(stderr, "gst-launch stand-in: no rtspsrc location= in the pipeline")
		return 1
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "ERROR: from element /GstPipeline:pipeline0/GstRTSPSrc:rtspsrc0: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, "Setting pipeline to PAUSED ...")
	sess, err := rtsp.Play(ctx, location, func(m rtsp.Media) bool { return m.Type == "video" && m.Codec == "H264" })
	if err != nil {
		return fail(err)
	}
	defer sess.Close()
	fmt.Fprintln(stdout, "Setting pipeline to PLAYING ...")

	var frames atomic.Int64
	asm := rtsp.NewH264Assembler(func([]byte, uint32) { frames.Add(1) })
	errc := make(chan error, 1)
	go func() {
		for {
			_, pkt, err := sess.ReadPacket(packetTimeout)
			if err != nil {
				errc <- err
				return
			}
			asm.Write(pkt)
		}
	}()
	report := time.NewTicker(interval)
	defer report.Stop()
	alive := time.NewTicker(keepAlive)
	defer alive.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			// -e: end of stream on interrupt, which is a clean exit.
			fmt.Fprintln(stdout, "EOS on shutdown enabled -- Forcing EOS on the pipeline")
			return 0
		case err := <-errc:
			if ctx.Err() != nil {
				return 0
			}
			return fail(err)
		case <-alive.C:
			if err := sess.KeepAlive(); err != nil {
				return fail(err)
			}
		case now := <-report.C:
			fps := float64(frames.Swap(0)) / now.Sub(last).Seconds()
			last = now
			fmt.Fprintf(stdout, "FpsCounter(average %.1fsec): total=%.2f fps, number-streams=1, per-stream=%.2f fps\n",
				interval.Seconds(), fps, fps)
		}
	}
}
