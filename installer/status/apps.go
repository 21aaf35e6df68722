package status

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"

	"github.com/perchedge/perch/manifests/render"
)

// JobState is where helm-controller's helm-install Job of an app stands.
type JobState string

const (
	JobAbsent    JobState = "absent"
	JobRunning   JobState = "running"
	JobSucceeded JobState = "succeeded"
	JobFailed    JobState = "failed"
)

// AppState is the judgement of one app.
type AppState string

const (
	AppReady       AppState = "ready"
	AppProgressing AppState = "progressing"
	AppFailed      AppState = "failed"
)

// App is one app Perch deployed: its HelmChart, the Job helm-controller
// runs for it, and the workloads of its release.
type App struct {
	Name      string   `json:"name"`
	Namespace string   `json:"namespace"` // the release's
	Chart     string   `json:"chart,omitempty"`
	Version   string   `json:"version,omitempty"`
	Job       JobState `json:"job"`
	// JobFailures counts failed attempts of the Job: helm-controller's Jobs
	// retry for a long time, so a chart that cannot install shows here long
	// before the Job gives up.
	JobFailures int32      `json:"jobFailures,omitempty"`
	Workloads   []Workload `json:"workloads"`
	// Release is the Helm release version whose objects the app's pods
	// were traced to by owner references; 0 when only the release label
	// found them (helm-controller has written no release yet).
	Release int `json:"release,omitempty"`
	// Pods counts the pods the app owns that are not finished, PodsReady
	// those of them that are Ready; Unready are the others, each with why.
	Pods      int        `json:"pods"`
	PodsReady int        `json:"podsReady"`
	Unready   []PodState `json:"unready,omitempty"`
	State     AppState   `json:"state"`
	// Reason says what a progressing app waits on, or why it failed.
	Reason string `json:"reason,omitempty"`
}

// Workload is a Deployment, StatefulSet or DaemonSet of an app's release.
type Workload struct {
	Kind    string `json:"kind"` // deployment, statefulset, daemonset
	Name    string `json:"name"`
	Ready   int32  `json:"ready"`
	Desired int32  `json:"desired"`
	// UpToDate is the full judgement: ready counts alone miss a rollout
	// that has not been observed yet or still runs old pods.
	UpToDate bool `json:"upToDate"`
}

// PodState is a pod of an app that is not Ready, and why.
type PodState struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Phase     string `json:"phase"`
	Reason    string `json:"reason,omitempty"`
	// Image is the image a container cannot pull; NotInBundle says that
	// the installed bundle does not carry it, so no retry will help.
	Image       string `json:"image,omitempty"`
	NotInBundle bool   `json:"notInBundle,omitempty"`
}

// Checker judges apps. Install's wait and `perch status` both judge with
// it, so they never disagree.
type Checker struct {
	Kube kubernetes.Interface
	// Meta reads owners of kinds Kube has no typed client for (custom
	// resources an operator made); nil ends an owner chain there.
	Meta metadata.Interface
	// Images are the installed bundle's; nil where the node installs
	// without a bundle.
	Images *BundleImages
}

// checkTimeout bounds one app's judgement, however many objects its
// release has.
const checkTimeout = 20 * time.Second

