package tfvars

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/spec"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func intp(n int) *int { return &n }

// coursesInput mirrors the spec sketch in ARCHITECTURE.md: local timings that
// are faster than AWS allows.
func coursesInput() Input {
	return Input{
		Name:            "courses",
		Region:          "eu-west-1",
		AZs:             AZNames("eu-west-1", []string{"a", "b"}),
		InstanceType:    "t4g.small",
		DBInstanceClass: "db.t4g.medium",
		AppPort:         8080,
		AppCommand:      []string{"serve"},
		HealthCheck: HealthCheck{
			Path: "/healthz", Interval: time.Second, Timeout: 500 * time.Millisecond,
			Healthy: 2, Unhealthy: 2,
		},
		Min: 2, Max: 12, Desired: 2,
		GracePeriod:         10 * time.Second,
		DeregistrationDelay: 5 * time.Second,
		Algorithm:           "least_outstanding_requests",
		TargetTracking: []TargetTracking{
			{Metric: "cpu", Target: 50, Warmup: 120 * time.Second},
			{Metric: "request_count", Target: 1000, Warmup: 120 * time.Second},
		},
		Scheduled: []Scheduled{
			{Name: "exam-morning", Cron: spec.MustCron("0 7 * * 1-5"), TimeZone: "Europe/Dublin", Min: intp(6)},
			{Name: "exam-evening", Cron: spec.MustCron("0 19 * * 1-5"), Min: intp(2), Max: intp(12),
				Start: time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC), End: time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)},
		},
		MultiAZ:           true,
		BackupRetention:   7 * day,
		BackupWindow:      "02:00-02:30",
		MaintenanceWindow: "sun:04:00-sun:05:00",
		Rotation:          7 * day,
		RotationStrategy:  "alternating_users",
		LogRetention:      90 * day,
		StaticPaths:       []string{"/static/*", "/materials/*"},
	}
}

// testPublicKey is shaped like a PEM public key; tfvars checks only the
// shape (Terraform plan tests use a real generated key).
const testPublicKey = `-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEWmDbJ3Sa5DwGDK5NHU1Q7dnnK5qX
9sQ1ZpQ0uN9oRbqXrL2QyYQm3o6n9i2v0o9hJ8c0tqYyZ3w4l2cS0t1bEw==
-----END PUBLIC KEY-----`

// repoSpecInput is the Input generated from the repository's haven.yaml, the
// same file `haven up` uses.
func repoSpecInput() Input {
	s, err := spec.LoadFile("../../haven.yaml")
	if err != nil {
		panic(err)
	}
	return FromSpec(s)
}

func goldenCases() map[string]Input {
	defaults := Input{
		Name: "shop", Region: "us-east-1", AZs: []string{"us-east-1a", "us-east-1b", "us-east-1c"},
		AppPort: 3000, Min: 1, Max: 3, Desired: 1, MultiAZ: true, BackupRetention: 14 * day,
	}

	clamped := coursesInput()
	clamped.Algorithm = "round_robin"
	clamped.HealthCheck = HealthCheck{Path: "/up", Interval: 10 * time.Minute, Timeout: 3 * time.Minute, Healthy: 1, Unhealthy: 20, Matcher: spec.MustMatcher("200-299")}
	clamped.DeregistrationDelay = 2 * time.Hour
	clamped.SlowStart = 10 * time.Second
	clamped.GracePeriod = 1500 * time.Millisecond
	clamped.TargetTracking = []TargetTracking{{Metric: "cpu", Target: 40, Warmup: 2500 * time.Millisecond}}
	clamped.BackupRetention = 0
	clamped.Rotation = 12 * time.Hour
	clamped.RotationStrategy = "single_user"
	clamped.LogRetention = 100 * day
	clamped.MaintenanceWindow = "wed:22:00-wed:23:00"
	clamped.Deployment = Deployment{
		AMI: "ami-0123456789abcdef0", ArtifactsBucket: "artifacts", ArtifactKey: "courses/v1/courses",
		DBLoginsArtifactKey: "haven/v1/rds-logins.zip",
		CertificateARN:      "arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-000000000000",
		OriginDomainName:    "origin.courses.example.edu", CloudFrontAliases: []string{"courses.example.edu"},
		CloudFrontCertificateARN: "arn:aws:acm:us-east-1:123456789012:certificate/11111111-1111-1111-1111-111111111111",
		Route53ZoneID:            "Z0123456789ABCDEFGHIJ", ALBIngress: "cloudfront", CloudFrontPrefixListID: "pl-4fa04526",
		SigningPublicKey: testPublicKey,
	}

	timeoutAtInterval := defaults
	timeoutAtInterval.HealthCheck = HealthCheck{Interval: 5 * time.Second, Timeout: 6 * time.Second}
	timeoutAtInterval.BackupRetention = 90 * day

	slowLOR := defaults
	slowLOR.Algorithm = "least_outstanding_requests"
	slowLOR.SlowStart = time.Minute

	return map[string]Input{
		"haven-yaml":          repoSpecInput(),
		"courses":             coursesInput(),
		"aws-defaults":        defaults,
		"clamped":             clamped,
		"timeout-at-interval": timeoutAtInterval,
		"slow-start-lor":      slowLOR,
	}
}

