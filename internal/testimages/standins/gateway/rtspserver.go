package gateway

import (
	"bufio"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/perchedge/perch/internal/testimages/standins/rtsp"
)

// publisherTimeout is the chart's readTimeout: a publisher that sends
// nothing for this long is gone.
const publisherTimeout = 10 * time.Second

// conn is one RTSP client connection, which is also its only session.
type conn struct {
	s   *Server
	nc  net.Conn
	id  string
	wmu sync.Mutex

	state atomic.Value // "idle", "publish" or "read", for metrics

	// publishing
	pubPath  *path
	pubDesc  *rtsp.SDP
	pubChans map[int]int // interleaved channel -> media index
	pubSt    *stream

	// reading
	readPath  *path
	readSt    *stream
	readChans map[int]int // track -> interleaved channel
	rd        *reader
}

var trackRe = regexp.MustCompile(`^(.*)/trackID=(\d+)$`)

func (s *Server) serveConn(nc net.Conn) {
	s.mu.Lock()
	s.nextID++
	c := &conn{s: s, nc: nc, id: strconv.Itoa(s.nextID), pubChans: map[int]int{}, readChans: map[int]int{}}
	c.state.Store("idle")
	s.sessions[c] = struct{}{}
	if s.closing {
		nc.Close()
	}
	s.mu.Unlock()
	log := s.log.With("session", c.id, "remote", nc.RemoteAddr().String())
	err := c.loop()
	nc.Close()
	switch {
	case c.pubSt != nil:
		c.pubPath.unpublish(c.pubSt)
		log.Info("publisher disconnected", "path", c.pubPath.name, "reason", err)
	case c.rd != nil:
		c.readSt.removeReader(c.rd)
		if c.rd.ended.Load() {
			err = errors.New("the path's stream ended")
		}
		log.Info("reader disconnected", "path", c.readPath.name, "reason", err)
	}
	if c.pubPath != nil { // also when it left between ANNOUNCE and RECORD
		s.release(c.pubPath)
	}
	s.mu.Lock()
	delete(s.sessions, c)
	s.mu.Unlock()
}

func (c *conn) loop() error {
	br := bufio.NewReaderSize(c.nc, 64<<10)
	for {
		if c.pubSt != nil {
			c.nc.SetReadDeadline(time.Now().Add(publisherTimeout))
		}
		req, ch, pkt, err := rtsp.ReadFrame(br)
		if err != nil {
			return err
		}
		if req == nil {
			if idx, ok := c.pubChans[ch]; ok && c.pubSt != nil {
				c.pubSt.write(idx, pkt)
			}
			continue // RTCP, and reports from readers
		}
		if req.Method == "" {
			continue // a response to nothing we asked
		}
		res := &rtsp.Message{Status: 200}
		res.Header.Set("CSeq", req.Header.Get("CSeq"))
		res.Header.Set("Server", "perch-mediamtx-standin")
		after := c.handle(req, res)
		if len(c.pubChans) > 0 || len(c.readChans) > 0 {
			res.Header.Set("Session", c.id+";timeout=60")
		}
		c.wmu.Lock()
		_, err = res.WriteTo(c.nc)
		c.wmu.Unlock()
		if err != nil {
			return err
		}
		if after != nil {
			if err := after(); err != nil {
				return err
			}
		}
	}
}

// pathName is the path part of an RTSP URL, without slashes around it.
func pathName(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return strings.Trim(u.Path, "/")
}

