package host

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Service is what an init system needs to run a long-lived program.
type Service struct {
	Name        string            `json:"name"` // "k3s", "k3s-agent", "perch-registry"; becomes file names
	Description string            `json:"description,omitempty"`
	Exec        []string          `json:"exec"`          // argv with real host paths (Host.Path), Exec[0] absolute
	Env         map[string]string `json:"env,omitempty"` // may hold secrets: definitions that carry it are written 0600
	// Notify says the program reports readiness with sd_notify, as k3s does.
	// systemd then holds `systemctl start` until the program is ready; the
	// other init systems consider it started once it runs.
	Notify bool `json:"notify,omitempty"`
}

// Status is what an init system knows about a service.
type Status struct {
	Installed bool // the unit, script or definition exists
	Running   bool // the init system (or Perch's supervisor) is keeping it up
	PID       int  // the program's pid; 0 when unknown or between restarts
}

// Init installs and controls services through one init system. Every method
// is idempotent, so a re-run of an install converges instead of failing.
type Init interface {
	Name() string // "systemd", "openrc" or "none"
	// Install writes the service definition; it changes nothing and reports
	// false when the definition is already as wanted. It does not restart a
	// running service: call Restart when Install reports a change.
	Install(ctx context.Context, s Service) (changed bool, err error)
	Status(ctx context.Context, name string) (Status, error)
	Start(ctx context.Context, name string) error // enable at boot and start; no-op when running
	Restart(ctx context.Context, name string) error
	Stop(ctx context.Context, name string) error      // no-op when stopped or not installed
	Uninstall(ctx context.Context, name string) error // stop, disable, remove the definition
	LogTail(ctx context.Context, name string, lines int) (string, error)
}

// Init system names, as --init takes them.
const (
	InitAuto    = "auto"
	InitSystemd = "systemd"
	InitOpenRC  = "openrc"
	InitNone    = "none"
)

// CheckInit says whether kind is an init system --init takes.
func CheckInit(kind string) error {
	switch kind {
	case InitAuto, InitSystemd, InitOpenRC, InitNone:
		return nil
	}
	return errors.New("must be auto, systemd, openrc or none")
}

// NewInit picks the init system for kind (auto, systemd, openrc or none).
// auto chooses systemd or OpenRC only when h is the whole machine, because
// their services run on this machine and would not see a --root sandbox;
// anything else gets none, Perch's own supervisor. perchBinary is the perch
// executable that none starts as `perch supervise`; empty means this
// process's executable.
func NewInit(h *Host, kind, perchBinary string) (Init, error) {
	machineWide := h.Root() == "/"
	switch kind {
	case "", InitAuto:
		switch {
		case machineWide && exists("/run/systemd/system"):
			kind = InitSystemd
		case machineWide && exists("/sbin/openrc-run"):
			kind = InitOpenRC
		default:
			kind = InitNone
		}
	case InitSystemd, InitOpenRC:
		if !machineWide {
			return nil, fmt.Errorf("--init %s with --root %s: %s would run the services on this machine, outside the root; use --init none with --root, or --root /", kind, h.Root(), kind)
		}
	case InitNone:
	default:
		return nil, fmt.Errorf("--init %q %v", kind, CheckInit(kind))
	}
	switch kind {
	case InitSystemd:
		return &systemd{h: h}, nil
	case InitOpenRC:
		return &openrc{h: h}, nil
	}
	if perchBinary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("--init none: find the perch binary to run as supervisor: %w", err)
		}
		perchBinary = exe
	}
	bin, err := filepath.Abs(perchBinary)
	if err != nil {
		return nil, fmt.Errorf("--init none: perch binary %s: %w", perchBinary, err)
	}
	return &none{h: h, bin: bin}, nil
}

// exists looks at the real machine, not under the root: which init system
// runs is a fact about this machine.
func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

var (
	serviceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@-]*$`)
	envName     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// checkName keeps service names to what every init system accepts; a name
// becomes part of file paths, so "/" and ".." must never get through.
func checkName(name string) error {
	if !serviceName.MatchString(name) || len(name) > 200 {
		return fmt.Errorf("service name %q: use letters, digits, '-', '_', '.' and '@', starting with a letter or digit", name)
	}
	return nil
}

// check refuses what would corrupt a unit file or script: a newline in any
// field would start a new directive.
func (s Service) check() error {
	if err := checkName(s.Name); err != nil {
		return err
	}
	if len(s.Exec) == 0 {
		return fmt.Errorf("service %s: Exec is empty; give the program and its arguments", s.Name)
	}
	if !filepath.IsAbs(s.Exec[0]) {
		return fmt.Errorf("service %s: program %q is not an absolute path; init systems do not search PATH the same way, so give the full path", s.Name, s.Exec[0])
	}
	bad := func(v string) bool { return strings.ContainsAny(v, "\n\r\x00") }
	if bad(s.Description) {
		return fmt.Errorf("service %s: the description contains a line break", s.Name)
	}
	for i, a := range s.Exec {
		if bad(a) {
			return fmt.Errorf("service %s: argument %d contains a line break or NUL", s.Name, i)
		}
	}
	for k, v := range s.Env {
		if !envName.MatchString(k) {
			return fmt.Errorf("service %s: environment variable name %q: use letters, digits and '_', not starting with a digit", s.Name, k)
		}
		if bad(v) {
			return fmt.Errorf("service %s: environment variable %s contains a line break or NUL", s.Name, k)
		}
	}
	return nil
}

// envKeys sorts the environment so that the same Service always renders to
// the same bytes, which is what makes Install a no-op on a re-run.
func (s Service) envKeys() []string {
	keys := make([]string, 0, len(s.Env))
	for k := range s.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// definitionMode keeps a definition that carries environment (tokens,
// proxies with passwords) readable by root only.
func (s Service) definitionMode(public fs.FileMode) fs.FileMode {
	if len(s.Env) > 0 {
		return public &^ 0o077
	}
	return public
}

// notInstalled is returned by Start and Restart for a service with no
// definition, which is a mistake in the caller's order of steps.
func notInstalled(system, name, path string) error {
	return fmt.Errorf("%s service %s is not installed (%s is missing); install it before starting it", system, name, path)
}

// logTail reads the last lines of a log file under the root; no file yet
// means no output yet, not an error.
func (h *Host) logTail(p string, lines int) (string, error) {
	n, err := h.name(p)
	if err != nil {
		return "", err
	}
	f, err := h.t.OpenFile(n, os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", h.wrap("read log", p, err)
	}
	defer f.Close()
	b, err := tailFile(f, lines)
	if err != nil {
		return "", h.wrap("read log", p, err)
	}
	return string(b), nil
}

// definitionExists says whether the unit or script of service name exists,
// for the init systems whose definition is a single file.
func definitionExists(h *Host, name string, path func(string) string) (bool, error) {
	if err := checkName(name); err != nil {
		return false, err
	}
	_, err := h.Stat(path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}
