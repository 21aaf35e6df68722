package wizard

import (
	"fmt"
	"strings"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"

	"github.com/perchedge/perch/installer/config"
)

func (m *Model) focusReview() {
	if m.reviewFocus == 0 {
		m.savePath.Focus()
	} else {
		m.savePath.Blur()
	}
}

// reviewMask stands for the join token on the screen. YAML needs no quotes
// around it, so the line reads as the file's does.
const reviewMask = "(hidden, saved in the file)"

// reviewYAML is the file as it will be saved, and the text for the screen:
// the same config with its secrets masked, rendered the same way. Masking
// the rendered text instead misses every value YAML quotes or escapes.
func (m *Model) reviewYAML() (file, shown string, err error) {
	c := m.config()
	b, err := MarshalYAML(c)
	if err != nil {
		return "", "", err
	}
	masked := c
	if c.Node.Token != "" {
		masked.Node.Token = reviewMask
	}
	masked.Pipeline.Streams = nil
	for _, s := range c.Pipeline.Streams {
		s.URL = config.RedactURL(s.URL)
		masked.Pipeline.Streams = append(masked.Pipeline.Streams, s)
	}
	sb, err := MarshalYAML(masked)
	if err != nil {
		return "", "", err
	}
	return string(b), string(sb), nil
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
