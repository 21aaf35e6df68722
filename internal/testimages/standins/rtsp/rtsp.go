// Package rtsp is the part of RTSP 1.0 (RFC 2326) that Perch's test
// stand-ins speak: requests and responses, RTP interleaved on the TCP
// connection ($ frames, the only transport the chart allows), the SDP
// fields that pick a track, and H264 access units out of RTP. It is not a
// general RTSP library: no UDP, no authentication, no PAUSE.
package rtsp

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net/textproto"
	"strconv"
	"strings"
)

// Header keeps RTSP headers in order and with their spelling; names
// compare without case.
type Header [][2]string

// Get returns the first value of name, or "".
func (h Header) Get(name string) string {
	for _, kv := range h {
		if strings.EqualFold(kv[0], name) {
			return kv[1]
		}
	}
	return ""
}

// Set replaces name's value, or adds it.
func (h *Header) Set(name, value string) {
	for i, kv := range *h {
		if strings.EqualFold(kv[0], name) {
			(*h)[i][1] = value
			return
		}
	}
	*h = append(*h, [2]string{name, value})
}

// Message is a request (Method set) or a response (Status set).
type Message struct {
	Method string
	URL    string
	Status int
	Header Header
	Body   []byte
}

var reasons = map[int]string{
	200: "OK", 400: "Bad Request", 404: "Not Found", 454: "Session Not Found",
	455: "Method Not Valid in This State", 461: "Unsupported Transport", 501: "Not Implemented",
}

// WriteTo writes m in one Write, so that a caller holding a lock per
// connection never interleaves half a message with an RTP frame.
func (m *Message) WriteTo(w io.Writer) (int64, error) {
	var b bytes.Buffer
	if m.Method != "" {
		fmt.Fprintf(&b, "%s %s RTSP/1.0\r\n", m.Method, m.URL)
	} else {
		fmt.Fprintf(&b, "RTSP/1.0 %d %s\r\n", m.Status, reasons[m.Status])
	}
	for _, kv := range m.Header {
		if !strings.EqualFold(kv[0], "Content-Length") {
			fmt.Fprintf(&b, "%s: %s\r\n", kv[0], kv[1])
		}
	}
	if len(m.Body) > 0 {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(m.Body))
	}
	b.WriteString("\r\n")
	b.Write(m.Body)
	n, err := w.Write(b.Bytes())
	return int64(n), err
}

// WriteInterleaved writes one RTP or RTCP packet as a $ frame.
func WriteInterleaved(w io.Writer, channel int, pkt []byte) error {
	buf := make([]byte, 4+len(pkt))
	buf[0] = '$'
	buf[1] = byte(channel)
	binary.BigEndian.PutUint16(buf[2:], uint16(len(pkt)))
	copy(buf[4:], pkt)
	_, err := w.Write(buf)
	return err
}

// ReadFrame reads the next message or interleaved packet; exactly one of
// msg and pkt is set. Every packet is a fresh slice, so a caller may hand
// it to other goroutines.
func ReadFrame(br *bufio.Reader) (msg *Message, channel int, pkt []byte, err error) {
	first, err := br.Peek(1)
	if err != nil {
		return nil, 0, nil, err
	}
	if first[0] == '$' {
		var h [4]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return nil, 0, nil, err
		}
		pkt = make([]byte, binary.BigEndian.Uint16(h[2:]))
		if _, err := io.ReadFull(br, pkt); err != nil {
			return nil, 0, nil, err
		}
		return nil, int(h[1]), pkt, nil
	}
	tp := textproto.NewReader(br)
	line := ""
	for line == "" { // tolerate stray CRLFs between messages
		if line, err = tp.ReadLine(); err != nil {
			return nil, 0, nil, err
		}
	}
	parts := strings.SplitN(line, " ", 3)
	if len(parts) < 2 {
		return nil, 0, nil, fmt.Errorf("malformed RTSP line %q", line)
	}
	msg = &Message{}
	if strings.HasPrefix(parts[0], "RTSP/") {
		if msg.Status, err = strconv.Atoi(parts[1]); err != nil {
			return nil, 0, nil, fmt.Errorf("malformed RTSP status line %q", line)
		}
	} else {
		msg.Method, msg.URL = parts[0], parts[1]
	}
	for {
		l, err := tp.ReadLine()
		if err != nil {
			return nil, 0, nil, err
		}
		if l == "" {
			break
		}
		if k, v, ok := strings.Cut(l, ":"); ok {
			msg.Header = append(msg.Header, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
		}
	}
	if cl := msg.Header.Get("Content-Length"); cl != "" {
		n, err := strconv.Atoi(cl)
		if err != nil || n < 0 || n > 1<<20 {
			return nil, 0, nil, fmt.Errorf("bad Content-Length %q", cl)
		}
		msg.Body = make([]byte, n)
		if _, err := io.ReadFull(br, msg.Body); err != nil {
			return nil, 0, nil, err
		}
	}
	return msg, 0, nil, nil
}

// Interleaved returns the RTP channel of a Transport header's
// interleaved=a-b, and whether the header asks for TCP at all.
func Interleaved(transport string) (channel int, tcp bool, ok bool) {
	for _, p := range strings.Split(transport, ";") {
		p = strings.TrimSpace(p)
		if strings.HasPrefix(p, "RTP/AVP/TCP") {
			tcp = true
		}
		if v, found := strings.CutPrefix(p, "interleaved="); found {
			a, _, _ := strings.Cut(v, "-")
			if n, err := strconv.Atoi(a); err == nil && n >= 0 && n < 255 {
				channel, ok = n, true
			}
		}
	}
	return channel, tcp, ok
}