func render(t *testing.T, in Input) []byte {
	t.Helper()
	vars, warnings, err := Generate(in)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	out, err := vars.JSON()
	if err != nil {
		t.Fatalf("JSON: %v", err)
	}
	var b bytes.Buffer
	b.Write(out)
	b.WriteString("-- warnings --\n")
	for _, w := range warnings {
		fmt.Fprintln(&b, w.String())
	}
	return b.Bytes()
}

func TestGolden(t *testing.T) {
	for name, in := range goldenCases() {
		t.Run(name, func(t *testing.T) {
			got := render(t, in)
			path := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden (run go test ./internal/tfvars -update to create it): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s (rerun with -update if intended)\ngot:\n%s\nwant:\n%s", path, got, want)
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	in := coursesInput()
	first := render(t, in)
	for i := 0; i < 20; i++ {
		if got := render(t, in); !bytes.Equal(got, first) {
			t.Fatalf("run %d differs:\n%s\nvs\n%s", i, got, first)
		}
	}
	// Keys are sorted at every level.
	vars, _, _ := Generate(in)
	out, _ := vars.JSON()
	if !bytes.Contains(out, []byte("{\n  \"app_command\"")) {
		t.Errorf("first key is not app_command; keys not sorted?\n%s", out)
	}
}

// TestNumbersCarriedOrWarned is acceptance criterion 4 at the tfvars level:
// every number of the input reaches the tfvars unchanged, or a warning names
// the field that changed.
func TestNumbersCarriedOrWarned(t *testing.T) {
	for name, in := range goldenCases() {
		t.Run(name, func(t *testing.T) {
			vars, warnings, err := Generate(in)
			if err != nil {
				t.Fatal(err)
			}
			warned := map[string]bool{}
			for _, w := range warnings {
				warned[w.Field] = true
			}
			secs := func(d, def time.Duration) int {
				if d == 0 {
					d = def
				}
				return int(d / time.Second)
			}
			orDefault := func(n, def int) int {
				if n == 0 {
					return def
				}
				return n
			}
			type pair struct {
				field     string
				want, got any
			}
			pairs := []pair{
				{"Min", in.Min, vars.MinSize},
				{"Max", in.Max, vars.MaxSize},
				{"Desired", in.Desired, vars.DesiredCapacity},
				{"GracePeriod", secs(in.GracePeriod, 0), vars.HealthCheckGracePeriod},
				{"HealthCheck.Interval", secs(in.HealthCheck.Interval, 30*time.Second), vars.HealthCheck.Interval},
				{"HealthCheck.Timeout", secs(in.HealthCheck.Timeout, 5*time.Second), vars.HealthCheck.Timeout},
				{"HealthCheck.Healthy", orDefault(in.HealthCheck.Healthy, 5), vars.HealthCheck.HealthyThreshold},
				{"HealthCheck.Unhealthy", orDefault(in.HealthCheck.Unhealthy, 2), vars.HealthCheck.UnhealthyThreshold},
				{"DeregistrationDelay", secs(in.DeregistrationDelay, 0), vars.DeregistrationDelay},
				{"SlowStart", secs(in.SlowStart, 0), vars.SlowStart},
				{"BackupRetention", int(in.BackupRetention / day), vars.DBBackupRetentionPeriod},
				{"MultiAZ", in.MultiAZ, vars.DBMultiAZ},
			}
			if in.Rotation != 0 {
				pairs = append(pairs, pair{"Rotation", int(in.Rotation / day), vars.DBSecretRotationDays})
			}
			if in.LogRetention != 0 {
				pairs = append(pairs, pair{"LogRetention", int(in.LogRetention / day), vars.LogRetentionDays})
			}
			if len(vars.TargetTracking) != len(in.TargetTracking) {
				t.Fatalf("target tracking: got %d policies, want %d", len(vars.TargetTracking), len(in.TargetTracking))
			}
			for i, tt := range in.TargetTracking {
				f := fmt.Sprintf("TargetTracking[%d]", i)
				pairs = append(pairs,
					pair{f + ".Metric", tt.Metric, vars.TargetTracking[i].Metric},
					pair{f + ".Target", tt.Target, vars.TargetTracking[i].Target},
					pair{f + ".Warmup", secs(tt.Warmup, 0), vars.TargetTracking[i].Warmup})
			}
			if len(vars.ScheduledActions) != len(in.Scheduled) {
				t.Fatalf("scheduled: got %d actions, want %d", len(vars.ScheduledActions), len(in.Scheduled))
			}
			deref := func(p *int) any {
				if p == nil {
					return nil
				}
				return *p
			}
			for i, s := range in.Scheduled {
				f := fmt.Sprintf("Scheduled[%d]", i)
				sv := vars.ScheduledActions[i]
				pairs = append(pairs,
					pair{f + ".Cron", s.Cron.Fields(), sv.Recurrence},
					pair{f + ".Min", deref(s.Min), deref(sv.MinSize)},
					pair{f + ".Max", deref(s.Max), deref(sv.MaxSize)},
					pair{f + ".Desired", deref(s.Desired), deref(sv.DesiredCapacity)})
			}
			for _, p := range pairs {
				if p.want != p.got && !warned[p.field] {
					t.Errorf("%s: input %v became %v without a warning", p.field, p.want, p.got)
				}
				if p.want == p.got && warned[p.field] && !isRounding(p.field, warnings) && !isAdvice(p.field, warnings) {
					t.Errorf("%s: warned although the value %v is unchanged", p.field, p.got)
				}
			}
		})
	}
}

// isRounding reports whether the warning on field is a rounding one (the
// truncated input in the pair table can then equal the output).
func isRounding(field string, ws []Warning) bool {
	for _, w := range ws {
		if w.Field == field && strings.Contains(w.Reason, "rounded up") {
			return true
		}
	}
	return false
}

// isAdvice reports whether the warning on field keeps the value as written
// (advice, such as a short warmup, rather than a change).
func isAdvice(field string, ws []Warning) bool {
	for _, w := range ws {
		if w.Field == field && w.From == w.To {
			return true
		}
	}
	return false
}

// TestShortWarmupWarns: a warmup under 60 s is exported as written, with a
// warning that names the policy; 60 s and more is not warned about.
func TestShortWarmupWarns(t *testing.T) {
	in := coursesInput()
	in.TargetTracking = []TargetTracking{
		{Metric: "cpu", Target: 50, Warmup: 30 * time.Second},
		{Metric: "request_count", Target: 1000, Warmup: 60 * time.Second},
	}
	vars, warnings, err := Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	if vars.TargetTracking[0].Warmup != 30 || vars.TargetTracking[1].Warmup != 60 {
		t.Errorf("warmups exported as %d and %d, want 30 and 60 (unscaled)", vars.TargetTracking[0].Warmup, vars.TargetTracking[1].Warmup)
	}
	var got []string
	for _, w := range warnings {
		if strings.HasSuffix(w.Field, ".Warmup") {
			got = append(got, w.String())
		}
	}
	if len(got) != 1 || !strings.HasPrefix(got[0], "TargetTracking[0].Warmup: 30s is kept in target_tracking[0].warmup") || !strings.Contains(got[0], "under 60 s") {
		t.Errorf("warmup warnings = %q, want one for TargetTracking[0] saying it is kept and why", got)
	}
}

// TestScheduledStartEndExported: start and end bound the action on AWS too,
// in UTC as aws_autoscaling_schedule takes them.
func TestScheduledStartEndExported(t *testing.T) {
	in := coursesInput()
	dublin, err := time.LoadLocation("Europe/Dublin")
	if err != nil {
		t.Fatal(err)
	}
	in.Scheduled[0].Start = time.Date(2026, 6, 1, 0, 0, 0, 0, dublin)
	vars, _, err := Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	sv := vars.ScheduledActions[0]
	if sv.StartTime == nil || *sv.StartTime != "2026-05-31T23:00:00Z" || sv.EndTime != nil {
		t.Errorf("start/end = %v/%v, want 2026-05-31T23:00:00Z and none", deref(sv.StartTime), deref(sv.EndTime))
	}
	in.Scheduled[0].End = in.Scheduled[0].Start
	if _, _, err := Generate(in); err == nil || !strings.Contains(err.Error(), "Scheduled[0].End") {
		t.Errorf("end = start: err %v, want one naming Scheduled[0].End", err)
	}
}

func deref(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return *p
}

func TestClampWarnings(t *testing.T) {
	in := coursesInput()
	_, warnings, err := Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"HealthCheck.Interval": "5s",
		"HealthCheck.Timeout":  "2s",
	}
	if len(warnings) != len(want) {
		t.Fatalf("got %d warnings %v, want %d", len(warnings), warnings, len(want))
	}
	for _, w := range warnings {
		if want[w.Field] != w.To {
			t.Errorf("warning %v: want To %q", w, want[w.Field])
		}
	}
}

func TestErrorsNameTheField(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Input)
		field  string
	}{
		{"bad name", func(in *Input) { in.Name = "Courses_App" }, "Name"},
		{"bad region", func(in *Input) { in.Region = "europe" }, "Region"},
		{"one az", func(in *Input) { in.AZs = in.AZs[:1] }, "AZs"},
		{"az of other region", func(in *Input) { in.AZs = []string{"eu-west-1a", "us-east-1b"} }, "AZs[1]"},
		{"duplicate az", func(in *Input) { in.AZs = []string{"eu-west-1a", "eu-west-1a"} }, "AZs[1]"},
		{"no port", func(in *Input) { in.AppPort = 0 }, "AppPort"},
		{"max below min", func(in *Input) { in.Max = 1 }, "Max"},
		{"desired above max", func(in *Input) { in.Desired = 13 }, "Desired"},
		{"bad algorithm", func(in *Input) { in.Algorithm = "random" }, "Algorithm"},
		{"bad metric", func(in *Input) { in.TargetTracking[0].Metric = "memory" }, "TargetTracking[0].Metric"},
		{"cpu over 100", func(in *Input) { in.TargetTracking[0].Target = 150 }, "TargetTracking[0].Target"},
		{"duplicate metric", func(in *Input) { in.TargetTracking[1].Metric = "cpu" }, "TargetTracking[1].Metric"},
		{"no cron", func(in *Input) { in.Scheduled[0].Cron = spec.Cron{} }, "Scheduled[0].Cron"},
		{"bad tz", func(in *Input) { in.Scheduled[0].TimeZone = "Mars/Olympus" }, "Scheduled[0].TimeZone"},
		{"no sizes", func(in *Input) { in.Scheduled[1].Min, in.Scheduled[1].Max = nil, nil }, "Scheduled[1]"},
		{"duplicate action", func(in *Input) { in.Scheduled[1].Name = "exam-morning" }, "Scheduled[1].Name"},
		{"health path", func(in *Input) { in.HealthCheck.Path = "healthz" }, "HealthCheck.Path"},
		{"window format", func(in *Input) { in.BackupWindow = "2am" }, "BackupWindow"},
		{"window short", func(in *Input) { in.BackupWindow = "23:50-00:10" }, "BackupWindow"},
		{"negative delay", func(in *Input) { in.DeregistrationDelay = -time.Second }, "DeregistrationDelay"},
		{"db class", func(in *Input) { in.DBInstanceClass = "t4g.medium" }, "DBInstanceClass"},
		{"ami", func(in *Input) { in.Deployment.AMI = "ubuntu" }, "Deployment.AMI"},
		{"signed path not served from the bucket", func(in *Input) { in.SignedPaths = []string{"/private/*"} }, "SignedPaths[0]"},
		{"artifact half", func(in *Input) { in.Deployment.ArtifactsBucket = "b" }, "Deployment.ArtifactKey"},
		{"maintenance format", func(in *Input) { in.MaintenanceWindow = "sunday" }, "MaintenanceWindow"},
		{"maintenance short", func(in *Input) { in.MaintenanceWindow = "sun:04:00-sun:04:15" }, "MaintenanceWindow"},
		{"maintenance overlaps backup", func(in *Input) { in.MaintenanceWindow = "tue:02:15-tue:03:00" }, "MaintenanceWindow"},
		{"strategy", func(in *Input) { in.RotationStrategy = "sometimes" }, "RotationStrategy"},
		{"log retention negative", func(in *Input) { in.LogRetention = -day }, "LogRetention"},
		{"logins without bucket", func(in *Input) { in.Deployment.DBLoginsArtifactKey = "x.zip" }, "Deployment.DBLoginsArtifactKey"},
		{"origin is the alb", func(in *Input) { in.Deployment.OriginDomainName = "courses-alb-1.eu-west-1.elb.amazonaws.com" }, "Deployment.OriginDomainName"},
		{"alias is the origin", func(in *Input) {
			in.Deployment.OriginDomainName = "courses.example.edu"
			in.Deployment.CloudFrontAliases = []string{"courses.example.edu"}
		}, "Deployment.CloudFrontAliases[0]"},
		{"cloudfront cert region", func(in *Input) {
			in.Deployment.CloudFrontCertificateARN = "arn:aws:acm:eu-west-1:123456789012:certificate/x"
		}, "Deployment.CloudFrontCertificateARN"},
		{"alb ingress", func(in *Input) { in.Deployment.ALBIngress = "everyone" }, "Deployment.ALBIngress"},
		{"prefix list", func(in *Input) { in.Deployment.CloudFrontPrefixListID = "cloudfront" }, "Deployment.CloudFrontPrefixListID"},
		{"not a pem", func(in *Input) { in.Deployment.SigningPublicKey = "ssh-rsa AAAA" }, "Deployment.SigningPublicKey"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := coursesInput()
			tt.mutate(&in)
			_, _, err := Generate(in)
			if err == nil {
				t.Fatal("Generate succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.field+": ") {
				t.Errorf("error %q does not name %s", err, tt.field)
			}
		})
	}
}

