package wizard

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/golden"
	"github.com/charmbracelet/x/exp/teatest"
	"github.com/muesli/termenv"

	"github.com/perchedge/perch/bundles"
	"github.com/perchedge/perch/installer/config"
)

func TestMain(m *testing.M) {
	// goldens hold words, not colours: the same on every terminal
	lipgloss.SetColorProfile(termenv.Ascii)
	os.Exit(m.Run())
}

// probe passes everything to the wizard and keeps its latest screen where
// the test can read it without racing the program.
type probe struct {
	m    *Model
	mu   *sync.Mutex
	view *string
}

func (p probe) Init() tea.Cmd { return p.m.Init() }

func (p probe) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, cmd := p.m.Update(msg)
	*p.view = p.m.View()
	return p, cmd
}

func (p probe) View() string { return p.m.View() }

type driver struct {
	t  *testing.T
	tm *teatest.TestModel
	p  probe
}

func start(t *testing.T, b Backend, o Options, w, h int) *driver {
	t.Helper()
	o.Backend = b
	p := probe{m: New(o), mu: &sync.Mutex{}, view: new(string)}
	tm := teatest.NewTestModel(t, p, teatest.WithInitialTermSize(w, h))
	t.Cleanup(func() { tm.Quit() })
	return &driver{t: t, tm: tm, p: p}
}

func (d *driver) screen() string {
	d.p.mu.Lock()
	defer d.p.mu.Unlock()
	return ansi.Strip(*d.p.view)
}

// press sends keys: named ones ("enter", "down", "ctrl+c"...) as keys,
// anything else typed as text.
func (d *driver) press(keys ...string) {
	for _, k := range keys {
		if kt, ok := keyTypes[k]; ok {
			d.tm.Send(tea.KeyMsg{Type: kt})
			continue
		}
		d.tm.Type(k)
	}
}

var keyTypes = map[string]tea.KeyType{
	"enter": tea.KeyEnter, "esc": tea.KeyEsc, "tab": tea.KeyTab, "shift+tab": tea.KeyShiftTab,
	"up": tea.KeyUp, "down": tea.KeyDown, "left": tea.KeyLeft, "right": tea.KeyRight,
	"space": tea.KeySpace, "ctrl+c": tea.KeyCtrlC, "ctrl+u": tea.KeyCtrlU, "pgdown": tea.KeyPgDown,
}

// waitFor waits until the screen shows text, and fails with the screen.
func (d *driver) waitFor(text string) {
	d.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(d.screen(), text) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	d.t.Fatalf("the screen never showed %q; it shows:\n%s", text, d.screen())
}

// golden ends the program and compares its last screen with
// testdata/<test>.golden (go test -update rewrites it).
func (d *driver) golden() *Model {
	d.t.Helper()
	d.tm.Quit()
	fm := d.tm.FinalModel(d.t, teatest.WithFinalTimeout(5*time.Second)).(probe)
	view := ansi.Strip(fm.m.View())
	for i, l := range strings.Split(view, "\n") {
		if w := ansi.StringWidth(l); w > fm.m.w {
			d.t.Errorf("line %d is %d wide on a %d-column terminal: %q", i+1, w, fm.m.w, l)
		}
	}
	if n := strings.Count(view, "\n") + 1; n > fm.m.h {
		d.t.Errorf("%d lines on a %d-line terminal", n, fm.m.h)
	}
	golden.RequireEqual(d.t, []byte(view+"\n"))
	return fm.m
}

// The way through the wizard that most tests share: a node joining as an
// agent, the bundle from a stick, two cameras.
func (d *driver) toRole() {
	d.waitFor("Preflight")
	d.press("enter")
	d.waitFor("part in the cluster")
}

func (d *driver) toNode() {
	d.toRole()
	d.press("down", "down", "down", "enter")
	d.waitFor("Server URL")
	d.press("ctrl+u", "edge-07", "enter", "right", "enter", "https://192.0.2.1:6443", "enter", "K10abc::server:s3cret")
}

func (d *driver) toBundle() {
	d.toNode()
	d.press("enter")
	d.waitFor("Public key")
}

func (d *driver) verify() {
	d.toBundle()
	d.press("enter", "/media/usb/site.pub", "enter")
}

func (d *driver) toPipeline() {
	d.verify()
	d.waitFor("Press enter to continue")
	d.press("enter")
	d.waitFor("+ Add camera")
}

