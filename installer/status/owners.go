package status

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"helm.sh/helm/v3/pkg/releaseutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"
)

// Bounds of one app's judgement: the API server may be slow or hold far
// more than Perch deployed, and status must answer anyway.
const (
	// maxOwnerDepth is how far an owner chain is followed: Pod ->
	// ReplicaSet -> Deployment is 2, an operator's resource made from the
	// release's a few more.
	maxOwnerDepth = 8
	// maxOwnerReads bounds the owners read one by one per judgement.
	maxOwnerReads = 256
	// listPage and maxListed bound each list of pods or workloads.
	listPage  = 500
	maxListed = 5000
	// maxNamespaces bounds the namespaces a release's pods are looked for in.
	maxNamespaces = 16
	// maxRelease bounds a release record once decompressed: helm's own
	// decoder reads without a bound.
	maxRelease = 64 << 20
)

// helmReleaseType is the type of the Secrets Helm keeps releases in.
const helmReleaseType = "helm.sh/release.v1"

// objKey names an object as owner references do, without its version:
// one object is served under several.
type objKey struct{ group, kind, ns, name string }

func keyOf(apiVersion, kind, ns, name string) objKey {
	gv, _ := schema.ParseGroupVersion(apiVersion)
	return objKey{gv.Group, kind, ns, name}
}

// releaseObjects are the objects of an app's Helm release, as its latest deployed
// record lists them.
type releaseObjects struct {
	version int
	objects map[objKey]bool
	// namespaces are where its objects are, the release's first.
	namespaces []string
}

// readRelease reads the latest deployed release record of name in ns,
// which helm-controller's helm wrote; nil when there is none yet.
func (c Checker) readRelease(ctx context.Context, name, ns string) (*releaseObjects, error) {
	l, err := c.Kube.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{
		LabelSelector: "owner=helm,status=deployed,name=" + name, Limit: 8})
	if err != nil {
		return nil, fmt.Errorf("list release secrets of %s in %s: %w", name, ns, err)
	}
	best, bestV := -1, 0
	for i, s := range l.Items {
		v, err := strconv.Atoi(s.Labels["version"])
		if s.Type != helmReleaseType || err != nil {
			continue
		}
		if v > bestV {
			best, bestV = i, v
		}
	}
	if best < 0 {
		return nil, nil
	}
	s := &l.Items[best]
	manifest, err := decodeRelease(s.Data["release"])
	if err != nil {
		return nil, fmt.Errorf("release secret %s/%s: %w", ns, s.Name, err)
	}
	r := &releaseObjects{version: bestV, objects: map[objKey]bool{}, namespaces: []string{ns}}
	for _, doc := range releaseutil.SplitManifests(manifest) {
		var o struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if yaml.Unmarshal([]byte(doc), &o) != nil || o.Kind == "" || o.Metadata.Name == "" {
			continue
		}
		// helm installs an object without a namespace into the release's
		ons := o.Metadata.Namespace
		if ons == "" {
			ons = ns
		}
		r.objects[keyOf(o.APIVersion, o.Kind, ons, o.Metadata.Name)] = true
		if !slices.Contains(r.namespaces, ons) && len(r.namespaces) < maxNamespaces {
			r.namespaces = append(r.namespaces, ons)
		}
	}
	return r, nil
}

// decodeRelease is the manifest of a release record: base64 of gzip of
// JSON, as Helm's secrets driver writes it.
func decodeRelease(data []byte) (string, error) {
	b, err := base64.StdEncoding.DecodeString(string(data))
	if err != nil {
		return "", fmt.Errorf("decode release: %w", err)
	}
	if bytes.HasPrefix(b, []byte{0x1f, 0x8b, 0x08}) {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return "", fmt.Errorf("decompress release: %w", err)
		}
		if b, err = io.ReadAll(io.LimitReader(zr, maxRelease+1)); err != nil {
			return "", fmt.Errorf("decompress release: %w", err)
		}
		if len(b) > maxRelease {
			return "", fmt.Errorf("release is more than %d MiB decompressed; refused", maxRelease>>20)
		}
	}
	var rel struct {
		Manifest string `json:"manifest"`
	}
	if err := json.Unmarshal(b, &rel); err != nil {
		return "", fmt.Errorf("decode release: %w", err)
	}
	return rel.Manifest, nil
}

// owned is what the tracer knows of an object: who it is and who owns it.
type owned struct {
	uid    string
	owners []metav1.OwnerReference
}

// tracer says which objects belong to an app: those of its release, those
// whose owner chain reaches one, and those with its release label.
type tracer struct {
	c        Checker
	instance string
	rel      *releaseObjects // nil: no release record yet, labels only
	known    map[objKey]owned
	verdict  map[objKey]bool
	reads    int
	// resources caches discovery, by group/version.
	resources map[string][]metav1.APIResource
}

func newTracer(c Checker, instance string, rel *releaseObjects) *tracer {
	return &tracer{c: c, instance: instance, rel: rel, known: map[objKey]owned{}, verdict: map[objKey]bool{}, resources: map[string][]metav1.APIResource{}}
}

// seen records an object already listed, so its owners need no read.
func (t *tracer) seen(k objKey, m *metav1.ObjectMeta) {
	t.known[k] = owned{uid: string(m.UID), owners: m.OwnerReferences}
}

