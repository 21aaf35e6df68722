package manifests

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"
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
	out := map[string]string{}
	if slots <= 0 || len(names) == 0 {
		return out
	}
	q, r := len(names)/slots, len(names)%slots
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
		if s, ok := prev[n]; ok && validSlot(s, slots) {
			take(n, s)
		}
	}
	type pair struct{ weight, stream, slot string }
	var pairs []pair
	for _, n := range names {
		if _, done := out[n]; done {
			continue
		}
		for i := range slots {
			slot := fmt.Sprintf("w%d", i)
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

func validSlot(s string, slots int) bool {
	n, err := strconv.Atoi(strings.TrimPrefix(s, "w"))
	return strings.HasPrefix(s, "w") && err == nil && n >= 0 && n < slots && s == fmt.Sprintf("w%d", n)
}