func (d *driver) addCameras() {
	d.press("enter", "gate-1", "enter", "rtsp://192.0.2.10:554/stream1", "enter")
	d.waitFor("gate-1")
	d.press("down", "enter", "dock-2", "tab", "rtsp://cam:secret@192.0.2.11/live", "esc")
	d.waitFor("dock-2")
}

func (d *driver) toMonitoring() {
	d.toPipeline()
	d.addCameras()
	d.press("down", "down", "ctrl+u", "2", "enter")
	d.waitFor("Retention")
}

func (d *driver) toReview() {
	d.toMonitoring()
	d.press("ctrl+u", "14d", "enter", "space", "enter")
	d.waitFor("[ Save ]")
}

func withStick() *fakeBackend {
	f := newFake()
	f.found = []bundles.Found{
		{Path: "/media/usb/site-a.tar.zst", Form: "archive", Mount: "/media/usb", Device: "/dev/sdb1", Removable: true, Size: 2_900 << 20},
		{Path: "/mnt/old/site-a-1.3.tar.zst", Form: "archive", Mount: "/mnt", Size: 2_700 << 20},
	}
	return f
}

func TestWelcome(t *testing.T) {
	d := start(t, newFake(), Options{}, 80, 24)
	d.waitFor("Preflight")
	d.golden()
}

func TestTooSmallThenResized(t *testing.T) {
	d := start(t, newFake(), Options{}, 60, 20)
	d.waitFor("Enlarge the terminal")
	d.press("enter") // unseen screens do not move
	d.tm.Send(tea.WindowSizeMsg{Width: 80, Height: 24})
	d.waitFor("Preflight")
	d.tm.Send(tea.WindowSizeMsg{Width: 79, Height: 24})
	d.waitFor("Enlarge the terminal")
	if m := d.golden(); m.scr != scrWelcome {
		t.Errorf("keys pressed on a too-small terminal moved the wizard to %s", screenNames[m.scr])
	}
}

func TestRole(t *testing.T) {
	d := start(t, newFake(), Options{}, 80, 24)
	d.toRole()
	d.press("down")
	d.waitFor("(*) First server")
	d.golden()
}

func TestNode(t *testing.T) {
	d := start(t, newFake(), Options{}, 80, 24)
	d.toNode()
	d.waitFor("*****")
	d.golden()
}

// A first server gets a strong token made for it, never shown, which the
// config carries and validation accepts; choosing to join instead drops
// it, since a joining node needs the first server's.
func TestFirstServerToken(t *testing.T) {
	d := start(t, newFake(), Options{}, 80, 24)
	d.toRole()
	d.press("down", "enter")
	d.waitFor("Perch made this token")
	d.press("ctrl+u", "edge-01")
	d.waitFor(strings.Repeat("*", 2*clusterTokenBytes))
	d.p.mu.Lock()
	tok := string(d.p.m.config().Node.Token)
	d.p.mu.Unlock()
	if !regexp.MustCompile(`^[0-9a-f]{48}$`).MatchString(tok) {
		t.Fatalf("first server's token %q, want 48 hex digits", tok)
	}
	if strings.Contains(d.screen(), tok) {
		t.Error("the token is on the screen")
	}
	d.press("esc")
	d.waitFor("part in the cluster")
	d.press("down", "enter")
	d.waitFor("Server URL")
	m := d.golden()
	if got := m.config().Node.Token; got != "" {
		t.Errorf("a joining server kept the token made for a first server: %q", got)
	}
}

// A join without a usable server URL stays on the node screen and says why
// at the field, in the config validator's words.
func TestNodeValidationError(t *testing.T) {
	d := start(t, newFake(), Options{}, 80, 24)
	d.toRole()
	d.press("down", "down", "down", "enter")
	d.waitFor("Server URL")
	d.press("ctrl+u", "Edge_07", "enter", "enter", "http://192.0.2.1:6443/k3s", "enter", "enter")
	d.waitFor("must look like https://SERVER:6443")
	m := d.golden()
	if m.scr != scrNode {
		t.Fatalf("an invalid node went on to %s", screenNames[m.scr])
	}
	for _, path := range []string{"node.hostname", "node.serverURL", "node.token"} {
		if len(m.fieldErrs(path)) == 0 {
			t.Errorf("no error shown at %s", path)
		}
	}
}

