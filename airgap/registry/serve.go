// Package registry runs the appliance's own image registry in-process:
// distribution's registry (github.com/distribution/distribution/v3) over
// filesystem storage, with TLS from a CA Perch makes and htpasswd
// credentials, and the material for both.
package registry

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/distribution/distribution/v3/registry/auth"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd" // auth: htpasswd
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem" // storage: filesystem
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"
)

// DefaultAddr is where the registry listens unless told otherwise: this
// machine only, since without TLS and htpasswd anyone who reaches it may
// push.
const DefaultAddr = "127.0.0.1:5000"

// drainTimeout bounds how long a stopping registry waits for requests in
// flight (a node halfway through a large layer) before cutting them.
const drainTimeout = 30 * time.Second

// Config is one registry server.
type Config struct {
	// Dir is the storage root, distribution's filesystem layout
	// (Dir/docker/registry/v2/...). Created if missing.
	Dir string
	// Addr is HOST:PORT to listen on; DefaultAddr when empty.
	Addr string
	// TLSCert and TLSKey are PEM files; both or neither. Without them the
	// registry speaks plain HTTP.
	TLSCert, TLSKey string
	// Htpasswd is a file of bcrypt entries (HtpasswdLine); every registry
	// request must then carry one of its users. Empty: no authentication.
	Htpasswd string
	// Log receives the registry's log (text, info and above); nil discards.
	Log io.Writer
}

// Serve runs the registry until ctx is cancelled, then stops taking
// connections, lets requests in flight finish (up to 30 s) and returns nil.
// Besides the registry API under /v2/, the same listener answers:
//
//   - /healthz: 200 "ok" while the storage directory can be read, else 503.
//   - /metrics: Prometheus metrics; distribution's registry_http_* (per
//     route) and registry_storage_*, perch_registry_corrupt_total (content
//     that failed its digest check, see verify.go) and Go's process metrics.
//
// Neither asks for credentials (probes and scrapers have none); they reveal
// request counts, not content. Distribution logs through logrus's standard
// logger, so Serve points that process-wide logger at c.Log.
func Serve(ctx context.Context, c Config) error {
	if c.Dir == "" {
		return errors.New("registry: no storage directory given")
	}
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("registry: TLS needs both a certificate and its key")
	}
	dir, err := filepath.Abs(c.Dir)
	if err != nil {
		return fmt.Errorf("registry storage %s: %w", c.Dir, err)
	}
	c.Dir = dir // logged paths (a corrupt blob's) must work from anywhere
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return fmt.Errorf("registry storage: %w; pick a directory the registry can write", err)
	}
	var tlsConf *tls.Config
	if c.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return fmt.Errorf("registry TLS certificate %s with key %s: %w; perch install issues them, or pass a matching PEM pair", c.TLSCert, c.TLSKey, err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if c.Htpasswd != "" {
		if err := checkHtpasswd(c.Htpasswd); err != nil {
			return err
		}
	}

	logger := slog.New(slog.NewTextHandler(c.Log, &slog.HandlerOptions{Level: slog.LevelInfo}))
	routeLogrus(logger.Handler())
	// Distribution can export traces through OpenTelemetry's autoexport,
	// which defaults to OTLP: an appliance has nowhere to send them.
	if os.Getenv("OTEL_TRACES_EXPORTER") == "" {
		os.Setenv("OTEL_TRACES_EXPORTER", "none")
	}

	corrupt := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "perch_registry_corrupt_total",
		Help: "Blobs and manifests refused because their stored content no longer matches their digest.",
	}, []string{"kind"})
	v := newVerifier(c.Dir, logger, corrupt)
	app, reg, err := newApp(context.WithoutCancel(ctx), appConfig(c, v))
	if err != nil {
		return err
	}
	defer app.Shutdown()
	reg.MustRegister(corrupt)
	metrics := promhttp.HandlerFor(prometheus.Gatherers{reg, prometheus.DefaultGatherer}, promhttp.HandlerOpts{})
	health := healthz(c.Dir, logger)

	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/healthz":
				health(w, r)
			case "/metrics":
				metrics.ServeHTTP(w, r)
			default:
				app.ServeHTTP(w, r)
			}
		}),
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.New(slogWriter{logger}, "", 0),
	}
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("registry: %w; pick another address or stop what listens there", err)
	}
	scheme := "http"
	if tlsConf != nil {
		scheme = "https"
	}
	logger.Info("registry serving", "url", scheme+"://"+ln.Addr().String(), "dir", c.Dir, "auth", c.Htpasswd != "")

	served := make(chan error, 1)
	go func() {
		if tlsConf != nil {
			served <- srv.ServeTLS(ln, "", "")
		} else {
			served <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-served:
		return fmt.Errorf("registry: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		logger.Warn("registry stopped with requests still running; they were cut", "after", drainTimeout)
		srv.Close()
	}
	<-served
	logger.Info("registry stopped")
	return nil
}

func appConfig(c Config, v *verifier) *configuration.Configuration {
	secret := make([]byte, 32)
	rand.Read(secret)
	cfg := &configuration.Configuration{
		Storage: configuration.Storage{
			"filesystem": {"rootdirectory": c.Dir},
			"delete":     {"enabled": false},
			// Clients fetch from this server, never from a storage URL.
			"redirect": {"disable": true},
			// No blob descriptor cache: on a local disk a stat costs
			// less than a stale answer. With one, a blob deleted to
			// repair it still answers HEAD 200 until a restart, and a
			// push skips uploading it again.
		},
		Middleware: map[string][]configuration.Middleware{
			"repository": {{Name: verifyMiddleware, Options: configuration.Parameters{"verifier": v}}},
		},
	}
	cfg.HTTP.Addr = c.Addr
	// Signs upload state between requests of one push; one process serves
	// them all, so a fresh one per start is enough.
	cfg.HTTP.Secret = hex.EncodeToString(secret)
	cfg.HTTP.Headers = http.Header{"X-Content-Type-Options": {"nosniff"}}
	// Instruments every route (registry_http_*); Serve mounts /metrics
	// itself rather than starting distribution's debug server.
	cfg.HTTP.Debug.Prometheus.Enabled = true
	cfg.Log.AccessLog.Disabled = true
	// distribution's default applies only to a parsed config file; left
	// at 0, /v2/_catalog lists nothing and refuses every ?n=
	cfg.Catalog.MaxEntries = 1000
	if c.Htpasswd != "" {
		cfg.Auth = configuration.Auth{"htpasswd": {"realm": "perch-registry", "path": c.Htpasswd}}
	}
	return cfg
}

// appMu serialises newApp's borrowing of prometheus.DefaultRegisterer.
var appMu sync.Mutex

// newApp builds distribution's app. It registers its per-route metrics on
// Prometheus's default registry, which panics the second time a process
// does so (a restart in tests, or two servers); each app gets its own
// registry instead. NewApp also panics on bad configuration.
func newApp(ctx context.Context, cfg *configuration.Configuration) (app *handlers.App, reg *prometheus.Registry, err error) {
	appMu.Lock()
	defer appMu.Unlock()
	reg = prometheus.NewRegistry()
	saved := prometheus.DefaultRegisterer
	prometheus.DefaultRegisterer = reg
	defer func() { prometheus.DefaultRegisterer = saved }()
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("registry: %v", p)
		}
	}()
	return handlers.NewApp(ctx, cfg), reg, nil
}

