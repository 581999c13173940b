// Package posture audits a Terraform plan (`terraform show -json`) for
// insecure or fragile AWS configuration before it is applied.
package posture

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Severity ranks a finding. A high finding should block an apply.
type Severity string

// Severities, from most to least serious.
const (
	High   Severity = "high"
	Medium Severity = "medium"
	Low    Severity = "low"
)

func (s Severity) rank() int {
	switch s {
	case High:
		return 0
	case Medium:
		return 1
	}
	return 2
}

// Finding is one rule violation on one resource.
type Finding struct {
	RuleID      string   `json:"rule_id"`
	Severity    Severity `json:"severity"`
	Resource    string   `json:"resource"`
	Message     string   `json:"message"`
	Remediation string   `json:"remediation"`
}

// Rule describes a check. Findings of a rule carry its Severity unless the
// message says otherwise (e.g. a hop limit above 1 is medium under the
// IMDS rule).
type Rule struct {
	ID          string
	Title       string
	Severity    Severity
	Remediation string
	check       func(inv *inventory, emit func(r *resource, sev Severity, msg string))
}

// Rules is the rule catalogue, in ID order.
var Rules = []Rule{
	{ID: "HAVEN-AWS-001", Title: "S3 bucket can be public", Severity: High,
		Remediation: "Add aws_s3_bucket_public_access_block with all four flags true, drop public ACLs, and grant reads only to the CloudFront distribution (OAC with an AWS:SourceArn condition).",
		check:       checkPublicBucket},
	{ID: "HAVEN-AWS-002", Title: "Security group open to the world", Severity: High,
		Remediation: "Allow ingress from another security group (referenced_security_group_id) or a prefix list; only the ALB's security group may take 80/443 from 0.0.0.0/0.",
		check:       checkOpenSecurityGroup},
	{ID: "HAVEN-AWS-003", Title: "Database publicly accessible", Severity: High,
		Remediation: "Set publicly_accessible = false and place the database in private subnets reachable only from app-sg.",
		check:       checkPublicDB},
	{ID: "HAVEN-AWS-004", Title: "Storage not encrypted", Severity: High,
		Remediation: "Set storage_encrypted = true on RDS, encrypted = true on every EBS block device, and an aws_s3_bucket_server_side_encryption_configuration on every bucket.",
		check:       checkUnencrypted},
	{ID: "HAVEN-AWS-005", Title: "Database password in configuration", Severity: High,
		Remediation: "Remove password and set manage_master_user_password = true, so RDS keeps the password in Secrets Manager and rotates it; it never enters configuration or state.",
		check:       checkLiteralPassword},
	{ID: "HAVEN-AWS-006", Title: "IMDSv1 allowed", Severity: High,
		Remediation: "Set metadata_options { http_tokens = \"required\", http_put_response_hop_limit = 1 }.",
		check:       checkIMDS},
	{ID: "HAVEN-AWS-007", Title: "Database not Multi-AZ", Severity: Medium,
		Remediation: "Set multi_az = true so a synchronous standby in another AZ takes over on failure.",
		check:       checkMultiAZ},
	{ID: "HAVEN-AWS-008", Title: "Database backups off", Severity: High,
		Remediation: "Set backup_retention_period between 1 and 35 days.",
		check:       checkBackups},
	{ID: "HAVEN-AWS-009", Title: "No deletion protection", Severity: Medium,
		Remediation: "Set deletion_protection = true on databases and enable_deletion_protection = true on load balancers.",
		check:       checkDeletionProtection},
	{ID: "HAVEN-AWS-010", Title: "Wildcard IAM permission", Severity: High,
		Remediation: "Name the actions and the resource ARNs. Resource \"*\" is accepted only for actions AWS cannot scope (see the allowlist in internal/posture/policy.go).",
		check:       checkWildcardIAM},
	{ID: "HAVEN-AWS-011", Title: "HTTP listener serves traffic", Severity: High,
		Remediation: "Make the port-80 listener's default action a redirect to HTTPS (status HTTP_301) and serve only on the HTTPS listener.",
		check:       checkHTTPListener},
	{ID: "HAVEN-AWS-012", Title: "Automated backups deleted with the database", Severity: Medium,
		Remediation: "Set delete_automated_backups = false, so the backups (and point-in-time restore) outlive a deleted instance for their retention period.",
		check:       checkAutomatedBackupsKept},
	{ID: "HAVEN-AWS-013", Title: "No database maintenance window", Severity: Medium,
		Remediation: "Set maintenance_window (UTC, ddd:hh24:mi-ddd:hh24:mi, clear of backup_window) to a quiet hour; haven.yaml aws.maintenance_window exports it.",
		check:       checkMaintenanceWindow},
	{ID: "HAVEN-AWS-014", Title: "Database events not subscribed", Severity: Medium,
		Remediation: "Add an aws_db_event_subscription (source_type db-instance, the instance in source_ids, categories including failover and maintenance) to the alarm topic.",
		check:       checkDBEventSubscription},
	{ID: "HAVEN-AWS-015", Title: "VPC without flow logs", Severity: Medium,
		Remediation: "Add an aws_flow_log for the VPC (traffic_type ALL) to S3 or CloudWatch Logs, with an expiry.",
		check:       checkFlowLogs},
	{ID: "HAVEN-AWS-016", Title: "Logs kept forever", Severity: Low,
		Remediation: "Set retention_in_days on every aws_cloudwatch_log_group. For RDS log exports, give the instance a fixed identifier and create /aws/rds/instance/<identifier>/<log> with a retention before it (depends_on).",
		check:       checkLogRetention},
	{ID: "HAVEN-AWS-017", Title: "Prefix list rules exceed the security group quota", Severity: Medium,
		Remediation: "Reference a large prefix list (CloudFront origin-facing: weight 55) in one rule per group and direction, e.g. only HTTPS 443, or raise the rules-per-security-group quota first.",
		check:       checkPrefixListQuota},
	{ID: "HAVEN-AWS-018", Title: "ALB reachable around the edge", Severity: Medium,
		Remediation: "When CloudFront fronts the ALB, admit only the com.amazonaws.global.cloudfront.origin-facing prefix list on 443 (module: alb_ingress = \"cloudfront\", the default).",
		check:       checkEdgeBypass},
	{ID: "HAVEN-AWS-019", Title: "App reads the RDS master secret", Severity: High,
		Remediation: "Give the app its own database role and secret (rotated with alternating users) and grant the instance role GetSecretValue on that secret only; keep the master secret for administration.",
		check:       checkAppReadsMasterSecret},
	{ID: "HAVEN-AWS-020", Title: "Alarm topic key blocks notifications", Severity: Medium,
		Remediation: "Encrypt the topic with a customer managed KMS key whose policy allows kms:Decrypt and kms:GenerateDataKey* to cloudwatch.amazonaws.com and events.rds.amazonaws.com.",
		check:       checkAlarmTopicKey},
	{ID: "HAVEN-AWS-021", Title: "Edge accepts old TLS", Severity: Medium,
		Remediation: "Serve the distribution on your own names with an ACM certificate in us-east-1 and minimum_protocol_version = \"TLSv1.2_2021\".",
		check:       checkViewerTLS},
	{ID: "HAVEN-AWS-022", Title: "Deploys drop capacity or keep a bad version", Severity: Medium,
		Remediation: "Give the group's instance_refresh preferences min_healthy_percentage = 100 and max_healthy_percentage = 200 (launch before terminate), auto_rollback = true and an alarm_specification with the 5xx-rate and healthy-hosts alarms (module: var.instance_refresh, from haven.yaml fleet.instance_refresh).",
		check:       checkInstanceRefresh},
}

