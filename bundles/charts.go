package bundles

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
)

// packChart loads a fetched chart (a .tgz or a directory), checks it is the
// chart the spec names, and stores it as charts/NAME-VERSION.tgz under dir.
func packChart(src, want, dir string) (*chart.Chart, string, error) {
	ch, err := loader.Load(src)
	if err != nil {
		return nil, "", fmt.Errorf("not a Helm chart: %w", err)
	}
	if ch.Name() != want {
		return nil, "", fmt.Errorf("the source holds chart %q, not %q; fix the name or the source", ch.Name(), want)
	}
	dest := filepath.Join(dir, chartsDir)
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return nil, "", err
	}
	rel := filepath.ToSlash(filepath.Join(chartsDir, ch.Name()+"-"+ch.Metadata.Version+".tgz"))
	out := filepath.Join(dir, filepath.FromSlash(rel))
	if fi, err := os.Stat(src); err == nil && !fi.IsDir() {
		// a published archive is kept byte for byte: its digest is its identity
		return ch, rel, copyFile(src, out)
	}
	if err := SaveChart(ch, out); err != nil {
		return nil, "", err
	}
	return ch, rel, nil
}

// SaveChart packs a loaded chart as a .tgz at dst, reproducibly: the same
// chart always packs to the same bytes, so a bundle signs the same manifest
// and k3s sees an unchanged chart as unchanged.
func SaveChart(ch *chart.Chart, dst string) error {
	tmp, err := os.MkdirTemp(filepath.Dir(dst), ".chart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	saved, err := chartutil.Save(ch, tmp)
	if err != nil {
		return fmt.Errorf("package chart: %w", err)
	}
	if err := reproducibleTgz(saved, dst); err != nil {
		return fmt.Errorf("package chart: %w", err)
	}
	return nil
}

// reproducibleTgz rewrites helm's archive without its timestamps, so the
// same chart directory always packs to the same bytes and bundles built
// from the same inputs sign the same manifest.
func reproducibleTgz(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	zr, err := gzip.NewReader(in)
	if err != nil {
		return err
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer out.Close()
	zw := gzip.NewWriter(out)
	tr, tw := tar.NewReader(zr), tar.NewWriter(zw)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		h.ModTime, h.AccessTime, h.ChangeTime = time.Unix(0, 0), time.Time{}, time.Time{}
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return out.Close()
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
