package k3s

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/engine"
)

// readyStep waits until k3s serves: the API for a server without agent, the
// Node object Ready otherwise. On a timeout it shows the end of k3s's log,
// which is where the reason always is.
type readyStep struct{ k *K3s }

func (s *readyStep) Name() string { return "k3s-ready" }

// what is awaited, and how the plan says it
func (s *readyStep) what() (subject, plan string) {
	e := s.k
	if e.n.Cfg.Node.Role == config.RoleServer && e.n.Cfg.K3s.DisableAgent {
		return "the Kubernetes API", "the Kubernetes API to answer"
	}
	return "node " + e.n.Name, "node " + e.n.Name + " to be Ready"
}

func (s *readyStep) Plan(context.Context) ([]engine.Change, error) {
	_, target := s.what()
	return []engine.Change{{Action: engine.Wait, Kind: engine.Check, Target: target,
		Detail: "timeout " + s.k.n.Cfg.K3s.ReadyTimeout.String()}}, nil
}

func (s *readyStep) Apply(ctx context.Context, _ []engine.Change, r *engine.Reporter) error {
	e := s.k
	ctx, cancel := context.WithTimeout(ctx, e.n.Cfg.K3s.ReadyTimeout)
	defer cancel()
	start := time.Now()
	subject, target := s.what()
	r.Logf("waiting for %s", target)
	var last string
	for {
		done, why := s.check(ctx)
		if done {
			r.Logf("%s is ready after %s", subject, time.Since(start).Round(10*time.Millisecond))
			return nil
		}
		if why != last {
			r.Logf("not ready yet: %s", why)
			last = why
		}
		if st, err := e.n.Init.Status(ctx, e.ServiceName()); err == nil && !st.Installed {
			return fmt.Errorf("service %s is gone", e.ServiceName())
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				tail, _ := e.n.Init.LogTail(context.Background(), e.ServiceName(), 30)
				return fmt.Errorf("k3s was not ready after %s (%s); raise k3s.readyTimeout if the machine is slow. Last lines of the %s log:\n%s",
					e.n.Cfg.K3s.ReadyTimeout, why, e.ServiceName(), indent(tail))
			}
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (s *readyStep) check(ctx context.Context) (bool, string) {
	e := s.k
	raw, err := e.n.Host.ReadFile(e.n.SelfKubeconfig())
	if errors.Is(err, fs.ErrNotExist) {
		return false, "k3s has not written " + e.n.SelfKubeconfig() + " yet"
	}
	if err != nil {
		return false, err.Error()
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(raw)
	if err != nil {
		return false, "kubeconfig: " + err.Error()
	}
	rc.Timeout = 5 * time.Second
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return false, err.Error()
	}
	if e.n.Cfg.Node.Role == config.RoleServer {
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil || strings.TrimSpace(string(body)) != "ok" {
			return false, "API server not ready"
		}
		if e.n.Cfg.K3s.DisableAgent {
			return true, ""
		}
	}
	node, err := cs.CoreV1().Nodes().Get(ctx, e.n.Name, metav1.GetOptions{})
	if err != nil {
		return false, "node not registered yet"
	}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status == corev1.ConditionTrue {
				return true, ""
			}
			return false, "node not Ready: " + c.Message
		}
	}
	return false, "node has no Ready condition yet"
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}
