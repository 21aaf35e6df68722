package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/perchedge/perch/installer/host"
)

// fileStep converges one file on a real host tree.
type fileStep struct {
	h    *host.Host
	path string
	data string
	err  error // returned by Apply, to simulate a failing step
}

func (s *fileStep) Name() string { return "write-" + filepath.Base(s.path) }

func (s *fileStep) Plan(context.Context) ([]Change, error) {
	have, err := s.h.ReadFile(s.path)
	switch {
	case err != nil:
		return []Change{{Action: Create, Kind: File, Target: s.path}}, nil
	case string(have) != s.data:
		return []Change{{Action: Update, Kind: File, Target: s.path}}, nil
	}
	return nil, nil
}

func (s *fileStep) Apply(_ context.Context, _ []Change, r *Reporter) error {
	if s.err != nil {
		return s.err
	}
	r.Progress("writing", int64(len(s.data)), int64(len(s.data)))
	_, err := s.h.WriteFile(s.path, []byte(s.data), 0o644)
	return err
}

func newHost(t *testing.T) *host.Host {
	h, err := host.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func collect(evs *[]Event) Sink { return func(e Event) { *evs = append(*evs, e) } }

func TestRunConvergesThenDoesNothing(t *testing.T) {
	h := newHost(t)
	steps := []Step{&fileStep{h: h, path: "/etc/a", data: "a"}, &fileStep{h: h, path: "/etc/b", data: "b"}}
	var evs []Event
	sum, err := Run(context.Background(), steps, Options{Store: h, Sink: collect(&evs)})
	if err != nil || sum.Create != 2 {
		t.Fatalf("first run: %+v, %v", sum, err)
	}
	j, _ := ReadJournal(h)
	if j.Status != "complete" || len(j.Owned) != 2 {
		t.Fatalf("journal after install: %+v", j)
	}
	jfi, _ := os.Stat(h.Path(JournalPath))

	evs = nil
	sum, err = Run(context.Background(), steps, Options{Store: h, Sink: collect(&evs)})
	if err != nil || sum.Total() != 0 {
		t.Fatalf("second run: %+v, %v", sum, err)
	}
	if fi, _ := os.Stat(h.Path(JournalPath)); !fi.ModTime().Equal(jfi.ModTime()) {
		t.Error("a run with nothing to do rewrote the journal")
	}
	skipped := 0
	for _, e := range evs {
		if e.Type == StepSkipped {
			skipped++
		}
	}
	if skipped != 2 || evs[len(evs)-1].Message != "install complete: no changes, the node already matched the config" {
		t.Errorf("events of a no-op run: %+v", evs)
	}
}

func TestFailedStepIsRecordedAndResumed(t *testing.T) {
	h := newHost(t)
	bad := &fileStep{h: h, path: "/etc/b", data: "b", err: errors.New("disk on fire")}
	steps := []Step{&fileStep{h: h, path: "/etc/a", data: "a"}, bad}
	var evs []Event
	_, err := Run(context.Background(), steps, Options{Store: h, Sink: collect(&evs)})
	var se *StepError
	if !errors.As(err, &se) || se.Step != "write-b" {
		t.Fatalf("want StepError for write-b, got %v", err)
	}
	j, _ := ReadJournal(h)
	if j.Status != "failed" || j.Step != "write-b" || !strings.Contains(j.Error, "disk on fire") {
		t.Fatalf("journal: %+v", j)
	}
	last := evs[len(evs)-2]
	if last.Type != StepFailed || last.Error != "disk on fire" {
		t.Errorf("failure event: %+v", last)
	}

	bad.err = nil
	evs = nil
	sum, err := Run(context.Background(), steps, Options{Store: h, Sink: collect(&evs)})
	if err != nil || sum.Create != 1 {
		t.Fatalf("resume: %+v %v", sum, err)
	}
	if !strings.HasPrefix(evs[0].Message, "resuming: the previous install stopped in step write-b") {
		t.Errorf("resume not announced: %q", evs[0].Message)
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	h := newHost(t)
	sum, err := Run(context.Background(), []Step{&fileStep{h: h, path: "/etc/a", data: "a"}}, Options{Store: h, DryRun: true})
	if err != nil || sum.Create != 1 {
		t.Fatalf("%+v %v", sum, err)
	}
	if entries, _ := os.ReadDir(h.Root()); len(entries) != 0 {
		t.Fatalf("dry run wrote %v", entries)
	}
}

func TestLockRefusesSecondRun(t *testing.T) {
	h := newHost(t)
	l, err := AcquireLock(h)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	_, err = Run(context.Background(), []Step{&fileStep{h: h, path: "/etc/a", data: "a"}}, Options{Store: h})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pid ") {
		t.Fatalf("want ErrLocked naming the holder, got %v", err)
	}
}

func TestProgressHasRateAndETA(t *testing.T) {
	var evs []Event
	now := time.Unix(0, 0)
	r := &Reporter{step: "copy", sink: collect(&evs), now: func() time.Time { return now }}
	r.Progress("k3s", 0, 100<<20)
	now = now.Add(time.Second)
	r.Progress("k3s", 25<<20, 100<<20)
	e := evs[len(evs)-1]
	if e.Rate != 25<<20 || e.ETA != 3 {
		t.Fatalf("rate %v ETA %v", e.Rate, e.ETA)
	}
	var buf bytes.Buffer
	TextPrinter(&buf)(e)
	if !strings.Contains(buf.String(), "25.0 MiB / 100.0 MiB (25.0 MiB/s, ETA 3s)") {
		t.Errorf("text: %q", buf.String())
	}
	buf.Reset()
	JSONPrinter(&buf)(e)
	var back map[string]any
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil || back["event"] != "progress" || back["etaSeconds"] != 3.0 {
		t.Errorf("json: %s", buf.String())
	}
}

// A converged host must be cheap to re-check: this is the engine's share of
// a no-op `perch install`.
func BenchmarkNoopRun(b *testing.B) {
	h, err := host.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	var steps []Step
	for _, n := range []string{"a", "b", "c", "d", "e", "f"} {
		steps = append(steps, &fileStep{h: h, path: "/etc/" + n, data: strings.Repeat(n, 4096)})
	}
	if _, err := Run(context.Background(), steps, Options{Store: h}); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if sum, err := Run(context.Background(), steps, Options{Store: h}); err != nil || sum.Total() != 0 {
			b.Fatal(sum, err)
		}
	}
}

