package alarms

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Statistic is the statistic an alarm computes over each period: Average,
// Sum, Minimum, Maximum, SampleCount, or a percentile such as p99 or p99.9
// (CloudWatch's extended statistic).
type Statistic string

// The plain statistics.
const (
	Average     Statistic = "Average"
	Sum         Statistic = "Sum"
	Minimum     Statistic = "Minimum"
	Maximum     Statistic = "Maximum"
	SampleCount Statistic = "SampleCount"
)

// Percentile returns the percentile p of a percentile statistic (99 for
// "p99", 99.9 for "p99.9"), and whether s is one.
func (s Statistic) Percentile() (float64, bool) {
	str := string(s)
	if len(str) < 2 || str[0] != 'p' {
		return 0, false
	}
	for _, c := range str[1:] {
		if (c < '0' || c > '9') && c != '.' {
			return 0, false
		}
	}
	p, err := strconv.ParseFloat(str[1:], 64)
	if err != nil || !(p > 0 && p <= 100) {
		return 0, false
	}
	return p, true
}

// Valid reports whether s is a statistic haven computes.
func (s Statistic) Valid() bool {
	switch s {
	case Average, Sum, Minimum, Maximum, SampleCount:
		return true
	}
	_, ok := s.Percentile()
	return ok
}

// Comparison is how a datapoint is compared with the threshold; a datapoint
// that satisfies it is breaching.
type Comparison string

// The comparison operators, named as CloudWatch names them.
const (
	GreaterThanOrEqualToThreshold Comparison = "GreaterThanOrEqualToThreshold"
	GreaterThanThreshold          Comparison = "GreaterThanThreshold"
	LessThanThreshold             Comparison = "LessThanThreshold"
	LessThanOrEqualToThreshold    Comparison = "LessThanOrEqualToThreshold"
)

// Breaches reports whether value breaches threshold under c.
func (c Comparison) Breaches(value, threshold float64) bool {
	switch c {
	case GreaterThanOrEqualToThreshold:
		return value >= threshold
	case GreaterThanThreshold:
		return value > threshold
	case LessThanThreshold:
		return value < threshold
	case LessThanOrEqualToThreshold:
		return value <= threshold
	}
	return false
}

// words is the comparison as CloudWatch's reasons spell it.
func (c Comparison) words() string {
	switch c {
	case GreaterThanOrEqualToThreshold:
		return "greater than or equal to"
	case GreaterThanThreshold:
		return "greater than"
	case LessThanThreshold:
		return "less than"
	case LessThanOrEqualToThreshold:
		return "less than or equal to"
	}
	return string(c)
}

// Valid reports whether c is one of the four operators.
func (c Comparison) Valid() bool { return c.words() != string(c) }

// TreatMissingData is how an alarm treats a period without a datapoint
// when it has too few real datapoints to evaluate (docs/alarms.md).
type TreatMissingData string

// The four treatments, named as CloudWatch names them.
const (
	// Missing: missing datapoints are not considered; with no datapoint at
	// all the alarm goes to INSUFFICIENT_DATA. The default.
	Missing TreatMissingData = "missing"
	// Ignore: the alarm keeps its current state when data is missing.
	Ignore TreatMissingData = "ignore"
	// Breaching: a missing datapoint counts as breaching.
	Breaching TreatMissingData = "breaching"
	// NotBreaching: a missing datapoint counts as within the threshold.
	NotBreaching TreatMissingData = "notBreaching"
)

// Valid reports whether t is one of the four treatments ("" is not; it
// selects Missing only through a Definition's defaults).
func (t TreatMissingData) Valid() bool {
	switch t {
	case Missing, Ignore, Breaching, NotBreaching:
		return true
	}
	return false
}

// label is the treatment as CloudWatch's reasons spell it.
func (t TreatMissingData) label() string {
	switch t {
	case Breaching:
		return "Breaching"
	case NotBreaching:
		return "NonBreaching"
	case Ignore:
		return "Ignore"
	}
	return "Missing"
}

// Defaults and limits of a Definition.
const (
	// MaxEvaluationWindow is CloudWatch's limit on evaluation periods ×
	// period: one day.
	MaxEvaluationWindow = 24 * time.Hour
	// MinPeriod is the shortest period haven evaluates (CloudWatch's
	// shortest is 10 s; the local region compresses time, so it may go
	// below).
	MinPeriod = time.Second
)

