package wizard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"
)

// Run shows the wizard on a terminal until the person leaves it, and says
// what it produced. Cancelling ctx stops it, and an install in progress.
func Run(ctx context.Context, in io.Reader, out io.Writer, o Options) (Result, error) {
	if os.Getenv("NO_COLOR") != "" {
		lipgloss.SetColorProfile(termenv.Ascii)
	}
	o.Context = ctx
	m := New(o)
	p := tea.NewProgram(m, tea.WithInput(in), tea.WithOutput(out), tea.WithAltScreen(), tea.WithContext(ctx))
	final, err := p.Run()
	if fm, ok := final.(*Model); ok {
		m = fm
	}
	res := m.Result()
	if errors.Is(err, tea.ErrProgramKilled) || errors.Is(err, tea.ErrInterrupted) {
		switch {
		case res.Started && !res.Installed && res.InstallErr == nil:
			res.InstallErr = errors.New("interrupted; run perch install again to resume: completed steps are not redone")
		case !res.Started:
			res.Cancelled = true
		}
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("installer screen: %w", err)
	}
	return res, nil
}
