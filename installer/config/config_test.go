package config

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

const minimal = `
apiVersion: perch.dev/v1alpha1
kind: Appliance
k3s:
  binary: /opt/k3s
`

func TestInvalidConfigs(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // every FieldError, exactly, in order
	}{
		{"wrong apiVersion and kind", "apiVersion: v1\nkind: Pod\nk3s: {binary: /opt/k3s}", []string{
			`apiVersion: must be perch.dev/v1alpha1, got "v1"`,
			`kind: must be Appliance, got "Pod"`,
		}},
		{"agent without server", minimal + "node: {role: agent}", []string{
			"node.serverURL: required when node.role is agent; set it to https://SERVER:6443",
		}},
		{"bad role", minimal + "node: {role: master}", []string{
			`node.role: must be server or agent, got "master"`,
		}},
		{"joining without token", minimal + "node: {serverURL: 'https://10.0.0.1:6443'}", []string{
			"node.token: required to join https://10.0.0.1:6443; set node.token or node.tokenFile to the token of the first server (/var/lib/rancher/k3s/server/token there)",
		}},
		{"http server URL", minimal + "node: {role: agent, serverURL: 'http://10.0.0.1:6443', token: abc}", []string{
			`node.serverURL: "http://10.0.0.1:6443" must look like https://SERVER:6443`,
		}},
		{"clusterInit and serverURL", minimal + "node: {clusterInit: true, serverURL: 'https://a:6443', token: x0123456789abcdef}", []string{
			"node.clusterInit: starts a new cluster, node.serverURL joins one; keep only one of them",
		}},
		{"first server without token", minimal + "node: {clusterInit: true}", []string{
			"node.token: required for the first server of a cluster: every node that joins uses the same token, and trusts the appliance registry through it; set node.token to a long random string (openssl rand -hex 24) or node.tokenFile to a 0600 file holding one",
		}},
		{"first server with a short token", minimal + "node: {clusterInit: true, token: s3cret}", []string{
			"node.token: is 6 characters; a cluster's token guards its datastore and its registry's credentials: use at least 16 (openssl rand -hex 24)",
		}},
		{"token and tokenFile", minimal + "node: {token: a, tokenFile: /etc/t}", []string{
			"node.token: node.token and node.tokenFile are both set; keep one",
		}},
		{"relative tokenFile", minimal + "node: {tokenFile: token.txt}", []string{
			`node.tokenFile: must be an absolute path, got "token.txt"`,
		}},
		{"bad hostname and IP", minimal + "node: {hostname: Edge_01, nodeIP: 10.0.0.300}", []string{
			`node.hostname: "Edge_01" is not a valid node name: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
			`node.nodeIP: "10.0.0.300" is not an IP address`,
		}},
		{"reserved label", minimal + "node: {labels: {node-role.kubernetes.io/gpu: 'true'}}", []string{
			"node.labels.node-role.kubernetes.io/gpu: the kubelet may not set labels under node-role.kubernetes.io; use your own prefix such as perch.dev/",
		}},
		{"unknown keys with suggestions", minimal + "node: {nodeIp: 1.2.3.4, severURL: x}\nmonitor: {}", []string{
			"monitor: unknown key; did you mean monitoring?",
			"node.nodeIp: unknown key; did you mean nodeIP? (keys are case-sensitive)",
			"node.severURL: unknown key; did you mean serverURL?",
		}},
		{"wrong types", minimal + "  readyTimeout: 300\nnode: {clusterInit: maybe, labels: [a]}\nregistry: {port: 50.5}", []string{
			"k3s.readyTimeout: must be a duration with a unit such as 90s or 5m, got the number 300",
			`node.clusterInit: "maybe" is not true or false; write true or false (yes, on and 1 are not booleans here)`,
			"node.labels: must be a mapping of strings, got a list",
			"registry.port: must be a whole number, got the number 50.5",
		}},
		{"no k3s binary", "apiVersion: perch.dev/v1alpha1\nkind: Appliance", []string{
			"k3s.binary: required: the path of the k3s binary to install, unless a bundle is named (bundle.source, PERCH_BUNDLE_SOURCE, or install --bundle)",
		}},
		{"managed and odd extraArgs", minimal + "  extraArgs: ['--token=abc', 'disable-agent', '--write-kubeconfig-mode=644', '--kube-apiserver-arg=v=2']", []string{
			"k3s.extraArgs[0]: --token is set from node.token; use that key instead",
			`k3s.extraArgs[1]: is not a flag; write each flag and its value as one item, --flag=value`,
			"k3s.extraArgs[2]: --write-kubeconfig-mode is managed by perch; remove it",
		}},
		// k3s's parser takes one dash as two, and every alias
		{"managed extraArgs however written", minimal + "  extraArgs: ['-token=planted-tok', '-data-dir=/x', '-server=https://s:6443', '--agent-token=planted-agent', '-t', 'planted-sep', '--private-registry=/r.yaml', '--', '-']", []string{
			"k3s.extraArgs[0]: -token is set from node.token; use that key instead",
			"k3s.extraArgs[1]: -data-dir is set from k3s.dataDir; use that key instead",
			"k3s.extraArgs[2]: -server is set from node.serverURL; use that key instead",
			"k3s.extraArgs[3]: --agent-token would put a secret on k3s's command line, where ps shows it; use --agent-token-file=PATH with the token in a 0600 file",
			"k3s.extraArgs[4]: -t is set from node.token; use that key instead",
			"k3s.extraArgs[5]: is not a flag; write each flag and its value as one item, --flag=value",
			"k3s.extraArgs[6]: --private-registry is set from registry.enabled; use that key instead",
			"k3s.extraArgs[7]: is not a flag; write each flag and its value as one item, --flag=value",
			"k3s.extraArgs[8]: is not a flag; write each flag and its value as one item, --flag=value",
		}},
		{"bad disable list", minimal + "  disable: [traefik, nginx, traefik]", []string{
			`k3s.disable[1]: "nginx" is not a k3s component; valid: coredns, servicelb, traefik, local-storage, metrics-server, runtimes`,
			`k3s.disable[2]: "traefik" is listed twice`,
		}},
		{"agent without agent", minimal + "  disableAgent: true\nnode: {role: agent, serverURL: 'https://s:6443', token: t}", []string{
			"k3s.disableAgent: only a server can run without an agent; remove it",
		}},
		{"relative dataDir, short timeout", minimal + "  dataDir: data\n  readyTimeout: 1s", []string{
			`k3s.dataDir: must be an absolute path, got "data"`,
			"k3s.readyTimeout: must be between 10s and 2h, got 1s",
		}},
		{"registry on the API port", minimal + "registry: {port: 6443}", []string{
			"registry.port: 6443 is used by k3s; pick another port such as 5000",
		}},
		{"gpu", minimal + "gpu: {mode: yes-please, sharing: {replicas: 0}}", []string{
			`gpu.mode: must be auto, required or off, got "yes-please"`,
			"gpu.sharing.replicas: must be between 1 (no sharing) and 64, got 0",
		}},
		{"streams", minimal + "pipeline:\n  streams:\n  - {name: Gate_1, url: 'rtsp://u:secret@cam/1'}\n  - {name: b, url: 'ftp://cam/1'}\n  - {name: b}\n  - {url: 'not a url'}", []string{
			`pipeline.streams[0].name: "Gate_1": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`,
			`pipeline.streams[1].url: scheme "ftp" is not supported; use rtsp, rtsps, rtmp, http(s), srt or udp`,
			`pipeline.streams[2].name: "b" is already the name of pipeline.streams[1]`,
			"pipeline.streams[2].url: required: the camera's rtsp:// URL",
			"pipeline.streams[3].name: required: a short name such as gate-1",
			`pipeline.streams[3].url: "not a url" is not a URL such as rtsp://CAMERA:554/stream`,
		}},
		{"stream named like a gateway catch-all", minimal + "pipeline:\n  streams:\n  - {name: all, url: 'rtsp://cam/1'}\n  - {name: gate-1, url: 'rtsp://cam/2'}", []string{
			`pipeline.streams[0].name: "all" is reserved by the media gateway, where it matches every other stream's path; give the stream another name such as gate-1`,
		}},
		{"retention", minimal + "monitoring: {retention: 7 days, retentionSize: 10G}", []string{
			`monitoring.retention: "7 days" is not a Prometheus duration; write it like 7d or 12h`,
			`monitoring.retentionSize: "10G" is not a Prometheus size; write it like 10GB or 512MB`,
		}},
		{"public key without bundle", minimal + "bundle: {publicKey: /k.pub}", []string{
			"bundle.publicKey: is set but bundle.source is empty; set the bundle to verify or remove the key",
		}},
		{"bundle without key, and with k3s.binary", minimal + "bundle: {source: /media/usb/site-a.tar.zst}", []string{
			"bundle.publicKey: required with bundle.source: the .pub file the bundle was signed with (perch bundle keygen made it)",
			"k3s.binary: is set together with bundle.source; the bundle carries k3s, so remove k3s.binary",
		}},
		{"serverURL without a port", minimal + "node: {role: agent, serverURL: 'https://10.0.0.1', token: abc}", []string{
			`node.serverURL: "https://10.0.0.1" has no port; k3s servers listen on 6443: https://10.0.0.1:6443`,
		}},
		{"serverURL with a query", minimal + "node: {role: agent, serverURL: 'https://10.0.0.1:6443?x=1', token: abc}", []string{
			`node.serverURL: must be only https://SERVER:PORT, without a user, path, query or fragment, got "https://10.0.0.1:6443?x=1"`,
		}},
		{"camera port out of range", minimal + "pipeline: {streams: [{name: a, url: 'rtsp://cam:99999/s'}]}", []string{
			`pipeline.streams[0].url: port "99999" is not a port number (1 to 65535)`,
		}},
		{"camera URL with a fragment", minimal + "pipeline: {streams: [{name: a, url: 'rtsp://cam/s#1'}]}", []string{
			"pipeline.streams[0].url: has a #fragment, which no camera reads; write a # in a password as %23",
		}},
		{"yes is not a boolean", minimal + "node: {clusterInit: yes}", []string{
			`node.clusterInit: "yes" is not true or false; write true or false (yes, on and 1 are not booleans here)`,
		}},
		{"a long value is cut when echoed", minimal + "node: {role: " + strings.Repeat("x", 300) + "}", []string{
			`node.role: must be server or agent, got "` + strings.Repeat("x", 64) + `… (300 bytes)"`,
		}},
		{"remote write in clear with credentials", minimal + "monitoring: {remoteWrite: [{url: 'http://central:9090/api/v1/write', username: site, passwordFile: /etc/perch/rw}]}", []string{
			"monitoring.remoteWrite[0].url: is http://, which would send the credentials in clear; use https://",
		}},
		{"remote write with inline credentials", minimal + "monitoring: {remoteWrite: [{url: 'https://u:hunter2@central/api/v1/write'}]}", []string{
			"monitoring.remoteWrite[0].url: carries credentials; put them in username and passwordFile, which never show in a plan",
		}},
		{"remote write half auth, two kinds, relative file", minimal + "monitoring: {remoteWrite: [{url: 'https://c/w', username: site}, {name: b, url: 'https://c/w', passwordFile: /p, username: u, bearerTokenFile: t}]}", []string{
			"monitoring.remoteWrite[0].passwordFile: basic auth needs both username and passwordFile",
			"monitoring.remoteWrite[1].bearerTokenFile: is set together with basic auth; a store takes one of them",
			`monitoring.remoteWrite[1].bearerTokenFile: must be an absolute path, got "t"`,
		}},
		{"remote write names and urls", minimal + "monitoring: {remoteWrite: [{name: x, url: 'https://c/w'}, {name: x, url: 'ftp://c'}, {name: Bad_Name}]}", []string{
			`monitoring.remoteWrite[1].name: "x" names another store too; give each its own`,
			`monitoring.remoteWrite[1].url: "ftp://c" is not an http(s) URL with a host; write it like https://metrics.example.com/api/v1/write`,
			`monitoring.remoteWrite[2].name: "Bad_Name" must be lower-case letters, digits and '-', up to 32`,
			"monitoring.remoteWrite[2].url: required: the store's remote-write endpoint, such as https://metrics.example.com/api/v1/write",
		}},
		{"scrape interval and labels", minimal + "monitoring: {scrapeInterval: 1s, externalLabels: {__x: a, ok: b}}", []string{
			"monitoring.externalLabels.__x: is not a Prometheus label name; use letters, digits and _ (not starting with __), up to 64",
			`monitoring.scrapeInterval: "1s" must be a duration from 5s to 5m, like 30s`,
		}},
		{"not a mapping", "- a\n- b", []string{
			"(file): the file must hold a mapping of keys at the top, got a list; check that it is the appliance config",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadBytes([]byte(tt.yaml), "yaml")
			var inv *InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("want InvalidError, got %v", err)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid")
			}
			var got []string
			for _, e := range inv.Errs {
				got = append(got, e.Error())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors:\n got: %q\nwant: %q", got, tt.want)
			}
		})
	}
}

