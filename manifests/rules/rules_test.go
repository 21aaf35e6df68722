package rules

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"go.yaml.in/yaml/v3"
)

const (
	rulesFile = "perch-alerts.yaml"
	testsFile = "perch-alerts_test.yaml"
	chartCopy = "../charts/perch-analytics/files/perch-alerts.yaml"
)

// unitTests is the part of promtool's unit-test format these tests inspect.
type unitTests struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		AlertRuleTests []struct {
			EvalTime  string `yaml:"eval_time"`
			Alertname string `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels      map[string]string `yaml:"exp_labels"`
				ExpAnnotations map[string]string `yaml:"exp_annotations"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// promtool runs the real promtool in this directory, where the rule and test
// files sit.
func promtool(t *testing.T, args ...string) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (%v): run scripts/test-deps, which installs the Debian package prometheus", err)
	}
	out, err := exec.CommandContext(t.Context(), bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %v: %v\n%s", args, err, out)
	}
	t.Logf("promtool %v:\n%s", args, out)
}

func TestPromtoolCheckRules(t *testing.T) {
	promtool(t, "check", "rules", rulesFile)
}

func TestPromtoolTestRules(t *testing.T) {
	promtool(t, "test", "rules", testsFile)
}

// The embedded bytes are what ships; the file on disk is what promtool tests.
func TestEmbeddedIsTheTestedFile(t *testing.T) {
	onDisk, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(Alerts, onDisk) {
		t.Fatalf("embedded Alerts differ from %s: rebuild", rulesFile)
	}
}

func TestChartCopyIsIdentical(t *testing.T) {
	copied, err := os.ReadFile(chartCopy)
	if err != nil {
		t.Fatalf("read the chart's copy of the rules: %v; run `go generate ./manifests/rules`", err)
	}
	if !bytes.Equal(Alerts, copied) {
		t.Fatalf("%s differs from %s: run `go generate ./manifests/rules`", filepath.Clean(chartCopy), rulesFile)
	}
}

// Names is checked against a plain text scan so that a YAML shape the parser
// misses (a rule under the wrong key) shows up as a missing name.
func TestNames(t *testing.T) {
	names, err := Names()
	if err != nil {
		t.Fatal(err)
	}
	var scanned []string
	for _, m := range regexp.MustCompile(`(?m)^\s*-\s*alert:\s*(\S+)\s*$`).FindAllSubmatch(Alerts, -1) {
		scanned = append(scanned, string(m[1]))
	}
	slices.Sort(scanned)
	if len(names) == 0 {
		t.Fatal("Names() returned no alerts")
	}
	if !slices.Equal(names, scanned) {
		t.Fatalf("Names() = %v, the file lists %v", names, scanned)
	}
	if !slices.IsSorted(names) {
		t.Errorf("Names() is not sorted: %v", names)
	}
	if c := slices.Compact(slices.Clone(names)); len(c) != len(names) {
		t.Errorf("alert names are not unique: %v", names)
	}
}

// Every alert must tell the person paged how bad it is and what to do.
func TestAlertsHaveSeverityAndRunbook(t *testing.T) {
	f, err := parse(Alerts)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: rule %q is not an alert; this file holds alerts only", g.Name, r.Record)
				continue
			}
			n++
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q, want warning or critical", r.Alert, s)
			}
			for _, a := range []string{"summary", "description"} {
				if r.Annotations[a] == "" {
					t.Errorf("%s: no %s annotation", r.Alert, a)
				}
			}
			if r.Expr == "" {
				t.Errorf("%s: no expr", r.Alert)
			}
		}
	}
	if n == 0 {
		t.Fatal("no alerts parsed")
	}
}

// promtool only tests what the test file asks about, so a new alert without a
// case, or a renamed alert whose old "must not fire" case still passes, would
// go unnoticed without this.
func TestEveryAlertHasFiringAndSilentCases(t *testing.T) {
	names, err := Names()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(testsFile)
	if err != nil {
		t.Fatal(err)
	}
	var ut unitTests
	if err := yaml.Unmarshal(raw, &ut); err != nil {
		t.Fatalf("parse %s: %v", testsFile, err)
	}
	if !slices.Equal(ut.RuleFiles, []string{rulesFile}) {
		t.Fatalf("%s tests rule_files %v, want [%s]", testsFile, ut.RuleFiles, rulesFile)
	}

	firing := map[string]int{}
	silent := map[string]int{}
	for i, tc := range ut.Tests {
		for _, a := range tc.AlertRuleTests {
			if !slices.Contains(names, a.Alertname) {
				t.Errorf("%s: test %d at %s checks %q, which %s does not define", testsFile, i, a.EvalTime, a.Alertname, rulesFile)
			}
			if len(a.ExpAlerts) == 0 {
				silent[a.Alertname]++
				continue
			}
			firing[a.Alertname]++
			for _, e := range a.ExpAlerts {
				if e.ExpLabels["severity"] == "" || e.ExpAnnotations["summary"] == "" || e.ExpAnnotations["description"] == "" {
					t.Errorf("%s: test %d at %s expects %s without its severity, summary and description", testsFile, i, a.EvalTime, a.Alertname)
				}
			}
		}
	}
	for _, n := range names {
		if firing[n] == 0 {
			t.Errorf("alert %s has no case in %s where it fires", n, testsFile)
		}
		if silent[n] == 0 {
			t.Errorf("alert %s has no case in %s where it must not fire", n, testsFile)
		}
	}
}
