// imgbuild: builds the spike's test images without internet and writes them
// as an OCI layout and/or pushes them to a registry.
//
//	imgbuild -pause PAUSEBIN -busybox /bin/busybox -oci DIR [-push HOST:PORT -user U -pass P -ca CA.pem]
package main

import (
	"archive/tar"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/bcrypt"
)

type entry struct {
	name, link string
	mode       int64
	data       []byte
	dir        bool
}

func layer(entries []entry) v1.Layer {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, ModTime: epoch, Format: tar.FormatPAX}
		switch {
		case e.dir:
			h.Typeflag, h.Name = tar.TypeDir, e.name+"/"
		case e.link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.link
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		must(tw.WriteHeader(h))
		if h.Typeflag == tar.TypeReg {
			_, err := tw.Write(e.data)
			must(err)
		}
	}
	must(tw.Close())
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	must(err)
	return l
}

func image(l v1.Layer, cmd []string) v1.Image {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, l)
	must(err)
	cf, err := img.ConfigFile()
	must(err)
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Config.Entrypoint = cmd
	cf.Config.Env = []string{"PATH=/bin"}
	img, err = mutate.ConfigFile(img, cf)
	must(err)
	return img
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

func main() {
	pause := flag.String("pause", "", "static pause binary")
	bb := flag.String("busybox", "/bin/busybox", "static busybox binary")
	oci := flag.String("oci", "", "write an OCI layout here")
	push := flag.String("push", "", "push to this registry host:port (HTTPS)")
	user := flag.String("user", "", "registry user")
	pass := flag.String("pass", "", "registry password")
	ca := flag.String("ca", "", "CA bundle for -push")
	htpw := flag.String("htpasswd", "", "print an htpasswd line for USER:PASS and exit")
	flag.Parse()
	if *htpw != "" {
		u, p, _ := strings.Cut(*htpw, ":")
		h, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.DefaultCost)
		must(err)
		fmt.Printf("%s:%s\n", u, h)
		return
	}
	pb, err := os.ReadFile(*pause)
	must(err)
	bbb, err := os.ReadFile(*bb)
	must(err)
	images := map[string]v1.Image{
		"rancher/mirrored-pause:3.6": image(layer([]entry{{name: "pause", mode: 0o755, data: pb}}), []string{"/pause"}),
		"perch-e2e/busybox:spike": image(layer([]entry{
			{name: "bin", dir: true, mode: 0o755},
			{name: "bin/busybox", mode: 0o755, data: bbb},
			{name: "bin/sh", link: "busybox", mode: 0o777},
			{name: "bin/sleep", link: "busybox", mode: 0o777},
			{name: "tmp", dir: true, mode: 0o1777},
		}), []string{"/bin/sh"}),
	}
	if *oci != "" {
		p, err := layout.Write(*oci, empty.Index)
		must(err)
		for ref, img := range images {
			must(p.AppendImage(img, layout.WithAnnotations(map[string]string{
				"org.opencontainers.image.ref.name": "docker.io/" + ref,
				"io.containerd.image.name":          "docker.io/" + ref,
			})))
		}
		log.Printf("wrote OCI layout %s", *oci)
	}
	if *push != "" {
		pool := x509.NewCertPool()
		if *ca != "" {
			b, err := os.ReadFile(*ca)
			must(err)
			pool.AppendCertsFromPEM(b)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
		for ref, img := range images {
			r, err := name.ParseReference(*push + "/" + ref)
			must(err)
			must(remote.Write(r, img, remote.WithTransport(tr),
				remote.WithAuth(&authn.Basic{Username: *user, Password: *pass})))
			d, _ := img.Digest()
			log.Printf("pushed %s@%s", r, d)
		}
	}
}
