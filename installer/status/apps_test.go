package status

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage/driver"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	metadatafake "k8s.io/client-go/metadata/fake"

	"github.com/perchedge/perch/bundles"
	"github.com/perchedge/perch/manifests/render"
)

// The objects below are what kube-prometheus-stack leaves in a cluster:
// the chart's release holds the operator's Deployment and a Prometheus
// custom resource; the operator makes the StatefulSet, owned by that
// resource and labelled with its name, not the release's.
const (
	// an operator-based stack a site installs itself: its pods are made by
	// the operator from custom resources, which readiness must follow
	kps       = "kube-prometheus-stack"
	kpsNS     = MonitoringNamespace
	promCR    = kps + "-prometheus"
	promSts   = "prometheus-" + promCR
	promPod   = promSts + "-0"
	operator  = kps + "-operator"
	promImage = "quay.io/prometheus/prometheus:v3.1.0"
)

const kpsManifest = `---
# Source: kube-prometheus-stack/templates/prometheus-operator/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: kube-prometheus-stack-operator
  namespace: monitoring
  labels:
    app.kubernetes.io/instance: kube-prometheus-stack
spec:
  replicas: 1
---
# Source: kube-prometheus-stack/templates/prometheus/prometheus.yaml
apiVersion: monitoring.coreos.com/v1
kind: Prometheus
metadata:
  name: kube-prometheus-stack-prometheus
  namespace: monitoring
spec:
  image: quay.io/prometheus/prometheus:v3.1.0
`

// cluster is a fake API server holding an app deployed by helm-controller.
type cluster struct {
	t  *testing.T
	cs *fake.Clientset
}

func newCluster(t *testing.T, app string) *cluster {
	c := &cluster{t: t, cs: fake.NewClientset()}
	c.add(&batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "helm-install-" + app, Namespace: render.HelmChartNamespace},
		Status: batchv1.JobStatus{Succeeded: 1}})
	return c
}

func (c *cluster) add(objs ...runtime.Object) {
	c.t.Helper()
	for _, o := range objs {
		if err := c.cs.Tracker().Add(o); err != nil {
			c.t.Fatal(err)
		}
	}
}

// release stores a Helm release the way helm-controller's helm does, with
// Helm's own secrets driver.
func (c *cluster) release(name, ns string, version int, manifest string) {
	c.t.Helper()
	d := driver.NewSecrets(c.cs.CoreV1().Secrets(ns))
	rls := &release.Release{Name: name, Namespace: ns, Version: version, Manifest: manifest,
		Info: &release.Info{Status: release.StatusDeployed}}
	if err := d.Create("sh.helm.release.v1."+name+".v"+strconv.Itoa(version), rls); err != nil {
		c.t.Fatal(err)
	}
}

func ownedBy(apiVersion, kind, name string) []metav1.OwnerReference {
	yes := true
	return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, UID: types.UID(kind + "-" + name), Controller: &yes}}
}

func meta(ns, name, kind string, owners []metav1.OwnerReference, labels map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(kind + "-" + name), OwnerReferences: owners, Labels: labels}
}

func readyPod(ns, name string, owners []metav1.OwnerReference, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: meta(ns, name, "Pod", owners, labels),
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "busybox:1"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}}
}

func notReadyPod(ns, name string, owners []metav1.OwnerReference, labels map[string]string) *corev1.Pod {
	p := readyPod(ns, name, owners, labels)
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady"}}
	return p
}

// pullingPod cannot pull image, as the kubelet reports it.
func pullingPod(ns, name, image, reason string, owners []metav1.OwnerReference) *corev1.Pod {
	p := notReadyPod(ns, name, owners, nil)
	p.Status.Phase = corev1.PodPending
	p.Spec.Containers = []corev1.Container{{Name: "prometheus", Image: image}}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "prometheus", Image: image,
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason,
			Message: `Back-off pulling image "` + image + `"`}}}}
	return p
}

