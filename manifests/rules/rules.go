// Package rules holds Perch's Prometheus alert rules.
//
// The rule file is embedded so that every consumer ships the same bytes: the
// installer writes them as they are, the perch-analytics chart carries a copy
// (kept identical by go:generate and checked by a test), and the promtool unit
// tests next to the file test exactly what is deployed.
package rules

import (
	_ "embed"
	"fmt"
	"sort"

	"go.yaml.in/yaml/v3"
)

//go:generate cp perch-alerts.yaml ../charts/perch-analytics/files/perch-alerts.yaml

// Alerts is perch-alerts.yaml: a Prometheus rule file (`groups:`), also valid
// as the spec of a PrometheusRule.
//
//go:embed perch-alerts.yaml
var Alerts []byte

// ruleFile is the part of the rule-file format that Perch reads back.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

// rule is one alerting or recording rule; Alert is empty for a recording rule.
type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func parse(data []byte) (*ruleFile, error) {
	var f ruleFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("parse alert rules: %w", err)
	}
	return &f, nil
}

// Names returns the names of the alerts in Alerts, sorted.
func Names() ([]string, error) {
	f, err := parse(Alerts)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				names = append(names, r.Alert)
			}
		}
	}
	sort.Strings(names)
	return names, nil
}
