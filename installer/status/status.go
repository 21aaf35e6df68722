// Package status reports how an appliance stands: its nodes, the GPUs,
// each app Perch deployed, the registry and the alerts Prometheus fires,
// with one judgement of whether all is well. `perch status` prints it;
// install's apps-ready step judges apps with the same Checker.
//
// Collect takes its clients ready made, so an integration test calls it
// with clients built from the test cluster's rest.Config:
//
//	rep, err := status.Collect(ctx, status.Sources{
//		Kube: kubernetes.NewForConfigOrDie(rc),
//		Helm: helmclient.NewForConfigOrDie(rc),
//	})
//
// and checks rep.Apps, rep.Nodes and rep.Healthy; a registry or Prometheus
// of its own (an httptest server) goes in Registry and PrometheusURL.
package status

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	helmclient "github.com/k3s-io/helm-controller/pkg/generated/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"

	"github.com/perchedge/perch/bundles"
	"github.com/perchedge/perch/gpu"
	"github.com/perchedge/perch/manifests/render"
)

// GPUResource is the extended resource the NVIDIA device plugin advertises.
const GPUResource corev1.ResourceName = "nvidia.com/gpu"

// Sources are where Collect looks. Each may be missing: Collect reports
// what the others show, and says what it could not see.
type Sources struct {
	// Kube and Helm reach the cluster; nil Kube means it cannot be reached,
	// and KubeErr says why (no kubeconfig, k3s not installed).
	Kube    kubernetes.Interface
	Helm    helmclient.Interface
	KubeErr error
	// Meta reads the metadata of custom resources that own an app's
	// workloads; nil follows owner chains only through built-in kinds.
	Meta metadata.Interface

	// Bundles are the manifests of the bundles installed on this node:
	// an app whose image none of them holds is failed, not waiting.
	Bundles []*bundles.Manifest

	// Registry is the appliance registry; a zero URL means it is disabled.
	Registry RegistrySource

	// PrometheusURL is Prometheus's base URL, read with HTTP. Empty reaches
	// perch-monitoring's Prometheus through the API server's service
	// proxy instead, which needs no network path besides the API.
	PrometheusURL string
	HTTP          *http.Client

	// Etcd is the cluster's embedded etcd, on a server that runs it.
	Etcd EtcdSource

	// GPU is this host's inventory, and GPUErr why it could not be read.
	GPU    *gpu.Inventory
	GPUErr error

	// Now is the clock for alert ages; nil is time.Now.
	Now func() time.Time
}

// RegistrySource is how to reach the appliance registry.
type RegistrySource struct {
	URL string // https://HOST:PORT
	// CAs verify its certificate; nil uses the system's.
	CAs *x509.CertPool
	// Username and Password, when set, are also checked against /v2/: they
	// are what nodes pull with.
	Username, Password string
	// Note says why URL is empty, for the report.
	Note string
	// Err, when set, is why the registry cannot be asked (no CA to trust
	// it by); it is reported as the registry's error.
	Err error
}

// Report is what `perch status --output json` prints.
type Report struct {
	Cluster  Cluster        `json:"cluster"`
	Nodes    []Node         `json:"nodes"`
	Etcd     *Etcd          `json:"etcd,omitempty"`
	GPUs     *gpu.Inventory `json:"gpus,omitempty"`
	GPUError string         `json:"gpuError,omitempty"`
	Apps     []App          `json:"apps"`
	// AppsError is a failure to list the apps at all.
	AppsError string   `json:"appsError,omitempty"`
	Registry  Registry `json:"registry"`
	Alerts    Alerts   `json:"alerts"`
	Healthy   bool     `json:"healthy"`
	// Reasons say, shortly, why the appliance is not healthy.
	Reasons []string `json:"reasons,omitempty"`
}

// Cluster is whether the API server answered.
type Cluster struct {
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
}

