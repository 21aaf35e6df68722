package apps

import (
	"context"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage/driver"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/perchedge/perch/bundles"
	"github.com/perchedge/perch/installer/status"
	"github.com/perchedge/perch/manifests/render"
)

// An image the bundle lacks will never be pulled offline: apps-ready says
// so at once, naming pod, image and the fix, instead of waiting out its
// twenty minutes.
func TestWaitAppFailsFastOnImageNotInBundle(t *testing.T) {
	const image = "quay.io/prometheus/prometheus:v3.1.0"
	cs := fake.NewClientset(
		&batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "helm-install-" + render.Monitoring, Namespace: render.HelmChartNamespace},
			Status: batchv1.JobStatus{Succeeded: 1}},
		&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "prometheus-x", Namespace: "monitoring", UID: "sts",
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "monitoring.coreos.com/v1", Kind: "Prometheus", Name: "x", UID: "prom"}}}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "prometheus-x-0", Namespace: "monitoring",
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "prometheus-x", UID: "sts"}}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "prometheus", Image: image}}},
			Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{Name: "prometheus", Image: image,
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff"}}}}}},
	)
	rls := &release.Release{Name: render.Monitoring, Namespace: "monitoring", Version: 1, Info: &release.Info{Status: release.StatusDeployed},
		Manifest: "apiVersion: monitoring.coreos.com/v1\nkind: Prometheus\nmetadata: {name: x, namespace: monitoring}\n"}
	if err := driver.NewSecrets(cs.CoreV1().Secrets("monitoring")).Create("sh.helm.release.v1."+render.Monitoring+".v1", rls); err != nil {
		t.Fatal(err)
	}
	ch := status.Checker{Kube: cs, Images: status.NewBundleImages(nil, &bundles.Manifest{Name: "site", Version: "1.0.0",
		Images: []bundles.Image{{Reference: "docker.io/library/busybox:1"}}})}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	err := waitApp(ctx, ch, render.App{Name: render.Monitoring, Namespace: "monitoring"})
	if err == nil {
		t.Fatal("waitApp: no error")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("waitApp took %s: want it to fail at once", d)
	}
	for _, want := range []string{"monitoring/prometheus-x-0", image, "not in the bundle", "add it to the bundle spec's images"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
