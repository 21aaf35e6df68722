package wizard

import (
	"math"
	"strings"

	"github.com/charmbracelet/bubbles/textinput"
)

// kv is an unfocused row whose value may be long: it wraps under itself.
func (m *Model) kv(label, value string) []string {
	vals := wrap(value, m.w-2-labelWidth)
	out := []string{"  " + padRight(label, labelWidth) + vals[0]}
	for _, v := range vals[1:] {
		out = append(out, strings.Repeat(" ", 2+labelWidth)+v)
	}
	return out
}

// inputView shows a field's value; an empty field out of focus shows
// nothing rather than its example, which looks like a value without colour.
func (m *Model) inputView(in *textinput.Model) string {
	if in.Value() == "" && !in.Focused() {
		return ""
	}
	return in.View()
}

// barView is an ASCII progress bar: serial consoles draw no block glyphs.
// (bubbles/progress would need harmonica, which go.sum does not pin.)
func barView(pct float64, w int) string {
	w = max(w, 10)
	fill := int(math.Round(math.Max(0, math.Min(1, pct)) * float64(w)))
	return "[" + styleOK.Render(strings.Repeat("#", fill)) + strings.Repeat("-", w-fill) + "]"
}