// App reads how far an app is: the helm-install-NAME Job in kube-system
// (HelmChart status only says the Job was created), then every pod the
// app owns and the Deployments, StatefulSets and DaemonSets they belong
// to. What the app owns is traced from its Helm release: an object the
// release lists, or one whose owner chain reaches one (Pod -> ReplicaSet
// -> Deployment, Pod -> StatefulSet -> an operator's Prometheus); an
// operator labels what it makes with its resource's name, not the
// release's. The release label app.kubernetes.io/instance=NAME counts
// too, and is all there is until helm writes the release. The error is a
// failed API call; the app is then only partly filled in.
func (c Checker) App(ctx context.Context, name, ns string) (App, error) {
	a := App{Name: name, Namespace: ns, Job: JobAbsent, State: AppProgressing, Workloads: []Workload{}}
	jobName := "helm-install-" + name
	job, err := c.Kube.BatchV1().Jobs(render.HelmChartNamespace).Get(ctx, jobName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		a.Reason = "helm-controller has not started " + jobName + " (k3s applies server/manifests within 15 s)"
		return a, nil
	}
	if err != nil {
		a.Reason = err.Error()
		return a, fmt.Errorf("get job %s: %w", jobName, err)
	}
	a.JobFailures = job.Status.Failed
	for _, cond := range job.Status.Conditions {
		if cond.Type == batchv1.JobFailed && cond.Status == corev1.ConditionTrue {
			a.Job, a.State = JobFailed, AppFailed
			a.Reason = jobName + " failed: " + cond.Message
			return a, nil
		}
	}
	if job.Status.Succeeded == 0 {
		a.Job = JobRunning
		a.Reason = jobName + " is running"
		if a.JobFailures > 0 {
			a.Reason += fmt.Sprintf(" (%d failed attempts)", a.JobFailures)
		}
		return a, nil
	}
	a.Job = JobSucceeded
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	if err := c.judge(ctx, &a); err != nil {
		a.State, a.Reason = AppProgressing, err.Error()
		return a, err
	}
	return a, nil
}

