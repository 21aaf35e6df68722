// Package prometheus holds no code: its go.mod pins Prometheus
// (github.com/prometheus/prometheus v0.316.0, i.e. 3.16.0) as a tool for
// testimages to build into an image. Each monitoring program has a module
// of its own (testimages/monitoring.go says why).
package prometheus