// Audit runs every rule on a plan in `terraform show -json` form and
// returns the findings, high severity first, then by rule and resource.
func Audit(planJSON []byte) ([]Finding, error) {
	inv, err := parsePlan(planJSON)
	if err != nil {
		return nil, err
	}
	var findings []Finding
	for _, rule := range Rules {
		rule.check(inv, func(r *resource, sev Severity, msg string) {
			findings = append(findings, Finding{
				RuleID: rule.ID, Severity: sev, Resource: r.Address,
				Message: msg, Remediation: rule.Remediation,
			})
		})
	}
	slices.SortStableFunc(findings, func(a, b Finding) int {
		return cmp.Or(
			cmp.Compare(a.Severity.rank(), b.Severity.rank()),
			cmp.Compare(a.RuleID, b.RuleID),
			cmp.Compare(a.Resource, b.Resource),
			cmp.Compare(a.Message, b.Message),
		)
	})
	return findings, nil
}

// HasHigh reports whether any finding is high severity; `haven audit plan`
// exits non-zero when it is.
func HasHigh(findings []Finding) bool {
	for _, f := range findings {
		if f.Severity == High {
			return true
		}
	}
	return false
}

// Render writes findings as text for a terminal, ending with a summary line.
func Render(w io.Writer, findings []Finding) error {
	var b strings.Builder
	counts := map[Severity]int{}
	for _, f := range findings {
		counts[f.Severity]++
		fmt.Fprintf(&b, "%-6s  %s  %s\n", strings.ToUpper(string(f.Severity)), f.RuleID, f.Resource)
		fmt.Fprintf(&b, "        %s\n", f.Message)
		fmt.Fprintf(&b, "        fix: %s\n\n", f.Remediation)
	}
	if len(findings) == 0 {
		b.WriteString("no findings\n")
	} else {
		fmt.Fprintf(&b, "%d findings: %d high, %d medium, %d low\n", len(findings), counts[High], counts[Medium], counts[Low])
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write findings: %w", err)
	}
	return nil
}
