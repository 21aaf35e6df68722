package wizard

import (
	"context"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/engine"
)

// Long work (bundle verification, the install) reports many times before
// it ends. It runs in a goroutine that a tea.Cmd starts, and writes its
// messages to a channel; the model reads them one at a time, each read a
// Cmd of its own, so Update only ever sees messages.

// streamMsg is one message read from work in progress.
type streamMsg struct {
	ch  <-chan tea.Msg
	msg tea.Msg
}

// streamStarted hands the model the channel to read, and the way to stop
// the work.
type streamStarted struct {
	ch     <-chan tea.Msg
	cancel context.CancelFunc
	id     int
}

// next reads the following message; a closed channel ends the stream.
func next(ch <-chan tea.Msg) tea.Cmd {
	return func() tea.Msg {
		msg, ok := <-ch
		if !ok {
			return nil
		}
		return streamMsg{ch, msg}
	}
}

func startStream(ctx context.Context, id int, work func(ctx context.Context, ch chan<- tea.Msg)) tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithCancel(ctx)
		// roomy, so the engine (whose sink must not block for long) runs
		// ahead of a slow terminal
		ch := make(chan tea.Msg, 256)
		go func() {
			defer close(ch)
			defer cancel()
			work(ctx, ch)
		}()
		return streamStarted{ch: ch, cancel: cancel, id: id}
	}
}

type (
	verifyProgressMsg struct {
		id          int
		done, total int64
	}
	verifyDoneMsg struct {
		id   int
		info *BundleInfo
		err  error
	}
	eventMsg       engine.Event
	installDoneMsg struct{ err error }
	planMsg        struct {
		res *PlanResult
		err error
	}
)

func verifyCmd(ctx context.Context, b Backend, id int, src, key string) tea.Cmd {
	return startStream(ctx, id, func(ctx context.Context, ch chan<- tea.Msg) {
		info, err := b.VerifyBundle(ctx, src, key, func(done, total int64) {
			select {
			case ch <- verifyProgressMsg{id, done, total}:
			default: // a bar update can be dropped; verification must not wait for it
			}
		})
		ch <- verifyDoneMsg{id, info, err}
	})
}

func planCmd(ctx context.Context, b Backend, cfg config.Appliance) tea.Cmd {
	return func() tea.Msg {
		res, err := b.Plan(ctx, cfg)
		return planMsg{res, err}
	}
}

// installID tells install streams from verify streams in streamStarted.
const installID = -1

func installCmd(ctx context.Context, b Backend, cfg config.Appliance) tea.Cmd {
	return startStream(ctx, installID, func(ctx context.Context, ch chan<- tea.Msg) {
		err := b.Install(ctx, cfg, func(e engine.Event) { ch <- eventMsg(e) })
		ch <- installDoneMsg{err}
	})
}

func cancelCmd(cancel context.CancelFunc) tea.Cmd {
	if cancel == nil {
		return nil
	}
	return func() tea.Msg {
		cancel()
		return nil
	}
}
