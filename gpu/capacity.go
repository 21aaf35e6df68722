package gpu

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Capacity is what the NVIDIA device plugin can advertise to pods: counted
// on one node from NVML (Inventory.Capacity), or over a cluster from the
// labels every node's install writes (CapacityFromLabels, Add). What the
// apps render from depends on the whole cluster, not on the server that
// renders them, so that every server renders the same bytes.
type Capacity struct {
	// Nodes that have GPUs.
	Nodes int
	// Whole are GPUs without MIG mode.
	Whole int
	// MIGGPUs are GPUs in MIG mode; each advertises its instances.
	MIGGPUs int
	// MIGInstances counts MIG instances by profile, spelled as the device
	// plugin's resource name wants it ("+" as ".": 1g.5gb.me).
	MIGInstances map[string]int
}

// Capacity counts an inventory's GPUs; a nil inventory has none.
func (inv *Inventory) Capacity() Capacity {
	var c Capacity
	if inv == nil || len(inv.GPUs) == 0 {
		return c
	}
	c.Nodes = 1
	for _, g := range inv.GPUs {
		if !g.MIGEnabled {
			c.Whole++
			continue
		}
		c.MIGGPUs++
		for _, m := range g.MIGDevices {
			if c.MIGInstances == nil {
				c.MIGInstances = map[string]int{}
			}
			c.MIGInstances[migResource(m.Profile)]++
		}
	}
	return c
}

// a resource name allows no "+" (1g.5gb+me); the device plugin's exact
// spelling of those is not checked here
func migResource(profile string) string { return strings.ReplaceAll(profile, "+", ".") }

// GPUs is how many physical GPUs there are.
func (c Capacity) GPUs() int { return c.Whole + c.MIGGPUs }

// Add is the capacity of two sets of nodes together.
func (c Capacity) Add(o Capacity) Capacity {
	out := Capacity{Nodes: c.Nodes + o.Nodes, Whole: c.Whole + o.Whole, MIGGPUs: c.MIGGPUs + o.MIGGPUs}
	for _, m := range []map[string]int{c.MIGInstances, o.MIGInstances} {
		for k, v := range m {
			if out.MIGInstances == nil {
				out.MIGInstances = map[string]int{}
			}
			out.MIGInstances[k] += v
		}
	}
	return out
}

// MIGStrategy is the device plugin's migStrategy: none without MIG; single
// when every GPU is in MIG mode (each MIG instance is advertised as
// nvidia.com/gpu, so pods need not change); mixed when only some are, the
// one strategy that can advertise both kinds.
func (c Capacity) MIGStrategy() string {
	switch {
	case c.MIGGPUs == 0:
		return "none"
	case c.Whole == 0:
		return "single"
	}
	return "mixed"
}

// Resource is one extended resource the device plugin advertises and how
// many devices carry it, before time-slicing.
type Resource struct {
	Name  string
	Count int
}

// ResourceGPU is the device plugin's resource for a whole GPU, and for a
// MIG instance under the single strategy.
const ResourceGPU = "nvidia.com/gpu"

// Resources are what the device plugin advertises under MIGStrategy:
// nvidia.com/gpu per GPU without MIG; per MIG instance under single; under
// mixed, nvidia.com/gpu per GPU without MIG and nvidia.com/mig-<profile>
// per MIG instance. A MIG GPU without instances advertises nothing. Names
// are sorted after nvidia.com/gpu so the worker slots, and the streams on
// them, stay put.
func (c Capacity) Resources() []Resource { return c.ResourcesUnder(c.MIGStrategy()) }

// ResourcesUnder is Resources under a given strategy: one node's share of
// what a cluster's device plugin, configured for all of them, advertises.
func (c Capacity) ResourcesUnder(strategy string) []Resource {
	if c.GPUs() == 0 {
		return nil
	}
	var out []Resource
	switch strategy {
	case "none":
		return []Resource{{ResourceGPU, c.Whole}}
	case "single":
		n := 0
		for _, v := range c.MIGInstances {
			n += v
		}
		return []Resource{{ResourceGPU, n}}
	}
	out = append(out, Resource{ResourceGPU, c.Whole})
	for _, p := range slices.Sorted(maps.Keys(c.MIGInstances)) {
		out = append(out, Resource{"nvidia.com/mig-" + p, c.MIGInstances[p]})
	}
	return out
}

// Capacity labels: what a node's install writes of its GPUs for the
// servers that render the cluster's apps. Under LabelPrefixes, so a node
// that loses its GPUs loses them too.
const (
	LabelWhole   = "perch.dev/gpu.whole"
	LabelMIGGPUs = "perch.dev/gpu.mig-gpus"
	// LabelMIGPrefix + profile counts a node's MIG instances of a profile.
	LabelMIGPrefix = "perch.dev/gpu.mig-instances."
)

// labels are one node's capacity as its labels.
func (c Capacity) labels() map[string]string {
	l := map[string]string{LabelWhole: strconv.Itoa(c.Whole), LabelMIGGPUs: strconv.Itoa(c.MIGGPUs)}
	for p, n := range c.MIGInstances {
		l[LabelMIGPrefix+p] = strconv.Itoa(n)
	}
	return l
}

// maxLabelCount bounds a count read from a node label: labels are written
// by whoever may edit Nodes, and no node has more.
const maxLabelCount = 1024

// CapacityFromLabels reads a node's capacity from the labels its install
// wrote (none without nvidia.com/gpu.present=true). A node labelled by
// hand, or by an older Perch that wrote no capacity, counts
// nvidia.com/gpu.count whole GPUs.
func CapacityFromLabels(l map[string]string) (Capacity, error) {
	if l[LabelPresent] != "true" {
		return Capacity{}, nil
	}
	count := func(k string) (int, bool, error) {
		v, ok := l[k]
		if !ok {
			return 0, false, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > maxLabelCount {
			return 0, true, fmt.Errorf("label %s=%q is not a count from 0 to %d; run perch install on the node again to rewrite it", k, v, maxLabelCount)
		}
		return n, true, nil
	}
	c := Capacity{Nodes: 1}
	var err error
	var ok bool
	if c.Whole, ok, err = count(LabelWhole); err != nil {
		return Capacity{}, err
	}
	if !ok {
		if c.Whole, _, err = count(LabelCount); err != nil {
			return Capacity{}, err
		}
		return c, nil
	}
	if c.MIGGPUs, _, err = count(LabelMIGGPUs); err != nil {
		return Capacity{}, err
	}
	for _, k := range slices.Sorted(maps.Keys(l)) {
		p, isMIG := strings.CutPrefix(k, LabelMIGPrefix)
		if !isMIG {
			continue
		}
		n, _, err := count(k)
		if err != nil {
			return Capacity{}, err
		}
		if c.MIGInstances == nil {
			c.MIGInstances = map[string]int{}
		}
		c.MIGInstances[p] = n
	}
	return c, nil
}