// judge fills in the workloads and pods of an app whose Job succeeded,
// and its state.
func (c Checker) judge(ctx context.Context, a *App) error {
	rel, err := c.readRelease(ctx, a.Name, a.Namespace)
	if err != nil {
		return err
	}
	namespaces := []string{a.Namespace}
	if rel != nil {
		a.Release, namespaces = rel.version, rel.namespaces
	}
	t := newTracer(c, a.Name, rel)
	// owners first, so that tracing a pod reads none of them again
	var stsOwners []objKey
	for _, ns := range namespaces {
		if err := c.workloads(ctx, t, ns, a, &stsOwners); err != nil {
			return err
		}
	}
	for _, ns := range namespaces {
		if err := c.pods(ctx, t, ns, a); err != nil {
			return err
		}
	}
	slices.SortFunc(a.Unready, func(x, y PodState) int {
		return cmp.Or(cmp.Compare(btoi(!x.NotInBundle), btoi(!y.NotInBundle)), strings.Compare(x.Namespace, y.Namespace), strings.Compare(x.Name, y.Name))
	})
	if len(a.Unready) > 0 {
		p := a.Unready[0]
		a.Reason = "pod " + p.Namespace + "/" + p.Name + " " + p.Reason
		if n := len(a.Unready) - 1; n > 0 {
			a.Reason += fmt.Sprintf(" (and %s)", plural(n, "more pod"))
		}
		if p.NotInBundle {
			a.State = AppFailed
		}
		return nil
	}
	if rel != nil {
		if why := missingStatefulSets(rel, stsOwners); why != "" {
			a.Reason = why
			return nil
		}
	}
	for _, w := range a.Workloads {
		if !w.UpToDate {
			a.Reason = w.Kind + " " + w.Name + " is not ready"
			return nil
		}
	}
	a.State = AppReady
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// madeByOperator are the kinds of the Prometheus Operator that it makes a
// StatefulSet for. Until it has, no pod shows that the app is not ready.
var madeByOperator = []objKey{
	{group: "monitoring.coreos.com", kind: "Prometheus"},
	{group: "monitoring.coreos.com", kind: "Alertmanager"},
	{group: "monitoring.coreos.com", kind: "ThanosRuler"},
}

// missingStatefulSets says which resource of the release still waits for
// its operator's StatefulSet; "" when none does.
func missingStatefulSets(rel *releaseObjects, stsOwners []objKey) string {
	var waiting []string
	for k := range rel.objects {
		if !slices.Contains(madeByOperator, objKey{group: k.group, kind: k.kind}) {
			continue
		}
		if !slices.Contains(stsOwners, k) {
			waiting = append(waiting, k.kind+" "+k.ns+"/"+k.name)
		}
	}
	if len(waiting) == 0 {
		return ""
	}
	slices.Sort(waiting)
	return waiting[0] + " has no StatefulSet yet (the Prometheus Operator makes it)"
}

// workloads adds the app's Deployments, StatefulSets and DaemonSets in ns;
// the owners of its StatefulSets go in stsOwners. ReplicaSets are listed
// only to be known as owners: one list instead of a read per pod's.
func (c Checker) workloads(ctx context.Context, t *tracer, ns string, a *App, stsOwners *[]objKey) error {
	apps := c.Kube.AppsV1()
	err := listAll(ctx, "replicasets in "+ns, func(o metav1.ListOptions) ([]appsv1.ReplicaSet, string, error) {
		l, err := apps.ReplicaSets(ns).List(ctx, o)
		if err != nil {
			return nil, "", err
		}
		return l.Items, l.Continue, nil
	}, func(rs *appsv1.ReplicaSet) error {
		t.seen(objKey{"apps", "ReplicaSet", ns, rs.Name}, &rs.ObjectMeta)
		return nil
	})
	if err != nil {
		return err
	}
	err = listAll(ctx, "deployments in "+ns, func(o metav1.ListOptions) ([]appsv1.Deployment, string, error) {
		l, err := apps.Deployments(ns).List(ctx, o)
		if err != nil {
			return nil, "", err
		}
		return l.Items, l.Continue, nil
	}, func(d *appsv1.Deployment) error {
		k := objKey{"apps", "Deployment", ns, d.Name}
		t.seen(k, &d.ObjectMeta)
		ok, err := t.owns(ctx, k, &d.ObjectMeta)
		if ok {
			a.Workloads = append(a.Workloads, deploymentWorkload(d))
		}
		return err
	})
	if err != nil {
		return err
	}
	err = listAll(ctx, "statefulsets in "+ns, func(o metav1.ListOptions) ([]appsv1.StatefulSet, string, error) {
		l, err := apps.StatefulSets(ns).List(ctx, o)
		if err != nil {
			return nil, "", err
		}
		return l.Items, l.Continue, nil
	}, func(st *appsv1.StatefulSet) error {
		k := objKey{"apps", "StatefulSet", ns, st.Name}
		t.seen(k, &st.ObjectMeta)
		ok, err := t.owns(ctx, k, &st.ObjectMeta)
		if ok {
			a.Workloads = append(a.Workloads, statefulSetWorkload(st))
			for _, r := range st.OwnerReferences {
				*stsOwners = append(*stsOwners, keyOf(r.APIVersion, r.Kind, ns, r.Name))
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	return listAll(ctx, "daemonsets in "+ns, func(o metav1.ListOptions) ([]appsv1.DaemonSet, string, error) {
		l, err := apps.DaemonSets(ns).List(ctx, o)
		if err != nil {
			return nil, "", err
		}
		return l.Items, l.Continue, nil
	}, func(ds *appsv1.DaemonSet) error {
		k := objKey{"apps", "DaemonSet", ns, ds.Name}
		t.seen(k, &ds.ObjectMeta)
		ok, err := t.owns(ctx, k, &ds.ObjectMeta)
		if ok {
			a.Workloads = append(a.Workloads, daemonSetWorkload(ds))
		}
		return err
	})
}

// pods judges the app's pods in ns. A finished pod is not judged: its
// controller has replaced it or says it failed, and an evicted pod stays
// Failed until someone deletes it. A pod being deleted is on its way out.
func (c Checker) pods(ctx context.Context, t *tracer, ns string, a *App) error {
	return listAll(ctx, "pods in "+ns, func(o metav1.ListOptions) ([]corev1.Pod, string, error) {
		l, err := c.Kube.CoreV1().Pods(ns).List(ctx, o)
		if err != nil {
			return nil, "", err
		}
		return l.Items, l.Continue, nil
	}, func(p *corev1.Pod) error {
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			return nil
		}
		ok, err := t.owns(ctx, objKey{"", "Pod", ns, p.Name}, &p.ObjectMeta)
		if err != nil || !ok {
			return err
		}
		a.Pods++
		if podReady(p) {
			a.PodsReady++
			return nil
		}
		a.Unready = append(a.Unready, c.podState(p))
		return nil
	})
}

// listAll lists page by page, at most maxListed items, and calls each on
// every item.
func listAll[T any](ctx context.Context, what string, list func(metav1.ListOptions) ([]T, string, error), each func(*T) error) error {
	o := metav1.ListOptions{Limit: listPage}
	n := 0
	for {
		items, next, err := list(o)
		if err != nil {
			return fmt.Errorf("list %s: %w", what, err)
		}
		for i := range items {
			if err := each(&items[i]); err != nil {
				return err
			}
		}
		n += len(items)
		if next == "" {
			return nil
		}
		if n >= maxListed {
			return fmt.Errorf("list %s: more than %d; judged no further", what, maxListed)
		}
		o.Continue = next
	}
}

// pullFailures are the kubelet's waiting reasons for an image it cannot
// pull.
var pullFailures = []string{"ErrImagePull", "ImagePullBackOff"}

// podState says why a pod is not Ready: an image it cannot pull (and
// whether the bundle lacks it), a container waiting, or not scheduled.
func (c Checker) podState(p *corev1.Pod) PodState {
	ps := PodState{Namespace: p.Namespace, Name: p.Name, Phase: string(p.Status.Phase)}
	statuses := append(slices.Clone(p.Status.InitContainerStatuses), p.Status.ContainerStatuses...)
	for _, st := range statuses {
		w := st.State.Waiting
		if w == nil || !slices.Contains(pullFailures, w.Reason) {
			continue
		}
		ps.Image = specImage(p, st.Name, st.Image)
		if c.Images != nil && !c.Images.Has(ps.Image) {
			ps.NotInBundle = true
			in := "the bundle"
			if n := c.Images.String(); n != "" {
				in += " " + n
			}
			ps.Reason = fmt.Sprintf("cannot pull %s (%s): not in %s; add it to the bundle spec's images, rebuild the bundle and install it", ps.Image, w.Reason, in)
			return ps
		}
		ps.Reason = fmt.Sprintf("cannot pull %s (%s)", ps.Image, w.Reason)
		if w.Message != "" {
			ps.Reason += ": " + firstLine(w.Message)
		}
		return ps
	}
	for _, st := range statuses {
		if w := st.State.Waiting; w != nil && w.Reason != "" {
			ps.Reason = "is not ready: container " + st.Name + " " + w.Reason
			if w.Message != "" {
				ps.Reason += ": " + firstLine(w.Message)
			}
			return ps
		}
	}
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse {
			ps.Reason = "is not scheduled: " + firstLine(cmp.Or(cond.Message, cond.Reason))
			return ps
		}
	}
	ps.Reason = "is not ready"
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady && cond.Reason != "" {
			ps.Reason += " (" + cond.Reason + ")"
		}
	}
	return ps
}

// specImage is the image the pod asks for in container name: the status
// may show what the runtime resolved it to.
func specImage(p *corev1.Pod, name, fallback string) string {
	for _, cs := range append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers...) {
		if cs.Name == name && cs.Image != "" {
			return cs.Image
		}
	}
	return fallback
}

// firstLine keeps a kubelet message to one short line: a pull error can
// carry a registry's whole answer.
func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if r := []rune(s); len(r) > 200 {
		s = string(r[:200]) + "..."
	}
	return s
}

