// Package kubestatemetrics holds no code: its go.mod pins
// kube-state-metrics v2.16.0 as a tool for testimages to build into an
// image; v2.16.0 because the module proxy refuses v2.17.0. Each
// monitoring program has a module of its own (testimages/monitoring.go
// says why).
package kubestatemetrics
