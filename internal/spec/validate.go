package spec

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
)

var (
	nameRE  = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)
	identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
	zoneRE  = regexp.MustCompile(`^[a-z]$`)
	envRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// secretEnvRE matches environment variable names that would carry a
	// credential; the platform refuses them so no secret sits in a spec or env.
	secretEnvRE = regexp.MustCompile(`(?i)(PASSWORD|PASSWD|SECRET|TOKEN|PRIVATE_KEY|ACCESS_KEY|CREDENTIAL|PGPASS)`)
	windowRE    = regexp.MustCompile(`^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$`)
)

// fillDerived fills the defaults that depend on other fields.
func (s *Spec) fillDerived() {
	if s.Database.Name == "" {
		s.Database.Name = strings.ReplaceAll(s.Name, "-", "_")
	}
	if s.Database.User == "" {
		s.Database.User = strings.ReplaceAll(s.Name, "-", "_")
	}
	for i := range s.Fleet.Scaling {
		p := &s.Fleet.Scaling[i]
		if p.TargetTracking != "" && p.Warmup == 0 {
			p.Warmup = Duration(10 * time.Second)
		}
		if p.Scheduled != "" && p.TimeZone == "" {
			p.TimeZone = "UTC"
		}
	}
	if len(s.AWS.AvailabilityZones) == 0 {
		for _, z := range s.Zones {
			s.AWS.AvailabilityZones = append(s.AWS.AvailabilityZones, s.AWS.Region+z)
		}
	}
}

