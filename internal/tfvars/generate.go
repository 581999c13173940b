package tfvars

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/haven-platform/haven/internal/spec"
)

// Vars are the variables of examples/courses (and of the module), named as
// in Terraform. Marshal them with JSON for a terraform.tfvars.json file.
type Vars struct {
	Name                   string            `json:"name"`
	Region                 string            `json:"region"`
	AZs                    []string          `json:"azs"`
	InstanceType           string            `json:"instance_type"`
	DBInstanceClass        string            `json:"db_instance_class"`
	AppPort                int               `json:"app_port"`
	AppCommand             *[]string         `json:"app_command,omitempty"`
	AppEnvironment         map[string]string `json:"app_environment,omitempty"`
	HealthCheck            HealthCheckVars   `json:"health_check"`
	DeregistrationDelay    int               `json:"deregistration_delay"`
	SlowStart              int               `json:"slow_start"`
	LoadBalancingAlgorithm string            `json:"load_balancing_algorithm"`
	ALBIdleTimeout         int               `json:"alb_idle_timeout,omitempty"`
	MinSize                int               `json:"min_size"`
	MaxSize                int               `json:"max_size"`
	DesiredCapacity        int               `json:"desired_capacity"`
	HealthCheckGracePeriod int               `json:"health_check_grace_period"`
	HealthCheckType        string            `json:"health_check_type,omitempty"`
	TargetTracking         []TargetVars      `json:"target_tracking"`
	ScheduledActions       []ScheduledVars   `json:"scheduled_actions"`
	// InstanceRefresh is written whenever the input has one (always from a spec).
	InstanceRefresh         *InstanceRefreshVars `json:"instance_refresh,omitempty"`
	DBMultiAZ               bool                 `json:"db_multi_az"`
	DBName                  string               `json:"db_name,omitempty"`
	DBUsername              string               `json:"db_username,omitempty"`
	DBBackupRetentionPeriod int                  `json:"db_backup_retention_period"`
	DBBackupWindow          string               `json:"db_backup_window,omitempty"`
	DBMaintenanceWindow     string               `json:"db_maintenance_window,omitempty"`
	DBSecretRotationDays    int                  `json:"db_secret_rotation_days"`
	DBRotationStrategy      string               `json:"db_rotation_strategy,omitempty"`
	LogRetentionDays        int                  `json:"log_retention_days,omitempty"`
	Alarm5XXRatePercent     float64              `json:"alarm_5xx_rate_percent,omitempty"`
	AlarmP99LatencySeconds  float64              `json:"alarm_p99_latency_seconds,omitempty"`
	AlarmDBConnections      float64              `json:"alarm_db_connections,omitempty"`
	StaticPaths             []string             `json:"static_paths,omitempty"`
	SignedPaths             []string             `json:"signed_paths,omitempty"`
	// ExtraSecurityGroupRules are the spec's rules beyond the seed's chain.
	ExtraSecurityGroupRules []SecurityGroupRuleVars `json:"extra_security_group_rules,omitempty"`

	// Deployment values, written only when set.
	AMIID                     string   `json:"ami_id,omitempty"`
	ArtifactsBucket           string   `json:"artifacts_bucket,omitempty"`
	ArtifactKey               string   `json:"artifact_key,omitempty"`
	DBLoginsArtifactKey       string   `json:"db_logins_artifact_key,omitempty"`
	CertificateARN            string   `json:"certificate_arn,omitempty"`
	DomainName                string   `json:"domain_name,omitempty"`
	OriginDomainName          string   `json:"origin_domain_name,omitempty"`
	CloudFrontAliases         []string `json:"cloudfront_aliases,omitempty"`
	CloudFrontCertificateARN  string   `json:"cloudfront_certificate_arn,omitempty"`
	Route53ZoneID             string   `json:"route53_zone_id,omitempty"`
	ALBIngress                string   `json:"alb_ingress,omitempty"`
	CloudFrontPrefixListID    string   `json:"cloudfront_prefix_list_id,omitempty"`
	MaterialsSigningPublicKey string   `json:"materials_signing_public_key,omitempty"`
}

// SecurityGroupRuleVars is one element of the module's
// extra_security_group_rules list.
type SecurityGroupRuleVars struct {
	Group       string  `json:"group"`
	Direction   string  `json:"direction"`
	Protocol    string  `json:"protocol"`
	FromPort    int     `json:"from_port"`
	ToPort      int     `json:"to_port"`
	PeerGroup   *string `json:"peer_group"`
	CIDRIPv4    *string `json:"cidr_ipv4"`
	Description string  `json:"description"`
}

// HealthCheckVars is the module's health_check object; times in seconds.
type HealthCheckVars struct {
	Path               string `json:"path"`
	Interval           int    `json:"interval"`
	Timeout            int    `json:"timeout"`
	HealthyThreshold   int    `json:"healthy_threshold"`
	UnhealthyThreshold int    `json:"unhealthy_threshold"`
	Matcher            string `json:"matcher"`
}

// TargetVars is one element of the module's target_tracking list.
type TargetVars struct {
	Metric string  `json:"metric"`
	Target float64 `json:"target"`
	Warmup int     `json:"warmup"`
}

