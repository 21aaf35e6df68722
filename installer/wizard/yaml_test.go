package wizard

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/perchedge/perch/installer/config"
)

// What the wizard saves loads back as exactly what it built, whatever the
// values look like to a YAML parser.
func TestMarshalYAMLRoundTrips(t *testing.T) {
	example, err := config.LoadBytes(config.Example, "yaml")
	if err != nil {
		t.Fatal(err)
	}
	odd := config.Default()
	odd.Node = config.Node{Hostname: "edge-01", Role: config.RoleAgent, ServerURL: "https://[2001:db8::1]:6443",
		Token: "K10a1b2::server:yes", Labels: map[string]string{"perch.dev/zone": "5000", "perch.dev/on": "true"}}
	odd.Bundle = config.Bundle{Source: "/media/usb/my bundle #2.tar.zst", PublicKey: "/media/usb/site.pub"}
	odd.K3s.ExtraArgs = []string{"--kubelet-arg=max-pods=250", "--flannel-backend=none"}
	odd.K3s.Disable = []string{"traefik"}
	odd.K3s.ReadyTimeout = 90 * time.Second
	odd.Registry.Enabled = false
	odd.Monitoring = config.Monitoring{Enabled: false, Retention: "", Grafana: false}
	odd.Pipeline.Streams = []config.Stream{{Name: "gate-1", URL: "rtsp://u:p@ss:w0rd@192.0.2.10:554/s?x=1&y=2"}}
	odd.GPU = config.GPU{Mode: config.GPUOff, Sharing: config.GPUSharing{Replicas: 4}}

	for name, cfg := range map[string]config.Appliance{"example": example, "odd values": odd} {
		t.Run(name, func(t *testing.T) {
			out, err := MarshalYAML(cfg)
			if err != nil {
				t.Fatal(err)
			}
			back, err := config.LoadBytes(out, "yaml")
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if !reflect.DeepEqual(back, cfg) {
				t.Fatalf("loads back as\n%#v\nwant\n%#v\nfile:\n%s", back, cfg, out)
			}
		})
	}
}

func TestMarshalYAMLShape(t *testing.T) {
	cfg := config.Default()
	cfg.Node.Hostname = "edge-01"
	cfg.Bundle = config.Bundle{Source: "/media/usb/site-a.tar.zst", PublicKey: "/media/usb/site.pub"}
	cfg.Monitoring.Grafana = false
	out, err := MarshalYAML(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	// defaults that are false or empty stay out; a default turned off stays in
	for _, want := range []string{"readyTimeout: 5m\n", "grafana: false\n", "hostname: edge-01\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %q in\n%s", want, s)
		}
	}
	for _, not := range []string{"clusterInit", "serverURL", "extraArgs", "labels"} {
		if strings.Contains(s, not) {
			t.Errorf("%s written though it is empty:\n%s", not, s)
		}
	}
}
