package spec

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestStarterParsesAndMatchesRepoSpec(t *testing.T) {
	s, err := Parse(Starter, "starter.yaml")
	if err != nil {
		t.Fatalf("starter spec: %v", err)
	}
	if s.Fleet.Min != 2 || s.Fleet.Max != 12 || len(s.Fleet.Scaling) != 3 {
		t.Fatalf("starter fleet = %+v", s.Fleet)
	}
	if got, want := s.Database.Name, "courses"; got != want {
		t.Errorf("database.name = %q, want %q", got, want)
	}
	if got := s.AWS.AvailabilityZones; !reflect.DeepEqual(got, []string{"eu-west-1a", "eu-west-1b"}) {
		t.Errorf("aws.availability_zones = %v", got)
	}
	repo, err := os.ReadFile("../../haven.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(repo) != string(Starter) {
		t.Errorf("haven.yaml differs from internal/spec/starter.yaml; copy one onto the other")
	}
}

func TestEmptySpecIsDefault(t *testing.T) {
	for _, in := range []string{"", "# nothing\n", "~\n"} {
		s, err := Parse([]byte(in), "")
		if err != nil {
			t.Fatalf("Parse(%q): %v", in, err)
		}
		want := Default()
		want.fillDerived()
		if !reflect.DeepEqual(s, want) {
			t.Errorf("Parse(%q) = %+v, want defaults", in, s)
		}
	}
}

