package spec

import (
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/haven-platform/haven/internal/alarms"
)

// Metrics is the Prometheus endpoint of the local region.
type Metrics struct {
	// Listen is the loopback address /metrics is served on, for a
	// Prometheus on this machine. Default: 127.0.0.1:9464.
	Listen string `yaml:"listen" json:"listen"`
}

// Console is the operator's web console of the local region.
type Console struct {
	// Listen is the loopback address the console is served on; `haven
	// console` prints its URL with a one-time login. Default: 127.0.0.1:8444.
	Listen string `yaml:"listen" json:"listen"`
}

// Alarms are the region's CloudWatch-style alarms: the seed's (with their
// thresholds), any custom ones, and the actions they notify. The same
// definitions run locally and, through `haven aws tfvars`, in the
// Terraform module's alarms.tf.
type Alarms struct {
	// Thresholds set the seed's alarms' thresholds.
	Thresholds AlarmThresholds `yaml:"thresholds" json:"thresholds"`
	// Actions are where notifications go: webhooks and ServiceNow
	// instances, by name. Default: none (alarms change state and are
	// recorded, nobody is notified).
	Actions []AlarmAction `yaml:"actions" json:"actions,omitempty"`
	// DefaultActions are the actions the seed's alarms notify on ALARM and
	// on OK. Default: every action.
	DefaultActions []string `yaml:"default_actions" json:"default_actions,omitempty"`
	// Custom are further alarms, with CloudWatch's fields. Default: none.
	Custom []CustomAlarm `yaml:"custom" json:"custom,omitempty"`
}

// AlarmThresholds are the thresholds of the seed's alarms. healthy hosts
// below min alarms below fleet.min; the failover and at-max alarms have
// fixed conditions.
type AlarmThresholds struct {
	// HTTP5XXPercent: alb-5xx-rate alarms above this percentage of requests
	// answered with 5xx, in 2 of 3 minutes. Default: 5.
	HTTP5XXPercent float64 `yaml:"http_5xx_percent" json:"http_5xx_percent"`
	// P99LatencySeconds: target-p99-latency alarms above this target p99,
	// in 3 of 5 minutes. Default: 1.
	P99LatencySeconds float64 `yaml:"p99_latency_seconds" json:"p99_latency_seconds"`
	// DBConnections: db-connections alarms above this many connections for
	// 5 minutes. Default: 100.
	DBConnections float64 `yaml:"db_connections" json:"db_connections"`
	// ReplicaLagSeconds: db-replica-lag alarms above this standby replay
	// lag for 3 minutes. Default: 10.
	ReplicaLagSeconds float64 `yaml:"replica_lag_seconds" json:"replica_lag_seconds"`
}

// AlarmAction is one place notifications go: exactly one of Webhook and
// ServiceNow.
type AlarmAction struct {
	// Name is how alarms refer to the action. Required: lowercase letters,
	// digits and dashes.
	Name string `yaml:"name" json:"name"`
	// Webhook posts each notification as JSON (docs/alarms.md).
	Webhook *WebhookAction `yaml:"webhook,omitempty" json:"webhook,omitempty"`
	// ServiceNow opens an incident on ALARM and resolves it on OK.
	ServiceNow *ServiceNowAction `yaml:"servicenow,omitempty" json:"servicenow,omitempty"`
}

// WebhookAction is a generic webhook.
type WebhookAction struct {
	// URL receives a POST per notification. http or https, without user
	// info. Required.
	URL string `yaml:"url" json:"url"`
	// CredentialsSecret names a secret in the region's secrets store
	// holding {"username": ..., "password": ...} (basic auth) or
	// {"token": ...} (a bearer token). Never the credential itself. Default:
	// none (no Authorization header).
	CredentialsSecret string `yaml:"credentials_secret" json:"credentials_secret,omitempty"`
}

