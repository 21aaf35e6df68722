// Package load puts the images of an OCI image layout — a verified bundle's
// images/ — into a registry under their upstream names (airgap.Repository):
// straight into the appliance registry's storage, in-process, at the speed
// of hashing the bytes (ToStorage); or over HTTP into any other registry
// (ToRemote). Either way every blob is checked against its digest and sent
// once, blobs already there are skipped, and manifests and tags come last,
// so a pull never finds an image whose blobs are missing.
package load

import (
	"runtime"
	"sort"
	"sync"
)

// Options tune a load.
type Options struct {
	// Progress, when set, is told the bytes copied so far while blobs are
	// written ("images"). Calls never overlap.
	Progress func(what string, done, total int64)
	// Jobs is how many blobs are copied at once; 0 means one per CPU, at
	// most 4 (past that the disk, not the hashing, is the limit).
	Jobs int
}

// Result says what a load did.
type Result struct {
	Images  int   // references in the layout, each now pullable
	Blobs   int   // unique layers and configs they use
	Skipped int   // of those, already in the registry
	Bytes   int64 // the size of those blobs
	Written int64 // the bytes copied this time: 0 when everything was there
}

func (o Options) jobs() int {
	if o.Jobs > 0 {
		return o.Jobs
	}
	return min(runtime.GOMAXPROCS(0), 4)
}

// progress serialises progress reports from the copying goroutines.
type progress struct {
	mu    sync.Mutex
	fn    func(what string, done, total int64)
	what  string
	done  int64
	total int64
}

func newProgress(fn func(string, int64, int64), what string, total int64) *progress {
	return &progress{fn: fn, what: what, total: total}
}

func (p *progress) add(n int64) {
	if p == nil || p.fn == nil || n == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	p.fn(p.what, p.done, p.total)
}

// sortBySize puts the largest blobs first, so that the goroutines copying
// them finish together.
func sortBySize(b []*blob) {
	sort.SliceStable(b, func(i, j int) bool { return b[i].size > b[j].size })
}
