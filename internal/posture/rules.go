package posture

import (
	"fmt"
	"strings"
)

var publicACLs = map[string]bool{"public-read": true, "public-read-write": true, "authenticated-read": true}

// bucketPolicyStatements returns the statements of a bucket policy, from its
// JSON when known or from the aws_iam_policy_document it references.
func bucketPolicyStatements(inv *inventory, pol *resource) []statement {
	if stmts, ok := parsePolicyJSON(str(pol.Values["policy"])); ok {
		return stmts
	}
	var out []statement
	for _, k := range pol.refs("policy") {
		for _, doc := range inv.byKey[k] {
			if doc.Mode == "data" && doc.Type == "aws_iam_policy_document" {
				out = append(out, documentStatements(doc.Values)...)
			}
		}
	}
	return out
}

func checkPublicBucket(inv *inventory, emit func(*resource, Severity, string)) {
	for _, pab := range inv.byType["aws_s3_bucket_public_access_block"] {
		var off []string
		for _, flag := range []string{"block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"} {
			if v, known := boolean(pab.Values[flag]); known && !v {
				off = append(off, flag)
			}
		}
		if len(off) > 0 {
			emit(pab, High, fmt.Sprintf("public access block leaves %s off", strings.Join(off, ", ")))
		}
	}
	for _, b := range inv.byType["aws_s3_bucket"] {
		if publicACLs[str(b.Values["acl"])] {
			emit(b, High, fmt.Sprintf("bucket ACL %q grants public access", str(b.Values["acl"])))
		}
		blocked := false
		for _, pab := range inv.byType["aws_s3_bucket_public_access_block"] {
			if pab.linked("bucket", b, "bucket") {
				blocked = true
			}
		}
		if !blocked {
			emit(b, High, "bucket has no public access block")
		}
	}
	for _, acl := range inv.byType["aws_s3_bucket_acl"] {
		if publicACLs[str(acl.Values["acl"])] {
			emit(acl, High, fmt.Sprintf("bucket ACL %q grants public access", str(acl.Values["acl"])))
		}
	}
	for _, pol := range inv.byType["aws_s3_bucket_policy"] {
		for _, st := range bucketPolicyStatements(inv, pol) {
			if strings.EqualFold(st.Effect, "Allow") && st.PublicPrincipal && !st.HasCondition {
				emit(pol, High, fmt.Sprintf("bucket policy statement %q allows principal * without a condition", st.Sid))
			}
		}
	}
}

// albSecurityGroups returns the security groups attached to application
// load balancers.
func albSecurityGroups(inv *inventory) []*resource {
	var out []*resource
	for _, lb := range inv.byType["aws_lb"] {
		if t := str(lb.Values["load_balancer_type"]); t != "" && t != "application" {
			continue
		}
		for _, sg := range inv.byType["aws_security_group"] {
			if lb.linkedAny("security_groups", sg, "id") {
				out = append(out, sg)
			}
		}
	}
	return out
}

func isWorld(cidrs ...string) bool {
	for _, c := range cidrs {
		if c == "0.0.0.0/0" || c == "::/0" {
			return true
		}
	}
	return false
}

// webPortsOnly reports whether a rule admits only 80 or only 443 over TCP.
func webPortsOnly(protocol string, from, to float64) bool {
	if protocol != "tcp" && protocol != "6" {
		return false
	}
	return from == to && (from == 80 || from == 443)
}