// A failed install whose cause went away by itself (nothing left to change)
// must still close the journal, or every later run would claim to resume.
func TestNoopRunClosesAFailedJournal(t *testing.T) {
	h := newHost(t)
	bad := &fileStep{h: h, path: "/etc/a", data: "a", err: errors.New("not yet")}
	if _, err := Run(context.Background(), []Step{bad}, Options{Store: h}); err == nil {
		t.Fatal("want failure")
	}
	h.WriteFile("/etc/a", []byte("a"), 0o644) // the cause went away
	bad.err = nil
	if _, err := Run(context.Background(), []Step{bad}, Options{Store: h}); err != nil {
		t.Fatal(err)
	}
	if j, _ := ReadJournal(h); j.Status != "complete" {
		t.Fatalf("journal still %q after a successful run", j.Status)
	}
	var evs []Event
	Run(context.Background(), []Step{bad}, Options{Store: h, Sink: collect(&evs)})
	if evs[0].Message != "install started" {
		t.Errorf("third run: %q", evs[0].Message)
	}
}

// A rate over a moment is noise (a cached copy "runs" at TiB/s): none is
// shown until a second has passed.
func TestProgressNoRateAtFirst(t *testing.T) {
	var evs []Event
	now := time.Unix(0, 0)
	r := &Reporter{step: "copy", sink: collect(&evs), now: func() time.Time { return now }}
	r.Progress("k3s", 0, 4<<40)
	now = now.Add(time.Millisecond)
	r.Progress("k3s", 4<<40, 4<<40)
	var buf bytes.Buffer
	TextPrinter(&buf)(evs[len(evs)-1])
	if e := evs[len(evs)-1]; e.Rate != 0 || strings.Contains(buf.String(), "/s") {
		t.Fatalf("rate %v after 1ms: %q", e.Rate, buf.String())
	}
}
