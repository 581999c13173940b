package terraform_test

import (
	"encoding/json"
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
fleet: {health_check_type: ec2}
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
	var dropped bool
	for _, w := range warnings {
		dropped = dropped || (w.Field == "app.env.AWS_ENDPOINT_URL_S3" && w.To == "")
	}
	if !dropped {
		t.Errorf("warnings %v do not say app.env.AWS_ENDPOINT_URL_S3 is left out", warnings)
	}

	in := tfvars.FromSpec(s)
	in.Deployment = coursesInput().Deployment
	p, vars, _ := loadScenario(t, "spec-fields", in)

	eq(t, "alb idle_timeout", num(p.get(mod + "aws_lb.this")["idle_timeout"]), 120.0)
	eq(t, "asg health_check_type", p.get(mod + "aws_autoscaling_group.app")["health_check_type"], "EC2")
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
