package gpunode

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	batchclient "k8s.io/client-go/kubernetes/typed/batch/v1"

	"github.com/perchedge/perch/gpu"
	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/installer/node"
)

const (
	validateNamespace = "kube-system"
	// gpuResource is what the device plugin advertises.
	gpuResource = corev1.ResourceName("nvidia.com/gpu")
	// validatedLabel holds the digest of the GPUs a Job validated, so a
	// rerun on the same GPUs and driver does not run it again.
	validatedLabel  = "perch.dev/gpu-inventory"
	validateTimeout = 5 * time.Minute
)

// Validate proves pods can use this node's GPUs: once the device
// plugin advertises nvidia.com/gpu, a Job asking for one GPU through the
// nvidia RuntimeClass runs nvidia-smi on this node. Its output is shown;
// a failure stops the install when gpu.mode is required and is a warning
// otherwise. The succeeded Job is kept, labelled with the GPUs and driver
// it validated, so a rerun on the same node changes nothing.
func Validate(n *node.Node) engine.Step { return &validateStep{n: n, poll: 2 * time.Second} }

type validateStep struct {
	n *node.Node
	// poll is how often the API is asked while waiting.
	poll time.Duration
}

func (s *validateStep) Name() string { return "gpu-validate" }

func jobName(node string) string {
	name := "perch-gpu-validate-" + node
	if len(name) > 52 { // the Job's pods add a suffix to a 63-character name
		sum := sha256.Sum256([]byte(node))
		name = name[:43] + "-" + hex.EncodeToString(sum[:4])
	}
	return name
}

