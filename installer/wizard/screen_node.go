package wizard

import (
	"crypto/rand"
	"encoding/hex"
	"strings"

	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"
)

func (m *Model) joining() bool { return m.role == roleJoinServer || m.role == roleJoinAgent }

func (m *Model) nodeRows() int { return len(m.nodeInputs()) }

// nodeInputs are the node screen's rows; nil is the node IP chooser.
func (m *Model) nodeInputs() []*textinput.Model {
	switch {
	case m.joining():
		return []*textinput.Model{&m.hostname, nil, &m.serverURL, &m.token}
	case m.role == roleFirstServer:
		return []*textinput.Model{&m.hostname, nil, &m.token}
	}
	return []*textinput.Model{&m.hostname, nil}
}

// clusterTokenBytes is the randomness of a token the wizard makes: 24
// bytes, 48 hex characters, as openssl rand -hex 24 would.
const clusterTokenBytes = 24

// prepareToken makes a first server's token when it has none, so that a
// cluster never starts with a weak one typed in a hurry, and forgets it
// again when the node joins instead: a joining node takes the first
// server's.
func (m *Model) prepareToken() {
	switch {
	case m.role == roleFirstServer && strings.TrimSpace(m.token.Value()) == "":
		b := make([]byte, clusterTokenBytes)
		if _, err := rand.Read(b); err != nil {
			return // the field stays empty and validation asks for one
		}
		m.madeToken = hex.EncodeToString(b)
		m.token.SetValue(m.madeToken)
	case m.role != roleFirstServer && m.madeToken != "" && m.token.Value() == m.madeToken:
		m.token.SetValue("")
		m.madeToken = ""
	}
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
	if m.role == roleFirstServer {
		out = append(out, m.row(m.nodeFocus == 2, "Token", m.inputView(&m.token), m.fieldErrs("node.token"))...)
		out = append(out, "")
		help := "Every server and agent that joins needs this token; it also guards the registry's credentials. Save the config on the review screen to keep it (the file is readable by root only); after install it is in /var/lib/rancher/k3s/server/token."
		if m.madeToken != "" && m.token.Value() == m.madeToken {
			help = "Perch made this token (48 random hex digits); type over it to use your own. " + help
		}
		out = append(out, m.indented(help, 2)...)
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