func TestWindowAcrossMidnight(t *testing.T) {
	in := coursesInput()
	in.BackupWindow = "23:45-00:15"
	if _, _, err := Generate(in); err != nil {
		t.Fatalf("30-minute window across midnight rejected: %v", err)
	}
}

func TestAZNames(t *testing.T) {
	got := AZNames("eu-west-1", []string{"a", "eu-west-1b"})
	want := []string{"eu-west-1a", "eu-west-1b"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("AZNames = %v, want %v", got, want)
	}
}

// TestJSONShape checks the optional fields are left out rather than written
// as empty values the module would misread.
func TestJSONShape(t *testing.T) {
	in := goldenCases()["aws-defaults"]
	vars, _, err := Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := vars.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ami_id", "db_backup_window", "app_command", "app_environment", "alb_idle_timeout",
		"health_check_type", "db_name", "db_username", "static_paths", "certificate_arn",
		"db_maintenance_window", "db_rotation_strategy", "log_retention_days", "db_logins_artifact_key", "origin_domain_name",
		"cloudfront_aliases", "cloudfront_certificate_arn", "route53_zone_id", "alb_ingress", "cloudfront_prefix_list_id",
		"materials_signing_public_key"} {
		if _, ok := m[k]; ok {
			t.Errorf("%s present although unset", k)
		}
	}
	// Rotation 0 is "off", as in the spec: written, never left to the
	// module's default of 7 days.
	if v, ok := m["db_secret_rotation_days"]; !ok || v != 0.0 {
		t.Errorf("db_secret_rotation_days = %v (present %v), want 0", v, ok)
	}
	for _, k := range []string{"target_tracking", "scheduled_actions"} {
		if v, ok := m[k].([]any); !ok || len(v) != 0 {
			t.Errorf("%s = %v, want [] (so the module default does not apply silently)", k, m[k])
		}
	}
}

