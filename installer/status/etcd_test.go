package status

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// member is one etcd metrics listener as k3s exposes it.
func member(t *testing.T, leader bool) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/health":
			fmt.Fprint(w, `{"health":"true","reason":""}`)
		case "/metrics":
			v := 0
			if leader {
				v = 1
			}
			fmt.Fprintf(w, "# TYPE etcd_server_is_leader gauge\netcd_server_is_leader %d\netcd_server_has_leader 1\n", v)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

const dbInfo = `{"members":[
 {"ID":12825463525839137030,"name":"srv-2-6e1b3c0a","peerURLs":["https://10.77.0.2:2380"],"clientURLs":["https://10.77.0.2:2379"]},
 {"ID":3380239426421467135,"name":"srv-1-d4a5e7f2","peerURLs":["https://10.77.0.1:2380"],"clientURLs":["https://10.77.0.1:2379"]},
 {"ID":9081717301934729510,"name":"srv-3-0b9c8d7e","peerURLs":["https://10.77.0.3:2380"],"clientURLs":["https://10.77.0.3:2379"]}]}`

// TestEtcdStatus: a cluster whose third server is dead names it, says
// which member leads, and is not healthy.
func TestEtcdStatus(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	urls := map[string]string{"10.77.0.1": member(t, true).URL, "10.77.0.2": member(t, false).URL, "10.77.0.3": dead.URL}
	src := EtcdSource{
		Info:       func(context.Context) ([]byte, error) { return []byte(dbInfo), nil },
		MetricsURL: func(host string) string { return urls[host] },
	}
	r := healthyReport()
	r.Etcd = collectEtcd(context.Background(), src)
	Judge(r)
	if r.Etcd.Leader != "srv-1-d4a5e7f2" {
		t.Errorf("leader %q", r.Etcd.Leader)
	}
	if r.Healthy || !strings.Contains(strings.Join(r.Reasons, ","), "etcd member srv-3-0b9c8d7e not healthy") {
		t.Errorf("reasons %v, want the dead member named", r.Reasons)
	}
	// the dead member's error names what failed, not a random port
	for i := range r.Etcd.Members {
		if m := &r.Etcd.Members[i]; !m.Healthy {
			m.Error = "connection refused"
		}
	}
	var out bytes.Buffer
	if err := WriteText(&out, r); err != nil {
		t.Fatal(err)
	}
	golden(t, "cluster.txt", out.Bytes())

	// all up: healthy
	urls["10.77.0.3"] = member(t, false).URL
	r = healthyReport()
	r.Etcd = collectEtcd(context.Background(), src)
	Judge(r)
	if !r.Healthy {
		t.Errorf("three healthy members with a leader: %v", r.Reasons)
	}
}

// k3s's answers are input: bounded and checked.
func TestEtcdStatusHostile(t *testing.T) {
	many := `{"members":[` + strings.Repeat(`{"name":"x","clientURLs":["https://10.77.0.1:2379"]},`, maxEtcdMembers) + `{"name":"y"}]}`
	for name, tt := range map[string]struct{ info, want string }{
		"not JSON":    {"<html>", "/db/info:"},
		"too many":    {many, "no cluster has more than"},
		"huge":        {strings.Repeat(" ", maxEtcdInfo+1), "over"},
		"no client":   {`{"members":[{"name":"a","clientURLs":["unix:///x"]}]}`, ""},
		"not started": {`{"members":[{"name":"","clientURLs":[]}]}`, ""},
	} {
		e := collectEtcd(context.Background(), EtcdSource{
			Info:       func(context.Context) ([]byte, error) { return []byte(tt.info), nil },
			MetricsURL: func(string) string { return "http://127.0.0.1:1" },
		})
		if tt.want != "" && !strings.Contains(e.Error, tt.want) {
			t.Errorf("%s: error %q, want %q", name, e.Error, tt.want)
		}
		if tt.want == "" && (len(e.Members) != 1 || e.Members[0].Healthy || e.Members[0].Error == "") {
			t.Errorf("%s: %+v, want one member, not healthy, with why", name, e.Members)
		}
	}
}
