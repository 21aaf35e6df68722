// Package gateway is a stand-in for MediaMTX, the media gateway of the
// perch-analytics chart, for tests that run the chart where the real
// image cannot be pulled. It honours only what the chart relies on: RTSP
// over interleaved TCP (publish with ANNOUNCE/RECORD, read with
// DESCRIBE/PLAY), paths that pull an rtsp:// source, HLS of H264, and
// MediaMTX's path metrics. It is not MediaMTX and does not try to be.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/perchedge/perch/internal/testimages/standins/rtsp"
)

// Config holds the keys of mediamtx.yml the stand-in reads; the rest of
// the file is ignored.
type Config struct {
	RTSPAddress    string              `yaml:"rtspAddress"`
	HLSAddress     string              `yaml:"hlsAddress"`
	MetricsAddress string              `yaml:"metricsAddress"`
	Paths          map[string]PathConf `yaml:"paths"`
}

// PathConf is one entry under paths. No source means publishers may push.
type PathConf struct {
	Source string `yaml:"source"`
}

// LoadConfig reads a mediamtx.yml, with MediaMTX's default addresses.
func LoadConfig(file string) (Config, error) {
	cfg := Config{RTSPAddress: ":8554", HLSAddress: ":8888", MetricsAddress: ":9998"}
	data, err := os.ReadFile(file)
	if err != nil {
		return cfg, fmt.Errorf("read config: %w", err)
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		return cfg, fmt.Errorf("parse %s: %w", file, err)
	}
	return cfg, nil
}

// allOthers is MediaMTX's name for "any path not listed".
const allOthers = "all_others"

// Server is a running gateway.
type Server struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	paths    map[string]*path
	sessions map[*conn]struct{}
	nextID   int
	closing  bool // no new connections: Run is closing the ones it has
}

// Run serves until ctx ends, then closes every listener and connection.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	s := &Server{cfg: cfg, log: log, paths: map[string]*path{}, sessions: map[*conn]struct{}{}}
	for name, pc := range cfg.Paths {
		if name != allOthers {
			s.paths[name] = &path{name: name, source: pc.Source}
		}
	}
	rtspLn, err := net.Listen("tcp", cfg.RTSPAddress)
	if err != nil {
		return fmt.Errorf("listen RTSP: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	servers := []*http.Server{
		{Addr: cfg.HLSAddress, Handler: http.HandlerFunc(s.serveHLS)},
		{Addr: cfg.MetricsAddress, Handler: http.HandlerFunc(s.serveMetrics)},
	}
	for _, hs := range servers {
		wg.Go(func() {
			if err := hs.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("listen %s: %w", hs.Addr, err)
			}
		})
	}
	wg.Go(func() { errc <- s.acceptRTSP(ctx, rtspLn) })
	for _, p := range s.paths {
		if p.source != "" {
			wg.Go(func() { s.pull(ctx, p) })
		}
	}
	log.Info("stand-in gateway listening", "rtsp", cfg.RTSPAddress, "hls", cfg.HLSAddress, "metrics", cfg.MetricsAddress)
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	rtspLn.Close()
	for _, hs := range servers {
		hs.Close()
	}
	s.mu.Lock()
	s.closing = true
	for c := range s.sessions {
		c.nc.Close()
	}
	s.mu.Unlock()
	wg.Wait()
	return err
}

func (s *Server) acceptRTSP(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept RTSP: %w", err)
		}
		wg.Go(func() { s.serveConn(nc) })
	}
}

// lookup finds the path a reader asks for; readers never create paths.
func (s *Server) lookup(name string) *path {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.paths[name]
}

// forPublish finds or creates the path a publisher pushes to: a listed
// path without a source, or any other name when all_others is set.
func (s *Server) forPublish(name string) (*path, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.paths[name]; ok {
		if p.source != "" {
			return nil, fmt.Errorf("path %s pulls from its own source and takes no publisher", name)
		}
		return p, nil
	}
	if _, ok := s.cfg.Paths[allOthers]; !ok || name == "" {
		return nil, fmt.Errorf("path %s is not configured", name)
	}
	p := &path{name: name, dynamic: true}
	s.paths[name] = p
	return p, nil
}

// release forgets a path made for a publisher once nobody publishes,
// as MediaMTX does, so metrics list only live ones.
func (s *Server) release(p *path) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.dynamic && p.current() == nil && s.paths[p.name] == p {
		delete(s.paths, p.name)
	}
}

func (s *Server) sortedPaths() []*path {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := make([]*path, 0, len(s.paths))
	for _, p := range s.paths {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].name < ps[j].name })
	return ps
}

// pull keeps a path fed from its source, retrying every 2 s forever.
func (s *Server) pull(ctx context.Context, p *path) {
	log := s.log.With("path", p.name, "source", redact(p.source))
	if !strings.HasPrefix(p.source, "rtsp://") {
		log.Warn("source scheme not supported by the stand-in; the path stays not ready")
		return
	}
	for {
		err := s.pullOnce(ctx, p, log)
		if ctx.Err() != nil {
			return
		}
		log.Warn("source failed, retrying in 2s", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

func (s *Server) pullOnce(ctx context.Context, p *path, log *slog.Logger) error {
	sess, err := rtsp.Play(ctx, p.source, nil)
	if err != nil {
		return err
	}
	defer sess.Close()
	var st *stream
	for {
		track, pkt, err := sess.ReadPacket(10 * time.Second)
		if err != nil {
			if st != nil {
				p.unpublish(st)
				log.Info("source stopped")
			}
			return err
		}
		if st == nil { // ready once video flows, not merely once described
			st = newStream(sess.SDP, sess.Tracks, p)
			p.publish(st, sess)
			log.Info("source ready", "tracks", len(sess.Tracks))
		}
		st.write(track, pkt)
	}
}

func redact(source string) string {
	if i := strings.Index(source, "@"); i >= 0 {
		if j := strings.Index(source, "://"); j >= 0 && j < i {
			return source[:j+3] + "xxxxx" + source[i:]
		}
	}
	return source
}
