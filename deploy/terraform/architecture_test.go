package terraform_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/haven-platform/haven/internal/posture"
	"github.com/haven-platform/haven/internal/tfvars"
)

const mod = "module.haven."

// plan is the example plan with lookups by address.
type plan struct {
	t         *testing.T
	resources map[string]map[string]any // address -> values
	types     map[string][]string       // type -> addresses (managed and data)
	config    map[string]map[string]any // module-relative address -> expressions
	dependsOn map[string][]string       // module-relative address -> depends_on
	unknown   map[string]map[string]any // address -> after_unknown (known only after apply)
	call      map[string]any            // the example's module "haven" call: argument -> expression
	variables map[string]any            // the example's input variables -> value
}

func loadPlan(t *testing.T) (*plan, tfvars.Vars) {
	t.Helper()
	raw, vars := examplePlan(t)
	return parsePlan(t, raw), vars
}

// loadScenario plans the example with in (see planScenario) and parses it.
func loadScenario(t *testing.T, name string, in tfvars.Input) (*plan, tfvars.Vars, []byte) {
	t.Helper()
	raw, vars := planScenario(t, name, in)
	return parsePlan(t, raw), vars, raw
}

func parsePlan(t *testing.T, raw []byte) *plan {
	t.Helper()
	var doc struct {
		ResourceChanges []struct {
			Address string `json:"address"`
			Change  struct {
				AfterUnknown map[string]any `json:"after_unknown"`
			} `json:"change"`
		} `json:"resource_changes"`
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
		Variables map[string]struct {
			Value any `json:"value"`
		} `json:"variables"`
		Configuration struct {
			RootModule struct {
				ModuleCalls map[string]struct {
					Expressions map[string]any `json:"expressions"`
					Module      struct {
						Resources []struct {
							Address     string         `json:"address"`
							Expressions map[string]any `json:"expressions"`
							DependsOn   []string       `json:"depends_on"`
						} `json:"resources"`
					} `json:"module"`
				} `json:"module_calls"`
			} `json:"root_module"`
		} `json:"configuration"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	p := &plan{t: t, resources: map[string]map[string]any{}, types: map[string][]string{}, config: map[string]map[string]any{}, dependsOn: map[string][]string{}, unknown: map[string]map[string]any{}}
	for _, rc := range doc.ResourceChanges {
		p.unknown[rc.Address] = rc.Change.AfterUnknown
	}
	for _, cm := range doc.PlannedValues.RootModule.ChildModules {
		for _, r := range cm.Resources {
			p.resources[r.Address] = r.Values
			p.types[r.Type] = append(p.types[r.Type], r.Address)
		}
	}
	p.call = doc.Configuration.RootModule.ModuleCalls["haven"].Expressions
	p.variables = map[string]any{}
	for k, v := range doc.Variables {
		p.variables[k] = v.Value
	}
	for _, r := range doc.Configuration.RootModule.ModuleCalls["haven"].Module.Resources {
		p.config[r.Address] = r.Expressions
		p.dependsOn[r.Address] = r.DependsOn
	}
	if len(p.resources) == 0 {
		t.Fatal("plan has no resources in module.haven")
	}
	return p
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

// depends returns the depends_on list of a module resource's configuration.
func (p *plan) depends(addr string) []string {
	return p.dependsOn[addr]
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

// ruleName is a module-relative rule address without its index.
func ruleName(addr string) string {
	rel := strings.TrimPrefix(addr, mod)
	if i := strings.Index(rel, "["); i >= 0 {
		rel = rel[:i]
	}
	return rel
}

func last(refs []string) string {
	if len(refs) == 0 {
		return ""
	}
	return refs[len(refs)-1]
}

func TestSecurityGroupChain(t *testing.T) {
	p, vars := loadPlan(t)
	for _, addr := range p.types["aws_security_group"] {
		if ing := strs(p.get(addr)["ingress"]); len(ing) != 0 {
			t.Errorf("%s has inline ingress %v; rules must be standalone and reference groups", addr, ing)
		}
	}
	// Who may reach each guarded group, and on which port. The db-logins
	// function (it creates the app's roles and rotates their secret) is the
	// only other client of the database and the endpoints.
	type src struct {
		from string
		port int
	}
	want := map[string][]src{
		"aws_security_group.app":       {{"aws_security_group.alb", vars.AppPort}},
		"aws_security_group.db":        {{"aws_security_group.app", 5432}, {"aws_security_group.db_logins", 5432}},
		"aws_security_group.endpoints": {{"aws_security_group.app", 443}, {"aws_security_group.db_logins", 443}},
		"aws_security_group.db_logins": nil,
	}
	got := map[string][]src{}
	for _, addr := range p.types["aws_vpc_security_group_ingress_rule"] {
		rel := ruleName(addr)
		owner := last(p.refs(rel, "security_group_id"))
		if owner == "" {
			t.Fatalf("%s: no security_group_id reference", addr)
		}
		if _, guarded := want[owner]; !guarded {
			continue
		}
		v := p.get(addr)
		for _, k := range []string{"cidr_ipv4", "cidr_ipv6", "prefix_list_id"} {
			if v[k] != nil {
				t.Errorf("%s: %s = %v; only a security group may reach %s", addr, k, v[k], owner)
			}
		}
		if num(v["from_port"]) != num(v["to_port"]) {
			t.Errorf("%s: port range %v-%v, want one port", addr, v["from_port"], v["to_port"])
		}
		got[owner] = append(got[owner], src{last(p.refs(rel, "referenced_security_group_id")), int(num(v["from_port"]))})
	}
	for g, w := range want {
		sort.Slice(got[g], func(i, j int) bool { return got[g][i].from < got[g][j].from })
		eq(t, g+" ingress sources", got[g], w)
	}
	// The DB group sends nothing; the app and db-logins groups only to groups
	// and the S3 gateway (NAT is off in the example).
	for _, addr := range p.types["aws_vpc_security_group_egress_rule"] {
		owner := p.refs(ruleName(addr), "security_group_id")
		if slices.Contains(owner, "aws_security_group.db") {
			t.Errorf("%s: db-sg must have no egress", addr)
		}
		if v := p.get(addr); v["cidr_ipv4"] != nil {
			t.Errorf("%s: egress to CIDR %v (NAT is off in the example)", addr, v["cidr_ipv4"])
		}
	}
}

// TestALBIngressFromCloudFrontOnly: with the edge in front (the default), the
// ALB takes HTTPS from CloudFront's origin-facing prefix list in one rule
// (the list weighs 55 of the 60 rules a group may have), and nothing from
// the internet.
func TestALBIngressFromCloudFrontOnly(t *testing.T) {
	p, vars := loadPlan(t)
	var albRules []string
	for _, addr := range p.types["aws_vpc_security_group_ingress_rule"] {
		if last(p.refs(ruleName(addr), "security_group_id")) == "aws_security_group.alb" {
			albRules = append(albRules, addr)
		}
	}
	if len(albRules) != 1 {
		t.Fatalf("alb-sg has ingress rules %v, want exactly one (a second prefix-list rule exceeds the 60-rule quota)", albRules)
	}
	v := p.get(albRules[0])
	eq(t, "alb rule prefix list", v["prefix_list_id"], vars.CloudFrontPrefixListID)
	eq(t, "alb rule cidr", v["cidr_ipv4"], nil)
	eq(t, "alb rule port", []float64{num(v["from_port"]), num(v["to_port"])}, []float64{443, 443})
	eq(t, "alb rule protocol", v["ip_protocol"], "tcp")
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
	// Deleting the database keeps its automated backups.
	eq(t, "delete_automated_backups", db["delete_automated_backups"], false)
	// Upgrades land only in the spec's maintenance window.
	eq(t, "maintenance_window", db["maintenance_window"], vars.DBMaintenanceWindow)
	eq(t, "auto_minor_version_upgrade", db["auto_minor_version_upgrade"], true)
	// The master is an administrator's login, not the app's.
	eq(t, "master username", db["username"], "haven_admin")
	eq(t, "identifier", db["identifier"], vars.Name+"-db")

	pg := p.get(mod + "aws_db_parameter_group.this")
	var forced bool
	for _, prm := range pg["parameter"].([]any) {
		m := prm.(map[string]any)
		forced = forced || (m["name"] == "rds.force_ssl" && m["value"] == "1")
	}
	if !forced {
		t.Error("parameter group does not set rds.force_ssl = 1")
	}
	master := p.get(mod + "aws_secretsmanager_secret_rotation.db_master")
	eq(t, "master rotation days", num(first(master["rotation_rules"])["automatically_after_days"]), 7.0)
}

// TestDatabaseLogsKeptForRetention: every log RDS exports goes to a log group
// the module creates first, with the spec's retention; RDS would create it
// with none.
func TestDatabaseLogsKeptForRetention(t *testing.T) {
	p, vars := loadPlan(t)
	db := p.get(mod + "aws_db_instance.this")
	exports := strs(db["enabled_cloudwatch_logs_exports"])
	if len(exports) == 0 {
		t.Fatal("the database exports no logs")
	}
	for _, e := range exports {
		lg := p.get(fmt.Sprintf("%saws_cloudwatch_log_group.rds[%q]", mod, e))
		eq(t, e+" log group name", lg["name"], fmt.Sprintf("/aws/rds/instance/%s/%s", db["identifier"], e))
		eq(t, e+" retention", num(lg["retention_in_days"]), float64(vars.LogRetentionDays))
	}
	if !slices.Contains(p.depends("aws_db_instance.this"), "aws_cloudwatch_log_group.rds") {
		t.Error("the database does not depend on its log groups: RDS could create them first, without retention")
	}
	// Every log group of the module has a retention.
	for _, addr := range p.types["aws_cloudwatch_log_group"] {
		if n := num(p.get(addr)["retention_in_days"]); n != float64(vars.LogRetentionDays) {
			t.Errorf("%s: retention_in_days %v, want %d", addr, n, vars.LogRetentionDays)
		}
	}
}

// TestDatabaseEventsToAlarmTopic: failover and maintenance events of the
// instance reach the alarm topic, whose key lets RDS and CloudWatch publish.
func TestDatabaseEventsToAlarmTopic(t *testing.T) {
	p, _ := loadPlan(t)
	sub := p.get(mod + "aws_db_event_subscription.db")
	eq(t, "source_type", sub["source_type"], "db-instance")
	cats := strs(sub["event_categories"])
	for _, c := range []string{"failover", "maintenance", "failure"} {
		if !slices.Contains(cats, c) {
			t.Errorf("event categories %v lack %q", cats, c)
		}
	}
	eq(t, "subscription enabled", sub["enabled"], true)
	eq(t, "sns_topic", p.refs("aws_db_event_subscription.db", "sns_topic"), []string{"aws_sns_topic.alarms.arn", "aws_sns_topic.alarms"})
	eq(t, "source_ids", p.refs("aws_db_event_subscription.db", "source_ids"), []string{"aws_db_instance.this.identifier", "aws_db_instance.this"})

	topic := p.get(mod + "aws_sns_topic.alarms")
	if k, _ := topic["kms_master_key_id"].(string); strings.Contains(k, "alias/aws/sns") {
		t.Errorf("alarm topic uses the AWS managed key %q: CloudWatch and RDS cannot publish to it", k)
	}
	eq(t, "topic key", p.refs("aws_sns_topic.alarms", "kms_master_key_id"), []string{"aws_kms_key.alarms.arn", "aws_kms_key.alarms"})
	eq(t, "key rotation", p.get(mod + "aws_kms_key.alarms")["enable_key_rotation"], true)
	if refs := p.refs("aws_kms_key_policy.alarms", "key_id"); !slices.Contains(refs, "aws_kms_key.alarms") {
		t.Errorf("key policy applies to %v, want aws_kms_key.alarms", refs)
	}
}

// TestAppDatabaseLogin: the app logs in with its own secret, created and
// rotated (alternating users) by the db-logins function; only that function
// reads the master secret.
func TestAppDatabaseLogin(t *testing.T) {
	p, vars := loadPlan(t)
	fn := p.get(mod + "aws_lambda_function.db_logins")
	eq(t, "function artifact", fn["s3_key"], vars.DBLoginsArtifactKey)
	eq(t, "function bucket", fn["s3_bucket"], vars.ArtifactsBucket)
	eq(t, "runtime", fn["runtime"], "provided.al2023")
	fcfg := p.config["aws_lambda_function.db_logins"]
	// The environment is known only after apply (ARNs, the DB address): check
	// what it is made of. Names and addresses, no password.
	envRefs := refsOf(first(fcfg["environment"]), "variables")
	for _, want := range []string{
		"aws_secretsmanager_secret.db_app.arn", "aws_db_instance.this.master_user_secret[0].secret_arn",
		"aws_db_instance.this.address", "var.db_username", "local.db_logins", "var.db_rotation_strategy",
	} {
		if !slices.Contains(envRefs, want) {
			t.Errorf("function environment does not use %s (uses %v)", want, envRefs)
		}
	}
	for _, r := range envRefs {
		if strings.Contains(r, "password") || strings.Contains(r, "secret_string") {
			t.Errorf("function environment carries %s", r)
		}
	}
	vpc := first(fcfg["vpc_config"])
	eq(t, "function subnets", refsOf(vpc, "subnet_ids"), []string{"aws_subnet.app"})
	eq(t, "function groups", refsOf(vpc, "security_group_ids"), []string{"aws_security_group.db_logins.id", "aws_security_group.db_logins"})

	rot := p.get(mod + "aws_secretsmanager_secret_rotation.db_app[0]")
	eq(t, "app rotation days", num(first(rot["rotation_rules"])["automatically_after_days"]), float64(vars.DBSecretRotationDays))
	eq(t, "rotation function", p.refs("aws_secretsmanager_secret_rotation.db_app", "rotation_lambda_arn"),
		[]string{"aws_lambda_function.db_logins.arn", "aws_lambda_function.db_logins"})
	eq(t, "rotated secret", p.refs("aws_secretsmanager_secret_rotation.db_app", "secret_id"),
		[]string{"aws_secretsmanager_secret.db_app.id", "aws_secretsmanager_secret.db_app"})
	if d := p.depends("aws_secretsmanager_secret_rotation.db_app"); !slices.Contains(d, "aws_lambda_invocation.db_bootstrap") {
		t.Errorf("rotation depends on %v; it must wait for the bootstrap that writes the first value", d)
	}
	perm := p.get(mod + "aws_lambda_permission.db_logins_rotation")
	eq(t, "invoker", perm["principal"], "secretsmanager.amazonaws.com")
	eq(t, "invoker source", p.refs("aws_lambda_permission.db_logins_rotation", "source_arn"),
		[]string{"aws_secretsmanager_secret.db_app.arn", "aws_secretsmanager_secret.db_app"})

	inv := p.get(mod + "aws_lambda_invocation.db_bootstrap")
	eq(t, "bootstrap input", inv["input"], `{"haven":"bootstrap"}`)
	if refs := p.refs("aws_lambda_invocation.db_bootstrap", "triggers"); !slices.Contains(refs, "aws_db_instance.this.resource_id") {
		t.Errorf("bootstrap triggers %v: a new database must rerun it", refs)
	}
	if d := p.depends("aws_autoscaling_group.app"); !slices.Contains(d, "aws_lambda_invocation.db_bootstrap") {
		t.Errorf("the fleet depends on %v; it must start after the app's roles exist", d)
	}

	// The function's role: the master secret (read) and the app secret (rotate).
	planned, config := statementsOf(p, "db_logins")
	for i, st := range planned {
		refs := refsOf(config[i], "resources")
		switch st["sid"] {
		case "ReadMasterSecret":
			eq(t, "master actions", strs(st["actions"]), []string{"secretsmanager:GetSecretValue"})
			if !slices.Contains(refs, "aws_db_instance.this.master_user_secret[0].secret_arn") {
				t.Errorf("ReadMasterSecret resources %v", refs)
			}
		case "RotateAppSecret":
			eq(t, "rotate actions", strs(st["actions"]), []string{"secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage"})
			eq(t, "rotate resources", refs, []string{"aws_secretsmanager_secret.db_app.arn", "aws_secretsmanager_secret.db_app"})
		}
	}
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
	// Instance refresh: the spec's fleet.instance_refresh (haven.yaml keeps
	// the defaults: launch before terminate, checkpoints 50 and 100, a
	// 10 s bake, auto rollback on the 5xx and healthy-hosts alarms).
	ir := first(asg["instance_refresh"])
	eq(t, "strategy", ir["strategy"], "Rolling")
	prefs := first(ir["preferences"])
	spr := in.InstanceRefresh
	eq(t, "min_healthy_percentage", num(prefs["min_healthy_percentage"]), float64(spr.MinHealthy))
	eq(t, "max_healthy_percentage", num(prefs["max_healthy_percentage"]), 200.0)
	eq(t, "checkpoint_percentages", fmt.Sprint(prefs["checkpoint_percentages"]), "[50 100]")
	eq(t, "checkpoint_delay", prefs["checkpoint_delay"], fmt.Sprint(spr.Bake.Seconds()))
	eq(t, "instance_warmup", prefs["instance_warmup"], "0")
	eq(t, "auto_rollback", prefs["auto_rollback"], true)
	eq(t, "refresh alarms", fmt.Sprint(strs(first(prefs["alarm_specification"])["alarms"])),
		fmt.Sprint([]string{in.Name + "-alb-5xx-rate", in.Name + "-healthy-hosts-below-min"}))
	// Every alarm the refresh can be told to watch is one alarms.tf creates
	// under that name (compute.tf builds the names from var.name).
	alarmNames := map[string]bool{}
	for _, addr := range p.types["aws_cloudwatch_metric_alarm"] {
		alarmNames[fmt.Sprint(p.get(addr)["alarm_name"])] = true
	}
	for _, a := range tfvars.RefreshAlarms {
		if !alarmNames[in.Name+"-"+a] {
			t.Errorf("rollback_on %s: the module creates no alarm %s-%s for the refresh to watch (alarms %v)", a, in.Name, a, alarmNames)
		}
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
	p, _ := loadPlan(t)
	eq(t, "role policy source", p.refs("aws_iam_role_policy.app", "policy"),
		[]string{"data.aws_iam_policy_document.app.json", "data.aws_iam_policy_document.app"})
	planned, config := statementsOf(p, "app")
	var secrets []string
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
		eq(t, "secret actions", acts, []string{"secretsmanager:GetSecretValue"})
		eq(t, "secret resources count", len(st["resources"].([]any)), 1)
		refs := refsOf(config[i], "resources")
		for _, r := range refs {
			if strings.Contains(r, "master_user_secret") {
				t.Errorf("statement %v lets the app read the RDS master secret (%s)", st["sid"], r)
			}
		}
		secrets = append(secrets, refs[0])
	}
	// Its own database login and the URL-signing key; nothing else.
	sort.Strings(secrets)
	eq(t, "secrets the app reads", secrets, []string{"aws_secretsmanager_secret.db_app.arn", "aws_secretsmanager_secret.signing_key.arn"})
	// Materials: Get/Put on the materials prefix only.
	for i, st := range planned {
		if st["sid"] == "ReadWriteMaterials" {
			eq(t, "materials actions", strs(st["actions"]), []string{"s3:GetObject", "s3:PutObject"})
			eq(t, "materials refs", refsOf(config[i], "resources"), []string{"aws_s3_bucket.assets.arn", "aws_s3_bucket.assets", "var.materials_prefix"})
		}
	}
	var attached []string
	for _, a := range p.types["aws_iam_role_policy_attachment"] {
		if slices.Contains(p.refs(strings.TrimPrefix(a, mod), "role"), "aws_iam_role.app") {
			attached = append(attached, p.get(a)["policy_arn"].(string))
		}
	}
	sort.Strings(attached)
	eq(t, "managed policies", attached, []string{
		"arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
		"arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy",
	})
}

// TestNoAWSQueriesAtPlanTime: the plan reads no data source that calls AWS.
// The CloudFront prefix list is looked up only when its ID is not given;
// the example gives it.
func TestNoAWSQueriesAtPlanTime(t *testing.T) {
	p, _ := loadPlan(t)
	offline := map[string]bool{"aws_iam_policy_document": true, "aws_elb_service_account": true}
	for addr := range p.resources {
		rel := strings.TrimPrefix(addr, mod)
		if strings.HasPrefix(rel, "data.") {
			if typ := strings.Split(rel, ".")[1]; !offline[typ] {
				t.Errorf("%s: data source may query AWS at plan time", addr)
			}
		}
	}
	for addr := range p.config {
		if strings.HasPrefix(addr, "data.") {
			typ := strings.Split(addr, ".")[1]
			if !offline[typ] && typ != "aws_ec2_managed_prefix_list" {
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
			eq(t, "origin TLS", strs(c["origin_ssl_protocols"]), []string{"TLSv1.2"})
		}
	}
}

// TestOriginNameOnTheCertificate: CloudFront reaches the ALB by
// origin_domain_name, a name the ALB certificate can cover, never by the
// ALB's AWS DNS name.
func TestOriginNameOnTheCertificate(t *testing.T) {
	p, vars := loadPlan(t)
	cf := p.get(mod + "aws_cloudfront_distribution.this")
	var custom []string
	for _, o := range cf["origin"].([]any) {
		m := o.(map[string]any)
		if first(m["custom_origin_config"]) != nil {
			custom = append(custom, m["domain_name"].(string))
		}
	}
	eq(t, "ALB origin", custom, []string{vars.OriginDomainName})
	for _, o := range p.config["aws_cloudfront_distribution.this"]["origin"].([]any) {
		if refs := refsOf(o.(map[string]any), "domain_name"); slices.Contains(refs, "aws_lb.this.dns_name") {
			t.Errorf("an origin uses the ALB's AWS DNS name %v: no certificate of yours covers it", refs)
		}
	}
}

// TestViewerTLS: viewers need TLS 1.2 (policy TLSv1.2_2021) on the site's own
// names and certificate; the *.cloudfront.net certificate would allow TLS 1.0.
func TestViewerTLS(t *testing.T) {
	p, vars := loadPlan(t)
	cf := p.get(mod + "aws_cloudfront_distribution.this")
	vc := first(cf["viewer_certificate"])
	eq(t, "minimum_protocol_version", vc["minimum_protocol_version"], "TLSv1.2_2021")
	eq(t, "cloudfront_default_certificate", vc["cloudfront_default_certificate"], false)
	eq(t, "acm_certificate_arn", vc["acm_certificate_arn"], vars.CloudFrontCertificateARN)
	eq(t, "ssl_support_method", vc["ssl_support_method"], "sni-only")
	eq(t, "aliases", strs(cf["aliases"]), vars.CloudFrontAliases)
}

// TestSignedMaterials: /materials/* is served only with a URL signed by the
// trusted key group holding the given public key; /static/* is public.
func TestSignedMaterials(t *testing.T) {
	p, vars := loadPlan(t)
	key := p.get(mod + "aws_cloudfront_public_key.materials")
	eq(t, "public key", key["encoded_key"], strings.TrimSpace(vars.MaterialsSigningPublicKey)+"\n")
	eq(t, "key group items", p.refs("aws_cloudfront_key_group.materials", "items"),
		[]string{"aws_cloudfront_public_key.materials.id", "aws_cloudfront_public_key.materials"})
	// The key group's ID is known only after apply, so a signed behaviour's
	// trusted_key_groups is pending in the plan; an unsigned one is empty.
	cf := p.get(mod + "aws_cloudfront_distribution.this")
	pending := anyList(p.unknown[mod+"aws_cloudfront_distribution.this"]["ordered_cache_behavior"])
	for i, b := range anyList(cf["ordered_cache_behavior"]) {
		signed := i < len(pending) && pending[i]["trusted_key_groups"] == true
		switch b["path_pattern"] {
		case "/materials/*":
			if !signed {
				t.Errorf("/materials/* has no trusted key group: anyone could read course materials")
			}
		case "/static/*":
			if signed || len(strs(b["trusted_key_groups"])) != 0 {
				t.Errorf("/static/* requires signed URLs")
			}
		}
	}
	// The app gets the private key from a secret only it reads (see
	// TestInstanceRoleReadsOnlyItsSecret), never from a variable.
	if _, ok := p.resources[mod+"aws_secretsmanager_secret.signing_key"]; !ok {
		t.Error("no secret for the signing private key")
	}
}

func anyList(v any) []map[string]any {
	l, _ := v.([]any)
	var out []map[string]any
	for _, e := range l {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// TestFlowLogs: every flow in the VPC is logged to the logs bucket, whose
// policy lets only this account's log delivery write there.
func TestFlowLogs(t *testing.T) {
	p, vars := loadPlan(t)
	fl := p.get(mod + "aws_flow_log.vpc")
	eq(t, "traffic_type", fl["traffic_type"], "ALL")
	eq(t, "destination type", fl["log_destination_type"], "s3")
	eq(t, "flow log vpc", p.refs("aws_flow_log.vpc", "vpc_id"), []string{"aws_vpc.this.id", "aws_vpc.this"})
	if refs := p.refs("aws_flow_log.vpc", "log_destination"); !slices.Contains(refs, "aws_s3_bucket.logs") {
		t.Errorf("flow log destination references %v, want the logs bucket", refs)
	}
	planned, _ := statementsOf(p, "logs")
	var sids []string
	for _, st := range planned {
		sids = append(sids, st["sid"].(string))
		if strings.HasPrefix(st["sid"].(string), "FlowLogDelivery") {
			pr := first(st["principals"])
			eq(t, "flow log principal", strs(pr["identifiers"]), []string{"delivery.logs.amazonaws.com"})
			if len(anyList(st["condition"])) == 0 {
				t.Errorf("%s has no aws:SourceAccount condition", st["sid"])
			}
		}
	}
	for _, want := range []string{"FlowLogDeliveryWrite", "FlowLogDeliveryAclCheck"} {
		if !slices.Contains(sids, want) {
			t.Errorf("logs bucket policy lacks %s (has %v)", want, sids)
		}
	}
	lc := p.get(mod + "aws_s3_bucket_lifecycle_configuration.logs")
	eq(t, "logs expire after", num(first(first(lc["rule"])["expiration"])["days"]), float64(vars.LogRetentionDays))
}

// zoneScenario is the example with a Route 53 zone and no certificate ARN:
// the module requests the ALB certificate and writes every record.
func zoneScenario() tfvars.Input {
	in := coursesInput()
	in.Deployment.CertificateARN = ""
	in.Deployment.DomainName = "admin.courses.example.edu"
	in.Deployment.Route53ZoneID = "Z0123456789ABCDEFGHIJ"
	in.Deployment.CloudFrontAliases = []string{"courses.example.edu", "www.courses.example.edu"}
	return in
}

// TestRoute53AndRequestedCertificate: given a zone, the requested ALB
// certificate covers origin_domain_name (first) and domain_name, each name
// gets its validation record, origin_domain_name is an alias of the ALB, and
// each CloudFront alias an A and AAAA alias of the distribution.
func TestRoute53AndRequestedCertificate(t *testing.T) {
	p, vars, _ := loadScenario(t, "zone", zoneScenario())
	cert := p.get(mod + "aws_acm_certificate.this[0]")
	eq(t, "certificate name", cert["domain_name"], vars.OriginDomainName)
	sans := strs(cert["subject_alternative_names"])
	sort.Strings(sans)
	eq(t, "certificate names", sans, []string{vars.DomainName, vars.OriginDomainName})
	eq(t, "validation", cert["validation_method"], "DNS")
	for _, n := range []string{vars.OriginDomainName, vars.DomainName} {
		r := p.get(fmt.Sprintf("%saws_route53_record.certificate_validation[%q]", mod, n))
		eq(t, n+" validation zone", r["zone_id"], vars.Route53ZoneID)
	}
	eq(t, "listener certificate", p.refs("aws_lb_listener.https", "certificate_arn"), []string{"local.listener_certificate_arn"})
	if _, ok := p.resources[mod+"aws_acm_certificate_validation.this[0]"]; !ok {
		t.Error("no certificate validation: the listener could get an unvalidated certificate")
	}

	origin := p.get(mod + "aws_route53_record.origin[0]")
	eq(t, "origin record", []any{origin["name"], origin["type"], origin["zone_id"]}, []any{vars.OriginDomainName, "A", vars.Route53ZoneID})
	alias := first(p.config["aws_route53_record.origin"]["alias"])
	if refs := refsOf(alias, "name"); !slices.Contains(refs, "aws_lb.this.dns_name") {
		t.Errorf("origin record points at %v, want the ALB", refs)
	}
	var records []string
	for _, a := range p.types["aws_route53_record"] {
		if strings.Contains(a, "aws_route53_record.cloudfront[") {
			v := p.get(a)
			records = append(records, fmt.Sprint(v["name"], " ", v["type"]))
		}
	}
	sort.Strings(records)
	eq(t, "alias records", records, []string{"courses.example.edu A", "courses.example.edu AAAA", "www.courses.example.edu A", "www.courses.example.edu AAAA"})
}

// TestInternetIngressIsFlagged: alb_ingress = "internet" opens 80 and 443 to
// the world, and `haven audit plan` says the edge can be bypassed.
func TestInternetIngressIsFlagged(t *testing.T) {
	in := coursesInput()
	in.Deployment.ALBIngress = "internet"
	in.Deployment.CloudFrontPrefixListID = ""
	p, _, raw := loadScenario(t, "internet", in)
	var ports []float64
	for _, addr := range p.types["aws_vpc_security_group_ingress_rule"] {
		if last(p.refs(ruleName(addr), "security_group_id")) == "aws_security_group.alb" {
			v := p.get(addr)
			eq(t, addr+" cidr", v["cidr_ipv4"], "0.0.0.0/0")
			ports = append(ports, num(v["from_port"]))
		}
	}
	sort.Float64s(ports)
	eq(t, "alb ports", ports, []float64{80, 443})
	if _, ok := p.resources[mod+"data.aws_ec2_managed_prefix_list.cloudfront[0]"]; ok {
		t.Error("the prefix list is looked up although the ALB is open to the internet")
	}
	findings, err := posture.Audit(raw)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range findings {
		got = append(got, f.RuleID+" "+f.Resource)
	}
	eq(t, "findings", got, []string{
		`HAVEN-AWS-018 module.haven.aws_vpc_security_group_ingress_rule.alb_internet["http"]`,
		`HAVEN-AWS-018 module.haven.aws_vpc_security_group_ingress_rule.alb_internet["https"]`,
	})
}

// TestExtraSecurityGroupRules: haven.yaml's security_groups, exported by
// `haven aws tfvars`, become rules of the seed's groups in the plan, one
// per rule, with its group, direction, protocol, ports and peer; the
// seed's rules stay as they are.
func TestExtraSecurityGroupRules(t *testing.T) {
	in := coursesInput()
	in.SecurityGroupRules = []tfvars.SecurityGroupRule{
		{Group: "app-sg", Direction: "ingress", FromPort: 9100, CIDR: "10.20.0.0/16", Description: "Metrics from the monitoring network"},
		{Group: "app-sg", Direction: "egress", Protocol: "udp", FromPort: 8125, PeerGroup: "vpce-sg", Description: "StatsD to an interface endpoint"},
		{Group: "db-sg", Direction: "ingress", FromPort: 5432, PeerGroup: "alb-sg", Description: "Example: a second client group"},
	}
	p, vars, _ := loadScenario(t, "security-groups", in)
	if len(vars.ExtraSecurityGroupRules) != 3 {
		t.Fatalf("tfvars carry %d extra rules, want 3", len(vars.ExtraSecurityGroupRules))
	}
	want := map[string]map[string]any{
		mod + `aws_vpc_security_group_ingress_rule.extra["app-sg ingress tcp 9100-9100 10.20.0.0/16"]`: {"ip_protocol": "tcp", "from_port": 9100.0, "to_port": 9100.0, "cidr_ipv4": "10.20.0.0/16", "description": "Metrics from the monitoring network"},
		mod + `aws_vpc_security_group_egress_rule.extra["app-sg egress udp 8125-8125 vpce-sg"]`:        {"ip_protocol": "udp", "from_port": 8125.0, "to_port": 8125.0, "cidr_ipv4": nil, "description": "StatsD to an interface endpoint"},
		mod + `aws_vpc_security_group_ingress_rule.extra["db-sg ingress tcp 5432-5432 alb-sg"]`:        {"ip_protocol": "tcp", "from_port": 5432.0, "to_port": 5432.0, "cidr_ipv4": nil, "description": "Example: a second client group"},
	}
	for addr, attrs := range want {
		v := p.get(addr)
		for k, w := range attrs {
			eq(t, addr+" "+k, v[k], w)
		}
		// A group peer is the referenced group's id, known after apply.
		if attrs["cidr_ipv4"] == nil && p.unknown[addr]["referenced_security_group_id"] != true {
			t.Errorf("%s: referenced_security_group_id is not another group's id", addr)
		}
	}
	extras := 0
	for _, kind := range []string{"ingress", "egress"} {
		for _, addr := range p.types["aws_vpc_security_group_"+kind+"_rule"] {
			if strings.HasPrefix(ruleName(addr), "aws_vpc_security_group_"+kind+"_rule.extra") {
				extras++
			}
		}
	}
	eq(t, "extra rules in the plan", extras, 3)
	base, _ := loadPlan(t)
	eq(t, "seed's ingress rules", len(p.types["aws_vpc_security_group_ingress_rule"])-2, len(base.types["aws_vpc_security_group_ingress_rule"]))
}
