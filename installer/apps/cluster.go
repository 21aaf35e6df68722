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
	"github.com/perchedge/perch/manifests"
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
	// live says the facts are the API's. Only then are the workers placed
	// per node (ready, slots); a node's own facts place them as a single
	// node's.
	live bool
	// ready are the GPU nodes that are Ready now, each with its capacity:
	// the nodes whose GPUs the workers can use.
	ready []nodeCapacity
	// slots are the worker slots of the deployed pipeline, each on its
	// node (workers.slots), from the HelmChart in the API.
	slots []manifests.Slot
}

// nodeCapacity is one node's GPUs.
type nodeCapacity struct {
	name string
	gpu  gpu.Capacity
}

// placement is where the workers go now: a slot per share of every
// device of every Ready GPU node, each slot keeping its name and its
// streams while its node stays (manifests.PlaceSlots). nil for facts
// that are not the API's.
func (f facts) placement(replicas int) []manifests.Slot {
	if !f.live {
		return nil
	}
	strategy := f.gpu.MIGStrategy()
	var nodes []manifests.NodeGPUs
	for _, n := range f.ready {
		ng := manifests.NodeGPUs{Node: n.name}
		for _, r := range n.gpu.ResourcesUnder(strategy) {
			ng.Resources = append(ng.Resources, manifests.GPUResource{Name: r.Name, Count: r.Count})
		}
		nodes = append(nodes, ng)
	}
	return manifests.PlaceSlots(nodes, replicas, f.slots)
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
		if nodeReady(n) && nc.GPUs() > 0 {
			f.ready = append(f.ready, nodeCapacity{n.Name, nc})
		}
	}
	f.live = true
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
		f.slots = slotsIn(hc.Spec.ValuesContent)
	}
	return f, nil
}

// nodeReady says whether the node's kubelet reports Ready: a node that
// lost its kubelet (NotReady) or its heartbeat (Unknown) runs no worker.
func nodeReady(n corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
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