func podReady(p *corev1.Pod) bool {
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

func deploymentWorkload(d *appsv1.Deployment) Workload {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	return Workload{Kind: "deployment", Name: d.Name, Ready: d.Status.AvailableReplicas, Desired: want,
		UpToDate: d.Status.ObservedGeneration >= d.Generation && d.Status.UpdatedReplicas >= want &&
			d.Status.AvailableReplicas >= want && d.Status.Replicas == d.Status.UpdatedReplicas}
}

func statefulSetWorkload(st *appsv1.StatefulSet) Workload {
	want := int32(1)
	if st.Spec.Replicas != nil {
		want = *st.Spec.Replicas
	}
	return Workload{Kind: "statefulset", Name: st.Name, Ready: st.Status.ReadyReplicas, Desired: want,
		UpToDate: st.Status.ObservedGeneration >= st.Generation && st.Status.ReadyReplicas >= want && st.Status.UpdatedReplicas >= want}
}

func daemonSetWorkload(ds *appsv1.DaemonSet) Workload {
	want := ds.Status.DesiredNumberScheduled
	return Workload{Kind: "daemonset", Name: ds.Name, Ready: ds.Status.NumberReady, Desired: want,
		UpToDate: ds.Status.ObservedGeneration >= ds.Generation && ds.Status.NumberReady >= want && ds.Status.UpdatedNumberScheduled >= want}
}
