package manifests

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
)

// cpuWorkers is inference.cpuProfile.workers in the chart's values.yaml:
// the CPU-only profile's slots (TestAssignSlotsMatchChart keeps them equal).
const cpuWorkers = 1

// Slots is how many worker slots the chart makes for these values: one per
// advertised GPU device and time-slicing share, or the CPU profile's.
func slots(gpus, replicas int, resources []GPUResource) int {
	if gpus <= 0 {
		return cpuWorkers
	}
	if len(resources) == 0 {
		resources = []GPUResource{{Name: "nvidia.com/gpu", Count: gpus}}
	}
	n := 0
	for _, r := range resources {
		n += r.Count * replicas
	}
	return n
}

// Assign gives each stream a worker slot (w0..w(slots-1)) as the chart's
// perch-analytics.assignment does, from where the streams were before
// (prev, stream -> slot): every slot within one stream of the mean, and
// as few streams moved as that allows. A stream keeps its slot while the
// slot exists and has room; a slot holds floor(streams/slots), or one
// more while fewer than streams%slots slots do, so of the streams that
// were on one slot the most that can stay do. Since any slot with more
// than the floor may take the one extra, which of them takes it does not
// change how many stay. The rest go where the chart's ranking puts them
// (sha256 of "stream/slot", highest first, into slots with room), which
// with no prev is the chart's own assignment.
//
// Adding a stream moves no other; removing one moves at most one (a slot
// left two below another takes one over); a slot added or removed moves
// only what the new slot takes or the old one held, plus what balance
// then needs (TestAssignMovesTheFewest).
func Assign(names []string, slots int, prev map[string]string) map[string]string {
	return AssignTo(names, SlotNames(slots), prev)
}

// SlotNames are the chart's own slots for a count: w0..w(n-1).
func SlotNames(n int) []string {
	out := make([]string, 0, max(n, 0))
	for i := range n {
		out = append(out, fmt.Sprintf("w%d", i))
	}
	return out
}

// AssignTo is Assign over named slots: the cluster's slots (PlaceSlots),
// whose names stay with their node while it lives, so the streams of a
// node that is lost are the only ones that move.
func AssignTo(names []string, slots []string, prev map[string]string) map[string]string {
	out := map[string]string{}
	if len(slots) == 0 || len(names) == 0 {
		return out
	}
	valid := map[string]bool{}
	for _, s := range slots {
		valid[s] = true
	}
	q, r := len(names)/len(slots), len(names)%len(slots)
	load, full := map[string]int{}, 0
	take := func(name, slot string) bool {
		l := load[slot]
		if l < q || l == q && full < r {
			if l == q {
				full++
			}
			load[slot]++
			out[name] = slot
			return true
		}
		return false
	}
	for _, n := range names {
		if s, ok := prev[n]; ok && valid[s] {
			take(n, s)
		}
	}
	type pair struct{ weight, stream, slot string }
	var pairs []pair
	for _, n := range names {
		if _, done := out[n]; done {
			continue
		}
		for _, slot := range slots {
			sum := sha256.Sum256([]byte(n + "/" + slot))
			pairs = append(pairs, pair{hex.EncodeToString(sum[:]), n, slot})
		}
	}
	sort.Slice(pairs, func(i, j int) bool { return pairs[i].weight > pairs[j].weight })
	for _, p := range pairs {
		if _, done := out[p.stream]; !done {
			take(p.stream, p.slot)
		}
	}
	return out
}