// Definition is one alarm, with CloudWatch's fields (PutMetricAlarm). The
// zero values of DatapointsToAlarm and TreatMissingData select their
// defaults.
type Definition struct {
	// Name identifies the alarm: lower-case letters, digits, '.', '_' and
	// '-', at most 100 characters. It names the runbook, the incident's
	// correlation id and the alarm on AWS (alarms.tf: "${var.name}-<name>").
	// Required, unique.
	Name string `json:"name"`
	// Description says what the alarm means, in one sentence. Optional.
	Description string `json:"description,omitempty"`
	// Metric is a metric of the registry (Metrics). Required.
	Metric string `json:"metric"`
	// Statistic is computed over each period. Required.
	Statistic Statistic `json:"statistic"`
	// Period is the length of one datapoint, in whole seconds. Required.
	// The local region divides it by its time scale.
	Period time.Duration `json:"period"`
	// EvaluationPeriods is N: how many of the most recent datapoints are
	// evaluated. Required, ≥ 1; EvaluationPeriods × Period ≤ 24 h.
	EvaluationPeriods int `json:"evaluation_periods"`
	// DatapointsToAlarm is M: how many of those N must breach for ALARM.
	// Default EvaluationPeriods (N out of N); 1 ≤ M ≤ N.
	DatapointsToAlarm int `json:"datapoints_to_alarm"`
	// Threshold is compared with each datapoint. Required, finite.
	Threshold float64 `json:"threshold"`
	// Comparison is the operator. Required.
	Comparison Comparison `json:"comparison_operator"`
	// TreatMissingData is how missing datapoints count. Default missing.
	TreatMissingData TreatMissingData `json:"treat_missing_data"`
	// AlarmActions are the names of the actions run when the alarm enters
	// ALARM. Default none.
	AlarmActions []string `json:"alarm_actions,omitempty"`
	// OKActions are run when the alarm enters OK. Default none.
	OKActions []string `json:"ok_actions,omitempty"`
	// InsufficientDataActions are run when the alarm enters
	// INSUFFICIENT_DATA. Default none.
	InsufficientDataActions []string `json:"insufficient_data_actions,omitempty"`
	// Runbook is the repository path of the alarm's runbook
	// (docs/runbooks/<name>.md). Optional; every default alarm has one.
	Runbook string `json:"runbook,omitempty"`
	// AWS says where the same alarm lives in deploy/terraform. Optional:
	// only the default alarms carry it, for the parity test.
	AWS *AWSParity `json:"aws,omitempty"`
}

// AWSParity ties a definition to the Terraform module.
type AWSParity struct {
	// Resource is the aws_cloudwatch_metric_alarm resource in
	// deploy/terraform/alarms.tf, or "" when AWS has no such alarm.
	Resource string `json:"resource,omitempty"`
	// ThresholdVar is the module variable that sets the threshold on AWS,
	// or "" when alarms.tf writes the threshold as a literal.
	ThresholdVar string `json:"threshold_var,omitempty"`
	// Instead says, when Resource is "", what stands for the alarm on AWS
	// and why there is no CloudWatch alarm.
	Instead string `json:"instead,omitempty"`
	// EventCategories, when Resource is "", are the RDS event categories
	// the module's aws_db_event_subscription sends to the alarm topic in the
	// alarm's place.
	EventCategories []string `json:"event_categories,omitempty"`
}

// WithDefaults returns d with its defaults filled in.
func (d Definition) WithDefaults() Definition {
	if d.DatapointsToAlarm == 0 {
		d.DatapointsToAlarm = d.EvaluationPeriods
	}
	if d.TreatMissingData == "" {
		d.TreatMissingData = Missing
	}
	return d
}

