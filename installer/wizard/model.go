// Package wizard is the on-site install wizard: a bubbletea model whose only
// product is a config.Appliance, the same struct `perch install --config`
// loads. The model is plain state plus messages: everything that touches
// the machine (hardware discovery, USB scan, bundle verification, saving,
// planning, the install itself) goes through a Backend inside tea.Cmds, and
// the engine's events come back as messages.
package wizard

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/cursor"
	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"

	"github.com/perchedge/perch/bundles"
	"github.com/perchedge/perch/installer/config"
)

// DefaultSavePath is where the review screen offers to save the config.
const DefaultSavePath = "/etc/perch/appliance.yaml"

// MinWidth and MinHeight are the smallest terminal the wizard draws in: a
// serial console's 80×24.
const (
	MinWidth  = 80
	MinHeight = 24
)

// Options set up a wizard.
type Options struct {
	Backend Backend
	// DryRun shows the plan instead of installing.
	DryRun bool
	// Context bounds every backend call; cancelling it stops an install.
	Context context.Context
	// Tick refreshes the elapsed times of a running install; 0 redraws only
	// when an event arrives (tests, for stable screens).
	Tick time.Duration
	// Root and Init are shown in the commands the done screen suggests.
	Root string
	Init string
	// Start is the config the wizard starts from; zero is config.Default().
	Start *config.Appliance
}

// Result is what the wizard leaves behind.
type Result struct {
	Config config.Appliance
	// SavedTo is where the config file really is; "" when it was not saved.
	SavedTo string
	// Plan is the plan the wizard showed, and PlanErr why it stopped.
	Plan    *PlanResult
	PlanErr error
	// Installed is true after a successful install; InstallErr says why
	// one failed.
	Installed  bool
	InstallErr error
	// Cancelled means the person left before installing anything.
	Cancelled bool
	// Started means an install began (and may have changed the host).
	Started bool
}

type screen int

const (
	scrWelcome screen = iota
	scrRole
	scrNode
	scrBundle
	scrPipeline
	scrMonitoring
	scrReview
	scrInstall
	scrDone
)

var screenNames = [...]string{"Welcome", "Role", "Node", "Bundle", "Pipeline", "Monitoring", "Review", "Install", "Done"}

// Roles, in the order the role screen lists them.
const (
	roleSingle = iota
	roleFirstServer
	roleJoinServer
	roleJoinAgent
)

var roleNames = []string{
	"Single node: this machine is the whole appliance",
	"First server of a high-availability cluster (embedded etcd)",
	"Join a cluster as a server",
	"Join a cluster as an agent (runs workloads only)",
}

// Model is the wizard's state. Its zero value is not usable; use New.
type Model struct {
	opt   Options
	base  config.Appliance
	w, h  int
	scr   screen
	tried map[screen]bool // continue was pressed once: validate as they type
	errs  config.FieldErrors

	hw        *Hardware
	hwErr     error
	welcomeAt int // scroll offset

	role int

	nodeFocus int
	hostname  textinput.Model
	serverURL textinput.Model
	token     textinput.Model
	madeToken string // the first server's token prepareToken made, if any
	ipChoice  int    // 0: auto, i: hw.Interfaces[i-1]

	found        []bundles.Found
	foundErr     error
	scanned      bool
	bundleFocus  int
	bundleChoice int // the selected source row: a found bundle, or len(found) for the path
	bundlePath   textinput.Model
	pubKey       textinput.Model
	verify       verifyState

	cams      []config.Stream
	pipeFocus int
	editing   int // index of the camera being edited, -1 for none
	editFocus int
	camName   textinput.Model
	camURL    textinput.Model
	replicas  textinput.Model

	monFocus  int
	retention textinput.Model
	grafana   bool

	reviewFocus int
	savePath    textinput.Model
	yamlAt      int
	saved       string // real path of the last save
	savedYAML   string // what that save wrote
	saveErr     error

	inst installState
	res  Result
}

type verifyState struct {
	id      int // bumped on every start and cancel; older messages are stale
	running bool
	done    int64
	total   int64
	subject [2]string // source and key of the result below
	info    *BundleInfo
	err     error
	cancel  context.CancelFunc
}

