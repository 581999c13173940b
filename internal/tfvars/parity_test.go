package tfvars

import (
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/parity"
	"github.com/haven-platform/haven/internal/spec"
)

// deploy runs the real `haven aws tfvars` generation on a haven.yaml
// document and returns the variables as JSON values, and the warnings.
func deploy(t *testing.T, doc string) (map[string]any, []Warning) {
	t.Helper()
	s, err := spec.Parse([]byte(doc), "test.yaml")
	if err != nil {
		t.Fatalf("spec %q: %v", doc, err)
	}
	return deploySpec(t, s)
}

func deploySpec(t *testing.T, s spec.Spec) (map[string]any, []Warning) {
	t.Helper()
	v, ws, err := GenerateSpec(s)
	if err != nil {
		t.Fatalf("GenerateSpec: %v", err)
	}
	b, err := v.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m, ws
}

// lookup follows a variable path such as "health_check.interval" or
// "target_tracking[].warmup" (element i) into the tfvars JSON.
func lookup(m map[string]any, path string, i int) (any, bool) {
	var cur any = m
	for _, seg := range strings.Split(path, ".") {
		list := strings.HasSuffix(seg, "[]")
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		cur, ok = obj[strings.TrimSuffix(seg, "[]")]
		if !ok {
			return nil, false
		}
		if list {
			l, ok := cur.([]any)
			if !ok || i >= len(l) {
				return nil, false
			}
			cur = l[i]
		}
	}
	return cur, true
}

func decode(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("JSON %q: %v", s, err)
	}
	return v
}

func warnedAbout(ws []Warning, path string) bool {
	for _, w := range ws {
		if normalize(w.Field) == path || strings.HasPrefix(normalize(w.Field), path+".") {
			return true
		}
	}
	return false
}

var index = regexp.MustCompile(`\[\d+\]`)

// normalize turns "fleet.scaling[2].warmup" into "fleet.scaling[].warmup".
func normalize(field string) string { return index.ReplaceAllString(field, "[]") }

func defaultVars(t *testing.T) (map[string]any, []Warning) {
	return deploy(t, "")
}

// TestExportedFieldsReachTheirVariables sets every exported field to its
// non-default example value, runs the real generation, and finds the value
// (after clamping) in the field's variable, where the default spec has
// another.
func TestExportedFieldsReachTheirVariables(t *testing.T) {
	base, _ := defaultVars(t)
	n := 0
	for _, f := range parity.Fields {
		if f.Kind != parity.Exported {
			continue
		}
		n++
		t.Run(f.Path, func(t *testing.T) {
			m, _ := deploy(t, f.Example)
			got, ok := lookup(m, f.Variable, 0)
			if !ok {
				t.Fatalf("variable %s missing from the tfvars of %q", f.Variable, f.Example)
			}
			if want := decode(t, f.Want); !reflect.DeepEqual(got, want) {
				t.Errorf("%s = %s, want %s (from %q)", f.Variable, jsonOf(got), f.Want, f.Example)
			}
			if was, ok := lookup(base, f.Variable, 0); ok && reflect.DeepEqual(was, got) {
				t.Errorf("%s is %s for the default spec too: the example does not show the field reaches it", f.Variable, jsonOf(got))
			}
		})
	}
	if n < 30 {
		t.Fatalf("only %d exported fields", n)
	}
}

func jsonOf(v any) string { b, _ := json.Marshal(v); return string(b) }

// TestUnexportedFieldsChangeNoVariable: a local-only field changes no
// variable and warns about nothing; a not-on-AWS field changes no variable
// and gets a warning naming it.
func TestUnexportedFieldsChangeNoVariable(t *testing.T) {
	base, baseWarnings := defaultVars(t)
	for _, f := range parity.Fields {
		if f.Kind != parity.LocalOnly && f.Kind != parity.NotOnAWS {
			continue
		}
		t.Run(f.Path, func(t *testing.T) {
			m, ws := deploy(t, f.Example)
			if !reflect.DeepEqual(m, base) {
				t.Errorf("%s (%s) changed the variables:\n%s\nvs the default's\n%s", f.Path, f.Kind, jsonOf(m), jsonOf(base))
			}
			extra := ws[min(len(baseWarnings), len(ws)):]
			switch f.Kind {
			case parity.LocalOnly:
				if len(ws) != len(baseWarnings) {
					t.Errorf("local-only %s warned: %v", f.Path, extra)
				}
			case parity.NotOnAWS:
				// One warning names the field (or the one covering it,
				// parity.Field.WarnedBy); others only for fields of the
				// same section the example sets too.
				want := f.Path
				if f.WarnedBy != "" {
					want = f.WarnedBy
				}
				section, _, _ := strings.Cut(f.Path, ".")
				named := 0
				for _, w := range extra {
					switch {
					case w.Field == want && w.Reason == f.Reason && strings.Contains(w.String(), "is not deployed to AWS"):
						named++
					case !strings.HasPrefix(w.Field, section+"."):
						t.Errorf("%s set: unrelated warning %v", f.Path, w)
					}
				}
				if named != 1 {
					t.Errorf("%s set: warnings %v, want one naming %s", f.Path, extra, want)
				}
			}
		})
	}
}

