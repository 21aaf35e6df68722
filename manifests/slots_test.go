package manifests

import (
	"maps"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

func gpuNode(name string, n int) NodeGPUs {
	return NodeGPUs{Node: name, Resources: []GPUResource{{Name: "nvidia.com/gpu", Count: n}}}
}

func TestPlaceSlots(t *testing.T) {
	two := PlaceSlots([]NodeGPUs{gpuNode("gpu-b", 1), gpuNode("gpu-a", 1)}, 2, nil)
	want := []Slot{
		{"w0", "gpu-a", "nvidia.com/gpu"}, {"w1", "gpu-a", "nvidia.com/gpu"},
		{"w2", "gpu-b", "nvidia.com/gpu"}, {"w3", "gpu-b", "nvidia.com/gpu"},
	}
	if !slices.Equal(two, want) {
		t.Fatalf("two nodes, two shares each: %v, want %v", two, want)
	}
	// the first node lost: the second keeps its names
	if got := PlaceSlots([]NodeGPUs{gpuNode("gpu-b", 1)}, 2, two); !slices.Equal(got, want[2:]) {
		t.Errorf("gpu-a lost: %v, want %v", got, want[2:])
	}
	// a node joins where one was lost: it takes the free names, the
	// others keep theirs
	got := PlaceSlots([]NodeGPUs{gpuNode("gpu-b", 1), gpuNode("gpu-c", 1)}, 2, want[2:])
	if want := []Slot{
		{"w0", "gpu-c", "nvidia.com/gpu"}, {"w1", "gpu-c", "nvidia.com/gpu"},
		{"w2", "gpu-b", "nvidia.com/gpu"}, {"w3", "gpu-b", "nvidia.com/gpu"},
	}; !slices.Equal(got, want) {
		t.Errorf("gpu-c joins: %v, want %v", got, want)
	}
	// a node with fewer devices than its slots keeps as many as it has
	if got := PlaceSlots([]NodeGPUs{gpuNode("gpu-a", 1), gpuNode("gpu-b", 1)}, 1, two); !slices.Equal(got, []Slot{two[0], two[2]}) {
		t.Errorf("sharing from 2 to 1: %v, want %v", got, []Slot{two[0], two[2]})
	}
	// MIG: each profile's instances are slots of their own resource; a
	// slot of a resource the node no longer has is dropped
	mig := NodeGPUs{Node: "gpu-a", Resources: []GPUResource{{"nvidia.com/mig-1g.10gb", 2}, {"nvidia.com/gpu", 1}}}
	got = PlaceSlots([]NodeGPUs{mig}, 1, two)
	if want := []Slot{
		{"w0", "gpu-a", "nvidia.com/gpu"}, {"w1", "gpu-a", "nvidia.com/mig-1g.10gb"}, {"w2", "gpu-a", "nvidia.com/mig-1g.10gb"},
	}; !slices.Equal(got, want) {
		t.Errorf("MIG: %v, want %v", got, want)
	}
	// names that are not the chart's, or twice, are not kept
	bad := []Slot{{"x1", "gpu-a", "nvidia.com/gpu"}, {"w05", "gpu-a", "nvidia.com/gpu"}, {"w9", "gpu-a", "nvidia.com/gpu"}, {"w9", "gpu-a", "nvidia.com/gpu"}}
	if got := PlaceSlots([]NodeGPUs{gpuNode("gpu-a", 2)}, 1, bad); !slices.Equal(got, []Slot{{"w0", "gpu-a", "nvidia.com/gpu"}, {"w9", "gpu-a", "nvidia.com/gpu"}}) {
		t.Errorf("bad names: %v", got)
	}
	if got := PlaceSlots(nil, 1, two); len(got) != 0 {
		t.Errorf("no GPU node: %v", got)
	}
}

// A cluster's slots through the whole chain: values, the chart, the
// workers. Each worker is pinned to its slot's node and requests its
// resource; when a node is lost, only the streams it had move, each to
// one surviving worker, balanced.
func TestClusterSlotsInChart(t *testing.T) {
	c := loadChart(t)
	a := appliance(func(a *Appliance) { a.Pipeline.Streams = streams(8); a.GPU.Replicas = 2 })
	render2 := func(slots []Slot, prev map[string]string) (map[string]string, map[string]*appsv1.Deployment) {
		t.Helper()
		docs := render(t, c, values(t, a, Node{GPUs: 2, Slots: slots, Previous: prev}), capabilities(false))
		owner := map[string]string{}
		for slot, names := range workerStreams(t, docs) {
			for _, n := range names {
				if o, twice := owner[n]; twice {
					t.Fatalf("stream %s in workers %s and %s", n, o, slot)
				}
				owner[n] = slot
			}
		}
		if len(owner) != len(a.Pipeline.Streams) {
			t.Fatalf("%d of %d streams in a worker: %v", len(owner), len(a.Pipeline.Streams), owner)
		}
		deps := map[string]*appsv1.Deployment{}
		for _, d := range docs {
			if d.kind() == "Deployment" && d.obj["metadata"].(map[string]any)["labels"].(map[string]any)["perch.dev/worker-slot"] != nil {
				dep := strict[appsv1.Deployment](t, d)
				deps[dep.Labels["perch.dev/worker-slot"]] = dep
			}
		}
		for _, s := range slots {
			dep, ok := deps[s.Name]
			if !ok {
				continue // a slot with no stream has no worker
			}
			spec := dep.Spec.Template.Spec
			if got := spec.NodeSelector["kubernetes.io/hostname"]; got != s.Node {
				t.Errorf("worker %s is pinned to %q, want %s", s.Name, got, s.Node)
			}
			if q := spec.Containers[0].Resources.Limits[corev1.ResourceName(s.Resource)]; q.Value() != 1 {
				t.Errorf("worker %s requests %v of %s, want 1", s.Name, q.Value(), s.Resource)
			}
		}
		return owner, deps
	}
	both := PlaceSlots([]NodeGPUs{gpuNode("gpu-a", 1), gpuNode("gpu-b", 1)}, 2, nil)
	before, deps := render2(both, nil)
	if len(deps) != 4 {
		t.Fatalf("%d workers for 4 slots and 8 streams", len(deps))
	}
	checkBalancedOn(t, before, 8, slotNames(both))

	onlyB := PlaceSlots([]NodeGPUs{gpuNode("gpu-b", 1)}, 2, both)
	after, _ := render2(onlyB, before)
	checkBalancedOn(t, after, 8, slotNames(onlyB))
	onB := map[string]bool{}
	for _, s := range onlyB {
		onB[s.Name] = true
	}
	for name, slot := range before {
		if onB[slot] && after[name] != slot {
			t.Errorf("stream %s moved from %s, a slot of the node that stayed, to %s", name, slot, after[name])
		}
		if !onB[after[name]] {
			t.Errorf("stream %s is on %s, not a slot of gpu-b", name, after[name])
		}
	}
	// what the chart places by itself (values edited by hand, no stream
	// slots) is what AssignTo computes
	vals := values(t, a, Node{GPUs: 2, Slots: both})
	for _, st := range vals["streams"].([]any) {
		delete(st.(map[string]any), "slot")
	}
	owner := map[string]string{}
	for slot, names := range workerStreams(t, render(t, c, vals, capabilities(false))) {
		for _, n := range names {
			owner[n] = slot
		}
	}
	var names []string
	for _, s := range a.Pipeline.Streams {
		names = append(names, s.Name)
	}
	if want := AssignTo(names, slotNames(both), nil); !maps.Equal(owner, want) {
		t.Errorf("the chart ranks %v, AssignTo %v", owner, want)
	}
}
