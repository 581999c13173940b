package spec

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/alarms"
)

const opsSpec = `
fleet: {min: 3, desired: 3, max: 6}
metrics: {listen: 127.0.0.1:19464}
console: {listen: 127.0.0.1:18444}
alarms:
  thresholds: {http_5xx_percent: 2, p99_latency_seconds: 0.5, db_connections: 80, replica_lag_seconds: 4}
  actions:
    - name: oncall
      webhook: {url: https://hooks.example.com/haven, credentials_secret: ops/webhook}
    - name: incidents
      servicenow: {instance_url: https://example.service-now.com, credentials_secret: ops/servicenow, assignment_group: sre}
  default_actions: [incidents]
  custom:
    - name: slow-p50
      metric: TargetResponseTime
      statistic: p50
      period: 60s
      evaluation_periods: 3
      datapoints_to_alarm: 2
      threshold: 0.3
      comparison_operator: GreaterThanThreshold
      treat_missing_data: notBreaching
      alarm_actions: [oncall]
`

// TestAlarmDefinitionsComeFromTheSpec: the seed's alarms take the spec's
// thresholds, fleet.min and default actions; custom alarms follow.
func TestAlarmDefinitionsComeFromTheSpec(t *testing.T) {
	s, err := Parse([]byte(opsSpec), "ops.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defs, err := s.AlarmDefinitions()
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]alarms.Definition{}
	for _, d := range defs {
		by[d.Name] = d
	}
	if len(defs) != 8 {
		t.Fatalf("%d alarms, want the seed's 7 and 1 custom", len(defs))
	}
	for name, want := range map[string]float64{
		alarms.AlarmHealthyHosts: 3, alarms.AlarmHTTP5XXRate: 2, alarms.AlarmP99Latency: 0.5,
		alarms.AlarmDBConns: 80, alarms.AlarmReplicaLag: 4, alarms.AlarmDBFailover: 0,
	} {
		if got := by[name].Threshold; got != want {
			t.Errorf("%s threshold = %v, want %v", name, got, want)
		}
	}
	if a := by[alarms.AlarmDBFailover].AlarmActions; len(a) != 1 || a[0] != "incidents" {
		t.Errorf("the seed's alarms notify %v, want the default actions [incidents]", a)
	}
	c := by["slow-p50"]
	if c.Period != time.Minute || c.DatapointsToAlarm != 2 || c.Statistic != "p50" || c.TreatMissingData != alarms.NotBreaching || len(c.AlarmActions) != 1 {
		t.Errorf("custom alarm = %+v", c)
	}
	if err := alarms.ValidateAll(defs, []string{"oncall", "incidents"}); err != nil {
		t.Errorf("the spec's definitions do not validate: %v", err)
	}

	// Without default_actions every action is a default one.
	s.Alarms.DefaultActions = nil
	defs, _ = s.AlarmDefinitions()
	if a := defs[0].OKActions; len(a) != 2 {
		t.Errorf("OK actions without default_actions = %v, want every action", a)
	}
	d := Default()
	if d.Metrics.Listen != "127.0.0.1:9464" || d.Console.Listen != "127.0.0.1:8444" || d.Alarms.Thresholds.HTTP5XXPercent != 5 {
		t.Errorf("defaults: %+v %+v %+v", d.Metrics, d.Console, d.Alarms.Thresholds)
	}
}

