package wizard

import (
	"fmt"
	"strings"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/perchedge/perch/installer/preflight"
)

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