func TestCameraPasswordNotInErrors(t *testing.T) {
	_, err := LoadBytes([]byte(minimal+"pipeline: {streams: [{name: a, url: 'rtsp//u:hunter2@cam'}]}"), "yaml")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("want an error without the password, got %v", err)
	}
}

func TestFormats(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"a.yaml": minimal + "node: {role: server, labels: {Zone: North}}",
		"a.toml": "apiVersion = 'perch.dev/v1alpha1'\nkind = 'Appliance'\n[k3s]\nbinary = '/opt/k3s'\n[node]\nrole = 'server'\n[node.labels]\nZone = 'North'\n",
		"a.json": `{"apiVersion":"perch.dev/v1alpha1","kind":"Appliance","k3s":{"binary":"/opt/k3s"},"node":{"role":"server","labels":{"Zone":"North"}}}`,
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(Source{File: p})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		// label keys keep their case: viper alone would have made this "zone"
		if cfg.Node.Labels["Zone"] != "North" || cfg.K3s.Binary != "/opt/k3s" {
			t.Errorf("%s: got %+v", name, cfg.Node)
		}
	}
}

func TestStdin(t *testing.T) {
	cfg, err := Load(Source{File: "-", Stdin: strings.NewReader(minimal)})
	if err != nil || cfg.K3s.Binary != "/opt/k3s" {
		t.Fatalf("got %v, %v", cfg.K3s, err)
	}
}

