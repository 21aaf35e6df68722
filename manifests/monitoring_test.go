package manifests

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// monitoringValues are values as Perch computes them for a site with a
// registry, a central store with basic auth and Alertmanager and Grafana on.
func monitoringValues() map[string]any {
	return map[string]any{
		"global":         map[string]any{"imageRegistry": testRegistry, "imagePullSecrets": []any{map[string]any{"name": testPullSecret}}},
		"externalLabels": map[string]any{"site": "depot-7"},
		"prometheus": map[string]any{
			"remoteWrite": []any{map[string]any{
				"name": "central", "url": "https://metrics.example.com/api/v1/write",
				"basicAuth": map[string]any{"username": "depot-7", "passwordKey": "central-password"},
				"caKey":     "central-ca.crt",
			}},
		},
		"scrape":       map[string]any{"registry": map[string]any{"port": 5000, "ca": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}},
		"alertmanager": map[string]any{"enabled": true},
		"grafana":      map[string]any{"enabled": true},
	}
}

// monitoringConfig is the prometheus.yml the chart renders.
func monitoringConfig(t *testing.T, docs []doc) (string, map[string]any) {
	t.Helper()
	for _, d := range docs {
		if d.kind() == "ConfigMap" && strings.HasSuffix(d.name(), "-prometheus") {
			raw := strict[corev1.ConfigMap](t, d).Data["prometheus.yml"]
			var cfg map[string]any
			if err := yaml.Unmarshal([]byte(raw), &cfg); err != nil {
				t.Fatalf("prometheus.yml: %v\n%s", err, raw)
			}
			return raw, cfg
		}
	}
	t.Fatal("no Prometheus ConfigMap rendered")
	return "", nil
}

// The rendered configuration scrapes every source the appliance has.
// Debian's promtool is built without Kubernetes discovery, so it cannot
// check this file; the real Prometheus of the e2e tier loads it.
func TestMonitoringPrometheusConfig(t *testing.T) {
	docs := render(t, loadMonitoringChart(t), monitoringValues(), capabilities(false))
	raw, cfg := monitoringConfig(t, docs)

	var jobs []string
	for _, sc := range cfg["scrape_configs"].([]any) {
		jobs = append(jobs, sc.(map[string]any)["job_name"].(string))
	}
	want := []string{"alertmanager", "apiserver", "cadvisor", "dcgm-exporter", "kubelet", "kubernetes-pods", "perch-registry", "prometheus"}
	slices.Sort(jobs)
	if !slices.Equal(jobs, want) {
		t.Errorf("scrape jobs %v, want %v", jobs, want)
	}
	for _, s := range []string{"password_file: /etc/prometheus/remote-write/central-password", "ca_file: /etc/prometheus/remote-write/central-ca.crt", "site: depot-7", "ca_file: /etc/prometheus/registry/ca.crt"} {
		if !strings.Contains(raw, s) {
			t.Errorf("prometheus.yml lacks %q:\n%s", s, raw)
		}
	}
}

// Kinds the chart renders, and that each pod's image comes through the
// registry under airgap's layout, with the pull secret.
func TestMonitoringChartObjects(t *testing.T) {
	docs := render(t, loadMonitoringChart(t), monitoringValues(), capabilities(false))
	kinds := map[string]int{}
	for _, d := range docs {
		kinds[d.kind()]++
		if strings.HasPrefix(d.text, "apiVersion: monitoring.coreos.com") {
			t.Errorf("%s %s needs the Prometheus Operator", d.kind(), d.name())
		}
	}
	for k, n := range map[string]int{"StatefulSet": 1, "DaemonSet": 1, "Deployment": 3, "ClusterRole": 2} {
		if kinds[k] != n {
			t.Errorf("%d %s, want %d (kinds %v)", kinds[k], k, n, kinds)
		}
	}
	for _, d := range docs {
		var spec corev1.PodSpec
		switch d.kind() {
		case "Deployment":
			spec = strict[appsv1.Deployment](t, d).Spec.Template.Spec
		case "StatefulSet":
			spec = strict[appsv1.StatefulSet](t, d).Spec.Template.Spec
		case "DaemonSet":
			spec = strict[appsv1.DaemonSet](t, d).Spec.Template.Spec
		default:
			continue
		}
		for _, c := range spec.Containers {
			if !strings.HasPrefix(c.Image, testRegistry+"/") {
				t.Errorf("%s %s: image %s not through %s", d.kind(), d.name(), c.Image, testRegistry)
			}
			if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
				t.Errorf("%s %s: container %s has a writable root", d.kind(), d.name(), c.Name)
			}
		}
		if len(spec.ImagePullSecrets) != 1 || spec.ImagePullSecrets[0].Name != testPullSecret {
			t.Errorf("%s %s: pull secrets %v", d.kind(), d.name(), spec.ImagePullSecrets)
		}
	}
}

