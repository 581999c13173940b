package plan

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/spec"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func base(t *testing.T) spec.Spec {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "base.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := spec.Parse(data, "base.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// cases are the acceptance list and the refusals, each one spec edit.
var cases = []struct {
	name   string
	edit   func(s *spec.Spec)
	action Action // of every change; "" for no change
}{
	{"unchanged", func(*spec.Spec) {}, ""},
	{"fleet-max", func(s *spec.Spec) { s.Fleet.Max = 16 }, InPlace},
	{"scaling-target", func(s *spec.Spec) { s.Fleet.Scaling[0].Target = 60 }, InPlace},
	{"health-check-interval", func(s *spec.Spec) { s.App.HealthCheck.Interval = spec.Duration(2e9) }, InPlace},
	{"deregistration-delay", func(s *spec.Spec) { s.LoadBalancer.DeregistrationDelay = spec.Duration(10e9) }, InPlace},
	{"instance-refresh", func(s *spec.Spec) { s.Fleet.InstanceRefresh.MinHealthyPercentage = 50 }, InPlace},
	{"idle-timeout", func(s *spec.Spec) { s.LoadBalancer.IdleTimeout = spec.Duration(30e9) }, InPlace},
	{"instance-size", func(s *spec.Spec) { s.App.Instance.CPU = 0.5; s.App.Instance.Memory = 512 << 20 }, Rolling},
	{"app-env", func(s *spec.Spec) { s.App.Env = map[string]string{"FEATURE_GRADEBOOK": "on at last"} }, Rolling},
	{"alarm-threshold", func(s *spec.Spec) { s.Alarms.Thresholds.P99LatencySeconds = 0.5; s.TimeScale = 30 }, InPlace},
	{"metrics-listen", func(s *spec.Spec) { s.Metrics.Listen = "127.0.0.1:9465" }, Refused},
	{"database-version", func(s *spec.Spec) { s.Database.Version = 16 }, Refused},
	{"database-endpoint", func(s *spec.Spec) { s.Database.Endpoint = "127.0.0.1:10432" }, Restart},
	{"zones", func(s *spec.Spec) {
		s.Zones = []string{"a", "c"}
		s.AWS.AvailabilityZones = []string{"eu-west-1a", "eu-west-1c"}
	}, Refused},
	{"name", func(s *spec.Spec) { s.Name = "lms" }, Refused},
	{"objstore-max-upload", func(s *spec.Spec) { s.ObjStore.MaxUpload = 1 << 30 }, Refused},
	{"edge-behaviour-ttl", func(s *spec.Spec) { d := spec.Duration(3600e9); s.Edge.Behaviors[0].MaxTTL = &d }, Refused},
}

// TestPlanGolden renders each case's plan as text and as JSON and compares
// them with testdata/<case>.golden (go test -update rewrites them).
func TestPlanGolden(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			old := base(t)
			next := base(t)
			tc.edit(&next)
			p := Diff(old, Live{Capacity: &Capacity{Min: 2, Desired: 3, Max: 12}}, next)
			for _, c := range p.Changes {
				if c.Action != tc.action {
					t.Errorf("%s: action %s, want %s", c.Field, c.Action, tc.action)
				}
			}
			if (tc.action == "") != p.Empty() {
				t.Errorf("empty plan %v, want %v", p.Empty(), tc.action == "")
			}
			js, err := json.MarshalIndent(p, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got := p.Text() + "----- json -----\n" + string(js) + "\n"
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test ./internal/plan -update writes it)", err)
			}
			if got != string(want) {
				t.Errorf("plan differs from %s (go test -update rewrites it after review):\ngot:\n%s", path, got)
			}
		})
	}
}

