package spec

import (
	"fmt"
	"net/netip"
	"reflect"
	"regexp"
	"strings"
	"time"
)

// maxUser is the longest database.user: its logins <user>_a and <user>_b
// must fit PostgreSQL's 63-byte names, or both would be cut to one name.
const maxUser = 61

var (
	nameRE  = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)
	identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
	zoneRE  = regexp.MustCompile(`^[a-z]$`)
	envRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// secretEnvRE matches environment variable names that would carry a
	// credential; the platform refuses them so no secret sits in a spec or env.
	secretEnvRE = regexp.MustCompile(`(?i)(PASSWORD|PASSWD|SECRET|TOKEN|PRIVATE_KEY|ACCESS_KEY|CREDENTIAL|PGPASS)`)
	// platformEnv are the variables every instance gets from the platform,
	// which app.env cannot override (internal/fleet; on AWS the module's
	// boot script and PORT).
	platformEnv    = map[string]bool{"HOST": true, "PORT": true, "HAVEN_INSTANCE_ID": true, "HAVEN_ZONE": true}
	windowRE       = regexp.MustCompile(`^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$`)
	regionRE       = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-\d$`)
	instanceTypeRE = regexp.MustCompile(`^[a-z0-9]+\.[a-z0-9]+$`)
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
		// The schedule runs in its time zone; an unknown zone is left to
		// Validate to report.
		if loc, err := time.LoadLocation(p.TimeZone); err == nil && p.TimeZone != "" {
			p.Cron = p.Cron.In(loc)
		}
	}
	s.fillStorage()
	if len(s.AWS.AvailabilityZones) == 0 {
		for _, z := range s.Zones {
			s.AWS.AvailabilityZones = append(s.AWS.AvailabilityZones, s.AWS.Region+z)
		}
	}
}

// problems collects the problems of a spec, each naming its field.
type problems []Problem

func (ps *problems) add(field, format string, a ...any) {
	*ps = append(*ps, Problem{Field: field, Msg: fmt.Sprintf(format, a...)})
}

// Validate checks every field and returns one Problem per violation, each
// naming the field and what is allowed. It is pure and fast: each section
// checks itself, in the order of the file.
func (s *Spec) Validate() []Problem {
	var ps problems
	s.validateRegion(&ps)
	s.App.validate(&ps)
	s.Fleet.validate(&ps)
	s.LoadBalancer.validate(&ps)
	s.Database.validate(&ps)
	s.Secrets.validate(&ps)
	s.ObjStore.validate(&ps)
	s.Edge.validate(&ps, s.ObjStore.Buckets)
	s.validateSecurityGroups(&ps)
	s.AWS.validate(&ps, len(s.Zones))
	ps = append(ps, s.validateAWSOperations()...)
	validateFinite(&ps, reflect.ValueOf(s).Elem(), "")
	return ps
}

// validateRegion checks the top level: the name and the zones.
func (s *Spec) validateRegion(ps *problems) {
	if !nameRE.MatchString(s.Name) {
		ps.add("name", "must be 1–32 lowercase letters, digits or dashes, starting with a letter, got %q", s.Name)
	}
	if len(s.Zones) != 2 {
		ps.add("zones", "must list exactly two zones, e.g. [a, b], got %d", len(s.Zones))
	}
	seen := map[string]bool{}
	for i, z := range s.Zones {
		f := fmt.Sprintf("zones[%d]", i)
		if !zoneRE.MatchString(z) {
			ps.add(f, "must be a single lowercase letter (the AZ suffix), got %q", z)
		}
		if seen[z] {
			ps.add(f, "zone %q is listed twice", z)
		}
		seen[z] = true
	}
}

func (a *App) validate(ps *problems) {
	if len(a.Command) == 0 || strings.TrimSpace(a.Command[0]) == "" {
		ps.add("app.command", "must name the program to run, e.g. [courses, serve]")
	}
	for k, v := range a.Env {
		f := "app.env." + k
		if !envRE.MatchString(k) {
			ps.add(f, "must be a valid environment variable name")
		}
		if platformEnv[k] {
			ps.add(f, "is set by the platform for each instance (its address, port, id and zone), locally and on AWS; remove it")
		}
		if secretEnvRE.MatchString(k) {
			ps.add(f, "looks like a credential; secrets never go in the spec or the environment: store it in the secrets service and fetch it at startup")
		}
		if strings.ContainsRune(v, 0) {
			ps.add(f, "must not contain a NUL byte")
		}
	}
	checkPort(ps, "app.port", a.Port)
	hc := &a.HealthCheck
	if !strings.HasPrefix(hc.Path, "/") {
		ps.add("app.health_check.path", "must start with /, got %q", hc.Path)
	}
	if hc.Interval.D() < 100*time.Millisecond || hc.Interval.D() > 300*time.Second {
		ps.add("app.health_check.interval", "must be from 100ms to 300s, got %s", hc.Interval)
	}
	if hc.Timeout.D() < 10*time.Millisecond || hc.Timeout.D() >= hc.Interval.D() {
		ps.add("app.health_check.timeout", "must be at least 10ms and shorter than app.health_check.interval (%s), got %s", hc.Interval, hc.Timeout)
	}
	if hc.Healthy < 1 || hc.Healthy > 10 {
		ps.add("app.health_check.healthy", "must be from 1 to 10, got %d", hc.Healthy)
	}
	if hc.Unhealthy < 1 || hc.Unhealthy > 10 {
		ps.add("app.health_check.unhealthy", "must be from 1 to 10, got %d", hc.Unhealthy)
	}
	if hc.Matcher.IsZero() {
		ps.add("app.health_check.matcher", `must list status codes within 200–499 such as "200", "200-299" or "200,302"`)
	}
	if a.Instance.CPU < 0.01 || a.Instance.CPU > 64 {
		ps.add("app.instance.cpu", "must be from 0.01 to 64 cores, got %g", a.Instance.CPU)
	}
	if a.Instance.Memory < 16<<20 {
		ps.add("app.instance.memory", "must be at least 16MiB, got %s", a.Instance.Memory)
	}
}

func (f *Fleet) validate(ps *problems) {
	if f.Min < 0 {
		ps.add("fleet.min", "must be ≥ 0, got %d", f.Min)
	}
	if f.Max < 1 || f.Max > 100 {
		ps.add("fleet.max", "must be from 1 to 100, got %d", f.Max)
	}
	if f.Max < f.Min {
		ps.add("fleet.max", "must be ≥ fleet.min (%d), got %d", f.Min, f.Max)
	}
	if f.Desired < f.Min || f.Desired > f.Max {
		ps.add("fleet.desired", "must be between fleet.min (%d) and fleet.max (%d), got %d", f.Min, f.Max, f.Desired)
	}
	if f.HealthCheckType != "elb" && f.HealthCheckType != "ec2" {
		ps.add("fleet.health_check_type", `must be "elb" or "ec2", got %q`, f.HealthCheckType)
	}
	if f.GracePeriod < 0 || f.GracePeriod.D() > 2*time.Hour {
		ps.add("fleet.grace_period", "must be from 0 to 2h, got %s", f.GracePeriod)
	}
	names := map[string]bool{}
	for i := range f.Scaling {
		f.Scaling[i].validate(ps, fmt.Sprintf("fleet.scaling[%d]", i), names)
	}
}

// validate checks one scaling policy; names collects the scheduled actions' names.
func (p *ScalingPolicy) validate(ps *problems, fp string, names map[string]bool) {
	switch {
	case p.TargetTracking != "" && p.Scheduled != "":
		ps.add(fp, "set either target_tracking or scheduled, not both")
	case p.TargetTracking != "":
		if p.TargetTracking != "cpu" && p.TargetTracking != "request_count" {
			ps.add(fp+".target_tracking", `must be "cpu" or "request_count", got %q`, p.TargetTracking)
		}
		if p.TargetTracking == "cpu" && (p.Target <= 0 || p.Target > 100) {
			ps.add(fp+".target", "must be a CPU percentage above 0 and at most 100, got %g", p.Target)
		}
		if p.TargetTracking == "request_count" && p.Target <= 0 {
			ps.add(fp+".target", "must be > 0 requests per target per minute, got %g", p.Target)
		}
		if p.Warmup < 0 || p.Warmup.D() > time.Hour {
			ps.add(fp+".warmup", "must be from 0 to 1h, got %s", p.Warmup)
		}
		if !p.Cron.IsZero() || p.Min != nil || p.Max != nil || p.Desired != nil {
			ps.add(fp, "cron, min, max and desired belong to scheduled actions, not target tracking")
		}
	case p.Scheduled != "":
		if !nameRE.MatchString(p.Scheduled) {
			ps.add(fp+".scheduled", "must be a name of lowercase letters, digits or dashes, got %q", p.Scheduled)
		}
		if names[p.Scheduled] {
			ps.add(fp+".scheduled", "the name %q is used twice", p.Scheduled)
		}
		names[p.Scheduled] = true
		if p.Cron.IsZero() {
			ps.add(fp+".cron", `is required: a five-field cron expression such as "0 7 * * MON-FRI", or @daily`)
		}
		if _, err := time.LoadLocation(p.TimeZone); err != nil {
			ps.add(fp+".time_zone", "must be an IANA time zone such as UTC or Europe/Dublin, got %q", p.TimeZone)
		}
		if p.Min == nil && p.Max == nil && p.Desired == nil {
			ps.add(fp, "a scheduled action must set at least one of min, max, desired")
		}
		for _, v := range []struct {
			n string
			p *int
		}{{"min", p.Min}, {"max", p.Max}, {"desired", p.Desired}} {
			if v.p != nil && (*v.p < 0 || *v.p > 100) {
				ps.add(fp+"."+v.n, "must be from 0 to 100, got %d", *v.p)
			}
		}
		if p.Min != nil && p.Max != nil && *p.Max < *p.Min {
			ps.add(fp+".max", "must be ≥ min (%d), got %d", *p.Min, *p.Max)
		}
		if p.Target != 0 || p.Warmup != 0 {
			ps.add(fp, "target and warmup belong to target tracking, not scheduled actions")
		}
	default:
		ps.add(fp, "set target_tracking (cpu or request_count) or scheduled")
	}
}

func (l *LoadBalancer) validate(ps *problems) {
	checkAddr(ps, "load_balancer.https", l.HTTPS, false)
	checkAddr(ps, "load_balancer.http", l.HTTP, true)
	if l.HTTP != "" && l.HTTP == l.HTTPS {
		ps.add("load_balancer.http", "must differ from load_balancer.https (%s)", l.HTTPS)
	}
	if l.Algorithm != "round_robin" && l.Algorithm != "least_outstanding_requests" {
		ps.add("load_balancer.algorithm", `must be "round_robin" or "least_outstanding_requests", got %q`, l.Algorithm)
	}
	if l.DeregistrationDelay < 0 || l.DeregistrationDelay.D() > time.Hour {
		ps.add("load_balancer.deregistration_delay", "must be from 0 to 1h, got %s", l.DeregistrationDelay)
	}
	if l.SlowStart < 0 || l.SlowStart.D() > 15*time.Minute {
		ps.add("load_balancer.slow_start", "must be 0 (off) or up to 15m, got %s", l.SlowStart)
	} else if l.SlowStart != 0 && l.Algorithm == "least_outstanding_requests" {
		ps.add("load_balancer.slow_start", "must be 0 with load_balancer.algorithm least_outstanding_requests, got %s: an ALB does not combine them, so neither does haven", l.SlowStart)
	}
	if l.IdleTimeout.D() < time.Second || l.IdleTimeout.D() > 4000*time.Second {
		ps.add("load_balancer.idle_timeout", "must be from 1s to 4000s, got %s", l.IdleTimeout)
	}
}

func (d *Database) validate(ps *problems) {
	if d.Engine != "postgres" {
		ps.add("database.engine", `must be "postgres", got %q`, d.Engine)
	}
	if d.Version != 15 {
		ps.add("database.version", "must be 15 (the version haven runs locally), got %d", d.Version)
	}
	if d.Durability != "preferred" && d.Durability != "required" {
		ps.add("database.durability", `must be "preferred" or "required", got %q`, d.Durability)
	}
	checkAddr(ps, "database.endpoint", d.Endpoint, false)
	if !identRE.MatchString(d.Name) {
		ps.add("database.name", "must be a lowercase SQL identifier, got %q", d.Name)
	}
	if !identRE.MatchString(d.User) || d.User == "postgres" || strings.HasPrefix(d.User, "pg_") {
		ps.add("database.user", "must be a lowercase SQL identifier other than postgres and pg_*, got %q", d.User)
	} else if len(d.User) > maxUser {
		ps.add("database.user", "must be at most %d characters, got %d: the app's logins %s_a and %s_b must fit PostgreSQL's 63", maxUser, len(d.User), d.User, d.User)
	}
	if d.BackupRetention.D() < 24*time.Hour || d.BackupRetention.D() > 35*24*time.Hour {
		ps.add("database.backup_retention", "must be from 1d to 35d, got %s", d.BackupRetention)
	}
	if d.BackupSchedule.IsZero() {
		ps.add("database.backup_schedule", `is required: a five-field cron expression such as "0 3 * * *", or @daily`)
	}
}

func (s *Secrets) validate(ps *problems) {
	checkAddr(ps, "secrets.listen", s.Listen, false)
	if r := s.DB.Rotation.D(); r != 0 && (r < time.Minute || r > 365*24*time.Hour) {
		ps.add("secrets.db.rotation", "must be 0 (off) or from 1m to 365d, got %s", s.DB.Rotation)
	}
	if st := s.DB.Strategy; st != "alternating_users" && st != "single_user" {
		ps.add("secrets.db.strategy", `must be "alternating_users" or "single_user", got %q`, st)
	}
}

// validate checks the AWS-only settings; zones is how many zones the spec lists.
func (a *AWS) validate(ps *problems, zones int) {
	if !regionRE.MatchString(a.Region) {
		ps.add("aws.region", "must be an AWS region name such as eu-west-1, got %q", a.Region)
	}
	if len(a.AvailabilityZones) != zones {
		ps.add("aws.availability_zones", "must name one AZ per zone (%d), got %d", zones, len(a.AvailabilityZones))
	}
	if !instanceTypeRE.MatchString(a.InstanceType) {
		ps.add("aws.instance_type", "must be an EC2 instance type such as t4g.small, got %q", a.InstanceType)
	}
	if !strings.HasPrefix(a.DBInstanceClass, "db.") {
		ps.add("aws.db_instance_class", "must be an RDS class such as db.t4g.medium, got %q", a.DBInstanceClass)
	}
	if !windowRE.MatchString(a.BackupWindow) {
		ps.add("aws.backup_window", "must be hh:mm-hh:mm in UTC, e.g. 03:00-04:00, got %q", a.BackupWindow)
	}
}

func checkPort(ps *problems, field string, p int) {
	if p < 1 || p > 65535 {
		ps.add(field, "must be a TCP port from 1 to 65535, got %d", p)
	}
}

func checkAddr(ps *problems, field, v string, optional bool) {
	if v == "" {
		if !optional {
			ps.add(field, "must be an address such as 127.0.0.1:8443")
		}
		return
	}
	ap, err := netip.ParseAddrPort(v)
	if err != nil {
		ps.add(field, "must be an IP address and port such as 127.0.0.1:8443, got %q", v)
		return
	}
	if ap.Port() == 0 {
		ps.add(field, "must name a port from 1 to 65535, got %q", v)
	}
}
