package engine

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Options controls a run.
type Options struct {
	Store  Store
	Sink   Sink
	DryRun bool
	Now    func() time.Time
}

// StepError says which step failed; commands print it and exit 1.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return fmt.Sprintf("step %s: %v", e.Step, e.Err) }
func (e *StepError) Unwrap() error { return e.Err }

// MakePlan asks every step what it would change, touching nothing. A step
// whose plan fails stops planning: later steps depend on it. Steps and
// changes are never nil, so JSON shows empty lists, not null.
func MakePlan(ctx context.Context, steps []Step) (Plan, error) {
	p := Plan{Steps: []StepPlan{}}
	for _, s := range steps {
		cs, err := s.Plan(ctx)
		if err != nil {
			return p, &StepError{Step: s.Name(), Err: err}
		}
		if cs == nil {
			cs = []Change{}
		}
		p.Steps = append(p.Steps, StepPlan{Step: s.Name(), Changes: cs})
	}
	return p, nil
}

// Run converges the host: for each step, plan again (the previous steps
// changed the host), then apply only what differs. It holds the host lock,
// and writes the journal only when something changes, so a run on a
// converged node writes nothing at all.
func Run(ctx context.Context, steps []Step, o Options) (Summary, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	emit := o.Sink
	if emit == nil {
		emit = func(Event) {}
	}
	var total Summary
	if o.DryRun {
		p, err := MakePlan(ctx, steps)
		if err != nil {
			return total, err
		}
		return p.Summary(), nil
	}
	lock, err := AcquireLock(o.Store)
	if err != nil {
		return total, err
	}
	defer lock.Release()
	j, err := ReadJournal(o.Store)
	if err != nil {
		return total, err
	}
	begin := o.Now()
	msg := "install started"
	if j.Status == "running" || j.Status == "failed" {
		msg = fmt.Sprintf("resuming: the previous install stopped in step %s (%s)", j.Step, j.Status)
	}
	emit(Event{Time: begin, Type: RunStarted, Message: msg})
	dirty := false
	var applied Plan
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return total, fail(o, j, dirty, s.Name(), begin, err, emit)
		}
		start := o.Now()
		if dirty && j.Step != s.Name() {
			// once this run has changed something, the journal follows every
			// step, so a crash is reported where it happened
			j.Step = s.Name()
			if err := j.Save(o.Store); err != nil {
				return total, fail(o, j, dirty, s.Name(), start, err, emit)
			}
		}
		emit(Event{Time: start, Type: StepStarted, Step: s.Name(), Message: "checking"})
		cs, err := s.Plan(ctx)
		if err != nil {
			return total, fail(o, j, dirty, s.Name(), start, err, emit)
		}
		if !needsApply(cs) {
			emit(Event{Time: o.Now(), Type: StepSkipped, Step: s.Name(), Changes: cs})
			continue
		}
		if hostChanges(cs) {
			// Record intent before acting: a kill -9 during Apply still
			// leaves the journal knowing what may have been created.
			if !dirty && j.Status != "running" && j.Status != "failed" {
				j.Started = begin.UTC() // a resumed install keeps its start
			}
			dirty = true
			j.Status, j.Step, j.Error = "running", s.Name(), ""
			j.own(cs)
			if err := j.Save(o.Store); err != nil {
				return total, fail(o, j, dirty, s.Name(), start, err, emit)
			}
		}
		r := &Reporter{step: s.Name(), sink: emit, now: o.Now}
		if err := s.Apply(ctx, cs, r); err != nil {
			return total, fail(o, j, dirty, s.Name(), start, err, emit)
		}
		applied.Steps = append(applied.Steps, StepPlan{Step: s.Name(), Changes: cs})
		total = applied.Summary()
		emit(Event{Time: o.Now(), Type: StepDone, Step: s.Name(), Changes: cs, Duration: o.Now().Sub(start).Seconds()})
	}
	// An earlier run that failed or died is closed by this one even when
	// nothing was left to change (k3s may have come up on its own since).
	if dirty || j.Status == "running" || j.Status == "failed" {
		j.Status, j.Step, j.Error = "complete", "", ""
		if err := j.Save(o.Store); err != nil {
			return total, err
		}
	}
	done := "install complete: no changes, the node already matched the config"
	if total.Total() > 0 {
		done = fmt.Sprintf("install complete: %d created, %d updated, %d deleted, %d started, %d restarted",
			total.Create, total.Update, total.Delete, total.Start, total.Restart)
	}
	emit(Event{Time: o.Now(), Type: RunDone, Message: done, Duration: o.Now().Sub(begin).Seconds()})
	return total, nil
}

func fail(o Options, j *Journal, dirty bool, step string, start time.Time, err error, emit Sink) error {
	if errors.Is(err, context.Canceled) {
		err = fmt.Errorf("interrupted; run the same command again to resume")
	}
	emit(Event{Time: o.Now(), Type: StepFailed, Step: step, Error: err.Error(), Duration: o.Now().Sub(start).Seconds()})
	if dirty {
		j.Status, j.Step, j.Error = "failed", step, err.Error()
		_ = j.Save(o.Store)
	}
	emit(Event{Time: o.Now(), Type: RunFailed, Message: fmt.Sprintf("install failed in step %s; fix the cause and run it again: completed steps are not redone", step)})
	return &StepError{Step: step, Err: err}
}
