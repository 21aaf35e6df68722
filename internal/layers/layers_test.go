// Package layers holds the test that keeps Perch's imports pointing down:
// cmd → installer → step families → (converge, node) → (config, engine,
// host, preflight) → (bundles, gpu, airgap, manifests). docs/ARCHITECTURE.md
// explains the layers.
package layers

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/perchedge/perch/"

// rank is each package's layer; a package imports only lower layers, or
// its own layer where that layer allows it.
var rank = map[string]int{
	"bundles": 0, "gpu": 0, "airgap": 0, "airgap/load": 0, "airgap/registry": 0, "manifests": 0, "manifests/render": 0, "manifests/images": 0,
	"installer/config": 1, "installer/engine": 1, "installer/host": 1, "installer/preflight": 1, "installer/cluster": 1,
	"installer/converge": 2, "installer/node": 2, "installer/status": 2,
	"installer/k3s": 3, "installer/registry": 3, "installer/bundle": 3, "installer/gpunode": 3, "installer/apps": 3,
	"installer":        4,
	"installer/wizard": 5,
	"cmd/perch":        6,
}

// sameLayer says where a package may import one of its own layer: the
// libraries below the step families build on each other; step families
// never do, so that each can be read, and changed, alone.
var sameLayer = map[int]bool{0: true, 1: true, 2: true}

// knownUp are upward imports still to be removed, each with why it is
// left; the list only shrinks, and is empty now.
var knownUp = map[string]string{}

func TestImportsPointDown(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, module+"...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg, ok := strings.CutPrefix(f[0], module)
		if !ok || strings.HasPrefix(pkg, "internal/") {
			continue // test support: images, bundles and registries for tests
		}
		seen[pkg] = true
		from, ok := rank[pkg]
		if !ok {
			t.Errorf("package %s has no layer: add it to rank here and to docs/ARCHITECTURE.md", pkg)
			continue
		}
		for _, imp := range f[1:] {
			dep, ok := strings.CutPrefix(imp, module)
			if !ok {
				continue
			}
			if strings.HasPrefix(dep, "internal/") {
				t.Errorf("%s imports %s: test support is for tests only", pkg, dep)
				continue
			}
			to := rank[dep]
			edge := pkg + " -> " + dep
			switch {
			case knownUp[edge] != "":
			case to > from:
				t.Errorf("%s imports upward (layer %d imports layer %d)", edge, from, to)
			case to == from && !sameLayer[from]:
				t.Errorf("%s: packages of layer %d do not import each other", edge, from)
			}
		}
	}
	for pkg := range rank {
		if !seen[pkg] {
			t.Errorf("rank names %s, which is not a package any more", pkg)
		}
	}
}