// inventoryDigest identifies what a validation vouches for.
func inventoryDigest(inv *gpu.Inventory) string {
	h := sha256.New()
	h.Write([]byte(inv.DriverVersion))
	for _, d := range inv.GPUs {
		h.Write([]byte("\x00" + d.UUID))
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// validationImage is an image of the bundle that the NVIDIA runtime can
// inject nvidia-smi into: a CUDA base if there is one, else the device
// plugin's own.
func validationImage(refs []string) string {
	for _, want := range []string{"/cuda", "k8s-device-plugin"} {
		for _, r := range refs {
			if strings.Contains(r, want) {
				return r
			}
		}
	}
	return ""
}

// validationJob runs nvidia-smi on node with one GPU.
func validationJob(node, image, digest string) *batchv1.Job {
	one := int32(1)
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: jobName(node), Namespace: validateNamespace,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "perch", validatedLabel: digest}},
		Spec: batchv1.JobSpec{
			BackoffLimit: &one,
			Template: corev1.PodTemplateSpec{
				Spec: corev1.PodSpec{
					RestartPolicy:    corev1.RestartPolicyNever,
					RuntimeClassName: ptr("nvidia"),
					NodeSelector:     map[string]string{corev1.LabelHostname: node},
					Tolerations:      []corev1.Toleration{{Key: string(gpuResource), Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
					Containers: []corev1.Container{{
						Name:    "nvidia-smi",
						Image:   image,
						Command: []string{"nvidia-smi"},
						// the NVIDIA runtime mounts nvidia-smi for the utility capability
						Env: []corev1.EnvVar{{Name: "NVIDIA_DRIVER_CAPABILITIES", Value: "utility"}},
						Resources: corev1.ResourceRequirements{
							Limits: corev1.ResourceList{gpuResource: resource.MustParse("1")},
						},
					}},
				},
			},
		},
	}
}

func ptr[T any](v T) *T { return &v }

// wanted says whether this node's GPUs are to be validated, and with what.
func (s *validateStep) wanted(ctx context.Context) (inv *gpu.Inventory, image, skip string) {
	n := s.n
	if n.Cfg.GPU.Mode == config.GPUOff || !n.RunsAgent() || !n.Server() {
		return nil, "", "-" // nothing to say: no GPU wanted, or no API rights here
	}
	inv, _, err := n.GPUs(ctx)
	if err != nil || inv == nil || gpu.FindRuntime(n.Host.Stat) == "" {
		return nil, "", "-" // the gpu step has said why
	}
	image = validationImage(n.Images())
	if image == "" {
		return inv, "", "no CUDA or device-plugin image in the bundle to run nvidia-smi in; add nvcr.io/nvidia/cuda:<version>-base-ubuntu22.04 to the bundle spec"
	}
	return inv, image, ""
}

func (s *validateStep) Plan(ctx context.Context) ([]engine.Change, error) {
	inv, image, skip := s.wanted(ctx)
	switch {
	case skip == "-":
		return nil, nil
	case skip != "":
		if s.n.Cfg.GPU.Mode == config.GPURequired {
			return nil, fmt.Errorf("gpu.mode is required, but the GPUs cannot be validated: %s", skip)
		}
		return []engine.Change{{Action: engine.Warn, Kind: engine.Check, Target: "gpu-validate", Detail: skip}}, nil
	}
	if s.validated(ctx, inventoryDigest(inv)) {
		return nil, nil
	}
	return []engine.Change{{Action: engine.Create, Kind: engine.Job, Target: validateNamespace + "/" + jobName(s.n.Name),
		Detail: fmt.Sprintf("nvidia-smi in %s with one GPU, once the device plugin advertises %s", image, gpuResource)}}, nil
}

// validated says whether a Job already succeeded for these GPUs.
func (s *validateStep) validated(ctx context.Context, digest string) bool {
	cs, err := s.n.Kube(30 * time.Second)
	if err != nil {
		return false
	}
	j, err := cs.BatchV1().Jobs(validateNamespace).Get(ctx, jobName(s.n.Name), metav1.GetOptions{})
	return err == nil && j.Labels[validatedLabel] == digest && j.Status.Succeeded > 0
}

func (s *validateStep) Apply(ctx context.Context, _ []engine.Change, r *engine.Reporter) error {
	inv, image, skip := s.wanted(ctx)
	if skip != "" {
		return nil
	}
	err := s.run(ctx, r, image, inventoryDigest(inv))
	if err != nil && s.n.Cfg.GPU.Mode != config.GPURequired {
		r.Logf("warning: GPU validation failed, pods may not get GPUs: %v", err)
		return nil
	}
	return err
}

func (s *validateStep) run(ctx context.Context, r *engine.Reporter, image, digest string) error {
	cs, err := s.n.Kube(30 * time.Second)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, validateTimeout)
	defer cancel()
	node := s.n.Name
	r.Logf("waiting for the device plugin to advertise %s on node %s", gpuResource, node)
	for {
		n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err == nil {
			if q, ok := n.Status.Allocatable[gpuResource]; ok && !q.IsZero() {
				break
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s never advertised %s: is the nvidia-device-plugin pod running? (kubectl -n nvidia-device-plugin get pods)", node, gpuResource)
		case <-time.After(s.poll):
		}
	}
	jobs := cs.BatchV1().Jobs(validateNamespace)
	bg := metav1.DeletePropagationBackground
	if err := jobs.Delete(ctx, jobName(node), metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if err := s.waitGone(ctx, jobs, jobName(node)); err != nil {
		return err
	}
	if _, err := jobs.Create(ctx, validationJob(node, image, digest), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create GPU validation job: %w", err)
	}
	r.Logf("running nvidia-smi on node %s in %s", node, image)
	for {
		j, err := jobs.Get(ctx, jobName(node), metav1.GetOptions{})
		if err == nil && (j.Status.Succeeded > 0 || j.Status.Failed > *j.Spec.BackoffLimit) {
			out := s.jobLog(ctx, cs, j.Name)
			for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
				r.Logf("  %s", line)
			}
			if j.Status.Succeeded > 0 {
				return nil
			}
			return fmt.Errorf("nvidia-smi failed in job %s/%s", validateNamespace, j.Name)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("GPU validation job %s/%s did not finish in %s%s", validateNamespace, jobName(node), validateTimeout, s.jobLog(context.Background(), cs, jobName(node)))
		case <-time.After(s.poll):
		}
	}
}

// waitGone waits until the old Job is gone, which is only once its
// finalizers ran. A finalizer that never runs, or an API that keeps
// failing, ends with the step's timeout or the user's Ctrl-C, never a
// hang.
func (s *validateStep) waitGone(ctx context.Context, jobs batchclient.JobInterface, name string) error {
	for {
		_, err := jobs.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			why := "it is still there (a finalizer that does not finish?)"
			if err != nil {
				why = err.Error()
			}
			return fmt.Errorf("the previous GPU validation job %s/%s was not deleted: %s; delete it with kubectl -n %s delete job %s and run again: %w", validateNamespace, name, why, validateNamespace, name, context.Cause(ctx))
		case <-time.After(s.poll / 4):
		}
	}
}

// jobLog is the log of the Job's latest pod, or its events when it never ran.
func (s *validateStep) jobLog(ctx context.Context, cs kubernetes.Interface, job string) string {
	pods, err := cs.CoreV1().Pods(validateNamespace).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + job})
	if err != nil || len(pods.Items) == 0 {
		return ""
	}
	p := pods.Items[len(pods.Items)-1]
	if raw, err := cs.CoreV1().Pods(validateNamespace).GetLogs(p.Name, &corev1.PodLogOptions{}).DoRaw(ctx); err == nil && len(raw) > 0 {
		return string(raw)
	}
	var b strings.Builder
	if ev, err := cs.CoreV1().Events(validateNamespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + p.Name}); err == nil {
		for _, e := range ev.Items {
			fmt.Fprintf(&b, "\n  event %s: %s", e.Reason, e.Message)
		}
	}
	return b.String()
}