func TestEnvAndFlagsOverride(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a.yaml")
	os.WriteFile(p, []byte(minimal+"node: {hostname: from-file, nodeIP: 10.0.0.1, token: 0123456789abcdef}\nregistry: {port: 5001}"), 0o644)
	env := map[string]string{
		"PERCH_NODE_HOSTNAME":     "from-env",
		"PERCH_NODE_NODE_IP":      "10.0.0.2",
		"PERCH_REGISTRY_PORT":     "5002",
		"PERCH_K3S_DISABLE":       "traefik, servicelb",
		"PERCH_NODE_LABELS":       "perch.dev/site=a,tier=edge",
		"PERCH_K3S_READY_TIMEOUT": "90s",
		"PERCH_PIPELINE_STREAMS":  `[{"name":"a","url":"rtsp://cam/1"}]`,
		"PERCH_NODE_CLUSTER_INIT": "true",
	}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	AddFlags(fs)
	if err := fs.Parse([]string{"--node-ip", "10.0.0.3"}); err != nil {
		t.Fatal(err)
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	cfg, err := Load(Source{File: p, Flags: fs})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"hostname (env over file)":  cfg.Node.Hostname == "from-env",
		"nodeIP (flag over env)":    cfg.Node.NodeIP == "10.0.0.3",
		"port (env int)":            cfg.Registry.Port == 5002,
		"disable (env list)":        reflect.DeepEqual(cfg.K3s.Disable, []string{"traefik", "servicelb"}),
		"labels (env map)":          reflect.DeepEqual(cfg.Node.Labels, map[string]string{"perch.dev/site": "a", "tier": "edge"}),
		"readyTimeout (env dur)":    cfg.K3s.ReadyTimeout == 90*time.Second,
		"streams (env JSON)":        len(cfg.Pipeline.Streams) == 1 && cfg.Pipeline.Streams[0].URL == "rtsp://cam/1",
		"clusterInit (env bool)":    cfg.Node.ClusterInit,
		"defaults kept (gpu.mode)":  cfg.GPU.Mode == GPUAuto,
		"unset flag does not erase": cfg.K3s.Binary == "/opt/k3s",
	}
	for what, ok := range want {
		if ok != true {
			t.Errorf("%s: not applied; cfg=%+v", what, cfg)
		}
	}
}

