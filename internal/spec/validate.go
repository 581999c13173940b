package spec

import (
	"fmt"
	"net/netip"
	"reflect"
	"regexp"
	"strconv"
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
	clientIDRE     = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	// hashRE is the shape of a password hash the identity provider takes:
	// an argon2id PHC string or a bcrypt hash (idp checks it in full).
	hashRE = regexp.MustCompile(`^(\$argon2id\$v=19\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+|\$2[aby]\$\d\d\$[./A-Za-z0-9]{53})$`)
)

// The bounds of the identity provider's directory.
const (
	maxGenerated     = 100000
	maxIdentityUsers = 200000
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
			p.Warmup = Duration(DefaultWarmup)
		}
		if p.Scheduled != "" && p.TimeZone == "" {
			p.TimeZone = "UTC"
		}
		// The schedule runs in its time zone; an unknown zone is left to
		// Validate to report.
		if loc, err := time.LoadLocation(p.TimeZone); err == nil && p.TimeZone != "" {
			p.Cron = p.Cron.In(loc)
			p.Start, p.End = p.Start.In(loc), p.End.In(loc)
		}
	}
	s.fillStorage()
	if s.Identity.ClientID == "" {
		s.Identity.ClientID = s.Name
	}
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
	s.Identity.validate(&ps)
	s.validateListeners(&ps)
	s.validateSecurityGroups(&ps)
	s.validateOperations(&ps)
	s.AWS.validate(&ps, len(s.Zones))
	if !(s.TimeScale >= 1 && s.TimeScale <= 600) {
		ps.add("time_scale", "must be a number from 1 (real time) to 600, got %g", s.TimeScale)
	}
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
	for i, arg := range a.Migrations {
		if strings.TrimSpace(arg) == "" || strings.ContainsRune(arg, 0) {
			ps.add(fmt.Sprintf("app.migrations[%d]", i), "must be a non-empty argument, e.g. [migrations, --json]")
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
	if !(a.Instance.CPU >= 0.01 && a.Instance.CPU <= 64) { // NaN fails too
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
	f.InstanceRefresh.validate(ps)
	if f.GracePeriod < 0 || f.GracePeriod.D() > 2*time.Hour {
		ps.add("fleet.grace_period", "must be from 0 to 2h, got %s", f.GracePeriod)
	}
	names := map[string]bool{}
	for i := range f.Scaling {
		f.Scaling[i].validate(ps, fmt.Sprintf("fleet.scaling[%d]", i), names, f.Max)
	}
}

// validate checks one scaling policy; names collects the scheduled actions'
// names, fleetMax is the group's max when the action leaves it unchanged.
func (p *ScalingPolicy) validate(ps *problems, fp string, names map[string]bool, fleetMax int) {
	switch {
	case p.TargetTracking != "" && p.Scheduled != "":
		ps.add(fp, "set either target_tracking or scheduled, not both")
	case p.TargetTracking != "":
		if p.TargetTracking != "cpu" && p.TargetTracking != "request_count" {
			ps.add(fp+".target_tracking", `must be "cpu" or "request_count", got %q`, p.TargetTracking)
		}
		// Written so that NaN fails each check (every comparison with NaN is false).
		if p.TargetTracking == "cpu" && !(p.Target > 0 && p.Target <= 100) {
			ps.add(fp+".target", "must be a CPU percentage above 0 and at most 100, got %g", p.Target)
		}
		if p.TargetTracking == "request_count" && !(p.Target > 0 && p.Target <= 1e9) {
			ps.add(fp+".target", "must be > 0 requests per target per minute (at most 1e9), got %g", p.Target)
		}
		if p.Warmup < 0 || p.Warmup.D() > time.Hour {
			ps.add(fp+".warmup", "must be from 0 to 1h, got %s", p.Warmup)
		}
		if !p.Cron.IsZero() || p.Min != nil || p.Max != nil || p.Desired != nil || !p.Start.IsZero() || !p.End.IsZero() {
			ps.add(fp, "cron, min, max, desired, start and end belong to scheduled actions, not target tracking")
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
		if p.Min != nil && p.Max == nil && *p.Min > fleetMax {
			ps.add(fp+".min", "must be ≤ fleet.max (%d), or the action must also raise max; got %d", fleetMax, *p.Min)
		}
		if p.Desired != nil && p.Min != nil && *p.Desired < *p.Min {
			ps.add(fp+".desired", "must be ≥ min (%d), got %d", *p.Min, *p.Desired)
		}
		if p.Desired != nil && p.Max != nil && *p.Desired > *p.Max {
			ps.add(fp+".desired", "must be ≤ max (%d), got %d", *p.Max, *p.Desired)
		}
		if !p.Start.IsZero() && !p.End.IsZero() && !p.End.T().After(p.Start.T()) {
			ps.add(fp+".end", "must be after start (%s), got %s", p.Start, p.End)
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

func (id *Identity) validate(ps *problems) {
	checkAddr(ps, "identity.listen", id.Listen, false)
	if ap, err := netip.ParseAddrPort(id.Listen); err == nil && !ap.Addr().IsLoopback() {
		ps.add("identity.listen", "must be a loopback address such as 127.0.0.1:9443 (the provider stands in for the university's; it is not served off this machine), got %q", id.Listen)
	}
	if id.Name == "" || len(id.Name) > 64 || strings.ContainsFunc(id.Name, func(c rune) bool { return c < ' ' || c == 0x7f }) {
		ps.add("identity.name", "must be 1–64 printable characters, got %q", id.Name)
	}
	if !clientIDRE.MatchString(id.ClientID) {
		ps.add("identity.client_id", "must be 1–64 letters, digits, '.', '_' or '-', got %q", id.ClientID)
	}
	if id.StaffSSOOnly && !id.Enabled {
		ps.add("identity.staff_sso_only", "needs identity.enabled: true: without single sign-on, staff could not log in at all")
	}
	if r := id.KeyRotation.D(); r != 0 && (r < time.Minute || r > 365*24*time.Hour) {
		ps.add("identity.key_rotation", "must be 0 (by `haven identity rotate-key` only) or from 1m to 365d, got %s", id.KeyRotation)
	}
	if l := id.IDTokenLifetime.D(); l < time.Minute || l > 24*time.Hour {
		ps.add("identity.id_token_lifetime", "must be from 1m to 24h, got %s", id.IDTokenLifetime)
	}
	if longest := max(id.IDTokenLifetime.D(), time.Hour); id.KeyRetention.D() < longest || id.KeyRetention.D() > 365*24*time.Hour {
		ps.add("identity.key_retention", "must be from %s (the longest token lifetime, so every token verifies until it expires) to 365d, got %s", Duration(longest), id.KeyRetention)
	}
	checkGroups := func(f string, groups []string) {
		for j, g := range groups {
			if g == "" || len(g) > 128 || strings.ContainsFunc(g, func(c rune) bool { return c < ' ' || c == 0x7f }) {
				ps.add(fmt.Sprintf("%s.groups[%d]", f, j), "must be 1–128 printable characters, got %q", g)
			}
		}
	}
	checkHash := func(f, h string) {
		if !hashRE.MatchString(h) {
			ps.add(f+".password_hash", "must be an argon2id or bcrypt hash (`haven identity hash` makes one from a password read on stdin); a password never goes in the spec")
		}
	}
	checkName := func(f, u string) bool {
		if u == "" || len(u) > 254 || strings.ContainsFunc(u, func(c rune) bool { return c <= ' ' || c == 0x7f }) {
			ps.add(f+".username", "must be 1–254 characters without spaces, got %q", u)
			return false
		}
		return true
	}
	seen := map[string]bool{}
	total := len(id.Users)
	for i, u := range id.Users {
		f := fmt.Sprintf("identity.users[%d]", i)
		if checkName(f, u.Username) {
			if k := strings.ToLower(u.Username); seen[k] {
				ps.add(f+".username", "%q is listed twice", u.Username)
			} else {
				seen[k] = true
			}
		}
		if len(u.Name) > 254 || strings.ContainsFunc(u.Name, func(c rune) bool { return c < ' ' || c == 0x7f }) {
			ps.add(f+".name", "must be at most 254 printable characters")
		}
		checkGroups(f, u.Groups)
		checkHash(f, u.PasswordHash)
	}
	for i, g := range id.Generated {
		f := fmt.Sprintf("identity.generated[%d]", i)
		if checkName(f, g.Username) {
			if strings.Count(g.Username, "{n}") != 1 {
				ps.add(f+".username", "must hold {n} once, where the number goes, e.g. teacher{n}@example.edu, got %q", g.Username)
			} else if k := strings.ToLower(g.Username); seen[k] {
				ps.add(f+".username", "the pattern %q is listed twice", g.Username)
			} else {
				seen[k] = true
			}
		}
		if g.Count < 1 || g.Count > maxGenerated {
			ps.add(f+".count", "must be from 1 to %d, got %d", maxGenerated, g.Count)
		} else {
			total += g.Count
		}
		checkGroups(f, g.Groups)
		checkHash(f, g.PasswordHash)
	}
	if total > maxIdentityUsers {
		ps.add("identity.generated", "the directory may hold at most %d accounts, got %d", maxIdentityUsers, total)
	}
	if id.Enabled && total == 0 {
		ps.add("identity.users", "identity.enabled needs at least one account: list users, or generated accounts such as {username: teacher{n}@example.edu, count: 50, groups: [staff], password_hash: ...}")
	}
}

// Accounts expands the directory: the named users, then each generated
// run, in order. Names are as written.
func (id *Identity) Accounts() []IdentityUser {
	n := len(id.Users)
	for _, g := range id.Generated {
		n += max(g.Count, 0)
	}
	out := make([]IdentityUser, 0, n)
	out = append(out, id.Users...)
	for _, g := range id.Generated {
		for i := 1; i <= g.Count; i++ {
			out = append(out, IdentityUser{Username: strings.Replace(g.Username, "{n}", strconv.Itoa(i), 1), Groups: g.Groups, PasswordHash: g.PasswordHash})
		}
	}
	return out
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

func (r *InstanceRefresh) validate(ps *problems) {
	const fp = "fleet.instance_refresh."
	if r.MinHealthyPercentage < 0 || r.MinHealthyPercentage > 100 {
		ps.add(fp+"min_healthy_percentage", "must be from 0 to 100, got %d", r.MinHealthyPercentage)
	}
	if r.MaxHealthyPercentage < 100 || r.MaxHealthyPercentage > 200 {
		ps.add(fp+"max_healthy_percentage", "must be from 100 to 200, got %d", r.MaxHealthyPercentage)
	}
	if r.MinHealthyPercentage > r.MaxHealthyPercentage {
		ps.add(fp+"min_healthy_percentage", "must not exceed max_healthy_percentage (%d), got %d", r.MaxHealthyPercentage, r.MinHealthyPercentage)
	} else if r.MinHealthyPercentage == 100 && r.MaxHealthyPercentage == 100 {
		ps.add(fp+"max_healthy_percentage", "must be above 100 when min_healthy_percentage is 100, or no instance can be replaced; got 100")
	}
	if len(r.Checkpoints) == 0 {
		ps.add(fp+"checkpoints", "at least one is required, the last one 100")
	}
	for i, c := range r.Checkpoints {
		switch {
		case c < 1 || c > 100:
			ps.add(fmt.Sprintf("%scheckpoints[%d]", fp, i), "must be from 1 to 100, got %d", c)
		case i > 0 && c <= r.Checkpoints[i-1]:
			ps.add(fmt.Sprintf("%scheckpoints[%d]", fp, i), "must be above the one before (%d): checkpoints increase, got %d", r.Checkpoints[i-1], c)
		}
	}
	if n := len(r.Checkpoints); n > 0 && r.Checkpoints[n-1] != 100 {
		ps.add(fp+"checkpoints", "must end at 100 (the whole fleet), got %v", r.Checkpoints)
	}
	if r.Bake < 0 || r.Bake.D() > 2*time.Hour {
		ps.add(fp+"bake", "must be from 0 to 2h, got %s", r.Bake)
	}
	if r.InstanceWarmup < 0 || r.InstanceWarmup.D() > time.Hour {
		ps.add(fp+"instance_warmup", "must be from 0 to 1h, got %s", r.InstanceWarmup)
	}
	if r.HealthTimeout <= 0 || r.HealthTimeout.D() > time.Hour {
		ps.add(fp+"health_timeout", "must be from 1s to 1h, got %s", r.HealthTimeout)
	}
	if r.Max5xxIncrease < 0 || r.Max5xxIncrease > 100 {
		ps.add(fp+"max_5xx_increase", "must be from 0 to 100 percentage points, got %g", r.Max5xxIncrease)
	}
	if r.MaxP99Increase <= 0 {
		ps.add(fp+"max_p99_increase", "must be above 0, got %s", r.MaxP99Increase)
	}
	for i, a := range r.RollbackOn {
		if strings.TrimSpace(a) == "" {
			ps.add(fmt.Sprintf("%srollback_on[%d]", fp, i), "an alarm name is required")
		}
	}
}

// validateListeners refuses two of the region's host listeners on one
// address: the second would fail to start, or worse, a client would reach
// the wrong service.
func (s *Spec) validateListeners(ps *problems) {
	seen := map[string]string{}
	for _, l := range []struct{ field, addr string }{
		{"load_balancer.https", s.LoadBalancer.HTTPS}, {"load_balancer.http", s.LoadBalancer.HTTP},
		{"database.endpoint", s.Database.Endpoint}, {"secrets.listen", s.Secrets.Listen},
		{"objstore.listen", s.ObjStore.Listen}, {"edge.listen", s.Edge.Listen},
		{"identity.listen", s.Identity.Listen}, {"metrics.listen", s.Metrics.Listen}, {"console.listen", s.Console.Listen},
	} {
		if l.addr == "" {
			continue
		}
		if l.field == "identity.listen" && !s.Identity.Enabled {
			continue
		}
		if first, dup := seen[l.addr]; dup {
			ps.add(l.field, "%s is already %s's address; give each listener its own port", l.addr, first)
			continue
		}
		seen[l.addr] = l.field
	}
}