// listKeys names, for each list variable, the spec field that says which
// fleet.scaling elements become its elements.
var listKeys = map[string]string{
	"target_tracking":   "fleet.scaling[].target_tracking",
	"scheduled_actions": "fleet.scaling[].scheduled",
	"static_paths":      "edge.behaviors[].path", // every behaviour of these specs targets a bucket
	"signed_paths":      "edge.behaviors[].signed",
}

// hostileYAML is valid locally and outside AWS's ranges almost everywhere.
const hostileYAML = `
app:
  health_check: {interval: 1500ms, timeout: 100ms, healthy: 1, unhealthy: 1}
fleet:
  grace_period: 2500ms
  scaling:
    - {scheduled: nightly, cron: "@daily", min: 1}
    - {target_tracking: cpu, target: 50, warmup: 1500ms}
load_balancer: {deregistration_delay: 1500ms, slow_start: 10s, idle_timeout: 1500ms}
database: {backup_retention: 36h}
secrets: {db: {rotation: 12h}}
aws: {log_retention: 100d}
`

// TestEveryExportedFieldFoundOrWarned: for the repository's haven.yaml, a
// spec outside AWS's ranges, and every example, each exported value is in
// its variable (in the variable's unit) or a warning names the field.
func TestEveryExportedFieldFoundOrWarned(t *testing.T) {
	repo, err := os.ReadFile("../../haven.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string]string{"haven.yaml": string(repo), "hostile": hostileYAML}
	for _, f := range parity.Fields {
		if f.Kind == parity.Exported {
			docs["example of "+f.Path] = f.Example
		}
	}
	checked := 0
	for name, doc := range docs {
		s, err := spec.Parse([]byte(doc), name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		m, ws := deploySpec(t, s)
		for _, f := range parity.Fields {
			if f.Kind != parity.Exported {
				continue
			}
			if strings.HasPrefix(f.Path, "security_groups[]") {
				continue // one element per group × rule: TestSecurityGroupRulesFromSpec checks them
			}
			conv, ok := conversion(t, f)
			if !ok {
				continue // a mapping (zones → azs, ec2 → EC2): TestExportedFieldsReachTheirVariables checks it
			}
			vals := parity.Values(s, f.Path)
			idx := []int{0}
			if list, _, isList := strings.Cut(f.Variable, "[]"); isList {
				key, ok := listKeys[list]
				if !ok {
					t.Fatalf("list variable %s: add the spec field that selects its elements to listKeys", list)
				}
				idx = nil
				for i, k := range parity.Values(s, key) {
					if !reflect.ValueOf(k).IsZero() {
						idx = append(idx, i)
					}
				}
			}
			for j, i := range idx {
				want := conv(vals[i])
				got, _ := lookup(m, f.Variable, j)
				checked++
				if !reflect.DeepEqual(got, want) && !warnedAbout(ws, f.Path) {
					t.Errorf("%s: %s = %s, not the spec's %s, and no warning names %s", name, f.Variable, jsonOf(got), jsonOf(want), f.Path)
				}
			}
		}
	}
	if checked < 100 {
		t.Fatalf("checked only %d values", checked)
	}
}

// conversion returns how an exported field's spec value shows in its
// variable, learned from its example: durations become whole units (the
// example's value over Want: seconds or days), other values stay as they
// are. ok is false for a field the module takes in another form.
func conversion(t *testing.T, f parity.Field) (func(any) any, bool) {
	s, err := spec.Parse([]byte(f.Example), "")
	if err != nil {
		t.Fatal(err)
	}
	v := parity.Values(s, f.Path)
	want := decode(t, f.Want)
	if d, isDur := v[0].(spec.Duration); isDur {
		n, isNum := want.(float64)
		if !isNum || n == 0 {
			return nil, false
		}
		unit := time.Duration(float64(d) / n)
		return func(x any) any {
			return float64(x.(spec.Duration)) / float64(unit)
		}, true
	}
	same := func(x any) any { return decode(t, jsonOf(x)) }
	if reflect.DeepEqual(same(v[0]), want) {
		return same, true
	}
	return nil, false
}

// TestInputFieldsNameExportedSpecFields: every spec field a warning or a
// problem can name through SpecField is one parity marks exported.
func TestInputFieldsNameExportedSpecFields(t *testing.T) {
	for in, path := range specFields {
		f, ok := parity.FieldByPath(path)
		if !ok || f.Kind != parity.Exported {
			t.Errorf("Input.%s maps to %s, which parity does not mark exported", in, path)
		}
	}
	it := reflect.TypeOf(Input{})
	for i := 0; i < it.NumField(); i++ {
		n := it.Field(i).Name
		if n == "Deployment" || n == "HealthCheck" || n == "TargetTracking" || n == "Scheduled" || n == "InstanceRefresh" {
			continue
		}
		if _, ok := specFields[n]; !ok {
			t.Errorf("Input.%s has no spec field in specFields: its warnings would name the Go field", n)
		}
	}
}

// regressions are the mismatches of issue 16, each with the variable it
// must reach (or the warning it must give) and the old behaviour.
func TestIssue16Regressions(t *testing.T) {
	tests := []struct {
		name, doc    string
		variable     string
		want         string // JSON value of variable; "" when a warning is wanted
		warnField    string
		notInWarning string
	}{
		{name: "app.env was dropped", doc: "app: {env: {COURSES_THEME: dark}}", variable: "app_environment", want: `{"COURSES_THEME":"dark"}`},
		{name: "load_balancer.idle_timeout was dropped", doc: "load_balancer: {idle_timeout: 300s}", variable: "alb_idle_timeout", want: `300`},
		{name: "database.name was dropped", doc: "database: {name: lms}", variable: "db_name", want: `"lms"`},
		{name: "database.user was dropped", doc: "database: {user: lms_owner}", variable: "db_username", want: `"lms_owner"`},
		{name: "database.name defaults to the region name, not the module's app", doc: "name: my-lms", variable: "db_name", want: `"my_lms"`},
		{name: "fleet.health_check_type ec2 became ELB", doc: "fleet: {health_check_type: ec2}", variable: "health_check_type", want: `"EC2"`},
		{name: "secrets.db.rotation 0 became 7 days", doc: "secrets: {db: {rotation: 0s}}", variable: "db_secret_rotation_days", want: `0`},
		{name: "a program alone ran with the module's serve", doc: "app: {command: [myapp]}", variable: "app_command", want: `[]`},
		{name: "an endpoint override is left out with a warning", doc: "app: {env: {AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:9000', A: b}}", variable: "app_environment", want: `{"A":"b"}`, warnField: "app.env.AWS_ENDPOINT_URL_S3"},
		{name: "app.release was dropped silently", doc: "app: {release: [courses, migrate]}", warnField: "app.release"},
		{name: "database.durability required was dropped silently", doc: "database: {durability: required}", warnField: "database.durability"},
		{name: "an edge TTL (edge.default_ttl before the behaviours) is not dropped silently", doc: "edge: {behaviors: [{path: /static/*, target: courses-assets, default_ttl: 1h}]}", warnField: "edge.behaviors[].default_ttl"},
		{name: "database.backup_schedule was dropped silently", doc: "database: {backup_schedule: '0 1 * * *'}", warnField: "database.backup_schedule"},
		{name: "idle timeout rounds up with a warning", doc: "load_balancer: {idle_timeout: 1500ms}", variable: "alb_idle_timeout", want: `2`, warnField: "load_balancer.idle_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, ws := deploy(t, tt.doc)
			if tt.variable != "" {
				got, ok := lookup(m, tt.variable, 0)
				if !ok || !reflect.DeepEqual(got, decode(t, tt.want)) {
					t.Errorf("%s = %s (present %v), want %s", tt.variable, jsonOf(got), ok, tt.want)
				}
			}
			if tt.warnField != "" && !slices.ContainsFunc(ws, func(w Warning) bool { return w.Field == tt.warnField }) {
				t.Errorf("warnings %v do not name %s", ws, tt.warnField)
			}
		})
	}
}

// TestAWSRefusalsNameTheLimit: values the local region takes but AWS does
// not are problems naming the spec field and the limit, which is what
// `haven validate` warns about.
func TestAWSRefusalsNameTheLimit(t *testing.T) {
	tests := []struct {
		doc, field, limit string
	}{
		{"name: " + strings.Repeat("a", 21), "name", "at most 20 characters"},
		{"name: " + strings.Repeat("b", 32), "name", "(32 characters)"},
		{"name: a--b", "name", "two in a row"},
		{"name: ab-", "name", "must not end with a hyphen"},
		{"database: {name: _lms}", "database.name", "RDS takes a letter"},
		{"database: {user: haven_admin}", "database.user", "the master is haven_admin"},
		{"database: {user: rdsadmin}", "database.user", "already has"},
	}
	for _, tt := range tests {
		s, err := spec.Parse([]byte(tt.doc), "")
		if err != nil {
			t.Fatalf("%q is not valid locally: %v", tt.doc, err)
		}
		_, _, err = GenerateSpec(s)
		var e *Error
		if !asError(err, &e) || len(e.Problems) != 1 || e.Problems[0].Field != tt.field || !strings.Contains(e.Problems[0].Msg, tt.limit) {
			t.Errorf("%q: %v, want one problem naming %s and %q", tt.doc, err, tt.field, tt.limit)
		}
	}
	// Up to 20 characters deploys.
	s, _ := spec.Parse([]byte("name: "+strings.Repeat("c", 20)), "")
	if _, _, err := GenerateSpec(s); err != nil {
		t.Errorf("a 20-character name: %v", err)
	}
}

func asError(err error, e **Error) bool {
	x, ok := err.(*Error)
	if ok {
		*e = x
	}
	return ok
}

func TestGenerateSpecNamesSpecFields(t *testing.T) {
	_, ws := deploy(t, hostileYAML)
	var got []string
	for _, w := range ws {
		got = append(got, w.Field)
		if _, err := strconv.Atoi(w.Field); err == nil || strings.ContainsAny(w.Field[:1], "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
			t.Errorf("warning names a Go field: %v", w)
		}
		if _, ok := parity.FieldByPath(normalize(w.Field)); !ok {
			t.Errorf("warning names %q, which parity does not classify", w.Field)
		}
	}
	for _, want := range []string{"app.health_check.interval", "fleet.scaling[1].warmup", "secrets.db.rotation", "load_balancer.idle_timeout"} {
		if !slices.Contains(got, want) {
			t.Errorf("warnings %v lack %s", got, want)
		}
	}
}

// TestSecurityGroupRulesFromSpec: each rule of the spec's security_groups
// is one element of extra_security_group_rules, in order (a group's
// ingress rules, then its egress rules), with every field mapped:
// protocol tcp and to_port = port by default, a group or a CIDR as peer.
func TestSecurityGroupRulesFromSpec(t *testing.T) {
	m, _ := deploy(t, `security_groups:
  - name: app-sg
    ingress: [{port: 9100, to_port: 9110, cidr: 10.20.0.0/16, description: metrics}]
    egress: [{protocol: udp, port: 8125, group: vpce-sg}]
  - name: db-sg
    ingress: [{port: 5432, group: alb-sg}]
`)
	want := `[{"cidr_ipv4":"10.20.0.0/16","description":"metrics","direction":"ingress","from_port":9100,"group":"app-sg","peer_group":null,"protocol":"tcp","to_port":9110},` +
		`{"cidr_ipv4":null,"description":"","direction":"egress","from_port":8125,"group":"app-sg","peer_group":"vpce-sg","protocol":"udp","to_port":8125},` +
		`{"cidr_ipv4":null,"description":"","direction":"ingress","from_port":5432,"group":"db-sg","peer_group":"alb-sg","protocol":"tcp","to_port":5432}]`
	if got := jsonOf(m["extra_security_group_rules"]); got != want {
		t.Errorf("extra_security_group_rules =\n%s\nwant\n%s", got, want)
	}
	if d, _ := defaultVars(t); d["extra_security_group_rules"] != nil {
		t.Errorf("the default spec exports extra rules: %s", jsonOf(d["extra_security_group_rules"]))
	}
}