func TestLogRetentionRoundsUpToCloudWatchValues(t *testing.T) {
	tests := []struct {
		in      time.Duration
		want    int
		warning bool
	}{
		{90 * day, 90, false},
		{1 * day, 1, false},
		{2 * day, 3, true},
		{12 * time.Hour, 1, true},
		{100 * day, 120, true},
		{366 * day, 400, true},
		{3650 * day, 3653, true},
		{5000 * day, 3653, true},
	}
	for _, tt := range tests {
		in := coursesInput()
		in.LogRetention = tt.in
		vars, warnings, err := Generate(in)
		if err != nil {
			t.Fatalf("%s: %v", tt.in, err)
		}
		var warned bool
		for _, w := range warnings {
			warned = warned || w.Field == "LogRetention"
		}
		if vars.LogRetentionDays != tt.want || warned != tt.warning {
			t.Errorf("%s: log_retention_days %d (warned %v), want %d (warned %v)", tt.in, vars.LogRetentionDays, warned, tt.want, tt.warning)
		}
	}
}

// TestPrivateKeyNeverReachesTfvars: a private key given as the signing key
// is refused, and the error does not echo it.
func TestPrivateKeyNeverReachesTfvars(t *testing.T) {
	in := coursesInput()
	const body = "MC4CAQAwBQYDK2VwBCIEINotARealKeyButShapedLikeOneXXXXXXXXXXXXXX"
	in.Deployment.SigningPublicKey = "-----BEGIN PRIVATE KEY-----\n" + body + "\n-----END PRIVATE KEY-----"
	vars, _, err := Generate(in)
	if err == nil || !strings.Contains(err.Error(), "Deployment.SigningPublicKey: holds a private key") {
		t.Fatalf("err = %v, want a private-key refusal", err)
	}
	if strings.Contains(err.Error(), body) {
		t.Error("the error echoes the private key")
	}
	if vars.MaterialsSigningPublicKey != "" {
		t.Error("vars carry the key despite the error")
	}
}