// Validate checks every field and returns one Problem per violation, each
// naming the field and what is allowed. It is pure and fast.
func (s *Spec) Validate() []Problem {
	var ps []Problem
	add := func(field, format string, a ...any) {
		ps = append(ps, Problem{Field: field, Msg: fmt.Sprintf(format, a...)})
	}
	if !nameRE.MatchString(s.Name) {
		add("name", "must be 1–32 lowercase letters, digits or dashes, starting with a letter, got %q", s.Name)
	}
	if len(s.Zones) != 2 {
		add("zones", "must list exactly two zones, e.g. [a, b], got %d", len(s.Zones))
	}
	seen := map[string]bool{}
	for i, z := range s.Zones {
		f := fmt.Sprintf("zones[%d]", i)
		if !zoneRE.MatchString(z) {
			add(f, "must be a single lowercase letter (the AZ suffix), got %q", z)
		}
		if seen[z] {
			add(f, "zone %q is listed twice", z)
		}
		seen[z] = true
	}

	a := &s.App
	if len(a.Command) == 0 || strings.TrimSpace(a.Command[0]) == "" {
		add("app.command", "must name the program to run, e.g. [courses, serve]")
	}
	for k, v := range a.Env {
		f := "app.env." + k
		if !envRE.MatchString(k) {
			add(f, "must be a valid environment variable name")
		}
		if secretEnvRE.MatchString(k) {
			add(f, "looks like a credential; secrets never go in the spec or the environment: store it in the secrets service and fetch it at startup")
		}
		if strings.ContainsRune(v, 0) {
			add(f, "must not contain a NUL byte")
		}
	}
	checkPort(add, "app.port", a.Port)
	hc := &a.HealthCheck
	if !strings.HasPrefix(hc.Path, "/") {
		add("app.health_check.path", "must start with /, got %q", hc.Path)
	}
	if hc.Interval.D() < 100*time.Millisecond || hc.Interval.D() > 300*time.Second {
		add("app.health_check.interval", "must be from 100ms to 300s, got %s", hc.Interval)
	}
	if hc.Timeout.D() < 10*time.Millisecond || hc.Timeout.D() >= hc.Interval.D() {
		add("app.health_check.timeout", "must be at least 10ms and shorter than app.health_check.interval (%s), got %s", hc.Interval, hc.Timeout)
	}
	if hc.Healthy < 1 || hc.Healthy > 10 {
		add("app.health_check.healthy", "must be from 1 to 10, got %d", hc.Healthy)
	}
	if hc.Unhealthy < 1 || hc.Unhealthy > 10 {
		add("app.health_check.unhealthy", "must be from 1 to 10, got %d", hc.Unhealthy)
	}
	if _, err := ParseMatcher(hc.Matcher); err != nil {
		add("app.health_check.matcher", "%v", err)
	}
	if a.Instance.CPU < 0.01 || a.Instance.CPU > 64 {
		add("app.instance.cpu", "must be from 0.01 to 64 cores, got %g", a.Instance.CPU)
	}
	if a.Instance.Memory < 16<<20 {
		add("app.instance.memory", "must be at least 16MiB, got %s", a.Instance.Memory)
	}

	f := &s.Fleet
	if f.Min < 0 {
		add("fleet.min", "must be ≥ 0, got %d", f.Min)
	}
	if f.Max < 1 || f.Max > 100 {
		add("fleet.max", "must be from 1 to 100, got %d", f.Max)
	}
	if f.Max < f.Min {
		add("fleet.max", "must be ≥ fleet.min (%d), got %d", f.Min, f.Max)
	}
	if f.Desired < f.Min || f.Desired > f.Max {
		add("fleet.desired", "must be between fleet.min (%d) and fleet.max (%d), got %d", f.Min, f.Max, f.Desired)
	}
	if f.HealthCheckType != "elb" && f.HealthCheckType != "ec2" {
		add("fleet.health_check_type", `must be "elb" or "ec2", got %q`, f.HealthCheckType)
	}
	if f.GracePeriod < 0 || f.GracePeriod.D() > 2*time.Hour {
		add("fleet.grace_period", "must be from 0 to 2h, got %s", f.GracePeriod)
	}
	names := map[string]bool{}
	for i, p := range f.Scaling {
		fp := fmt.Sprintf("fleet.scaling[%d]", i)
		switch {
		case p.TargetTracking != "" && p.Scheduled != "":
			add(fp, "set either target_tracking or scheduled, not both")
		case p.TargetTracking != "":
			if p.TargetTracking != "cpu" && p.TargetTracking != "request_count" {
				add(fp+".target_tracking", `must be "cpu" or "request_count", got %q`, p.TargetTracking)
			}
			if p.TargetTracking == "cpu" && (p.Target <= 0 || p.Target > 100) {
				add(fp+".target", "must be a CPU percentage above 0 and at most 100, got %g", p.Target)
			}
			if p.TargetTracking == "request_count" && p.Target <= 0 {
				add(fp+".target", "must be > 0 requests per target per minute, got %g", p.Target)
			}
			if p.Warmup < 0 || p.Warmup.D() > time.Hour {
				add(fp+".warmup", "must be from 0 to 1h, got %s", p.Warmup)
			}
			if p.Cron != "" || p.Min != nil || p.Max != nil || p.Desired != nil {
				add(fp, "cron, min, max and desired belong to scheduled actions, not target tracking")
			}
		case p.Scheduled != "":
			if !nameRE.MatchString(p.Scheduled) {
				add(fp+".scheduled", "must be a name of lowercase letters, digits or dashes, got %q", p.Scheduled)
			}
			if names[p.Scheduled] {
				add(fp+".scheduled", "the name %q is used twice", p.Scheduled)
			}
			names[p.Scheduled] = true
			if err := ValidateCron(p.Cron); err != nil {
				add(fp+".cron", "%v", err)
			}
			if _, err := time.LoadLocation(p.TimeZone); err != nil {
				add(fp+".time_zone", "must be an IANA time zone such as UTC or Europe/Dublin, got %q", p.TimeZone)
			}
			if p.Min == nil && p.Max == nil && p.Desired == nil {
				add(fp, "a scheduled action must set at least one of min, max, desired")
			}
			for _, v := range []struct {
				n string
				p *int
			}{{"min", p.Min}, {"max", p.Max}, {"desired", p.Desired}} {
				if v.p != nil && (*v.p < 0 || *v.p > 100) {
					add(fp+"."+v.n, "must be from 0 to 100, got %d", *v.p)
				}
			}
			if p.Min != nil && p.Max != nil && *p.Max < *p.Min {
				add(fp+".max", "must be ≥ min (%d), got %d", *p.Min, *p.Max)
			}
			if p.Target != 0 || p.Warmup != 0 {
				add(fp, "target and warmup belong to target tracking, not scheduled actions")
			}
		default:
			add(fp, "set target_tracking (cpu or request_count) or scheduled")
		}
	}

	l := &s.LoadBalancer
	checkAddr(add, "load_balancer.https", l.HTTPS, false)
	checkAddr(add, "load_balancer.http", l.HTTP, true)
	if l.HTTP != "" && l.HTTP == l.HTTPS {
		add("load_balancer.http", "must differ from load_balancer.https (%s)", l.HTTPS)
	}
	if l.Algorithm != "round_robin" && l.Algorithm != "least_outstanding_requests" {
		add("load_balancer.algorithm", `must be "round_robin" or "least_outstanding_requests", got %q`, l.Algorithm)
	}
	if l.DeregistrationDelay < 0 || l.DeregistrationDelay.D() > time.Hour {
		add("load_balancer.deregistration_delay", "must be from 0 to 1h, got %s", l.DeregistrationDelay)
	}
	if l.SlowStart < 0 || l.SlowStart.D() > 15*time.Minute {
		add("load_balancer.slow_start", "must be 0 (off) or up to 15m, got %s", l.SlowStart)
	}
	if l.IdleTimeout.D() < time.Second || l.IdleTimeout.D() > 4000*time.Second {
		add("load_balancer.idle_timeout", "must be from 1s to 4000s, got %s", l.IdleTimeout)
	}

	d := &s.Database
	if d.Engine != "postgres" {
		add("database.engine", `must be "postgres", got %q`, d.Engine)
	}
	if d.Version != 15 {
		add("database.version", "must be 15 (the version haven runs locally), got %d", d.Version)
	}
	if d.Durability != "preferred" && d.Durability != "required" {
		add("database.durability", `must be "preferred" or "required", got %q`, d.Durability)
	}
	checkAddr(add, "database.endpoint", d.Endpoint, false)
	if !identRE.MatchString(d.Name) {
		add("database.name", "must be a lowercase SQL identifier, got %q", d.Name)
	}
	if !identRE.MatchString(d.User) || d.User == "postgres" {
		add("database.user", "must be a lowercase SQL identifier other than postgres, got %q", d.User)
	}
	if d.BackupRetention.D() < 24*time.Hour || d.BackupRetention.D() > 35*24*time.Hour {
		add("database.backup_retention", "must be from 1d to 35d, got %s", d.BackupRetention)
	}
	if err := ValidateCron(d.BackupSchedule); err != nil {
		add("database.backup_schedule", "%v", err)
	}

	checkAddr(add, "secrets.listen", s.Secrets.Listen, false)
	if r := s.Secrets.DB.Rotation.D(); r != 0 && (r < time.Minute || r > 365*24*time.Hour) {
		add("secrets.db.rotation", "must be 0 (off) or from 1m to 365d, got %s", s.Secrets.DB.Rotation)
	}
	if st := s.Secrets.DB.Strategy; st != "alternating_users" && st != "single_user" {
		add("secrets.db.strategy", `must be "alternating_users" or "single_user", got %q`, st)
	}

	checkAddr(add, "edge.listen", s.Edge.Listen, true)
	for i, p := range s.Edge.Static {
		if !strings.HasPrefix(p, "/") {
			add(fmt.Sprintf("edge.static[%d]", i), "must be a path pattern starting with /, got %q", p)
		}
	}
	if s.Edge.DefaultTTL < 0 || s.Edge.DefaultTTL.D() > 365*24*time.Hour {
		add("edge.default_ttl", "must be from 0 to 365d, got %s", s.Edge.DefaultTTL)
	}

	if !regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-\d$`).MatchString(s.AWS.Region) {
		add("aws.region", "must be an AWS region name such as eu-west-1, got %q", s.AWS.Region)
	}
	if len(s.AWS.AvailabilityZones) != len(s.Zones) {
		add("aws.availability_zones", "must name one AZ per zone (%d), got %d", len(s.Zones), len(s.AWS.AvailabilityZones))
	}
	if !regexp.MustCompile(`^[a-z0-9]+\.[a-z0-9]+$`).MatchString(s.AWS.InstanceType) {
		add("aws.instance_type", "must be an EC2 instance type such as t4g.small, got %q", s.AWS.InstanceType)
	}
	if !strings.HasPrefix(s.AWS.DBInstanceClass, "db.") {
		add("aws.db_instance_class", "must be an RDS class such as db.t4g.medium, got %q", s.AWS.DBInstanceClass)
	}
	if !windowRE.MatchString(s.AWS.BackupWindow) {
		add("aws.backup_window", "must be hh:mm-hh:mm in UTC, e.g. 03:00-04:00, got %q", s.AWS.BackupWindow)
	}
	ps = append(ps, s.validateAWSOperations()...)
	return ps
}

func checkPort(add func(string, string, ...any), field string, p int) {
	if p < 1 || p > 65535 {
		add(field, "must be a TCP port from 1 to 65535, got %d", p)
	}
}

func checkAddr(add func(string, string, ...any), field, v string, optional bool) {
	if v == "" {
		if !optional {
			add(field, "must be an address such as 127.0.0.1:8443")
		}
		return
	}
	ap, err := netip.ParseAddrPort(v)
	if err != nil {
		add(field, "must be an IP address and port such as 127.0.0.1:8443, got %q", v)
		return
	}
	if ap.Port() == 0 {
		add(field, "must name a port from 1 to 65535, got %q", v)
	}
}

// Matcher is a set of HTTP status codes that count as a healthy response.
type Matcher [][2]int

// Match reports whether code is in the set.
func (m Matcher) Match(code int) bool {
	for _, r := range m {
		if code >= r[0] && code <= r[1] {
			return true
		}
	}
	return false
}

// ParseMatcher parses "200", "200-299" or "200,302" within 200–499, as ALB allows.
func ParseMatcher(s string) (Matcher, error) {
	var m Matcher
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf(`must list status codes such as "200", "200-299" or "200,302", got ""`)
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || a < 200 || b > 499 || b < a {
			return nil, fmt.Errorf("must list status codes within 200–499 such as \"200\", \"200-299\" or \"200,302\", got %q", s)
		}
		m = append(m, [2]int{a, b})
	}
	return m, nil
}

var cronRanges = [5][2]int{{0, 59}, {0, 23}, {1, 31}, {1, 12}, {0, 7}}

// ValidateCron checks a five-field cron expression (minute hour day-of-month
// month day-of-week) with *, lists, ranges and steps.
func ValidateCron(expr string) error {
	fields := strings.Fields(expr)
	if len(fields) != 5 {
		return fmt.Errorf("must be a five-field cron expression such as \"0 7 * * 1-5\", got %q", expr)
	}
	names := [5]string{"minute", "hour", "day of month", "month", "day of week"}
	for i, f := range fields {
		for _, part := range strings.Split(f, ",") {
			base, step, hasStep := strings.Cut(part, "/")
			if hasStep {
				if n, err := strconv.Atoi(step); err != nil || n < 1 {
					return fmt.Errorf("%s field %q: step must be a positive number", names[i], part)
				}
			}
			if base == "*" {
				continue
			}
			lo, hi, isRange := strings.Cut(base, "-")
			a, err1 := strconv.Atoi(lo)
			b := a
			var err2 error
			if isRange {
				b, err2 = strconv.Atoi(hi)
			}
			r := cronRanges[i]
			if err1 != nil || err2 != nil || a < r[0] || b > r[1] || b < a {
				return fmt.Errorf("%s field %q: must be * or numbers from %d to %d", names[i], part, r[0], r[1])
			}
		}
	}
	return nil
}