func TestPartialMappingKeepsDefaults(t *testing.T) {
	s, err := Parse([]byte("app:\n  health_check: {interval: 2s}\nfleet: {max: 20}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.App.HealthCheck.Interval.D(); got != 2*time.Second {
		t.Errorf("interval = %v", got)
	}
	if got := s.App.HealthCheck.Path; got != "/healthz" {
		t.Errorf("path lost its default: %q", got)
	}
	if s.Fleet.Max != 20 || s.Fleet.Min != 2 || s.App.Port != 8080 {
		t.Errorf("fleet = %+v port=%d", s.Fleet, s.App.Port)
	}
}

func TestInvalidSpecsNameTheField(t *testing.T) {
	tests := []struct {
		name, in, field, line, msg string
	}{
		{"max below min", "fleet:\n  min: 2\n  max: 1\n  desired: 1\n", "fleet.max", ":3:", "must be ≥ fleet.min (2), got 1"},
		{"unknown field", "fleet:\n  mni: 2\n", "fleet.mni", ":2:", "unknown field"},
		{"unknown top", "nmae: x\n", "nmae", ":1:", "unknown field"},
		{"wrong type", "fleet:\n  max: ten\n", "fleet.max", ":2:", "must be a whole number"},
		{"bad duration", "app:\n  health_check:\n    interval: fast\n", "app.health_check.interval", ":3:", "invalid duration"},
		{"timeout >= interval", "app:\n  health_check: {interval: 1s, timeout: 2s}\n", "app.health_check.timeout", ":2:", "shorter than"},
		{"bad algorithm", "load_balancer: {algorithm: random}\n", "load_balancer.algorithm", ":1:", "round_robin"},
		{"bad cron", "fleet:\n  scaling:\n    - {scheduled: x, cron: \"61 * * * *\", min: 1}\n", "fleet.scaling[0].cron", ":3:", "minute"},
		{"missing cron", "fleet:\n  scaling:\n    - {scheduled: x, min: 1}\n", "fleet.scaling[0].cron", ":3:", "is required"},
		{"bad backup cron", "database: {backup_schedule: \"@every 1h\"}\n", "database.backup_schedule", ":1:", "descriptors"},
		{"secret in env", "app:\n  env:\n    DB_PASSWORD: hunter2\n", "app.env.DB_PASSWORD", ":3:", "credential"},
		{"one zone", "zones: [a]\n", "zones", ":1:", "exactly two"},
		{"bad matcher", "app: {health_check: {matcher: \"600\"}}\n", "app.health_check.matcher", ":1:", "200–499"},
		{"bad yaml", "fleet: [\n", "", ":", "invalid YAML"},
		{"list for map", "fleet: [1, 2]\n", "fleet", ":1:", "must be a mapping"},
		{"bad durability", "database: {durability: maybe}\n", "database.durability", ":1:", "preferred"},
		{"retention", "database: {backup_retention: 40d}\n", "database.backup_retention", ":1:", "1d to 35d"},
		{"two docs", "name: a\n---\nname: b\n", "", ":", "more than one YAML document"},
		// Issue 10: bad scaling input names the field.
		{"cpu target above 100", "fleet:\n  scaling:\n    - {target_tracking: cpu, target: 120}\n", "fleet.scaling[0].target", ":3:", "at most 100"},
		{"cpu target 0", "fleet:\n  scaling:\n    - {target_tracking: cpu, target: 0}\n", "fleet.scaling[0].target", ":3:", "above 0"},
		{"cpu target NaN", "fleet:\n  scaling:\n    - {target_tracking: cpu, target: .nan}\n", "fleet.scaling[0].target", ":3:", "must be a finite number"},
		{"request target NaN", "fleet:\n  scaling:\n    - {target_tracking: request_count, target: .nan}\n", "fleet.scaling[0].target", ":3:", "must be a finite number"},
		{"instance cpu NaN", "app:\n  instance: {cpu: .nan}\n", "app.instance.cpu", ":2:", "must be a finite number"},
		{"negative warmup", "fleet:\n  scaling:\n    - {target_tracking: cpu, target: 50, warmup: -5s}\n", "fleet.scaling[0].warmup", ":3:", "from 0 to 1h"},
		{"unknown time zone", "fleet:\n  scaling:\n    - {scheduled: x, cron: \"0 7 * * *\", time_zone: Mars/Olympus, min: 1}\n", "fleet.scaling[0].time_zone", ":3:", "IANA"},
		{"scheduled min above max", "fleet:\n  scaling:\n    - {scheduled: x, cron: \"0 7 * * *\", min: 6, max: 4}\n", "fleet.scaling[0].max", ":3:", "must be ≥ min (6), got 4"},
		{"scheduled min above fleet max", "fleet:\n  max: 5\n  scaling:\n    - {scheduled: x, cron: \"0 7 * * *\", min: 6}\n", "fleet.scaling[0].min", ":4:", "fleet.max (5)"},
		{"end before start", "fleet:\n  scaling:\n    - {scheduled: x, cron: \"0 7 * * *\", min: 1, start: 2026-12-05, end: 2026-11-30}\n", "fleet.scaling[0].end", ":3:", "after start"},
		{"bad start", "fleet:\n  scaling:\n    - {scheduled: x, cron: \"0 7 * * *\", min: 1, start: monday}\n", "fleet.scaling[0].start", ":3:", "RFC 3339"},
		{"start on target tracking", "fleet:\n  scaling:\n    - {target_tracking: cpu, target: 50, start: 2026-11-30}\n", "fleet.scaling[0]", ":3:", "belong to scheduled actions"},
		{"time scale below 1", "time_scale: 0.5\n", "time_scale", ":1:", "from 1"},
		{"time scale NaN", "time_scale: .nan\n", "time_scale", ":1:", "must be a finite number"},
		// The same meaning on both targets: an ALB refuses slow start with
		// least outstanding requests, so the local LB must not do it either.
		{"slow start with lor", "load_balancer: {algorithm: least_outstanding_requests, slow_start: 30s}\n", "load_balancer.slow_start", ":1:", "an ALB does not combine them"},
		// <user>_a and <user>_b must stay two names within PostgreSQL's 63 bytes.
		{"user too long", "database: {user: " + strings.Repeat("u", 62) + "}\n", "database.user", ":1:", "at most 61 characters"},
		{"user pg_", "database: {user: pg_app}\n", "database.user", ":1:", "pg_*"},
		// HOST and PORT come from the platform on both targets; a spec value was ignored.
		{"platform env", "app:\n  env:\n    HOST: 0.0.0.0\n", "app.env.HOST", ":3:", "set by the platform"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in), "h.yaml")
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want *spec.Error", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.field) || !strings.Contains(msg, tt.msg) || !strings.Contains(msg, "h.yaml"+tt.line) {
				t.Errorf("error %q does not contain field %q, line %q and %q", msg, tt.field, tt.line, tt.msg)
			}
		})
	}
}

func TestScheduledStartEndResolveInTheTimeZone(t *testing.T) {
	s, err := Parse([]byte(`fleet:
  scaling:
    - {scheduled: exam, cron: "0 7 * * MON-FRI", time_zone: Europe/Dublin, min: 6, start: 2026-06-01, end: "2026-06-06T00:00:00+01:00"}
`), "")
	if err != nil {
		t.Fatal(err)
	}
	p := s.Fleet.Scaling[0]
	// Midnight in Dublin in June (IST, UTC+1) is 23:00 UTC the day before.
	if got, want := p.Start.T().UTC(), time.Date(2026, 5, 31, 23, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("start = %s, want %s", got, want)
	}
	if got, want := p.End.T().UTC(), time.Date(2026, 6, 5, 23, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("end = %s, want %s", got, want)
	}
	if s.TimeScale != 1 {
		t.Errorf("time_scale default = %g, want 1", s.TimeScale)
	}
}

