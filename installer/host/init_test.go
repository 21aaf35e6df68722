package host

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestNewInit(t *testing.T) {
	h := newHost(t)
	for _, kind := range []string{"", "auto", "none"} {
		in, err := NewInit(h, kind, "")
		if err != nil {
			t.Fatalf("NewInit(%q): %v", kind, err)
		}
		// Under a sandbox root only Perch's own supervisor can work.
		if in.Name() != "none" {
			t.Errorf("NewInit(%q) under --root = %s, want none", kind, in.Name())
		}
	}
	for _, kind := range []string{"systemd", "openrc"} {
		_, err := NewInit(h, kind, "")
		if err == nil || !strings.Contains(err.Error(), "--init none") {
			t.Errorf("NewInit(%q) under --root: %v, want advice to use --init none", kind, err)
		}
	}
	_, err := NewInit(h, "runit", "")
	if err == nil || !strings.Contains(err.Error(), "--init") || !strings.Contains(err.Error(), "auto, systemd, openrc or none") {
		t.Errorf("unknown kind: %v", err)
	}
}

func TestServiceCheck(t *testing.T) {
	ok := Service{Name: "k3s", Exec: []string{"/usr/local/bin/k3s", "server"}, Env: map[string]string{"K3S_NODE_NAME": "a"}}
	if err := ok.check(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		edit func(*Service)
		want string
	}{
		{"path in name", func(s *Service) { s.Name = "../etc/passwd" }, "service name"},
		{"empty name", func(s *Service) { s.Name = "" }, "service name"},
		{"no program", func(s *Service) { s.Exec = nil }, "Exec is empty"},
		{"relative program", func(s *Service) { s.Exec = []string{"k3s"} }, "not an absolute path"},
		{"newline in argument", func(s *Service) { s.Exec = []string{"/bin/k3s", "a\nExecStartPre=/bin/evil"} }, "line break"},
		{"newline in description", func(s *Service) { s.Description = "a\nb" }, "line break"},
		{"bad env name", func(s *Service) { s.Env = map[string]string{"A-B": "x"} }, "environment variable name"},
		{"newline in env", func(s *Service) { s.Env = map[string]string{"A": "x\ny"} }, "line break"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := ok
			c.edit(&s)
			if err := s.check(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// awkward arguments: spaces, quotes of both kinds, shell and systemd
// metacharacters.
var awkward = []string{"server", "--node-label=zone=a b", `it's "quoted"`, "$HOME", "100%", `back\slash`, ";", ""}

func TestRenderUnit(t *testing.T) {
	s := Service{
		Name:        "k3s",
		Description: "Lightweight Kubernetes 100%",
		Exec:        append([]string{"/usr/local/bin/k3s"}, awkward...),
		Env:         map[string]string{"B": `say "hi" 50%`, "A": "$x"},
		Notify:      true,
	}
	unit := string(renderUnit(s))
	for _, want := range []string{
		"Description=Lightweight Kubernetes 100%%\n",
		"Type=notify\n",
		"Environment=\"A=$x\"\nEnvironment=\"B=say \\\"hi\\\" 50%%\"\n",
		"KillMode=process\n", "Delegate=yes\n", "LimitNOFILE=1048576\n", "TasksMax=infinity\n",
		"Restart=always\n", "RestartSec=5s\n", "WantedBy=multi-user.target\n",
		`ExecStart=/usr/local/bin/k3s server "--node-label=zone=a b" "it's \"quoted\"" "$$HOME" "100%%" "back\\slash" ";" ""` + "\n",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	s.Notify = false
	if !strings.Contains(string(renderUnit(s)), "Type=exec\n") {
		t.Error("a service without Notify is not Type=exec")
	}

	// systemd-analyze parses the unit the way systemd would, where it is
	// installed; a syntax error fails the test.
	if _, err := exec.LookPath("systemd-analyze"); err == nil {
		dir := t.TempDir()
		p := filepath.Join(dir, "perch-test.service")
		s.Exec[0] = "/bin/true"
		if err := os.WriteFile(p, renderUnit(s), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("systemd-analyze", "verify", "--man=no", p).CombinedOutput()
		if err != nil || strings.Contains(string(out), "perch-test.service") {
			t.Errorf("systemd-analyze verify: %v\n%s\nunit:\n%s", err, out, renderUnit(s))
		}
	}
}

// TestRenderOpenRC sources the script in a real shell and evals
// command_args the way OpenRC's supervise-daemon.sh does, so quoting is
// tested by what a shell makes of it, not by string comparison.
func TestRenderOpenRC(t *testing.T) {
	s := Service{
		Name:        "k3s",
		Description: "it's k3s",
		Exec:        append([]string{"/usr/local/bin/k3s"}, awkward...),
		Env:         map[string]string{"TOKEN": `a'b"c $d`},
	}
	script, err := renderOpenRC(s, "/var/log/k3s.log")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "k3s")
	if err := os.WriteFile(p, script, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sh", "-c", `. "$1"; eval set -- $command_args; printf '%s\0' "$command" "$@"; printf '%s\0' "$TOKEN" "$supervisor" "$output_log" "$description"`, "sh", p).Output()
	if err != nil {
		t.Fatalf("sourcing the script: %v\n%s", err, script)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	want := append(slices.Clone(s.Exec), s.Env["TOKEN"], "supervise-daemon", "/var/log/k3s.log", "it's k3s")
	if !slices.Equal(got, want) {
		t.Fatalf("shell reads\n%q\nwant\n%q\nscript:\n%s", got, want, script)
	}

	s.Exec[0] = "/opt/my tools/k3s"
	if _, err := renderOpenRC(s, "/var/log/k3s.log"); err == nil {
		t.Error("a program path with a space was accepted")
	}
}

func TestSupervisesMatch(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"/usr/local/bin/perch", "supervise", "--root", "/srv/a", "k3s"}, true},
		{[]string{"/usr/local/bin/perch", "--root=/srv/a", "supervise", "k3s"}, true},
		{[]string{"/usr/local/bin/perch", "supervise", "--root", "/srv/b", "k3s"}, false},
		{[]string{"/usr/local/bin/perch", "supervise", "--root", "/srv/a", "k3s-agent"}, false},
		{[]string{"/usr/local/bin/perch", "supervise", "k3s"}, false},
		{[]string{"/bin/sleep", "1000"}, false},
		{nil, false},
	} {
		if got := supervises(c.args, "/srv/a", "k3s"); got != c.want {
			t.Errorf("supervises(%q) = %v, want %v", c.args, got, c.want)
		}
	}
	if !supervises([]string{"perch", "supervise", "k3s"}, "/", "k3s") {
		t.Error("no --root means /")
	}
}
