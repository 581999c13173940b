// Package tfvars maps a haven deployment description onto the variables of
// the deploy/terraform module, clamping values to the ranges AWS accepts.
package tfvars

import (
	"strings"
	"time"

	"github.com/haven-platform/haven/internal/spec"
)

// Input is what the AWS module needs from haven.yaml. The integrator fills it
// from the spec; every zero value means "use the documented default".
type Input struct {
	// Name prefixes every AWS resource: lower-case letters, digits and
	// hyphens, starting with a letter, at most 20 characters. Required.
	Name string
	// Region is the AWS region, e.g. "eu-west-1". Required.
	Region string
	// AZs are full Availability Zone names, at least two and distinct, each
	// in Region. AZNames builds them from haven zone letters.
	AZs []string
	// InstanceType is the EC2 instance type. Default "t4g.small".
	InstanceType string
	// DBInstanceClass is the RDS instance class. Default "db.t4g.medium".
	DBInstanceClass string
	// AppPort is the port the app listens on inside an instance. Required.
	AppPort int
	// AppCommand holds the app's arguments after the program name
	// (spec app.command[1:]). Nil leaves the module default ["serve"]; an
	// empty, non-nil slice runs the program without arguments.
	AppCommand []string
	// AppEnv is extra environment for every instance (spec app.env). AWS
	// endpoint overrides are left out with a warning: on AWS the SDK must
	// reach AWS. Credentials are refused.
	AppEnv map[string]string

	// HealthCheck is the target group health check.
	HealthCheck HealthCheck

	// Min, Max and Desired size the Auto Scaling group. 0 ≤ Min ≤ Desired ≤ Max, Max ≥ 1.
	Min, Max, Desired int
	// HealthCheckType is "elb" (the load balancer's checks decide) or "ec2"
	// (the instance's status checks). Empty keeps the module default ELB.
	HealthCheckType string
	// GracePeriod is the ASG health check grace period. 0 means none.
	GracePeriod time.Duration
	// DeregistrationDelay is the target group's draining time (AWS 0–3600 s).
	DeregistrationDelay time.Duration
	// SlowStart is the target group's slow start (AWS 0 or 30–900 s).
	SlowStart time.Duration
	// Algorithm is "round_robin" (default) or "least_outstanding_requests".
	Algorithm string
	// IdleTimeout is the ALB's idle timeout (AWS 1–4000 s, rounded up to
	// whole seconds). 0 keeps the module default of 60 s.
	IdleTimeout time.Duration
	// TargetTracking lists the target tracking policies, at most one per metric.
	TargetTracking []TargetTracking
	// Scheduled lists the scheduled actions.
	Scheduled []Scheduled
	// InstanceRefresh is how a new launch template version rolls out (spec
	// fleet.instance_refresh). Nil keeps the module's defaults, which are
	// the spec's.
	InstanceRefresh *InstanceRefresh

	// MultiAZ runs a synchronous standby in a second AZ.
	MultiAZ bool
	// DBName is the app's database (RDS: a letter, then letters, digits or
	// underscores, at most 63). Empty keeps the module default "app".
	DBName string
	// DBUser is the app's owner role; the app logs in as DBUser_a and
	// DBUser_b. At most 61 characters, not the master. Empty keeps the
	// module default "app".
	DBUser string
	// BackupRetention is the automated backup retention (AWS 1–35 days,
	// rounded up to whole days). 0 becomes 1 day with a warning.
	BackupRetention time.Duration
	// BackupWindow is the daily backup window in UTC, "hh:mm-hh:mm", at
	// least 30 minutes. Empty lets RDS choose.
	BackupWindow string
	// MaintenanceWindow is RDS's weekly maintenance window in UTC,
	// "ddd:hh:mm-ddd:hh:mm", 30 minutes to 24 hours, clear of BackupWindow.
	// Empty keeps the module default sun:04:00-sun:05:00.
	MaintenanceWindow string
	// Rotation is the app DB secret's rotation period (Secrets Manager 1–1000
	// days, rounded up to whole days). 0 means no rotation, as in the spec
	// (secrets.db.rotation: 0): unlike the other fields, zero is not "the
	// module default".
	Rotation time.Duration
	// RotationStrategy is "alternating_users" or "single_user". Empty keeps
	// the module default alternating_users.
	RotationStrategy string
	// LogRetention is how long logs are kept (CloudWatch log groups, ALB
	// access and VPC flow logs), rounded up to a value CloudWatch Logs
	// accepts, at most 3653 days. 0 keeps the module default of 90 days.
	LogRetention time.Duration

	// Alarm5XXPercent, AlarmP99LatencySeconds and AlarmDBConnections are
	// the thresholds of the seed's alarms (spec alarms.thresholds): the
	// module's alarms.tf and the local region alarm on the same numbers.
	// 0 keeps the module default (5, 1 and 100).
	Alarm5XXPercent, AlarmP99LatencySeconds, AlarmDBConnections float64

	// SecurityGroupRules are the rules added to the module's security
	// groups beyond the seed's chain that security.tf holds (the spec's
	// security_groups). Default none.
	SecurityGroupRules []SecurityGroupRule

	// StaticPaths are the path patterns the edge serves from the bucket.
	// Empty keeps the module default ["/static/*", "/materials/*"].
	StaticPaths []string
	// SignedPaths are the patterns of StaticPaths served only with a signed
	// URL or cookie. Empty keeps the module default ["/materials/*"].
	SignedPaths []string

	// Deployment holds account-specific values that haven.yaml does not
	// carry. Each one is written only when set.
	Deployment Deployment
}

