// Package alertmanager holds no code: its go.mod pins Alertmanager
// v0.35.0 as a tool for testimages to build into an image. Each
// monitoring program has a module of its own (testimages/monitoring.go
// says why).
package alertmanager
