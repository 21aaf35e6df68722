// Package engine runs an install as small named steps. Each step compares
// what the config wants with what the host has and says what it would
// change (Plan) before it changes anything (Apply), so `perch plan`,
// `install --dry-run` and a re-run on a converged node are all the same
// code path doing nothing.
package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Action is what a change does. Only create, update, delete, start and
// restart change the host; wait and warn are shown but change nothing.
type Action string

const (
	Create  Action = "create"
	Update  Action = "update"
	Delete  Action = "delete"
	Start   Action = "start"
	Restart Action = "restart"
	Wait    Action = "wait"
	Warn    Action = "warn"
)

func (a Action) changesHost() bool {
	switch a {
	case Create, Update, Delete, Start, Restart:
		return true
	}
	return false
}

func (a Action) symbol() string {
	switch a {
	case Create:
		return "+"
	case Update:
		return "~"
	case Delete:
		return "-"
	case Start, Restart:
		return ">"
	case Wait:
		return "?"
	}
	return "!"
}

// Kind is what a change acts on; uninstall undoes created files, links and
// services by kind.
type Kind string

const (
	File    Kind = "file"
	Link    Kind = "link"
	Service Kind = "service"
	Node    Kind = "node"
	Check   Kind = "check"
	// Bundle is an installed bundle: data that uninstall keeps until --purge.
	Bundle Kind = "bundle"
	// Images are images loaded into the appliance registry: data too.
	Images Kind = "images"
	// App is a HelmChart object in the cluster.
	App Kind = "app"
	// Job is a Kubernetes Job Perch runs.
	Job Kind = "job"
)

// Change is one difference between the config and the host.
type Change struct {
	Action Action `json:"action"`
	Kind   Kind   `json:"kind"`
	Target string `json:"target"`
	Detail string `json:"detail,omitempty"`
}

func (c Change) String() string {
	s := fmt.Sprintf("%s %s %s %s", c.Action.symbol(), c.Action, c.Kind, c.Target)
	if c.Kind == Check || c.Kind == Node {
		verb := string(c.Action)
		if c.Action == Wait {
			verb = "wait for"
		}
		s = fmt.Sprintf("%s %s %s", c.Action.symbol(), verb, c.Target)
	}
	if c.Detail != "" {
		s += " (" + c.Detail + ")"
	}
	return s
}

// Step is one named unit of an install.
type Step interface {
	Name() string
	// Plan reports what Apply would change, touching nothing. No changes
	// means the host already matches the config.
	Plan(ctx context.Context) ([]Change, error)
	// Apply makes the planned changes. It is called again after an
	// interruption, so it must converge from any partial state.
	Apply(ctx context.Context, changes []Change, r *Reporter) error
}

// StepPlan is the plan of one step.
type StepPlan struct {
	Step    string   `json:"step"`
	Changes []Change `json:"changes"`
}

// Plan is what an install would do.
type Plan struct {
	Steps []StepPlan `json:"steps"`
}

// Summary counts host changes by action.
type Summary struct {
	Create  int `json:"create"`
	Update  int `json:"update"`
	Delete  int `json:"delete"`
	Start   int `json:"start"`
	Restart int `json:"restart"`
}

func (s Summary) Total() int { return s.Create + s.Update + s.Delete + s.Start + s.Restart }

func (p Plan) Summary() Summary {
	var s Summary
	for _, sp := range p.Steps {
		for _, c := range sp.Changes {
			switch c.Action {
			case Create:
				s.Create++
			case Update:
				s.Update++
			case Delete:
				s.Delete++
			case Start:
				s.Start++
			case Restart:
				s.Restart++
			}
		}
	}
	return s
}

// Text renders a complete plan for people; golden files pin its shape.
func (p Plan) Text() string {
	var b strings.Builder
	p.writeSteps(&b)
	s := p.Summary()
	if s.Total() == 0 {
		b.WriteString("\nNo changes: this node matches the config.\n")
	} else {
		fmt.Fprintf(&b, "\nPlan: %d to create, %d to update, %d to delete, %d to start, %d to restart.\n",
			s.Create, s.Update, s.Delete, s.Start, s.Restart)
	}
	return b.String()
}

// FailedText renders a plan that stopped at err: the steps planned before
// it and no summary, since one would count only those (or say "no
// changes" of a node nobody could look at).
func (p Plan) FailedText(err error) string {
	var b strings.Builder
	p.writeSteps(&b)
	var se *StepError
	if errors.As(err, &se) {
		fmt.Fprintf(&b, "\nPlan failed in step %s: the steps after it were not planned; nothing was changed.\n", se.Step)
	} else {
		b.WriteString("\nPlan failed before its first step; nothing was changed.\n")
	}
	return b.String()
}

func (p Plan) writeSteps(b *strings.Builder) {
	for _, sp := range p.Steps {
		if len(sp.Changes) == 0 {
			fmt.Fprintf(b, "%s: up to date\n", sp.Step)
			continue
		}
		fmt.Fprintf(b, "%s:\n", sp.Step)
		for _, c := range sp.Changes {
			fmt.Fprintf(b, "  %s\n", c)
		}
	}
}

func hostChanges(cs []Change) bool {
	for _, c := range cs {
		if c.Action.changesHost() {
			return true
		}
	}
	return false
}

func needsApply(cs []Change) bool {
	for _, c := range cs {
		if c.Action != Warn {
			return true
		}
	}
	return false
}
