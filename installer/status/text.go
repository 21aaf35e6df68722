package status

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// width is the console the text fits: a serial or VGA console on an
// appliance is 80 columns.
const width = 80

// label starts each section; the values line up after it.
const labelWidth = 10

// WriteJSON writes the report as indented JSON.
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report for a person: one section per source, the
// judgement last, so the line a person reads first after the prompt
// returns is the verdict.
func WriteText(w io.Writer, r *Report) error {
	bw := bufio.NewWriter(w)
	p := &printer{w: bw}
	p.cluster(r)
	p.etcd(r)
	p.gpus(r)
	p.apps(r)
	p.registry(r)
	p.alerts(r)
	// the verdict is one line however long, so `tail -n1` is all of it
	verdict := "healthy"
	if !r.Healthy {
		verdict = "not healthy: " + strings.Join(r.Reasons, ", ")
	}
	fmt.Fprintf(bw, "%-*s%s\n", labelWidth, "Status", verdict)
	return bw.Flush()
}

type printer struct{ w io.Writer }

// section prints a labelled line, wrapped under its value.
func (p *printer) section(label, value string) {
	p.wrapped(fmt.Sprintf("%-*s", labelWidth, label), strings.Repeat(" ", labelWidth), value)
}

// detail prints an indented line, wrapped at the same indent.
func (p *printer) detail(indent int, text string) {
	pad := strings.Repeat(" ", indent)
	p.wrapped(pad, pad, text)
}

func (p *printer) wrapped(first, rest, text string) {
	for i, line := range wrap(text, width-len(first)) {
		if i == 0 {
			fmt.Fprintln(p.w, first+line)
		} else {
			fmt.Fprintln(p.w, rest+line)
		}
	}
}

// wrap breaks text at spaces into lines of at most n runes; a word longer
// than n (a URL, an image reference) stays whole on its own line.
func wrap(text string, n int) []string {
	words := strings.Fields(text)
	if len(words) == 0 {
		return []string{""}
	}
	var lines []string
	line := words[0]
	for _, word := range words[1:] {
		if len([]rune(line))+1+len([]rune(word)) > n {
			lines = append(lines, line)
			line = word
			continue
		}
		line += " " + word
	}
	return append(lines, line)
}

func (p *printer) table(rows [][]string) {
	for _, l := range columns(rows) {
		fmt.Fprintln(p.w, l)
	}
}

// columns lines up rows, indented by two, two spaces between columns. It
// returns the lines rather than printing them (as text/tabwriter would) so
// that sentences can go between rows without widening the columns.
func columns(rows [][]string) []string {
	var w []int
	for _, r := range rows {
		for i, c := range r {
			if i == len(w) {
				w = append(w, 0)
			}
			w[i] = max(w[i], len([]rune(c)))
		}
	}
	out := make([]string, len(rows))
	for i, r := range rows {
		var b strings.Builder
		b.WriteString("  ")
		for j, c := range r {
			b.WriteString(c)
			if j < len(r)-1 {
				b.WriteString(strings.Repeat(" ", w[j]-len([]rune(c))+2))
			}
		}
		out[i] = strings.TrimRight(b.String(), " ")
	}
	return out
}

func (p *printer) cluster(r *Report) {
	if !r.Cluster.Reachable {
		p.section("Cluster", "not reachable: "+r.Cluster.Error)
		return
	}
	ready := 0
	for _, n := range r.Nodes {
		if n.Ready {
			ready++
		}
	}
	p.section("Cluster", fmt.Sprintf("reachable, %s, %d Ready", plural(len(r.Nodes), "node"), ready))
	var rows [][]string
	for _, n := range r.Nodes {
		state := "Ready"
		if !n.Ready {
			state = "NotReady"
		}
		rows = append(rows, []string{n.Name, state, orDash(strings.Join(n.Roles, ",")), orDash(n.KubeletVersion)})
	}
	for i, l := range columns(rows) {
		fmt.Fprintln(p.w, l)
		n := r.Nodes[i]
		if !n.Ready && n.Reason != "" {
			p.detail(4, n.Reason)
		}
		if n.GPUCount > 0 || n.GPUCapacity > 0 {
			g := fmt.Sprintf("nvidia.com/gpu %d allocatable of %d", n.GPUAllocatable, n.GPUCapacity)
			if n.GPUCount > 0 {
				g += fmt.Sprintf(", labelled %dx %s", n.GPUCount, orDash(n.GPUProduct))
			}
			p.detail(4, g)
		}
	}
}