func TestTargetTrackingWarmupDefaultsToAWS(t *testing.T) {
	s, err := Parse([]byte("fleet:\n  scaling:\n    - {target_tracking: cpu, target: 50}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Fleet.Scaling[0].Warmup.D(); got != 300*time.Second {
		t.Errorf("warmup default = %s, want 300s", got)
	}
}

func TestDurationAndSize(t *testing.T) {
	for in, want := range map[string]time.Duration{"7d": 7 * 24 * time.Hour, "500ms": 500 * time.Millisecond, "1h30m": 90 * time.Minute} {
		d, err := ParseDuration(in)
		if err != nil || d.D() != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, d, err, want)
		}
	}
	for in, want := range map[string]int64{"256MiB": 256 << 20, "1GiB": 1 << 30, "1024": 1024, "1.5GiB": 3 << 29} {
		b, err := ParseByteSize(in)
		if err != nil || int64(b) != want {
			t.Errorf("ParseByteSize(%q) = %v, %v; want %d", in, b, err, want)
		}
	}
	if _, err := ParseByteSize("-1"); err == nil {
		t.Error("ParseByteSize(-1) succeeded")
	}
}

func TestParseMatcher(t *testing.T) {
	tests := []struct {
		in      string
		pass    []int
		fail    []int
		wantErr bool
	}{
		{in: "200", pass: []int{200}, fail: []int{201, 302, 500}},
		{in: "200-399", pass: []int{200, 204, 301, 399}, fail: []int{400, 500, 199}},
		{in: "200,204, 300-302", pass: []int{200, 204, 300, 302}, fail: []int{201, 303}},
		{in: "199", wantErr: true},
		{in: "200-500", wantErr: true},
		{in: "300-200", wantErr: true},
		{in: "ok", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		m, err := ParseMatcher(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseMatcher(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		for _, c := range tt.pass {
			if !m.Match(c) {
				t.Errorf("ParseMatcher(%q)(%d) = false, want true", tt.in, c)
			}
		}
		for _, c := range tt.fail {
			if m.Match(c) {
				t.Errorf("ParseMatcher(%q)(%d) = true, want false", tt.in, c)
			}
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Starter)
	f.Add([]byte("fleet: {min: 3, max: 2}\n"))
	f.Add([]byte("app: {health_check: {interval: 7d}}\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data, "fuzz.yaml")
		if err != nil {
			var se *Error
			if !errors.As(err, &se) || len(se.Problems) == 0 {
				t.Fatalf("error is not a *spec.Error with problems: %v", err)
			}
			return
		}
		if ps := s.Validate(); len(ps) != 0 {
			t.Fatalf("Parse accepted a spec that fails Validate: %v", ps)
		}
	})
}

// TestExamSpikeProfile: the exam-spike drill's documented profile
// (docs/scaling.md) parses and is what the docs say it is.
func TestExamSpikeProfile(t *testing.T) {
	s, err := LoadFile("../../examples/exam-spike.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tt := s.Fleet.Scaling[0]
	if s.App.Instance.CPU != 0.05 || s.TimeScale != 20 || s.Fleet.HealthCheckType != "ec2" || s.Fleet.Min != 2 || s.Fleet.Max != 12 ||
		tt.TargetTracking != "cpu" || tt.Target != 50 || tt.Warmup.D() != 120*time.Second {
		t.Errorf("profile = cpu %g, time_scale %g, %s health, min %d max %d, policy %+v", s.App.Instance.CPU, s.TimeScale, s.Fleet.HealthCheckType, s.Fleet.Min, s.Fleet.Max, tt)
	}
	repo, err := Parse(Starter, "haven.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if repo.LoadBalancer.HTTPS == s.LoadBalancer.HTTPS || repo.Database.Endpoint == s.Database.Endpoint || repo.Secrets.Listen == s.Secrets.Listen || repo.App.Port == s.App.Port {
		t.Error("examples/exam-spike.yaml shares a port with haven.yaml; both regions must run side by side")
	}
}
