package manifests

import (
	"bytes"
	"strings"

	"io/fs"
	corev1 "k8s.io/api/core/v1"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The chart's file is the only copy of the rules: the binary embeds it with
// the chart, and promtool tests it where it lies. The promtool tests stay in
// testdata/ so that they are not packaged into the chart.
const (
	alertsInChart = "files/perch-alerts.yaml" // in MonitoringChart()
	alertsFile    = "charts/perch-monitoring/" + alertsInChart
	alertTests    = "testdata/perch-alerts_test.yaml"
	// cases run against the rules as rendered with gpu.sharingReplicas 4
	alertTimeSlicedTests = "testdata/perch-alerts-time-sliced_test.yaml"
)

// alertRules is the part of the rule-file format these tests read.
type alertRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// promtoolTests is the part of promtool's unit-test format these tests read.
type promtoolTests struct {
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

// shippedAlerts reads the rules from the embedded chart: what install deploys.
func shippedAlerts(t *testing.T) ([]byte, *alertRules) {
	t.Helper()
	data, err := fs.ReadFile(MonitoringChart(), alertsInChart)
	if err != nil {
		t.Fatal(err)
	}
	var f alertRules
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatalf("parse %s: %v", alertsFile, err)
	}
	return data, &f
}

func alertNames(f *alertRules) []string {
	var names []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				names = append(names, r.Alert)
			}
		}
	}
	slices.Sort(names)
	return names
}

// promtool runs the real promtool from this package's directory, the base of
// the paths given to it.
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
	promtool(t, "check", "rules", alertsFile)
}

func TestPromtoolTestRules(t *testing.T) {
	promtool(t, "test", "rules", alertTests)
}

// The GPU-count rule depends on gpu.sharingReplicas, which the chart writes
// into it: its time-sliced cases run against the rules as rendered, with
// nothing but what the chart knows and what dcgm-exporter and
// kube-state-metrics really export.
func TestPromtoolTimeSlicedRules(t *testing.T) {
	// 2 GPUs shared 4 ways: 4 nvidia.com/gpu per GPU (render.PerGPU)
	var rules []byte
	for _, d := range render(t, loadMonitoringChart(t), map[string]any{"gpu": map[string]any{"perGPU": 4}}, capabilities(false)) {
		if d.kind() == "ConfigMap" && strings.HasSuffix(d.name(), "-rules") {
			rules = []byte(strict[corev1.ConfigMap](t, d).Data["perch-alerts.yaml"])
		}
	}
	if !bytes.Contains(rules, []byte("* 4 # nvidia.com/gpu per GPU")) {
		t.Fatalf("the rules ConfigMap does not carry perGPU 4:\n%s", rules)
	}
	tests, err := os.ReadFile(alertTimeSlicedTests)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, data := range map[string][]byte{"perch-alerts.yaml": rules, "time-sliced_test.yaml": tests} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	promtool(t, "check", "rules", filepath.Join(dir, "perch-alerts.yaml"))
	promtool(t, "test", "rules", filepath.Join(dir, "time-sliced_test.yaml"))
}

// The parser is checked against a plain text scan so that a YAML shape it
// misses (a rule under the wrong key) shows up as a missing name, instead of
// as an alert the other tests silently skip.
func TestAlertNames(t *testing.T) {
	data, f := shippedAlerts(t)
	names := alertNames(f)
	var scanned []string
	for _, m := range regexp.MustCompile(`(?m)^\s*-\s*alert:\s*(\S+)\s*$`).FindAllSubmatch(data, -1) {
		scanned = append(scanned, string(m[1]))
	}
	slices.Sort(scanned)
	if len(names) == 0 {
		t.Fatal("no alerts parsed")
	}
	if !slices.Equal(names, scanned) {
		t.Fatalf("parsed alerts %v, the file lists %v", names, scanned)
	}
	if c := slices.Compact(slices.Clone(names)); len(c) != len(names) {
		t.Errorf("alert names are not unique: %v", names)
	}
}

// Every alert must tell the person paged how bad it is and what to do.
func TestAlertsHaveSeverityAndRunbook(t *testing.T) {
	_, f := shippedAlerts(t)
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
	_, f := shippedAlerts(t)
	names := alertNames(f)
	raw, err := os.ReadFile(alertTests)
	if err != nil {
		t.Fatal(err)
	}
	var ut promtoolTests
	if err := yaml.Unmarshal(raw, &ut); err != nil {
		t.Fatalf("parse %s: %v", alertTests, err)
	}
	// rule_files are relative to the test file
	if want := "../" + alertsFile; !slices.Equal(ut.RuleFiles, []string{want}) {
		t.Fatalf("%s tests rule_files %v, want [%s]", alertTests, ut.RuleFiles, want)
	}

	firing := map[string]int{}
	silent := map[string]int{}
	for i, tc := range ut.Tests {
		for _, a := range tc.AlertRuleTests {
			if !slices.Contains(names, a.Alertname) {
				t.Errorf("%s: test %d at %s checks %q, which %s does not define", alertTests, i, a.EvalTime, a.Alertname, alertsFile)
			}
			if len(a.ExpAlerts) == 0 {
				silent[a.Alertname]++
				continue
			}
			firing[a.Alertname]++
			for _, e := range a.ExpAlerts {
				if e.ExpLabels["severity"] == "" || e.ExpAnnotations["summary"] == "" || e.ExpAnnotations["description"] == "" {
					t.Errorf("%s: test %d at %s expects %s without its severity, summary and description", alertTests, i, a.EvalTime, a.Alertname)
				}
			}
		}
	}
	for _, n := range names {
		if firing[n] == 0 {
			t.Errorf("alert %s has no case in %s where it fires", n, alertTests)
		}
		if silent[n] == 0 {
			t.Errorf("alert %s has no case in %s where it must not fire", n, alertTests)
		}
	}
}