func checkOpenSecurityGroup(inv *inventory, emit func(*resource, Severity, string)) {
	albSGs := albSecurityGroups(inv)
	isALB := func(sg *resource) bool {
		for _, a := range albSGs {
			if a == sg {
				return true
			}
		}
		return false
	}
	// ownerIsALB finds the group a standalone rule belongs to.
	ownerIsALB := func(rule *resource) bool {
		for _, sg := range albSGs {
			if rule.linked("security_group_id", sg, "id") {
				return true
			}
		}
		return false
	}
	report := func(r *resource, alb bool, protocol string, from, to float64, cidrs ...string) {
		if !isWorld(cidrs...) {
			return
		}
		if alb && webPortsOnly(protocol, from, to) {
			return
		}
		what := "a security group that is not the ALB's"
		if alb {
			what = "the ALB security group on a port other than 80/443"
		}
		emit(r, High, fmt.Sprintf("ingress %s %g-%g from %s reaches %s", protocol, from, to, strings.Join(cidrs, ", "), what))
	}
	for _, sg := range inv.byType["aws_security_group"] {
		for _, in := range blocks(sg.Values["ingress"]) {
			from, _ := number(in["from_port"])
			to, _ := number(in["to_port"])
			cidrs := append(strings_(in["cidr_blocks"]), strings_(in["ipv6_cidr_blocks"])...)
			report(sg, isALB(sg), str(in["protocol"]), from, to, cidrs...)
		}
	}
	for _, r := range inv.byType["aws_vpc_security_group_ingress_rule"] {
		from, _ := number(r.Values["from_port"])
		to, _ := number(r.Values["to_port"])
		var cidrs []string
		for _, k := range []string{"cidr_ipv4", "cidr_ipv6"} {
			if c := str(r.Values[k]); c != "" {
				cidrs = append(cidrs, c)
			}
		}
		report(r, ownerIsALB(r), str(r.Values["ip_protocol"]), from, to, cidrs...)
	}
	for _, r := range inv.byType["aws_security_group_rule"] {
		if str(r.Values["type"]) != "ingress" {
			continue
		}
		from, _ := number(r.Values["from_port"])
		to, _ := number(r.Values["to_port"])
		cidrs := append(strings_(r.Values["cidr_blocks"]), strings_(r.Values["ipv6_cidr_blocks"])...)
		report(r, ownerIsALB(r), str(r.Values["protocol"]), from, to, cidrs...)
	}
}

var dbTypes = []string{"aws_db_instance", "aws_rds_cluster_instance"}

func checkPublicDB(inv *inventory, emit func(*resource, Severity, string)) {
	for _, t := range dbTypes {
		for _, db := range inv.byType[t] {
			if v, _ := boolean(db.Values["publicly_accessible"]); v {
				emit(db, High, "publicly_accessible is true: the database gets a public address")
			}
		}
	}
}

func checkUnencrypted(inv *inventory, emit func(*resource, Severity, string)) {
	for _, t := range []string{"aws_db_instance", "aws_rds_cluster"} {
		for _, db := range inv.byType[t] {
			if str(db.Values["replicate_source_db"]) != "" {
				continue // a replica inherits its source's encryption
			}
			if v, known := boolean(db.Values["storage_encrypted"]); known && !v {
				emit(db, High, "storage_encrypted is false")
			}
		}
	}
	for _, lt := range inv.byType["aws_launch_template"] {
		for _, bdm := range blocks(lt.Values["block_device_mappings"]) {
			for _, ebs := range blocks(bdm["ebs"]) {
				if e := str(ebs["encrypted"]); e != "true" {
					emit(lt, High, fmt.Sprintf("EBS volume %s is not encrypted (encrypted = %q)", str(bdm["device_name"]), e))
				}
			}
		}
	}
	for _, v := range inv.byType["aws_ebs_volume"] {
		if e, known := boolean(v.Values["encrypted"]); known && !e {
			emit(v, High, "EBS volume is not encrypted")
		}
	}
	for _, in := range inv.byType["aws_instance"] {
		for _, rbd := range blocks(in.Values["root_block_device"]) {
			if e, known := boolean(rbd["encrypted"]); known && !e {
				emit(in, High, "root volume is not encrypted")
			}
		}
	}
	for _, b := range inv.byType["aws_s3_bucket"] {
		if len(blocks(b.Values["server_side_encryption_configuration"])) > 0 {
			continue
		}
		found := false
		for _, sse := range inv.byType["aws_s3_bucket_server_side_encryption_configuration"] {
			if sse.linked("bucket", b, "bucket") {
				found = true
			}
		}
		if !found {
			emit(b, Medium, "bucket has no server-side encryption configuration (S3 falls back to SSE-S3, but the intent is not in code)")
		}
	}
}

