// Package airgap serves the appliance's own registry and fills it from
// bundles, so every image a node pulls comes from the appliance.
package airgap

import (
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Repository is where an image lives in the appliance registry: under its
// upstream registry's host, so docker.io/library/nginx and
// quay.io/library/nginx never collide. A port's colon is not allowed in a
// repository name and becomes "_". registries.yaml rewrites every mirrored
// registry's paths to the same prefix, so a pod asking for
// docker.io/bluenviron/mediamtx:1.9.3 gets it under its own name and digest.
func Repository(ref name.Reference) string {
	return RegistryPrefix(ref.Context().RegistryStr()) + "/" + ref.Context().RepositoryStr()
}

// RegistryPrefix is the repository prefix of an upstream registry host.
func RegistryPrefix(host string) string {
	if host == name.DefaultRegistry {
		host = "docker.io"
	}
	return strings.ReplaceAll(strings.ToLower(host), ":", "_")
}
