package posture

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
)

// TestOperationsFixturesFindings: each fixture of rules 012–021 yields
// exactly the findings listed, on the resources listed.
func TestOperationsFixturesFindings(t *testing.T) {
	want := map[string][]string{
		"HAVEN-AWS-012-backups-deleted-with-db.json":      {"HAVEN-AWS-012 medium aws_db_instance.this"},
		"HAVEN-AWS-013-no-maintenance-window.json":        {"HAVEN-AWS-013 medium aws_db_instance.this"},
		"HAVEN-AWS-014-no-db-events.json":                 {"HAVEN-AWS-014 medium aws_db_instance.this"},
		"HAVEN-AWS-015-no-flow-logs.json":                 {"HAVEN-AWS-015 medium aws_vpc.this"},
		"HAVEN-AWS-016-logs-kept-forever.json":            {"HAVEN-AWS-016 low aws_cloudwatch_log_group.app", "HAVEN-AWS-016 low aws_db_instance.this"},
		"HAVEN-AWS-017-prefix-list-rules-over-quota.json": {"HAVEN-AWS-017 medium aws_security_group.web"},
		"HAVEN-AWS-018-alb-open-behind-cloudfront.json":   {"HAVEN-AWS-018 medium aws_vpc_security_group_ingress_rule.alb_https"},
		// The rotation role reads the master secret too, legitimately: it is
		// not an instance role.
		"HAVEN-AWS-019-app-reads-master-secret.json":     {"HAVEN-AWS-019 high aws_iam_role_policy.app", "HAVEN-AWS-019 high aws_iam_role_policy.app_doc"},
		"HAVEN-AWS-020-alarm-topic-aws-managed-key.json": {"HAVEN-AWS-020 medium aws_sns_topic.alarms"},
		"HAVEN-AWS-021-edge-old-tls.json":                {"HAVEN-AWS-021 medium aws_cloudfront_distribution.default_cert", "HAVEN-AWS-021 medium aws_cloudfront_distribution.old_policy"},
		// Capacity drops, no rollback, no alarm: three findings.
		"HAVEN-AWS-022-refresh-drops-capacity.json": {"HAVEN-AWS-022 medium aws_autoscaling_group.app", "HAVEN-AWS-022 medium aws_autoscaling_group.app", "HAVEN-AWS-022 medium aws_autoscaling_group.app"},
	}
	for name, w := range want {
		t.Run(name, func(t *testing.T) {
			fs, err := Audit(readFixture(t, name))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range fs {
				got = append(got, fmt.Sprintf("%s %s %s", f.RuleID, f.Severity, f.Resource))
			}
			if !slices.Equal(got, w) {
				t.Errorf("findings %v, want %v", got, w)
			}
		})
	}
}

