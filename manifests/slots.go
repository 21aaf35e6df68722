package manifests

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Slot is one GPU worker of a cluster: one share of one device of one
// node. Its name stays while its node lives and has the device, so the
// streams on it stay too; the chart pins its worker to the node.
type Slot struct {
	Name     string `json:"name"`     // w0, w1, ...
	Node     string `json:"node"`     // the Node's name (kubernetes.io/hostname)
	Resource string `json:"resource"` // what its worker requests: nvidia.com/gpu, nvidia.com/mig-1g.10gb
}

// NodeGPUs is what one GPU node's device plugin advertises, before
// time-slicing.
type NodeGPUs struct {
	Node      string
	Resources []GPUResource
}

// PlaceSlots gives every share (replicas per device) of every node's
// devices a slot. A slot of prev keeps its name while its node still has
// a share of its resource to give; the shares left take the lowest free
// names, nodes in name order. So a node that joins adds slots and takes
// none from the others, and a node that is lost loses only its own.
func PlaceSlots(nodes []NodeGPUs, replicas int, prev []Slot) []Slot {
	type share struct{ node, resource string }
	free := map[share]int{}
	var order []share
	sorted := slices.Clone(nodes)
	slices.SortFunc(sorted, func(a, b NodeGPUs) int { return cmp.Compare(a.Node, b.Node) })
	for _, n := range sorted {
		for _, r := range n.Resources {
			k := share{n.Node, r.Name}
			if _, seen := free[k]; !seen {
				order = append(order, k)
			}
			free[k] += max(r.Count, 0) * max(replicas, 1)
		}
	}
	out := []Slot{} // none is no slot, not the chart's own slots
	used := map[string]bool{}
	for _, s := range prev {
		k := share{s.Node, s.Resource}
		if _, ok := slotNumber(s.Name); ok && !used[s.Name] && free[k] > 0 {
			free[k]--
			used[s.Name] = true
			out = append(out, s)
		}
	}
	next := 0
	for _, k := range order {
		for ; free[k] > 0; free[k]-- {
			for used[fmt.Sprintf("w%d", next)] {
				next++
			}
			name := fmt.Sprintf("w%d", next)
			used[name] = true
			out = append(out, Slot{Name: name, Node: k.node, Resource: k.resource})
		}
	}
	slices.SortFunc(out, func(a, b Slot) int {
		x, _ := slotNumber(a.Name)
		y, _ := slotNumber(b.Name)
		return cmp.Compare(x, y)
	})
	return out
}

// slotNumber is N of a slot named wN, written as the chart writes it.
func slotNumber(s string) (int, bool) {
	n, err := strconv.Atoi(strings.TrimPrefix(s, "w"))
	return n, strings.HasPrefix(s, "w") && err == nil && n >= 0 && s == fmt.Sprintf("w%d", n)
}

// slotNames are the names of slots, in order.
func slotNames(slots []Slot) []string {
	out := make([]string, 0, len(slots))
	for _, s := range slots {
		out = append(out, s.Name)
	}
	return out
}
