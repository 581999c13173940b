package alarms_test

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	// The test reads the alarms as the spec defines them (the one source
	// of both the local alarms and the module's), so it is an external
	// test: package spec imports package alarms.
	. "github.com/haven-platform/haven/internal/alarms"
	"github.com/haven-platform/haven/internal/spec"
)

// awsOnly lists the alarms alarms.tf creates that have no local default
// alarm, and why. The parity test fails when alarms.tf gains or loses an
// alarm that is in neither this list nor DefaultDefinitions.
var awsOnly = map[string]string{
	"db_cpu":          "RDS instance CPU: the local PostgreSQL nodes run outside the fleet's cgroups, so the region has no comparable CPU figure to publish",
	"db_free_storage": "RDS allocated storage runs out; the local data directories share the host's disk",
}

// parityFiles are the module's files the parity test reads: the alarms,
// the variables that set their thresholds, and the database's event
// subscription that stands for the local-only alarms. (The reader handles
// the HCL these use.)
var parityFiles = []string{"alarms.tf", "variables.tf", "database.tf"}

// readModule returns the parity files of the Terraform module by name.
func readModule(t *testing.T) map[string]string {
	t.Helper()
	files := map[string]string{}
	for _, name := range parityFiles {
		b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "terraform", name))
		if err != nil {
			t.Fatalf("read the Terraform module's %s: %v", name, err)
		}
		files[name] = string(b)
	}
	return files
}

func with(files map[string]string, name, content string) map[string]string {
	out := map[string]string{}
	for k, v := range files {
		out[k] = v
	}
	out[name] = content
	return out
}

