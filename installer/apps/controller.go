package apps

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	helmclient "github.com/k3s-io/helm-controller/pkg/generated/clientset/versioned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/perchedge/perch/installer/converge"
	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/installer/host"
	"github.com/perchedge/perch/installer/node"
)

// ControllerService is the service every server runs `perch controller`
// as: the placer, led by one server at a time, and the mirror of the
// deployed values into the server's own manifest.
const ControllerService = "perch-controller"

// ControllerLease is the Lease in kube-system the servers' controllers
// elect their leader with.
const ControllerLease = "perch-controller"

const controllerStamp = engine.StateDir + "/controller-service.digest"

// Controller is the step that runs the controller on a server.
func (a *Apps) Controller() engine.Step {
	return &converge.ServiceStep{Host: a.n.Host, Init: a.n.Init, StepName: "controller-service",
		Service: a.controllerService, Digest: a.controllerDigest, Stamp: controllerStamp}
}

func (a *Apps) controllerService() host.Service {
	h := a.n.Host
	return host.Service{
		Name:        ControllerService,
		Description: "Perch controller: keeps the pipeline's workers on the cluster's Ready GPU nodes",
		Exec: []string{h.Path(node.PerchPath), "controller", "--root", h.Root(),
			"--data-dir", a.n.Cfg.K3s.DataDir, "--name", a.n.Name},
	}
}

// controllerDigest covers what the controller is started with: its
// arguments and its binary. Not the kubeconfig, whose certificates are
// new on every node: the same install must stamp the same digest.
func (a *Apps) controllerDigest() (string, error) {
	sum := sha256.New()
	svc, _ := json.Marshal(a.controllerService())
	sum.Write(svc)
	for _, p := range []string{node.PerchPath} {
		d, err := a.n.Host.Digest(p)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		sum.Write([]byte(d))
	}
	return "sha256:" + hex.EncodeToString(sum.Sum(nil)), nil
}

// ControllerOptions are what a server's controller runs with.
type ControllerOptions struct {
	Host     *host.Host
	DataDir  string // k3s.dataDir, where server/manifests is
	Identity string // this server's node name, in the Lease
	Kube     kubernetes.Interface
	Helm     helmclient.Interface
	// Every is how often the leader places and every server mirrors;
	// a node lost is seen by k3s's node controller first (Unknown after
	// its 40 s grace period), so a few seconds add little.
	Every time.Duration
	Logf  func(format string, args ...any)
}

// RunController runs until ctx ends: every server mirrors, and the one
// holding the Lease places. A leader that loses the Lease (its API
// unreachable past the renew deadline) stops placing and campaigns again.
func RunController(ctx context.Context, o ControllerOptions) error {
	if o.Every <= 0 {
		o.Every = 3 * time.Second
	}
	go every(ctx, o.Every, func() {
		changed, err := Mirror(ctx, o.Host, o.DataDir, o.Helm)
		switch {
		case err != nil:
			o.Logf("mirror: %v", err)
		case changed:
			o.Logf("mirror: this server's %s manifest now holds the deployed placement", "perch-analytics")
		}
	})
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: ControllerLease, Namespace: "kube-system"},
		Client:     o.Kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: o.Identity},
	}
	p := NewPlacer(o.Kube, o.Helm)
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   15 * time.Second,
			RenewDeadline:   10 * time.Second,
			RetryPeriod:     2 * time.Second,
			ReleaseOnCancel: true,
			Name:            ControllerLease,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					o.Logf("leading: placing the pipeline's workers")
					every(ctx, o.Every, func() { place(ctx, p, o.Logf) })
				},
				OnStoppedLeading: func() { o.Logf("no longer leading") },
				OnNewLeader: func(id string) {
					if id != o.Identity {
						o.Logf("leader is %s", id)
					}
				},
			},
		})
		if err != nil {
			return err
		}
		le.Run(ctx)
	}
	return nil
}

// place runs one Place and says what moved: stream and slot names only,
// never the values (camera URLs carry credentials).
func place(ctx context.Context, p *Placer, logf func(string, ...any)) {
	pl, err := p.Place(ctx)
	if err != nil {
		logf("place: %v", err)
		return
	}
	if !pl.Changed {
		return
	}
	var slots, moves []string
	for _, s := range pl.Slots {
		slots = append(slots, s.Name+"@"+s.Node)
	}
	for _, m := range pl.Moves {
		moves = append(moves, fmt.Sprintf("%s %s->%s", m.Stream, orNone(m.From), orNone(m.To)))
	}
	logf("placed: slots [%s]; moved [%s]", strings.Join(slots, " "), strings.Join(moves, ", "))
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// every runs f now and then every d until ctx ends.
func every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		f()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
