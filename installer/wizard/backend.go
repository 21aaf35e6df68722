package wizard

import (
	"context"

	"github.com/perchedge/perch/bundles"
	"github.com/perchedge/perch/gpu"
	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/installer/preflight"
)

// Backend is everything the wizard needs from the machine. The model never
// calls it from Update: each call runs in a tea.Cmd and its result comes
// back as a message, so tests swap in a fake and the model stays pure.
type Backend interface {
	// Discover reads the hardware and runs the preflight checks.
	Discover(ctx context.Context) (*Hardware, error)
	// FindBundles lists bundles on mounted USB sticks and other media.
	FindBundles(ctx context.Context) ([]bundles.Found, error)
	// VerifyBundle checks every byte of a bundle against its signed
	// manifest without writing anything, reporting progress as it reads.
	VerifyBundle(ctx context.Context, src, publicKey string, progress func(done, total int64)) (*BundleInfo, error)
	// Save writes the config file on the target (under --root) and says
	// where it really is.
	Save(path string, data []byte) (string, error)
	// Plan says what an install of cfg would change, changing nothing.
	Plan(ctx context.Context, cfg config.Appliance) (*PlanResult, error)
	// Install runs the engine; its events go to sink as they happen.
	Install(ctx context.Context, cfg config.Appliance, sink engine.Sink) error
}

// Hardware is what the welcome screen shows about this machine.
type Hardware struct {
	Hostname      string
	CPUModel      string
	CPUs          int
	MemoryBytes   uint64
	DiskFreeBytes uint64
	GPUs          []gpu.Device
	GPUDriver     string
	// GPUNote says why there are no GPUs, or what went wrong reading them.
	GPUNote string
	// NvidiaRuntime is the nvidia-container-runtime k3s would find, or "".
	NvidiaRuntime string
	Preflight     []preflight.Result
	Interfaces    []Interface
	// DefaultIP is the address of the default route: what k3s advertises
	// when node.nodeIP is empty.
	DefaultIP string
}

// Interface is one address a node can advertise.
type Interface struct {
	Name string
	IP   string
}

// BundleInfo is a verified bundle as the bundle screen shows it.
type BundleInfo struct {
	Source     string
	Name       string
	Version    string
	Arch       string
	K3sVersion string
	Images     []string
	Charts     []string // "name version"
	Files      int
	Size       int64
	// Signer is the signature's trusted comment.
	Signer string
}

// PlanResult is a plan and the node it is for, as `perch plan` prints it.
type PlanResult struct {
	Node string // installer.Describe()
	Plan engine.Plan
}

// Text is exactly what `perch install --dry-run --config F` prints for the
// same config, so the wizard's plan can be compared with the file's; err
// is why the plan stopped, nil when it was made.
func (p *PlanResult) Text(err error) string {
	if err != nil {
		return "Plan for " + p.Node + "\n\n" + p.Plan.FailedText(err)
	}
	return "Plan for " + p.Node + "\n\n" + p.Plan.Text()
}
