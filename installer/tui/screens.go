package tui

import (
	"fmt"
	"math"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"

	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/installer/preflight"
)

// ---- Welcome ----

func (m *Model) keyWelcome(k tea.KeyMsg) tea.Cmd {
	switch k.String() {
	case "up":
		m.welcomeAt = max(m.welcomeAt-1, 0)
	case "down":
		m.welcomeAt++
	case "enter":
		// a machine that could not be read can still be set up by hand
		if m.hw != nil || m.hwErr != nil {
			return m.goTo(scrRole)
		}
	}
	return nil
}

func (m *Model) viewWelcome() []string {
	out := m.indented("Perch sets this machine up as an offline video-analytics appliance: a few questions, a review of the config file, then the install.", 0)
	out = append(out, "")
	switch {
	case m.hwErr != nil:
		out = append(out, styleErr.Render("Could not read this machine: "))
		out = append(out, m.indented(m.hwErr.Error(), 2)...)
		return out
	case m.hw == nil:
		return append(out, "Looking at this machine...")
	}
	hw := m.hw
	var lines []string
	lines = append(lines, styleTitle.Render("This machine"))
	lines = append(lines, m.row(false, "Hostname", hw.Hostname, nil)...)
	lines = append(lines, m.row(false, "CPU", fmt.Sprintf("%s (%d cores)", hw.CPUModel, hw.CPUs), nil)...)
	lines = append(lines, m.row(false, "Memory", formatBytes(hw.MemoryBytes), nil)...)
	lines = append(lines, m.row(false, "Disk", formatBytes(hw.DiskFreeBytes)+" free for k3s data", nil)...)
	lines = append(lines, m.kv("GPUs", gpuSummary(hw))...)
	rt := "nvidia-container-runtime at " + hw.NvidiaRuntime
	if hw.NvidiaRuntime == "" {
		rt = "nvidia-container-runtime not installed"
		if len(hw.GPUs) > 0 {
			rt += ": pods cannot use the GPUs until the NVIDIA container toolkit is installed"
		}
	}
	lines = append(lines, m.kv("Runtime", rt)...)
	var nets []string
	for _, i := range hw.Interfaces {
		s := i.Name + " " + i.IP
		if i.IP == hw.DefaultIP {
			s += " (default route)"
		}
		nets = append(nets, s)
	}
	if len(nets) == 0 {
		nets = []string{"no address found"}
	}
	lines = append(lines, m.kv("Network", strings.Join(nets, ", "))...)
	lines = append(lines, "", styleTitle.Render("Preflight")+" (checked for a server that runs pods; the plan checks your role)")
	var ok []string
	for _, r := range hw.Preflight {
		if r.Severity == preflight.OK {
			ok = append(ok, r.Check)
		}
	}
	if len(ok) > 0 {
		lines = append(lines, m.kv(styleOK.Render("[ok]"), strings.Join(ok, ", "))...)
	}
	for _, r := range hw.Preflight {
		tag := styleWarn.Render("[warn]")
		if r.Severity == preflight.Error {
			tag = styleErr.Render("[FAIL]")
		} else if r.Severity != preflight.Warn {
			continue
		}
		lines = append(lines, m.kv(tag, r.Check+": "+r.Message)...)
		if r.Fix != "" {
			lines = append(lines, m.indented("fix: "+r.Fix, 2+labelWidth)...)
		}
	}
	if len(preflight.Failed(hw.Preflight)) > 0 {
		lines = append(lines, "", styleErr.Render("Fix the [FAIL] checks before installing: the plan refuses this machine until then."))
	}
	room := m.bodyHeight() - len(out)
	m.welcomeAt = min(m.welcomeAt, max(len(lines)-room, 0))
	if len(lines) > room {
		lines = lines[m.welcomeAt:]
		if len(lines) > room {
			lines = append(lines[:room-1], styleDim.Render("  ... more below: down arrow"))
		}
	}
	return append(out, lines...)
}

// kv is an unfocused row whose value may be long: it wraps under itself.
func (m *Model) kv(label, value string) []string {
	vals := wrap(value, m.w-2-labelWidth)
	out := []string{"  " + padRight(label, labelWidth) + vals[0]}
	for _, v := range vals[1:] {
		out = append(out, strings.Repeat(" ", 2+labelWidth)+v)
	}
	return out
}