func TestEnvErrorsNameTheVariable(t *testing.T) {
	t.Setenv("PERCH_K3S_BINARY", "/opt/k3s")
	t.Setenv("PERCH_REGISTRY_PORT", "five")
	_, err := Load(Source{})
	if err == nil || !strings.Contains(err.Error(), "registry.port (from PERCH_REGISTRY_PORT): must be a whole number") {
		t.Fatalf("got %v", err)
	}
}

func TestEnvNames(t *testing.T) {
	for path, want := range map[string]string{
		"node.serverURL":       "PERCH_NODE_SERVER_URL",
		"node.nodeIP":          "PERCH_NODE_NODE_IP",
		"k3s.extraArgs":        "PERCH_K3S_EXTRA_ARGS",
		"gpu.sharing.replicas": "PERCH_GPU_SHARING_REPLICAS",
		"apiVersion":           "PERCH_API_VERSION",
	} {
		if got := EnvName(path); got != want {
			t.Errorf("EnvName(%s) = %s, want %s", path, got, want)
		}
	}
	seen := map[string]string{}
	for _, k := range Keys() {
		if other, dup := seen[k.Env]; dup {
			t.Errorf("%s and %s share %s", k.Path, other, k.Env)
		}
		seen[k.Env] = k.Path
	}
}

