package wizard

import tea "github.com/charmbracelet/bubbletea"

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