// handle fills res for req; what it returns runs after the response is
// sent, so that no RTP frame precedes the PLAY response.
func (c *conn) handle(req, res *rtsp.Message) func() error {
	log := c.s.log.With("session", c.id, "remote", c.nc.RemoteAddr().String())
	switch req.Method {
	case "OPTIONS":
		res.Header.Set("Public", "DESCRIBE, ANNOUNCE, SETUP, PLAY, RECORD, GET_PARAMETER, SET_PARAMETER, TEARDOWN")
	case "GET_PARAMETER", "SET_PARAMETER":
	case "DESCRIBE":
		name := pathName(req.URL)
		p := c.s.lookup(name)
		if p == nil || p.current() == nil {
			res.Status = 404
			return nil
		}
		res.Header.Set("Content-Type", "application/sdp")
		res.Header.Set("Content-Base", strings.TrimSuffix(req.URL, "/")+"/")
		res.Body = p.current().sdp
	case "ANNOUNCE":
		if c.pubPath != nil || c.readSt != nil {
			res.Status = 455
			return nil
		}
		p, err := c.s.forPublish(pathName(req.URL))
		if err != nil {
			log.Warn("publisher refused", "err", err)
			res.Status = 400
			return nil
		}
		c.pubPath, c.pubDesc = p, rtsp.ParseSDP(req.Body)
	case "SETUP":
		ch, tcp, ok := rtsp.Interleaved(req.Header.Get("Transport"))
		if !tcp {
			res.Status = 461 // the chart allows interleaved TCP only
			return nil
		}
		if c.pubDesc != nil {
			return c.setupPublish(req, res, ch, ok)
		}
		return c.setupRead(req, res, ch, ok)
	case "RECORD":
		if c.pubDesc == nil || len(c.pubChans) == 0 || c.pubSt != nil {
			res.Status = 455
			return nil
		}
		// Relayed tracks are the media set up, in description order.
		tracks := slices.Sorted(maps.Values(c.pubChans))
		tracks = slices.Compact(tracks)
		for ch, i := range c.pubChans {
			c.pubChans[ch] = slices.Index(tracks, i)
		}
		c.pubSt = newStream(c.pubDesc, tracks, c.pubPath)
		c.pubPath.publish(c.pubSt, c.nc)
		c.state.Store("publish")
		log.Info("publisher connected", "path", c.pubPath.name, "tracks", len(tracks))
	case "PLAY":
		if c.readSt == nil || c.rd != nil {
			res.Status = 455
			return nil
		}
		rd := &reader{frames: make(chan frame, 1024), channels: c.readChans}
		if !c.readSt.addReader(rd) {
			res.Status = 404
			return nil
		}
		c.rd = rd
		c.state.Store("read")
		log.Info("reader connected", "path", c.readPath.name)
		return func() error {
			go c.relay(rd)
			return nil
		}
	case "TEARDOWN":
		return func() error { return fmt.Errorf("teardown") }
	default:
		res.Status = 501
	}
	return nil
}

func (c *conn) setupPublish(req, res *rtsp.Message, ch int, given bool) func() error {
	if c.pubSt != nil {
		res.Status = 455
		return nil
	}
	media := -1
	for i, m := range c.pubDesc.Medias {
		u := strings.TrimSuffix(req.URL, "/")
		if m.Control != "" && (u == m.Control || strings.HasSuffix(u, "/"+m.Control)) {
			media = i
		}
	}
	if media < 0 && len(c.pubDesc.Medias) == 1 {
		media = 0
	}
	if media < 0 {
		res.Status = 404
		return nil
	}
	if !given {
		ch = 2 * len(c.pubChans)
	}
	c.pubChans[ch] = media
	res.Header.Set("Transport", fmt.Sprintf("RTP/AVP/TCP;unicast;interleaved=%d-%d", ch, ch+1))
	return nil
}

func (c *conn) setupRead(req, res *rtsp.Message, ch int, given bool) func() error {
	name, track := pathName(req.URL), 0
	if m := trackRe.FindStringSubmatch(name); m != nil {
		name = m[1]
		track, _ = strconv.Atoi(m[2])
	}
	p := c.s.lookup(name)
	var st *stream
	if p != nil {
		st = p.current()
	}
	switch {
	case st == nil || track >= st.tracks:
		res.Status = 404
		return nil
	case c.rd != nil || (c.readSt != nil && c.readSt != st):
		res.Status = 455
		return nil
	}
	if !given {
		ch = 2 * len(c.readChans)
	}
	c.readPath, c.readSt = p, st
	c.readChans[track] = ch
	res.Header.Set("Transport", fmt.Sprintf("RTP/AVP/TCP;unicast;interleaved=%d-%d", ch, ch+1))
	return nil
}

// relay writes a reader's packets until the stream or the connection
// ends; a stream that ends disconnects its readers, as in MediaMTX.
func (c *conn) relay(rd *reader) {
	defer c.nc.Close()
	for f := range rd.frames {
		c.wmu.Lock()
		c.nc.SetWriteDeadline(time.Now().Add(publisherTimeout))
		err := rtsp.WriteInterleaved(c.nc, f.channel, f.pkt)
		c.wmu.Unlock()
		if err != nil {
			return
		}
		c.readPath.outBytes.Add(uint64(len(f.pkt)))
	}
}
