package posture

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ruleIDs(fs []Finding) []string {
	var ids []string
	for _, f := range fs {
		if !slices.Contains(ids, f.RuleID) {
			ids = append(ids, f.RuleID)
		}
	}
	return ids
}

func TestGoodFixtureIsClean(t *testing.T) {
	fs, err := Audit(readFixture(t, "good.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 0 {
		var b bytes.Buffer
		Render(&b, fs)
		t.Errorf("good.json: got findings:\n%s", b.String())
	}
}

// TestEachRuleFiresOnItsFixture: every rule has exactly one broken fixture
// named after it, the rule fires there, and no other rule does.
func TestEachRuleFiresOnItsFixture(t *testing.T) {
	for _, rule := range Rules {
		t.Run(rule.ID, func(t *testing.T) {
			matches, err := filepath.Glob(filepath.Join("testdata", rule.ID+"-*.json"))
			if err != nil {
				t.Fatal(err)
			}
			if len(matches) != 1 {
				t.Fatalf("want exactly one fixture testdata/%s-*.json, got %v", rule.ID, matches)
			}
			fs, err := Audit(readFixture(t, filepath.Base(matches[0])))
			if err != nil {
				t.Fatal(err)
			}
			if got := ruleIDs(fs); !slices.Equal(got, []string{rule.ID}) {
				t.Errorf("%s: rules fired %v, want only %s; findings %+v", matches[0], got, rule.ID, fs)
			}
			for _, f := range fs {
				if f.Resource == "" || f.Message == "" || f.Remediation == "" || f.Severity == "" {
					t.Errorf("incomplete finding %+v", f)
				}
			}
		})
	}
}

func TestEveryFixtureBelongsToARule(t *testing.T) {
	matches, _ := filepath.Glob(filepath.Join("testdata", "HAVEN-*.json"))
	for _, m := range matches {
		id := strings.Join(strings.SplitN(filepath.Base(m), "-", 4)[:3], "-")
		if !slices.ContainsFunc(Rules, func(r Rule) bool { return r.ID == id }) {
			t.Errorf("%s: no rule %s", m, id)
		}
	}
}

// mutate loads good.json, applies f to the planned resource at address,
// and audits the result.
func mutate(t *testing.T, address string, f func(values map[string]any)) []Finding {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(readFixture(t, "good.json"), &doc); err != nil {
		t.Fatal(err)
	}
	rs := doc["planned_values"].(map[string]any)["root_module"].(map[string]any)["resources"].([]any)
	found := false
	for _, r := range rs {
		m := r.(map[string]any)
		if m["address"] == address {
			f(m["values"].(map[string]any))
			found = true
		}
	}
	if !found {
		t.Fatalf("no resource %s in good.json", address)
	}
	b, _ := json.Marshal(doc)
	fs, err := Audit(b)
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func TestRuleDetails(t *testing.T) {
	tests := []struct {
		name     string
		address  string
		change   func(v map[string]any)
		wantRule string // "" means no finding
		wantSev  Severity
	}{
		{"alb sg on 22 is open", "aws_security_group.alb", func(v map[string]any) {
			v["ingress"] = []any{map[string]any{"protocol": "tcp", "from_port": 22.0, "to_port": 22.0, "cidr_blocks": []any{"0.0.0.0/0"}}}
		}, "HAVEN-AWS-002", High},
		{"alb sg all protocols", "aws_security_group.alb", func(v map[string]any) {
			v["ingress"] = []any{map[string]any{"protocol": "-1", "from_port": 0.0, "to_port": 0.0, "cidr_blocks": []any{"0.0.0.0/0"}}}
		}, "HAVEN-AWS-002", High},
		{"hop limit 2", "aws_launch_template.app", func(v map[string]any) {
			v["metadata_options"] = []any{map[string]any{"http_tokens": "required", "http_put_response_hop_limit": 2.0}}
		}, "HAVEN-AWS-006", Medium},
		{"no metadata options", "aws_launch_template.app", func(v map[string]any) {
			v["metadata_options"] = []any{}
		}, "HAVEN-AWS-006", High},
		{"ebs unencrypted", "aws_launch_template.app", func(v map[string]any) {
			v["block_device_mappings"] = []any{map[string]any{"device_name": "/dev/xvda", "ebs": []any{map[string]any{"encrypted": ""}}}}
		}, "HAVEN-AWS-004", High},
		{"db deletion protection", "aws_db_instance.this", func(v map[string]any) {
			v["deletion_protection"] = false
		}, "HAVEN-AWS-009", Medium},
		{"replica need not be multi-az", "aws_db_instance.this", func(v map[string]any) {
			v["multi_az"] = false
			v["backup_retention_period"] = 0.0
			v["replicate_source_db"] = "shop-db"
		}, "", ""},
		{"resource star beyond allowlist", "aws_iam_role_policy.app", func(v map[string]any) {
			v["policy"] = `{"Statement":[{"Effect":"Allow","Action":["cloudwatch:PutMetricData","secretsmanager:GetSecretValue"],"Resource":"*"}]}`
		}, "HAVEN-AWS-010", High},
		{"allowlisted actions on star", "aws_iam_role_policy.app", func(v map[string]any) {
			v["policy"] = `{"Statement":{"Effect":"Allow","Action":["ssmmessages:CreateControlChannel","ssmmessages:OpenDataChannel"],"Resource":"*"}}`
		}, "", ""},
		{"deny star is fine", "aws_iam_role_policy.app", func(v map[string]any) {
			v["policy"] = `{"Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}`
		}, "", ""},
		{"not action", "aws_iam_role_policy.app", func(v map[string]any) {
			v["policy"] = `{"Statement":[{"Effect":"Allow","NotAction":"iam:*","Resource":"arn:aws:s3:::x"}]}`
		}, "HAVEN-AWS-010", High},
		{"policy document wildcard", "data.aws_iam_policy_document.materials", func(v map[string]any) {
			v["statement"] = []any{map[string]any{"effect": "Allow", "actions": []any{"*"}, "resources": []any{nil}}}
		}, "HAVEN-AWS-010", High},
		{"public acl", "aws_s3_bucket.assets", func(v map[string]any) {
			v["acl"] = "public-read"
		}, "HAVEN-AWS-001", High},
		{"redirect to http", "aws_lb_listener.http", func(v map[string]any) {
			v["default_action"] = []any{map[string]any{"type": "redirect", "redirect": []any{map[string]any{"protocol": "HTTP"}}}}
		}, "HAVEN-AWS-011", High},
		{"fixed response on http", "aws_lb_listener.http", func(v map[string]any) {
			v["default_action"] = []any{map[string]any{"type": "fixed-response"}}
		}, "HAVEN-AWS-011", High},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := mutate(t, tt.address, tt.change)
			if tt.wantRule == "" {
				if len(fs) != 0 {
					t.Errorf("got findings %+v, want none", fs)
				}
				return
			}
			if len(fs) == 0 || fs[0].RuleID != tt.wantRule || fs[0].Severity != tt.wantSev || fs[0].Resource != tt.address {
				t.Errorf("got %+v, want %s %s on %s", fs, tt.wantRule, tt.wantSev, tt.address)
			}
		})
	}
}