// ServiceNowAction is a ServiceNow instance's incident table.
type ServiceNowAction struct {
	// InstanceURL is the instance, e.g. https://example.service-now.com;
	// https (plain http only to a loopback address). Required.
	InstanceURL string `yaml:"instance_url" json:"instance_url"`
	// CredentialsSecret names a secret in the region's secrets store
	// holding {"username": ..., "password": ...} of an integration user, or
	// {"token": ...} (OAuth). Required.
	CredentialsSecret string `yaml:"credentials_secret" json:"credentials_secret"`
	// AssignmentGroup, CallerID and Category are copied to each incident
	// opened. Default: unset.
	AssignmentGroup string `yaml:"assignment_group" json:"assignment_group,omitempty"`
	CallerID        string `yaml:"caller_id" json:"caller_id,omitempty"`
	Category        string `yaml:"category" json:"category,omitempty"`
	// Impact and Urgency of opened incidents, 1 (high) to 3 (low); 0
	// selects the default. Default: 2.
	Impact  int `yaml:"impact" json:"impact,omitempty"`
	Urgency int `yaml:"urgency" json:"urgency,omitempty"`
}

// CustomAlarm is an alarm with CloudWatch's PutMetricAlarm fields, on a
// metric the region publishes (docs/alarms.md lists them).
type CustomAlarm struct {
	// Name identifies the alarm. Required, unique among all alarms.
	Name string `yaml:"name" json:"name"`
	// Description says what it means. Default: none.
	Description string `yaml:"description" json:"description,omitempty"`
	// Metric is a metric of the registry, e.g. TargetResponseTime. Required.
	Metric string `yaml:"metric" json:"metric"`
	// Statistic is Average, Sum, Minimum, Maximum, SampleCount or a
	// percentile such as p99. Required.
	Statistic string `yaml:"statistic" json:"statistic"`
	// Period is one datapoint's length, whole seconds (locally divided by
	// time_scale when the spec sets one). Required.
	Period Duration `yaml:"period" json:"period"`
	// EvaluationPeriods is N, how many recent datapoints are evaluated.
	// Required, ≥ 1.
	EvaluationPeriods int `yaml:"evaluation_periods" json:"evaluation_periods"`
	// DatapointsToAlarm is M, how many of those must breach. Default: N.
	DatapointsToAlarm int `yaml:"datapoints_to_alarm" json:"datapoints_to_alarm,omitempty"`
	// Threshold is compared with each datapoint. Required.
	Threshold float64 `yaml:"threshold" json:"threshold"`
	// ComparisonOperator is GreaterThanThreshold,
	// GreaterThanOrEqualToThreshold, LessThanThreshold or
	// LessThanOrEqualToThreshold. Required.
	ComparisonOperator string `yaml:"comparison_operator" json:"comparison_operator"`
	// TreatMissingData is missing, ignore, breaching or notBreaching.
	// Default: missing.
	TreatMissingData string `yaml:"treat_missing_data" json:"treat_missing_data,omitempty"`
	// AlarmActions, OKActions and InsufficientDataActions name actions run
	// when the alarm enters each state. Default: none.
	AlarmActions            []string `yaml:"alarm_actions" json:"alarm_actions,omitempty"`
	OKActions               []string `yaml:"ok_actions" json:"ok_actions,omitempty"`
	InsufficientDataActions []string `yaml:"insufficient_data_actions" json:"insufficient_data_actions,omitempty"`
	// Runbook is the repository path of its runbook. Default: none.
	Runbook string `yaml:"runbook" json:"runbook,omitempty"`
}

var actionNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// secretNameRE is Secrets Manager's name alphabet.
var secretNameRE = regexp.MustCompile(`^[A-Za-z0-9/_+=.@-]{1,512}$`)