// Node is one Kubernetes node.
type Node struct {
	Name           string   `json:"name"`
	Ready          bool     `json:"ready"`
	Reason         string   `json:"reason,omitempty"` // the Ready condition's message when not Ready
	Roles          []string `json:"roles"`
	KubeletVersion string   `json:"kubeletVersion"`
	// GPUCapacity and GPUAllocatable are nvidia.com/gpu, which only the
	// device plugin sets; the labels come from Perch's own GPU probe.
	GPUCapacity    int64  `json:"gpuCapacity"`
	GPUAllocatable int64  `json:"gpuAllocatable"`
	GPUProduct     string `json:"gpuProduct,omitempty"`
	GPUCount       int    `json:"gpuCount,omitempty"`
}

// Registry is the appliance registry's health.
type Registry struct {
	Enabled bool   `json:"enabled"`
	Address string `json:"address,omitempty"` // host:port
	Healthy bool   `json:"healthy"`
	Error   string `json:"error,omitempty"`
	Note    string `json:"note,omitempty"`
}

// Collect reads every source and judges the whole. Problems of a source
// are part of the report, not errors; the error is ctx's, when it ends
// first.
func Collect(ctx context.Context, src Sources) (*Report, error) {
	now := src.Now
	if now == nil {
		now = time.Now
	}
	r := &Report{Nodes: []Node{}, Apps: []App{}, GPUs: src.GPU}
	if src.GPUErr != nil {
		r.GPUError = src.GPUErr.Error()
	}
	r.Registry = checkRegistry(ctx, src.Registry)
	r.Etcd = collectEtcd(ctx, src.Etcd)

	r.Alerts = Alerts{Firing: []Alert{}}
	switch {
	case src.Kube == nil:
		r.Cluster.Error = "no client"
		if src.KubeErr != nil {
			r.Cluster.Error = src.KubeErr.Error()
		}
		r.Alerts.Note = "Prometheus not reachable (no cluster)"
	default:
		collectCluster(ctx, src, r)
	}
	if src.PrometheusURL != "" {
		r.Alerts = alertsFromURL(ctx, src.HTTP, src.PrometheusURL, now())
	} else if r.Cluster.Reachable {
		r.Alerts = alertsViaProxy(ctx, src.Kube, monitored(r), now())
	}
	if err := ctx.Err(); err != nil {
		return r, err
	}
	Judge(r)
	return r, nil
}

func collectCluster(ctx context.Context, src Sources, r *Report) {
	nodes, err := src.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		r.Cluster.Error = err.Error()
		var ue *url.Error
		if errors.As(err, &ue) {
			// the request's URL says little; the API server's address does
			if u, perr := url.Parse(ue.URL); perr == nil {
				r.Cluster.Error = fmt.Sprintf("API server %s: %v", u.Host, ue.Err)
			}
		}
		r.Alerts.Note = "Prometheus not reachable (no cluster)"
		return
	}
	r.Cluster.Reachable = true
	for i := range nodes.Items {
		r.Nodes = append(r.Nodes, node(&nodes.Items[i]))
	}
	slices.SortFunc(r.Nodes, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })

	if src.Helm == nil {
		r.AppsError = "no helm-controller client"
		return
	}
	charts, err := src.Helm.HelmV1().HelmCharts(render.HelmChartNamespace).List(ctx,
		metav1.ListOptions{LabelSelector: render.LabelManagedBy + "=" + render.ManagedBy})
	if err != nil {
		r.AppsError = "list HelmCharts: " + err.Error()
		return
	}
	ch := Checker{Kube: src.Kube, Meta: src.Meta}
	if len(src.Bundles) > 0 {
		var regs []string
		if u, err := url.Parse(src.Registry.URL); err == nil && u.Host != "" {
			regs = append(regs, u.Host)
		}
		ch.Images = NewBundleImages(regs, src.Bundles...)
	}
	for _, hc := range charts.Items {
		ns := cmp.Or(hc.Spec.TargetNamespace, hc.Namespace)
		a, err := ch.App(ctx, hc.Name, ns)
		if err != nil {
			// a failed read says nothing about the app itself
			a.State, a.Reason = AppProgressing, err.Error()
		}
		// the chart is a URL to the archive k3s serves: its file name
		// says which chart it is
		a.Chart = strings.TrimSuffix(path.Base(hc.Spec.Chart), ".tgz")
		a.Version = hc.Spec.Version
		if hc.DeletionTimestamp != nil {
			a.State, a.Reason = AppProgressing, "being uninstalled"
		}
		r.Apps = append(r.Apps, a)
	}
	slices.SortFunc(r.Apps, func(a, b App) int {
		return cmp.Or(cmp.Compare(appOrder(a.Name), appOrder(b.Name)), strings.Compare(a.Name, b.Name))
	})
}