// operatorReady is the operator's Deployment, its ReplicaSet and its pod,
// all ready; the pod is traced to the release through its owners.
func (c *cluster) operatorReady() {
	one := int32(1)
	c.add(
		&appsv1.Deployment{ObjectMeta: meta(kpsNS, operator, "Deployment", nil, map[string]string{"app.kubernetes.io/instance": kps}),
			Spec:   appsv1.DeploymentSpec{Replicas: &one},
			Status: appsv1.DeploymentStatus{Replicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1, ReadyReplicas: 1}},
		&appsv1.ReplicaSet{ObjectMeta: meta(kpsNS, operator+"-5d4f", "ReplicaSet", ownedBy("apps/v1", "Deployment", operator), nil)},
		readyPod(kpsNS, operator+"-5d4f-x2x7c", ownedBy("apps/v1", "ReplicaSet", operator+"-5d4f"), nil),
	)
}

// prometheus is the StatefulSet the operator made for the Prometheus
// resource, with the status it reports.
func (c *cluster) prometheus(ready int32) {
	one := int32(1)
	c.add(&appsv1.StatefulSet{
		ObjectMeta: meta(kpsNS, promSts, "StatefulSet", ownedBy("monitoring.coreos.com/v1", "Prometheus", promCR),
			map[string]string{"app.kubernetes.io/instance": promCR, "operator.prometheus.io/name": promCR}),
		Spec:   appsv1.StatefulSetSpec{Replicas: &one},
		Status: appsv1.StatefulSetStatus{Replicas: 1, ReadyReplicas: ready, UpdatedReplicas: 1}})
}

func (c *cluster) check(ch Checker) App {
	c.t.Helper()
	ch.Kube = c.cs
	a, err := ch.App(context.Background(), kps, kpsNS)
	if err != nil {
		c.t.Fatalf("App: %v", err)
	}
	return a
}

func TestAppReadyOnlyWhenOperatorPodsAre(t *testing.T) {
	t.Run("Prometheus pod not ready", func(t *testing.T) {
		c := newCluster(t, kps)
		c.release(kps, kpsNS, 2, kpsManifest)
		c.operatorReady()
		// the StatefulSet's status has not caught up yet: the pod is the truth
		c.prometheus(1)
		c.add(notReadyPod(kpsNS, promPod, ownedBy("apps/v1", "StatefulSet", promSts),
			map[string]string{"app.kubernetes.io/instance": promCR}))
		a := c.check(Checker{})
		if a.State != AppProgressing || !strings.Contains(a.Reason, promPod) {
			t.Fatalf("state %s, reason %q: want progressing, naming pod %s", a.State, a.Reason, promPod)
		}
		if a.Release != 2 || a.Pods != 2 || a.PodsReady != 1 || len(a.Unready) != 1 || a.Unready[0].Name != promPod {
			t.Errorf("release %d, pods %d/%d, unready %+v: want release 2, 1/2 pods ready, %s unready", a.Release, a.PodsReady, a.Pods, a.Unready, promPod)
		}
		if !hasWorkload(a, "statefulset", promSts) {
			t.Errorf("workloads %+v lack the operator's StatefulSet", a.Workloads)
		}
	})
	t.Run("all ready", func(t *testing.T) {
		c := newCluster(t, kps)
		c.release(kps, kpsNS, 1, kpsManifest)
		c.operatorReady()
		c.prometheus(1)
		c.add(readyPod(kpsNS, promPod, ownedBy("apps/v1", "StatefulSet", promSts), nil))
		// a pod of another app in the same namespace is not this app's
		c.add(notReadyPod(kpsNS, "other-0", ownedBy("apps/v1", "StatefulSet", "other"), nil))
		if a := c.check(Checker{}); a.State != AppReady || a.Pods != 2 || a.PodsReady != 2 {
			t.Fatalf("state %s (%s), pods %d/%d: want ready, 2/2", a.State, a.Reason, a.PodsReady, a.Pods)
		}
	})
	t.Run("operator has not made the StatefulSet yet", func(t *testing.T) {
		c := newCluster(t, kps)
		c.release(kps, kpsNS, 1, kpsManifest)
		c.operatorReady()
		if a := c.check(Checker{}); a.State != AppProgressing || !strings.Contains(a.Reason, "Prometheus "+kpsNS+"/"+promCR) {
			t.Fatalf("state %s, reason %q: want progressing, waiting on Prometheus %s", a.State, a.Reason, promCR)
		}
	})
	t.Run("no release yet: the release label", func(t *testing.T) {
		c := newCluster(t, kps)
		c.operatorReady()
		c.add(notReadyPod(kpsNS, "labelled-0", nil, map[string]string{"app.kubernetes.io/instance": kps}))
		a := c.check(Checker{})
		if a.State != AppProgressing || a.Release != 0 || !strings.Contains(a.Reason, "labelled-0") {
			t.Fatalf("state %s, release %d, reason %q: want progressing on labelled-0", a.State, a.Release, a.Reason)
		}
	})
}