func checkLiteralPassword(inv *inventory, emit func(*resource, Severity, string)) {
	for _, t := range []string{"aws_db_instance", "aws_rds_cluster"} {
		for _, db := range inv.byType[t] {
			if db.hasExpr("password") || db.hasExpr("master_password") || str(db.Values["password"]) != "" || str(db.Values["master_password"]) != "" {
				emit(db, High, "the master password is set in configuration, so it is stored in plan and state files")
			}
		}
	}
}

func checkIMDS(inv *inventory, emit func(*resource, Severity, string)) {
	for _, t := range []string{"aws_launch_template", "aws_instance"} {
		for _, r := range inv.byType[t] {
			opts := blocks(r.Values["metadata_options"])
			if len(opts) == 0 {
				emit(r, High, "no metadata_options: IMDSv1 stays enabled unless the AMI says otherwise")
				continue
			}
			o := opts[0]
			if tokens := str(o["http_tokens"]); tokens != "required" {
				emit(r, High, fmt.Sprintf("http_tokens is %q: IMDSv1 (no session token) is allowed", tokens))
			}
			if hop, ok := number(o["http_put_response_hop_limit"]); ok && hop > 1 {
				emit(r, Medium, fmt.Sprintf("http_put_response_hop_limit is %g: containers on the instance can fetch its credentials", hop))
			}
		}
	}
}

func checkMultiAZ(inv *inventory, emit func(*resource, Severity, string)) {
	for _, db := range inv.byType["aws_db_instance"] {
		if str(db.Values["replicate_source_db"]) != "" {
			continue
		}
		if v, known := boolean(db.Values["multi_az"]); known && !v {
			emit(db, Medium, "multi_az is false: losing its AZ loses the database")
		}
	}
}

func checkBackups(inv *inventory, emit func(*resource, Severity, string)) {
	for _, db := range inv.byType["aws_db_instance"] {
		if str(db.Values["replicate_source_db"]) != "" {
			continue
		}
		if n, ok := number(db.Values["backup_retention_period"]); ok && n == 0 {
			emit(db, High, "backup_retention_period is 0: automated backups and point-in-time restore are off")
		}
	}
}

func checkDeletionProtection(inv *inventory, emit func(*resource, Severity, string)) {
	for _, t := range []string{"aws_db_instance", "aws_rds_cluster"} {
		for _, db := range inv.byType[t] {
			if v, known := boolean(db.Values["deletion_protection"]); known && !v {
				emit(db, Medium, "deletion_protection is false")
			}
		}
	}
	for _, lb := range inv.byType["aws_lb"] {
		if v, known := boolean(lb.Values["enable_deletion_protection"]); known && !v {
			emit(lb, Medium, "enable_deletion_protection is false")
		}
	}
}

func checkWildcardIAM(inv *inventory, emit func(*resource, Severity, string)) {
	check := func(r *resource, stmts []statement) {
		for _, st := range stmts {
			for _, p := range wildcardProblems(st) {
				sid := st.Sid
				if sid == "" {
					sid = "(no Sid)"
				}
				emit(r, High, fmt.Sprintf("statement %s allows %s", sid, p))
			}
		}
	}
	for _, t := range []string{"aws_iam_policy", "aws_iam_role_policy", "aws_iam_user_policy", "aws_iam_group_policy", "aws_s3_bucket_policy"} {
		for _, r := range inv.byType[t] {
			if stmts, ok := parsePolicyJSON(str(r.Values["policy"])); ok {
				check(r, stmts)
			}
		}
	}
	for _, doc := range inv.data("aws_iam_policy_document") {
		check(doc, documentStatements(doc.Values))
	}
}

func checkHTTPListener(inv *inventory, emit func(*resource, Severity, string)) {
	for _, l := range inv.byType["aws_lb_listener"] {
		if str(l.Values["protocol"]) != "HTTP" {
			continue
		}
		for _, a := range blocks(l.Values["default_action"]) {
			typ := str(a["type"])
			if typ == "redirect" {
				redirects := blocks(a["redirect"])
				if len(redirects) > 0 && str(redirects[0]["protocol"]) == "HTTPS" {
					continue
				}
				emit(l, High, "HTTP listener redirects, but not to HTTPS")
				continue
			}
			emit(l, High, fmt.Sprintf("HTTP listener's default action is %q: it serves plaintext instead of redirecting to HTTPS", typ))
		}
	}
}
