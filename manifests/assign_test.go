package manifests

import (
	"fmt"
	"io/fs"
	"slices"
	"testing"

	"go.yaml.in/yaml/v3"
)

func camNames(n int) []string {
	var out []string
	for i := 1; i <= n; i++ {
		out = append(out, fmt.Sprintf("cam-%02d", i))
	}
	return out
}

// TestAssignMovesTheFewest: over 1-8 slots and 0-20 streams, a slot added
// or removed moves exactly the fewest streams balance allows, and every
// result is balanced (the chart-level test covers streams added and
// removed).
func TestAssignMovesTheFewest(t *testing.T) {
	for slots := 1; slots <= 8; slots++ {
		for n := 0; n <= 20; n++ {
			names := camNames(n)
			base := Assign(names, slots, nil)
			checkBalanced(t, base, n, slots)
			for _, to := range []int{slots + 1, slots - 1} {
				if to == 0 {
					continue
				}
				got := Assign(names, to, base)
				checkBalanced(t, got, n, to)
				m := 0
				for s, slot := range base {
					if got[s] != slot {
						m++
					}
				}
				if want := fewestMoves(base, to); m != want {
					t.Errorf("%d streams, %d -> %d slots: %d moved, the fewest is %d", n, slots, to, m, want)
				}
			}
		}
	}
}

func checkBalanced(t *testing.T, owner map[string]string, n, slots int) {
	t.Helper()
	checkBalancedOn(t, owner, n, SlotNames(slots))
}

// checkBalancedOn: every stream on one of slots, every slot within one
// stream of the mean.
func checkBalancedOn(t *testing.T, owner map[string]string, n int, slots []string) {
	t.Helper()
	if len(owner) != n {
		t.Fatalf("%d of %d streams assigned", len(owner), n)
	}
	load := map[string]int{}
	for _, s := range owner {
		if !slices.Contains(slots, s) {
			t.Fatalf("stream on %s, not one of the slots %v", s, slots)
		}
		load[s]++
	}
	lo, hi := n, 0
	for _, s := range slots {
		lo, hi = min(lo, load[s]), max(hi, load[s])
	}
	if n > 0 && hi-lo > 1 {
		t.Errorf("%d streams on %d slots: loads from %d to %d", n, len(slots), lo, hi)
	}
}

// TestAssignSlotsMatchChart: Assign counts the chart's slots; the CPU
// profile's come from its values.yaml.
func TestAssignSlotsMatchChart(t *testing.T) {
	raw, err := fs.ReadFile(AnalyticsChart(), "values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Inference struct {
			CPUProfile struct{ Workers int } `yaml:"cpuProfile"`
		}
	}
	if err := yaml.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if v.Inference.CPUProfile.Workers != cpuWorkers {
		t.Errorf("values.yaml cpuProfile.workers %d, Assign counts %d", v.Inference.CPUProfile.Workers, cpuWorkers)
	}
	if n := slots(2, 4, nil); n != 8 {
		t.Errorf("2 GPUs x 4 shares: %d slots", n)
	}
	if n := slots(1, 2, []GPUResource{{"nvidia.com/mig-1g.10gb", 7}}); n != 14 {
		t.Errorf("7 MIG instances x 2 shares: %d slots", n)
	}
}

// A stream's slot that is not a slot any more, or not a slot at all, is
// ignored: the stream is placed anew.
func TestAssignIgnoresBadSlots(t *testing.T) {
	got := Assign([]string{"a", "b"}, 2, map[string]string{"a": "w7", "b": "x1"})
	checkBalanced(t, got, 2, 2)
}