// New makes the wizard's first state; its Init starts hardware discovery.
func New(o Options) *Model {
	if o.Context == nil {
		o.Context = context.Background()
	}
	base := config.Default()
	if o.Start != nil {
		base = *o.Start
	}
	m := &Model{opt: o, base: base, tried: map[screen]bool{}, editing: -1, grafana: base.Monitoring.Grafana}
	m.hostname = newInput("e.g. edge-01", 63)
	m.hostname.SetValue(base.Node.Hostname)
	m.serverURL = newInput("e.g. https://192.0.2.1:6443", 0)
	m.serverURL.SetValue(base.Node.ServerURL)
	m.token = newInput("from the first server", 0)
	m.token.EchoMode = textinput.EchoPassword
	m.token.EchoCharacter = '*'
	m.token.SetValue(string(base.Node.Token))
	m.bundlePath = newInput("e.g. /media/usb/site-a.tar.zst or https://mirror/site-a.tar.zst", 0)
	m.pubKey = newInput("e.g. /media/usb/site.pub", 0)
	m.pubKey.SetValue(base.Bundle.PublicKey)
	m.camName = newInput("e.g. gate-1", 63)
	m.camURL = newInput("e.g. rtsp://192.0.2.10:554/stream1", 0)
	m.replicas = newInput("1", 2)
	m.replicas.SetValue(strconv.Itoa(base.GPU.Sharing.Replicas))
	m.retention = newInput("e.g. 7d", 12)
	m.retention.SetValue(base.Monitoring.Retention)
	m.savePath = newInput("e.g. "+DefaultSavePath, 0)
	m.savePath.SetValue(DefaultSavePath)
	m.cams = append([]config.Stream(nil), base.Pipeline.Streams...)
	switch {
	case base.Node.ClusterInit:
		m.role = roleFirstServer
	case base.Node.Role == config.RoleAgent:
		m.role = roleJoinAgent
	case base.Node.ServerURL != "":
		m.role = roleJoinServer
	}
	return m
}

func newInput(placeholder string, limit int) textinput.Model {
	t := textinput.New()
	t.Prompt = ""
	t.Placeholder = placeholder
	t.CharLimit = limit
	// A blinking cursor redraws twice a second: noise on a serial line.
	t.Cursor.SetMode(cursor.CursorStatic)
	return t
}

func (m *Model) Init() tea.Cmd {
	b, ctx := m.opt.Backend, m.opt.Context
	return func() tea.Msg {
		hw, err := b.Discover(ctx)
		return hardwareMsg{hw, err}
	}
}

// Result is what the wizard produced so far; Run returns it at the end.
func (m *Model) Result() Result {
	r := m.res
	r.Config = m.config()
	r.SavedTo = m.saved
	return r
}

type (
	hardwareMsg struct {
		hw  *Hardware
		err error
	}
	bundlesMsg struct {
		found []bundles.Found
		err   error
	}
	savedMsg struct {
		path, yaml string
		err        error
		then       tea.Cmd // what to do after a successful save
	}
)

func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.w, m.h = msg.Width, msg.Height
		// inputs scroll sideways within what is left of the line
		for _, in := range []*textinput.Model{&m.hostname, &m.serverURL, &m.token, &m.bundlePath, &m.pubKey, &m.camName, &m.camURL, &m.savePath} {
			in.Width = max(m.w-2-labelWidth-2, 10)
		}
		m.replicas.Width, m.retention.Width = 3, 12 // room for the hint after them
		return m, nil
	case streamMsg:
		_, cmd := m.Update(msg.msg)
		return m, tea.Batch(cmd, next(msg.ch))
	case hardwareMsg:
		m.hw, m.hwErr = msg.hw, msg.err
		if msg.hw != nil && m.hostname.Value() == "" {
			m.hostname.SetValue(msg.hw.Hostname)
		}
		return m, nil
	case bundlesMsg:
		m.found, m.foundErr, m.scanned = msg.found, msg.err, true
		// a stick's bundle is the likely choice; a path typed before wins
		m.bundleChoice = len(m.found)
		if m.bundlePath.Value() == "" && len(m.found) > 0 {
			m.bundleChoice = 0
		}
		m.bundleFocus = m.bundleChoice
		return m, m.focusBundle()
	case savedMsg:
		m.saveErr = msg.err
		if msg.err != nil {
			if m.scr == scrInstall { // the install saves first: show why it did not start
				m.inst = installState{}
				m.scr = scrReview
			}
			return m, nil
		}
		m.saved, m.savedYAML = msg.path, msg.yaml
		if m.scr == scrReview {
			m.reviewFocus = 2
			m.focusReview()
		}
		return m, msg.then
	case tea.KeyMsg:
		return m.key(msg)
	case streamStarted:
		if msg.id == installID {
			return m, m.updateInstall(msg)
		}
		return m, m.updateVerify(msg)
	case verifyProgressMsg, verifyDoneMsg:
		return m, m.updateVerify(msg)
	case planMsg, eventMsg, installDoneMsg, tickMsg:
		return m, m.updateInstall(msg)
	}
	return m, nil
}

