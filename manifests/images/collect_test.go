package images

import (
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestCollectImagesOperatorObjects: what kube-prometheus-stack renders
// names Prometheus and Alertmanager in custom resources' spec.image and the
// config reloader in the operator's args; offline, a bundle without them
// leaves Prometheus in ImagePullBackOff. Args that are not images, and
// ConfigMap data, add nothing.
func TestCollectImagesOperatorObjects(t *testing.T) {
	const rendered = `
kind: Prometheus
spec: {image: quay.io/prometheus/prometheus:v3.1.0, retention: 15d}
---
kind: Alertmanager
spec: {image: "quay.io/prometheus/alertmanager:v0.28.0"}
---
kind: Deployment
spec:
  template:
    spec:
      containers:
        - name: operator
          image: quay.io/prometheus-operator/prometheus-operator:v0.79.2
          args:
            - --prometheus-config-reloader=quay.io/prometheus-operator/prometheus-config-reloader:v0.79.2
            - --storage.tsdb.retention.time=15d
            - --config.file=/etc/prometheus/prometheus.yml
            - --web.listen-address=:9090
            - --kubelet-service=kube-system/kubelet
            - --log-level=info
          env:
            - {name: SIDECAR_IMAGE, value: "registry.k8s.io/kube-state-metrics/kube-state-metrics@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
            - {name: URL, value: "http://example.com/a:b"}
---
kind: ConfigMap
data: {image: not-an-image-field}
`
	set := map[string]bool{}
	dec := yaml.NewDecoder(strings.NewReader(rendered))
	for {
		var doc any
		if err := dec.Decode(&doc); err != nil {
			break
		}
		for _, f := range Collect(doc, "") {
			set[f.Image] = true
		}
	}
	var got []string
	for im := range set {
		got = append(got, im)
	}
	slices.Sort(got)
	want := []string{
		"quay.io/prometheus-operator/prometheus-config-reloader:v0.79.2",
		"quay.io/prometheus-operator/prometheus-operator:v0.79.2",
		"quay.io/prometheus/alertmanager:v0.28.0",
		"quay.io/prometheus/prometheus:v3.1.0",
		"registry.k8s.io/kube-state-metrics/kube-state-metrics@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	}
	if !slices.Equal(got, want) {
		t.Errorf("images:\n got %q\nwant %q", got, want)
	}
}

// TestCollectNamesWhere: each image says which object and field name it,
// containers by name.
func TestCollectNamesWhere(t *testing.T) {
	var doc any
	if err := yaml.Unmarshal([]byte(`
kind: Deployment
metadata: {name: op, namespace: monitoring}
spec:
  template:
    spec:
      initContainers: [{name: init, image: "a.example/init:1"}]
      containers: [{image: "a.example/app:1"}]
`), &doc); err != nil {
		t.Fatal(err)
	}
	got := Collect(doc, "default-ns")
	slices.SortFunc(got, func(a, b Found) int { return strings.Compare(a.Image, b.Image) })
	want := []Found{
		{Image: "a.example/app:1", Object: "Deployment monitoring/op", Field: "spec.template.spec.containers[0].image"},
		{Image: "a.example/init:1", Object: "Deployment monitoring/op", Field: "spec.template.spec.initContainers[init].image"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Collect =\n%+v\nwant\n%+v", got, want)
	}
}