// An operator may make a resource of its own from the release's, which in
// turn owns the StatefulSet: the chain is followed through metadata.
func TestAppOwnerChainThroughCustomResources(t *testing.T) {
	c := newCluster(t, "db")
	c.release("db", "db", 1, "apiVersion: example.com/v1\nkind: Cluster\nmetadata: {name: main}\n")
	c.cs.Resources = []*metav1.APIResourceList{{GroupVersion: "example.com/v1", APIResources: []metav1.APIResource{
		{Name: "clusters", Kind: "Cluster", Namespaced: true}, {Name: "shards", Kind: "Shard", Namespaced: true},
		{Name: "shards/status", Kind: "Shard", Namespaced: true}}}}
	shard := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "example.com/v1", Kind: "Shard"},
		ObjectMeta: meta("db", "main-0", "Shard", ownedBy("example.com/v1", "Cluster", "main"), nil)}
	scheme := metadatafake.NewTestScheme()
	scheme.AddKnownTypeWithName(shard.GroupVersionKind(), &metav1.PartialObjectMetadata{})
	md := metadatafake.NewSimpleMetadataClient(scheme, shard)
	c.add(&appsv1.StatefulSet{ObjectMeta: meta("db", "main-0", "StatefulSet", ownedBy("example.com/v1", "Shard", "main-0"), nil),
		Status: appsv1.StatefulSetStatus{Replicas: 1, ReadyReplicas: 1, UpdatedReplicas: 1}})
	c.add(notReadyPod("db", "main-0-0", ownedBy("apps/v1", "StatefulSet", "main-0"), nil))
	a, err := Checker{Kube: c.cs, Meta: md}.App(context.Background(), "db", "db")
	if err != nil {
		t.Fatal(err)
	}
	if a.State != AppProgressing || !strings.Contains(a.Reason, "main-0-0") {
		t.Fatalf("state %s, reason %q: want progressing on pod main-0-0", a.State, a.Reason)
	}
}