// appOrder is the order install brings apps up in, which is also the
// order a person reads causes in: no device plugin, no GPU for the pipeline.
func appOrder(name string) int {
	i := slices.Index([]string{render.DevicePlugin, render.Monitoring, render.DCGMExporter, render.Analytics}, name)
	if i < 0 {
		return 99
	}
	return i
}

func node(n *corev1.Node) Node {
	out := Node{Name: n.Name, Roles: []string{}, KubeletVersion: n.Status.NodeInfo.KubeletVersion, Reason: "no Ready condition yet"}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			out.Ready = c.Status == corev1.ConditionTrue
			out.Reason = c.Message
			if out.Ready {
				out.Reason = ""
			}
		}
	}
	for k := range n.Labels {
		if role, ok := strings.CutPrefix(k, "node-role.kubernetes.io/"); ok && role != "" {
			out.Roles = append(out.Roles, role)
		}
	}
	slices.Sort(out.Roles)
	if q, ok := n.Status.Capacity[GPUResource]; ok {
		out.GPUCapacity = q.Value()
	}
	if q, ok := n.Status.Allocatable[GPUResource]; ok {
		out.GPUAllocatable = q.Value()
	}
	out.GPUProduct = n.Labels[gpu.LabelProduct]
	out.GPUCount, _ = strconv.Atoi(n.Labels[gpu.LabelCount])
	return out
}

// Judge sets Healthy and Reasons from what the report holds. Reasons are
// short; the sections above them in the report carry the detail.
func Judge(r *Report) {
	var why []string
	if !r.Cluster.Reachable {
		why = append(why, "cluster not reachable")
	}
	for _, n := range r.Nodes {
		if !n.Ready {
			why = append(why, "node "+n.Name+" not Ready")
		}
	}
	why = append(why, judgeEtcd(r.Etcd)...)
	plugin := slices.ContainsFunc(r.Apps, func(a App) bool { return a.Name == render.DevicePlugin })
	for _, n := range r.Nodes {
		// only where Perch deployed the device plugin: with gpu.mode off
		// the GPUs are labelled but meant to stay unused
		if plugin && n.Ready && n.GPUCount > 0 && n.GPUAllocatable == 0 {
			why = append(why, "node "+n.Name+" offers no nvidia.com/gpu")
		}
	}
	if r.GPUError != "" {
		why = append(why, "GPUs unreadable")
	}
	if r.AppsError != "" {
		why = append(why, "apps unknown")
	}
	for _, a := range r.Apps {
		if a.State != AppReady {
			why = append(why, "app "+a.Name+" "+string(a.State))
		}
	}
	if r.Registry.Enabled && !r.Registry.Healthy {
		why = append(why, "registry not healthy")
	}
	// with monitoring deployed, alerts that cannot be read are not "none"
	if monitored(r) && !r.Alerts.Available {
		why = append(why, "Prometheus not reachable")
	}
	if n := r.Alerts.critical(); n > 0 {
		why = append(why, plural(n, "critical alert")+" firing")
	}
	r.Healthy = len(why) == 0
	r.Reasons = why
}

// monitored says whether Perch deployed monitoring, so Prometheus should
// answer.
func monitored(r *Report) bool {
	return slices.ContainsFunc(r.Apps, func(a App) bool { return a.Name == render.Monitoring })
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
