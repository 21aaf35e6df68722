// Command prefetch downloads the modules the e2e tier's monitoring images
// are built from (testimages.DownloadMonitoring), for make test to run
// in the background on a cold machine. A failure is only reported: the
// e2e tier's own build says what is missing, in its place.
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/perchedge/perch/internal/testimages"
)

func main() {
	start := time.Now()
	if err := testimages.DownloadMonitoring(); err != nil {
		fmt.Fprintln(os.Stderr, "prefetch:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "prefetch: monitoring modules in the cache after %s\n", time.Since(start).Round(time.Second))
}