func gpuSummary(hw *Hardware) string {
	if len(hw.GPUs) == 0 {
		note := hw.GPUNote
		if note == "" {
			note = "no NVIDIA GPU found"
		}
		return "none: " + note + "; the install is CPU-only"
	}
	count := map[string]int{}
	mem := map[string]uint64{}
	var names []string
	for _, g := range hw.GPUs {
		if count[g.Name] == 0 {
			names = append(names, g.Name)
		}
		count[g.Name]++
		mem[g.Name] = g.MemoryMiB
	}
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%dx %s (%d MiB)", count[n], n, mem[n]))
	}
	s := strings.Join(parts, ", ")
	if hw.GPUDriver != "" {
		s += ", driver " + hw.GPUDriver
	}
	return s
}

// ---- Role ----

func (m *Model) keyRole(k tea.KeyMsg) tea.Cmd {
	if at, ok := moveFocus(k, m.role, len(roleNames)); ok {
		m.role = at
		return nil
	}
	switch k.String() {
	case "enter":
		return m.goTo(scrNode)
	case "esc":
		return m.back()
	}
	return nil
}

var roleHelp = []string{
	"k3s server and workloads on this machine. Add agents later by running the installer on them and choosing to join.",
	"Starts a cluster with embedded etcd that two more servers join (an odd count keeps a quorum). Their join token is in /var/lib/rancher/k3s/server/token here.",
	"Joins the control plane of an existing cluster: you need the URL of a server and the cluster token.",
	"Runs cameras' workloads for an existing cluster: you need the URL of a server and the cluster token.",
}

func (m *Model) viewRole() []string {
	out := []string{"What is this machine's part in the cluster?", ""}
	for i, r := range roleNames {
		line := "  " + radio(i == m.role) + r
		if i == m.role {
			line = "> " + radio(true) + styleFocus.Render(r)
		}
		out = append(out, line)
	}
	out = append(out, "")
	return append(out, m.indented(roleHelp[m.role], 2)...)
}

// ---- Node ----

func (m *Model) joining() bool { return m.role == roleJoinServer || m.role == roleJoinAgent }

func (m *Model) nodeRows() int {
	if m.joining() {
		return 4
	}
	return 2
}

func (m *Model) nodeInputs() []*textinput.Model {
	return []*textinput.Model{&m.hostname, nil, &m.serverURL, &m.token}
}

func (m *Model) focusNode() {
	for i, in := range m.nodeInputs() {
		if in == nil {
			continue
		}
		if i == m.nodeFocus {
			in.Focus()
		} else {
			in.Blur()
		}
	}
}

func (m *Model) keyNode(k tea.KeyMsg) tea.Cmd {
	if at, ok := moveFocus(k, m.nodeFocus, m.nodeRows()); ok {
		m.nodeFocus = at
		m.focusNode()
		return nil
	}
	switch k.String() {
	case "esc":
		return m.back()
	case "enter":
		if m.nodeFocus < m.nodeRows()-1 {
			m.nodeFocus++
			m.focusNode()
			return nil
		}
		return m.advance(scrNode)
	}
	if m.nodeFocus == 1 {
		n := 1
		if m.hw != nil {
			n += len(m.hw.Interfaces)
		}
		switch k.String() {
		case "left":
			m.ipChoice = (m.ipChoice + n - 1) % n
		case "right", " ", "space":
			m.ipChoice = (m.ipChoice + 1) % n
		}
		m.revalidate()
		return nil
	}
	in := m.nodeInputs()[m.nodeFocus]
	var cmd tea.Cmd
	*in, cmd = in.Update(k)
	m.revalidate()
	return cmd
}

func (m *Model) ipLabel() string {
	if m.hw != nil && m.ipChoice > 0 && m.ipChoice <= len(m.hw.Interfaces) {
		i := m.hw.Interfaces[m.ipChoice-1]
		return i.IP + " (" + i.Name + ")"
	}
	s := "auto: the address of the default route"
	if m.hw != nil && m.hw.DefaultIP != "" {
		s += " (" + m.hw.DefaultIP + ")"
	}
	return s
}

