package gateway

import (
	"bytes"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/yapingcat/gomedia/go-codec"
	"github.com/yapingcat/gomedia/go-mpeg2"
)

const (
	hlsSegments   = 5
	hlsMinSegment = 1000     // ms; segments are cut at the first IDR after this
	hlsMaxSegment = 64 << 20 // bytes; a stream without IDRs must not eat memory
	tsOffset      = 10_000   // ms added to timestamps so that DTS never goes below zero
)

type segment struct {
	seq  int
	dur  float64
	data []byte
}

// hlsMuxer cuts one H264 track into MPEG-TS segments at IDR pictures.
type hlsMuxer struct {
	params [][]byte // SPS and PPS from the SDP, for IDRs that lack them

	// timing, touched only by the stream's source goroutine
	started  bool
	lastRTP  uint32
	ext      int64   // 90 kHz, unwrapped
	recent   []int64 // presentation times of the last pictures
	lastDTS  int64
	frameDur int64
	gopStart int64
	gopIndex int64

	cur      *bytes.Buffer
	mux      *mpeg2.TSMuxer
	pid      uint16
	curStart int64

	mu   sync.Mutex
	segs []segment
	next int
}

func newHLSMuxer(params [][]byte) *hlsMuxer {
	return &hlsMuxer{params: params}
}

func (h *hlsMuxer) writeAccessUnit(au []byte, ts uint32) {
	if !h.started {
		h.started, h.lastRTP = true, ts
	}
	h.ext += int64(int32(ts - h.lastRTP))
	h.lastRTP = ts
	pts := h.ext/90 + tsOffset
	idr := codec.IsH264IDRFrame(au)

	// RTP carries presentation times only. Pictures arrive in decode order,
	// so decode times are counted from the last IDR at the frame interval
	// (the least gap between recent presentation times: with B-frames
	// neighbours in decode order are further apart), two pictures early
	// to leave room for reordering, and kept increasing.
	for _, prev := range h.recent {
		if d := abs(pts - prev); d > 0 && (h.frameDur == 0 || d < h.frameDur) {
			h.frameDur = d
		}
	}
	h.recent = append(h.recent, pts)
	if len(h.recent) > 8 {
		h.recent = h.recent[1:]
	}
	frameDur := h.frameDur
	if frameDur == 0 {
		frameDur = 40
	}
	if idr {
		h.gopStart, h.gopIndex = pts, 0
	}
	dts := min(h.gopStart+(h.gopIndex-2)*frameDur, pts)
	dts = max(dts, h.lastDTS+1)
	h.gopIndex++
	h.lastDTS = dts

	if idr && (h.cur == nil || pts-h.curStart >= hlsMinSegment) {
		h.cut(pts)
	}
	if h.cur == nil {
		return // nothing decodes before the first IDR
	}
	if idr && !hasSPS(au) && len(h.params) > 0 {
		var b []byte
		for _, p := range h.params {
			b = append(append(b, 0, 0, 0, 1), p...)
		}
		au = append(b, au...)
	}
	h.mux.Write(h.pid, au, uint64(pts), uint64(dts))
	if h.cur.Len() > hlsMaxSegment {
		h.cur = nil
	}
}

// cut closes the segment being written and starts one at pts.
func (h *hlsMuxer) cut(pts int64) {
	if h.cur != nil {
		h.mu.Lock()
		h.segs = append(h.segs, segment{seq: h.next, dur: float64(pts-h.curStart) / 1000, data: h.cur.Bytes()})
		h.next++
		if len(h.segs) > hlsSegments {
			h.segs = h.segs[1:]
		}
		h.mu.Unlock()
	}
	// A muxer per segment puts PAT and PMT first in every segment.
	buf := new(bytes.Buffer)
	h.cur, h.curStart = buf, pts
	h.mux = mpeg2.NewTSMuxer()
	h.pid = h.mux.AddStream(mpeg2.TS_STREAM_H264)
	h.mux.OnPacket = func(pkt []byte) { buf.Write(pkt) }
}

func hasSPS(au []byte) bool {
	found := false
	codec.SplitFrame(au, func(nalu []byte) bool {
		found = len(nalu) > 0 && codec.H264NaluTypeWithoutStartCode(nalu) == codec.H264_NAL_SPS
		return !found
	})
	return found
}

func (h *hlsMuxer) playlist() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.segs) == 0 {
		return ""
	}
	target := 1.0
	for _, s := range h.segs {
		target = max(target, math.Ceil(s.dur))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:%d\n#EXT-X-MEDIA-SEQUENCE:%d\n", int(target), h.segs[0].seq)
	for _, s := range h.segs {
		fmt.Fprintf(&b, "#EXTINF:%.3f,\nseg%d.ts\n", s.dur, s.seq)
	}
	return b.String()
}

func (h *hlsMuxer) segment(seq int) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.segs {
		if s.seq == seq {
			return s.data
		}
	}
	return nil
}

// serveHLS answers /NAME/index.m3u8 and /NAME/segN.ts; NAME may hold slashes.
func (s *Server) serveHLS(w http.ResponseWriter, r *http.Request) {
	dir, file, _ := cutLast(strings.Trim(r.URL.Path, "/"), "/")
	var h *hlsMuxer
	if p := s.lookup(dir); p != nil {
		if st := p.current(); st != nil {
			h = st.hls
		}
	}
	if h == nil {
		http.NotFound(w, r)
		return
	}
	if file == "index.m3u8" {
		if pl := h.playlist(); pl != "" {
			w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
			fmt.Fprint(w, pl)
			return
		}
	}
	if n, ok := strings.CutPrefix(strings.TrimSuffix(file, ".ts"), "seg"); ok && strings.HasSuffix(file, ".ts") {
		if seq, err := strconv.Atoi(n); err == nil {
			if data := h.segment(seq); data != nil {
				w.Header().Set("Content-Type", "video/mp2t")
				w.Write(data)
				return
			}
		}
	}
	http.NotFound(w, r)
}

func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return "", s, false
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}
