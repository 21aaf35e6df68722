package status

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

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
	State       AppState   `json:"state"`
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

// CheckApp reads how far an app is: the helm-install-NAME Job in
// kube-system (HelmChart status only says the Job was created), then the
// Deployments, StatefulSets and DaemonSets labelled with the release in
// namespace ns. Install's wait and `perch status` both judge apps here, so
// they never disagree. The error is a failed API call; the app is then only
// partly filled in.
func CheckApp(ctx context.Context, cs kubernetes.Interface, name, ns string) (App, error) {
	a := App{Name: name, Namespace: ns, Job: JobAbsent, State: AppProgressing, Workloads: []Workload{}}
	jobName := "helm-install-" + name
	job, err := cs.BatchV1().Jobs(render.HelmChartNamespace).Get(ctx, jobName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		a.Reason = "helm-controller has not started " + jobName + " (k3s applies server/manifests within 15 s)"
		return a, nil
	}
	if err != nil {
		a.Reason = err.Error()
		return a, fmt.Errorf("get job %s: %w", jobName, err)
	}
	a.JobFailures = job.Status.Failed
	for _, c := range job.Status.Conditions {
		if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
			a.Job, a.State = JobFailed, AppFailed
			a.Reason = jobName + " failed: " + c.Message
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
	sel := metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + name}
	deps, err := cs.AppsV1().Deployments(ns).List(ctx, sel)
	if err != nil {
		a.Reason = err.Error()
		return a, fmt.Errorf("list deployments in %s: %w", ns, err)
	}
	for _, d := range deps.Items {
		a.Workloads = append(a.Workloads, deploymentWorkload(&d))
	}
	sts, err := cs.AppsV1().StatefulSets(ns).List(ctx, sel)
	if err != nil {
		a.Reason = err.Error()
		return a, fmt.Errorf("list statefulsets in %s: %w", ns, err)
	}
	for _, st := range sts.Items {
		a.Workloads = append(a.Workloads, statefulSetWorkload(&st))
	}
	dss, err := cs.AppsV1().DaemonSets(ns).List(ctx, sel)
	if err != nil {
		a.Reason = err.Error()
		return a, fmt.Errorf("list daemonsets in %s: %w", ns, err)
	}
	for _, ds := range dss.Items {
		a.Workloads = append(a.Workloads, daemonSetWorkload(&ds))
	}
	for _, w := range a.Workloads {
		if !w.UpToDate {
			a.Reason = w.Kind + " " + w.Name + " is not ready"
			return a, nil
		}
	}
	a.State = AppReady
	return a, nil
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