// InstanceRefreshVars is the module's instance_refresh object; times in
// seconds, alarms by haven name.
type InstanceRefreshVars struct {
	MinHealthyPercentage  int   `json:"min_healthy_percentage"`
	MaxHealthyPercentage  int   `json:"max_healthy_percentage"`
	CheckpointPercentages []int `json:"checkpoint_percentages"`
	CheckpointDelay       int   `json:"checkpoint_delay"`
	InstanceWarmup        int   `json:"instance_warmup"`
	AutoRollback          bool  `json:"auto_rollback"`
	// RollbackAlarms is null when none is named (the module's default []).
	RollbackAlarms []string `json:"rollback_alarms"`
}

// RefreshAlarms are the haven alarm names the module has a CloudWatch alarm
// for, which an instance refresh can watch (compute.tf local.alarm_by_name).
var RefreshAlarms = []string{"alb-5xx-rate", "healthy-hosts-below-min", "target-p99-latency", "db-cpu", "db-free-storage", "db-connections", "asg-at-max"}

// maxCheckpointDelay is the longest checkpoint delay AWS takes (48 h).
const maxCheckpointDelay = 172800

// ScheduledVars is one element of the module's scheduled_actions list.
type ScheduledVars struct {
	Name            string  `json:"name"`
	Recurrence      string  `json:"recurrence"`
	TimeZone        *string `json:"time_zone,omitempty"`
	MinSize         *int    `json:"min_size,omitempty"`
	MaxSize         *int    `json:"max_size,omitempty"`
	DesiredCapacity *int    `json:"desired_capacity,omitempty"`
	// StartTime and EndTime bound the recurring action, in UTC
	// ("2026-11-30T06:00:00Z"), as aws_autoscaling_schedule takes them.
	StartTime *string `json:"start_time,omitempty"`
	EndTime   *string `json:"end_time,omitempty"`
}

// Warning records a value changed to fit AWS, or left out of the
// variables because the module cannot take it (Variable or To empty).
type Warning struct {
	// Field is the Input field path, e.g. "HealthCheck.Interval" or
	// "TargetTracking[0].Warmup".
	Field string
	// Variable is the Terraform variable path, e.g. "health_check.interval".
	Variable string
	// From and To are the value given and the value written.
	From, To string
	// Reason says which AWS rule forced the change.
	Reason string
}

// String renders the warning for a terminal.
func (w Warning) String() string {
	if w.To == "" {
		return fmt.Sprintf("%s: %s is not deployed to AWS: %s", w.Field, w.From, w.Reason)
	}
	if w.From == w.To {
		return fmt.Sprintf("%s: %s is kept in %s (%s)", w.Field, w.From, w.Variable, w.Reason)
	}
	return fmt.Sprintf("%s: %s becomes %s in %s (%s)", w.Field, w.From, w.To, w.Variable, w.Reason)
}

// MinUsefulWarmup is the shortest instance warmup exported without a
// warning: an EC2 instance takes about a minute to boot and start the app.
const MinUsefulWarmup = 60 * time.Second

// Problem is one value the module cannot take, naming its field.
type Problem struct {
	// Field is the Input field path (from Generate) or the spec path (from
	// GenerateSpec).
	Field string `json:"field"`
	// Msg says what is wrong and what AWS allows.
	Msg string `json:"message"`
}

func (p Problem) String() string { return p.Field + ": " + p.Msg }

// Error lists every value of one generation that AWS cannot take.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("generate tfvars: ")
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// JSON renders vars as a terraform.tfvars.json document: keys sorted,
// two-space indent, trailing newline. Equal Vars give equal bytes.
func (v Vars) JSON() ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("marshal tfvars: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return nil, fmt.Errorf("decode tfvars: %w", err)
	}
	out, err := json.MarshalIndent(tree, "", "  ") // maps marshal with sorted keys
	if err != nil {
		return nil, fmt.Errorf("marshal tfvars: %w", err)
	}
	return append(out, '\n'), nil
}

// AWS defaults and limits.
const (
	defaultInstanceType    = "t4g.small"
	defaultDBInstanceClass = "db.t4g.medium"
	defaultHealthPath      = "/"
	defaultHealthInterval  = 30 * time.Second
	defaultHealthTimeout   = 5 * time.Second
	defaultHealthy         = 5
	defaultUnhealthy       = 2
	defaultMatcher         = "200"

	day = 24 * time.Hour

	// maxName is the longest name the module takes: it prefixes every
	// resource name, and AWS caps some at 32 characters (load balancers,
	// target groups).
	maxName = 20
	// masterUser is the module's RDS master user (db_master_username).
	masterUser = "haven_admin"
)

