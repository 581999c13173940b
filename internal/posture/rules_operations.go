package posture

import (
	"fmt"
	"slices"
	"strings"
)

// Rules HAVEN-AWS-012 to 021: what keeps the database and the edge safe to
// operate (backups that outlive the instance, a maintenance window, events
// someone hears, logs that are kept and expire) and what keeps the edge in
// front (no bypass, TLS 1.2, a security group that fits its quota).

// nonReplicaDBs returns the aws_db_instance resources that are not read
// replicas (a replica's backups and events follow its source).
func nonReplicaDBs(inv *inventory) []*resource {
	var out []*resource
	for _, db := range inv.byType["aws_db_instance"] {
		if str(db.Values["replicate_source_db"]) == "" {
			out = append(out, db)
		}
	}
	return out
}

func checkAutomatedBackupsKept(inv *inventory, emit func(*resource, Severity, string)) {
	for _, db := range nonReplicaDBs(inv) {
		if v, known := boolean(db.Values["delete_automated_backups"]); known && v {
			emit(db, Medium, "delete_automated_backups is true (the AWS default): deleting the instance also deletes its automated backups, and with them point-in-time restore")
		}
	}
}

func checkMaintenanceWindow(inv *inventory, emit func(*resource, Severity, string)) {
	for _, db := range nonReplicaDBs(inv) {
		if str(db.Values["maintenance_window"]) == "" && !db.hasExpr("maintenance_window") {
			emit(db, Medium, "no maintenance_window: RDS picks a random weekly slot, and minor upgrades and pending changes can land at peak hours (an exam)")
		}
	}
}

// eventCategoriesWanted are the RDS events an operator must hear about.
var eventCategoriesWanted = []string{"failover", "maintenance"}

// covers reports whether an event subscription covers db's failover and
// maintenance events.
func covers(sub, db *resource) bool {
	if on, known := boolean(sub.Values["enabled"]); known && !on {
		return false
	}
	if t := str(sub.Values["source_type"]); t != "" && t != "db-instance" {
		return false
	}
	ids := strings_(sub.Values["source_ids"])
	linked := slices.Contains(sub.refs("source_ids"), db.Key)
	if id := str(db.Values["identifier"]); id != "" && slices.Contains(ids, id) {
		linked = true
	}
	// No source IDs (and no expression for them) means every instance.
	if !linked && (len(ids) > 0 || sub.hasExpr("source_ids")) {
		return false
	}
	cats := strings_(sub.Values["event_categories"])
	if len(cats) == 0 {
		return true // every category
	}
	for _, c := range eventCategoriesWanted {
		if !slices.Contains(cats, c) {
			return false
		}
	}
	return true
}

func checkDBEventSubscription(inv *inventory, emit func(*resource, Severity, string)) {
	for _, db := range nonReplicaDBs(inv) {
		if !slices.ContainsFunc(inv.byType["aws_db_event_subscription"], func(s *resource) bool { return covers(s, db) }) {
			emit(db, Medium, "no aws_db_event_subscription sends its failover and maintenance events anywhere: a failover or a forced upgrade goes unnoticed")
		}
	}
}

func checkFlowLogs(inv *inventory, emit func(*resource, Severity, string)) {
	for _, vpc := range inv.byType["aws_vpc"] {
		if !slices.ContainsFunc(inv.byType["aws_flow_log"], func(f *resource) bool { return f.linked("vpc_id", vpc, "id") }) {
			emit(vpc, Medium, "no flow log: accepted and rejected connections in the VPC are not recorded")
		}
	}
}

func checkLogRetention(inv *inventory, emit func(*resource, Severity, string)) {
	for _, lg := range inv.byType["aws_cloudwatch_log_group"] {
		n, known := number(lg.Values["retention_in_days"])
		if !known && lg.hasExpr("retention_in_days") {
			continue // computed; known after apply
		}
		if n == 0 {
			emit(lg, Low, "no retention_in_days: the log group keeps its logs forever")
		}
	}
	names := map[string]bool{}
	for _, lg := range inv.byType["aws_cloudwatch_log_group"] {
		names[str(lg.Values["name"])] = true
	}
	for _, db := range nonReplicaDBs(inv) {
		exports := strings_(db.Values["enabled_cloudwatch_logs_exports"])
		if len(exports) == 0 {
			continue
		}
		id := str(db.Values["identifier"])
		if id == "" {
			emit(db, Low, fmt.Sprintf("exports %s logs, but its identifier is generated (identifier_prefix), so no log group can be created ahead: RDS creates /aws/rds/instance/<id>/<log> with no retention", strings.Join(exports, ", ")))
			continue
		}
		for _, e := range exports {
			if name := "/aws/rds/instance/" + id + "/" + e; !names[name] {
				emit(db, Low, fmt.Sprintf("exports %s logs, but no log group %s is created with a retention: RDS creates it with none", e, name))
			}
		}
	}
}

