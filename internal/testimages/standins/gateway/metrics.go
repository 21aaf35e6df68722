package gateway

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
)

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// serveMetrics writes MediaMTX's metric names for what the stand-in
// has: paths (the chart's PerchStreamDown rule reads paths and the byte
// counters under both their current and deprecated names), readers,
// RTSP sessions and HLS muxers. It always answers 200: it is the pod's
// readiness probe.
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/metrics" {
		http.NotFound(w, r)
		return
	}
	var b strings.Builder
	for _, p := range s.sortedPaths() {
		st := p.current()
		state, readers := "notReady", 0
		if st != nil {
			state, readers = "ready", st.readerCount()
		}
		l := fmt.Sprintf(`{name="%s",state="%s"}`, labelEscaper.Replace(p.name), state)
		in, out := p.inBytes.Load(), p.outBytes.Load()
		fmt.Fprintf(&b, "paths%s 1\n", l)
		fmt.Fprintf(&b, "paths_bytes_received%s %d\n", l, in)
		fmt.Fprintf(&b, "paths_inbound_bytes%s %d\n", l, in)
		fmt.Fprintf(&b, "paths_bytes_sent%s %d\n", l, out)
		fmt.Fprintf(&b, "paths_outbound_bytes%s %d\n", l, out)
		fmt.Fprintf(&b, "paths_readers%s %d\n", l, readers)
		if st != nil && st.hls != nil {
			fmt.Fprintf(&b, "hls_muxers{name=\"%s\"} 1\n", labelEscaper.Replace(p.name))
		}
	}
	s.mu.Lock()
	var sessions []string
	for c := range s.sessions {
		if state := c.state.Load().(string); state != "idle" {
			sessions = append(sessions, fmt.Sprintf("rtsp_sessions{id=\"%s\",remoteAddr=\"%s\",state=\"%s\"} 1\n",
				c.id, c.nc.RemoteAddr(), state))
		}
	}
	fmt.Fprintf(&b, "rtsp_conns %d\n", len(s.sessions))
	s.mu.Unlock()
	sort.Strings(sessions)
	b.WriteString(strings.Join(sessions, ""))
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprint(w, b.String())
}