var (
	nameRe    = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
	dbNameRe  = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)
	dbUserRe  = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,60}$`)
	envNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// reservedRoles are role names the app's owner role may not take on RDS.
	reservedRoles = map[string]bool{"postgres": true, "rdsadmin": true, "rds_superuser": true, "rds_replication": true,
		"rds_password": true, "rds_iam": true, masterUser: true}
	// awsCredentialEnv are the variables that would hand the SDK a static credential.
	awsCredentialEnv = map[string]bool{"AWS_ACCESS_KEY_ID": true, "AWS_SECRET_ACCESS_KEY": true, "AWS_SESSION_TOKEN": true}
	regionRe         = regexp.MustCompile(`^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]+$`)
	actionRe         = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)
	windowRe         = regexp.MustCompile(`^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])$`)
	amiRe            = regexp.MustCompile(`^ami-[0-9a-f]{8,17}$`)
	dnsNameRe        = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$`)
	cfCertRe         = regexp.MustCompile(`^arn:aws[a-z-]*:acm:us-east-1:[0-9]{12}:certificate/`)
	prefixRe         = regexp.MustCompile(`^pl-[0-9a-f]{8,17}$`)
	strategies       = map[string]bool{"alternating_users": true, "single_user": true}
	// logRetentionDays are the retention periods CloudWatch Logs accepts.
	logRetentionDays = []int{1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}
	metricName       = map[string]bool{"cpu": true, "request_count": true}
	algorithms       = map[string]bool{"round_robin": true, "least_outstanding_requests": true}
)

// generator accumulates warnings and problems while mapping one Input.
type generator struct {
	warnings []Warning
	problems []Problem
}

