package apps

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/installer/status"
	"github.com/perchedge/perch/manifests/render"
)

// appsTimeout bounds the wait for every app: pulling multi-gigabyte
// inference images from the appliance registry and building TensorRT
// engines on first start take minutes.
const appsTimeout = 20 * time.Minute

// appsReadyStep waits until each app is deployed and its workloads are
// ready. HelmChart status only says that helm-controller created its Job,
// so it watches the helm-install Job itself, then every pod the release
// owns (status.Checker). A failure names the pod and shows its events and
// the end of its log.
type appsReadyStep struct{ a *Apps }

func (s *appsReadyStep) Name() string { return "apps-ready" }

func (s *appsReadyStep) Plan(ctx context.Context) ([]engine.Change, error) {
	apps, ok, err := (&appsStep{s.a}).desired(ctx, false)
	if err != nil || (ok && len(apps) == 0) {
		return nil, err
	}
	if !s.a.n.RunsAgent() {
		return []engine.Change{{Action: engine.Warn, Kind: engine.Check, Target: "apps",
			Detail: "this server runs no pods (k3s.disableAgent); the apps start when an agent joins: watch them with perch status"}}, nil
	}
	var names []string
	for _, a := range apps {
		names = append(names, a.Name)
	}
	target := "the apps to be ready"
	if ok {
		target = strings.Join(names, ", ") + " to be ready"
	}
	return []engine.Change{{Action: engine.Wait, Kind: engine.Check, Target: target, Detail: "timeout " + appsTimeout.String()}}, nil
}

func (s *appsReadyStep) Apply(ctx context.Context, _ []engine.Change, r *engine.Reporter) error {
	apps, _, err := (&appsStep{s.a}).desired(ctx, false)
	if err != nil {
		return err
	}
	cs, err := s.a.n.Kube(30 * time.Second)
	if err != nil {
		return err
	}
	meta, err := s.a.n.Metadata(30 * time.Second)
	if err != nil {
		return err
	}
	ch := status.Checker{Kube: cs, Meta: meta}
	if b := s.a.n.Bundle; b != nil {
		ch.Images = status.NewBundleImages(s.a.registries, b.Manifest)
	}
	ctx, cancel := context.WithTimeout(ctx, appsTimeout)
	defer cancel()
	for _, a := range apps {
		start := time.Now()
		if old, ok := s.a.rollouts[a.Name]; ok {
			r.Logf("waiting for helm-controller to start installing the new values of %s", a.Name)
			if !waitNewJob(ctx, cs, a, old, rolloutGrace) {
				r.Logf("helm-install-%s did not change in %s: the change left the release as it was", a.Name, rolloutGrace)
			}
		}
		r.Logf("waiting for app %s (helm-install-%s, then the pods of its release in namespace %s)", a.Name, a.Name, a.Namespace)
		if err := waitApp(ctx, ch, a); err != nil {
			return fmt.Errorf("app %s: %w", a.Name, err)
		}
		r.Logf("app %s ready in %s", a.Name, time.Since(start).Round(time.Second))
	}
	return nil
}

// rolloutGrace is how long a changed HelmChart may take to reach its Job:
// k3s applies server/manifests within 15 s, helm-controller then at once.
// A change that does not reach the Job (labels only) ends the wait here.
const rolloutGrace = time.Minute

// waitNewJob waits until the app's install Job is no longer the one it had
// before this install changed its HelmChart; false if grace passed first.
func waitNewJob(ctx context.Context, cs kubernetes.Interface, a render.App, old jobMark, grace time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, grace)
	defer cancel()
	for {
		j, err := cs.BatchV1().Jobs(render.HelmChartNamespace).Get(ctx, "helm-install-"+a.Name, metav1.GetOptions{})
		if err == nil && markOf(j) != old {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Second):
		}
	}
}

func waitApp(ctx context.Context, ch status.Checker, a render.App) error {
	var last status.App
	for {
		st, done, err := appState(ctx, ch, a)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		last = st
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready after %s: %s%s", appsTimeout, last.Reason, diagnose(ch.Kube, a, last))
		case <-time.After(2 * time.Second):
		}
	}
}

// appState judges the app; done says it is ready, and st.Reason otherwise
// says what it waits on. A failed app is an error at once: helm-controller
// would retry a failed Job with the same chart and values, and the kubelet
// an image the bundle does not hold, in vain. A failed read is waited out
// like any other state: the API server may be busy on a node still
// starting.
func appState(ctx context.Context, ch status.Checker, a render.App) (st status.App, done bool, err error) {
	st, err = ch.App(ctx, a.Name, a.Namespace)
	switch {
	case err != nil:
		st.Reason = err.Error()
		return st, false, nil
	case st.State == status.AppFailed:
		return st, false, fmt.Errorf("%s%s", st.Reason, diagnose(ch.Kube, a, st))
	}
	return st, st.State == status.AppReady, nil
}

// diagnose describes the pods of the app that are not ready, and of its
// install Job: their events and the end of their logs.
func diagnose(cs kubernetes.Interface, a render.App, st status.App) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var pods []corev1.Pod
	if l, err := cs.CoreV1().Pods(render.HelmChartNamespace).List(ctx, metav1.ListOptions{LabelSelector: "job-name=helm-install-" + a.Name}); err == nil {
		for _, p := range l.Items {
			if !podReady(&p) && p.Status.Phase != corev1.PodSucceeded {
				pods = append(pods, p)
			}
		}
	}
	// the judgement traced the app's pods by their owners; its first few
	// are enough to show what is wrong
	for _, u := range st.Unready[:min(len(st.Unready), 5)] {
		if p, err := cs.CoreV1().Pods(u.Namespace).Get(ctx, u.Name, metav1.GetOptions{}); err == nil {
			pods = append(pods, *p)
		}
	}
	var b strings.Builder
	for _, p := range pods {
		fmt.Fprintf(&b, "\n  pod %s/%s: %s", p.Namespace, p.Name, p.Status.Phase)
		if ev, err := cs.CoreV1().Events(p.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + p.Name}); err == nil {
			items := ev.Items
			slices.SortFunc(items, func(x, y corev1.Event) int { return x.LastTimestamp.Compare(y.LastTimestamp.Time) })
			for _, e := range items[max(0, len(items)-5):] {
				fmt.Fprintf(&b, "\n    event %s: %s", e.Reason, e.Message)
			}
		}
		tail := int64(15)
		if raw, err := cs.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{TailLines: &tail}).DoRaw(ctx); err == nil && len(raw) > 0 {
			b.WriteString("\n    log:\n      " + strings.ReplaceAll(strings.TrimRight(string(raw), "\n"), "\n", "\n      "))
		}
	}
	return b.String()
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