func (m *Model) viewNode() []string {
	out := m.indented("How this node is named and reached. The name must be a lowercase DNS name, unique in the cluster.", 0)
	out = append(out, "")
	out = append(out, m.row(m.nodeFocus == 0, "Hostname", m.inputView(&m.hostname), m.fieldErrs("node.hostname"))...)
	out = append(out, m.row(m.nodeFocus == 1, "Node IP", "< "+m.ipLabel()+" >", m.fieldErrs("node.nodeIP"))...)
	if m.joining() {
		out = append(out, m.row(m.nodeFocus == 2, "Server URL", m.inputView(&m.serverURL), m.fieldErrs("node.serverURL"))...)
		out = append(out, m.row(m.nodeFocus == 3, "Token", m.inputView(&m.token), m.fieldErrs("node.token"))...)
		out = append(out, "")
		out = append(out, m.indented("The token is in /var/lib/rancher/k3s/server/token on the first server. It is saved in the config file, which is written readable by root only.", 2)...)
	}
	// errors of keys without a field of their own (node.clusterInit...)
	for _, e := range m.errs {
		switch e.Path {
		case "node.hostname", "node.nodeIP", "node.serverURL", "node.token":
			continue
		}
		out = append(out, m.indented(styleErr.Render("! "+e.Error()), 2)...)
	}
	return out
}

// inputView shows a field's value; an empty field out of focus shows
// nothing rather than its example, which looks like a value without colour.
func (m *Model) inputView(in *textinput.Model) string {
	if in.Value() == "" && !in.Focused() {
		return ""
	}
	return in.View()
}

// ---- Bundle ----

func (m *Model) bundleRows() int { return len(m.found) + 2 }

func (m *Model) focusBundle() tea.Cmd {
	m.bundlePath.Blur()
	m.pubKey.Blur()
	switch m.bundleFocus - len(m.found) {
	case 0:
		m.bundlePath.Focus()
	case 1:
		m.pubKey.Focus()
	}
	return nil
}

func (m *Model) cancelVerify() tea.Cmd {
	cancel := m.verify.cancel
	m.verify.cancel = nil
	m.verify.running = false
	m.verify.id++
	return cancelCmd(cancel)
}

func (m *Model) verifiedNow() bool {
	v := m.verify
	return v.info != nil && v.err == nil && v.subject == [2]string{m.bundleSource(), strings.TrimSpace(m.pubKey.Value())}
}

func (m *Model) keyBundle(k tea.KeyMsg) tea.Cmd {
	if !m.scanned {
		if k.String() == "esc" {
			return m.back()
		}
		return nil
	}
	if m.verify.running {
		if k.String() == "esc" {
			return m.cancelVerify()
		}
		return nil
	}
	if at, ok := moveFocus(k, m.bundleFocus, m.bundleRows()); ok {
		m.bundleFocus = at
		return m.focusBundle()
	}
	switch k.String() {
	case "esc":
		return m.back()
	case " ", "space":
		if m.bundleFocus < len(m.found) {
			m.bundleChoice = m.bundleFocus
			m.revalidate()
			return nil
		}
	case "enter":
		if m.bundleFocus <= len(m.found) {
			m.bundleChoice = m.bundleFocus
		}
		if m.verifiedNow() {
			return m.goTo(scrPipeline)
		}
		if strings.TrimSpace(m.pubKey.Value()) == "" && m.bundleFocus < m.bundleRows()-1 {
			m.bundleFocus = m.bundleRows() - 1
			return m.focusBundle()
		}
		m.tried[scrBundle] = true
		if m.errs = m.validate(scrBundle); len(m.errs) > 0 {
			return nil
		}
		m.verify.id++
		src, key := m.bundleSource(), strings.TrimSpace(m.pubKey.Value())
		m.verify = verifyState{id: m.verify.id, running: true, subject: [2]string{src, key}}
		return verifyCmd(m.opt.Context, m.opt.Backend, m.verify.id, src, key)
	}
	var cmd tea.Cmd
	switch m.bundleFocus - len(m.found) {
	case 0:
		before := m.bundlePath.Value()
		if m.bundlePath, cmd = m.bundlePath.Update(k); m.bundlePath.Value() != before {
			m.bundleChoice = len(m.found) // typing a path chooses it
		}
	case 1:
		m.pubKey, cmd = m.pubKey.Update(k)
	}
	m.revalidate()
	return cmd
}

