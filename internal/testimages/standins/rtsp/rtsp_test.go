package rtsp

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// The SDP ffmpeg's RTSP muxer announces for libx264.
const ffmpegSDP = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
	"a=tool:libavformat 59.27.100\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n" +
	"a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QADKzZQUH7ARAAAAMAEAAAAwMg8UKZYA==,aOvjyyLA; profile-level-id=64000C\r\n" +
	"a=control:streamid=0\r\n"

func TestSDP(t *testing.T) {
	s := ParseSDP([]byte(ffmpegSDP))
	if len(s.Medias) != 1 {
		t.Fatalf("%d medias", len(s.Medias))
	}
	m := s.Medias[0]
	if m.Type != "video" || m.Codec != "H264" || m.Control != "streamid=0" {
		t.Errorf("media %+v", m)
	}
	if ps := m.ParameterSets(); len(ps) != 2 || ps[0][0]&0x1f != 7 || ps[1][0]&0x1f != 8 {
		t.Errorf("parameter sets %x", ps)
	}
	out := string(s.Rewrite(func(int) string { return "trackID=0" }))
	if strings.Contains(out, "streamid=0") || !strings.HasSuffix(out, "a=control:trackID=0\r\n") {
		t.Errorf("rewritten SDP:\n%s", out)
	}
}

func TestResolveControl(t *testing.T) {
	for _, c := range []struct{ base, control, want string }{
		{"rtsp://h/cam1/", "trackID=0", "rtsp://h/cam1/trackID=0"},
		{"rtsp://h/cam1", "trackID=0", "rtsp://h/cam1/trackID=0"},
		{"rtsp://h/cam1", "rtsp://other/x", "rtsp://other/x"},
		{"rtsp://h/cam1", "*", "rtsp://h/cam1"},
		{"rtsp://h/cam1", "", "rtsp://h/cam1"},
	} {
		if got := ResolveControl(c.base, c.control); got != c.want {
			t.Errorf("ResolveControl(%q, %q) = %q, want %q", c.base, c.control, got, c.want)
		}
	}
}

func TestInterleaved(t *testing.T) {
	for _, c := range []struct {
		transport    string
		ch           int
		tcp, present bool
	}{
		{"RTP/AVP/TCP;unicast;interleaved=2-3", 2, true, true},
		{"RTP/AVP/TCP;unicast", 0, true, false},
		{"RTP/AVP;unicast;client_port=5000-5001", 0, false, false},
	} {
		ch, tcp, ok := Interleaved(c.transport)
		if ch != c.ch || tcp != c.tcp || ok != c.present {
			t.Errorf("Interleaved(%q) = %d %v %v", c.transport, ch, tcp, ok)
		}
	}
}

func TestFrames(t *testing.T) {
	var b bytes.Buffer
	req := &Message{Method: "ANNOUNCE", URL: "rtsp://h/x", Header: Header{{"CSeq", "2"}}, Body: []byte(ffmpegSDP)}
	req.WriteTo(&b)
	WriteInterleaved(&b, 4, []byte{0x80, 0x60, 0, 1})
	(&Message{Status: 404, Header: Header{{"CSeq", "3"}}}).WriteTo(&b)
	br := bufio.NewReader(&b)

	msg, _, _, err := ReadFrame(br)
	if err != nil || msg.Method != "ANNOUNCE" || msg.Header.Get("cseq") != "2" || string(msg.Body) != ffmpegSDP {
		t.Fatalf("request: %+v %v", msg, err)
	}
	msg, ch, pkt, err := ReadFrame(br)
	if err != nil || msg != nil || ch != 4 || len(pkt) != 4 {
		t.Fatalf("packet: %v %d %x %v", msg, ch, pkt, err)
	}
	msg, _, _, err = ReadFrame(br)
	if err != nil || msg.Status != 404 {
		t.Fatalf("response: %+v %v", msg, err)
	}
}
