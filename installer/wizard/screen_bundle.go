package wizard

import (
	"fmt"
	"path/filepath"
	"strings"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/perchedge/perch/installer/engine"
)

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

func listOrNone(items []string) string {
	if len(items) == 0 {
		return "none"
	}
	return fmt.Sprintf("%d: %s", len(items), strings.Join(items, ", "))
}
