package wizard

import (
	"fmt"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/perchedge/perch/installer/config"
)

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
		out = append(out, m.row(m.pipeFocus == i && m.editing < 0, name, config.RedactURL(c.URL), m.fieldErrs(p))...)
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