func (m *Model) tooSmall() bool { return m.w < MinWidth || m.h < MinHeight }

func (m *Model) key(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	if k.String() == "ctrl+c" {
		if m.installing() {
			m.inst.confirmAbort = true
			return m, nil
		}
		if m.scr == scrDone || m.inst.phase == phaseFailed || m.inst.phase == phaseDone || m.inst.phase == phasePlanned {
			return m, tea.Quit
		}
		m.res.Cancelled = true
		return m, tea.Batch(m.cancelVerify(), tea.Quit)
	}
	if m.tooSmall() {
		return m, nil // nothing a person cannot see should change
	}
	var cmd tea.Cmd
	switch m.scr {
	case scrWelcome:
		cmd = m.keyWelcome(k)
	case scrRole:
		cmd = m.keyRole(k)
	case scrNode:
		cmd = m.keyNode(k)
	case scrBundle:
		cmd = m.keyBundle(k)
	case scrPipeline:
		cmd = m.keyPipeline(k)
	case scrMonitoring:
		cmd = m.keyMonitoring(k)
	case scrReview:
		cmd = m.keyReview(k)
	case scrInstall:
		cmd = m.keyInstall(k)
	case scrDone:
		cmd = m.keyDone(k)
	}
	return m, cmd
}

// goTo shows another screen; inputs keep their values both ways.
func (m *Model) goTo(s screen) tea.Cmd {
	m.scr = s
	m.errs = nil
	if m.tried[s] {
		m.errs = m.validate(s)
	}
	switch s {
	case scrNode:
		m.nodeFocus = min(m.nodeFocus, m.nodeRows()-1)
		m.focusNode()
	case scrBundle:
		if !m.scanned {
			b, ctx := m.opt.Backend, m.opt.Context
			return func() tea.Msg {
				found, err := b.FindBundles(ctx)
				return bundlesMsg{found, err}
			}
		}
		return m.focusBundle()
	case scrPipeline:
		m.focusPipeline()
	case scrMonitoring:
		m.focusMonitoring()
	case scrReview:
		m.yamlAt = 0
		m.focusReview()
	}
	return nil
}

// advance leaves screen s when what it owns is valid, else shows why at
// the fields.
func (m *Model) advance(s screen) tea.Cmd {
	m.tried[s] = true
	if m.errs = m.validate(s); len(m.errs) > 0 {
		return nil
	}
	return m.goTo(s + 1)
}

func (m *Model) back() tea.Cmd {
	if m.scr == scrWelcome {
		return nil
	}
	return m.goTo(m.scr - 1)
}

// config builds the Appliance from what is on the screens.
func (m *Model) config() config.Appliance {
	c := m.base
	c.Node.Hostname = strings.TrimSpace(m.hostname.Value())
	c.Node.Role, c.Node.ClusterInit, c.Node.ServerURL, c.Node.Token = config.RoleServer, false, "", ""
	switch m.role {
	case roleFirstServer:
		c.Node.ClusterInit = true
		c.Node.Token = config.Secret(strings.TrimSpace(m.token.Value()))
	case roleJoinServer, roleJoinAgent:
		if m.role == roleJoinAgent {
			c.Node.Role = config.RoleAgent
		}
		c.Node.ServerURL = strings.TrimSpace(m.serverURL.Value())
		c.Node.Token = config.Secret(strings.TrimSpace(m.token.Value()))
	}
	c.Node.NodeIP = ""
	if m.hw != nil && m.ipChoice > 0 && m.ipChoice <= len(m.hw.Interfaces) {
		c.Node.NodeIP = m.hw.Interfaces[m.ipChoice-1].IP
	}
	c.Bundle.Source = m.bundleSource()
	c.Bundle.PublicKey = strings.TrimSpace(m.pubKey.Value())
	if c.Bundle.Source != "" {
		c.K3s.Binary = ""
	}
	c.Pipeline.Streams = nil
	for _, s := range m.cams {
		c.Pipeline.Streams = append(c.Pipeline.Streams, config.Stream{Name: strings.TrimSpace(s.Name), URL: strings.TrimSpace(s.URL)})
	}
	if n, err := strconv.Atoi(strings.TrimSpace(m.replicas.Value())); err == nil {
		c.GPU.Sharing.Replicas = n
	}
	c.Monitoring.Retention = strings.TrimSpace(m.retention.Value())
	c.Monitoring.Grafana = m.grafana
	return c
}