func (m *Model) updateVerify(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case streamStarted:
		if msg.id != m.verify.id || !m.verify.running {
			return tea.Batch(cancelCmd(msg.cancel), next(msg.ch))
		}
		m.verify.cancel = msg.cancel
		return next(msg.ch)
	case verifyProgressMsg:
		if msg.id == m.verify.id {
			m.verify.done, m.verify.total = msg.done, msg.total
		}
	case verifyDoneMsg:
		if msg.id == m.verify.id {
			m.verify.running, m.verify.cancel = false, nil
			m.verify.info, m.verify.err = msg.info, msg.err
		}
	}
	return nil
}

func (m *Model) viewBundle() []string {
	out := m.indented("The signed bundle carries k3s, the images and the charts, so the install needs no network.", 0)
	out = append(out, "")
	if !m.scanned {
		return append(out, "Looking for bundles on USB sticks...")
	}
	switch {
	case m.foundErr != nil:
		out = append(out, m.indented(styleWarn.Render("Could not look for bundles: "+m.foundErr.Error()), 0)...)
	case len(m.found) == 0:
		out = append(out, "No bundle on USB sticks or under /media, /run/media, /mnt.")
	default:
		out = append(out, "Found on USB sticks and other media:")
	}
	for i, f := range m.found {
		where := engine.Bytes(f.Size)
		if f.Removable {
			where += ", removable"
		}
		if f.Device != "" {
			where += ", " + f.Device
		}
		line := radio(i == m.bundleChoice) + f.Path + "  " + styleDim.Render(where)
		if i == m.bundleFocus {
			out = append(out, "> "+line)
		} else {
			out = append(out, "  "+line)
		}
	}
	n := len(m.found)
	out = append(out, m.row(m.bundleFocus == n, radio(m.bundleChoice == n)+"Path or URL", m.inputView(&m.bundlePath), m.fieldErrs("bundle.source"))...)
	out = append(out, m.row(m.bundleFocus == n+1, "Public key", m.inputView(&m.pubKey), m.fieldErrs("bundle.publicKey"))...)
	out = append(out, "")
	v := m.verify
	switch {
	case v.running:
		out = append(out, "Verifying "+filepath.Base(v.subject[0])+": every file against the signed manifest")
		pct := 0.0
		if v.total > 0 {
			pct = float64(v.done) / float64(v.total)
		}
		out = append(out, "  "+barView(pct, m.w-34)+fmt.Sprintf(" %3.0f%%  %s / %s", pct*100, engine.Bytes(v.done), engine.Bytes(v.total)))
	case v.err != nil && v.subject == [2]string{m.bundleSource(), strings.TrimSpace(m.pubKey.Value())}:
		out = append(out, m.indented(styleErr.Render("! "+v.err.Error()), 0)...)
	case m.verifiedNow():
		i := v.info
		out = append(out, styleOK.Render("Verified")+fmt.Sprintf(": %s %s (%s), %d files, %s", i.Name, i.Version, i.Arch, i.Files, engine.Bytes(i.Size)))
		out = append(out, m.kv("k3s", i.K3sVersion)...)
		out = append(out, m.kv("Images", listOrNone(i.Images))...)
		out = append(out, m.kv("Charts", listOrNone(i.Charts))...)
		if i.Signer != "" {
			out = append(out, m.kv("Signed", i.Signer)...)
		}
		out = append(out, "", "Press enter to continue.")
	}
	return out
}

// barView is an ASCII progress bar: serial consoles draw no block glyphs.
// (bubbles/progress would need harmonica, which go.sum does not pin.)
func barView(pct float64, w int) string {
	w = max(w, 10)
	fill := int(math.Round(math.Max(0, math.Min(1, pct)) * float64(w)))
	return "[" + styleOK.Render(strings.Repeat("#", fill)) + strings.Repeat("-", w-fill) + "]"
}

