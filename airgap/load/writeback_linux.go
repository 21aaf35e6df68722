package load

import (
	"os"

	"golang.org/x/sys/unix"
)

// writebackChunk is how much of an upload is handed to the disk at a time.
const writebackChunk = 8 << 20

// writeback starts the disk writing an upload while it is still being
// copied. distribution's filesystem driver fsyncs each blob at commit; left
// alone, the kernel writes little before that, so the commit waits for the
// whole blob while the CPU sits idle. Asking for writeback every few MiB
// (sync_file_range, which only starts it) lets the disk write one part
// while the next is hashed, and leaves the fsync little to do.
type writeback struct {
	f    *os.File
	done int64
}

// startWriteback opens the upload's data file for the hints; nil, and no
// hints, when it cannot: they only make the load faster.
func startWriteback(path string) *writeback {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	return &writeback{f: f}
}

// advance says n bytes of the upload are written.
func (w *writeback) advance(n int64) {
	if w == nil || w.f == nil || n-w.done < writebackChunk {
		return
	}
	if unix.SyncFileRange(int(w.f.Fd()), w.done, n-w.done, unix.SYNC_FILE_RANGE_WRITE) != nil {
		w.f.Close()
		w.f = nil
		return
	}
	w.done = n
}

func (w *writeback) close() {
	if w != nil && w.f != nil {
		w.f.Close()
	}
}
