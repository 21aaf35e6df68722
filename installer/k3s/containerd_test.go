package k3s

import (
	"bytes"
	"strings"
	"testing"
	"text/template"

	"github.com/pelletier/go-toml/v2"
	"sigs.k8s.io/yaml"
)

// The template renders, with the values k3s gives it, to a containerd
// config that TOML accepts (each table once) and that has
// restrict_oom_score_adj in the CRI table, also where k3s itself would
// have added it for a user namespace.
func TestContainerdTemplateRenders(t *testing.T) {
	tmpl, err := template.New("containerd").Funcs(template.FuncMap{"deschemify": func(s string) string { return s }}).Parse(containerdTemplate)
	if err != nil {
		t.Fatal(err)
	}
	for _, userNS := range []bool{false, true} {
		for _, noFlannel := range []bool{false, true} {
			data := map[string]any{
				"Program": "k3s", "EnableUnprivileged": true, "DisableCgroup": false, "IsRunningInUserNS": userNS, "SystemdCgroup": false,
				"NodeConfig": map[string]any{
					"SELinux": false, "NoFlannel": noFlannel, "DefaultRuntime": "nvidia",
					"Containerd":  map[string]any{"Opt": "/data/agent/containerd", "Registry": "/data/agent/etc/containerd/certs.d", "BlockIOConfig": "", "RDTConfig": ""},
					"AgentConfig": map[string]any{"PauseImage": "docker.io/rancher/mirrored-pause:3.6", "Snapshotter": "overlayfs", "CNIBinDir": "/data/bin", "CNIConfDir": "/data/agent/etc/cni/net.d"},
				},
				"PrivateRegistryConfig": map[string]any{"Configs": map[string]any{"10.0.0.1:5443": map[string]any{"Auth": map[string]any{"Username": "perch", "Password": "pw", "Auth": "", "IdentityToken": ""}}}},
				"ExtraRuntimes":         map[string]any{"nvidia": map[string]any{"RuntimeType": "io.containerd.runc.v2", "BinaryName": "/usr/bin/nvidia-container-runtime"}},
			}
			var out bytes.Buffer
			if err := tmpl.Execute(&out, data); err != nil {
				t.Fatal(err)
			}
			var cfg struct {
				Plugins map[string]struct {
					RestrictOOMScoreAdj bool `toml:"restrict_oom_score_adj"`
					SandboxImage        string
					Containerd          struct {
						DefaultRuntimeName string `toml:"default_runtime_name"`
						Runtimes           map[string]any
					}
					CNI      map[string]string `toml:"cni"`
					Registry struct {
						Configs map[string]struct{ Auth map[string]string }
					}
				}
			}
			if err := toml.Unmarshal(out.Bytes(), &cfg); err != nil {
				t.Fatalf("userNS=%v noFlannel=%v: rendered config is not TOML: %v\n%s", userNS, noFlannel, err, out.String())
			}
			cri := cfg.Plugins["io.containerd.grpc.v1.cri"]
			if !cri.RestrictOOMScoreAdj {
				t.Errorf("userNS=%v: restrict_oom_score_adj is not on", userNS)
			}
			if cri.Containerd.DefaultRuntimeName != "nvidia" || cri.Containerd.Runtimes["nvidia"] == nil {
				t.Errorf("the nvidia runtime k3s found is lost: %+v", cri.Containerd)
			}
			if (cri.CNI != nil) == noFlannel {
				t.Errorf("noFlannel=%v: cni section %v; k3s writes one exactly when flannel runs", noFlannel, cri.CNI)
			}
			if cri.Registry.Configs["10.0.0.1:5443"].Auth["password"] != "pw" {
				t.Errorf("registry credentials lost: %+v", cri.Registry)
			}
		}
	}
}

// Only agents on a host without CAP_SYS_RESOURCE get the template.
func TestContainerdTemplateOnlyWhereNeeded(t *testing.T) {
	for _, tt := range []struct {
		mod      string
		restrict bool
		want     bool
	}{
		{"", true, true},
		{"", false, false},
		{"k3s: {binary: /opt/k3s, disableAgent: true}", true, false},
	} {
		e := env(t, tt.mod)
		e.restrictOOMScoreAdj = tt.restrict
		files, err := e.configFiles()
		if err != nil {
			t.Fatal(err)
		}
		got := false
		for _, f := range files {
			got = got || strings.HasSuffix(f.Path, ContainerdTemplatePath)
		}
		if got != tt.want {
			t.Errorf("%q restrict=%v: template written %v, want %v", tt.mod, tt.restrict, got, tt.want)
		}
	}
}

// With a registries.yaml, k3s is pointed at Perch's (under --root too) and
// told not to fall back to the internet.
func TestConfigFileUsesPerchRegistries(t *testing.T) {
	e := env(t, "")
	e.registries = func() ([]byte, error) { return []byte("mirrors: {}\n"), nil }
	body, err := e.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := yaml.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if got["private-registry"] != e.n.Host.Path(RegistriesPath) || got["disable-default-registry-endpoint"] != true {
		t.Errorf("config.yaml: %v", got)
	}
}

// k3s looks for the NVIDIA runtime only when it starts: one installed
// later must restart it, and a node without one keeps its digest.
func TestServiceDigestFollowsNvidiaRuntime(t *testing.T) {
	e := env(t, "")
	before, err := e.serviceDigest()
	if err != nil {
		t.Fatal(err)
	}
	// an executable that is not the runtime is not one
	if _, err := e.n.Host.WriteFile("/usr/bin/nvidia-container-runtime", []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if d, _ := e.serviceDigest(); d != before {
		t.Error("a node without the NVIDIA runtime got a new digest")
	}
	if _, err := e.n.Host.WriteFile("/usr/bin/nvidia-container-runtime", []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if d, _ := e.serviceDigest(); d == before {
		t.Error("the NVIDIA runtime appeared and the digest did not change")
	}
}