func listOrNone(items []string) string {
	if len(items) == 0 {
		return "none"
	}
	return fmt.Sprintf("%d: %s", len(items), strings.Join(items, ", "))
}

// ---- Pipeline ----

func (m *Model) pipeRows() int { return len(m.cams) + 2 }

func (m *Model) focusPipeline() {
	m.camName.Blur()
	m.camURL.Blur()
	m.replicas.Blur()
	switch {
	case m.editing >= 0 && m.editFocus == 0:
		m.camName.Focus()
	case m.editing >= 0:
		m.camURL.Focus()
	case m.pipeFocus == m.pipeRows()-1:
		m.replicas.Focus()
	}
}

func (m *Model) edit(i int) {
	m.editing, m.editFocus, m.pipeFocus = i, 0, i
	m.camName.SetValue(m.cams[i].Name)
	m.camURL.SetValue(m.cams[i].URL)
	m.camName.CursorEnd()
	m.camURL.CursorEnd()
	m.focusPipeline()
}

// doneEditing keeps what was typed, even on esc: the validator says what
// is wrong with it at the row, and d removes a camera.
func (m *Model) doneEditing() {
	m.cams[m.editing] = config.Stream{Name: m.camName.Value(), URL: m.camURL.Value()}
	m.editing = -1
	m.focusPipeline()
	m.revalidate()
}

func (m *Model) keyPipeline(k tea.KeyMsg) tea.Cmd {
	if m.editing >= 0 {
		switch k.String() {
		case "esc":
			m.doneEditing()
			return nil
		case "enter":
			if m.editFocus == 1 {
				m.doneEditing()
				return nil
			}
			m.editFocus = 1
			m.focusPipeline()
			return nil
		case "tab", "down", "shift+tab", "up":
			m.editFocus = 1 - m.editFocus
			m.focusPipeline()
			return nil
		}
		var cmd tea.Cmd
		if m.editFocus == 0 {
			m.camName, cmd = m.camName.Update(k)
		} else {
			m.camURL, cmd = m.camURL.Update(k)
		}
		return cmd
	}
	if at, ok := moveFocus(k, m.pipeFocus, m.pipeRows()); ok {
		m.pipeFocus = at
		m.focusPipeline()
		return nil
	}
	onCam := m.pipeFocus < len(m.cams)
	add := func() tea.Cmd {
		m.cams = append(m.cams, config.Stream{})
		m.edit(len(m.cams) - 1)
		return nil
	}
	switch k.String() {
	case "esc":
		return m.back()
	case "enter":
		switch {
		case onCam:
			m.edit(m.pipeFocus)
			return nil
		case m.pipeFocus == len(m.cams):
			return add()
		}
		return m.advance(scrPipeline)
	}
	if m.pipeFocus == m.pipeRows()-1 {
		var cmd tea.Cmd
		m.replicas, cmd = m.replicas.Update(k)
		m.revalidate()
		return cmd
	}
	switch k.String() {
	case "a", "+":
		return add()
	case "e":
		if onCam {
			m.edit(m.pipeFocus)
		}
	case "d", "delete", "-":
		if onCam {
			m.cams = append(m.cams[:m.pipeFocus], m.cams[m.pipeFocus+1:]...)
			m.revalidate()
		}
	}
	return nil
}