// prefixListRule is one security group rule that references a prefix list.
type prefixListRule struct {
	rule      *resource
	owner     string // key or ID of the group, "" if unknown
	direction string
}

// gatewayPrefixList reports whether a rule's prefix list is a gateway
// endpoint's (S3, DynamoDB: weight 1).
func gatewayPrefixList(r *resource, attr string) bool {
	for _, k := range r.refs(attr) {
		if strings.Contains(k, "aws_vpc_endpoint.") {
			return true
		}
	}
	return false
}

func checkPrefixListQuota(inv *inventory, emit func(*resource, Severity, string)) {
	var rules []prefixListRule
	owner := func(r *resource) string {
		if refs := r.refs("security_group_id"); len(refs) > 0 {
			return refs[0]
		}
		return str(r.Values["security_group_id"])
	}
	for typ, dir := range map[string]string{"aws_vpc_security_group_ingress_rule": "ingress", "aws_vpc_security_group_egress_rule": "egress"} {
		for _, r := range inv.byType[typ] {
			if (str(r.Values["prefix_list_id"]) != "" || r.hasExpr("prefix_list_id")) && !gatewayPrefixList(r, "prefix_list_id") {
				rules = append(rules, prefixListRule{r, owner(r), dir})
			}
		}
	}
	for _, r := range inv.byType["aws_security_group_rule"] {
		if gatewayPrefixList(r, "prefix_list_ids") {
			continue
		}
		for range strings_(r.Values["prefix_list_ids"]) {
			rules = append(rules, prefixListRule{r, owner(r), str(r.Values["type"])})
		}
	}
	for _, sg := range inv.byType["aws_security_group"] {
		for _, dir := range []string{"ingress", "egress"} {
			for _, b := range blocks(sg.Values[dir]) {
				for range strings_(b["prefix_list_ids"]) {
					rules = append(rules, prefixListRule{sg, sg.Key, dir})
				}
			}
		}
	}
	type groupDir struct{ owner, direction string }
	count := map[groupDir][]*resource{}
	var order []groupDir
	for _, r := range rules {
		k := groupDir{r.owner, r.direction}
		if r.owner == "" {
			k.owner = r.rule.Address // unknown group: counted alone
		}
		if _, seen := count[k]; !seen {
			order = append(order, k)
		}
		count[k] = append(count[k], r.rule)
	}
	for _, k := range order {
		rs := count[k]
		if len(rs) < 2 {
			continue
		}
		target := rs[0]
		for _, sg := range inv.byType["aws_security_group"] {
			if sg.Key == k.owner || str(sg.Values["id"]) == k.owner {
				target = sg
			}
		}
		emit(target, Medium, fmt.Sprintf("%d %s rules reference managed prefix lists; each counts as its list's maximum entries against the rules-per-group quota (CloudFront's origin-facing list weighs 55 of the default 60), so the apply fails unless the quota is raised to %d × the list's weight: use one rule", len(rs), k.direction, len(rs)))
	}
}

// worldOpenALBRules returns the ALB security group rules (or groups, for
// inline rules) that admit 0.0.0.0/0 or ::/0.
func worldOpenALBRules(inv *inventory) []*resource {
	albSGs := albSecurityGroups(inv)
	var out []*resource
	for _, sg := range albSGs {
		for _, in := range blocks(sg.Values["ingress"]) {
			if isWorld(append(strings_(in["cidr_blocks"]), strings_(in["ipv6_cidr_blocks"])...)...) {
				out = append(out, sg)
				break
			}
		}
	}
	ownedByALB := func(r *resource) bool {
		return slices.ContainsFunc(albSGs, func(sg *resource) bool { return r.linked("security_group_id", sg, "id") })
	}
	for _, r := range inv.byType["aws_vpc_security_group_ingress_rule"] {
		if ownedByALB(r) && isWorld(str(r.Values["cidr_ipv4"]), str(r.Values["cidr_ipv6"])) {
			out = append(out, r)
		}
	}
	for _, r := range inv.byType["aws_security_group_rule"] {
		if str(r.Values["type"]) == "ingress" && ownedByALB(r) && isWorld(append(strings_(r.Values["cidr_blocks"]), strings_(r.Values["ipv6_cidr_blocks"])...)...) {
			out = append(out, r)
		}
	}
	return out
}

