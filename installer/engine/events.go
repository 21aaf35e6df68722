package engine

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
)

// EventType names what happened. The TUI and both log printers consume the
// same stream.
type EventType string

const (
	RunStarted  EventType = "run-started"
	StepStarted EventType = "step-started"
	Progress    EventType = "progress"
	Log         EventType = "log"
	StepDone    EventType = "step-done"
	StepSkipped EventType = "step-skipped" // nothing to change
	StepFailed  EventType = "step-failed"
	RunDone     EventType = "run-done"
	RunFailed   EventType = "run-failed"
)

// Event is one line of `--output json`.
type Event struct {
	Time     time.Time `json:"time"`
	Type     EventType `json:"event"`
	Step     string    `json:"step,omitempty"`
	Message  string    `json:"message,omitempty"`
	Changes  []Change  `json:"changes,omitempty"`
	Bytes    int64     `json:"bytes,omitempty"`
	Total    int64     `json:"total,omitempty"`
	Rate     float64   `json:"bytesPerSecond,omitempty"`
	ETA      float64   `json:"etaSeconds,omitempty"`
	Duration float64   `json:"durationSeconds,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// Sink receives events; it must not block for long.
type Sink func(Event)

// Reporter is how a step tells the outside what it is doing.
type Reporter struct {
	step  string
	sink  Sink
	now   func() time.Time
	start time.Time
	last  time.Time
	what  string
}

// NewReporter reports for work outside a Run, such as a bundle build, so
// that it prints and streams the same way an install step does.
func NewReporter(step string, sink Sink) *Reporter {
	return &Reporter{step: step, sink: sink, now: time.Now}
}

// Logf reports a line for the log pane and the plain log.
func (r *Reporter) Logf(format string, args ...any) {
	r.sink(Event{Time: r.now(), Type: Log, Step: r.step, Message: fmt.Sprintf(format, args...)})
}

// Progress reports bytes done of total for long transfers, at most a few
// times a second and always at the end.
func (r *Reporter) Progress(what string, done, total int64) {
	now := r.now()
	if r.start.IsZero() || what != r.what {
		r.start, r.what, r.last = now, what, time.Time{}
	}
	if done < total && now.Sub(r.last) < 250*time.Millisecond {
		return
	}
	r.last = now
	ev := Event{Time: now, Type: Progress, Step: r.step, Message: what, Bytes: done, Total: total}
	if ev.Rate = RateOf(done, now.Sub(r.start)); ev.Rate > 0 && total > done {
		ev.ETA = float64(total-done) / ev.Rate
	}
	r.sink(ev)
}

// RateOf is bytes per second over elapsed, or 0 (no rate to show) before
// a second has passed: over a moment, a copy from cache or a burst into a
// buffer reads as TiB/s.
func RateOf(bytes int64, elapsed time.Duration) float64 {
	if elapsed < time.Second {
		return 0
	}
	return float64(bytes) / elapsed.Seconds()
}

// TextPrinter writes events as plain log lines, for non-TTY output and
// the default of unattended installs.
func TextPrinter(w io.Writer) Sink {
	var mu sync.Mutex
	return func(e Event) {
		mu.Lock()
		defer mu.Unlock()
		ts := e.Time.Format("15:04:05")
		switch e.Type {
		case RunStarted:
			fmt.Fprintf(w, "%s %s\n", ts, e.Message)
		case StepStarted:
			fmt.Fprintf(w, "%s [%s] %s\n", ts, e.Step, e.Message)
		case Progress:
			line := fmt.Sprintf("%s [%s] %s %s / %s", ts, e.Step, e.Message, Bytes(e.Bytes), Bytes(e.Total))
			if e.Rate > 0 {
				line += fmt.Sprintf(" (%s/s", Bytes(int64(e.Rate)))
				if e.ETA > 0 {
					line += fmt.Sprintf(", ETA %s", (time.Duration(e.ETA) * time.Second).Round(time.Second))
				}
				line += ")"
			}
			fmt.Fprintln(w, line)
		case Log:
			fmt.Fprintf(w, "%s [%s] %s\n", ts, e.Step, e.Message)
		case StepDone:
			fmt.Fprintf(w, "%s [%s] done in %s\n", ts, e.Step, seconds(e.Duration))
		case StepSkipped:
			warned := false
			for _, c := range e.Changes {
				if c.Action == Warn {
					fmt.Fprintf(w, "%s [%s] warning: %s\n", ts, e.Step, c.Detail)
					warned = true
				}
			}
			if !warned {
				fmt.Fprintf(w, "%s [%s] up to date\n", ts, e.Step)
			}
		case StepFailed:
			fmt.Fprintf(w, "%s [%s] FAILED after %s: %s\n", ts, e.Step, seconds(e.Duration), e.Error)
		case RunDone, RunFailed:
			fmt.Fprintf(w, "%s %s\n", ts, e.Message)
		}
	}
}

// JSONPrinter writes one JSON object per event (`--output json`).
func JSONPrinter(w io.Writer) Sink {
	var mu sync.Mutex
	enc := json.NewEncoder(w)
	return func(e Event) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(e)
	}
}

func seconds(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(time.Millisecond).String()
}

// Bytes formats a size the way people read disk sizes.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