// Grafana gets Perch's dashboards and the Prometheus datasource by
// provisioning, and its login from the Secret install writes, never values.
func TestMonitoringGrafanaProvisioning(t *testing.T) {
	docs := render(t, loadMonitoringChart(t), monitoringValues(), capabilities(false))
	var dashboards []string
	var grafana *appsv1.Deployment
	for _, d := range docs {
		switch {
		case d.kind() == "ConfigMap" && strings.HasSuffix(d.name(), "-dashboards"):
			cm := strict[corev1.ConfigMap](t, d)
			for k, v := range cm.Data {
				dashboards = append(dashboards, k)
				var dash map[string]any
				if err := json.Unmarshal([]byte(v), &dash); err != nil || dash["panels"] == nil {
					t.Errorf("dashboard %s is not a Grafana dashboard: %v", k, err)
				}
			}
		case d.kind() == "ConfigMap" && strings.HasSuffix(d.name(), "-grafana"):
			ds := strict[corev1.ConfigMap](t, d).Data["datasources.yaml"]
			if !strings.Contains(ds, "-prometheus:9090") {
				t.Errorf("datasource does not point at the chart's Prometheus:\n%s", ds)
			}
		case d.kind() == "Deployment" && strings.HasSuffix(d.name(), "-grafana"):
			grafana = strict[appsv1.Deployment](t, d)
		}
	}
	slices.Sort(dashboards)
	if !slices.Equal(dashboards, []string{"perch-gpu.json", "perch-pipeline.json", "perch-streams.json"}) {
		t.Errorf("dashboards %v, want gpu, pipeline and streams", dashboards)
	}
	if grafana == nil {
		t.Fatal("no Grafana Deployment")
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range grafana.Spec.Template.Spec.Containers[0].Env {
		env[e.Name] = e
	}
	pw := env["GF_SECURITY_ADMIN_PASSWORD"]
	if pw.Value != "" || pw.ValueFrom == nil || pw.ValueFrom.SecretKeyRef == nil || pw.ValueFrom.SecretKeyRef.Name != "perch-grafana-admin" {
		t.Errorf("Grafana's admin password does not come from the perch-grafana-admin Secret: %+v", pw)
	}
	if env["GF_ANALYTICS_REPORTING_ENABLED"].Value != "false" {
		t.Errorf("Grafana phones home: env %v", slices.Sorted(maps.Keys(env)))
	}
}

// Without a storage provisioner the TSDB is a host directory (kept across
// pod and k3s restarts) and Prometheus is root there; with one, a PVC.
func TestMonitoringStorage(t *testing.T) {
	for _, hostPath := range []string{"", "/var/lib/perch/prometheus"} {
		v := map[string]any{"prometheus": map[string]any{"storage": map[string]any{"hostPath": hostPath, "size": "12Gi"}}}
		for _, d := range render(t, loadMonitoringChart(t), v, capabilities(false)) {
			if d.kind() != "StatefulSet" {
				continue
			}
			sts := strict[appsv1.StatefulSet](t, d)
			uid := *sts.Spec.Template.Spec.SecurityContext.RunAsUser
			var hp string
			for _, vol := range sts.Spec.Template.Spec.Volumes {
				if vol.Name == "data" && vol.HostPath != nil {
					hp = vol.HostPath.Path
				}
			}
			switch {
			case hostPath == "" && (len(sts.Spec.VolumeClaimTemplates) != 1 || hp != "" || uid != 65534):
				t.Errorf("with a provisioner: %d PVC templates, hostPath %q, uid %d; want one PVC as 65534", len(sts.Spec.VolumeClaimTemplates), hp, uid)
			case hostPath != "" && (len(sts.Spec.VolumeClaimTemplates) != 0 || hp != hostPath || uid != 0):
				t.Errorf("without: %d PVC templates, hostPath %q, uid %d; want %s as root", len(sts.Spec.VolumeClaimTemplates), hp, uid, hostPath)
			}
			args := strings.Join(sts.Spec.Template.Spec.Containers[0].Args, " ")
			if !strings.Contains(args, "--storage.tsdb.retention.size=10GB") || !strings.Contains(args, "--storage.tsdb.retention.time=7d") {
				t.Errorf("retention flags missing: %s", args)
			}
		}
	}
}
