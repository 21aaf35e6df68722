package installer

import (
	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/installer/gpunode"
)

// steps are the install, in order. Each step compares the node with the
// config and changes only what differs.
func (i *Installer) steps() []engine.Step {
	n, k, reg, b := i.node, i.k3s, i.registry, i.bundle
	var l stepList
	l.add(k.Preflight())
	// a node that cannot give pods its GPUs is refused before anything is
	// written
	l.addIf(n.Cfg.GPU.Mode != config.GPUOff, gpunode.Check(n))
	// the config against the bundle, still before anything is written; on
	// servers, whose registry serves the cluster the bundle's images
	l.addIf(b != nil && n.Server(), i.apps.Images(b.Charts))
	l.addIf(b != nil, b.Step())
	l.add(k.PerchBinary(), k.Binary())
	l.addIf(k.HasAirgapImages(), k.AirgapImages())
	// the registry up and its images in before k3s reads registries.yaml
	if reg != nil {
		l.addIf(!reg.OnServer(), reg.Trust())
		l.addIf(reg.OnServer(), reg.TLS(), reg.Auth(), reg.Service(), reg.Ready())
		l.addIf(reg.OnServer() && reg.HasImages(), reg.Images())
	}
	l.add(k.Config(), k.Service(), k.Ready())
	// the Node object exists once k3s is ready
	l.addIf(n.RunsAgent(), gpunode.Labels(n))
	// every server writes the same manifests; k3s applies them once. Its
	// controller then keeps the workers on the Ready GPU nodes.
	l.addIf(n.Server(), k.Kubeconfig(), i.apps.Deploy(), i.apps.Controller(), i.apps.Ready(), gpunode.Validate(n))
	return l
}

// stepList is the install written in the order it runs.
type stepList []engine.Step

func (l *stepList) add(s ...engine.Step) { *l = append(*l, s...) }

func (l *stepList) addIf(cond bool, s ...engine.Step) {
	if cond {
		l.add(s...)
	}
}
