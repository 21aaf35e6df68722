package gpu

import (
	"maps"
	"regexp"
	"strconv"
	"strings"
)

// Label keys. The nvidia.com/ names and values are GPU Feature Discovery's,
// so charts and nodeSelectors written for GFD work unchanged on Perch nodes
// (and GFD, if later enabled, writes the same values). Perch's own facts go
// under perch.dev/.
const (
	LabelPresent      = "nvidia.com/gpu.present"
	LabelProduct      = "nvidia.com/gpu.product"
	LabelCount        = "nvidia.com/gpu.count"
	LabelMemory       = "nvidia.com/gpu.memory"
	LabelFamily       = "nvidia.com/gpu.family"
	LabelComputeMajor = "nvidia.com/gpu.compute.major"
	LabelComputeMinor = "nvidia.com/gpu.compute.minor"
	// GFD takes cuda.driver-version.* from the driver version string
	// (550.54.15 → 550, 54, 15, revision kept as written: 550.90.07 → "07"),
	// and cuda.runtime-version.* from the CUDA version the driver supports
	// (12040 → 12, 4).
	LabelDriverMajor    = "nvidia.com/cuda.driver-version.major"
	LabelDriverMinor    = "nvidia.com/cuda.driver-version.minor"
	LabelDriverRevision = "nvidia.com/cuda.driver-version.revision"
	LabelDriverFull     = "nvidia.com/cuda.driver-version.full"
	LabelCUDAMajor      = "nvidia.com/cuda.runtime-version.major"
	LabelCUDAMinor      = "nvidia.com/cuda.runtime-version.minor"
	LabelCUDAFull       = "nvidia.com/cuda.runtime-version.full"

	LabelMIG   = "perch.dev/gpu.mig"   // true when any GPU has MIG mode enabled
	LabelMixed = "perch.dev/gpu.mixed" // true when the GPUs are not all the same model
)

// LabelPrefixes are the prefixes of every key Labels may return; whoever
// applies labels removes stale keys under them when a GPU is gone.
var LabelPrefixes = []string{"nvidia.com/gpu.", "nvidia.com/cuda.", "perch.dev/gpu."}

// Labels are the node labels for an inventory; none without GPUs.
//
// Like GFD, the product, family and compute capability are GPU 0's. The
// memory is the smallest GPU's (GFD uses the first): a pod that selects
// nvidia.com/gpu.memory can be given any GPU on the node, so the label must
// hold for all of them. On a node of one model the two agree;
// perch.dev/gpu.mixed says when they may not.
func Labels(inv *Inventory) map[string]string {
	if inv == nil || len(inv.GPUs) == 0 {
		return map[string]string{}
	}
	first := inv.GPUs[0]
	l := map[string]string{
		LabelPresent: "true",
		LabelCount:   strconv.Itoa(len(inv.GPUs)),
		LabelMIG:     "false",
		LabelMixed:   "false",
	}
	// what the servers render the cluster's worker slots from
	maps.Copy(l, inv.Capacity().labels())
	set := func(k, v string) {
		if v = labelValue(v); v != "" {
			l[k] = v
		}
	}
	set(LabelProduct, strings.ReplaceAll(first.Name, " ", "-"))

	minMem := first.MemoryMiB
	for _, d := range inv.GPUs {
		if d.MemoryMiB < minMem {
			minMem = d.MemoryMiB
		}
		if d.MIGEnabled {
			l[LabelMIG] = "true"
		}
		if d.Name != first.Name || d.ComputeMajor != first.ComputeMajor || d.ComputeMinor != first.ComputeMinor {
			l[LabelMixed] = "true"
		}
	}
	if minMem > 0 { // GFD omits the label when NVML reports no memory size
		l[LabelMemory] = strconv.FormatUint(minMem, 10)
	}
	if first.ComputeMajor > 0 { // as GFD: no architecture labels without a capability
		set(LabelFamily, first.Family)
		l[LabelComputeMajor] = strconv.Itoa(first.ComputeMajor)
		l[LabelComputeMinor] = strconv.Itoa(first.ComputeMinor)
	}

	if parts := strings.Split(inv.DriverVersion, "."); len(parts) == 2 || len(parts) == 3 {
		set(LabelDriverMajor, parts[0])
		set(LabelDriverMinor, parts[1])
		if len(parts) == 3 {
			set(LabelDriverRevision, parts[2])
		}
		set(LabelDriverFull, inv.DriverVersion)
	}
	if major, minor, ok := strings.Cut(inv.CUDADriverVersion, "."); ok {
		set(LabelCUDAMajor, major)
		set(LabelCUDAMinor, minor)
		set(LabelCUDAFull, inv.CUDADriverVersion)
	}
	return l
}

var notLabelChar = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// labelValue makes s a valid Kubernetes label value: at most 63 characters
// of [A-Za-z0-9._-], starting and ending with a letter or digit. It drops
// other characters (as GFD sanitises product names) rather than failing:
// a label is a hint for scheduling, the inventory keeps the exact string.
func labelValue(s string) string {
	s = notLabelChar.ReplaceAllString(s, "")
	if len(s) > 63 {
		s = s[:63]
	}
	return strings.TrimFunc(s, func(r rune) bool {
		return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
	})
}