// Actions returns the action names run when the alarm enters s.
func (d Definition) Actions(s State) []string {
	switch s {
	case StateAlarm:
		return d.AlarmActions
	case StateOK:
		return d.OKActions
	case StateInsufficientData:
		return d.InsufficientDataActions
	}
	return nil
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,99}$`)

// FieldProblem is one problem of a definition: the field (its JSON and
// spec name, e.g. "datapoints_to_alarm") and what is wrong.
type FieldProblem struct {
	Field, Msg string
}

// Validate checks one definition and returns every problem found, each
// naming the field as alarms.<name>.<field>.
func (d Definition) Validate() error {
	prefix := "alarms." + d.Name
	if d.Name == "" {
		prefix = "alarms.(unnamed)"
	}
	var errs []error
	for _, p := range d.Problems() {
		errs = append(errs, fmt.Errorf("%s.%s: %s", prefix, p.Field, p.Msg))
	}
	return errors.Join(errs...)
}

// Problems checks one definition and returns every problem found, in the
// order of the fields (Validate words them with the alarm's name; the spec
// with its own path).
func (d Definition) Problems() []FieldProblem {
	var ps []FieldProblem
	add := func(field, format string, a ...any) {
		ps = append(ps, FieldProblem{Field: field, Msg: fmt.Sprintf(format, a...)})
	}
	if !nameRE.MatchString(d.Name) {
		add("name", "must be 1-100 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit, got %q", d.Name)
	}
	if _, ok := LookupMetric(d.Metric); !ok {
		if d.Metric == "" {
			add("metric", "must be set to one of: %s", metricNames())
		} else {
			add("metric", "unknown metric %q: the region publishes only %s", d.Metric, metricNames())
		}
	}
	if !d.Statistic.Valid() {
		add("statistic", "must be Average, Sum, Minimum, Maximum, SampleCount or a percentile such as p99 or p99.9, got %q", d.Statistic)
	}
	switch {
	case d.Period < MinPeriod:
		add("period", "must be at least %s, got %s", MinPeriod, d.Period)
	case d.Period%time.Second != 0:
		add("period", "must be whole seconds, got %s", d.Period)
	}
	if d.EvaluationPeriods < 1 {
		add("evaluation_periods", "must be ≥ 1, got %d", d.EvaluationPeriods)
	} else if d.Period > 0 && time.Duration(d.EvaluationPeriods)*d.Period > MaxEvaluationWindow {
		add("evaluation_periods", "evaluation_periods × period must be at most %s (CloudWatch's limit), got %d × %s", MaxEvaluationWindow, d.EvaluationPeriods, d.Period)
	}
	switch {
	case d.DatapointsToAlarm < 0:
		add("datapoints_to_alarm", "must be ≥ 1 (0 selects evaluation_periods), got %d", d.DatapointsToAlarm)
	case d.EvaluationPeriods >= 1 && d.DatapointsToAlarm > d.EvaluationPeriods:
		add("datapoints_to_alarm", "must be ≤ evaluation_periods (%d), got %d: an alarm cannot need more breaching datapoints than it evaluates", d.EvaluationPeriods, d.DatapointsToAlarm)
	}
	if math.IsNaN(d.Threshold) || math.IsInf(d.Threshold, 0) {
		add("threshold", "must be a finite number, got %v", d.Threshold)
	}
	if !d.Comparison.Valid() {
		add("comparison_operator", "must be GreaterThanOrEqualToThreshold, GreaterThanThreshold, LessThanThreshold or LessThanOrEqualToThreshold, got %q", d.Comparison)
	}
	if d.TreatMissingData != "" && !d.TreatMissingData.Valid() {
		add("treat_missing_data", "must be missing, ignore, breaching or notBreaching, got %q", d.TreatMissingData)
	}
	for _, l := range []struct {
		field string
		names []string
	}{{"alarm_actions", d.AlarmActions}, {"ok_actions", d.OKActions}, {"insufficient_data_actions", d.InsufficientDataActions}} {
		seen := map[string]bool{}
		for _, n := range l.names {
			if n == "" {
				add(l.field, "an action name is empty")
			} else if seen[n] {
				add(l.field, "action %q is listed twice", n)
			}
			seen[n] = true
		}
	}
	if d.Runbook != "" && (strings.HasPrefix(d.Runbook, "/") || strings.Contains(d.Runbook, "..")) {
		add("runbook", "must be a path inside the repository such as docs/runbooks/%s.md, got %q", d.Name, d.Runbook)
	}
	return ps
}

// ValidateAll validates every definition, checks names are unique and that
// every action they name is one of actions (when actions is not nil).
func ValidateAll(defs []Definition, actions []string) error {
	var errs []error
	seen := map[string]bool{}
	known := map[string]bool{}
	for _, a := range actions {
		known[a] = true
	}
	for _, d := range defs {
		if err := d.Validate(); err != nil {
			errs = append(errs, err)
		}
		if d.Name != "" && seen[d.Name] {
			errs = append(errs, fmt.Errorf("alarms.%s.name: %q is defined twice", d.Name, d.Name))
		}
		seen[d.Name] = true
		if actions == nil {
			continue
		}
		for _, l := range []struct {
			field string
			names []string
		}{{"alarm_actions", d.AlarmActions}, {"ok_actions", d.OKActions}, {"insufficient_data_actions", d.InsufficientDataActions}} {
			for _, n := range l.names {
				if n != "" && !known[n] {
					errs = append(errs, fmt.Errorf("alarms.%s.%s: unknown action %q: configured actions are %s", d.Name, l.field, n, listOrNone(actions)))
				}
			}
		}
	}
	return errors.Join(errs...)
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