func (m *Model) viewPipeline() []string {
	out := m.indented("Cameras to analyse: a name and the stream URL of each. Every stream goes to exactly one inference worker.", 0)
	out = append(out, "")
	// keep the focused camera in sight when the list is long
	room := max(m.bodyHeight()-10, 3)
	first := 0
	if m.pipeFocus >= room {
		first = m.pipeFocus - room + 1
	}
	if first > 0 {
		out = append(out, styleDim.Render(fmt.Sprintf("  ... %d more above", first)))
	}
	for i, c := range m.cams {
		if i < first || i >= first+room {
			continue
		}
		p := fmt.Sprintf("pipeline.streams[%d]", i)
		if i == m.editing {
			out = append(out, m.row(m.editFocus == 0, "  Name", m.camName.View(), m.fieldErrs(p+".name"))...)
			out = append(out, m.row(m.editFocus == 1, "  URL", m.camURL.View(), m.fieldErrs(p+".url"))...)
			continue
		}
		name := c.Name
		if name == "" {
			name = "(no name)"
		}
		out = append(out, m.row(m.pipeFocus == i && m.editing < 0, name, redactURL(c.URL), m.fieldErrs(p))...)
	}
	if len(m.cams) > first+room {
		out = append(out, styleDim.Render(fmt.Sprintf("  ... %d more below", len(m.cams)-first-room)))
	}
	out = append(out, m.row(m.pipeFocus == len(m.cams) && m.editing < 0, "+ Add camera", "", nil)...)
	if len(m.cams) == 0 {
		out = append(out, m.indented("No cameras yet: the pipeline is installed and waits for streams; add them here or later in the config file.", 2)...)
	}
	out = append(out, "")
	rep := m.row(m.pipeFocus == len(m.cams)+1 && m.editing < 0, "GPU sharing", m.inputView(&m.replicas), m.fieldErrs("gpu.sharing.replicas"))
	rep[0] += styleDim.Render("  pods per GPU by time-slicing; 1 = no sharing")
	out = append(out, rep...)
	for _, e := range m.errs.For("pipeline.enabled") {
		out = append(out, styleErr.Render("! "+e.Error()))
	}
	return out
}

// redactURL keeps camera passwords off the screen (the file has them).
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "***")
		return strings.Replace(u.String(), "%2A%2A%2A", "***", 1)
	}
	return s
}

// ---- Monitoring ----

func (m *Model) focusMonitoring() {
	if m.monFocus == 0 {
		m.retention.Focus()
	} else {
		m.retention.Blur()
	}
}

func (m *Model) keyMonitoring(k tea.KeyMsg) tea.Cmd {
	if at, ok := moveFocus(k, m.monFocus, 2); ok {
		m.monFocus = at
		m.focusMonitoring()
		return nil
	}
	switch k.String() {
	case "esc":
		return m.back()
	case "enter":
		if m.monFocus == 0 {
			m.monFocus = 1
			m.focusMonitoring()
			return nil
		}
		return m.advance(scrMonitoring)
	}
	if m.monFocus == 1 {
		switch k.String() {
		case " ", "space", "left", "right", "x":
			m.grafana = !m.grafana
		}
		return nil
	}
	var cmd tea.Cmd
	m.retention, cmd = m.retention.Update(k)
	m.revalidate()
	return cmd
}

func (m *Model) viewMonitoring() []string {
	out := m.indented("Prometheus keeps the appliance's metrics (GPU use, streams, nodes); Grafana shows them.", 0)
	out = append(out, "")
	ret := m.row(m.monFocus == 0, "Retention", m.inputView(&m.retention), m.fieldErrs("monitoring.retention"))
	ret[0] += styleDim.Render("  how long samples are kept: 12h, 7d, 4w")
	out = append(out, ret...)
	out = append(out, m.row(m.monFocus == 1, "Grafana", checkbox(m.grafana), m.fieldErrs("monitoring.grafana"))...)
	return out
}

// ---- Review ----

func (m *Model) focusReview() {
	if m.reviewFocus == 0 {
		m.savePath.Focus()
	} else {
		m.savePath.Blur()
	}
}

// reviewYAML is the file as it will be saved, and the same text with the
// token masked for the screen.
func (m *Model) reviewYAML() (file, shown string, err error) {
	c := m.config()
	b, err := MarshalYAML(c)
	if err != nil {
		return "", "", err
	}
	file = string(b)
	shown = file
	if c.Node.Token != "" {
		shown = strings.Replace(shown, "token: "+string(c.Node.Token), "token: ******** (saved in the file)", 1)
	}
	return file, shown, nil
}

func (m *Model) yamlRoom() int { return max(m.bodyHeight()-8, 3) }

