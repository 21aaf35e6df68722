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
	if err = config.Without(err, config.InstallOnly...); err != nil {
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
			// both name no k3s source, as files installed with --bundle do
			if err = config.Without(err, config.InstallOnly...); err != nil {
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

// The review screen never shows the join token, whatever its shape makes
// YAML do with it (quote it, or not); the saved file keeps it.
func TestReviewMasksToken(t *testing.T) {
	for _, token := range []string{
		"K10abc::server:s3cret",
		"12345678", // digits only: quoted, or it would load as a number
		"@s3cret",  // @, * and & start a YAML indicator: quoted
		"*s3cret",
		"&s3cret",
		"s3cret: more",    // ": " would start a mapping: quoted
		"s3cret #comment", // " #" would start a comment: quoted
		"s3cret#x",        // # without a blank before it is plain text
	} {
		t.Run(token, func(t *testing.T) {
			start := config.Default()
			start.Node = config.Node{Hostname: "edge-01", Role: config.RoleAgent, ServerURL: "https://192.0.2.1:6443", Token: config.Secret(token)}
			start.Pipeline.Streams = []config.Stream{{Name: "gate-1", URL: "rtsp://admin:hunter2@192.0.2.10/live"}}
			m := New(Options{Start: &start})
			file, shown, err := m.reviewYAML()
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(shown, strings.TrimPrefix(token, "&")[1:]) {
				t.Errorf("the review shows the token %q:\n%s", token, shown)
			}
			if strings.Contains(shown, "hunter2") || !strings.Contains(file, "hunter2") {
				t.Errorf("the review shows a camera password, or the file lost it:\n%s", shown)
			}
			if !strings.Contains(shown, "token: "+reviewMask+"\n") {
				t.Errorf("the review does not say the token is hidden:\n%s", shown)
			}
			back, err := config.LoadBytes([]byte(file), "yaml")
			// a token with blanks is refused at install, but the screen shows it first
			if err = config.Without(config.Without(err, config.InstallOnly...), "node.token"); err != nil || back.Node.Token != config.Secret(token) {
				t.Errorf("the saved file loads the token as %q (%v):\n%s", string(back.Node.Token), err, file)
			}
		})
	}
}