// Every config shipped in the repo must load: the example printed by
// `perch config example` and the test configs.
func TestShippedConfigsValidate(t *testing.T) {
	// the example is installed with --bundle, as the README shows
	if _, err := LoadBytes(Example, "yaml"); Without(err, InstallOnly...) != nil {
		t.Fatalf("example: %v", err)
	}
	files, _ := filepath.Glob("../../testdata/*.yaml")
	files2, _ := filepath.Glob("../../cmd/perch/testdata/*.yaml")
	for _, f := range append(files, files2...) {
		if strings.HasPrefix(filepath.Base(f), "broken") {
			continue // fixtures of mistakes, checked by the CLI tests
		}
		_, err := Load(Source{File: f})
		if filepath.Base(f) == "e2e.yaml" {
			// installed with --bundle on the command line
			err = Without(err, InstallOnly...)
		}
		if err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestWithoutInstallOnly(t *testing.T) {
	_, err := LoadBytes([]byte("node: {role: server}\n"), "yaml")
	if err == nil || Without(err, InstallOnly...) != nil {
		t.Fatalf("a file without a k3s source: %v; without install-only keys: %v", err, Without(err, InstallOnly...))
	}
	_, err = LoadBytes([]byte("node: {role: server, hostname: Bad_Name}\n"), "yaml")
	rest := Without(err, InstallOnly...)
	if rest == nil || !strings.Contains(rest.Error(), "node.hostname") || strings.Contains(rest.Error(), "k3s.binary") {
		t.Errorf("Without kept the wrong problems: %v", rest)
	}
}

func TestSecretRedacted(t *testing.T) {
	cfg, err := LoadBytes([]byte(minimal+"node: {token: s3cret}"), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{cfg.Node.Token.String(), sprintf("%v %+v %#v", cfg.Node.Token, cfg.Node, cfg)} {
		if strings.Contains(s, "s3cret") {
			t.Errorf("secret leaked: %s", s)
		}
	}
	if string(cfg.Node.Token) != "s3cret" {
		t.Errorf("value lost")
	}
}

func FuzzLoadBytes(f *testing.F) {
	f.Add(Example, "yaml")
	f.Add([]byte(minimal), "yaml")
	f.Add([]byte(`{"node":{"labels":{"a":1}},"k3s":{"extraArgs":[1,{}]}}`), "json")
	f.Add([]byte("[node]\nrole = 3\n"), "toml")
	f.Add([]byte("pipeline: {streams: [[], {name: [x]}]}\nk3s: {readyTimeout: -5h}"), "yaml")
	f.Fuzz(fuzzLoad)
}

func BenchmarkLoadExample(b *testing.B) {
	for b.Loop() {
		if _, err := LoadBytes(Example, "yaml"); Without(err, InstallOnly...) != nil {
			b.Fatal(err)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"rtsp://cam:554/1":            "rtsp://cam:554/1",
		"rtsp://u:hunter2@cam:554/1":  "rtsp://***@cam:554/1",
		"rtsp://u:p@ss@cam/1":         "rtsp://***@cam/1",
		"rtsp//u:hunter2@cam":         "***@cam",
		"not a url with user@example": "***@example",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// loadWithin runs Load in a goroutine so that a file whose open blocks
// fails the test instead of hanging it until the package timeout.
func loadWithin(t *testing.T, src Source) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := Load(src)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("Load(%s) still blocked after 5s", src.File)
		return nil
	}
}

func TestNotRegularFileRefused(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "appliance.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "s.yaml")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	tests := []struct {
		name, path, kind string
	}{
		{"fifo", fifo, "a named pipe"},
		{"socket", sock, "a socket"},
		{"char device", os.DevNull, "a device"},
		{"endless device", "/dev/zero", "a device"},
		{"directory", t.TempDir(), "a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := loadWithin(t, Source{File: tt.path})
			var inv *InvalidError
			if !errors.As(err, &inv) || inv.Source != tt.path {
				t.Fatalf("want an InvalidError naming %s, got %v", tt.path, err)
			}
			want := "(file): is " + tt.kind + ", not a regular file; give the path of a regular YAML file"
			if len(inv.Errs) != 1 || inv.Errs[0].Error() != want {
				t.Errorf("got %q, want %q", inv.Errs, want)
			}
		})
	}
}

func TestConfigTooLarge(t *testing.T) {
	big := minimal + "# " + strings.Repeat("x", maxConfigSize) + "\n"
	p := filepath.Join(t.TempDir(), "a.yaml")
	if err := os.WriteFile(p, []byte(big), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, src := range []Source{{File: p}, {File: "-", Stdin: strings.NewReader(big)}} {
		err := loadWithin(t, src)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "larger than 4 MiB") {
			t.Errorf("%s: want a too-large error, got %v", src.File, err)
		}
	}
}

// TestParseOneRuleEveryFormat: a key given twice, data after the document
// and nesting bombs are refused in YAML, TOML and JSON alike, and a file
// that is not a config is never repeated back (it may be a password file).
func TestParseOneRuleEveryFormat(t *testing.T) {
	deep := func(open, close string) []byte {
		return []byte("a = " + strings.Repeat(open, 2<<20) + strings.Repeat(close, 2<<20))
	}
	tests := []struct {
		name, format string
		data         []byte
		want         string
	}{
		{"YAML duplicate", "yaml", []byte("node: {role: server}\nnode: {role: agent}\n"), "already defined"},
		{"TOML duplicate", "toml", []byte("[node]\nrole = 'server'\nrole = 'agent'\n"), "already"},
		{"JSON duplicate", "json", []byte(`{"node": {"role": "server", "role": "agent"}}`), "already defined"},
		{"YAML second document", "yaml", []byte("node: {role: server}\n---\nnode: {role: agent}\n"), "a file holds one config"},
		{"JSON trailing data", "json", []byte(`{"node": {}} {"k3s": {}}`), "data after the end of the document"},
		{"TOML nested arrays", "toml", deep("[", "]"), "nested more than 32 levels"},
		{"JSON nested arrays", "json", append(append([]byte(`{"a": `), deep("[", "]")[4:]...), '}'), "nested more than 32 levels"},
		{"YAML flow nesting", "yaml", deep("{a: ", "}")[4:], "nested more than 32 levels"},
		{"nesting after a stray quote", "toml", append([]byte("a = 'it\"s'\nb = \"x\"\nc = 5\"\n"), deep("[", "]")...), "nested more than 32 levels"},
		{"YAML password file", "yaml", []byte("s3cret-planted-value\n"), "got a string; check"},
		{"JSON password file", "json", []byte(`"s3cret-planted-value"`), "got a string; check"},
		{"TOML password file", "toml", []byte("s3cret-planted-value\n"), "not valid TOML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadBytes(tt.data, tt.format)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("want an error with %q, got %v", tt.want, err)
			}
			if strings.Contains(err.Error(), "s3cret-planted") {
				t.Errorf("the file's content is repeated: %v", err)
			}
			if len(err.Error()) > 1024 {
				t.Errorf("error of %d bytes", len(err.Error()))
			}
		})
	}
}

