package gateway

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/perchedge/perch/internal/testimages/standins/rtsp"
)

// path is a named place a stream can be, from a publisher or a source.
type path struct {
	name    string
	source  string
	dynamic bool // made for a publisher under all_others

	inBytes  atomic.Uint64
	outBytes atomic.Uint64

	mu    sync.Mutex
	st    *stream
	owner io.Closer
}

func (p *path) current() *stream {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st
}

// publish makes st the path's stream. A second publisher takes over and
// the first is disconnected, as MediaMTX's overridePublisher does, so a
// camera that reconnects before its old TCP connection times out wins.
func (p *path) publish(st *stream, owner io.Closer) {
	p.mu.Lock()
	old, oldOwner := p.st, p.owner
	p.st, p.owner = st, owner
	p.mu.Unlock()
	if old != nil {
		old.close()
		oldOwner.Close()
	}
}

func (p *path) unpublish(st *stream) {
	p.mu.Lock()
	if p.st == st {
		p.st, p.owner = nil, nil
	}
	p.mu.Unlock()
	st.close()
}

// stream relays one source's RTP packets, unchanged, to its readers and
// to HLS. Track k is media tracks[k] of the source's description.
type stream struct {
	sdp    []byte // what readers DESCRIBE: track k has control trackID=k
	tracks int
	in     *atomic.Uint64
	out    *atomic.Uint64

	h264Track int // -1 when there is no H264 track
	h264      *rtsp.H264Assembler
	hls       *hlsMuxer

	mu      sync.Mutex
	closed  bool
	readers map[*reader]struct{}
}

type frame struct {
	channel int
	pkt     []byte
}

// reader is one PLAYing client; channels maps track to interleaved channel.
type reader struct {
	frames   chan frame
	channels map[int]int
	ended    atomic.Bool // by the stream, not by the reader
}

func newStream(desc *rtsp.SDP, tracks []int, p *path) *stream {
	sub := desc.Select(tracks)
	st := &stream{
		sdp:       sub.Rewrite(func(k int) string { return fmt.Sprintf("trackID=%d", k) }),
		tracks:    len(tracks),
		in:        &p.inBytes,
		out:       &p.outBytes,
		h264Track: -1,
		readers:   map[*reader]struct{}{},
	}
	for k, m := range sub.Medias {
		if m.Type == "video" && m.Codec == "H264" {
			st.h264Track = k
			st.hls = newHLSMuxer(m.ParameterSets())
			st.h264 = rtsp.NewH264Assembler(st.hls.writeAccessUnit)
			break
		}
	}
	return st
}

// write is called by the one goroutine that reads the source.
func (st *stream) write(track int, pkt []byte) {
	st.in.Add(uint64(len(pkt)))
	if track == st.h264Track {
		st.h264.Write(pkt)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for r := range st.readers {
		if ch, ok := r.channels[track]; ok {
			select {
			case r.frames <- frame{ch, pkt}:
			default: // a reader too slow for the stream loses packets, not the stream
			}
		}
	}
}

func (st *stream) addReader(r *reader) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return false
	}
	st.readers[r] = struct{}{}
	return true
}

func (st *stream) removeReader(r *reader) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, ok := st.readers[r]; ok {
		delete(st.readers, r)
		close(r.frames)
	}
}

func (st *stream) readerCount() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.readers)
}

// close ends every reader: without a source they would wait forever.
func (st *stream) close() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return
	}
	st.closed = true
	for r := range st.readers {
		r.ended.Store(true)
		close(r.frames)
	}
	st.readers = nil
}
