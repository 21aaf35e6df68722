package gpu

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func migGPU(profiles ...string) Device {
	d := Device{Name: "A100", MIGEnabled: true}
	for _, p := range profiles {
		d.MIGDevices = append(d.MIGDevices, MIGDevice{Profile: p})
	}
	return d
}

// A node's labels say what its inventory does: the servers render the
// cluster's apps from them, so they must give back the same capacity.
func TestCapacityLabelsRoundTrip(t *testing.T) {
	for name, inv := range map[string]*Inventory{
		"whole":  {GPUs: []Device{{Name: "L4"}, {Name: "L4"}}},
		"single": {GPUs: []Device{migGPU("1g.5gb", "1g.5gb"), migGPU("3g.20gb")}},
		"mixed":  {GPUs: []Device{{Name: "A100"}, migGPU("1g.5gb+me", "2g.10gb"), migGPU()}},
	} {
		want := inv.Capacity()
		got, err := CapacityFromLabels(Labels(inv))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: labels give %+v, the inventory %+v", name, got, want)
		}
		checkLabels(t, Labels(inv))
	}
}

func TestCapacityResources(t *testing.T) {
	for _, tt := range []struct {
		name string
		c    Capacity
		want string
	}{
		{"none", Capacity{}, "[]"},
		{"whole", Capacity{Nodes: 2, Whole: 3}, "[{nvidia.com/gpu 3}]"},
		{"single", Capacity{Nodes: 1, MIGGPUs: 2, MIGInstances: map[string]int{"1g.5gb": 7, "3g.20gb": 2}}, "[{nvidia.com/gpu 9}]"},
		// one whole GPU on one node and MIG on another: the cluster's
		// device plugin must run mixed, which advertises MIG by profile
		{"mixed over nodes", Capacity{Nodes: 1, Whole: 1}.Add(Capacity{Nodes: 1, MIGGPUs: 1, MIGInstances: map[string]int{"2g.10gb": 1, "1g.5gb.me": 2}}),
			"[{nvidia.com/gpu 1} {nvidia.com/mig-1g.5gb.me 2} {nvidia.com/mig-2g.10gb 1}]"},
	} {
		if got := fmt.Sprint(tt.c.Resources()); got != tt.want {
			t.Errorf("%s: Resources() = %s, want %s", tt.name, got, tt.want)
		}
	}
}

// Node labels are input: whoever may edit Nodes may write anything.
func TestCapacityFromBadLabels(t *testing.T) {
	base := map[string]string{LabelPresent: "true", LabelWhole: "1", LabelMIGGPUs: "0"}
	for _, bad := range []map[string]string{
		{LabelWhole: "-1"}, {LabelWhole: "many"}, {LabelMIGGPUs: "99999999999999999999"},
		{LabelMIGPrefix + "1g.5gb": "2000"},
	} {
		l := map[string]string{}
		for k, v := range base {
			l[k] = v
		}
		for k, v := range bad {
			l[k] = v
		}
		_, err := CapacityFromLabels(l)
		if err == nil || !strings.Contains(err.Error(), "run perch install on the node again") {
			t.Errorf("%v: got %v, want an error that says how to fix it", bad, err)
		}
	}
	// a node labelled before capacity labels existed: its GPU count
	c, err := CapacityFromLabels(map[string]string{LabelPresent: "true", LabelCount: "4"})
	if err != nil || c.Whole != 4 || c.Nodes != 1 {
		t.Errorf("legacy labels: %+v, %v", c, err)
	}
	if c, _ := CapacityFromLabels(map[string]string{LabelWhole: "4"}); c.GPUs() != 0 {
		t.Errorf("a node without gpu.present counts %d GPUs", c.GPUs())
	}
}
