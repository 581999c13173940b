package terraform_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/haven-platform/haven/internal/tfvars"
)

const mod = "module.haven."

// plan is the example plan with lookups by address.
type plan struct {
	t         *testing.T
	resources map[string]map[string]any // address -> values
	types     map[string][]string       // type -> addresses (managed and data)
	config    map[string]map[string]any // module-relative address -> expressions
}

func loadPlan(t *testing.T) (*plan, tfvars.Vars) {
	t.Helper()
	raw, vars := examplePlan(t)
	var doc struct {
		PlannedValues struct {
			RootModule struct {
				ChildModules []struct {
					Address   string `json:"address"`
					Resources []struct {
						Address string         `json:"address"`
						Type    string         `json:"type"`
						Values  map[string]any `json:"values"`
					} `json:"resources"`
				} `json:"child_modules"`
			} `json:"root_module"`
		} `json:"planned_values"`
		Configuration struct {
			RootModule struct {
				ModuleCalls map[string]struct {
					Module struct {
						Resources []struct {
							Address     string         `json:"address"`
							Expressions map[string]any `json:"expressions"`
						} `json:"resources"`
					} `json:"module"`
				} `json:"module_calls"`
			} `json:"root_module"`
		} `json:"configuration"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	p := &plan{t: t, resources: map[string]map[string]any{}, types: map[string][]string{}, config: map[string]map[string]any{}}
	for _, cm := range doc.PlannedValues.RootModule.ChildModules {
		for _, r := range cm.Resources {
			p.resources[r.Address] = r.Values
			p.types[r.Type] = append(p.types[r.Type], r.Address)
		}
	}
	for _, r := range doc.Configuration.RootModule.ModuleCalls["haven"].Module.Resources {
		p.config[r.Address] = r.Expressions
	}
	if len(p.resources) == 0 {
		t.Fatal("plan has no resources in module.haven")
	}
	return p, vars
}

func (p *plan) get(addr string) map[string]any {
	p.t.Helper()
	v, ok := p.resources[addr]
	if !ok {
		p.t.Fatalf("plan has no %s", addr)
	}
	return v
}

// refs returns the configuration references of attr on a module resource.
func (p *plan) refs(addr, attr string) []string {
	return refsOf(p.config[addr], attr)
}

func refsOf(exprs map[string]any, attr string) []string {
	e, _ := exprs[attr].(map[string]any)
	raw, _ := e["references"].([]any)
	var out []string
	for _, r := range raw {
		out = append(out, r.(string))
	}
	return out
}

func first(v any) map[string]any {
	l, _ := v.([]any)
	if len(l) == 0 {
		return nil
	}
	m, _ := l[0].(map[string]any)
	return m
}

func strs(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, e := range l {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out
}

func num(v any) float64 { f, _ := v.(float64); return f }

func eq(t *testing.T, what string, got, want any) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestBothAZsUsed(t *testing.T) {
	p, vars := loadPlan(t)
	for _, tier := range []string{"public", "app", "db"} {
		var azs []string
		for i := range vars.AZs {
			azs = append(azs, p.get(fmt.Sprintf("%saws_subnet.%s[%d]", mod, tier, i))["availability_zone"].(string))
		}
		sort.Strings(azs)
		eq(t, tier+" subnet AZs", azs, vars.AZs)
	}
	eq(t, "ASG subnets", p.refs("aws_autoscaling_group.app", "vpc_zone_identifier"), []string{"aws_subnet.app"})
	eq(t, "ALB subnets", p.refs("aws_lb.this", "subnets"), []string{"aws_subnet.public"})
	eq(t, "DB subnet group", p.refs("aws_db_subnet_group.this", "subnet_ids"), []string{"aws_subnet.db"})
}

func TestSecurityGroupChain(t *testing.T) {
	p, vars := loadPlan(t)
	for _, addr := range p.types["aws_security_group"] {
		if ing := strs(p.get(addr)["ingress"]); len(ing) != 0 {
			t.Errorf("%s has inline ingress %v; rules must be standalone and reference groups", addr, ing)
		}
	}
	// Who may reach each guarded group, and on which port.
	want := map[string]struct {
		from string
		port int
	}{
		"aws_security_group.app":       {"aws_security_group.alb", vars.AppPort},
		"aws_security_group.db":        {"aws_security_group.app", 5432},
		"aws_security_group.endpoints": {"aws_security_group.app", 443},
	}
	seen := map[string]int{}
	for _, addr := range p.types["aws_vpc_security_group_ingress_rule"] {
		rel := strings.TrimPrefix(addr, mod)
		if i := strings.Index(rel, "["); i >= 0 {
			rel = rel[:i]
		}
		owner := p.refs(rel, "security_group_id")
		if len(owner) == 0 {
			t.Fatalf("%s: no security_group_id reference", addr)
		}
		w, guarded := want[owner[len(owner)-1]]
		if !guarded {
			continue
		}
		seen[owner[len(owner)-1]]++
		v := p.get(addr)
		for _, k := range []string{"cidr_ipv4", "cidr_ipv6", "prefix_list_id"} {
			if v[k] != nil {
				t.Errorf("%s: %s = %v; only a security group may reach %s", addr, k, v[k], owner[len(owner)-1])
			}
		}
		src := p.refs(rel, "referenced_security_group_id")
		if len(src) == 0 || src[len(src)-1] != w.from {
			t.Errorf("%s: source %v, want %s", addr, src, w.from)
		}
		eq(t, addr+" from_port", num(v["from_port"]), float64(w.port))
		eq(t, addr+" to_port", num(v["to_port"]), float64(w.port))
	}
	for g := range want {
		if seen[g] != 1 {
			t.Errorf("%s has %d ingress rules, want exactly 1", g, seen[g])
		}
	}
	// The DB group sends nothing; the app group only to db, endpoints and S3.
	for _, addr := range p.types["aws_vpc_security_group_egress_rule"] {
		rel := strings.TrimPrefix(addr, mod)
		owner := p.refs(rel, "security_group_id")
		if slices.Contains(owner, "aws_security_group.db") {
			t.Errorf("%s: db-sg must have no egress", addr)
		}
		if v := p.get(addr); v["cidr_ipv4"] != nil {
			t.Errorf("%s: egress to CIDR %v (NAT is off in the example)", addr, v["cidr_ipv4"])
		}
	}
}

func TestDatabase(t *testing.T) {
	p, vars := loadPlan(t)
	db := p.get(mod + "aws_db_instance.this")
	eq(t, "multi_az", db["multi_az"], true)
	eq(t, "manage_master_user_password", db["manage_master_user_password"], true)
	eq(t, "password", db["password"], nil)
	if _, ok := p.config["aws_db_instance.this"]["password"]; ok {
		t.Error("password is set in configuration")
	}
	eq(t, "storage_encrypted", db["storage_encrypted"], true)
	eq(t, "publicly_accessible", db["publicly_accessible"], false)
	eq(t, "deletion_protection", db["deletion_protection"], true)
	eq(t, "engine", db["engine"], "postgres")
	eq(t, "engine_version", db["engine_version"], "15")
	eq(t, "backup_retention_period", num(db["backup_retention_period"]), float64(vars.DBBackupRetentionPeriod))
	eq(t, "backup_window", db["backup_window"], vars.DBBackupWindow)
	eq(t, "instance_class", db["instance_class"], vars.DBInstanceClass)

	pg := p.get(mod + "aws_db_parameter_group.this")
	var forced bool
	for _, prm := range pg["parameter"].([]any) {
		m := prm.(map[string]any)
		forced = forced || (m["name"] == "rds.force_ssl" && m["value"] == "1")
	}
	if !forced {
		t.Error("parameter group does not set rds.force_ssl = 1")
	}
	rot := p.get(mod + "aws_secretsmanager_secret_rotation.db")
	eq(t, "rotation days", num(first(rot["rotation_rules"])["automatically_after_days"]), float64(vars.DBSecretRotationDays))
}

func TestIMDSv2AndEncryptedEBS(t *testing.T) {
	p, vars := loadPlan(t)
	lt := p.get(mod + "aws_launch_template.app")
	md := first(lt["metadata_options"])
	eq(t, "http_tokens", md["http_tokens"], "required")
	eq(t, "http_put_response_hop_limit", num(md["http_put_response_hop_limit"]), 1.0)
	eq(t, "instance_type", lt["instance_type"], vars.InstanceType)
	eq(t, "image_id", lt["image_id"], vars.AMIID)
	for _, bdm := range lt["block_device_mappings"].([]any) {
		eq(t, "ebs encrypted", first(bdm.(map[string]any)["ebs"])["encrypted"], "true")
	}
}

func TestFleetMatchesSpec(t *testing.T) {
	p, vars := loadPlan(t)
	in := coursesInput()
	asg := p.get(mod + "aws_autoscaling_group.app")
	eq(t, "min_size", num(asg["min_size"]), float64(in.Min))
	eq(t, "max_size", num(asg["max_size"]), float64(in.Max))
	eq(t, "desired_capacity", num(asg["desired_capacity"]), float64(in.Desired))
	eq(t, "health_check_type", asg["health_check_type"], "ELB")
	eq(t, "health_check_grace_period", num(asg["health_check_grace_period"]), in.GracePeriod.Seconds())
	eq(t, "capacity_rebalance", asg["capacity_rebalance"], true)
	ir := first(asg["instance_refresh"])
	prefs := first(ir["preferences"])
	eq(t, "min_healthy_percentage", num(prefs["min_healthy_percentage"]), 90.0)
	eq(t, "auto_rollback", prefs["auto_rollback"], true)
	alarmSpec := first(first(first(p.config["aws_autoscaling_group.app"]["instance_refresh"])["preferences"])["alarm_specification"])
	if refs := refsOf(alarmSpec, "alarms"); !slices.Contains(refs, "aws_cloudwatch_metric_alarm.alb_5xx_rate.alarm_name") {
		t.Errorf("instance refresh alarms reference %v, want the 5xx alarm", refs)
	}

	// Target tracking: equal to the spec (warmups are whole seconds already).
	if got := len(p.types["aws_autoscaling_policy"]); got != len(in.TargetTracking) {
		t.Fatalf("%d scaling policies, want %d", got, len(in.TargetTracking))
	}
	metric := map[string]string{"cpu": "ASGAverageCPUUtilization", "request_count": "ALBRequestCountPerTarget"}
	for _, tt := range in.TargetTracking {
		pol := p.get(fmt.Sprintf("%saws_autoscaling_policy.target_tracking[%q]", mod, tt.Metric))
		eq(t, tt.Metric+" policy_type", pol["policy_type"], "TargetTrackingScaling")
		eq(t, tt.Metric+" warmup", num(pol["estimated_instance_warmup"]), tt.Warmup.Seconds())
		ttc := first(pol["target_tracking_configuration"])
		eq(t, tt.Metric+" target", num(ttc["target_value"]), tt.Target)
		eq(t, tt.Metric+" metric", first(ttc["predefined_metric_specification"])["predefined_metric_type"], metric[tt.Metric])
	}

	// Scheduled actions: equal to the spec; an unset size is -1 (unchanged).
	if got := len(p.types["aws_autoscaling_schedule"]); got != len(in.Scheduled) {
		t.Fatalf("%d scheduled actions, want %d", got, len(in.Scheduled))
	}
	size := func(n *int) float64 {
		if n == nil {
			return -1
		}
		return float64(*n)
	}
	for _, s := range in.Scheduled {
		a := p.get(fmt.Sprintf("%saws_autoscaling_schedule.app[%q]", mod, s.Name))
		eq(t, s.Name+" recurrence", a["recurrence"], s.Cron)
		eq(t, s.Name+" min", num(a["min_size"]), size(s.Min))
		eq(t, s.Name+" max", num(a["max_size"]), size(s.Max))
		eq(t, s.Name+" desired", num(a["desired_capacity"]), size(s.Desired))
		if s.TimeZone != "" {
			eq(t, s.Name+" time_zone", a["time_zone"], s.TimeZone)
		}
	}

	// Target group: the tfvars values (clamped where AWS demands, with warnings).
	tg := p.get(mod + "aws_lb_target_group.app")
	hc := first(tg["health_check"])
	eq(t, "hc path", hc["path"], in.HealthCheck.Path)
	eq(t, "hc interval", num(hc["interval"]), float64(vars.HealthCheck.Interval))
	eq(t, "hc timeout", num(hc["timeout"]), float64(vars.HealthCheck.Timeout))
	eq(t, "hc healthy", num(hc["healthy_threshold"]), float64(in.HealthCheck.Healthy))
	eq(t, "hc unhealthy", num(hc["unhealthy_threshold"]), float64(in.HealthCheck.Unhealthy))
	eq(t, "deregistration_delay", tg["deregistration_delay"], fmt.Sprint(in.DeregistrationDelay.Seconds()))
	eq(t, "algorithm", tg["load_balancing_algorithm_type"], in.Algorithm)
	eq(t, "port", num(tg["port"]), float64(in.AppPort))
}

func TestLoadBalancer(t *testing.T) {
	p, _ := loadPlan(t)
	lb := p.get(mod + "aws_lb.this")
	eq(t, "drop_invalid_header_fields", lb["drop_invalid_header_fields"], true)
	eq(t, "internal", lb["internal"], false)
	eq(t, "access_logs enabled", first(lb["access_logs"])["enabled"], true)
	https := p.get(mod + "aws_lb_listener.https")
	eq(t, "https protocol", https["protocol"], "HTTPS")
	eq(t, "ssl_policy", https["ssl_policy"], "ELBSecurityPolicy-TLS13-1-2-2021-06")
	http := p.get(mod + "aws_lb_listener.http_redirect")
	act := first(http["default_action"])
	eq(t, "http action", act["type"], "redirect")
	eq(t, "redirect protocol", first(act["redirect"])["protocol"], "HTTPS")
}

// statementsOf returns the planned statements and their configuration of an
// aws_iam_policy_document in the module.
func statementsOf(p *plan, name string) (planned []map[string]any, config []map[string]any) {
	doc := p.get(mod + "data.aws_iam_policy_document." + name)
	for _, s := range doc["statement"].([]any) {
		planned = append(planned, s.(map[string]any))
	}
	for _, s := range p.config["data.aws_iam_policy_document."+name]["statement"].([]any) {
		config = append(config, s.(map[string]any))
	}
	if len(planned) != len(config) {
		p.t.Fatalf("policy document %s: %d planned statements, %d configured", name, len(planned), len(config))
	}
	return planned, config
}

func TestBucketReadableOnlyThroughOAC(t *testing.T) {
	p, _ := loadPlan(t)
	pab := p.get(mod + "aws_s3_bucket_public_access_block.assets")
	for _, k := range []string{"block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"} {
		eq(t, k, pab[k], true)
	}
	eq(t, "ownership", first(p.get(mod + "aws_s3_bucket_ownership_controls.assets")["rule"])["object_ownership"], "BucketOwnerEnforced")
	eq(t, "bucket policy source", p.refs("aws_s3_bucket_policy.assets", "policy"),
		[]string{"data.aws_iam_policy_document.assets.json", "data.aws_iam_policy_document.assets"})

	planned, config := statementsOf(p, "assets")
	allows := 0
	for i, st := range planned {
		if st["effect"] != "Allow" {
			continue
		}
		allows++
		eq(t, "allowed actions", strs(st["actions"]), []string{"s3:GetObject"})
		pr := st["principals"].([]any)
		if len(pr) != 1 {
			t.Fatalf("allow statement has %d principals, want 1", len(pr))
		}
		eq(t, "principal type", pr[0].(map[string]any)["type"], "Service")
		eq(t, "principal", strs(pr[0].(map[string]any)["identifiers"]), []string{"cloudfront.amazonaws.com"})
		cond := first(st["condition"])
		eq(t, "condition test", cond["test"], "StringEquals")
		eq(t, "condition variable", cond["variable"], "AWS:SourceArn")
		cc := first(config[i]["condition"])
		if refs := refsOf(cc, "values"); !slices.Contains(refs, "aws_cloudfront_distribution.this.arn") {
			t.Errorf("SourceArn condition references %v, want aws_cloudfront_distribution.this.arn", refs)
		}
	}
	if allows != 1 {
		t.Errorf("%d allow statements in the bucket policy, want 1 (the OAC)", allows)
	}
	// The distribution reads the bucket through the OAC.
	cfgOrigins := p.config["aws_cloudfront_distribution.this"]["origin"].([]any)
	var viaOAC bool
	for _, o := range cfgOrigins {
		viaOAC = viaOAC || slices.Contains(refsOf(o.(map[string]any), "origin_access_control_id"), "aws_cloudfront_origin_access_control.assets.id")
	}
	if !viaOAC {
		t.Error("no CloudFront origin uses the origin access control")
	}
}

func TestInstanceRoleReadsOnlyItsSecret(t *testing.T) {
	p, vars := loadPlan(t)
	eq(t, "role policy source", p.refs("aws_iam_role_policy.app", "policy"),
		[]string{"data.aws_iam_policy_document.app.json", "data.aws_iam_policy_document.app"})
	planned, config := statementsOf(p, "app")
	secretStatements := 0
	for i, st := range planned {
		acts := strs(st["actions"])
		if st["effect"] != "Allow" {
			t.Errorf("unexpected %v statement", st["effect"])
		}
		if slices.Contains(strs(st["resources"]), "*") {
			t.Errorf("statement %v grants Resource *", st["sid"])
		}
		touchesSecrets := slices.ContainsFunc(acts, func(a string) bool { return strings.HasPrefix(a, "secretsmanager:") })
		if !touchesSecrets {
			continue
		}
		secretStatements++
		eq(t, "secret actions", acts, []string{"secretsmanager:GetSecretValue"})
		eq(t, "secret resources count", len(st["resources"].([]any)), 1)
		refs := refsOf(config[i], "resources")
		if len(refs) == 0 || refs[0] != "aws_db_instance.this.master_user_secret[0].secret_arn" {
			t.Errorf("secret statement resources reference %v, want the RDS-managed master secret", refs)
		}
	}
	if secretStatements != 1 {
		t.Errorf("%d statements grant Secrets Manager actions, want 1", secretStatements)
	}
	// Materials: Get/Put on the materials prefix only.
	for i, st := range planned {
		if st["sid"] == "ReadWriteMaterials" {
			eq(t, "materials actions", strs(st["actions"]), []string{"s3:GetObject", "s3:PutObject"})
			eq(t, "materials refs", refsOf(config[i], "resources"), []string{"aws_s3_bucket.assets.arn", "aws_s3_bucket.assets", "var.materials_prefix"})
		}
	}
	var attached []string
	for _, a := range p.types["aws_iam_role_policy_attachment"] {
		attached = append(attached, p.get(a)["policy_arn"].(string))
	}
	sort.Strings(attached)
	eq(t, "managed policies", attached, []string{
		"arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
		"arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy",
	})
	_ = vars
}

func TestNoAWSQueriesAtPlanTime(t *testing.T) {
	p, _ := loadPlan(t)
	offline := map[string]bool{"aws_iam_policy_document": true, "aws_elb_service_account": true}
	for addr := range p.config {
		if strings.HasPrefix(addr, "data.") {
			typ := strings.Split(addr, ".")[1]
			if !offline[typ] {
				t.Errorf("%s: data source may query AWS at plan time", addr)
			}
		}
	}
}

func TestEdge(t *testing.T) {
	p, _ := loadPlan(t)
	cf := p.get(mod + "aws_cloudfront_distribution.this")
	def := first(cf["default_cache_behavior"])
	eq(t, "default viewer policy", def["viewer_protocol_policy"], "redirect-to-https")
	eq(t, "default cache policy (CachingDisabled)", def["cache_policy_id"], "4135ea2d-6df8-44a3-9df3-4b5a84be39ad")
	eq(t, "default compress", def["compress"], true)
	var paths []string
	for _, b := range cf["ordered_cache_behavior"].([]any) {
		m := b.(map[string]any)
		paths = append(paths, m["path_pattern"].(string))
		eq(t, "static cache policy (CachingOptimized)", m["cache_policy_id"], "658327ea-f89d-4fab-a63d-7e88639e58f6")
		eq(t, "static origin", m["target_origin_id"], "s3-assets")
	}
	eq(t, "static paths", paths, []string{"/static/*", "/materials/*"})
	for _, o := range cf["origin"].([]any) {
		m := o.(map[string]any)
		if c := first(m["custom_origin_config"]); c != nil {
			eq(t, "origin protocol", c["origin_protocol_policy"], "https-only")
		}
	}
}