func TestSpecFieldsOfNewInputs(t *testing.T) {
	s, err := spec.LoadFile("../../haven.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for field, want := range map[string]string{
		"MaintenanceWindow": "aws.maintenance_window",
		"LogRetention":      "aws.log_retention",
		"RotationStrategy":  "secrets.db.strategy",
	} {
		if got := SpecField(s, field); got != want {
			t.Errorf("SpecField(%s) = %q, want %q", field, got, want)
		}
	}
	in := FromSpec(s)
	if in.MaintenanceWindow != s.AWS.MaintenanceWindow || in.LogRetention != s.AWS.LogRetention.D() || in.RotationStrategy != s.Secrets.DB.Strategy {
		t.Errorf("FromSpec dropped a field: %q %s %q", in.MaintenanceWindow, in.LogRetention, in.RotationStrategy)
	}
}

// TestInstanceRefresh: the preferences reach the module's object; AWS's
// rule that min and max healthy differ by at most 100 raises min with a
// warning; alarm names the module has no CloudWatch alarm for are left out
// with a warning; what AWS cannot take is refused naming the field.
func TestInstanceRefresh(t *testing.T) {
	in := coursesInput()
	in.InstanceRefresh = &InstanceRefresh{MinHealthy: 0, MaxHealthy: 200, Checkpoints: []int{20, 60, 100},
		Bake: 1500 * time.Millisecond, Warmup: 30 * time.Second, AutoRollback: false,
		RollbackOn: []string{"target-p99-latency", "db-failover", "target-p99-latency", "alb-5xx-rate"}}
	v, ws, err := Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(v.InstanceRefresh)
	want := `{"min_healthy_percentage":100,"max_healthy_percentage":200,"checkpoint_percentages":[20,60,100],"checkpoint_delay":2,"instance_warmup":30,"auto_rollback":false,"rollback_alarms":["target-p99-latency","alb-5xx-rate"]}`
	if string(got) != want {
		t.Errorf("instance_refresh = %s\nwant %s", got, want)
	}
	warned := map[string]string{}
	for _, w := range ws {
		warned[w.Field] = w.From + "→" + w.To
	}
	for field, w := range map[string]string{"InstanceRefresh.MinHealthy": "0→100", "InstanceRefresh.Bake": "1.5s→2s", "InstanceRefresh.RollbackOn": "db-failover→"} {
		if warned[field] != w {
			t.Errorf("warning on %s = %q, want %q (warnings %v)", field, warned[field], w, ws)
		}
	}

	in.InstanceRefresh = nil
	if v, _, err := Generate(in); err != nil || v.InstanceRefresh != nil {
		t.Errorf("no preferences: instance_refresh %+v, %v; want it left out (module defaults)", v.InstanceRefresh, err)
	}

	for name, r := range map[string]InstanceRefresh{
		"InstanceRefresh.MinHealthy":  {MinHealthy: 120, MaxHealthy: 200, Checkpoints: []int{100}},
		"InstanceRefresh.MaxHealthy":  {MinHealthy: 100, MaxHealthy: 100, Checkpoints: []int{100}},
		"InstanceRefresh.Checkpoints": {MinHealthy: 100, MaxHealthy: 200, Checkpoints: []int{50, 50, 100}},
	} {
		in.InstanceRefresh = &r
		if _, _, err := Generate(in); err == nil || !strings.Contains(err.Error(), name+": ") {
			t.Errorf("%+v: error %v, want one naming %s", r, err, name)
		}
	}
	in.InstanceRefresh = &InstanceRefresh{MinHealthy: 100, MaxHealthy: 200, Checkpoints: []int{50}}
	if _, _, err := Generate(in); err == nil || !strings.Contains(err.Error(), "must end at 100") {
		t.Errorf("checkpoints [50]: error %v, want one saying they must end at 100", err)
	}
}
