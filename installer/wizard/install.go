package wizard

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/perchedge/perch/installer/apps"
	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/engine"
)

type phase int

const (
	phaseIdle phase = iota
	phasePlanning
	phasePlanned // dry run: the plan is the end
	phaseRunning
	phaseDone
	phaseFailed
)

type status int

const (
	stPending status = iota
	stRunning
	stDone
	stSkipped
	stFailed
)

type stepRow struct {
	name   string
	status status
	start  time.Time
	dur    time.Duration
	// the byte-heavy part of a step, for its progress bar
	what        string
	done, total int64
	rate        float64
	err         string
}

type installState struct {
	phase        phase
	plan         *PlanResult
	planErr      error
	planAt       int // scroll offset of the dry-run plan
	steps        []*stepRow
	log          []string
	began        time.Time
	now          time.Time // the latest time an event or tick told
	cancel       context.CancelFunc
	confirmAbort bool
	aborting     bool
	err          error
}

// maxLog bounds the log pane's memory; the full log is in /var/log/perch.
const maxLog = 500

type tickMsg time.Time

func (m *Model) installing() bool {
	return m.scr == scrInstall && !m.opt.DryRun && (m.inst.phase == phasePlanning || m.inst.phase == phaseRunning)
}

// startInstall leaves the review screen: a dry run plans; an install saves
// the config first (a node should keep the file it was installed from),
// plans, then runs.
func (m *Model) startInstall() tea.Cmd {
	m.inst = installState{phase: phasePlanning}
	m.scr = scrInstall
	plan := planCmd(m.opt.Context, m.opt.Backend, m.config())
	if m.opt.DryRun {
		return plan
	}
	return m.save(plan)
}

func (m *Model) updateInstall(msg tea.Msg) tea.Cmd {
	in := &m.inst
	switch msg := msg.(type) {
	case planMsg:
		in.plan, in.planErr = msg.res, msg.err
		m.res.Plan, m.res.PlanErr = msg.res, msg.err
		switch {
		case m.opt.DryRun:
			in.phase = phasePlanned
			return nil
		case msg.err != nil:
			in.phase, in.err = phaseFailed, msg.err
			return nil
		case in.aborting:
			in.phase, in.err = phaseFailed, errors.New("aborted before the install started; nothing was changed")
			return nil
		}
		for _, s := range stepsOf(msg.res.Plan) {
			in.steps = append(in.steps, &stepRow{name: s})
		}
		in.phase = phaseRunning
		m.res.Started = true
		return tea.Batch(installCmd(m.opt.Context, m.opt.Backend, m.config()), m.tick())
	case streamStarted:
		in.cancel = msg.cancel
		if in.aborting {
			return tea.Batch(cancelCmd(msg.cancel), next(msg.ch))
		}
		return next(msg.ch)
	case eventMsg:
		m.event(engine.Event(msg))
	case installDoneMsg:
		in.cancel, in.confirmAbort = nil, false
		if msg.err != nil {
			in.phase, in.err = phaseFailed, msg.err
			m.res.InstallErr = msg.err
		} else {
			in.phase = phaseDone
			m.res.Installed = true
		}
	case tickMsg:
		if t := time.Time(msg); t.After(in.now) {
			in.now = t
		}
		if in.phase == phaseRunning {
			return m.tick()
		}
	}
	return nil
}

func (m *Model) tick() tea.Cmd {
	if m.opt.Tick <= 0 {
		return nil
	}
	return tea.Tick(m.opt.Tick, func(t time.Time) tea.Msg { return tickMsg(t) })
}

func (m *Model) stepFor(name string) *stepRow {
	for _, s := range m.inst.steps {
		if s.name == name {
			return s
		}
	}
	r := &stepRow{name: name}
	// steps outside the plan (bundle-verify runs before the first step)
	// go before the first step not started yet
	at := len(m.inst.steps)
	for i, s := range m.inst.steps {
		if s.status == stPending {
			at = i
			break
		}
	}
	m.inst.steps = append(m.inst.steps[:at], append([]*stepRow{r}, m.inst.steps[at:]...)...)
	return r
}

