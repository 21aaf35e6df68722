// Command nats-exporter is a stand-in for natsio/prometheus-nats-exporter,
// not the exporter: for the perch-analytics chart's NATS pod in tests
// where the real image cannot be pulled. It takes the chart's arguments
// (-port=N, the endpoint flags, the server URL; other flags are accepted
// and ignored) and on each scrape turns every numeric field of the
// server's /varz (and /connz with -connz) into gnatsd_varz_<field>
// (gnatsd_connz_<field>; nested fields' path joined by "_"), labelled
// server_id as the real one does, and
// /healthz into gnatsd_healthz_status (0 healthy, 1 not). -jsz is
// ignored: JetStream's metrics have their own shapes.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

type options struct {
	port     int
	server   string
	connz    bool
	healthz  bool
	maxFetch time.Duration
}

func parse(args []string) (options, error) {
	o := options{port: 7777, maxFetch: 5 * time.Second}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			o.server = strings.TrimSuffix(a, "/")
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch name {
		case "port", "p":
			if !hasVal && i+1 < len(args) {
				i++
				val = args[i]
			}
			n, err := strconv.Atoi(val)
			if err != nil {
				return o, fmt.Errorf("bad -port %q", val)
			}
			o.port = n
		case "connz":
			o.connz = true
		case "healthz":
			o.healthz = true
		}
	}
	if o.server == "" {
		return o, fmt.Errorf("usage: nats-exporter [-port=7777] [-varz] [-connz] [-healthz] URL")
	}
	return o, nil
}

func main() {
	o, err := parse(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "nats-exporter stand-in:", err)
		os.Exit(2)
	}
	fmt.Fprintf(os.Stderr, "nats-exporter stand-in: serving :%d/metrics for %s\n", o.port, o.server)
	err = http.ListenAndServe(fmt.Sprintf(":%d", o.port), handler(o))
	fmt.Fprintln(os.Stderr, "nats-exporter stand-in:", err)
	os.Exit(1)
}

func handler(o options) http.Handler {
	client := &http.Client{Timeout: o.maxFetch}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		io.WriteString(w, collect(client, o))
	})
	return mux
}

// collect leaves out what it cannot fetch, as the real exporter does,
// so that an unreachable server shows as missing series, not zeros.
func collect(client *http.Client, o options) string {
	var b strings.Builder
	label := fmt.Sprintf(`{server_id=%q}`, o.server)
	endpoints := []string{"varz"}
	if o.connz {
		endpoints = append(endpoints, "connz")
	}
	for _, ep := range endpoints {
		var doc map[string]any
		if fetch(client, o.server+"/"+ep, &doc) != nil {
			continue
		}
		numeric(&b, "gnatsd_"+ep, label, doc)
	}
	if o.healthz {
		var h struct {
			Status string `json:"status"`
		}
		if err := fetch(client, o.server+"/healthz", &h); err == nil || h.Status != "" {
			status := 1
			if h.Status == "ok" {
				status = 0
			}
			fmt.Fprintf(&b, "gnatsd_healthz_status%s %d\n", label, status)
		}
	}
	return b.String()
}

var metricName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// numeric writes every numeric and boolean field of doc, nested objects
// included with their path joined by "_" as the real exporter names them
// (varz's jetstream.stats.storage is gnatsd_varz_jetstream_stats_storage).
func numeric(b *strings.Builder, prefix, label string, doc map[string]any) {
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		name := prefix + "_" + k
		// keys that are data, not fields (http_req_stats is keyed by
		// path: "/connz") make no metric name
		if !metricName.MatchString(name) {
			continue
		}
		switch v := doc[k].(type) {
		case float64:
			fmt.Fprintf(b, "%s%s %v\n", name, label, v)
		case bool:
			fmt.Fprintf(b, "%s%s %d\n", name, label, map[bool]int{false: 0, true: 1}[v])
		case map[string]any:
			numeric(b, name, label, v)
		}
	}
}

// fetch decodes the body even on an error status: /healthz answers 503
// with {"status":"unavailable"} when the server is not ready.
func fetch(client *http.Client, url string, v any) error {
	res, err := client.Get(url)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, res.Status)
	}
	return nil
}