// mutateDoc loads good.json, lets f change the whole document, and audits it.
func mutateDoc(t *testing.T, f func(resources *[]any, config *[]any)) []Finding {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(readFixture(t, "good.json"), &doc); err != nil {
		t.Fatal(err)
	}
	pv := doc["planned_values"].(map[string]any)["root_module"].(map[string]any)
	cfg := doc["configuration"].(map[string]any)["root_module"].(map[string]any)
	rs, cs := pv["resources"].([]any), cfg["resources"].([]any)
	f(&rs, &cs)
	pv["resources"], cfg["resources"] = rs, cs
	b, _ := json.Marshal(doc)
	fs, err := Audit(b)
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func values(rs []any, address string) map[string]any {
	for _, r := range rs {
		if m := r.(map[string]any); m["address"] == address {
			return m["values"].(map[string]any)
		}
	}
	return nil
}

// prefs returns the planned instance refresh preferences of good.json's group.
func prefs(rs []any) map[string]any {
	ir := values(rs, "aws_autoscaling_group.app")["instance_refresh"].([]any)[0].(map[string]any)
	return ir["preferences"].([]any)[0].(map[string]any)
}

func without(rs []any, address string) []any {
	var out []any
	for _, r := range rs {
		if r.(map[string]any)["address"] != address {
			out = append(out, r)
		}
	}
	return out
}

func TestOperationsRuleDetails(t *testing.T) {
	tests := []struct {
		name   string
		change func(rs, cs *[]any)
		want   []string // "rule resource"; nil means no finding
	}{
		{"backups kept is clean", func(rs, cs *[]any) {}, nil},
		{"unknown delete_automated_backups is not a finding", func(rs, cs *[]any) {
			delete(values(*rs, "aws_db_instance.this"), "delete_automated_backups")
		}, nil},
		{"maintenance window from an expression", func(rs, cs *[]any) {
			delete(values(*rs, "aws_db_instance.this"), "maintenance_window")
			for _, c := range *cs {
				if m := c.(map[string]any); m["address"] == "aws_db_instance.this" {
					m["expressions"].(map[string]any)["maintenance_window"] = map[string]any{"references": []any{"var.db_maintenance_window"}}
				}
			}
		}, nil},
		{"subscription disabled", func(rs, cs *[]any) {
			values(*rs, "aws_db_event_subscription.db")["enabled"] = false
		}, []string{"HAVEN-AWS-014 aws_db_instance.this"}},
		{"subscription for other instances", func(rs, cs *[]any) {
			values(*rs, "aws_db_event_subscription.db")["source_ids"] = []any{"other-db"}
		}, []string{"HAVEN-AWS-014 aws_db_instance.this"}},
		{"subscription without categories covers all", func(rs, cs *[]any) {
			values(*rs, "aws_db_event_subscription.db")["event_categories"] = []any{}
		}, nil},
		{"subscription lacks maintenance", func(rs, cs *[]any) {
			values(*rs, "aws_db_event_subscription.db")["event_categories"] = []any{"failover"}
		}, []string{"HAVEN-AWS-014 aws_db_instance.this"}},
		{"flow log removed", func(rs, cs *[]any) {
			*rs = without(*rs, "aws_flow_log.vpc")
		}, []string{"HAVEN-AWS-015 aws_vpc.this"}},
		{"rds log group missing", func(rs, cs *[]any) {
			*rs = without(*rs, "aws_cloudwatch_log_group.rds")
		}, []string{"HAVEN-AWS-016 aws_db_instance.this"}},
		{"log group retention unset", func(rs, cs *[]any) {
			delete(values(*rs, "aws_cloudwatch_log_group.rds"), "retention_in_days")
		}, []string{"HAVEN-AWS-016 aws_cloudwatch_log_group.rds"}},
		{"alarm topic on aws/sns", func(rs, cs *[]any) {
			values(*rs, "aws_sns_topic.alarms")["kms_master_key_id"] = "arn:aws:kms:eu-west-1:123456789012:alias/aws/sns"
		}, []string{"HAVEN-AWS-020 aws_sns_topic.alarms"}},
		{"aws/sns topic without alarms is fine", func(rs, cs *[]any) {
			values(*rs, "aws_sns_topic.alarms")["kms_master_key_id"] = "alias/aws/sns"
			*rs = without(*rs, "aws_cloudwatch_metric_alarm.db_cpu")
			*rs = without(*rs, "aws_db_event_subscription.db")
		}, []string{"HAVEN-AWS-014 aws_db_instance.this"}},
		{"instance role reads the master secret", func(rs, cs *[]any) {
			v := values(*rs, "aws_iam_role_policy.app")
			v["policy"] = `{"Statement":[{"Sid":"Master","Effect":"Allow","Action":"secretsmanager:*","Resource":"arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-1234-AbCdEf"}]}`
		}, []string{"HAVEN-AWS-010 aws_iam_role_policy.app", "HAVEN-AWS-019 aws_iam_role_policy.app"}}, // secretsmanager:* is also a wildcard
		{"a role no instance assumes may read it", func(rs, cs *[]any) {
			v := values(*rs, "aws_iam_role_policy.app")
			v["policy"] = `{"Statement":[{"Sid":"Master","Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-1234-AbCdEf"}]}`
			*rs = without(*rs, "aws_iam_instance_profile.app")
		}, nil},
		{"refresh on AWS's defaults (90 %, 100 %, no rollback, no alarms)", func(rs, cs *[]any) {
			ir := values(*rs, "aws_autoscaling_group.app")["instance_refresh"].([]any)[0].(map[string]any)
			ir["preferences"] = []any{}
		}, []string{"HAVEN-AWS-022 aws_autoscaling_group.app", "HAVEN-AWS-022 aws_autoscaling_group.app", "HAVEN-AWS-022 aws_autoscaling_group.app"}},
		{"refresh at 90 % that may launch first keeps capacity", func(rs, cs *[]any) {
			prefs(*rs)["min_healthy_percentage"] = 90.0
			prefs(*rs)["max_healthy_percentage"] = 110.0
		}, nil},
		{"refresh at 100 % min alone", func(rs, cs *[]any) {
			delete(prefs(*rs), "max_healthy_percentage")
		}, nil},
		{"refresh without rollback", func(rs, cs *[]any) {
			prefs(*rs)["auto_rollback"] = false
		}, []string{"HAVEN-AWS-022 aws_autoscaling_group.app"}},
		{"refresh with an empty alarm list", func(rs, cs *[]any) {
			prefs(*rs)["alarm_specification"] = []any{map[string]any{"alarms": []any{}}}
		}, []string{"HAVEN-AWS-022 aws_autoscaling_group.app"}},
		{"refresh alarms known after apply", func(rs, cs *[]any) {
			prefs(*rs)["alarm_specification"] = []any{map[string]any{}}
		}, nil},
		{"group without instance refresh is not judged", func(rs, cs *[]any) {
			delete(values(*rs, "aws_autoscaling_group.app"), "instance_refresh")
		}, nil},
		{"one prefix-list rule fits", func(rs, cs *[]any) {
			values(*rs, "aws_vpc_security_group_ingress_rule.app_from_alb")["prefix_list_id"] = "pl-4fa04526"
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := mutateDoc(t, tt.change)
			var got []string
			for _, f := range fs {
				got = append(got, f.RuleID+" "+f.Resource)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("findings %v, want %v", got, tt.want)
			}
		})
	}
}