func (m *Model) logf(format string, args ...any) {
	m.inst.log = append(m.inst.log, fmt.Sprintf(format, args...))
	if len(m.inst.log) > maxLog {
		m.inst.log = m.inst.log[len(m.inst.log)-maxLog:]
	}
}

func (m *Model) event(e engine.Event) {
	in := &m.inst
	if e.Time.After(in.now) {
		in.now = e.Time
	}
	if in.began.IsZero() {
		in.began = e.Time
	}
	switch e.Type {
	case engine.RunStarted:
		// work reported before the run (verifying the bundle) is over
		for _, s := range in.steps {
			if s.status == stRunning {
				s.status, s.dur = stDone, e.Time.Sub(s.start)
			}
		}
		m.logf("%s", e.Message)
	case engine.StepStarted:
		r := m.stepFor(e.Step)
		r.status, r.start = stRunning, e.Time
	case engine.Progress:
		r := m.stepFor(e.Step)
		if r.status == stPending {
			r.status, r.start = stRunning, e.Time
		}
		r.what, r.done, r.total, r.rate = e.Message, e.Bytes, e.Total, e.Rate
	case engine.Log:
		m.logf("[%s] %s", e.Step, e.Message)
	case engine.StepDone:
		r := m.stepFor(e.Step)
		r.status, r.dur = stDone, time.Duration(e.Duration*float64(time.Second))
	case engine.StepSkipped:
		m.stepFor(e.Step).status = stSkipped
	case engine.StepFailed:
		r := m.stepFor(e.Step)
		r.status, r.err, r.dur = stFailed, e.Error, time.Duration(e.Duration*float64(time.Second))
		m.logf("[%s] FAILED: %s", e.Step, e.Error)
	case engine.RunDone, engine.RunFailed:
		m.logf("%s", e.Message)
	}
}

func (m *Model) keyInstall(k tea.KeyMsg) tea.Cmd {
	in := &m.inst
	if in.confirmAbort {
		switch k.String() {
		case "y", "Y":
			in.confirmAbort, in.aborting = false, true
			m.logf("aborting: stopping the current step...")
			return cancelCmd(in.cancel)
		case "n", "N", "esc", "enter":
			in.confirmAbort = false
		}
		return nil
	}
	switch in.phase {
	case phasePlanned:
		lines := len(m.planLines())
		room := m.bodyHeight() - 2
		switch k.String() {
		case "up":
			in.planAt = max(in.planAt-1, 0)
		case "down":
			in.planAt = min(in.planAt+1, max(lines-room, 0))
		case "pgup":
			in.planAt = max(in.planAt-room, 0)
		case "pgdown":
			in.planAt = min(in.planAt+room, max(lines-room, 0))
		case "enter":
			return m.goTo(scrDone)
		case "esc":
			return m.goTo(scrReview)
		}
	case phaseDone:
		if k.String() == "enter" {
			return m.goTo(scrDone)
		}
	case phaseFailed:
		switch k.String() {
		case "esc":
			m.inst = installState{}
			return m.goTo(scrReview)
		case "enter", "q":
			return tea.Quit
		}
	}
	return nil
}

func (m *Model) installFooter() string {
	switch m.inst.phase {
	case phasePlanned:
		return "up/down/pgup/pgdn: scroll  enter: continue  esc: back to review"
	case phaseDone:
		return "enter: continue"
	case phaseFailed:
		return "esc: back to review (a new run resumes)  enter/q: exit"
	}
	if m.inst.aborting {
		return "aborting: waiting for the current step to stop"
	}
	return "ctrl+c: abort"
}

// planLines is the plan as `perch plan` prints it, wrapped to the screen.
func (m *Model) planLines() []string {
	in := &m.inst
	var out []string
	if in.planErr != nil {
		for _, l := range wrap("! The plan failed: "+in.planErr.Error(), m.w-2) {
			out = append(out, styleErr.Render(l))
		}
		out = append(out, "")
	}
	if in.plan == nil {
		return out
	}
	for _, l := range strings.Split(strings.TrimSuffix(in.plan.Text(in.planErr), "\n"), "\n") {
		indent := len(l) - len(strings.TrimLeft(l, " "))
		ws := wrap(strings.TrimLeft(l, " "), m.w-indent-4)
		for i, w := range ws {
			pad := indent
			if i > 0 {
				pad += 4
			}
			out = append(out, strings.Repeat(" ", pad)+w)
		}
	}
	return out
}