func checkEdgeBypass(inv *inventory, emit func(*resource, Severity, string)) {
	fronted := slices.ContainsFunc(inv.byType["aws_cloudfront_distribution"], func(d *resource) bool {
		return slices.ContainsFunc(blocks(d.Values["origin"]), func(o map[string]any) bool { return len(blocks(o["custom_origin_config"])) > 0 })
	})
	if !fronted {
		return
	}
	for _, r := range worldOpenALBRules(inv) {
		emit(r, Medium, "the ALB admits the internet although CloudFront fronts it: viewers can bypass the edge (its cache, WAF and TLS policy); admit only the CloudFront origin-facing prefix list")
	}
}

// instanceRoles returns the IAM roles that EC2 instances assume through an
// instance profile.
func instanceRoles(inv *inventory) []*resource {
	var out []*resource
	for _, role := range inv.byType["aws_iam_role"] {
		for _, ip := range inv.byType["aws_iam_instance_profile"] {
			if slices.Contains(ip.refs("role"), role.Key) || (str(ip.Values["role"]) != "" && str(ip.Values["role"]) == str(role.Values["name"])) {
				out = append(out, role)
				break
			}
		}
	}
	return out
}

// attachedToRole reports whether a role policy (or attachment) applies to role.
func attachedToRole(p, role *resource) bool {
	if slices.Contains(p.refs("role"), role.Key) {
		return true
	}
	v := str(p.Values["role"])
	return v != "" && (v == str(role.Values["name"]) || v == str(role.Values["id"]))
}

// isRDSMasterSecretARN matches the ARN of an RDS-managed secret
// (arn:aws:secretsmanager:…:secret:rds!db-… or rds!cluster-…).
func isRDSMasterSecretARN(arn string) bool {
	return strings.Contains(arn, ":secret:rds!")
}

func readsSecrets(actions []string) bool {
	return slices.ContainsFunc(actions, func(a string) bool {
		a = strings.ToLower(a)
		return a == "*" || a == "secretsmanager:*" || a == "secretsmanager:getsecretvalue"
	})
}

// masterSecretGrants returns the Sids of statements in policy resource p
// (a role policy or a managed policy) that let its holder read an RDS
// master secret: by ARN in known policy JSON, or by a configuration
// reference to master_user_secret in an aws_iam_policy_document.
func masterSecretGrants(inv *inventory, p *resource) []string {
	var sids []string
	if stmts, ok := parsePolicyJSON(str(p.Values["policy"])); ok {
		for _, st := range stmts {
			if strings.EqualFold(st.Effect, "Allow") && readsSecrets(st.Actions) && slices.ContainsFunc(st.Resources, isRDSMasterSecretARN) {
				sids = append(sids, st.Sid)
			}
		}
		return sids
	}
	for _, k := range p.refs("policy") {
		for _, doc := range inv.byKey[k] {
			if doc.Mode != "data" || doc.Type != "aws_iam_policy_document" {
				continue
			}
			planned := documentStatements(doc.Values)
			cfg, _ := doc.Exprs["statement"].([]any)
			for i, st := range planned {
				if !strings.EqualFold(st.Effect, "Allow") || !readsSecrets(st.Actions) {
					continue
				}
				hit := slices.ContainsFunc(st.Resources, isRDSMasterSecretARN)
				if i < len(cfg) {
					if m, ok := cfg[i].(map[string]any); ok {
						hit = hit || slices.ContainsFunc(exprRefs(m, "resources"), func(r string) bool { return strings.Contains(r, "master_user_secret") })
					}
				}
				if hit {
					sids = append(sids, st.Sid)
				}
			}
		}
	}
	return sids
}

