package e2e

import (
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

// The chart's image blocks are what the bundle must carry; a renamed key
// in values.yaml must fail here, not as an ImagePullBackOff on site.
func TestImagesAreTheChartsReferences(t *testing.T) {
	images, err := Images()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, im := range images {
		if strings.Contains(im.Ref, "<nil>") {
			t.Errorf("image %q: a chart value path does not exist", im.Ref)
		}
		if _, err := name.ParseReference(im.Ref, name.StrictValidation); err != nil {
			t.Errorf("image %q: %v", im.Ref, err)
		}
		if seen[im.Ref] {
			t.Errorf("image %q twice", im.Ref)
		}
		seen[im.Ref] = true
	}
	for _, want := range []string{"docker.io/bluenviron/mediamtx:1.9.3", "docker.io/library/nats:2.10.22-alpine"} {
		if !seen[want] {
			t.Errorf("no %s among %v", want, images)
		}
	}
}
