package wizard

import (
	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"
)

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
