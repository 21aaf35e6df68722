// Package nodeexporter holds no code: its go.mod pins node_exporter
// v1.10.2 as a tool for testimages to build into an image. Each
// monitoring program has a module of its own (testimages/monitoring.go
// says why).
package nodeexporter
