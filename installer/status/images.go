package status

import (
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/perchedge/perch/airgap"
	"github.com/perchedge/perch/bundles"
)

// BundleImages are the images of the installed bundles, which are all the
// appliance registry holds, and those of k3s's air-gap tarball: an image
// not among them cannot be pulled offline, however long the kubelet
// retries.
type BundleImages struct {
	names []string // NAME VERSION of each bundle
	// refs are repository:tag and repository@digest, the repository in
	// airgap's layout (docker.io/library/nginx), so that every spelling of
	// one image is one key.
	refs       map[string]bool
	registries []string
}

// NewBundleImages are the images of ms, as pods name them: by their
// upstream references, or through the appliance registry at one of
// registries (host:port), where render writes REGISTRY/<airgap
// repository>.
func NewBundleImages(registries []string, ms ...*bundles.Manifest) *BundleImages {
	b := &BundleImages{refs: map[string]bool{}, registries: registries}
	for _, m := range ms {
		if m.Name != "" {
			b.names = append(b.names, m.Name+" "+m.Version)
		}
		for _, im := range m.Images {
			ref, err := name.ParseReference(im.Reference)
			if err != nil {
				continue
			}
			repo := airgap.Repository(ref)
			b.refs[repo+sep(ref)+ref.Identifier()] = true
			// the tag of a tag@digest reference is what a chart may name
			if tag, _, ok := strings.Cut(im.Reference, "@"); ok {
				if t, err := name.NewTag(tag); err == nil {
					b.refs[repo+":"+t.TagStr()] = true
				}
			}
			for _, d := range []string{im.Digest, im.IndexDigest} {
				if d != "" {
					b.refs[repo+"@"+d] = true
				}
			}
		}
		// k3s imports its air-gap tarball into containerd: those images
		// are on the node without the registry
		for _, im := range m.K3s.Images {
			if ref, err := name.ParseReference(im); err == nil {
				b.refs[airgap.Repository(ref)+sep(ref)+ref.Identifier()] = true
			}
		}
	}
	return b
}

func sep(ref name.Reference) string {
	if _, ok := ref.(name.Digest); ok {
		return "@"
	}
	return ":"
}

// Has says whether image is one of the bundles': "nginx:1" is
// docker.io/library/nginx:1, and REGISTRY/docker.io/library/nginx:1 is
// the same image through the appliance registry.
func (b *BundleImages) Has(image string) bool {
	ref, err := name.ParseReference(image)
	if err != nil {
		return false
	}
	repo := airgap.Repository(ref)
	if slices.Contains(b.registries, ref.Context().RegistryStr()) {
		// already in airgap's layout: its first part is the upstream host
		repo = ref.Context().RepositoryStr()
	}
	return b.refs[repo+sep(ref)+ref.Identifier()]
}

// String names the bundles, for messages.
func (b *BundleImages) String() string {
	return strings.Join(b.names, ", ")
}