func (m *Model) viewInstall() []string {
	in := &m.inst
	if in.phase == phasePlanning {
		return []string{"Planning: asking every step what it would change..."}
	}
	if m.opt.DryRun {
		head := "Dry run, nothing was changed. What the install would change:"
		lines := m.planLines()
		room := m.bodyHeight() - 2
		in.planAt = min(in.planAt, max(len(lines)-room, 0))
		if len(lines) > room {
			head = fmt.Sprintf("Dry run, nothing was changed. The plan, lines %d-%d of %d:", in.planAt+1, in.planAt+room, len(lines))
			lines = lines[in.planAt : in.planAt+room]
		}
		return append([]string{head, ""}, lines...)
	}
	out := []string{m.installHead(), ""}
	if in.phase == phaseFailed && len(in.steps) == 0 {
		return append(out, m.indented(styleErr.Render("! "+in.err.Error()), 0)...)
	}
	// steps, with the running one in sight, then the log
	var rows []string
	focus := 0
	for _, s := range in.steps {
		if s.status == stRunning || s.status == stFailed {
			focus = len(rows)
		}
		rows = append(rows, m.stepLine(s))
		if s.status == stRunning && s.total > 0 {
			pct := float64(s.done) / float64(s.total)
			line := fmt.Sprintf("       %s %3.0f%%  %s / %s", barView(pct, m.w-50), pct*100, engine.Bytes(s.done), engine.Bytes(s.total))
			if s.rate > 0 {
				line += "  " + engine.Bytes(int64(s.rate)) + "/s"
			}
			rows = append(rows, line)
		}
	}
	logRoom := 4
	stepRoom := m.bodyHeight() - len(out) - 1 - logRoom
	if len(rows) < stepRoom {
		logRoom += stepRoom - len(rows)
		stepRoom = len(rows)
	}
	first := 0
	if focus >= stepRoom {
		first = min(focus-stepRoom/2, len(rows)-stepRoom)
	}
	out = append(out, rows[first:first+stepRoom]...)
	out = append(out, styleTitle.Render("Log"))
	var log []string
	for _, l := range in.log {
		log = append(log, m.indented(l, 2)...)
	}
	if in.phase == phaseFailed && in.err != nil {
		log = append(log, m.indented(styleErr.Render("! "+in.err.Error()), 2)...)
	}
	if len(log) > logRoom {
		log = log[len(log)-logRoom:]
	}
	return append(out, log...)
}

func (m *Model) installHead() string {
	in := &m.inst
	done := 0
	for _, s := range in.steps {
		if s.status == stDone || s.status == stSkipped {
			done++
		}
	}
	el := ""
	if !in.began.IsZero() {
		el = ", " + elapsed(in.now.Sub(in.began))
	}
	switch in.phase {
	case phaseDone:
		return styleOK.Render(fmt.Sprintf("Install complete: %d steps%s. Press enter.", len(in.steps), el))
	case phaseFailed:
		return styleErr.Render(fmt.Sprintf("Install failed after %d of %d steps%s.", done, len(in.steps), el))
	}
	return fmt.Sprintf("Installing: %d of %d steps done%s", done, len(in.steps), el)
}

func (m *Model) stepLine(s *stepRow) string {
	var tag, state string
	switch s.status {
	case stPending:
		tag, state = "[  ]", "pending"
	case stRunning:
		tag, state = "[..]", "running "+elapsed(m.inst.now.Sub(s.start))
	case stDone:
		tag, state = styleOK.Render("[ok]"), "done    "+elapsed(s.dur)
	case stSkipped:
		tag, state = styleOK.Render("[ok]"), "up to date"
	case stFailed:
		tag, state = styleErr.Render("[!!]"), "FAILED  "+elapsed(s.dur)
	}
	line := "  " + tag + " " + padRight(s.name, 18) + state
	if s.status == stRunning && s.what != "" {
		line += "  " + styleDim.Render(s.what)
	}
	if s.status == stFailed && s.err != "" {
		line += "  " + styleErr.Render(s.err)
	}
	return line
}