func (g *generator) errorf(field, format string, args ...any) {
	g.problems = append(g.problems, Problem{Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (g *generator) warn(field, variable, from, to, reason string) {
	g.warnings = append(g.warnings, Warning{Field: field, Variable: variable, From: from, To: to, Reason: reason})
}

// seconds converts d to whole seconds within [lo, hi] (hi < 0: no upper
// bound), rounding up and clamping with a warning.
func (g *generator) seconds(field, variable string, d time.Duration, lo, hi int) int {
	if d < 0 {
		g.errorf(field, "must not be negative, got %s", d)
		return lo
	}
	s := int((d + time.Second - 1) / time.Second)
	switch {
	case s < lo:
		g.warn(field, variable, d.String(), fmtSeconds(lo), fmt.Sprintf("AWS minimum is %s", fmtSeconds(lo)))
		return lo
	case hi >= 0 && s > hi:
		g.warn(field, variable, d.String(), fmtSeconds(hi), fmt.Sprintf("AWS maximum is %s", fmtSeconds(hi)))
		return hi
	case time.Duration(s)*time.Second != d:
		g.warn(field, variable, d.String(), fmtSeconds(s), "AWS takes whole seconds; rounded up")
	}
	return s
}

// count clamps n to [lo, hi] with a warning.
func (g *generator) count(field, variable string, n, lo, hi int) int {
	switch {
	case n < lo:
		g.warn(field, variable, strconv.Itoa(n), strconv.Itoa(lo), fmt.Sprintf("AWS allows %d–%d", lo, hi))
		return lo
	case n > hi:
		g.warn(field, variable, strconv.Itoa(n), strconv.Itoa(hi), fmt.Sprintf("AWS allows %d–%d", lo, hi))
		return hi
	}
	return n
}

// days converts d to whole days within [lo, hi], rounding up with a warning.
func (g *generator) days(field, variable string, d time.Duration, lo, hi int, zeroReason string) int {
	if d < 0 {
		g.errorf(field, "must not be negative, got %s", d)
		return lo
	}
	n := int((d + day - 1) / day)
	switch {
	case n < lo:
		reason := fmt.Sprintf("AWS allows %d–%d days", lo, hi)
		if d == 0 && zeroReason != "" {
			reason = zeroReason
		}
		g.warn(field, variable, fmtDays(d), fmt.Sprintf("%dd", lo), reason)
		return lo
	case n > hi:
		g.warn(field, variable, fmtDays(d), fmt.Sprintf("%dd", hi), fmt.Sprintf("AWS allows %d–%d days", lo, hi))
		return hi
	case time.Duration(n)*day != d:
		g.warn(field, variable, fmtDays(d), fmt.Sprintf("%dd", n), "AWS takes whole days; rounded up")
	}
	return n
}

func fmtSeconds(s int) string { return (time.Duration(s) * time.Second).String() }

func fmtDays(d time.Duration) string {
	if d%day == 0 {
		return fmt.Sprintf("%dd", d/day)
	}
	return d.String()
}

// Generate maps in onto the module's variables. Values outside the ranges
// AWS accepts are clamped and reported as warnings; values that cannot be
// mapped at all are an *Error with one Problem per value, each naming its
// Input field.
func Generate(in Input) (Vars, []Warning, error) {
	g := &generator{}
	v := Vars{
		Name:             in.Name,
		Region:           in.Region,
		AZs:              append([]string(nil), in.AZs...),
		InstanceType:     in.InstanceType,
		DBInstanceClass:  in.DBInstanceClass,
		AppPort:          in.AppPort,
		MinSize:          in.Min,
		MaxSize:          in.Max,
		DesiredCapacity:  in.Desired,
		DBMultiAZ:        in.MultiAZ,
		TargetTracking:   []TargetVars{},
		ScheduledActions: []ScheduledVars{},
		StaticPaths:      append([]string(nil), in.StaticPaths...),
		SignedPaths:      append([]string(nil), in.SignedPaths...),
	}

	g.identity(in, &v)
	g.healthCheck(in.HealthCheck, &v.HealthCheck)
	g.targetGroup(in, &v)
	g.fleet(in, &v)
	g.instanceRefresh(in.InstanceRefresh, &v)
	g.database(in, &v)
	g.deployment(in.Deployment, &v)
	g.securityGroups(in.SecurityGroupRules, &v)
	g.alarms(in, &v)

	if len(g.problems) > 0 {
		return Vars{}, g.warnings, &Error{Problems: g.problems}
	}
	return v, g.warnings, nil
}

func (g *generator) identity(in Input, v *Vars) {
	switch {
	case len(in.Name) > maxName:
		g.errorf("Name", "AWS takes at most %d characters (the module starts every resource name with it, and AWS limits those names), got %q (%d characters)", maxName, in.Name, len(in.Name))
	case !nameRe.MatchString(in.Name):
		g.errorf("Name", "must be lower-case letters, digits or hyphens starting with a letter, got %q", in.Name)
	case strings.Contains(in.Name, "--") || strings.HasSuffix(in.Name, "-"):
		g.errorf("Name", "must not end with a hyphen or hold two in a row: RDS refuses the database identifier %q built from it, got %q", in.Name+"-db", in.Name)
	}
	if !regionRe.MatchString(in.Region) {
		g.errorf("Region", "must be an AWS region such as eu-west-1, got %q", in.Region)
	}
	if len(in.AZs) < 2 {
		g.errorf("AZs", "must list at least two Availability Zones, got %d", len(in.AZs))
	}
	seen := map[string]bool{}
	for i, az := range in.AZs {
		if seen[az] {
			g.errorf(fmt.Sprintf("AZs[%d]", i), "duplicate Availability Zone %q", az)
		}
		seen[az] = true
		if in.Region != "" && (!strings.HasPrefix(az, in.Region) || len(az) == len(in.Region)) {
			g.errorf(fmt.Sprintf("AZs[%d]", i), "must be an Availability Zone of %s (e.g. %sa), got %q", in.Region, in.Region, az)
		}
	}
	if v.InstanceType == "" {
		v.InstanceType = defaultInstanceType
	}
	if v.DBInstanceClass == "" {
		v.DBInstanceClass = defaultDBInstanceClass
	}
	if !strings.HasPrefix(v.DBInstanceClass, "db.") {
		g.errorf("DBInstanceClass", "must be an RDS class such as db.t4g.medium, got %q", v.DBInstanceClass)
	}
	if in.AppPort < 1 || in.AppPort > 65535 {
		g.errorf("AppPort", "must be 1–65535, got %d", in.AppPort)
	}
	if in.AppCommand != nil {
		args := append([]string{}, in.AppCommand...)
		v.AppCommand = &args
	}
	g.appEnv(in.AppEnv, v)
	for i, p := range in.StaticPaths {
		if !strings.HasPrefix(p, "/") {
			g.errorf(fmt.Sprintf("StaticPaths[%d]", i), "must start with /, got %q", p)
		}
	}
	if len(v.StaticPaths) == 0 {
		v.StaticPaths = nil
	}
	for i, p := range in.SignedPaths {
		if !slices.Contains(in.StaticPaths, p) {
			g.errorf(fmt.Sprintf("SignedPaths[%d]", i), "must be one of StaticPaths %v (the module signs only paths it serves from the bucket), got %q", in.StaticPaths, p)
		}
	}
	if len(v.SignedPaths) == 0 {
		v.SignedPaths = nil
	}
}

// appEnv copies the app's environment, leaving out what would point the SDK
// away from AWS (with a warning) and refusing credentials.
func (g *generator) appEnv(env map[string]string, v *Vars) {
	for _, k := range slices.Sorted(maps.Keys(env)) {
		field := "AppEnv." + k
		switch {
		case !envNameRe.MatchString(k):
			g.errorf(field, "must be a valid environment variable name")
		case awsCredentialEnv[k]:
			g.errorf(field, "is an AWS credential; instances get theirs from the instance profile")
		case strings.HasPrefix(k, "AWS_ENDPOINT_URL") || k == "AWS_EC2_METADATA_SERVICE_ENDPOINT":
			g.warn(field, "app_environment", env[k], "", "an AWS endpoint override; on AWS the SDK reaches AWS's own endpoints, so the module refuses it")
		case strings.ContainsRune(env[k], 0):
			g.errorf(field, "must not contain a NUL byte")
		default:
			if v.AppEnvironment == nil {
				v.AppEnvironment = map[string]string{}
			}
			v.AppEnvironment[k] = env[k]
		}
	}
}

func (g *generator) healthCheck(hc HealthCheck, out *HealthCheckVars) {
	out.Path = hc.Path
	if out.Path == "" {
		out.Path = defaultHealthPath
	}
	if !strings.HasPrefix(out.Path, "/") || len(out.Path) > 1024 {
		g.errorf("HealthCheck.Path", "must start with / and be at most 1024 characters, got %q", hc.Path)
	}

	interval, timeout := hc.Interval, hc.Timeout
	if interval == 0 {
		interval = defaultHealthInterval
	}
	if timeout == 0 {
		timeout = defaultHealthTimeout
	}
	out.Interval = g.seconds("HealthCheck.Interval", "health_check.interval", interval, 5, 300)
	out.Timeout = g.seconds("HealthCheck.Timeout", "health_check.timeout", timeout, 2, 120)
	if out.Timeout >= out.Interval {
		to := out.Interval - 1
		g.warn("HealthCheck.Timeout", "health_check.timeout", fmtSeconds(out.Timeout), fmtSeconds(to),
			fmt.Sprintf("AWS requires the timeout to be below the interval (%s)", fmtSeconds(out.Interval)))
		out.Timeout = to
	}

	healthy, unhealthy := hc.Healthy, hc.Unhealthy
	if healthy == 0 {
		healthy = defaultHealthy
	}
	if unhealthy == 0 {
		unhealthy = defaultUnhealthy
	}
	out.HealthyThreshold = g.count("HealthCheck.Healthy", "health_check.healthy_threshold", healthy, 2, 10)
	out.UnhealthyThreshold = g.count("HealthCheck.Unhealthy", "health_check.unhealthy_threshold", unhealthy, 2, 10)

	out.Matcher = hc.Matcher.String()
	if hc.Matcher.IsZero() {
		out.Matcher = defaultMatcher
	}
}

func (g *generator) targetGroup(in Input, v *Vars) {
	v.DeregistrationDelay = g.seconds("DeregistrationDelay", "deregistration_delay", in.DeregistrationDelay, 0, 3600)

	v.LoadBalancingAlgorithm = in.Algorithm
	if v.LoadBalancingAlgorithm == "" {
		v.LoadBalancingAlgorithm = "round_robin"
	}
	if !algorithms[v.LoadBalancingAlgorithm] {
		g.errorf("Algorithm", "must be round_robin or least_outstanding_requests, got %q", in.Algorithm)
	}

	if in.SlowStart != 0 {
		v.SlowStart = g.seconds("SlowStart", "slow_start", in.SlowStart, 30, 900)
	}
	if in.IdleTimeout != 0 {
		v.ALBIdleTimeout = g.seconds("IdleTimeout", "alb_idle_timeout", in.IdleTimeout, 1, 4000)
	}
	if v.SlowStart != 0 && v.LoadBalancingAlgorithm == "least_outstanding_requests" {
		g.warn("SlowStart", "slow_start", fmtSeconds(v.SlowStart), "0s",
			"AWS does not combine slow start with least_outstanding_requests")
		v.SlowStart = 0
	}
}

func (g *generator) fleet(in Input, v *Vars) {
	switch {
	case in.Min < 0:
		g.errorf("Min", "must be ≥ 0, got %d", in.Min)
	case in.Max < 1:
		g.errorf("Max", "must be ≥ 1, got %d", in.Max)
	case in.Max < in.Min:
		g.errorf("Max", "must be ≥ Min (%d), got %d", in.Min, in.Max)
	case in.Desired < in.Min || in.Desired > in.Max:
		g.errorf("Desired", "must lie within Min–Max (%d–%d), got %d", in.Min, in.Max, in.Desired)
	}
	v.HealthCheckGracePeriod = g.seconds("GracePeriod", "health_check_grace_period", in.GracePeriod, 0, -1)
	switch strings.ToLower(in.HealthCheckType) {
	case "":
	case "elb", "ec2":
		v.HealthCheckType = strings.ToUpper(in.HealthCheckType)
	default:
		g.errorf("HealthCheckType", "must be elb or ec2, got %q", in.HealthCheckType)
	}

	seen := map[string]bool{}
	for i, tt := range in.TargetTracking {
		field := fmt.Sprintf("TargetTracking[%d]", i)
		if !metricName[tt.Metric] {
			g.errorf(field+".Metric", "must be cpu or request_count, got %q", tt.Metric)
		}
		if seen[tt.Metric] {
			g.errorf(field+".Metric", "duplicate policy for metric %q", tt.Metric)
		}
		seen[tt.Metric] = true
		if tt.Target <= 0 || (tt.Metric == "cpu" && tt.Target > 100) {
			g.errorf(field+".Target", "must be > 0 (and ≤ 100 for cpu), got %g", tt.Target)
		}
		warmup := g.seconds(field+".Warmup", fmt.Sprintf("target_tracking[%d].warmup", i), tt.Warmup, 0, -1)
		if tt.Warmup >= 0 && tt.Warmup < MinUsefulWarmup {
			g.warn(field+".Warmup", fmt.Sprintf("target_tracking[%d].warmup", i), fmtSeconds(warmup), fmtSeconds(warmup),
				"under 60 s: an EC2 instance takes about a minute to boot and start the app, so its first metrics would drive scaling; time_scale shortens the warmup locally, so write the real value here")
		}
		v.TargetTracking = append(v.TargetTracking, TargetVars{Metric: tt.Metric, Target: tt.Target, Warmup: warmup})
	}

	names := map[string]bool{}
	for i, s := range in.Scheduled {
		field := fmt.Sprintf("Scheduled[%d]", i)
		if !actionRe.MatchString(s.Name) {
			g.errorf(field+".Name", "must be letters, digits, - or _, got %q", s.Name)
		}
		if names[s.Name] {
			g.errorf(field+".Name", "duplicate scheduled action %q", s.Name)
		}
		names[s.Name] = true
		if s.Cron.IsZero() {
			g.errorf(field+".Cron", "is required: a cron expression such as \"0 7 * * 1-5\"")
		}
		if s.TimeZone != "" {
			if _, err := time.LoadLocation(s.TimeZone); err != nil {
				g.errorf(field+".TimeZone", "must be an IANA time zone, got %q", s.TimeZone)
			}
		}
		if s.Min == nil && s.Max == nil && s.Desired == nil {
			g.errorf(field, "must set at least one of Min, Max, Desired")
		}
		for _, n := range []struct {
			name string
			p    *int
		}{{"Min", s.Min}, {"Max", s.Max}, {"Desired", s.Desired}} {
			if n.p != nil && *n.p < 0 {
				g.errorf(field+"."+n.name, "must be ≥ 0, got %d", *n.p)
			}
		}
		if s.Min != nil && s.Max != nil && *s.Min > *s.Max {
			g.errorf(field+".Max", "must be ≥ Min (%d), got %d", *s.Min, *s.Max)
		}
		sv := ScheduledVars{Name: s.Name, Recurrence: s.Cron.Fields(), MinSize: cloneInt(s.Min), MaxSize: cloneInt(s.Max), DesiredCapacity: cloneInt(s.Desired)}
		if s.TimeZone != "" {
			tz := s.TimeZone
			sv.TimeZone = &tz
		}
		if !s.Start.IsZero() && !s.End.IsZero() && !s.End.After(s.Start) {
			g.errorf(field+".End", "must be after Start (%s), got %s", s.Start.UTC().Format(time.RFC3339), s.End.UTC().Format(time.RFC3339))
		}
		if !s.Start.IsZero() {
			st := s.Start.UTC().Format(time.RFC3339)
			sv.StartTime = &st
		}
		if !s.End.IsZero() {
			et := s.End.UTC().Format(time.RFC3339)
			sv.EndTime = &et
		}
		v.ScheduledActions = append(v.ScheduledActions, sv)
	}
}

// instanceRefresh maps the refresh preferences, refusing what AWS cannot
// take and raising a min healthy percentage more than 100 below the max.
func (g *generator) instanceRefresh(r *InstanceRefresh, v *Vars) {
	if r == nil {
		return
	}
	const f = "InstanceRefresh."
	out := &InstanceRefreshVars{MinHealthyPercentage: r.MinHealthy, MaxHealthyPercentage: r.MaxHealthy,
		CheckpointPercentages: append([]int{}, r.Checkpoints...), AutoRollback: r.AutoRollback}
	switch {
	case r.MinHealthy < 0 || r.MinHealthy > 100:
		g.errorf(f+"MinHealthy", "must be 0–100, got %d", r.MinHealthy)
	case r.MaxHealthy < 100 || r.MaxHealthy > 200:
		g.errorf(f+"MaxHealthy", "must be 100–200, got %d", r.MaxHealthy)
	case r.MinHealthy > r.MaxHealthy:
		g.errorf(f+"MinHealthy", "must not exceed MaxHealthy (%d), got %d", r.MaxHealthy, r.MinHealthy)
	case r.MinHealthy == 100 && r.MaxHealthy == 100:
		g.errorf(f+"MaxHealthy", "must be above 100 when MinHealthy is 100, or no instance can be replaced")
	case r.MaxHealthy-r.MinHealthy > 100:
		out.MinHealthyPercentage = r.MaxHealthy - 100
		g.warn(f+"MinHealthy", "instance_refresh.min_healthy_percentage", strconv.Itoa(r.MinHealthy), strconv.Itoa(out.MinHealthyPercentage),
			fmt.Sprintf("AWS allows at most 100 between min and max healthy percentage (max is %d); raised, so more stays in service", r.MaxHealthy))
	}
	for i, c := range r.Checkpoints {
		if c < 1 || c > 100 || (i > 0 && c <= r.Checkpoints[i-1]) {
			g.errorf(f+"Checkpoints", "must be strictly increasing, each 1–100, got %v", r.Checkpoints)
			break
		}
	}
	if n := len(r.Checkpoints); n == 0 || r.Checkpoints[n-1] != 100 {
		g.errorf(f+"Checkpoints", "must end at 100 (the whole group), got %v", r.Checkpoints)
	}
	out.CheckpointDelay = g.seconds(f+"Bake", "instance_refresh.checkpoint_delay", r.Bake, 0, maxCheckpointDelay)
	out.InstanceWarmup = g.seconds(f+"Warmup", "instance_refresh.instance_warmup", r.Warmup, 0, -1)
	for _, a := range r.RollbackOn {
		switch {
		case slices.Contains(out.RollbackAlarms, a):
		case slices.Contains(RefreshAlarms, a):
			out.RollbackAlarms = append(out.RollbackAlarms, a)
		default:
			g.warn(f+"RollbackOn", "instance_refresh.rollback_alarms", a, "",
				fmt.Sprintf("the module creates no CloudWatch alarm of that name for the refresh to watch (it has %s; db-failover is an RDS event there)", strings.Join(RefreshAlarms, ", ")))
		}
	}
	v.InstanceRefresh = out
}

func cloneInt(p *int) *int {
	if p == nil {
		return nil
	}
	n := *p
	return &n
}

func (g *generator) database(in Input, v *Vars) {
	zeroReason := "AWS allows 1–35 days; 0 would turn backups off"
	if in.MultiAZ {
		zeroReason = "Multi-AZ requires backups; AWS allows 1–35 days"
	}
	v.DBBackupRetentionPeriod = g.days("BackupRetention", "db_backup_retention_period", in.BackupRetention, 1, 35, zeroReason)

	if in.DBName != "" && !dbNameRe.MatchString(in.DBName) {
		g.errorf("DBName", "RDS takes a letter, then letters, digits or underscores, at most 63 characters, got %q", in.DBName)
	}
	v.DBName = in.DBName
	switch u := in.DBUser; {
	case u == "":
	case !dbUserRe.MatchString(u):
		g.errorf("DBUser", "must be a lower-case SQL identifier of at most 61 characters (the logins %s_a and %s_b must fit PostgreSQL's 63), got %q", u, u, u)
	case reservedRoles[u] || strings.HasPrefix(u, "pg_"):
		g.errorf("DBUser", "%q is a role RDS or the module already has (the master is %s; postgres, rdsadmin, rds_superuser, rds_replication, rds_password, rds_iam and pg_* belong to the engine)", u, masterUser)
	}
	v.DBUsername = in.DBUser

	if in.BackupWindow != "" {
		m := windowRe.FindStringSubmatch(in.BackupWindow)
		if m == nil {
			g.errorf("BackupWindow", "must be hh:mm-hh:mm in UTC, got %q", in.BackupWindow)
		} else {
			start := atoi(m[1])*60 + atoi(m[2])
			end := atoi(m[3])*60 + atoi(m[4])
			if (end-start+24*60)%(24*60) < 30 {
				g.errorf("BackupWindow", "must be at least 30 minutes long, got %q", in.BackupWindow)
			}
		}
		v.DBBackupWindow = in.BackupWindow
	}

	if in.MaintenanceWindow != "" {
		if _, _, err := spec.ParseMaintenanceWindow(in.MaintenanceWindow); err != nil {
			g.errorf("MaintenanceWindow", "%v", err)
		} else if in.BackupWindow != "" && spec.MaintenanceOverlapsBackup(in.MaintenanceWindow, in.BackupWindow) {
			g.errorf("MaintenanceWindow", "must not overlap BackupWindow (%s every day), got %q", in.BackupWindow, in.MaintenanceWindow)
		}
		v.DBMaintenanceWindow = in.MaintenanceWindow
	}

	// 0 is "no rotation" on both sides; the module then creates no schedule.
	if in.Rotation != 0 {
		v.DBSecretRotationDays = g.days("Rotation", "db_secret_rotation_days", in.Rotation, 1, 1000, "")
	}
	if in.RotationStrategy != "" && !strategies[in.RotationStrategy] {
		g.errorf("RotationStrategy", "must be alternating_users or single_user, got %q", in.RotationStrategy)
	}
	v.DBRotationStrategy = in.RotationStrategy

	if in.LogRetention != 0 {
		v.LogRetentionDays = g.logRetention(in.LogRetention)
	}
}

// logRetention rounds d up to the next retention CloudWatch Logs accepts,
// warning when the value changes.
func (g *generator) logRetention(d time.Duration) int {
	const field, variable = "LogRetention", "log_retention_days"
	if d < 0 {
		g.errorf(field, "must not be negative, got %s", d)
		return logRetentionDays[0]
	}
	n := int((d + day - 1) / day)
	for _, allowed := range logRetentionDays {
		if allowed >= n {
			if allowed != n || time.Duration(n)*day != d {
				g.warn(field, variable, fmtDays(d), fmt.Sprintf("%dd", allowed),
					"CloudWatch Logs keeps 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, … or 3653 days; rounded up")
			}
			return allowed
		}
	}
	last := logRetentionDays[len(logRetentionDays)-1]
	g.warn(field, variable, fmtDays(d), fmt.Sprintf("%dd", last), fmt.Sprintf("CloudWatch Logs keeps at most %d days", last))
	return last
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// alarms writes the seed's alarm thresholds; 0 keeps the module default.
func (g *generator) alarms(in Input, v *Vars) {
	for _, a := range []struct {
		field string
		val   float64
		out   *float64
		max   float64
	}{{"Alarm5XXPercent", in.Alarm5XXPercent, &v.Alarm5XXRatePercent, 100}, {"AlarmP99LatencySeconds", in.AlarmP99LatencySeconds, &v.AlarmP99LatencySeconds, 1e9},
		{"AlarmDBConnections", in.AlarmDBConnections, &v.AlarmDBConnections, 1e9}} {
		switch {
		case a.val == 0:
		case !(a.val > 0 && a.val <= a.max):
			g.errorf(a.field, "must be above 0 and at most %g, got %g", a.max, a.val)
		default:
			*a.out = a.val
		}
	}
}

func (g *generator) deployment(d Deployment, v *Vars) {
	if d.AMI != "" && !amiRe.MatchString(d.AMI) {
		g.errorf("Deployment.AMI", "must look like ami-0123456789abcdef0, got %q", d.AMI)
	}
	if (d.ArtifactsBucket == "") != (d.ArtifactKey == "") {
		g.errorf("Deployment.ArtifactKey", "ArtifactsBucket and ArtifactKey must be set together")
	}
	if d.CertificateARN != "" && !strings.HasPrefix(d.CertificateARN, "arn:") {
		g.errorf("Deployment.CertificateARN", "must be an ACM certificate ARN, got %q", d.CertificateARN)
	}
	if d.DBLoginsArtifactKey != "" && d.ArtifactsBucket == "" {
		g.errorf("Deployment.DBLoginsArtifactKey", "needs ArtifactsBucket (the zip lives next to the app binary)")
	}
	if d.OriginDomainName != "" && (!dnsNameRe.MatchString(d.OriginDomainName) || strings.HasSuffix(d.OriginDomainName, ".elb.amazonaws.com")) {
		g.errorf("Deployment.OriginDomainName", "must be a lower-case DNS name of yours that the ALB certificate covers (not the ALB's *.elb.amazonaws.com name), got %q", d.OriginDomainName)
	}
	for i, a := range d.CloudFrontAliases {
		if !dnsNameRe.MatchString(a) {
			g.errorf(fmt.Sprintf("Deployment.CloudFrontAliases[%d]", i), "must be a lower-case DNS name, got %q", a)
		}
		if a == d.OriginDomainName {
			g.errorf(fmt.Sprintf("Deployment.CloudFrontAliases[%d]", i), "must differ from OriginDomainName %q: the alias resolves to CloudFront, the origin name to the ALB", a)
		}
	}
	if d.CloudFrontCertificateARN != "" && !cfCertRe.MatchString(d.CloudFrontCertificateARN) {
		g.errorf("Deployment.CloudFrontCertificateARN", "must be an ACM certificate ARN in us-east-1 (CloudFront reads certificates only there), got %q", d.CloudFrontCertificateARN)
	}
	if d.ALBIngress != "" && d.ALBIngress != "cloudfront" && d.ALBIngress != "internet" {
		g.errorf("Deployment.ALBIngress", "must be cloudfront or internet, got %q", d.ALBIngress)
	}
	if d.CloudFrontPrefixListID != "" && !prefixRe.MatchString(d.CloudFrontPrefixListID) {
		g.errorf("Deployment.CloudFrontPrefixListID", "must look like pl-0123abcd, got %q", d.CloudFrontPrefixListID)
	}
	if k := strings.TrimSpace(d.SigningPublicKey); k != "" {
		switch {
		case strings.Contains(k, "PRIVATE KEY"):
			// Never echo it: it is a secret that must not reach a tfvars file.
			g.errorf("Deployment.SigningPublicKey", "holds a private key; pass only the public key (openssl pkey -pubout) and put the private key in the signing key secret")
		case !strings.HasPrefix(k, "-----BEGIN PUBLIC KEY-----") || !strings.HasSuffix(k, "-----END PUBLIC KEY-----"):
			g.errorf("Deployment.SigningPublicKey", "must be a PEM public key (-----BEGIN PUBLIC KEY-----)")
		}
	}
	v.AMIID = d.AMI
	v.ArtifactsBucket = d.ArtifactsBucket
	v.ArtifactKey = d.ArtifactKey
	v.DBLoginsArtifactKey = d.DBLoginsArtifactKey
	v.CertificateARN = d.CertificateARN
	v.DomainName = d.DomainName
	v.OriginDomainName = d.OriginDomainName
	v.CloudFrontAliases = append([]string(nil), d.CloudFrontAliases...)
	v.CloudFrontCertificateARN = d.CloudFrontCertificateARN
	v.Route53ZoneID = d.Route53ZoneID
	v.ALBIngress = d.ALBIngress
	v.CloudFrontPrefixListID = d.CloudFrontPrefixListID
	v.MaterialsSigningPublicKey = d.SigningPublicKey
}

// securityGroups writes the rules added to the module's security groups.
func (g *generator) securityGroups(rules []SecurityGroupRule, v *Vars) {
	groups := map[string]bool{"alb-sg": true, "app-sg": true, "db-sg": true, "vpce-sg": true}
	for i, r := range rules {
		field := fmt.Sprintf("SecurityGroupRules[%d]", i)
		out := SecurityGroupRuleVars{Group: r.Group, Direction: r.Direction, Protocol: r.Protocol, FromPort: r.FromPort, ToPort: r.ToPort, Description: r.Description}
		if out.Protocol == "" {
			out.Protocol = "tcp"
		}
		if out.ToPort == 0 {
			out.ToPort = out.FromPort
		}
		switch {
		case !groups[r.Group]:
			g.errorf(field+".Group", "must be alb-sg, app-sg, db-sg or vpce-sg, got %q", r.Group)
		case r.Direction != "ingress" && r.Direction != "egress":
			g.errorf(field+".Direction", "must be ingress or egress, got %q", r.Direction)
		case out.Protocol != "tcp" && out.Protocol != "udp":
			g.errorf(field+".Protocol", "must be tcp or udp, got %q", r.Protocol)
		case out.FromPort < 1 || out.ToPort < out.FromPort || out.ToPort > 65535:
			g.errorf(field+".FromPort", "must be a port range within 1-65535, got %d-%d", out.FromPort, out.ToPort)
		case (r.PeerGroup == "") == (r.CIDR == ""):
			g.errorf(field, "must name exactly one peer: a group or a CIDR")
		case r.PeerGroup != "" && !groups[r.PeerGroup]:
			g.errorf(field+".PeerGroup", "must be alb-sg, app-sg, db-sg or vpce-sg, got %q", r.PeerGroup)
		default:
			if r.PeerGroup != "" {
				out.PeerGroup = &rules[i].PeerGroup
			} else {
				out.CIDRIPv4 = &rules[i].CIDR
			}
			v.ExtraSecurityGroupRules = append(v.ExtraSecurityGroupRules, out)
		}
	}
}
