package converge

import (
	"context"
	"strings"

	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/installer/host"
)

// ServiceStep installs and (re)starts a service. Services read their
// config only at start, so one is restarted exactly when what it read has
// changed: the digest of what the running one was started with is kept on
// disk at Stamp.
type ServiceStep struct {
	Host     *host.Host
	Init     host.Init
	StepName string
	Service  func() host.Service
	// Digest covers everything the service reads when it starts.
	Digest func() (string, error)
	Stamp  string
}

func (s *ServiceStep) Name() string { return s.StepName }

func (s *ServiceStep) Plan(ctx context.Context) ([]engine.Change, error) {
	name := s.Service().Name
	st, err := s.Init.Status(ctx, name)
	if err != nil {
		return nil, err
	}
	want, err := s.Digest()
	if err != nil {
		return nil, err
	}
	have, _ := s.Host.ReadFile(s.Stamp)
	fresh := strings.TrimSpace(string(have)) == want
	target := name + " (" + s.Init.Name() + ")"
	var cs []engine.Change
	switch {
	case !st.Installed:
		cs = append(cs,
			engine.Change{Action: engine.Create, Kind: engine.Service, Target: name, Detail: "init " + s.Init.Name()},
			engine.Change{Action: engine.Start, Kind: engine.Service, Target: target})
	case !fresh:
		cs = append(cs, engine.Change{Action: engine.Update, Kind: engine.Service, Target: name, Detail: "config changed"})
		if st.Running {
			cs = append(cs, engine.Change{Action: engine.Restart, Kind: engine.Service, Target: target, Detail: "to read the new config"})
		} else {
			cs = append(cs, engine.Change{Action: engine.Start, Kind: engine.Service, Target: target})
		}
	case !st.Running:
		cs = append(cs, engine.Change{Action: engine.Start, Kind: engine.Service, Target: target, Detail: "installed but not running"})
	}
	return cs, nil
}

func (s *ServiceStep) Apply(ctx context.Context, cs []engine.Change, r *engine.Reporter) error {
	svc := s.Service()
	if _, err := s.Init.Install(ctx, svc); err != nil {
		return err
	}
	restart := false
	for _, c := range cs {
		restart = restart || c.Action == engine.Restart
	}
	if restart {
		r.Logf("restarting %s", svc.Name)
		if err := s.Init.Restart(ctx, svc.Name); err != nil {
			return err
		}
	} else {
		r.Logf("starting %s", svc.Name)
		if err := s.Init.Start(ctx, svc.Name); err != nil {
			return err
		}
	}
	want, err := s.Digest()
	if err != nil {
		return err
	}
	_, err = s.Host.WriteFile(s.Stamp, []byte(want+"\n"), 0o644)
	return err
}
