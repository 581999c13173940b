package posture

import (
	"encoding/json"
	"slices"
	"strings"
)

// statement is an IAM policy statement in a form common to policy JSON
// strings and aws_iam_policy_document data sources.
type statement struct {
	Sid             string
	Effect          string
	Actions         []string
	NotActions      []string
	Resources       []string // unknown (computed) resources are absent
	NotResources    []string
	PublicPrincipal bool // Principal "*" or {"AWS": "*"}
	HasCondition    bool
}

// parsePolicyJSON reads a policy document string. ok is false when the
// string is empty or not a policy.
func parsePolicyJSON(s string) (stmts []statement, ok bool) {
	if strings.TrimSpace(s) == "" {
		return nil, false
	}
	var doc struct {
		Statement json.RawMessage `json:"Statement"`
	}
	if err := json.Unmarshal([]byte(s), &doc); err != nil || len(doc.Statement) == 0 {
		return nil, false
	}
	var raw []map[string]any
	if err := json.Unmarshal(doc.Statement, &raw); err != nil {
		var one map[string]any
		if err := json.Unmarshal(doc.Statement, &one); err != nil {
			return nil, false
		}
		raw = []map[string]any{one}
	}
	for _, m := range raw {
		st := statement{
			Sid:          str(m["Sid"]),
			Effect:       str(m["Effect"]),
			Actions:      strings_(m["Action"]),
			NotActions:   strings_(m["NotAction"]),
			Resources:    strings_(m["Resource"]),
			NotResources: strings_(m["NotResource"]),
			HasCondition: m["Condition"] != nil,
		}
		switch p := m["Principal"].(type) {
		case string:
			st.PublicPrincipal = p == "*"
		case map[string]any:
			for _, id := range strings_(p["AWS"]) {
				if id == "*" {
					st.PublicPrincipal = true
				}
			}
		}
		stmts = append(stmts, st)
	}
	return stmts, true
}

// documentStatements reads the statement blocks of an
// aws_iam_policy_document data source's planned values.
func documentStatements(values map[string]any) []statement {
	var out []statement
	for _, b := range blocks(values["statement"]) {
		st := statement{
			Sid:          str(b["sid"]),
			Effect:       str(b["effect"]),
			Actions:      strings_(b["actions"]),
			NotActions:   strings_(b["not_actions"]),
			Resources:    strings_(b["resources"]),
			NotResources: strings_(b["not_resources"]),
			HasCondition: len(blocks(b["condition"])) > 0,
		}
		if st.Effect == "" {
			st.Effect = "Allow"
		}
		for _, p := range blocks(b["principals"]) {
			if str(p["type"]) == "*" || (str(p["type"]) == "AWS" && slices.Contains(strings_(p["identifiers"]), "*")) {
				st.PublicPrincipal = true
			}
		}
		out = append(out, st)
	}
	return out
}

// resourceStarActions are actions that accept only Resource "*", because
// AWS offers no resource-level permission for them. A statement granting
// only these on "*" is not a wildcard finding. Each entry says why.
var resourceStarActions = map[string]string{
	"cloudwatch:PutMetricData":         "metrics have no ARN; scope with the cloudwatch:namespace condition",
	"cloudwatch:GetMetricData":         "metrics have no ARN",
	"cloudwatch:GetMetricStatistics":   "metrics have no ARN",
	"cloudwatch:ListMetrics":           "metrics have no ARN",
	"ec2:DescribeInstances":            "EC2 Describe* calls do not support resource-level permissions",
	"ec2:DescribeTags":                 "EC2 Describe* calls do not support resource-level permissions",
	"ec2:DescribeVolumes":              "EC2 Describe* calls do not support resource-level permissions",
	"logs:DescribeLogGroups":           "lists every log group; no resource-level permission",
	"ssm:UpdateInstanceInformation":    "SSM agent registration; scoped by the instance's own identity",
	"ssmmessages:CreateControlChannel": "Session Manager channels have no ARN",
	"ssmmessages:CreateDataChannel":    "Session Manager channels have no ARN",
	"ssmmessages:OpenControlChannel":   "Session Manager channels have no ARN",
	"ssmmessages:OpenDataChannel":      "Session Manager channels have no ARN",
	"ec2messages:AcknowledgeMessage":   "SSM agent message channel has no ARN",
	"ec2messages:DeleteMessage":        "SSM agent message channel has no ARN",
	"ec2messages:FailMessage":          "SSM agent message channel has no ARN",
	"ec2messages:GetEndpoint":          "SSM agent message channel has no ARN",
	"ec2messages:GetMessages":          "SSM agent message channel has no ARN",
	"ec2messages:SendReply":            "SSM agent message channel has no ARN",
	"xray:PutTraceSegments":            "X-Ray segments have no ARN",
	"xray:PutTelemetryRecords":         "X-Ray telemetry has no ARN",
	"sts:GetCallerIdentity":            "needs no permission at all; harmless",
	"secretsmanager:GetRandomPassword": "generates a random string; touches no secret",
	"secretsmanager:ListSecrets":       "lists metadata only, never values; no resource-level permission",
}

// wildcardProblems returns what is wildcard about an Allow statement.
func wildcardProblems(st statement) []string {
	if !strings.EqualFold(st.Effect, "Allow") {
		return nil
	}
	var probs []string
	for _, a := range st.Actions {
		if a == "*" || strings.HasSuffix(a, ":*") {
			probs = append(probs, "Action "+a)
		}
	}
	if len(st.NotActions) > 0 {
		probs = append(probs, "NotAction with Allow grants every other action")
	}
	if slices.Contains(st.Resources, "*") {
		allowed := len(st.Actions) > 0
		for _, a := range st.Actions {
			if _, ok := resourceStarActions[a]; !ok {
				allowed = false
			}
		}
		if !allowed {
			probs = append(probs, "Resource *")
		}
	}
	if len(st.NotResources) > 0 {
		probs = append(probs, "NotResource with Allow grants every other resource")
	}
	return probs
}