// owns says whether the object k, with metadata m, is the app's.
func (t *tracer) owns(ctx context.Context, k objKey, m *metav1.ObjectMeta) (bool, error) {
	if m.Labels["app.kubernetes.io/instance"] == t.instance {
		return true, nil
	}
	if t.rel == nil {
		return false, nil
	}
	if t.rel.objects[k] {
		return true, nil
	}
	return t.reaches(ctx, k.ns, m.OwnerReferences, 1)
}

func (t *tracer) reaches(ctx context.Context, ns string, refs []metav1.OwnerReference, depth int) (bool, error) {
	if depth > maxOwnerDepth {
		return false, nil
	}
	for _, ref := range refs {
		k := keyOf(ref.APIVersion, ref.Kind, ns, ref.Name)
		if t.rel.objects[k] {
			return true, nil
		}
		if v, ok := t.verdict[k]; ok {
			if v {
				return true, nil
			}
			continue
		}
		t.verdict[k] = false // a cycle ends here
		n, ok, err := t.read(ctx, ref, k)
		if err != nil {
			return false, err
		}
		// an owner recreated under the same name is not the owner: the
		// garbage collector will remove what it left
		if !ok || (ref.UID != "" && n.uid != "" && n.uid != string(ref.UID)) {
			continue
		}
		yes, err := t.reaches(ctx, ns, n.owners, depth+1)
		if err != nil {
			return false, err
		}
		if yes {
			t.verdict[k] = true
			return true, nil
		}
	}
	return false, nil
}

// read reads the owner ref names. ok is false where it is gone or of a
// kind this client cannot read: the chain ends there.
func (t *tracer) read(ctx context.Context, ref metav1.OwnerReference, k objKey) (owned, bool, error) {
	if n, ok := t.known[k]; ok {
		return n, true, nil
	}
	if t.reads >= maxOwnerReads {
		return owned{}, false, fmt.Errorf("more than %d owners to read; judged no further", maxOwnerReads)
	}
	t.reads++
	n, err := t.typed(ctx, k)
	if errors.Is(err, errNoClient) {
		n, err = t.metadata(ctx, ref, k)
	}
	switch {
	case apierrors.IsNotFound(err) || apierrors.IsForbidden(err) || errors.Is(err, errNoClient):
		return owned{}, false, nil
	case err != nil:
		return owned{}, false, fmt.Errorf("read owner %s %s/%s: %w", k.kind, k.ns, k.name, err)
	}
	t.known[k] = n
	return n, true, nil
}

var errNoClient = errors.New("no client reads this kind")

// typed reads the owners pods usually have with the clientset, which
// needs no discovery.
func (t *tracer) typed(ctx context.Context, k objKey) (owned, error) {
	get := metav1.GetOptions{}
	cs := t.c.Kube
	switch k.group + "/" + k.kind {
	case "apps/ReplicaSet":
		return ownedOf(cs.AppsV1().ReplicaSets(k.ns).Get(ctx, k.name, get))
	case "apps/StatefulSet":
		return ownedOf(cs.AppsV1().StatefulSets(k.ns).Get(ctx, k.name, get))
	case "apps/DaemonSet":
		return ownedOf(cs.AppsV1().DaemonSets(k.ns).Get(ctx, k.name, get))
	case "apps/Deployment":
		return ownedOf(cs.AppsV1().Deployments(k.ns).Get(ctx, k.name, get))
	case "batch/Job":
		return ownedOf(cs.BatchV1().Jobs(k.ns).Get(ctx, k.name, get))
	case "batch/CronJob":
		return ownedOf(cs.BatchV1().CronJobs(k.ns).Get(ctx, k.name, get))
	}
	return owned{}, errNoClient
}

func ownedOf(o metav1.Object, err error) (owned, error) {
	if err != nil {
		return owned{}, err
	}
	return owned{uid: string(o.GetUID()), owners: o.GetOwnerReferences()}, nil
}

// metadata reads an owner of any other kind, a custom resource, by its
// metadata alone; discovery says which resource serves its kind.
func (t *tracer) metadata(ctx context.Context, ref metav1.OwnerReference, k objKey) (owned, error) {
	if t.c.Meta == nil {
		return owned{}, errNoClient
	}
	rs, ok := t.resources[ref.APIVersion]
	if !ok {
		l, err := t.c.Kube.Discovery().ServerResourcesForGroupVersion(ref.APIVersion)
		if err != nil && !apierrors.IsNotFound(err) {
			return owned{}, fmt.Errorf("discover %s: %w", ref.APIVersion, err)
		}
		if l != nil {
			rs = l.APIResources
		}
		t.resources[ref.APIVersion] = rs
	}
	i := slices.IndexFunc(rs, func(r metav1.APIResource) bool { return r.Kind == ref.Kind && !strings.Contains(r.Name, "/") })
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if i < 0 || err != nil {
		return owned{}, errNoClient
	}
	res := t.c.Meta.Resource(gv.WithResource(rs[i].Name))
	var m *metav1.PartialObjectMetadata
	if rs[i].Namespaced {
		m, err = res.Namespace(k.ns).Get(ctx, k.name, metav1.GetOptions{})
	} else {
		m, err = res.Get(ctx, k.name, metav1.GetOptions{})
	}
	return ownedOf(m, err)
}