func TestBundleVerifying(t *testing.T) {
	f := withStick()
	f.verifyHold = make(chan struct{})
	d := start(t, f, Options{}, 80, 24)
	d.verify()
	d.waitFor("45%")
	d.golden()
	close(f.verifyHold)
}

func TestBundleVerified(t *testing.T) {
	d := start(t, withStick(), Options{}, 80, 24)
	d.verify()
	d.waitFor("Press enter to continue")
	d.golden()
}

// Esc while verifying stops it and keeps what was typed.
func TestBundleVerifyCancelled(t *testing.T) {
	f := withStick()
	f.verifyHold = make(chan struct{})
	d := start(t, f, Options{}, 80, 24)
	d.verify()
	d.waitFor("45%")
	d.press("esc")
	d.waitFor("enter: verify")
	d.press("esc")
	d.waitFor("Server URL")
	d.press("enter")
	d.waitFor("/media/usb/site.pub")
	if s := d.screen(); strings.Contains(s, "Verified") || strings.Contains(s, "Verifying") {
		t.Fatalf("a cancelled verification still shows:\n%s", s)
	}
}

func TestPipeline(t *testing.T) {
	d := start(t, withStick(), Options{}, 80, 24)
	d.toPipeline()
	d.addCameras()
	d.press("down", "enter", "shed-3", "enter", "ftp://192.0.2.12/x", "enter", "up", "d", "down", "down", "ctrl+u", "2", "enter")
	d.waitFor("scheme \"ftp\" is not supported")
	m := d.golden()
	if got := len(m.cams); got != 2 {
		t.Errorf("%d cameras after adding three and deleting one", got)
	}
}

// A camera URL shows without its credentials, even one that does not
// parse as a URL yet (a space typed in the host).
func TestPipelineHidesCameraPasswords(t *testing.T) {
	d := start(t, withStick(), Options{}, 80, 24)
	d.toPipeline()
	d.press("enter", "gate-1", "tab", "rtsp://admin:hunter2@cam 1/live", "esc")
	d.waitFor("gate-1")
	d.waitFor("***@cam 1/live")
	if s := d.screen(); strings.Contains(s, "hunter2") || strings.Contains(s, "admin:") {
		t.Fatalf("the camera's credentials are on the screen:\n%s", s)
	}
}

func TestMonitoring(t *testing.T) {
	d := start(t, withStick(), Options{}, 80, 24)
	d.toMonitoring()
	d.press("ctrl+u", "2 weeks", "enter", "enter")
	d.waitFor("is not a Prometheus duration")
	d.golden()
}

func TestReview(t *testing.T) {
	f := withStick()
	d := start(t, f, Options{}, 80, 24)
	d.toReview()
	d.press("enter")
	d.waitFor("Saved to /target/etc/perch/appliance.yaml")
	m := d.golden()
	saved := f.saved(DefaultSavePath)
	if strings.Contains(d.screen(), "s3cret") {
		t.Error("the token is on the screen")
	}
	got, err := config.LoadBytes(saved, "yaml")
	if err != nil {
		t.Fatalf("the saved file does not load: %v\n%s", err, saved)
	}
	if want := m.config(); !reflect.DeepEqual(got, want) {
		t.Errorf("the saved file loads as\n%#v\nthe wizard built\n%#v", got, want)
	}
	if got.Node.Token != "K10abc::server:s3cret" || got.Node.Role != config.RoleAgent || got.Node.NodeIP != "192.0.2.21" ||
		len(got.Pipeline.Streams) != 2 || got.GPU.Sharing.Replicas != 2 || got.Monitoring.Retention != "14d" || got.Monitoring.Grafana {
		t.Errorf("the saved config lost input:\n%s", saved)
	}
}

// Esc walks back through every screen without losing what was typed.
func TestEscKeepsInput(t *testing.T) {
	d := start(t, withStick(), Options{}, 80, 24)
	d.toReview()
	before, _, _ := d.p.m.reviewYAMLLocked(d)
	d.press("esc", "esc", "esc", "esc", "esc", "esc")
	d.waitFor("Preflight")
	// every screen kept its focus on the last field: enter goes on
	d.press("enter", "enter", "enter", "enter", "enter", "enter")
	d.waitFor("[ Save ]")
	after, _, _ := d.p.m.reviewYAMLLocked(d)
	if before != after {
		t.Errorf("going back and forth changed the config:\n%s\n---\n%s", before, after)
	}
}

