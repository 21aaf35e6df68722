package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// A trimmed /varz of nats-server 2.10, as served on the monitor port.
const varz = `{
  "server_id": "NDJWE4SSDIL4HSCRL3PE2CZPHGJQ7OHIMYL7OQYZ7OLXTDQIU7PUJLZD",
  "server_name": "perch-analytics-nats-0",
  "version": "2.10.22",
  "go": "go1.22.8",
  "host": "0.0.0.0",
  "port": 4222,
  "max_connections": 65536,
  "ping_interval": 120000000000,
  "http_port": 8222,
  "jetstream": {"config": {"max_memory": 268435456, "store_dir": "/data/jetstream"}, "stats": {"memory": 0, "storage": 1431, "api": {"total": 12, "errors": 0}}},
  "http_req_stats": {"/": 1, "/connz": 4, "/varz": 9},
  "mqtt": {"host": "", "port": 1883},
  "start": "2026-05-13T09:12:40.1Z",
  "now": "2026-05-13T09:20:01.3Z",
  "uptime": "7m21s",
  "mem": 17514496,
  "cores": 16,
  "cpu": 0.5,
  "connections": 3,
  "total_connections": 5,
  "routes": 0,
  "remotes": 0,
  "in_msgs": 1204,
  "out_msgs": 2408,
  "in_bytes": 389120,
  "out_bytes": 778240,
  "slow_consumers": 0,
  "subscriptions": 57,
  "system_account": "$SYS"
}`

func TestExporter(t *testing.T) {
	var unhealthy atomic.Bool
	nats := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/varz":
			io.WriteString(w, varz)
		case "/connz":
			io.WriteString(w, `{"num_connections": 3, "total": 3, "offset": 0, "limit": 1024, "connections": []}`)
		case "/healthz":
			if unhealthy.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
				io.WriteString(w, `{"status": "unavailable", "error": "JetStream is not current"}`)
				return
			}
			io.WriteString(w, `{"status": "ok"}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer nats.Close()

	// The chart's arguments.
	o, err := parse([]string{"-port=7777", "-varz", "-connz", "-healthz", "-jsz=all", nats.URL})
	if err != nil {
		t.Fatal(err)
	}
	if o.port != 7777 || o.server != nats.URL {
		t.Fatalf("parsed %+v", o)
	}
	exporter := httptest.NewServer(handler(o))
	defer exporter.Close()
	scrape := func() string {
		res, err := http.Get(exporter.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 {
			t.Fatalf("status %d", res.StatusCode)
		}
		return string(b)
	}
	label := `{server_id="` + nats.URL + `"}`
	body := scrape()
	for _, want := range []string{
		"gnatsd_varz_connections" + label + " 3\n",
		"gnatsd_varz_in_msgs" + label + " 1204\n",
		"gnatsd_varz_out_msgs" + label + " 2408\n",
		"gnatsd_varz_mem" + label + " 1.7514496e+07\n",
		"gnatsd_varz_subscriptions" + label + " 57\n",
		"gnatsd_varz_cpu" + label + " 0.5\n",
		"gnatsd_connz_num_connections" + label + " 3\n",
		"gnatsd_varz_jetstream_stats_storage" + label + " 1431\n",
		"gnatsd_varz_jetstream_stats_api_total" + label + " 12\n",
		"gnatsd_varz_jetstream_config_max_memory" + label + " 2.68435456e+08\n",
		"gnatsd_healthz_status" + label + " 0\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "server_name") || strings.Contains(body, "store_dir") || strings.Contains(body, "http_req_stats") {
		t.Errorf("non-numeric fields exported:\n%s", body)
	}

	unhealthy.Store(true)
	if body := scrape(); !strings.Contains(body, "gnatsd_healthz_status"+label+" 1\n") {
		t.Errorf("unhealthy server not reported:\n%s", body)
	}

	nats.Close()
	if body := scrape(); body != "" {
		t.Errorf("metrics of an unreachable server:\n%s", body)
	}
}

func TestParseRejectsMissingURL(t *testing.T) {
	if _, err := parse([]string{"-port=7777", "-varz"}); err == nil {
		t.Fatal("no error without a server URL")
	}
}