func (m *Model) keyReview(k tea.KeyMsg) tea.Cmd {
	maxAt := max(len(m.yamlLines())-m.yamlRoom(), 0)
	switch k.String() {
	case "up":
		m.yamlAt = max(m.yamlAt-1, 0)
		return nil
	case "down":
		m.yamlAt = min(m.yamlAt+1, maxAt)
		return nil
	case "pgup":
		m.yamlAt = max(m.yamlAt-m.yamlRoom(), 0)
		return nil
	case "pgdown":
		m.yamlAt = min(m.yamlAt+m.yamlRoom(), maxAt)
		return nil
	case "tab":
		m.reviewFocus = (m.reviewFocus + 1) % 3
		m.focusReview()
		return nil
	case "shift+tab":
		m.reviewFocus = (m.reviewFocus + 2) % 3
		m.focusReview()
		return nil
	case "esc":
		return m.back()
	case "enter":
		m.tried[scrReview] = true
		if m.errs = m.validate(scrReview); len(m.errs) > 0 {
			return nil
		}
		if m.reviewFocus < 2 {
			return m.save(nil)
		}
		return m.startInstall()
	}
	if m.reviewFocus == 0 {
		var cmd tea.Cmd
		m.savePath, cmd = m.savePath.Update(k)
		return cmd
	}
	return nil
}

// save writes the config file; then runs after it was written.
func (m *Model) save(then tea.Cmd) tea.Cmd {
	file, _, err := m.reviewYAML()
	if err != nil {
		m.saveErr = err
		return nil
	}
	b, p := m.opt.Backend, strings.TrimSpace(m.savePath.Value())
	return func() tea.Msg {
		real, err := b.Save(p, []byte(file))
		return savedMsg{path: real, yaml: file, err: err, then: then}
	}
}

// yamlLines is the review's YAML as drawn: long lines (paths, URLs) fold
// rather than lose their ends.
func (m *Model) yamlLines() []string {
	_, shown, err := m.reviewYAML()
	if err != nil {
		return []string{styleErr.Render(err.Error())}
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSuffix(shown, "\n"), "\n") {
		lines = append(lines, strings.Split(ansi.Hardwrap(l, m.w-2, true), "\n")...)
	}
	return lines
}

func (m *Model) viewReview() []string {
	lines := m.yamlLines()
	room := m.yamlRoom()
	m.yamlAt = min(m.yamlAt, max(len(lines)-room, 0))
	end := min(m.yamlAt+room, len(lines))
	out := []string{fmt.Sprintf("The config file perch installs from (lines %d-%d of %d):", m.yamlAt+1, end, len(lines))}
	out = append(out, strings.Repeat("-", m.w))
	for _, l := range lines[m.yamlAt:end] {
		out = append(out, "  "+l)
	}
	for i := end - m.yamlAt; i < room; i++ {
		out = append(out, "")
	}
	out = append(out, strings.Repeat("-", m.w))
	out = append(out, m.row(m.reviewFocus == 0, "Save to", m.inputView(&m.savePath), nil)...)
	act := "Install"
	if m.opt.DryRun {
		act = "Show plan"
	}
	out = append(out, "  "+button("Save", m.reviewFocus == 1)+"  "+button(act, m.reviewFocus == 2))
	switch {
	case len(m.errs) > 0:
		for _, e := range m.errs {
			out = append(out, m.indented(styleErr.Render("! "+e.Error()), 2)...)
		}
	case m.saveErr != nil:
		out = append(out, m.indented(styleErr.Render("! "+m.saveErr.Error()), 2)...)
	case m.saved != "":
		note := "Saved to " + m.saved + " (mode 0600)."
		if file, _, _ := m.reviewYAML(); file != m.savedYAML {
			note = "Changed since it was saved to " + m.saved + "; save again to keep the changes."
		}
		out = append(out, m.indented(styleOK.Render(note), 2)...)
	}
	return out
}

func button(label string, focused bool) string {
	if focused {
		return "> " + styleFocus.Render("[ "+label+" ]")
	}
	return "  [ " + label + " ]"
}

// stepsOf lists a plan's steps in order, for the install screen's rows.
func stepsOf(p engine.Plan) []string {
	var out []string
	for _, s := range p.Steps {
		out = append(out, s.Step)
	}
	return out
}
