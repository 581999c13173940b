package terraform_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/haven-platform/haven/internal/posture"
)

// ssoVars are the staff single sign-on variables of a deployment (docs/aws.md,
// "Staff single sign-on"): an Okta issuer, a client ID and the ARN of the
// secret that holds the client secret. None is a secret.
var ssoVars = map[string]any{
	"oidc_issuer_url":        "https://university.okta.com",
	"oidc_client_id":         "0oa1b2c3d4e5f6g7h8i9",
	"oidc_client_secret_arn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:courses/oidc-client-AbCdEf",
	"oidc_staff_sso_only":    true,
}

// plannedEnvironment returns the known values of the example's
// app_environment output in a plan.
func plannedEnvironment(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	var doc struct {
		OutputChanges map[string]struct {
			After map[string]any `json:"after"`
		} `json:"output_changes"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	oc, ok := doc.OutputChanges["app_environment"]
	if !ok {
		t.Fatal("plan has no app_environment output")
	}
	return oc.After
}

// TestStaffSSOVariables: with the oidc_* variables set, every instance gets
// the issuer, the client ID, the secret's ARN (never a secret) and the public
// URL the redirect URI is built on; the instance role may read that one
// secret and nothing more; the plan stays clean under `haven audit plan`.
func TestStaffSSOVariables(t *testing.T) {
	raw, _ := planScenarioWith(t, "oidc", coursesInput(), ssoVars)
	p := parsePlan(t, raw)
	env := plannedEnvironment(t, raw)
	for k, want := range map[string]string{
		"COURSES_OIDC_ISSUER":           ssoVars["oidc_issuer_url"].(string),
		"COURSES_OIDC_CLIENT_ID":        ssoVars["oidc_client_id"].(string),
		"COURSES_OIDC_CLIENT_SECRET_ID": ssoVars["oidc_client_secret_arn"].(string),
		"COURSES_PUBLIC_URL":            "https://courses.example.edu",
		"COURSES_SSO_ONLY_STAFF":        "true",
	} {
		if env[k] != want {
			t.Errorf("app environment %s = %v, want %q", k, env[k], want)
		}
	}
	for k := range env {
		if strings.Contains(strings.ToUpper(k), "CLIENT_SECRET") && k != "COURSES_OIDC_CLIENT_SECRET_ID" {
			t.Errorf("app environment carries %s", k)
		}
	}

	// The role: one more statement, GetSecretValue on that ARN only.
	doc := p.get(mod + "data.aws_iam_policy_document.app")
	var oidc []map[string]any
	for _, s := range doc["statement"].([]any) {
		st := s.(map[string]any)
		if slices.Contains(strs(st["resources"]), ssoVars["oidc_client_secret_arn"].(string)) {
			oidc = append(oidc, st)
		}
	}
	if len(oidc) != 1 {
		t.Fatalf("%d statements name the client secret, want 1", len(oidc))
	}
	eq(t, "client secret statement", []any{oidc[0]["sid"], oidc[0]["effect"], strs(oidc[0]["actions"]), len(strs(oidc[0]["resources"]))},
		[]any{"ReadOIDCClientSecret", "Allow", []string{"secretsmanager:GetSecretValue"}, 1})

	findings, err := posture.Audit(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(findings) != 0 {
		t.Errorf("the single sign-on plan has %d findings: %+v", len(findings), findings)
	}

	// Without the variables (the example), nothing of it.
	raw, _ = examplePlan(t)
	for k := range plannedEnvironment(t, raw) {
		if strings.HasPrefix(k, "COURSES_OIDC_") || k == "COURSES_PUBLIC_URL" || k == "COURSES_SSO_ONLY_STAFF" {
			t.Errorf("the example without single sign-on sets %s", k)
		}
	}
	for _, s := range parsePlan(t, raw).get(mod + "data.aws_iam_policy_document.app")["statement"].([]any) {
		if s.(map[string]any)["sid"] == "ReadOIDCClientSecret" {
			t.Error("the example without single sign-on grants the client secret")
		}
	}
}

// TestStaffSSOVariablesRefused: half a configuration, a secret in place of
// an ARN, or SSO-only staff without SSO fail the plan with a message naming
// the variable.
func TestStaffSSOVariablesRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra map[string]any
		want  string
	}{
		{"issuer alone", map[string]any{"oidc_issuer_url": "https://university.okta.com"}, "go together"},
		{"secret instead of an ARN", map[string]any{"oidc_issuer_url": "https://university.okta.com", "oidc_client_id": "x",
			"oidc_client_secret_arn": "s3cr3t-value"}, "never the secret itself"},
		{"http issuer", map[string]any{"oidc_issuer_url": "http://university.okta.com", "oidc_client_id": "x",
			"oidc_client_secret_arn": ssoVars["oidc_client_secret_arn"]}, "oidc_issuer_url must be an https URL"},
		{"staff only without SSO", map[string]any{"oidc_staff_sso_only": true}, "without single sign-on, staff could not log in"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireSetup(t)
			res := runPlan(t, "oidc-bad-"+strings.ReplaceAll(tc.name, " ", "-"), coursesInput(), tc.extra)
			if res.err == nil || !strings.Contains(strings.Join(strings.Fields(res.err.Error()), " "), tc.want) {
				t.Errorf("plan error = %v, want %q", res.err, tc.want)
			}
		})
	}
}