// TestEveryFieldHasARule walks every leaf field of a spec that sets every
// optional part, so a field added to the spec without a rule fails here.
func TestEveryFieldHasARule(t *testing.T) {
	s := base(t)
	s.App.Env = map[string]string{"X": "1"}
	s.Edge.Listen = "127.0.0.1:9443"
	s.SecurityGroups = []spec.SecurityGroup{{Name: "app-sg"}}
	fields := Flatten(s)
	if len(fields) < 40 {
		t.Fatalf("flattened %d fields; the walk lost some", len(fields))
	}
	for f := range fields {
		if !Covered(f) {
			t.Errorf("%s: no rule in plan.rules says how a running region takes a change of it", f)
		}
	}
	// And the struct has no field the JSON walk cannot see.
	var walk func(t reflect.Type, path string)
	walk = func(ty reflect.Type, path string) {
		for i := range ty.NumField() {
			f := ty.Field(i)
			name := strings.Split(f.Tag.Get("json"), ",")[0]
			if name == "" || name == "-" {
				t.Errorf("%s.%s has no JSON name: plan cannot see it", path, f.Name)
				continue
			}
			p := strings.TrimPrefix(path+"."+name, ".")
			if f.Type.Kind() == reflect.Struct && f.Type.NumField() > 0 && f.Type.Field(0).IsExported() {
				walk(f.Type, p)
			} else if !Covered(p) && !strings.HasPrefix(p, "app.env") {
				t.Errorf("%s: no rule", p)
			}
		}
	}
	walk(reflect.TypeOf(spec.Spec{}), "")
}

func TestHashIgnoresCommentsAndDefaults(t *testing.T) {
	a, err := spec.Parse([]byte("name: courses\n"), "a.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, err := spec.Parse([]byte("# a comment\nname: courses\nfleet: {min: 2, max: 12}\n"), "b.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if Hash(a) != Hash(b) {
		t.Errorf("hash %s != %s for the same spec", Hash(a), Hash(b))
	}
	c := b
	c.Fleet.Max = 13
	if Hash(c) == Hash(b) {
		t.Error("a changed max kept the hash")
	}
	if len(Hash(a)) != 12 {
		t.Errorf("hash %q: want 12 hex digits", Hash(a))
	}
}

func TestRefusedErrorNamesFieldReasonAndWayOut(t *testing.T) {
	old := base(t)
	next := base(t)
	next.Database.Version = 16
	next.Fleet.Max = 20
	err := Diff(old, Live{}, next).RefusedError()
	if err == nil {
		t.Fatal("no error for a refused change")
	}
	for _, want := range []string{"database.version", "15 → 16", "pg_upgrade", "keep version 15", "untouched"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "fleet.max") {
		t.Errorf("error names an allowed change: %v", err)
	}
}

// TestRecordRoundTrip stores a spec and reads it back to the same hash,
// and resolves an unfinished journal by the spec up starts.
func TestRecordRoundTrip(t *testing.T) {
	st := Store{Dir: t.TempDir()}
	if _, _, ok, err := st.Record(); ok || err != nil {
		t.Fatalf("empty store: ok %v err %v", ok, err)
	}
	s := base(t)
	s.App.Env = map[string]string{"A": "b c"}
	rec, err := st.SaveRecord(s, "up", time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	got, sp, ok, err := st.Record()
	if err != nil || !ok {
		t.Fatalf("record: ok %v err %v", ok, err)
	}
	if got.Hash != rec.Hash || Hash(sp) != Hash(s) {
		t.Errorf("hash %s / %s after a round trip, want %s", got.Hash, Hash(sp), Hash(s))
	}
	j := Journal{From: "old", To: "new"}
	if !j.Unfinished() {
		t.Error("a journal without an outcome is finished")
	}
	for started, want := range map[string]string{"new": OutcomeCompletedByUp, "old": OutcomeRevertedByUp, "third": OutcomeSupersededByUp} {
		if got := Resolve(j, started); got != want {
			t.Errorf("Resolve(%s) = %s, want %s", started, got, want)
		}
	}
	if err := st.SaveJournal(j); err != nil {
		t.Fatal(err)
	}
	if jj, ok, err := st.Journal(); err != nil || !ok || jj.To != "new" {
		t.Errorf("journal %+v ok %v err %v", jj, ok, err)
	}
}