// validateOperations checks metrics, console and alarms.
func (s *Spec) validateOperations(ps *problems) {
	checkLoopback(ps, "metrics.listen", s.Metrics.Listen)
	checkLoopback(ps, "console.listen", s.Console.Listen)
	if s.Metrics.Listen != "" && s.Metrics.Listen == s.Console.Listen {
		ps.add("console.listen", "must differ from metrics.listen (%s)", s.Metrics.Listen)
	}
	a := &s.Alarms
	for _, v := range []struct {
		field string
		v     float64
	}{{"http_5xx_percent", a.Thresholds.HTTP5XXPercent}, {"p99_latency_seconds", a.Thresholds.P99LatencySeconds},
		{"db_connections", a.Thresholds.DBConnections}, {"replica_lag_seconds", a.Thresholds.ReplicaLagSeconds}} {
		if !(v.v > 0 && v.v < 1e9) {
			ps.add("alarms.thresholds."+v.field, "must be a number above 0, got %g", v.v)
		}
	}
	if a.Thresholds.HTTP5XXPercent > 100 {
		ps.add("alarms.thresholds.http_5xx_percent", "must be a percentage up to 100, got %g", a.Thresholds.HTTP5XXPercent)
	}
	names := map[string]bool{}
	for i, act := range a.Actions {
		f := fmt.Sprintf("alarms.actions[%d]", i)
		if !actionNameRE.MatchString(act.Name) {
			ps.add(f+".name", "must be 1–63 lowercase letters, digits or dashes, starting with a letter, got %q", act.Name)
		} else if names[act.Name] {
			ps.add(f+".name", "action %q is defined twice", act.Name)
		}
		names[act.Name] = true
		switch {
		case (act.Webhook == nil) == (act.ServiceNow == nil):
			ps.add(f, "set exactly one of webhook or servicenow")
		case act.Webhook != nil:
			checkActionURL(ps, f+".webhook.url", act.Webhook.URL, false)
			if c := act.Webhook.CredentialsSecret; c != "" && !secretNameRE.MatchString(c) {
				ps.add(f+".webhook.credentials_secret", "must be a secret's name in the region's secrets store (letters, digits, /_+=.@-), got %q", c)
			}
		default:
			sn := act.ServiceNow
			checkActionURL(ps, f+".servicenow.instance_url", sn.InstanceURL, true)
			if !secretNameRE.MatchString(sn.CredentialsSecret) {
				ps.add(f+".servicenow.credentials_secret", "must name the secret in the region's secrets store that holds the integration user's {\"username\", \"password\"} or {\"token\"} (never the credential itself), got %q", sn.CredentialsSecret)
			}
			for _, v := range []struct {
				field string
				n     int
			}{{"impact", sn.Impact}, {"urgency", sn.Urgency}} {
				if v.n < 0 || v.n > 3 {
					ps.add(f+".servicenow."+v.field, "must be 1 (high), 2 or 3 (low), got %d", v.n)
				}
			}
		}
	}
	for i, n := range a.DefaultActions {
		if !names[n] {
			ps.add(fmt.Sprintf("alarms.default_actions[%d]", i), "unknown action %q: the actions are %s", n, listOr(a.actionNames(), "none"))
		}
	}
	defaults := map[string]bool{}
	for _, n := range []string{alarms.AlarmHealthyHosts, alarms.AlarmHTTP5XXRate, alarms.AlarmP99Latency, alarms.AlarmDBFailover, alarms.AlarmReplicaLag, alarms.AlarmDBConns, alarms.AlarmFleetAtMax} {
		defaults[n] = true
	}
	// A deploy's rollback_on gate watches the region's alarms by name.
	for i, n := range s.Fleet.InstanceRefresh.RollbackOn {
		if n == "" || defaults[n] || slices.ContainsFunc(a.Custom, func(c CustomAlarm) bool { return c.Name == n }) {
			continue
		}
		all := slices.Sorted(maps.Keys(defaults))
		for _, c := range a.Custom {
			all = append(all, c.Name)
		}
		ps.add(fmt.Sprintf("fleet.instance_refresh.rollback_on[%d]", i), "unknown alarm %q: the region's alarms are %s (alarms.custom adds more)", n, strings.Join(all, ", "))
	}
	seen := map[string]bool{}
	for i, c := range a.Custom {
		f := fmt.Sprintf("alarms.custom[%d]", i)
		d := c.definition()
		for _, p := range d.Problems() {
			ps.add(f+"."+p.Field, "%s", p.Msg)
		}
		if d.Period > 0 && d.Period%time.Second == 0 && d.Period > 24*time.Hour {
			ps.add(f+".period", "must be at most 1 day, got %s", c.Period)
		}
		switch {
		case defaults[c.Name]:
			ps.add(f+".name", "%q is one of the seed's alarms; set its threshold under alarms.thresholds, or give the custom alarm another name", c.Name)
		case seen[c.Name]:
			ps.add(f+".name", "alarm %q is defined twice", c.Name)
		}
		seen[c.Name] = true
		for _, l := range []struct {
			field string
			names []string
		}{{"alarm_actions", c.AlarmActions}, {"ok_actions", c.OKActions}, {"insufficient_data_actions", c.InsufficientDataActions}} {
			for j, n := range l.names {
				if n != "" && !names[n] {
					ps.add(fmt.Sprintf("%s.%s[%d]", f, l.field, j), "unknown action %q: the actions are %s", n, listOr(a.actionNames(), "none"))
				}
			}
		}
	}
}