// TestBooleansOneRule: true and false, in any case, from a file, a
// variable or a flag; yes, on and 1 are refused from each.
func TestBooleansOneRule(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a.yaml")
	// a first server needs a token
	if err := os.WriteFile(file, []byte(minimal+"node: {token: 0123456789abcdef}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"yes", "on", "1", "t"} {
		t.Run("env "+v, func(t *testing.T) {
			t.Setenv("PERCH_NODE_CLUSTER_INIT", v)
			if err := loadWithin(t, Source{File: file}); err == nil || !strings.Contains(err.Error(), "is not true or false") {
				t.Errorf("PERCH_NODE_CLUSTER_INIT=%s: want refused, got %v", v, err)
			}
		})
		t.Run("flag "+v, func(t *testing.T) {
			fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
			AddFlags(fs)
			if err := fs.Parse([]string{"--cluster-init=" + v}); err == nil || !strings.Contains(err.Error(), "is not true or false") {
				t.Errorf("--cluster-init=%s: want refused, got %v", v, err)
			}
		})
	}
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	AddFlags(fs)
	if err := fs.Parse([]string{"--cluster-init"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(Source{File: file, Flags: fs})
	if err != nil || !cfg.Node.ClusterInit {
		t.Errorf("--cluster-init alone: got %v, %v", cfg.Node.ClusterInit, err)
	}
	t.Setenv("PERCH_NODE_CLUSTER_INIT", "TRUE")
	if cfg, err := Load(Source{File: file}); err != nil || !cfg.Node.ClusterInit {
		t.Errorf("PERCH_NODE_CLUSTER_INIT=TRUE: got %v, %v", cfg.Node.ClusterInit, err)
	}
}

func TestUnknownVariableRefused(t *testing.T) {
	t.Setenv("PERCH_NODE_TOKN", "s3cret-planted-token")
	t.Setenv("PERCH_CACHE", "/tmp/cache") // not a key, but Perch's
	err := loadWithin(t, Source{})
	want := "PERCH_NODE_TOKN: is not a Perch variable; did you mean PERCH_NODE_TOKEN?; unset it or correct its name"
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
		t.Fatalf("want %q, got %v", want, err)
	}
	if strings.Contains(err.Error(), "s3cret-planted") || strings.Contains(err.Error(), "PERCH_CACHE") {
		t.Errorf("error shows the value or a known variable: %v", err)
	}
}

func FuzzLoadTOML(f *testing.F) {
	f.Add([]byte("[node]\nrole = 3\n"))
	f.Add([]byte("[k3s]\nbinary = '/opt/k3s'\nextraArgs = [[1], {a = 2}]\n[[pipeline.streams]]\nname = 'a'\n"))
	f.Fuzz(func(t *testing.T, data []byte) { fuzzLoad(t, data, "toml") })
}

func FuzzLoadJSON(f *testing.F) {
	f.Add([]byte(`{"node":{"labels":{"a":1}},"k3s":{"extraArgs":[1,{}]}}`))
	f.Add([]byte(`{"k3s": {"binary": "/opt/k3s"}, "pipeline": {"streams": [{"name": "a", "url": "rtsp://c/s"}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) { fuzzLoad(t, data, "json") })
}

func fuzzLoad(t *testing.T, data []byte, format string) {
	cfg, err := LoadBytes(data, format)
	if err == nil {
		if errs := Validate(&cfg); len(errs) > 0 {
			t.Fatalf("loaded config fails validation: %v", errs)
		}
	}
}

// TestEveryPerchVariableKnown keeps OtherEnv in step with the repository:
// a PERCH_* name used anywhere that is neither a key's variable nor listed
// would make every command refuse the environment it runs in.
func TestEveryPerchVariableKnown(t *testing.T) {
	known := map[string]bool{}
	for _, k := range Keys() {
		known[k.Env] = true
	}
	for _, v := range OtherEnv {
		known[v] = true
	}
	name := regexp.MustCompile(`PERCH_[A-Z0-9_]*[A-Z0-9]`)
	err := filepath.WalkDir("../..", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() && (d.Name() == ".git" || d.Name() == "bin") {
			return err
		}
		// tests plant wrong names on purpose, and this package names the
		// rules themselves
		if d.IsDir() || strings.HasSuffix(p, "_test.go") || filepath.Dir(p) == filepath.Join("..", "..", "installer", "config") {
			return nil
		}
		if !strings.HasSuffix(p, ".go") && !strings.HasPrefix(filepath.ToSlash(p), "../../scripts/") && filepath.Base(p) != "Makefile" {
			return nil
		}
		body, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, v := range name.FindAllString(string(body), -1) {
			if !known[v] && !slices.ContainsFunc(otherEnvPrefixes, func(pre string) bool { return strings.HasPrefix(v, pre) }) {
				t.Errorf("%s: %s is neither a config key's variable nor in OtherEnv; Load would refuse it", p, v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