func TestAppImagePull(t *testing.T) {
	bundle := &bundles.Manifest{Name: "site", Version: "1.0.0", Images: []bundles.Image{
		{Reference: "docker.io/library/busybox:1"}, {Reference: "quay.io/prometheus/alertmanager:v0.28.0"}}}
	withProm := &bundles.Manifest{Name: "site", Version: "1.0.1", Images: append(bundle.Images, bundles.Image{Reference: promImage})}
	for _, tc := range []struct {
		name, image, reason string
		bundle              *bundles.Manifest
		state               AppState
		notInBundle         bool
	}{
		{"not in the bundle", promImage, "ImagePullBackOff", bundle, AppFailed, true},
		{"not in the bundle, first try", promImage, "ErrImagePull", bundle, AppFailed, true},
		{"not in the bundle, through the registry", "127.0.0.1:5000/" + promImage, "ImagePullBackOff", bundle, AppFailed, true},
		{"in the bundle", promImage, "ImagePullBackOff", withProm, AppProgressing, false},
		{"in the bundle, through the registry", "127.0.0.1:5000/" + promImage, "ImagePullBackOff", withProm, AppProgressing, false},
		{"no bundle", promImage, "ImagePullBackOff", nil, AppProgressing, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, kps)
			c.release(kps, kpsNS, 1, kpsManifest)
			c.operatorReady()
			c.prometheus(0)
			c.add(pullingPod(kpsNS, promPod, tc.image, tc.reason, ownedBy("apps/v1", "StatefulSet", promSts)))
			var ch Checker
			if tc.bundle != nil {
				ch.Images = NewBundleImages([]string{"127.0.0.1:5000"}, tc.bundle)
			}
			a := c.check(ch)
			if a.State != tc.state || !strings.Contains(a.Reason, promPod) || !strings.Contains(a.Reason, tc.image) {
				t.Fatalf("state %s, reason %q: want %s, naming pod %s and image %s", a.State, a.Reason, tc.state, promPod, tc.image)
			}
			if got := strings.Contains(a.Reason, "not in the bundle"); got != tc.notInBundle {
				t.Errorf("reason %q: says not in the bundle = %v, want %v", a.Reason, got, tc.notInBundle)
			}
			if tc.notInBundle && !strings.Contains(a.Reason, "add it to the bundle spec's images") {
				t.Errorf("reason %q does not say how to fix it", a.Reason)
			}
			if len(a.Unready) != 1 || a.Unready[0].Image != tc.image || a.Unready[0].NotInBundle != tc.notInBundle {
				t.Errorf("unready %+v: want %s with image %s, notInBundle %v", a.Unready, promPod, tc.image, tc.notInBundle)
			}
		})
	}
}

func TestBundleImagesHas(t *testing.T) {
	b := NewBundleImages([]string{"127.0.0.1:5000", "10.0.0.1:5000"}, &bundles.Manifest{Images: []bundles.Image{
		{Reference: "docker.io/library/nginx:1"},
		{Reference: "quay.io/prometheus/prometheus:v3.1.0", Digest: "sha256:" + strings.Repeat("a", 64), IndexDigest: "sha256:" + strings.Repeat("b", 64)},
		{Reference: "localhost:5001/team/app:2"},
		{Reference: "registry.k8s.io/pause@sha256:" + strings.Repeat("c", 64)},
	}})
	for _, tc := range []struct {
		image string
		want  bool
	}{
		{"nginx:1", true},
		{"library/nginx:1", true},
		{"docker.io/library/nginx:1", true},
		{"index.docker.io/library/nginx:1", true},
		{"127.0.0.1:5000/docker.io/library/nginx:1", true},
		{"10.0.0.1:5000/docker.io/library/nginx:1", true},
		{"nginx:2", false},
		{"nginx", false},
		{"quay.io/prometheus/prometheus:v3.1.0", true},
		{"quay.io/prometheus/prometheus@sha256:" + strings.Repeat("a", 64), true},
		{"quay.io/prometheus/prometheus:v3.1.0@sha256:" + strings.Repeat("b", 64), true},
		{"127.0.0.1:5000/quay.io/prometheus/prometheus@sha256:" + strings.Repeat("b", 64), true},
		{"quay.io/prometheus/prometheus@sha256:" + strings.Repeat("d", 64), false},
		{"127.0.0.1:5000/localhost_5001/team/app:2", true},
		{"localhost:5001/team/app:2", true},
		// another registry's host is part of the name, not a mirror
		{"192.0.2.9:5000/docker.io/library/nginx:1", false},
		{"registry.k8s.io/pause@sha256:" + strings.Repeat("c", 64), true},
		{"not a reference", false},
	} {
		if got := b.Has(tc.image); got != tc.want {
			t.Errorf("Has(%q) = %v, want %v", tc.image, got, tc.want)
		}
	}
}

func hasWorkload(a App, kind, name string) bool {
	for _, w := range a.Workloads {
		if w.Kind == kind && w.Name == name {
			return true
		}
	}
	return false
}
