package images

import (
	"slices"

	"github.com/perchedge/perch/bundles"
	"github.com/perchedge/perch/manifests"
)

// k3sComponent is one image k3s pulls itself, and what turns it off.
type k3sComponent struct {
	name  string // as k3s.disable spells it, or what it is
	image string
	// disable is the k3s.disable entry that removes it; "" for images k3s
	// always pulls.
	disable string
	// flag replaces the image (k3s.extraArgs); "" where none does.
	flag string
}

// k3sReleases are k3s's own images by the version its binary reports:
// scripts/airgap/image-list.txt of the k3s source it was built from. Only
// the k3s Perch is built and tested with is listed; for another one the
// bundle carries the release's k3s-airgap-images tarball, whose names
// the build reads instead.
var k3sReleases = map[string][]k3sComponent{
	// github.com/k3s-io/k3s@v1.31.0-rc1.0.20241015183003-536fa44eb04f, the
	// module Perch pins (scripts/k3s-fixture stamps this version)
	"v1.31.1+k3s-536fa44e": {
		{name: "pause", image: "docker.io/rancher/mirrored-pause:3.6", flag: "--pause-image"},
		{name: "helm-controller jobs", image: "docker.io/rancher/klipper-helm:v0.9.3-build20241008", flag: "--helm-job-image"},
		{name: "coredns", image: "docker.io/rancher/mirrored-coredns-coredns:1.11.3", disable: "coredns"},
		{name: "servicelb", image: "docker.io/rancher/klipper-lb:v0.4.9", disable: "servicelb"},
		{name: "local-storage", image: "docker.io/rancher/local-path-provisioner:v0.0.30", disable: "local-storage"},
		// the local-path provisioner's helper pod, which makes each volume's directory
		{name: "local-storage", image: "docker.io/rancher/mirrored-library-busybox:1.36.1", disable: "local-storage"},
		{name: "traefik", image: "docker.io/rancher/mirrored-library-traefik:2.11.10", disable: "traefik"},
		{name: "metrics-server", image: "docker.io/rancher/mirrored-metrics-server:v0.7.2", disable: "metrics-server"},
	},
}

// KnowsK3s says whether Perch knows which images this k3s pulls.
func KnowsK3s(version string) bool { return k3sReleases[version] != nil }

type k3sNeed struct {
	image  string
	origin bundles.Origin
}

// k3sNeeds are k3s's own images that a node with config k pulls: every
// component it leaves on, with the images the config's flags name instead
// of k3s's. An unknown k3s version needs what its air-gap tarball holds,
// which the build reads; nothing is listed for it here.
func k3sNeeds(version string, k manifests.K3s) []k3sNeed {
	var out []k3sNeed
	for _, c := range k3sReleases[version] {
		if c.disable != "" && slices.Contains(k.Disable, c.disable) {
			continue
		}
		im, field := c.image, "built in"
		if c.disable != "" {
			field = "on unless k3s.disable lists " + c.disable
		}
		switch {
		case c.flag == "--pause-image" && k.PauseImage != "":
			im, field = k.PauseImage, "k3s.extraArgs "+c.flag
		case c.flag == "--helm-job-image" && k.HelmJobImage != "":
			im, field = k.HelmJobImage, "k3s.extraArgs "+c.flag
		}
		out = append(out, k3sNeed{image: im, origin: bundles.Origin{App: bundles.K3sApp + version, Object: c.name, Field: field}})
	}
	return out
}
