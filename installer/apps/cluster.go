package apps

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"time"

	helmclient "github.com/k3s-io/helm-controller/pkg/generated/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/perchedge/perch/gpu"
	"github.com/perchedge/perch/manifests/render"
)

// facts are what the apps render from that belong to the whole cluster,
// not to the server rendering them: every server of a cluster writes its
// own server/manifests, and k3s applies whichever changed last, so two
// servers that rendered different bytes would undo each other's HelmChart.
// They come from the API, which every server shares.
type facts struct {
	// gpu is what every GPU node advertises together, from the labels each
	// node's install wrote (gpu.CapacityFromLabels): the worker slots are
	// the cluster's, whichever node has the GPUs.
	gpu gpu.Capacity
	// assigned is where the deployed pipeline has each stream, from the
	// HelmChart in the API: a server that never rendered it before keeps
	// the others' assignment.
	assigned map[string]string
	// site names the appliance in a central store when the config does
	// not: the cluster's oldest server, the one that started it, rather
	// than whichever server renders.
	site string
}

// clients reach the cluster's API.
type clients struct {
	kube kubernetes.Interface
	helm helmclient.Interface
}

func (a *Apps) clients() (clients, error) {
	if a.kube != nil {
		return *a.kube, nil
	}
	k, err := a.n.Kube(10 * time.Second)
	if err != nil {
		return clients{}, err
	}
	h, err := (&appsStep{a}).helmCharts()
	return clients{k, h}, err
}

// errClusterDown is a cluster whose API does not answer although k3s
// wrote its kubeconfig: rendering from this node's facts alone could undo
// what the cluster deployed.
var errClusterDown = errors.New("the cluster's API does not answer")

// clusterFacts reads the facts from the API. Before k3s has written its
// kubeconfig (a first plan) they are this node's own: its GPUs, which
// its labels will say once it registers, and its last manifest. With
// needLive, an API that does not answer is an error, not a fallback.
func (s *appsStep) clusterFacts(ctx context.Context, needLive bool) (facts, error) {
	local := func() facts {
		f := facts{assigned: s.assignedLocal()}
		if s.a.n.RunsAgent() {
			inv, _, _ := s.a.n.GPUs(ctx) // the gpu step said what is wrong
			f.gpu = inv.Capacity()
		}
		return f
	}
	c, err := s.a.clients()
	if errors.Is(err, fs.ErrNotExist) {
		return local(), nil
	}
	if err != nil {
		return facts{}, err
	}
	f, err := readFacts(ctx, c)
	if err == nil {
		return f, nil
	}
	if !needLive {
		return local(), nil
	}
	return facts{}, fmt.Errorf("%w: %v; check the k3s service (perch status) and run perch install again", errClusterDown, err)
}

// readFacts lists the GPU nodes and the deployed pipeline.
func readFacts(ctx context.Context, c clients) (facts, error) {
	var f facts
	nodes, err := c.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: gpu.LabelPresent + "=true"})
	if err != nil {
		return facts{}, fmt.Errorf("list nodes: %w", err)
	}
	items := slices.Clone(nodes.Items)
	slices.SortFunc(items, func(a, b corev1.Node) int { return cmp.Compare(a.Name, b.Name) })
	for _, n := range items {
		if n.DeletionTimestamp != nil {
			continue
		}
		nc, err := gpu.CapacityFromLabels(n.Labels)
		if err != nil {
			return facts{}, fmt.Errorf("node %s: %w", n.Name, err)
		}
		f.gpu = f.gpu.Add(nc)
	}
	servers, err := c.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: controlPlaneLabel + "=true"})
	if err != nil {
		return facts{}, fmt.Errorf("list servers: %w", err)
	}
	if first := oldest(servers.Items); first != nil {
		f.site = first.Name
	}
	hc, err := c.helm.HelmV1().HelmCharts(render.HelmChartNamespace).Get(ctx, render.Analytics, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return facts{}, fmt.Errorf("read HelmChart %s: %w", render.Analytics, err)
	default:
		f.assigned = assignedIn(hc.Spec.ValuesContent)
	}
	return f, nil
}

// controlPlaneLabel is on every k3s server's Node.
const controlPlaneLabel = "node-role.kubernetes.io/control-plane"

// oldest is the node created first, by name among equals; nil for none.
func oldest(nodes []corev1.Node) *corev1.Node {
	var o *corev1.Node
	for i := range nodes {
		n := &nodes[i]
		if o == nil || n.CreationTimestamp.Before(&o.CreationTimestamp) ||
			n.CreationTimestamp.Equal(&o.CreationTimestamp) && n.Name < o.Name {
			o = n
		}
	}
	return o
}