// reviewYAMLLocked reads the model between updates.
func (m *Model) reviewYAMLLocked(d *driver) (string, string, error) {
	d.p.mu.Lock()
	defer d.p.mu.Unlock()
	return m.reviewYAML()
}

func TestInstall(t *testing.T) {
	f := withStick()
	f.installHold = make(chan struct{})
	d := start(t, f, Options{}, 80, 24)
	d.toReview()
	d.press("tab", "tab", "enter")
	d.waitFor("docker.io/perch/pipeline:1.4.0: 41 blobs")
	d.golden()
	close(f.installHold)
}

// Ctrl-C during an install asks first; yes stops it where the journal can
// resume.
func TestInstallAbort(t *testing.T) {
	f := withStick()
	f.installHold = make(chan struct{})
	d := start(t, f, Options{}, 80, 24)
	d.toReview()
	d.press("tab", "tab", "enter")
	d.waitFor("41 blobs")
	d.press("ctrl+c")
	d.waitFor("Abort the install?")
	d.press("n")
	d.waitFor("ctrl+c: abort")
	d.press("ctrl+c", "y")
	d.waitFor("Install failed")
	m := d.golden()
	if r := m.Result(); r.Installed || r.InstallErr == nil || r.Cancelled {
		t.Errorf("result after abort: %+v", r)
	}
}

func TestInstallDone(t *testing.T) {
	f := withStick()
	d := start(t, f, Options{}, 80, 24)
	d.toReview()
	d.press("tab", "tab", "enter")
	d.waitFor("Install complete")
	d.press("enter")
	d.waitFor("Run it again unattended")
	m := d.golden()
	if f.saved(DefaultSavePath) == nil {
		t.Error("installing did not save the config first")
	}
	if r := m.Result(); !r.Installed || r.SavedTo != "/target"+DefaultSavePath {
		t.Errorf("result: %+v", r)
	}
}

func TestDoneSingleServer(t *testing.T) {
	d := start(t, withStick(), Options{Root: "/", Init: "auto"}, 80, 24)
	d.toRole()
	d.press("enter")
	d.waitFor("Node IP")
	d.press("enter", "enter")
	d.waitFor("Public key")
	d.press("enter", "/media/usb/site.pub", "enter")
	d.waitFor("Press enter to continue")
	d.press("enter")
	d.waitFor("+ Add camera")
	d.press("down", "enter")
	d.waitFor("Retention")
	d.press("enter", "enter")
	d.waitFor("[ Save ]")
	d.press("tab", "tab", "enter")
	d.waitFor("Install complete")
	d.press("enter")
	d.waitFor("Grafana")
	d.golden()
}

func TestPlanDryRun(t *testing.T) {
	f := withStick()
	d := start(t, f, Options{DryRun: true, Root: "/tmp/sandbox", Init: "none"}, 80, 24)
	d.toReview()
	d.press("enter")
	d.waitFor("Saved to")
	d.press("enter") // focus moved to Show plan
	d.waitFor("nothing was changed")
	m := d.golden()
	if m.res.Plan == nil || !strings.Contains(m.res.Plan.Text(nil), "Plan for node edge-07") {
		t.Errorf("the result lacks the plan shown: %+v", m.res.Plan)
	}
}

func TestDoneDryRun(t *testing.T) {
	f := withStick()
	d := start(t, f, Options{DryRun: true, Root: "/tmp/sandbox", Init: "none"}, 80, 24)
	d.toReview()
	d.press("enter")
	d.waitFor("Saved to")
	d.press("enter")
	d.waitFor("nothing was changed")
	d.press("enter")
	d.waitFor("Dry run: nothing was installed")
	d.golden()
}

// Ctrl-C before an install leaves at once, and says so.
func TestCtrlCCancels(t *testing.T) {
	d := start(t, newFake(), Options{}, 80, 24)
	d.toRole()
	d.press("ctrl+c")
	fm := d.tm.FinalModel(t, teatest.WithFinalTimeout(5*time.Second)).(probe)
	if !fm.m.Result().Cancelled {
		t.Error("ctrl+c did not cancel")
	}
}
