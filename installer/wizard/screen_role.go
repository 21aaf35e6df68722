package wizard

import tea "github.com/charmbracelet/bubbletea"

func (m *Model) keyRole(k tea.KeyMsg) tea.Cmd {
	if at, ok := moveFocus(k, m.role, len(roleNames)); ok {
		m.role = at
		return nil
	}
	switch k.String() {
	case "enter":
		m.prepareToken()
		return m.goTo(scrNode)
	case "esc":
		return m.back()
	}
	return nil
}

var roleHelp = []string{
	"k3s server and workloads on this machine. Add agents later by running the installer on them and choosing to join.",
	"Starts a cluster with embedded etcd that two more servers join (an odd count keeps a quorum), all with the cluster token set on the next screen.",
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