func (p *printer) gpus(r *Report) {
	switch {
	case r.GPUError != "":
		p.section("GPUs", "unreadable: "+r.GPUError)
		return
	case r.GPUs == nil:
		p.section("GPUs", "not probed")
		return
	case len(r.GPUs.GPUs) == 0:
		p.section("GPUs", "none on this host: "+orDash(r.GPUs.Reason))
		return
	}
	inv := r.GPUs
	p.section("GPUs", fmt.Sprintf("%d on this host, driver %s (CUDA %s)", len(inv.GPUs), orDash(inv.DriverVersion), orDash(inv.CUDADriverVersion)))
	var rows [][]string
	for _, g := range inv.GPUs {
		mig := ""
		if g.MIGEnabled {
			mig = "MIG"
		}
		rows = append(rows, []string{fmt.Sprint(g.Index), g.Name, fmt.Sprintf("%d MiB", g.MemoryMiB),
			fmt.Sprintf("%d.%d %s", g.ComputeMajor, g.ComputeMinor, g.Family), mig})
	}
	p.table(rows)
}

func (p *printer) apps(r *Report) {
	switch {
	case !r.Cluster.Reachable:
		p.section("Apps", "unknown (cluster not reachable)")
		return
	case r.AppsError != "":
		p.section("Apps", "unknown: "+r.AppsError)
		return
	case len(r.Apps) == 0:
		p.section("Apps", "none deployed by perch")
		return
	}
	ready := 0
	for _, a := range r.Apps {
		if a.State == AppReady {
			ready++
		}
	}
	p.section("Apps", fmt.Sprintf("%d, %d ready", len(r.Apps), ready))
	var rows [][]string
	for _, a := range r.Apps {
		pods := "-"
		if a.Job == JobSucceeded {
			var have, want int32
			for _, w := range a.Workloads {
				have += w.Ready
				want += w.Desired
			}
			pods = fmt.Sprintf("%d/%d pods", have, want)
		}
		rows = append(rows, []string{a.Name, orDash(a.Version), string(a.State), "job " + string(a.Job), pods})
	}
	for i, l := range columns(rows) {
		fmt.Fprintln(p.w, l)
		for _, c := range causes(r.Apps[i]) {
			p.detail(4, c)
		}
	}
}

// causes say why an app is not ready: its pods and workloads that are
// not, or what the Job is doing.
func causes(a App) []string {
	if a.State == AppReady {
		return nil
	}
	var out []string
	for _, p := range a.Unready {
		out = append(out, "pod "+p.Namespace+"/"+p.Name+" "+p.Reason)
	}
	if a.Job == JobSucceeded {
		for _, w := range a.Workloads {
			if !w.UpToDate {
				out = append(out, fmt.Sprintf("%s %s: %d/%d ready", w.Kind, w.Name, w.Ready, w.Desired))
			}
		}
	}
	if len(out) == 0 && a.Reason != "" {
		out = []string{a.Reason}
	}
	return out
}

func (p *printer) registry(r *Report) {
	reg := r.Registry
	switch {
	case !reg.Enabled:
		v := "disabled"
		if reg.Note != "" {
			v += " (" + reg.Note + ")"
		}
		p.section("Registry", v)
	case reg.Healthy:
		p.section("Registry", reg.Address+" healthy")
	default:
		p.section("Registry", reg.Address+" NOT healthy: "+reg.Error)
	}
}

func (p *printer) alerts(r *Report) {
	a := r.Alerts
	switch {
	case !a.Available:
		p.section("Alerts", orDash(a.Note))
		return
	case len(a.Firing) == 0:
		p.section("Alerts", "none firing")
		return
	}
	p.section("Alerts", fmt.Sprintf("%d firing", len(a.Firing)))
	var rows [][]string
	for _, al := range a.Firing {
		// when, as a clock time (what a log or a site visit is matched
		// against) and as an age
		rows = append(rows, []string{orDash(al.Severity), al.Name, "since " + al.Since.UTC().Format("2006-01-02 15:04 UTC") + " (" + al.For + ")"})
	}
	for i, l := range columns(rows) {
		fmt.Fprintln(p.w, l)
		if s := a.Firing[i].Summary; s != "" {
			p.detail(4, s)
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