func healthz(dir string, logger *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		f, err := os.Open(dir)
		if err == nil {
			_, err = f.Readdirnames(1)
			f.Close()
			if err == io.EOF {
				err = nil
			}
		}
		if err != nil {
			logger.Error("health check: storage unreadable", "err", err)
			http.Error(w, "storage unreadable", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	}
}

// routeLogrus sends logrus's standard logger, which distribution logs
// through, to h, without the lines it writes for every request.
func routeLogrus(h slog.Handler) {
	l := logrus.StandardLogger()
	l.SetLevel(logrus.InfoLevel)
	l.SetOutput(io.Discard)
	l.SetFormatter(nopFormatter{})
	l.ReplaceHooks(logrus.LevelHooks{})
	l.AddHook(slogHook{h})
}

// perRequest are messages distribution logs for every request that went
// as expected; the metrics count those.
var perRequest = []string{
	"response completed",
	"authorized request",
	// A client's first request carries no credentials, by protocol.
	"error authorizing context: basic authentication challenge for realm \"perch-registry\": " + auth.ErrInvalidCredential.Error(),
	"redis not configured",
}

// level is how loud an entry should be, and whether to log it at all.
// Distribution logs every error response as an error; one the client
// caused (4xx) is information, and a HEAD answered 404 is a push asking
// whether to upload, not worth a line.
func level(e *logrus.Entry) (slog.Level, bool) {
	if e.Level >= logrus.WarnLevel && slices.Contains(perRequest, e.Message) {
		return 0, false
	}
	if code, ok := e.Data["err.code"].(errcode.ErrorCode); ok && e.Message == "response completed with error" {
		if status := code.Descriptor().HTTPStatusCode; status < 500 {
			if status == http.StatusNotFound && e.Data["http.request.method"] == http.MethodHead {
				return 0, false
			}
			return slog.LevelInfo, true
		}
	}
	switch {
	case e.Level <= logrus.ErrorLevel:
		return slog.LevelError, true
	case e.Level == logrus.WarnLevel:
		return slog.LevelWarn, true
	case e.Level == logrus.InfoLevel:
		return slog.LevelInfo, true
	}
	return slog.LevelDebug, true
}

type slogHook struct{ h slog.Handler }

func (slogHook) Levels() []logrus.Level { return logrus.AllLevels }

func (k slogHook) Fire(e *logrus.Entry) error {
	level, ok := level(e)
	ctx := context.Background()
	if !ok || !k.h.Enabled(ctx, level) {
		return nil
	}
	r := slog.NewRecord(e.Time, level, e.Message, 0)
	keys := make([]string, 0, len(e.Data))
	for key := range e.Data {
		if key != "go.version" {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	for _, key := range keys {
		r.AddAttrs(slog.Any(key, e.Data[key]))
	}
	return k.h.Handle(ctx, r)
}

type nopFormatter struct{}

func (nopFormatter) Format(*logrus.Entry) ([]byte, error) { return nil, nil }

// slogWriter takes net/http's error log lines (TLS handshake failures,
// mostly) into the registry's log.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Warn(strings.TrimSpace(string(p)))
	return len(p), nil
}
