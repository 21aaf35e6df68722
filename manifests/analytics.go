package manifests

import (
	"errors"
	"fmt"
)

// Node is what the values depend on besides the config: found on the
// node or decided by the install.
type Node struct {
	GPUs int // GPUs pods may use; 0 = CPU-only profile
	// GPUResources are what the device plugin advertises for those GPUs,
	// before time-slicing: under MIG, the MIG instances (as nvidia.com/gpu
	// or nvidia.com/mig-<profile>). Empty: GPUs x nvidia.com/gpu.
	GPUResources []GPUResource
	Registry     string // host:port every image is pulled through, "" = upstream
	PullSecret   string // name of the pull Secret in the release namespace, "" = none
	// Previous is where each stream was assigned by the values deployed
	// now (stream -> worker slot), so a change moves as few as it can.
	Previous map[string]string
	// Slots are a cluster's GPU worker slots (PlaceSlots), each on its
	// node; nil: the slots follow GPUResources, on any GPU node.
	Slots []Slot
}

// GPUResource is one extended resource the device plugin advertises and
// how many devices carry it; each is a worker slot per time-slicing share.
type GPUResource struct {
	Name  string
	Count int
}

// AnalyticsValues computes the perch-analytics values for an appliance. It
// returns only what the config decides; everything else keeps the chart's
// defaults (values.yaml). Each stream carries its worker slot (Assign,
// from n.Previous); the chart honours a stream's slot while it is valid
// and has room, and places any other stream itself, so values edited by
// hand in a HelmChart still assign every stream once.
func AnalyticsValues(a *Appliance, n Node) (map[string]any, error) {
	if a == nil {
		return nil, errors.New("analytics values: no appliance config")
	}
	// what a node reports, not what a config says: config validation
	// cannot have caught these
	if n.GPUs < 0 {
		return nil, fmt.Errorf("analytics values: %d GPUs; the GPU probe must report 0 or more", n.GPUs)
	}
	replicas := a.GPU.Replicas
	if replicas < 1 {
		return nil, fmt.Errorf("analytics values: gpu.sharing.replicas is %d; set it to 1 (no sharing) or more", replicas)
	}
	gpus := n.GPUs
	if a.GPU.Off {
		gpus = 0
	}
	resources := []any{}
	if gpus > 0 {
		rs := n.GPUResources
		if len(rs) == 0 {
			rs = []GPUResource{{Name: "nvidia.com/gpu", Count: gpus}}
		}
		for _, r := range rs {
			if r.Count < 0 {
				return nil, fmt.Errorf("analytics values: %d devices of %s; the GPU probe must report 0 or more", r.Count, r.Name)
			}
			resources = append(resources, map[string]any{"name": r.Name, "count": r.Count})
		}
	}

	names := make([]string, 0, len(a.Pipeline.Streams))
	for _, s := range a.Pipeline.Streams {
		names = append(names, s.Name)
	}
	slotList := SlotNames(slots(gpus, replicas, n.GPUResources))
	workers := map[string]any{"perNode": false, "slots": []any{}}
	if gpus > 0 && n.Slots != nil {
		slotList = slotNames(n.Slots)
		placed := make([]any, 0, len(n.Slots))
		for _, s := range n.Slots {
			placed = append(placed, map[string]any{"name": s.Name, "node": s.Node, "resource": s.Resource})
		}
		workers = map[string]any{"perNode": true, "slots": placed}
	}
	slot := AssignTo(names, slotList, n.Previous)
	streams := make([]any, 0, len(a.Pipeline.Streams))
	for _, s := range a.Pipeline.Streams {
		streams = append(streams, map[string]any{"name": s.Name, "url": s.URL, "slot": slot[s.Name]})
	}

	pullSecrets := []any{}
	if n.PullSecret != "" {
		pullSecrets = append(pullSecrets, map[string]any{"name": n.PullSecret})
	}
	return map[string]any{
		"global": map[string]any{
			"imageRegistry":    n.Registry,
			"imagePullSecrets": pullSecrets,
		},
		"streams": streams,
		"gpu": map[string]any{
			"count":           gpus,
			"sharingReplicas": replicas,
			"resources":       resources,
		},
		"workers":    workers,
		"gateway":    map[string]any{"enabled": a.Pipeline.Enabled, "service": map[string]any{"type": a.ServiceType()}},
		"inference":  map[string]any{"enabled": a.Pipeline.Enabled},
		"nats":       natsValues(a),
		"monitoring": map[string]any{"enabled": a.Monitoring.Enabled},
	}, nil
}

// NATSHostPath is where JetStream keeps its store when k3s has no storage
// provisioner: local-path is what the chart's PVC would otherwise wait for.
const NATSHostPath = "/var/lib/perch/nats"

func natsValues(a *Appliance) map[string]any {
	v := map[string]any{"enabled": a.Pipeline.Enabled}
	if !a.StorageProvisioner() {
		v["jetstream"] = map[string]any{"hostPath": NATSHostPath}
	}
	return v
}