func elapsed(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return d.Round(time.Minute).String()
}

// ---- Done ----

func (m *Model) keyDone(k tea.KeyMsg) tea.Cmd {
	switch k.String() {
	case "enter", "q", "esc":
		return tea.Quit
	}
	return nil
}

// Where the appliance serves what people open: the gateway's HLS port and
// Grafana's Service port (Appliance.ServiceType exposes both on the node
// through ServiceLB), and the registry's.
const (
	grafanaURL     = "http://%s:3000 (user admin, password in " + apps.GrafanaPasswordPath + ")"
	hlsURL         = "http://%s:8888/CAMERA/index.m3u8"
	registryURL    = "https://%s:%d"
	grafanaForward = "kubectl -n monitoring port-forward svc/perch-monitoring-grafana 3000, then http://localhost:3000"
	hlsForward     = "kubectl -n perch port-forward svc/perch-analytics-gateway 8888, then http://localhost:8888/CAMERA/index.m3u8"
)

func (m *Model) rerun(extra string) string {
	s := "perch install --config " + m.saved
	if m.opt.Root != "" && m.opt.Root != "/" {
		s += " --root " + m.opt.Root
	}
	if m.opt.Init != "" && m.opt.Init != "auto" {
		s += " --init " + m.opt.Init
	}
	return s + extra
}

func (m *Model) viewDone() []string {
	c := m.config()
	var out []string
	saved := m.saved
	if saved == "" {
		saved = "not saved: go back to the review screen to save it"
	}
	if m.opt.DryRun {
		out = append(out, "Dry run: nothing was installed.", "")
		out = append(out, m.kv("Config", saved)...)
		if m.saved != "" {
			out = append(out, "", "Install it (shows this plan and asks first):")
			out = append(out, m.command(m.rerun(""), 2)...)
			out = append(out, "Install it unattended:")
			out = append(out, m.command(m.rerun(" --yes"), 2)...)
		}
		return out
	}
	host := c.Node.NodeIP
	if host == "" && m.hw != nil {
		host = m.hw.DefaultIP
	}
	if host == "" {
		host = c.Node.Hostname
	}
	name := c.Node.Hostname
	if c.Node.Role == config.RoleAgent {
		out = append(out, fmt.Sprintf("Node %s joined %s as an agent.", name, c.Node.ServerURL))
		out = append(out, "Grafana, the streams and the registry are served by the servers.", "")
	} else {
		out = append(out, fmt.Sprintf("Perch is installed on %s.", name), "", styleTitle.Render("Open"))
		// without ServiceLB the Services stay inside the cluster
		exposed := apps.Spec(&c).ServiceType() == "LoadBalancer"
		if c.Monitoring.Enabled && c.Monitoring.Grafana {
			if exposed {
				out = append(out, m.kv("Grafana", fmt.Sprintf(grafanaURL, host))...)
			} else {
				out = append(out, m.kv("Grafana", grafanaForward)...)
			}
		}
		if c.Pipeline.Enabled {
			if exposed {
				out = append(out, m.kv("HLS streams", fmt.Sprintf(hlsURL, host))...)
			} else {
				out = append(out, m.kv("HLS streams", hlsForward)...)
			}
		}
		if c.Registry.Enabled {
			out = append(out, m.kv("Registry", fmt.Sprintf(registryURL, host, c.Registry.Port))...)
		}
		out = append(out, m.kv("Kubeconfig", "/etc/perch/kubeconfig (kubectl --kubeconfig /etc/perch/kubeconfig get pods -A)")...)
		out = append(out, "")
	}
	out = append(out, m.kv("Config", saved)...)
	if m.saved != "" {
		out = append(out, "", "Run it again unattended (changes only what differs):")
		out = append(out, m.command(m.rerun(" --yes"), 2)...)
	}
	return out
}

// stepsOf lists a plan's steps in order, for the install screen's rows.
func stepsOf(p engine.Plan) []string {
	var out []string
	for _, s := range p.Steps {
		out = append(out, s.Step)
	}
	return out
}
