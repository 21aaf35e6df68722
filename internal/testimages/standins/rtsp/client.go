package rtsp

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Session is a playing RTSP session over one TCP connection.
type Session struct {
	SDP *SDP
	// Tracks are the indexes into SDP.Medias that were set up; track k
	// arrives on interleaved channel Channel[k].
	Tracks  []int
	Channel []int

	conn    net.Conn
	br      *bufio.Reader
	url     string
	session string
	cseq    int
	wmu     sync.Mutex
	stop    func() bool
}

// handshakeTimeout bounds each request before PLAY; a camera that
// accepts TCP and then says nothing must not hang a retry loop.
const handshakeTimeout = 10 * time.Second

// Play dials rawURL over TCP, describes it, sets up the media want
// accepts (all when want is nil) interleaved, and starts playing. The
// session closes when ctx ends.
func Play(ctx context.Context, rawURL string, want func(Media) bool) (*Session, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "rtsp" {
		return nil, fmt.Errorf("not an rtsp:// URL: %q", rawURL)
	}
	host := u.Host
	if u.Port() == "" {
		host += ":554"
	}
	u.User = nil // no authentication; keep credentials out of request lines
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	conn, err := d.DialContext(dctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	s := &Session{conn: conn, br: bufio.NewReaderSize(conn, 64<<10), url: u.String()}
	s.stop = context.AfterFunc(ctx, func() { conn.Close() })
	if err := s.start(want); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Session) start(want func(Media) bool) error {
	res, err := s.do(&Message{Method: "DESCRIBE", URL: s.url, Header: Header{{"Accept", "application/sdp"}}})
	if err != nil {
		return err
	}
	base := s.url
	for _, h := range []string{"Content-Base", "Content-Location"} {
		if v := res.Header.Get(h); v != "" {
			base = v
			break
		}
	}
	s.SDP = ParseSDP(res.Body)
	for i, m := range s.SDP.Medias {
		if want != nil && !want(m) {
			continue
		}
		ch := 2 * len(s.Tracks)
		res, err := s.do(&Message{Method: "SETUP", URL: ResolveControl(base, m.Control),
			Header: Header{{"Transport", fmt.Sprintf("RTP/AVP/TCP;unicast;interleaved=%d-%d", ch, ch+1)}}})
		if err != nil {
			return err
		}
		if got, _, ok := Interleaved(res.Header.Get("Transport")); ok {
			ch = got // the server may choose its own channels
		}
		if s.session == "" {
			s.session, _, _ = strings.Cut(res.Header.Get("Session"), ";")
		}
		s.Tracks = append(s.Tracks, i)
		s.Channel = append(s.Channel, ch)
	}
	if len(s.Tracks) == 0 {
		return fmt.Errorf("%s has no track this reader can use", s.url)
	}
	if _, err := s.do(&Message{Method: "PLAY", URL: ResolveControl(base, s.SDP.Control())}); err != nil {
		return err
	}
	return s.conn.SetDeadline(time.Time{})
}

// do sends a request and waits for its response, which before PLAY is
// the only thing the server sends.
func (s *Session) do(req *Message) (*Message, error) {
	if err := s.conn.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		return nil, err
	}
	if err := s.send(req); err != nil {
		return nil, err
	}
	for {
		res, _, _, err := ReadFrame(s.br)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL, err)
		}
		if res == nil || res.Method != "" {
			continue
		}
		if res.Status != 200 {
			return nil, fmt.Errorf("%s %s: %d %s", req.Method, req.URL, res.Status, reasons[res.Status])
		}
		return res, nil
	}
}

func (s *Session) send(req *Message) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.cseq++
	req.Header.Set("CSeq", fmt.Sprint(s.cseq))
	req.Header.Set("User-Agent", "perch-standin")
	if s.session != "" {
		req.Header.Set("Session", s.session)
	}
	_, err := req.WriteTo(s.conn)
	return err
}

// KeepAlive sends an OPTIONS without waiting for the answer, which
// ReadPacket skips; servers with session timeouts need one now and then.
func (s *Session) KeepAlive() error {
	return s.send(&Message{Method: "OPTIONS", URL: s.url})
}

// ReadPacket returns the next RTP packet and its track (an index into
// Tracks), failing when nothing arrives for timeout. RTCP and messages
// from the server are skipped.
func (s *Session) ReadPacket(timeout time.Duration) (track int, pkt []byte, err error) {
	for {
		if err := s.conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			return 0, nil, err
		}
		msg, ch, pkt, err := ReadFrame(s.br)
		if err != nil {
			return 0, nil, err
		}
		if msg != nil {
			continue
		}
		for k, c := range s.Channel {
			if c == ch {
				return k, pkt, nil
			}
		}
	}
}

// Close ends the session without TEARDOWN: closing the connection is
// what ends an interleaved session anyway.
func (s *Session) Close() error {
	s.stop()
	return s.conn.Close()
}