func (m *Model) bundleSource() string {
	if m.bundleChoice < len(m.found) {
		return m.found[m.bundleChoice].Path
	}
	return strings.TrimSpace(m.bundlePath.Value())
}

// owners says which keys each screen shows errors for: the config
// validator's key paths decide where an error appears.
var owners = map[screen][]string{
	scrNode:       {"node."},
	scrBundle:     {"bundle."},
	scrPipeline:   {"pipeline.", "gpu."},
	scrMonitoring: {"monitoring."},
	scrReview:     {""},
}

// Unfixable are the problems the wizard could never clear: values set by
// PERCH_* variables or flags at keys no screen edits. Starting anyway would
// leave a person on a review screen they cannot get past, not told why.
func Unfixable(errs config.FieldErrors) config.FieldErrors {
	var out config.FieldErrors
	for _, e := range errs {
		if e.From == "" {
			continue
		}
		edited := false
		for s, prefixes := range owners {
			for _, p := range prefixes {
				edited = edited || s != scrReview && strings.HasPrefix(e.Path, p)
			}
		}
		if !edited {
			out = append(out, e)
		}
	}
	return out
}

// validate is the config file's validator plus what only the wizard can
// get wrong, limited to the keys screen s owns.
func (m *Model) validate(s screen) config.FieldErrors {
	c := m.config()
	all := config.Validate(&c)
	if (m.role == roleJoinServer || m.role == roleJoinAgent) && c.Node.ServerURL == "" && c.Node.Role != config.RoleAgent {
		all = append(all, config.FieldError{Path: "node.serverURL", Msg: "required to join a cluster; set it to https://SERVER:6443 of a server"})
	}
	if c.Bundle.Source == "" {
		all = append(all, config.FieldError{Path: "bundle.source", Msg: "required: choose a bundle found on a stick, or type its path or URL"})
	}
	if _, err := strconv.Atoi(strings.TrimSpace(m.replicas.Value())); err != nil {
		all = append(all, config.FieldError{Path: "gpu.sharing.replicas", Msg: fmt.Sprintf("%q is not a whole number; 1 means no sharing", m.replicas.Value())})
	}
	var out config.FieldErrors
	for _, e := range all {
		// with a bundle chosen, k3s comes from it: the file-mode advice
		// about k3s.binary does not apply here
		if e.Path == "k3s.binary" && s == scrBundle {
			continue
		}
		for _, p := range owners[s] {
			if strings.HasPrefix(e.Path, p) {
				out = append(out, e)
				break
			}
		}
	}
	return out
}

// fieldErrs are the messages for one key, for the line under its field.
func (m *Model) fieldErrs(path string) []string {
	var out []string
	for _, e := range m.errs.For(path) {
		msg := e.Msg
		if e.Path != path {
			msg = strings.TrimPrefix(e.Path, path+".") + ": " + msg
		}
		out = append(out, msg)
	}
	return out
}

// revalidate refreshes the errors as a person types, once they have tried
// to continue.
func (m *Model) revalidate() {
	if m.tried[m.scr] {
		m.errs = m.validate(m.scr)
	}
}

// moveFocus is up/down/tab/shift+tab over n rows; it stops at the ends, so
// "down a few times" always lands on the last row.
func moveFocus(k tea.KeyMsg, at, n int) (int, bool) {
	switch k.String() {
	case "up", "shift+tab":
		return max(at-1, 0), true
	case "down", "tab":
		return min(at+1, n-1), true
	}
	return at, false
}