// specDefaults returns the seed's alarms as the default spec defines them
// (one action standing for the module's SNS topic): the definitions the
// local region runs and whose thresholds `haven aws tfvars` exports.
func specDefaults(t *testing.T) []Definition {
	t.Helper()
	s, err := spec.Parse([]byte("alarms: {actions: [{name: topic, webhook: {url: 'https://hooks.example.com/haven'}}]}"), "parity.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defs, err := s.AlarmDefinitions()
	if err != nil {
		t.Fatal(err)
	}
	if len(defs) != 7 {
		t.Fatalf("the default spec defines %d alarms, want the seed's 7", len(defs))
	}
	return defs
}

// TestParityWithAlarmsTF compares the default spec's alarms with the
// Terraform module's alarms.tf, field by field.
func TestParityWithAlarmsTF(t *testing.T) {
	defs := specDefaults(t)
	problems, err := checkParity(defs, readModule(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// TestParityCheckCatchesDrift proves the parity check can fail: each edit
// of alarms.tf or of a definition is a drift it must report.
func TestParityCheckCatchesDrift(t *testing.T) {
	files := readModule(t)
	tf := files["alarms.tf"]
	fresh := func() []Definition { return specDefaults(t) }
	find := func(defs []Definition, name string) *Definition {
		for i := range defs {
			if defs[i].Name == name {
				return &defs[i]
			}
		}
		t.Fatalf("no default alarm %s", name)
		return nil
	}
	replaceIn := func(src, resource, old, new string) string {
		i := strings.Index(src, `"`+resource+`" {`)
		j := strings.Index(src[i:], old)
		if i < 0 || j < 0 {
			t.Fatalf("%q not found in resource %s", old, resource)
		}
		return src[:i+j] + new + src[i+j+len(old):]
	}
	cases := []struct {
		name string
		defs func() []Definition
		tf   string
		want string
	}{
		{"evaluation periods", fresh, replaceIn(tf, "healthy_hosts", "evaluation_periods  = 3", "evaluation_periods  = 4"), "evaluation_periods"},
		{"datapoints to alarm", fresh, replaceIn(tf, "target_p99_latency", "datapoints_to_alarm = 3", "datapoints_to_alarm = 2"), "datapoints_to_alarm"},
		{"statistic", fresh, replaceIn(tf, "db_connections", `statistic           = "Maximum"`, `statistic           = "Average"`), "statistic"},
		{"treat missing data", fresh, replaceIn(tf, "healthy_hosts", `treat_missing_data  = "breaching"`, `treat_missing_data  = "missing"`), "treat_missing_data"},
		{"expression", fresh, replaceIn(tf, "alb_5xx_rate", "FILL(requests, 1)", "FILL(requests, 0)"), "expression"},
		{"input period", fresh, replaceIn(tf, "asg_at_max", "period      = 300", "period      = 60"), "period"},
		{"an alarm AWS gained", fresh, tf + "\nresource \"aws_cloudwatch_metric_alarm\" \"new_one\" {\n  alarm_name = \"${var.name}-new-one\"\n}\n", "new_one"},
		{"threshold variable", func() []Definition {
			d := fresh()
			find(d, AlarmDBConns).AWS.ThresholdVar = "alarm_db_cpu_percent"
			return d
		}, tf, "threshold"},
		{"threshold value", func() []Definition { d := fresh(); find(d, AlarmHTTP5XXRate).Threshold = 7; return d }, tf, "default"},
		{"comparison", func() []Definition {
			d := fresh()
			find(d, AlarmP99Latency).Comparison = GreaterThanOrEqualToThreshold
			return d
		}, tf, "comparison_operator"},
		{"period", func() []Definition { d := fresh(); find(d, AlarmHealthyHosts).Period = 30e9; return d }, tf, "period"},
		{"a local alarm without its AWS side", func() []Definition { d := fresh(); find(d, AlarmDBConns).AWS.Resource = ""; return d }, tf, "db_connections"},
		{"ok actions", func() []Definition { d := fresh(); find(d, AlarmFleetAtMax).OKActions = nil; return d }, tf, "ok_actions"},
		{"an unclosed heredoc", fresh, tf + "\nlocals {\n  x = <<EOT\nhi\n}\n", "heredoc"},
		{"an event category AWS does not subscribe", func() []Definition {
			d := fresh()
			find(d, AlarmDBFailover).AWS.EventCategories = []string{"failover", "recovery"}
			return d
		}, tf, "recovery"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			problems, err := checkParity(c.defs(), with(files, "alarms.tf", c.tf))
			all := strings.Join(problems, "\n")
			if err != nil {
				all += err.Error()
			}
			if !strings.Contains(all, c.want) {
				t.Errorf("drift not reported (want a problem naming %q); got:\n%s", c.want, all)
			}
		})
	}
}

// checkParity returns every difference between defs and the module's files
// (by name: alarms.tf, variables.tf, ...). An error means a file could not
// be read as expected.
func checkParity(defs []Definition, files map[string]string) ([]string, error) {
	vars := map[string]*tfBlock{}
	tfAlarms := map[string]*tfBlock{}
	subscribed := map[string]bool{} // RDS event categories sent to the alarm topic
	names := slices.Sorted(maps.Keys(files))
	for _, name := range names {
		root, err := parseTF(files[name])
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", name, err)
		}
		for _, b := range root.children("variable") {
			vars[b.Labels[0]] = b
		}
		for _, b := range root.children("resource") {
			if len(b.Labels) != 2 {
				continue
			}
			switch b.Labels[0] {
			case "aws_cloudwatch_metric_alarm":
				if name != "alarms.tf" {
					return nil, fmt.Errorf("%s line %d: alarm %s is outside alarms.tf", name, b.Line, b.Labels[1])
				}
				tfAlarms[b.Labels[1]] = b
			case "aws_db_event_subscription":
				if b.Attrs["sns_topic"].Src != "aws_sns_topic.alarms.arn" {
					continue
				}
				for _, m := range regexp.MustCompile(`"([^"]+)"`).FindAllStringSubmatch(b.Attrs["event_categories"].Src, -1) {
					subscribed[m[1]] = true
				}
			}
		}
	}
	var problems []string
	bad := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }

	matched := map[string]bool{}
	for _, d := range defs {
		d = d.WithDefaults()
		if d.AWS == nil {
			bad("%s: a default alarm without AWS parity data", d.Name)
			continue
		}
		if d.AWS.Resource == "" {
			if d.AWS.Instead == "" {
				bad("%s: no alarms.tf resource and no word on what stands for it on AWS", d.Name)
			}
			for _, c := range d.AWS.EventCategories {
				if !subscribed[c] {
					bad("%s: stands on AWS for the RDS event category %q, which no aws_db_event_subscription sends to aws_sns_topic.alarms", d.Name, c)
				}
			}
			for res, b := range tfAlarms {
				if s, _ := b.Attrs["alarm_name"].str(); s == "${var.name}-"+d.Name {
					bad("%s: alarms.tf now has it as %s: set AWS.Resource", d.Name, res)
				}
			}
			continue
		}
		b := tfAlarms[d.AWS.Resource]
		if b == nil {
			bad("%s: alarms.tf has no aws_cloudwatch_metric_alarm %q", d.Name, d.AWS.Resource)
			continue
		}
		matched[d.AWS.Resource] = true
		at := func(field string) string {
			return fmt.Sprintf("%s (alarms.tf %s, line %d) %s", d.Name, d.AWS.Resource, b.Line, field)
		}
		if s, _ := b.Attrs["alarm_name"].str(); s != "${var.name}-"+d.Name {
			bad("%s: alarm_name %q, want ${var.name}-%s", at("alarm_name"), b.Attrs["alarm_name"].Src, d.Name)
		}
		intAttr := func(name string, def int) int {
			e, ok := b.Attrs[name]
			if !ok {
				return def
			}
			f, ok := e.num()
			if !ok {
				bad("%s: %q is not a number literal", at(name), e.Src)
			}
			return int(f)
		}
		strAttr := func(name, def string) string {
			e, ok := b.Attrs[name]
			if !ok {
				return def
			}
			s, ok := e.str()
			if !ok {
				bad("%s: %q is not a string literal", at(name), e.Src)
			}
			return s
		}
		n := intAttr("evaluation_periods", 0)
		if n != d.EvaluationPeriods {
			bad("%s: %d on AWS, %d locally", at("evaluation_periods"), n, d.EvaluationPeriods)
		}
		if m := intAttr("datapoints_to_alarm", n); m != d.DatapointsToAlarm {
			bad("%s: %d on AWS, %d locally", at("datapoints_to_alarm"), m, d.DatapointsToAlarm)
		}
		if c := strAttr("comparison_operator", ""); c != string(d.Comparison) {
			bad("%s: %s on AWS, %s locally", at("comparison_operator"), c, d.Comparison)
		}
		if tmd := strAttr("treat_missing_data", string(Missing)); tmd != string(d.TreatMissingData) {
			bad("%s: %s on AWS, %s locally", at("treat_missing_data"), tmd, d.TreatMissingData)
		}
		thr := b.Attrs["threshold"]
		if d.AWS.ThresholdVar != "" {
			if thr.Src != "var."+d.AWS.ThresholdVar {
				bad("%s: %q on AWS, want var.%s", at("threshold"), thr.Src, d.AWS.ThresholdVar)
			} else if v := vars[d.AWS.ThresholdVar]; v == nil {
				bad("%s: variables.tf has no variable %s", at("threshold"), d.AWS.ThresholdVar)
			} else if def, ok := v.Attrs["default"]; ok {
				if f, ok := def.num(); !ok || f != d.Threshold {
					bad("%s: var.%s default %s, local default threshold %g", at("threshold"), d.AWS.ThresholdVar, def.Src, d.Threshold)
				}
			}
		} else if f, ok := thr.num(); !ok || f != d.Threshold {
			bad("%s: %q on AWS, %g locally", at("threshold"), thr.Src, d.Threshold)
		}
		for _, l := range []struct {
			attr  string
			local []string
		}{{"alarm_actions", d.AlarmActions}, {"ok_actions", d.OKActions}} {
			if _, onAWS := b.Attrs[l.attr]; onAWS != (len(l.local) > 0) {
				bad("%s: set on AWS %v, locally %v", at(l.attr), onAWS, len(l.local) > 0)
			}
		}
		m, ok := LookupMetric(d.Metric)
		if !ok || m.AWS == nil {
			bad("%s: metric %s has no AWS counterpart in the registry", at("metric"), d.Metric)
			continue
		}
		period := int(d.Period.Seconds())
		if m.AWS.Expression == "" {
			if ns := strAttr("namespace", ""); ns != m.AWS.Namespace {
				bad("%s: %s on AWS, registry says %s", at("namespace"), ns, m.AWS.Namespace)
			}
			if mn := strAttr("metric_name", ""); mn != m.AWS.Name {
				bad("%s: %s on AWS, registry says %s", at("metric_name"), mn, m.AWS.Name)
			}
			if p := intAttr("period", 0); p != period {
				bad("%s: %d s on AWS, %d s locally", at("period"), p, period)
			}
			if _, pct := d.Statistic.Percentile(); pct {
				if s := strAttr("extended_statistic", ""); s != string(d.Statistic) {
					bad("%s: extended_statistic %q on AWS, %s locally", at("statistic"), s, d.Statistic)
				}
			} else if s := strAttr("statistic", ""); s != string(d.Statistic) {
				bad("%s: %q on AWS, %s locally", at("statistic"), s, d.Statistic)
			}
			continue
		}
		// Metric math: the expression and its inputs.
		inputs := map[string]AWSInput{}
		var expr string
		for _, q := range b.children("metric_query") {
			id, _ := q.Attrs["id"].str()
			if rd, ok := q.Attrs["return_data"]; ok && rd.Src == "true" {
				expr, _ = q.Attrs["expression"].str()
				continue
			}
			for _, mb := range q.children("metric") {
				ns, _ := mb.Attrs["namespace"].str()
				mn, _ := mb.Attrs["metric_name"].str()
				st, _ := mb.Attrs["stat"].str()
				if p, _ := mb.Attrs["period"].num(); int(p) != period {
					bad("%s: input %s period %s s on AWS, %d s locally", at("period"), id, mb.Attrs["period"].Src, period)
				}
				inputs[id] = AWSInput{ID: id, Namespace: ns, Name: mn, Stat: st}
			}
		}
		if expr != m.AWS.Expression {
			bad("%s: %q on AWS, registry says %q", at("expression"), expr, m.AWS.Expression)
		}
		var want []string
		for _, in := range m.AWS.Inputs {
			want = append(want, fmt.Sprintf("%+v", in))
		}
		var got []string
		for _, in := range inputs {
			got = append(got, fmt.Sprintf("%+v", in))
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			bad("%s: inputs %v on AWS, registry says %v", at("expression"), got, want)
		}
	}
	for res := range tfAlarms {
		if !matched[res] && awsOnly[res] == "" {
			bad("alarms.tf %s: no default alarm matches it and it is not in awsOnly: add a local alarm or say why there is none", res)
		}
	}
	for res := range awsOnly {
		if tfAlarms[res] == nil {
			bad("awsOnly lists %s, which alarms.tf no longer has", res)
		}
		if matched[res] {
			bad("awsOnly lists %s, which a default alarm matches", res)
		}
	}
	slices.Sort(problems)
	return problems, nil
}

func TestTFReaderReadsTheSubsetAndRefusesTheRest(t *testing.T) {
	root, err := parseTF(`# comment
resource "a" "b" { // trailing
  x = 1
  y = "s-${var.n}" # note
  m = {
    k = v.w
  }
  inner {
    z = IF(a >= b, 1, 0)
  }
}
/* block
comment */
variable "v" { default = 5 }
`)
	if err != nil {
		t.Fatal(err)
	}
	r := root.children("resource")[0]
	if r.Labels[1] != "b" || r.Attrs["x"].Src != "1" || r.Attrs["y"].Src != `"s-${var.n}"` || !strings.Contains(r.Attrs["m"].Src, "k = v.w") || r.Blocks[0].Attrs["z"].Src != "IF(a >= b, 1, 0)" {
		t.Errorf("parsed %+v %+v", r.Attrs, r.Blocks[0].Attrs)
	}
	if v := root.children("variable")[0]; v.Attrs["default"].Src != "5" || v.Line != 14 {
		t.Errorf("variable %+v", v)
	}
	// Heredocs are read whole, brackets and quotes inside them ignored, and
	// the lines after them keep their numbers.
	doc, err := parseTF("variable \"h\" {\n  description = <<-EOT\n    a { \"b\n    EOT\n  type = number\n}\nvariable \"after\" { default = 1 }\n")
	if err != nil {
		t.Fatal(err)
	}
	if h := doc.children("variable")[0]; !strings.HasPrefix(h.Attrs["description"].Src, "<<-EOT") || h.Attrs["type"].Src != "number" {
		t.Errorf("heredoc variable %+v", h.Attrs)
	}
	if a := doc.children("variable")[1]; a.Line != 7 {
		t.Errorf("the variable after a heredoc is on line %d, want 7", a.Line)
	}
	for _, bad := range []string{"x = <<EOT\nhi\n", "resource \"a\" {\n x = (1\n", "x = \"open\n", "}\n"} {
		if _, err := parseTF(bad); err == nil || !strings.Contains(err.Error(), "line") {
			t.Errorf("%q: error %v, want one naming the line", bad, err)
		}
	}
}