// SecurityGroupRule is one rule added to a module security group.
type SecurityGroupRule struct {
	// Group is alb-sg, app-sg, db-sg or vpce-sg.
	Group string
	// Direction is "ingress" or "egress".
	Direction string
	// Protocol is tcp or udp. Default tcp.
	Protocol string
	// FromPort and ToPort are the port range (ToPort 0: FromPort).
	FromPort, ToPort int
	// PeerGroup or CIDR is the peer: another of the module's groups, or an
	// IPv4 range.
	PeerGroup, CIDR string
	// Description says what the rule is for.
	Description string
}

// HealthCheck is a target group health check. Zero fields take AWS defaults:
// path "/", interval 30 s, timeout 5 s, healthy 5, unhealthy 2, matcher "200".
type HealthCheck struct {
	// Path is the HTTP path probed, starting with "/".
	Path string
	// Interval between probes (AWS 5–300 s).
	Interval time.Duration
	// Timeout of one probe (AWS 2–120 s, below Interval).
	Timeout time.Duration
	// Healthy is the number of passes before a target is healthy (AWS 2–10).
	Healthy int
	// Unhealthy is the number of failures before a target is unhealthy (AWS 2–10).
	Unhealthy int
	// Matcher is the success codes, e.g. "200", "200,302" or "200-299", within
	// 200–499, parsed by the spec. Zero means "200".
	Matcher spec.Matcher
}

// TargetTracking is one target tracking policy.
type TargetTracking struct {
	// Metric is "cpu" (average CPU %) or "request_count" (requests per target).
	Metric string
	// Target is the value the policy holds the metric at; CPU in (0, 100].
	Target float64
	// Warmup is the instance warmup, rounded up to whole seconds.
	Warmup time.Duration
}

// InstanceRefresh is the Auto Scaling group's instance refresh preferences.
type InstanceRefresh struct {
	// MinHealthy is the percentage of desired capacity kept in service
	// (0–100). AWS allows it at most 100 below MaxHealthy: further apart,
	// it is raised with a warning.
	MinHealthy int
	// MaxHealthy is how far above desired capacity the group may grow,
	// launching before terminating (100–200).
	MaxHealthy int
	// Checkpoints are the percentages replaced before each bake: strictly
	// increasing, 1–100, ending at 100.
	Checkpoints []int
	// Bake is the checkpoint delay (AWS 0–172800 s, whole seconds rounded up).
	Bake time.Duration
	// Warmup is the instance warmup (whole seconds, rounded up).
	Warmup time.Duration
	// AutoRollback rolls a failed refresh back to the previous version.
	AutoRollback bool
	// RollbackOn names haven alarms that fail the refresh in ALARM, beside
	// alb-5xx-rate and healthy-hosts-below-min, which every refresh watches.
	// A name the module has no CloudWatch alarm for is left out with a
	// warning.
	RollbackOn []string
}

// Scheduled is one scheduled action. Nil sizes are left unchanged.
type Scheduled struct {
	// Name identifies the action: letters, digits, '-' and '_'.
	Name string
	// Cron is the schedule, parsed by the spec; a descriptor such as @daily
	// is written out as five fields, as AWS takes them. Required.
	Cron spec.Cron
	// TimeZone is an IANA zone; empty means UTC.
	TimeZone string
	// Min, Max and Desired are the sizes set when the action fires.
	Min, Max, Desired *int
	// Start and End, if set, bound the recurring action (AWS: StartTime,
	// EndTime); zero means unbounded.
	Start, End time.Time
}

// Deployment holds account-specific module inputs. None of them is a secret.
type Deployment struct {
	// AMI is the app instances' image (ami-…).
	AMI string
	// ArtifactsBucket and ArtifactKey locate the app binary in S3.
	ArtifactsBucket, ArtifactKey string
	// DBLoginsArtifactKey locates the db-logins Lambda zip in ArtifactsBucket.
	DBLoginsArtifactKey string
	// CertificateARN is an existing ACM certificate for the ALB; it must
	// cover OriginDomainName.
	CertificateARN string
	// DomainName is an extra name on the ALB certificate the module requests
	// when CertificateARN is empty.
	DomainName string
	// OriginDomainName is the name CloudFront uses to reach the ALB, covered
	// by the ALB certificate (never the ALB's *.elb.amazonaws.com name).
	OriginDomainName string
	// CloudFrontAliases are the names viewers use for the site.
	CloudFrontAliases []string
	// CloudFrontCertificateARN is an ACM certificate in us-east-1 covering
	// CloudFrontAliases.
	CloudFrontCertificateARN string
	// Route53ZoneID is the hosted zone the module writes the origin, alias and
	// certificate validation records in. Empty: create them yourself.
	Route53ZoneID string
	// ALBIngress is "cloudfront" (module default) or "internet".
	ALBIngress string
	// CloudFrontPrefixListID is the regional ID of
	// com.amazonaws.global.cloudfront.origin-facing; empty looks it up at plan.
	CloudFrontPrefixListID string
	// SigningPublicKey is the PEM public key of the key pair the app signs
	// CloudFront URLs with. A private key is refused.
	SigningPublicKey string
}

// AZNames turns haven zone names into Availability Zone names of region:
// zone "a" in "eu-west-1" becomes "eu-west-1a". A zone that already starts
// with the region is kept as is.
func AZNames(region string, zones []string) []string {
	out := make([]string, 0, len(zones))
	for _, z := range zones {
		if strings.HasPrefix(z, region) {
			out = append(out, z)
			continue
		}
		out = append(out, region+z)
	}
	return out
}