func listOr(s []string, none string) string {
	if len(s) == 0 {
		return none
	}
	return fmt.Sprint(s)
}

func (a *Alarms) actionNames() []string {
	var out []string
	for _, act := range a.Actions {
		out = append(out, act.Name)
	}
	return out
}

// checkLoopback requires a loopback ip:port.
func checkLoopback(ps *problems, field, v string) {
	ap, err := netip.ParseAddrPort(v)
	switch {
	case err != nil:
		ps.add(field, "must be a loopback IP address and port such as 127.0.0.1:9464, got %q", v)
	case !ap.Addr().IsLoopback():
		ps.add(field, "must be a loopback address (only this machine's operator may reach it), got %q", v)
	case ap.Port() == 0:
		ps.add(field, "must name a port from 1 to 65535, got %q", v)
	}
}

// checkActionURL requires an absolute http(s) URL without user info; with
// httpsOnly, plain http only to a loopback host (a local test server).
func checkActionURL(ps *problems, field, v string, httpsOnly bool) {
	u, err := url.Parse(v)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		ps.add(field, "must be an http or https URL, got %q", v)
		return
	}
	if u.User != nil {
		ps.add(field, "must not carry credentials: put them in the secrets store and name the secret in credentials_secret")
		return
	}
	if httpsOnly && u.Scheme == "http" {
		if ip, err := netip.ParseAddr(u.Hostname()); (err != nil || !ip.IsLoopback()) && u.Hostname() != "localhost" {
			ps.add(field, "must be https (plain http only to a loopback address, for tests), got %q", v)
		}
	}
}

func (c CustomAlarm) definition() alarms.Definition {
	return alarms.Definition{
		Name: c.Name, Description: c.Description, Metric: c.Metric, Statistic: alarms.Statistic(c.Statistic),
		Period: c.Period.D(), EvaluationPeriods: c.EvaluationPeriods, DatapointsToAlarm: c.DatapointsToAlarm,
		Threshold: c.Threshold, Comparison: alarms.Comparison(c.ComparisonOperator), TreatMissingData: alarms.TreatMissingData(c.TreatMissingData),
		AlarmActions: slices.Clone(c.AlarmActions), OKActions: slices.Clone(c.OKActions), InsufficientDataActions: slices.Clone(c.InsufficientDataActions),
		Runbook: c.Runbook,
	}
}

// AlarmDefinitions returns the spec's alarms in AWS's units: the seed's,
// with the spec's thresholds, fleet.min and default actions, then the
// custom ones. The local region divides their periods by its time scale;
// `haven aws tfvars` exports the thresholds; the alarm parity test
// compares the seed's with deploy/terraform/alarms.tf. Call it on a
// validated spec.
func (s Spec) AlarmDefinitions() ([]alarms.Definition, error) {
	acts := s.Alarms.DefaultActions
	if len(acts) == 0 {
		acts = s.Alarms.actionNames()
	}
	th := s.Alarms.Thresholds
	defs, err := alarms.DefaultDefinitions(alarms.Params{
		FleetMin: s.Fleet.Min, HTTP5XXPercent: th.HTTP5XXPercent, P99LatencySeconds: th.P99LatencySeconds,
		DBConnections: th.DBConnections, ReplicaLagSeconds: th.ReplicaLagSeconds, Actions: acts,
	})
	if err != nil {
		return nil, err
	}
	for _, c := range s.Alarms.Custom {
		defs = append(defs, c.definition())
	}
	return defs, nil
}