func TestBucketWithoutAccessBlockOrEncryption(t *testing.T) {
	plan := `{"format_version":"1.2","planned_values":{"root_module":{"child_modules":[{"address":"module.m","resources":[
	  {"address":"module.m.aws_s3_bucket.b","mode":"managed","type":"aws_s3_bucket","name":"b","values":{}}]}]}},
	  "configuration":{"root_module":{}}}`
	fs, err := Audit([]byte(plan))
	if err != nil {
		t.Fatal(err)
	}
	got := ruleIDs(fs)
	if !slices.Equal(got, []string{"HAVEN-AWS-001", "HAVEN-AWS-004"}) {
		t.Errorf("rules %v, want HAVEN-AWS-001 (no access block) then HAVEN-AWS-004 (no SSE); %+v", got, fs)
	}
	if fs[1].Severity != Medium {
		t.Errorf("missing SSE severity %s, want medium", fs[1].Severity)
	}
}

func TestAuditRejectsNonPlan(t *testing.T) {
	for _, in := range []string{"", "{}", `{"format_version":"1.2"}`, "not json"} {
		if _, err := Audit([]byte(in)); err == nil {
			t.Errorf("Audit(%q) succeeded, want an error", in)
		}
	}
}

func TestRenderAndHasHigh(t *testing.T) {
	fs, err := Audit(readFixture(t, "HAVEN-AWS-003-public-db.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !HasHigh(fs) {
		t.Error("HasHigh = false on a public DB")
	}
	var b bytes.Buffer
	if err := Render(&b, fs); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"HIGH", "HAVEN-AWS-003", "aws_db_instance.this", "fix: ", "1 findings: 1 high, 0 medium, 0 low"} {
		if !strings.Contains(out, want) {
			t.Errorf("render lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	Render(&b, nil)
	if b.String() != "no findings\n" || HasHigh(nil) {
		t.Errorf("empty render %q", b.String())
	}
}

func TestFindingJSON(t *testing.T) {
	b, _ := json.Marshal(Finding{RuleID: "HAVEN-AWS-001", Severity: High, Resource: "r", Message: "m", Remediation: "x"})
	want := `{"rule_id":"HAVEN-AWS-001","severity":"high","resource":"r","message":"m","remediation":"x"}`
	if string(b) != want {
		t.Errorf("got %s, want %s", b, want)
	}
}
