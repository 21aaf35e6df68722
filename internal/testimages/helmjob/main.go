// Command helmjob is the test tiers' stand-in for rancher/klipper-helm, the
// image k3s's helm-controller runs for each HelmChart (k3s --helm-job-image):
// it honours the same Job contract with helm's own Go packages. The real
// image is only on the internet.
//
// The contract, as helm-controller v0.16 writes the Job:
//   - args: `install [--namespace NS] [--create-namespace] [--version V]
//     [--set K=V | --set-string K=V]...`, or `delete`;
//   - env NAME (release), CHART (a URL, %{KUBERNETES_API}% standing for the
//     API server), TARGET_NAMESPACE, TIMEOUT, FAILURE_POLICY (reinstall or
//     abort);
//   - values files /config/values-*.yaml, applied in name order; a chart
//     given as content in /chart/*.tgz;
//   - in-cluster credentials of a cluster-admin service account.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage/driver"
	"helm.sh/helm/v3/pkg/strvals"
)

const saCA = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"

func main() {
	log.SetFlags(0)
	if len(os.Args) < 2 {
		log.Fatal("usage: helmjob install [flags] | delete")
	}
	name := os.Getenv("NAME")
	ns := os.Getenv("TARGET_NAMESPACE")
	if ns == "" {
		ns = "default"
	}
	var vals []string // --set
	var strs []string // --set-string
	createNS := false
	args := os.Args[2:]
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "--namespace":
			i++
			ns = args[i]
		case "--create-namespace":
			createNS = true
		case "--version":
			i++ // the chart is a URL or content: its version is what it is
		case "--set":
			i++
			vals = append(vals, args[i])
		case "--set-string":
			i++
			strs = append(strs, args[i])
		}
	}
	settings := cli.New()
	settings.SetNamespace(ns)
	cfg := new(action.Configuration)
	if err := cfg.Init(settings.RESTClientGetter(), ns, "secret", log.Printf); err != nil {
		log.Fatalf("helm: %v", err)
	}
	timeout := 300 * time.Second
	if t, err := time.ParseDuration(os.Getenv("TIMEOUT")); err == nil {
		timeout = t
	}
	switch os.Args[1] {
	case "delete":
		u := action.NewUninstall(cfg)
		u.Timeout = timeout
		if _, err := u.Run(name); err != nil && !strings.Contains(err.Error(), "not found") {
			log.Fatalf("uninstall %s: %v", name, err)
		}
		log.Printf("release %s uninstalled", name)
		return
	case "install":
	default:
		log.Fatalf("unknown action %q", os.Args[1])
	}

	ch, err := loadChart()
	if err != nil {
		log.Fatal(err)
	}
	values, err := loadValues(vals, strs)
	if err != nil {
		log.Fatal(err)
	}
	hist, err := action.NewHistory(cfg).Run(name)
	if err != nil && err != driver.ErrReleaseNotFound {
		log.Fatalf("history of %s: %v", name, err)
	}
	if len(hist) > 0 && hist[len(hist)-1].Info.Status != release.StatusDeployed && os.Getenv("FAILURE_POLICY") != "abort" {
		// reinstall, helm-controller's default failure policy
		if _, err := action.NewUninstall(cfg).Run(name); err != nil {
			log.Fatalf("uninstall failed release %s: %v", name, err)
		}
		hist = nil
	}
	var rel *release.Release
	if len(hist) == 0 {
		in := action.NewInstall(cfg)
		in.ReleaseName, in.Namespace, in.CreateNamespace, in.Timeout = name, ns, createNS, timeout
		rel, err = in.Run(ch, values)
	} else {
		up := action.NewUpgrade(cfg)
		up.Namespace, up.Timeout = ns, timeout
		rel, err = up.Run(name, ch, values)
	}
	if err != nil {
		log.Fatalf("install %s: %v", name, err)
	}
	log.Printf("release %s revision %d: %s", rel.Name, rel.Version, rel.Info.Status)
}

// loadChart reads the chart from /chart (content) or from its URL, where
// %{KUBERNETES_API}% is the API server as this pod reaches it.
func loadChart() (*chart.Chart, error) {
	if tgz, _ := filepath.Glob("/chart/*.tgz"); len(tgz) > 0 {
		return loader.Load(tgz[0])
	}
	url := os.Getenv("CHART")
	api := os.Getenv("KUBERNETES_SERVICE_HOST") + ":" + os.Getenv("KUBERNETES_SERVICE_PORT")
	url = strings.ReplaceAll(url, "%{KUBERNETES_API}%", api)
	if !strings.Contains(url, "://") {
		return nil, fmt.Errorf("CHART %q: only URLs and chart content are supported here, not repositories", url)
	}
	pool := x509.NewCertPool()
	if pem, err := os.ReadFile(saCA); err == nil {
		pool.AppendCertsFromPEM(pem)
	}
	c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get(url)
	if err != nil {
		return nil, fmt.Errorf("fetch chart: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch chart %s: %s", url, resp.Status)
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return loader.LoadArchive(strings.NewReader(string(data)))
}

func loadValues(sets, strs []string) (map[string]any, error) {
	files, _ := filepath.Glob("/config/values-*.yaml")
	slices.Sort(files)
	out := map[string]any{}
	for _, f := range files {
		v, err := chartutil.ReadValuesFile(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = chartutil.CoalesceTables(v.AsMap(), out)
	}
	for _, s := range sets {
		if err := strvals.ParseInto(s, out); err != nil {
			return nil, err
		}
	}
	for _, s := range strs {
		if err := strvals.ParseIntoString(s, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}
