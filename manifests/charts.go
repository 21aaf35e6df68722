// Package manifests holds what Perch deploys into k3s: its own charts,
// embedded in the binary so an air-gapped install needs nothing else, and
// the values Perch computes for them from the appliance config.
package manifests

import (
	"embed"
	"io/fs"
)

// all: keeps files whose names start with "." or "_" (templates/_helpers.tpl).
//
//go:embed all:charts/perch-analytics all:charts/perch-monitoring
var charts embed.FS

// AnalyticsChart is the perch-analytics chart directory: Chart.yaml at its
// root.
func AnalyticsChart() fs.FS { return subChart("perch-analytics") }

// MonitoringChart is the perch-monitoring chart directory: Prometheus,
// its exporters, the alert rules and the dashboards.
func MonitoringChart() fs.FS { return subChart("perch-monitoring") }

func subChart(name string) fs.FS {
	sub, err := fs.Sub(charts, "charts/"+name)
	if err != nil {
		// The path is a constant checked by the compiler's embed.
		panic(err)
	}
	return sub
}