// exprRefs returns the raw references of attr in a configuration block.
func exprRefs(block map[string]any, attr string) []string {
	e, _ := block[attr].(map[string]any)
	raw, _ := e["references"].([]any)
	var out []string
	for _, r := range raw {
		if s, ok := r.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func checkAppReadsMasterSecret(inv *inventory, emit func(*resource, Severity, string)) {
	for _, role := range instanceRoles(inv) {
		for _, typ := range []string{"aws_iam_role_policy"} {
			for _, p := range inv.byType[typ] {
				if !attachedToRole(p, role) {
					continue
				}
				for _, sid := range masterSecretGrants(inv, p) {
					if sid == "" {
						sid = "(no Sid)"
					}
					emit(p, High, fmt.Sprintf("statement %s lets the instance role %s read the RDS master secret: a compromised app holds the database's administrator; give the app its own login and secret", sid, role.Address))
				}
			}
		}
		for _, att := range inv.byType["aws_iam_role_policy_attachment"] {
			if !attachedToRole(att, role) {
				continue
			}
			for _, pol := range inv.byType["aws_iam_policy"] {
				if !att.linked("policy_arn", pol, "arn") {
					continue
				}
				for _, sid := range masterSecretGrants(inv, pol) {
					if sid == "" {
						sid = "(no Sid)"
					}
					emit(pol, High, fmt.Sprintf("statement %s, attached to the instance role %s, lets it read the RDS master secret: give the app its own login and secret", sid, role.Address))
				}
			}
		}
	}
}

func checkAlarmTopicKey(inv *inventory, emit func(*resource, Severity, string)) {
	if len(inv.byType["aws_cloudwatch_metric_alarm"]) == 0 && len(inv.byType["aws_db_event_subscription"]) == 0 {
		return
	}
	for _, topic := range inv.byType["aws_sns_topic"] {
		if k := str(topic.Values["kms_master_key_id"]); strings.HasSuffix(k, "alias/aws/sns") {
			emit(topic, Medium, "encrypted with the AWS managed key alias/aws/sns, which CloudWatch alarms and RDS events may not use: their notifications to this topic are dropped; use a customer managed key that allows cloudwatch.amazonaws.com and events.rds.amazonaws.com")
		}
	}
}

// weakViewerPolicies are CloudFront security policies that accept TLS below 1.2.
var weakViewerPolicies = map[string]bool{"SSLv3": true, "TLSv1": true, "TLSv1_2016": true, "TLSv1.1_2016": true}

func checkViewerTLS(inv *inventory, emit func(*resource, Severity, string)) {
	for _, d := range inv.byType["aws_cloudfront_distribution"] {
		vcs := blocks(d.Values["viewer_certificate"])
		if len(vcs) == 0 {
			continue
		}
		vc := vcs[0]
		if def, _ := boolean(vc["cloudfront_default_certificate"]); def {
			emit(d, Medium, "uses the *.cloudfront.net certificate, with which CloudFront accepts TLSv1 from viewers whatever minimum_protocol_version says")
			continue
		}
		if p := str(vc["minimum_protocol_version"]); weakViewerPolicies[p] {
			emit(d, Medium, fmt.Sprintf("minimum_protocol_version %s accepts TLS below 1.2 from viewers", p))
		}
	}
}

// checkInstanceRefresh (HAVEN-AWS-022): a group's instance refresh either
// keeps serving capacity (it may launch before it terminates) and rolls a
// bad version back on its alarms, or a deploy takes capacity away and
// leaves whatever it rolled out. A group without instance_refresh is not
// judged: it is deployed some other way.
func checkInstanceRefresh(inv *inventory, emit func(*resource, Severity, string)) {
	for _, g := range inv.byType["aws_autoscaling_group"] {
		irs := blocks(g.Values["instance_refresh"])
		if len(irs) == 0 {
			continue
		}
		var p map[string]any
		if ps := blocks(irs[0]["preferences"]); len(ps) > 0 {
			p = ps[0]
		}
		minH, minKnown := number(p["min_healthy_percentage"])
		if !minKnown && p["min_healthy_percentage"] == nil {
			minH, minKnown = 90, true // AWS's default
		}
		maxH, maxKnown := number(p["max_healthy_percentage"])
		if !maxKnown && p["max_healthy_percentage"] == nil {
			maxH, maxKnown = 100, true // AWS's default
		}
		if minKnown && maxKnown && minH < 100 && maxH <= 100 {
			emit(g, Medium, fmt.Sprintf("instance refresh with min_healthy_percentage %g and max_healthy_percentage %g: it terminates before it launches, so every deploy serves on less than the desired capacity (a group of two on one instance, in one zone)", minH, maxH))
		}
		if on, known := boolean(p["auto_rollback"]); !known && p["auto_rollback"] == nil || known && !on {
			emit(g, Medium, "instance refresh without auto_rollback: a refresh that fails or trips an alarm stops where it is, with the bad version on part of the group")
		}
		// No alarm_specification, or one whose alarms are known and none;
		// alarms known only after apply are given the benefit of the doubt.
		noAlarms := true
		if as := blocks(p["alarm_specification"]); len(as) > 0 {
			l, known := as[0]["alarms"].([]any)
			noAlarms = known && len(l) == 0
		}
		if noAlarms {
			emit(g, Medium, "instance refresh watches no alarm (alarm_specification): a version that answers with errors or slowly but passes its health check rolls out to the whole group")
		}
	}
}