// TestOperationsBadInputNamesTheField: each mistake is reported against its
// field and line, in words that say what is allowed.
func TestOperationsBadInputNamesTheField(t *testing.T) {
	custom := func(extra string) string {
		return "alarms:\n  custom:\n    - {name: c, metric: RequestCount, statistic: Sum, period: 60s, evaluation_periods: 3, threshold: 1, comparison_operator: GreaterThanThreshold" + extra + "}\n"
	}
	for _, c := range []struct {
		name, yaml, field, msg string
	}{
		{"unknown metric", strings.Replace(custom(""), "RequestCount", "DatabaseFailover", 1), "alarms.custom[0].metric", `unknown metric "DatabaseFailover"`},
		{"M > N", custom(", datapoints_to_alarm: 5"), "alarms.custom[0].datapoints_to_alarm", "must be ≤ evaluation_periods (3), got 5"},
		{"statistic", strings.Replace(custom(""), "Sum", "Median", 1), "alarms.custom[0].statistic", "must be Average"},
		{"operator", strings.Replace(custom(""), "GreaterThanThreshold", "Above", 1), "alarms.custom[0].comparison_operator", "must be GreaterThanOrEqualToThreshold"},
		{"period", strings.Replace(custom(""), "60s", "1500ms", 1), "alarms.custom[0].period", "whole seconds"},
		{"treatment", custom(", treat_missing_data: zero"), "alarms.custom[0].treat_missing_data", "must be missing, ignore"},
		{"unknown action", custom(", alarm_actions: [pager]"), "alarms.custom[0].alarm_actions[0]", `unknown action "pager"`},
		{"seed name", strings.Replace(custom(""), "name: c,", "name: db-failover,", 1), "alarms.custom[0].name", "one of the seed's alarms"},
		{"duplicate custom", "alarms:\n  custom:\n" + strings.Repeat("    - {name: c, metric: RequestCount, statistic: Sum, period: 60s, evaluation_periods: 1, threshold: 1, comparison_operator: GreaterThanThreshold}\n", 2), "alarms.custom[1].name", "defined twice"},
		{"threshold", "alarms: {thresholds: {http_5xx_percent: 0}}", "alarms.thresholds.http_5xx_percent", "must be a number above 0"},
		{"percent", "alarms: {thresholds: {http_5xx_percent: 150}}", "alarms.thresholds.http_5xx_percent", "up to 100"},
		{"no action kind", "alarms: {actions: [{name: a}]}", "alarms.actions[0]", "exactly one of webhook or servicenow"},
		{"both action kinds", "alarms: {actions: [{name: a, webhook: {url: 'https://x.example'}, servicenow: {instance_url: 'https://y.example', credentials_secret: s}}]}", "alarms.actions[0]", "exactly one"},
		{"action name", "alarms: {actions: [{name: On Call, webhook: {url: 'https://x.example'}}]}", "alarms.actions[0].name", "lowercase letters"},
		{"duplicate action", "alarms: {actions: [{name: a, webhook: {url: 'https://x.example'}}, {name: a, webhook: {url: 'https://y.example'}}]}", "alarms.actions[1].name", "defined twice"},
		{"webhook url", "alarms: {actions: [{name: a, webhook: {url: 'ftp://x.example'}}]}", "alarms.actions[0].webhook.url", "http or https URL"},
		{"credentials in a url", "alarms: {actions: [{name: a, webhook: {url: 'https://user:pw@x.example'}}]}", "alarms.actions[0].webhook.url", "must not carry credentials"},
		{"servicenow http", "alarms: {actions: [{name: a, servicenow: {instance_url: 'http://example.service-now.com', credentials_secret: s}}]}", "alarms.actions[0].servicenow.instance_url", "must be https"},
		{"servicenow secret", "alarms: {actions: [{name: a, servicenow: {instance_url: 'https://example.service-now.com'}}]}", "alarms.actions[0].servicenow.credentials_secret", "must name the secret"},
		{"impact", "alarms: {actions: [{name: a, servicenow: {instance_url: 'https://example.service-now.com', credentials_secret: s, impact: 4}}]}", "alarms.actions[0].servicenow.impact", "must be 1 (high), 2 or 3"},
		{"default action", "alarms: {actions: [{name: a, webhook: {url: 'https://x.example'}}], default_actions: [b]}", "alarms.default_actions[0]", `unknown action "b"`},
		{"metrics not loopback", "metrics: {listen: 0.0.0.0:9464}", "metrics.listen", "must be a loopback address"},
		{"console address", "console: {listen: localhost}", "console.listen", "must be a loopback IP address and port"},
		{"same port", "metrics: {listen: 127.0.0.1:9000}\nconsole: {listen: 127.0.0.1:9000}", "console.listen", "must differ from metrics.listen"},
		{"rollback_on", "fleet: {instance_refresh: {rollback_on: [alb-5xx-rate, high-5xx]}}", "fleet.instance_refresh.rollback_on[1]", `unknown alarm "high-5xx": the region's alarms are alb-5xx-rate, asg-at-max,`},
	} {
		_, err := Parse([]byte(c.yaml), "bad.yaml")
		var se *Error
		if !errors.As(err, &se) {
			t.Errorf("%s: err = %v, want a spec error", c.name, err)
			continue
		}
		found := false
		for _, p := range se.Problems {
			if p.Field == c.field && strings.Contains(p.Msg, c.msg) && p.Line > 0 {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: problems %+v, want %s: …%s… with a line", c.name, se.Problems, c.field, c.msg)
		}
	}
	// rollback_on names a seed alarm or a custom one.
	if _, err := Parse([]byte(custom("")+"fleet: {instance_refresh: {rollback_on: [db-failover, c]}}\n"), ""); err != nil {
		t.Errorf("rollback_on of a seed alarm and a custom one refused: %v", err)
	}
	// An http ServiceNow instance on loopback is a test server: accepted.
	if _, err := Parse([]byte("alarms: {actions: [{name: a, servicenow: {instance_url: 'http://127.0.0.1:9999', credentials_secret: ops/sn}}]}"), ""); err != nil {
		t.Errorf("loopback http ServiceNow refused: %v", err)
	}
}
