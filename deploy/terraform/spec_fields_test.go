package terraform_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/haven-platform/haven/internal/spec"
	"github.com/haven-platform/haven/internal/tfvars"
)

// TestEveryVariableReachesTheModule: each variable `haven aws tfvars` can
// write is declared by examples/courses and passed on to the module under
// the same name, so no exported spec field stops at the example.
func TestEveryVariableReachesTheModule(t *testing.T) {
	p, _ := loadPlan(t)
	declared := variablesIn(t, "examples/courses")
	module := variablesIn(t, ".")
	vt := reflect.TypeOf(tfvars.Vars{})
	for i := 0; i < vt.NumField(); i++ {
		name := strings.Split(vt.Field(i).Tag.Get("json"), ",")[0]
		if !slices.Contains(declared, name) {
			t.Errorf("tfvars writes %s, which examples/courses does not declare: terraform would refuse the tfvars file", name)
			continue
		}
		if !slices.Contains(module, name) {
			t.Errorf("tfvars writes %s, which the module does not declare", name)
			continue
		}
		if refs := refsOf(p.call, name); !slices.Contains(refs, "var."+name) {
			t.Errorf("examples/courses passes %s to the module as %v, want var.%s: the spec's value would stop at the example", name, refs, name)
		}
	}
}

// specFieldsYAML sets the fields `haven aws tfvars` used to drop or change
// (issue 16) to values other than their defaults.
const specFieldsYAML = `
name: lms
app:
  command: [courses]
  env: {COURSES_THEME: dark, AWS_ENDPOINT_URL_S3: "http://127.0.0.1:9000"}
fleet:
  health_check_type: ec2
  instance_refresh:
    min_healthy_percentage: 20
    max_healthy_percentage: 150
    checkpoints: [25, 100]
    bake: 5m
    instance_warmup: 30s
    rollback_on: [target-p99-latency, db-failover]
    auto_rollback: false
load_balancer: {idle_timeout: 120s}
database: {name: lms_db, user: lms_app}
secrets: {db: {rotation: 0}}
`

// TestSpecFieldsPlanned plans the example with that spec and finds each
// value where AWS takes it: the ALB's idle timeout, the ASG's health check
// type, the database name, the owner role, the app's environment and
// arguments, and no rotation schedule for rotation 0.
func TestSpecFieldsPlanned(t *testing.T) {
	s, err := spec.Parse([]byte(specFieldsYAML), "spec-fields.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, warnings, err := tfvars.GenerateSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	var dropped, raised, noAlarm bool
	for _, w := range warnings {
		dropped = dropped || (w.Field == "app.env.AWS_ENDPOINT_URL_S3" && w.To == "")
		raised = raised || (w.Field == "fleet.instance_refresh.min_healthy_percentage" && w.To == "50")
		noAlarm = noAlarm || (w.Field == "fleet.instance_refresh.rollback_on" && w.From == "db-failover" && w.To == "")
	}
	if !dropped {
		t.Errorf("warnings %v do not say app.env.AWS_ENDPOINT_URL_S3 is left out", warnings)
	}
	if !raised || !noAlarm {
		t.Errorf("warnings %v do not say min_healthy_percentage 20 becomes 50 (AWS: at most 100 below max 150) and db-failover is no alarm on AWS", warnings)
	}

	in := tfvars.FromSpec(s)
	in.Deployment = coursesInput().Deployment
	p, vars, _ := loadScenario(t, "spec-fields", in)

	eq(t, "alb idle_timeout", num(p.get(mod + "aws_lb.this")["idle_timeout"]), 120.0)
	asg := p.get(mod + "aws_autoscaling_group.app")
	eq(t, "asg health_check_type", asg["health_check_type"], "EC2")
	// fleet.instance_refresh, as AWS takes it.
	prefs := first(first(asg["instance_refresh"])["preferences"])
	for name, want := range map[string]any{
		"min_healthy_percentage": 50.0, "max_healthy_percentage": 150.0, "checkpoint_percentages": "[25 100]",
		"checkpoint_delay": "300", "instance_warmup": "30", "auto_rollback": false,
		"alarms": "[lms-alb-5xx-rate lms-healthy-hosts-below-min lms-target-p99-latency]",
	} {
		got := prefs[name]
		switch name {
		case "checkpoint_percentages":
			got = fmt.Sprint(got)
		case "alarms":
			got = fmt.Sprint(strs(first(prefs["alarm_specification"])["alarms"]))
		}
		eq(t, "instance_refresh "+name, got, want)
	}
	eq(t, "db_name", p.get(mod + "aws_db_instance.this")["db_name"], "lms_db")
	// The db-logins function's environment is known only after apply; it is
	// built from var.db_username (TestAppDatabaseLogin), which the example
	// passes on (TestEveryVariableReachesTheModule).
	eq(t, "owner role", p.variables["db_username"], "lms_app")

	for _, addr := range p.types["aws_secretsmanager_secret_rotation"] {
		if strings.Contains(addr, "db_app") {
			t.Errorf("%s planned although secrets.db.rotation is 0 (off)", addr)
		}
	}
	if _, ok := p.resources[mod+"aws_secretsmanager_secret_rotation.db_master"]; !ok {
		t.Error("the master secret's rotation (RDS-managed, not the spec's) disappeared with the app's")
	}

	env, _ := json.Marshal(p.variables["app_environment"])
	eq(t, "app_environment", string(env), `{"COURSES_THEME":"dark"}`)
	args, _ := json.Marshal(p.variables["app_command"])
	eq(t, "app_command (a program alone runs without arguments)", string(args), `[]`)
	eq(t, "vars app_command", vars.AppCommand != nil && len(*vars.AppCommand) == 0, true)
}

// TestInstanceRefreshVariableRefused: a module user who writes
// instance_refresh by hand gets AWS's rules at plan, naming the field
// (haven aws tfvars never writes these: it raises min and drops unknown
// alarms with a warning, and the spec refuses the rest).
func TestInstanceRefreshVariableRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		ir   map[string]any
		want string
	}{
		{"min and max too far apart", map[string]any{"min_healthy_percentage": 50, "max_healthy_percentage": 200}, "at most 100 apart"},
		{"checkpoints not ending at 100", map[string]any{"checkpoint_percentages": []int{50, 90}}, "ending at 100"},
		{"an alarm the module lacks", map[string]any{"rollback_alarms": []string{"db-failover"}}, "names an alarm the module does not create"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireSetup(t)
			res := runPlan(t, "refresh-bad-"+strings.ReplaceAll(tc.name, " ", "-"), coursesInput(), map[string]any{"instance_refresh": tc.ir})
			if res.err == nil || !strings.Contains(strings.Join(strings.Fields(res.err.Error()), " "), tc.want) {
				t.Errorf("plan error = %v, want %q", res.err, tc.want)
			}
		})
	}
}
