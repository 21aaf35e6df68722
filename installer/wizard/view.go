package wizard

import (
	"fmt"
	"strings"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
)

// Styles carry meaning in words and symbols too ("!", "[ok]", "> "), so a
// serial console or NO_COLOR loses nothing but colour. Only ASCII is drawn.
var (
	styleTitle = lipgloss.NewStyle().Bold(true)
	styleFocus = lipgloss.NewStyle().Bold(true)
	styleErr   = lipgloss.NewStyle().Foreground(lipgloss.Color("1"))
	styleOK    = lipgloss.NewStyle().Foreground(lipgloss.Color("2"))
	styleWarn  = lipgloss.NewStyle().Foreground(lipgloss.Color("3"))
	styleDim   = lipgloss.NewStyle().Faint(true)
)

// labelWidth lines values up under each other.
const labelWidth = 14

func (m *Model) View() string {
	if m.w == 0 {
		return "" // no size yet: the first WindowSizeMsg comes right away
	}
	if m.tooSmall() {
		msg := fmt.Sprintf("The terminal is %dx%d. Enlarge the terminal to at least %dx%d for the Perch installer.",
			m.w, m.h, MinWidth, MinHeight)
		lines := wrap(msg, max(m.w, 10))
		if len(lines) > m.h {
			lines = lines[:max(m.h, 1)]
		}
		return clip(lines, m.w)
	}
	title := fmt.Sprintf("Perch installer  %d/%d %s", int(m.scr)+1, len(screenNames), m.screenName())
	if m.opt.DryRun {
		title += "  (dry run)"
	}
	body := m.body()
	room := m.h - 3
	if len(body) > room {
		body = append(body[:room-1], styleDim.Render("  ..."))
	}
	for len(body) < room {
		body = append(body, "")
	}
	lines := append([]string{styleTitle.Render(title), ""}, body...)
	lines = append(lines, styleDim.Render(m.footer()))
	return clip(lines, m.w)
}

func (m *Model) screenName() string {
	if m.scr == scrInstall && m.opt.DryRun {
		return "Plan"
	}
	return screenNames[m.scr]
}

// bodyHeight is the room between the title and the footer.
func (m *Model) bodyHeight() int { return m.h - 3 }

func (m *Model) body() []string {
	switch m.scr {
	case scrWelcome:
		return m.viewWelcome()
	case scrRole:
		return m.viewRole()
	case scrNode:
		return m.viewNode()
	case scrBundle:
		return m.viewBundle()
	case scrPipeline:
		return m.viewPipeline()
	case scrMonitoring:
		return m.viewMonitoring()
	case scrReview:
		return m.viewReview()
	case scrInstall:
		return m.viewInstall()
	}
	return m.viewDone()
}

func (m *Model) footer() string {
	if m.inst.confirmAbort {
		return "Abort the install? y: abort (run perch install again to resume)  n: go on"
	}
	nav := "tab/down: next field  shift+tab/up: previous  enter: continue  esc: back  ctrl+c: quit"
	switch m.scr {
	case scrWelcome:
		return "up/down: scroll  enter: start  ctrl+c: quit"
	case scrRole:
		return "up/down: choose  enter: continue  esc: back  ctrl+c: quit"
	case scrNode:
		return "up/down: field  left/right: choose IP  enter: next/continue  esc: back"
	case scrBundle:
		if m.verify.running {
			return "esc: stop verifying"
		}
		return "up/down: choose  enter: verify, then continue  esc: back  ctrl+c: quit"
	case scrPipeline:
		if m.editing >= 0 {
			return "tab/up/down: field  enter: next field/done  esc: done editing"
		}
		return "up/down: move  enter: edit/add/continue  a: add  d: delete  esc: back"
	case scrMonitoring:
		return "up/down: field  space: toggle  enter: next/continue  esc: back"
	case scrReview:
		return "tab: next  up/down/pgup/pgdn: scroll  enter: activate  esc: back"
	case scrInstall:
		return m.installFooter()
	case scrDone:
		return "enter/q: exit"
	}
	return nav
}

// clip cuts every line to the terminal width, so nothing wraps and moves
// the rest of the screen down.
func clip(lines []string, w int) string {
	for i, l := range lines {
		if ansi.StringWidth(l) > w {
			lines[i] = ansi.Truncate(l, w, "")
		}
		lines[i] = strings.TrimRight(lines[i], " ")
	}
	return strings.Join(lines, "\n")
}

// wrap breaks text at spaces to width, and words longer than a line
// anywhere. Only spaces: a flag such as --init must not lose its dashes
// to a line break.
func wrap(s string, width int) []string {
	if width < 1 {
		width = 1
	}
	var out []string
	line := ""
	for _, word := range strings.Split(s, " ") {
		for ansi.StringWidth(word) > width {
			if line != "" {
				out = append(out, line)
				line = ""
			}
			out = append(out, ansi.Cut(word, 0, width))
			word = ansi.Cut(word, width, ansi.StringWidth(word))
		}
		switch {
		case line == "":
			line = word
		case ansi.StringWidth(line)+1+ansi.StringWidth(word) <= width:
			line += " " + word
		default:
			out = append(out, line)
			line = word
		}
	}
	return append(out, line)
}

// command shows a shell command to copy: broken at spaces with a
// backslash, so every line pastes as one command.
func (m *Model) command(cmd string, indent int) []string {
	lines := wrap(cmd, m.w-indent-2)
	pad := strings.Repeat(" ", indent)
	for i := range lines {
		if i < len(lines)-1 {
			lines[i] += " \\"
		}
		if i > 0 {
			lines[i] = "  " + lines[i]
		}
		lines[i] = pad + lines[i]
	}
	return lines
}

// indented wraps s to the screen with every line starting at indent.
func (m *Model) indented(s string, indent int) []string {
	lines := wrap(s, m.w-indent)
	pad := strings.Repeat(" ", indent)
	for i := range lines {
		lines[i] = pad + lines[i]
	}
	return lines
}

// row draws one field: its label, value, and the validator's words under it.
func (m *Model) row(focused bool, label, value string, errs []string) []string {
	marker := "  "
	if focused {
		marker = "> "
		label = styleFocus.Render(padRight(label, labelWidth))
	} else {
		label = padRight(label, labelWidth)
	}
	out := []string{marker + label + value}
	for _, e := range errs {
		for _, l := range m.indented("! "+e, 2+labelWidth) {
			out = append(out, styleErr.Render(l))
		}
	}
	return out
}

func padRight(s string, n int) string {
	if w := ansi.StringWidth(s); w < n {
		return s + strings.Repeat(" ", n-w)
	}
	return s + " "
}

func radio(on bool) string {
	if on {
		return "(*) "
	}
	return "( ) "
}

func checkbox(on bool) string {
	if on {
		return "[x] on"
	}
	return "[ ] off"
}
