package spec

import (
	"time"

	"github.com/haven-platform/haven/internal/alarms"
)

// Spec is the whole haven.yaml. One file drives the local region (haven up)
// and the Terraform variables for AWS (haven aws tfvars).
type Spec struct {
	// Name names the region, its resources and its cgroups. Lowercase letters,
	// digits and dashes, 1–32 characters; AWS takes at most 20, with no
	// double or trailing dash (`haven validate` warns). Default: "courses".
	Name string `yaml:"name" json:"name"`
	// Zones lists the two availability zones by suffix. Default: [a, b].
	// Locally, as root, each zone has a public, an app and a db subnet of
	// the region's range of 198.18.0.0/15 (docs/vpc.md); without root,
	// zone i owns the loopback range 127.0.(i+1).0/24.
	Zones []string `yaml:"zones" json:"zones"`
	// App is the launch template: what every instance runs.
	App App `yaml:"app" json:"app"`
	// Fleet is the Auto Scaling Group.
	Fleet Fleet `yaml:"fleet" json:"fleet"`
	// LoadBalancer is the Application Load Balancer and its target group.
	LoadBalancer LoadBalancer `yaml:"load_balancer" json:"load_balancer"`
	// Database is the PostgreSQL tier (RDS Multi-AZ on AWS).
	Database Database `yaml:"database" json:"database"`
	// Secrets configures the secrets service and rotation.
	Secrets Secrets `yaml:"secrets" json:"secrets"`
	// ObjStore is the S3-compatible object store (S3 on AWS).
	ObjStore ObjStore `yaml:"objstore" json:"objstore"`
	// Edge is the caching reverse proxy in front of the load balancer and
	// the object store (CloudFront on AWS).
	Edge Edge `yaml:"edge" json:"edge"`
	// Identity is the identity tier: an OpenID Connect provider standing in
	// for the university's (Okta or Entra ID on AWS), and the app's single
	// sign-on against it.
	Identity Identity `yaml:"identity" json:"identity"`
	// SecurityGroups adds rules to the seed's security groups (alb-sg,
	// app-sg, db-sg, vpce-sg), enforced locally by nftables and exported to
	// the Terraform module. Default: none, the seed's chain alone.
	SecurityGroups []SecurityGroup `yaml:"security_groups" json:"security_groups,omitempty"`
	// Metrics is the Prometheus endpoint.
	Metrics Metrics `yaml:"metrics" json:"metrics"`
	// Console is the operator's web console.
	Console Console `yaml:"console" json:"console"`
	// Alarms are the CloudWatch-style alarms and their actions.
	Alarms Alarms `yaml:"alarms" json:"alarms"`
	// AWS holds the settings that exist only on AWS.
	AWS AWS `yaml:"aws" json:"aws"`
	// TimeScale compresses time in the local region only: the scaler's
	// metric period and instance warmup, and the alarms' periods (60s on
	// AWS; whole seconds, at least 1s, for the alarms), are divided by it,
	// so scale-out (3 periods), scale-in (15 periods) and an alarm of 3
	// periods happen TimeScale times sooner and a drill fits in minutes.
	// Cron schedules, health checks and the deregistration delay keep their
	// real times. `haven aws tfvars` exports the values as written, never
	// scaled. From 1 to 600. Default: 1 (real time).
	TimeScale float64 `yaml:"time_scale" json:"time_scale"`
}

// App is the launch template.
type App struct {
	// Command is the program and its arguments. ${HOST}, ${PORT}, ${INSTANCE_ID}
	// and ${ZONE} are expanded. Default: [courses, serve].
	Command []string `yaml:"command" json:"command"`
	// Env holds extra environment variables for every instance. Values must not
	// be secrets: the platform refuses variables whose names look like
	// credentials, and HOST, PORT, HAVEN_INSTANCE_ID and HAVEN_ZONE, which it
	// sets for each instance. Default: none.
	Env map[string]string `yaml:"env" json:"env,omitempty"`
	// Port is the TCP port the app listens on at its instance address (env PORT).
	// Default: 8080.
	Port int `yaml:"port" json:"port"`
	// Release is a one-off command run once when the region comes up, after the
	// database is ready and before the fleet launches (migrations, seed data).
	// It gets the same environment as an instance. Default: none.
	Release []string `yaml:"release" json:"release,omitempty"`
	// Migrations are the arguments that make the app's program print its
	// schema migrations as JSON: [{"version": 1, "name": "...", "breaking":
	// false, "reason": ""}, ...], versions increasing. `haven deploy` runs
	// the new version's program and the current one's with them (no
	// database, as unprivileged as an instance) and refuses a version that
	// adds a breaking migration unless given --allow-breaking. Default: none
	// (no check).
	Migrations []string `yaml:"migrations" json:"migrations,omitempty"`
	// HealthCheck is the target group's health check.
	HealthCheck HealthCheck `yaml:"health_check" json:"health_check"`
	// Instance is the instance size: a cgroup CPU quota and memory limit locally.
	Instance Instance `yaml:"instance" json:"instance"`
}

// HealthCheck is the load balancer's active health check of each target.
type HealthCheck struct {
	// Path is requested with GET on each target. Default: /healthz.
	Path string `yaml:"path" json:"path"`
	// Interval between checks of one target. Default: 1s (AWS: 30s, minimum 5s).
	Interval Duration `yaml:"interval" json:"interval"`
	// Timeout of one check; must be shorter than the interval. Default: 500ms (AWS: 5s).
	Timeout Duration `yaml:"timeout" json:"timeout"`
	// Healthy is the number of consecutive passes that make a target healthy.
	// Default: 2 (AWS: 5). Range 2–10.
	Healthy int `yaml:"healthy" json:"healthy"`
	// Unhealthy is the number of consecutive failures that make it unhealthy.
	// Default: 2 (AWS: 2). Range 2–10.
	Unhealthy int `yaml:"unhealthy" json:"unhealthy"`
	// Matcher lists the success codes: "200", "200-299" or "200,302", within
	// 200–499. Default: "200".
	Matcher Matcher `yaml:"matcher" json:"matcher"`
}

// Instance is the size of one instance.
type Instance struct {
	// CPU is the CPU quota in cores. Default: 0.25.
	CPU float64 `yaml:"cpu" json:"cpu"`
	// Memory is the memory limit. Default: 256MiB.
	Memory ByteSize `yaml:"memory" json:"memory"`
}

// Fleet is the Auto Scaling Group.
type Fleet struct {
	// Min is the minimum capacity. Default: 2.
	Min int `yaml:"min" json:"min"`
	// Max is the maximum capacity. Default: 12.
	Max int `yaml:"max" json:"max"`
	// Desired is the starting capacity, between min and max. Default: 2.
	Desired int `yaml:"desired" json:"desired"`
	// HealthCheckType is "elb" (the load balancer's checks decide) or "ec2"
	// (a running process is healthy; on AWS, the instance's status checks).
	// Default: elb.
	HealthCheckType string `yaml:"health_check_type" json:"health_check_type"`
	// GracePeriod after launch during which failed health checks do not
	// replace an instance. Default: 10s.
	GracePeriod Duration `yaml:"grace_period" json:"grace_period"`
	// Scaling lists target tracking policies and scheduled actions. Default: none.
	Scaling []ScalingPolicy `yaml:"scaling" json:"scaling,omitempty"`
	// InstanceRefresh is how `haven deploy` rolls a new launch template
	// version out (an ASG instance refresh) and when it rolls back.
	InstanceRefresh InstanceRefresh `yaml:"instance_refresh" json:"instance_refresh"`
}

// InstanceRefresh is the rolling deploy's preferences and health gates
// (docs/deploys.md).
type InstanceRefresh struct {
	// MinHealthyPercentage of desired capacity stays in service throughout.
	// Range 0–100. Default: 100 (AWS: 90).
	MinHealthyPercentage int `yaml:"min_healthy_percentage" json:"min_healthy_percentage"`
	// MaxHealthyPercentage is how far above desired capacity the fleet may
	// grow while new instances come up before old ones go. Range 100–200,
	// at least min_healthy_percentage. Default: 200 (AWS: 100).
	MaxHealthyPercentage int `yaml:"max_healthy_percentage" json:"max_healthy_percentage"`
	// Checkpoints are percentages of the fleet on the new version where
	// the rollout bakes: strictly increasing, ending at 100. Default: [50, 100].
	Checkpoints []int `yaml:"checkpoints" json:"checkpoints"`
	// Bake is how long each checkpoint is watched (AWS checkpoint_delay).
	// Default: 10s.
	Bake Duration `yaml:"bake" json:"bake"`
	// InstanceWarmup is how long a new instance runs before it counts
	// toward a checkpoint. Default: 0s.
	InstanceWarmup Duration `yaml:"instance_warmup" json:"instance_warmup"`
	// HealthTimeout is how long a new instance may take to be healthy
	// behind the load balancer before the rollout rolls back. Default: 60s.
	HealthTimeout Duration `yaml:"health_timeout" json:"health_timeout"`
	// Max5xxIncrease is how many percentage points the new version's 5xx
	// rate (measured by the load balancer) may exceed the old one's by.
	// Default: 1.
	Max5xxIncrease float64 `yaml:"max_5xx_increase" json:"max_5xx_increase"`
	// MaxP99Increase is how much the new version's p99 latency may exceed
	// the old one's by. Default: 500ms.
	MaxP99Increase Duration `yaml:"max_p99_increase" json:"max_p99_increase"`
	// RollbackOn names alarms whose ALARM state rolls a rollout back.
	// Default: none.
	RollbackOn []string `yaml:"rollback_on" json:"rollback_on,omitempty"`
	// AutoRollback rolls a failed rollout back to the last good version.
	// Default: true.
	AutoRollback bool `yaml:"auto_rollback" json:"auto_rollback"`
}

// ScalingPolicy is either a target tracking policy (TargetTracking set) or a
// scheduled action (Scheduled set), never both.
type ScalingPolicy struct {
	// TargetTracking names the metric to track: "cpu" (average CPU %) or
	// "request_count" (requests per target per minute).
	TargetTracking string `yaml:"target_tracking,omitempty" json:"target_tracking,omitempty"`
	// Target is the metric value to hold. Required with target_tracking.
	Target float64 `yaml:"target,omitempty" json:"target,omitempty"`
	// Warmup is the instance warmup: for this long after an instance enters
	// service its metrics are left out of the group's, it counts toward
	// capacity, and scale-in waits (AWS: EstimatedInstanceWarmup). 0–1h.
	// Locally divided by time_scale. Default: 300s (AWS's default).
	Warmup Duration `yaml:"warmup,omitempty" json:"warmup,omitempty"`
	// Scheduled names a scheduled action.
	Scheduled string `yaml:"scheduled,omitempty" json:"scheduled,omitempty"`
	// Cron is the schedule: five-field cron syntax with names
	// ("0 7 * * MON-FRI") or a descriptor (@daily), evaluated in TimeZone.
	// Required with scheduled.
	Cron Cron `yaml:"cron,omitempty" json:"cron,omitzero"`
	// TimeZone is an IANA zone name the cron is evaluated in. Default: UTC.
	TimeZone string `yaml:"time_zone,omitempty" json:"time_zone,omitempty"`
	// Min, Max and Desired set the capacity at the scheduled time; at least one.
	Min *int `yaml:"min,omitempty" json:"min,omitempty"`
	// Max sets the maximum capacity at the scheduled time.
	Max *int `yaml:"max,omitempty" json:"max,omitempty"`
	// Desired sets the desired capacity at the scheduled time.
	Desired *int `yaml:"desired,omitempty" json:"desired,omitempty"`
	// Start, if set, is the first moment the scheduled action may run
	// (AWS: StartTime), e.g. the Monday of an exam week: an RFC 3339 time
	// (2026-11-30T06:00:00Z) or a date (2026-11-30: midnight in time_zone).
	// Default: no start bound.
	Start Time `yaml:"start,omitempty" json:"start,omitzero"`
	// End, if set, is the last moment the scheduled action may run (AWS:
	// EndTime); after start. A date means midnight at the start of that day
	// in time_zone, so the day itself is excluded. Default: no end bound.
	End Time `yaml:"end,omitempty" json:"end,omitzero"`
}

// LoadBalancer is the ALB: listeners and target group settings.
type LoadBalancer struct {
	// HTTPS is the address of the HTTPS listener. Default: 127.0.0.1:8443.
	HTTPS string `yaml:"https" json:"https"`
	// HTTP is the address of the listener that redirects to HTTPS. Empty
	// disables it. Default: 127.0.0.1:8080.
	HTTP string `yaml:"http" json:"http"`
	// Algorithm is round_robin or least_outstanding_requests. Default: round_robin.
	Algorithm string `yaml:"algorithm" json:"algorithm"`
	// DeregistrationDelay is how long a draining target may finish in-flight
	// requests. Default: 5s (AWS: 300s).
	DeregistrationDelay Duration `yaml:"deregistration_delay" json:"deregistration_delay"`
	// SlowStart ramps a new target's share of traffic up linearly. 0 is off;
	// otherwise 30s–900s on AWS. Must be 0 with least_outstanding_requests,
	// as on an ALB. Default: 0.
	SlowStart Duration `yaml:"slow_start" json:"slow_start"`
	// IdleTimeout is the longest a target may stay silent before a 504. Default: 60s.
	IdleTimeout Duration `yaml:"idle_timeout" json:"idle_timeout"`
}

// Database is the PostgreSQL tier.
type Database struct {
	// Engine must be "postgres". Default: postgres.
	Engine string `yaml:"engine" json:"engine"`
	// Version is the PostgreSQL major version; 15 is supported. Default: 15.
	Version int `yaml:"version" json:"version"`
	// MultiAZ runs a synchronous standby in the other zone with automatic
	// failover. Default: true.
	MultiAZ bool `yaml:"multi_az" json:"multi_az"`
	// Durability is "preferred" (the primary commits alone once it has durably
	// recorded that the lost standby is not eligible) or "required" (commits
	// wait for the standby). Default: preferred.
	Durability string `yaml:"durability" json:"durability"`
	// Endpoint is the stable address apps connect to; it forwards to the
	// current primary. Default: 127.0.0.1:6432.
	Endpoint string `yaml:"endpoint" json:"endpoint"`
	// Name is the application's database. Default: the region name, dashes
	// as underscores.
	Name string `yaml:"name" json:"name"`
	// User is the application's owner role; the app logs in as <user>_a and
	// <user>_b. At most 61 characters, not postgres or pg_*. Default: the
	// region name, dashes as underscores.
	User string `yaml:"user" json:"user"`
	// BackupRetention keeps backups and WAL this long (AWS: 1–35 days). Default: 7d.
	BackupRetention Duration `yaml:"backup_retention" json:"backup_retention"`
	// BackupSchedule is the cron schedule of full backups, evaluated in UTC
	// (five fields or a descriptor such as @daily). Default: "0 3 * * *".
	BackupSchedule Cron `yaml:"backup_schedule" json:"backup_schedule"`
}

// Secrets configures the secrets service.
type Secrets struct {
	// Listen is the address of the Secrets Manager API. Default: 127.0.0.1:4566.
	Listen string `yaml:"listen" json:"listen"`
	// DB configures the database credential secret.
	DB SecretRotation `yaml:"db" json:"db"`
}

// SecretRotation is a secret's rotation schedule.
type SecretRotation struct {
	// Rotation is the period between automatic rotations; 0 disables it,
	// locally and on AWS (no rotation schedule). Default: 7d.
	Rotation Duration `yaml:"rotation" json:"rotation"`
	// Strategy is alternating_users (two roles, no failed login) or
	// single_user. Default: alternating_users.
	Strategy string `yaml:"strategy" json:"strategy"`
}

// Identity is the region's OpenID Connect provider (internal/idp) and the
// app's client registration at it. On AWS the university's tenant is the
// provider: its issuer, client id and client secret are deployment values
// (docs/aws.md), not the spec's.
type Identity struct {
	// Enabled runs the provider and gives every instance its issuer, its
	// client id and the name of its client secret in the secrets service.
	// Default: false.
	Enabled bool `yaml:"enabled" json:"enabled"`
	// Listen is the provider's HTTPS listener, a loopback address; the
	// issuer is https://<listen>. In a VPC the provider listens on the
	// host's address on its link into the VPC, at this port, so the
	// instances reach the same issuer as the browser. Default: 127.0.0.1:9443.
	Listen string `yaml:"listen" json:"listen"`
	// Name is the provider's name on its pages. Default: "University sign-in".
	Name string `yaml:"name" json:"name"`
	// ClientID is the app's client id at the provider. Letters, digits,
	// '.', '_' and '-', at most 64. Default: the region name.
	ClientID string `yaml:"client_id" json:"client_id"`
	// StaffSSOOnly refuses staff password logins in the app: teachers sign
	// in with the university account only. Needs enabled. Default: false.
	StaffSSOOnly bool `yaml:"staff_sso_only" json:"staff_sso_only"`
	// KeyRotation is how often the provider replaces its signing key; 0
	// rotates only by `haven identity rotate-key`. 0 or 1m–365d. Default: 90d.
	KeyRotation Duration `yaml:"key_rotation" json:"key_rotation"`
	// KeyRetention is how long a replaced key stays in the JWKS, so every
	// token it signed verifies until it expires: at least id_token_lifetime
	// and 1h (the access tokens' lifetime), at most 365d. Default: 24h.
	KeyRetention Duration `yaml:"key_retention" json:"key_retention"`
	// IDTokenLifetime is how long an ID token is valid, 1m–24h. Default: 1h.
	IDTokenLifetime Duration `yaml:"id_token_lifetime" json:"id_token_lifetime"`
	// Users are the directory's named accounts. Default: none.
	Users []IdentityUser `yaml:"users" json:"users,omitempty"`
	// Generated are numbered accounts, as a seed writes them: teacher1,
	// teacher2, ... With enabled, users and generated name at least one
	// account between them. Default: none.
	Generated []IdentityGenerated `yaml:"generated" json:"generated,omitempty"`
}

// IdentityUser is one named account of the provider's directory.
type IdentityUser struct {
	// Username is what the user types to sign in, e.g.
	// dean@example.edu; unique, compared case-insensitively. Required.
	Username string `yaml:"username" json:"username"`
	// Name is the display name. Default: the username.
	Name string `yaml:"name" json:"name,omitempty"`
	// Groups are the groups claim, e.g. [staff]; the app maps staff to
	// teacher and students to student. Default: none.
	Groups []string `yaml:"groups" json:"groups,omitempty"`
	// PasswordHash is the password's argon2id or bcrypt hash (`haven
	// identity hash` makes one); a password never goes in the spec. Required.
	PasswordHash string `yaml:"password_hash" json:"password_hash"`
}

// IdentityGenerated is a run of numbered accounts sharing groups and a
// password hash.
type IdentityGenerated struct {
	// Username is the pattern, with {n} once for the number, e.g.
	// teacher{n}@example.edu. Required.
	Username string `yaml:"username" json:"username"`
	// Count is how many: n runs from 1 to count, 1–100000. Required.
	Count int `yaml:"count" json:"count"`
	// Groups are every account's groups. Default: none.
	Groups []string `yaml:"groups" json:"groups,omitempty"`
	// PasswordHash is every account's password hash, argon2id or bcrypt.
	// Required.
	PasswordHash string `yaml:"password_hash" json:"password_hash"`
}

// AWS holds AWS-only settings used by the Terraform module.
type AWS struct {
	// Region is the AWS region. Default: eu-west-1.
	Region string `yaml:"region" json:"region"`
	// AvailabilityZones names the two AZs; empty means <region>a and <region>b.
	AvailabilityZones []string `yaml:"availability_zones" json:"availability_zones,omitempty"`
	// InstanceType stands for app.instance on AWS. Default: t4g.small.
	InstanceType string `yaml:"instance_type" json:"instance_type"`
	// DBInstanceClass is the RDS instance class. Default: db.t4g.medium.
	DBInstanceClass string `yaml:"db_instance_class" json:"db_instance_class"`
	// BackupWindow is RDS's daily backup window (UTC). Default: 03:00-04:00.
	BackupWindow string `yaml:"backup_window" json:"backup_window"`
	// MaintenanceWindow is RDS's weekly maintenance window (UTC),
	// "ddd:hh:mm-ddd:hh:mm", at least 30 minutes and clear of the backup
	// window: minor upgrades and pending changes land only here, so keep it
	// out of exam hours. Local region: no maintenance. Default: sun:04:00-sun:05:00.
	MaintenanceWindow string `yaml:"maintenance_window" json:"maintenance_window"`
	// LogRetention is how long AWS keeps logs: the CloudWatch log groups
	// (RDS, the db-logins function) and the logs bucket (ALB access logs,
	// VPC flow logs). 1d–3650d; rounded up to a value CloudWatch Logs
	// accepts. Default: 90d.
	LogRetention Duration `yaml:"log_retention" json:"log_retention"`
}

// DefaultWarmup is a target tracking policy's warmup when the spec gives
// none: AWS's default for EstimatedInstanceWarmup.
const DefaultWarmup = 300 * time.Second

// Default returns the spec with every default filled in.
func Default() Spec {
	return Spec{
		Name:  "courses",
		Zones: []string{"a", "b"},
		App: App{
			Command: []string{"courses", "serve"},
			Port:    8080,
			HealthCheck: HealthCheck{
				Path: "/healthz", Interval: Duration(1e9), Timeout: Duration(500e6),
				Healthy: 2, Unhealthy: 2, Matcher: MustMatcher("200"),
			},
			Instance: Instance{CPU: 0.25, Memory: 256 << 20},
		},
		Fleet: Fleet{Min: 2, Max: 12, Desired: 2, HealthCheckType: "elb", GracePeriod: Duration(10e9),
			InstanceRefresh: InstanceRefresh{MinHealthyPercentage: 100, MaxHealthyPercentage: 200, Checkpoints: []int{50, 100},
				Bake: Duration(10e9), HealthTimeout: Duration(60e9), Max5xxIncrease: 1, MaxP99Increase: Duration(500e6), AutoRollback: true}},
		LoadBalancer: LoadBalancer{
			HTTPS: "127.0.0.1:8443", HTTP: "127.0.0.1:8080", Algorithm: "round_robin",
			DeregistrationDelay: Duration(5e9), IdleTimeout: Duration(60e9),
		},
		Database: Database{
			Engine: "postgres", Version: 15, MultiAZ: true, Durability: "preferred",
			Endpoint: "127.0.0.1:6432", BackupRetention: Duration(7 * 24 * 3600e9), BackupSchedule: MustCron("0 3 * * *"),
		},
		Secrets:  Secrets{Listen: "127.0.0.1:4566", DB: SecretRotation{Rotation: Duration(7 * 24 * 3600e9), Strategy: "alternating_users"}},
		ObjStore: ObjStore{Listen: "127.0.0.1:9000", MaxUpload: 5 << 30, AbortIncompleteUploads: Duration(7 * 24 * 3600e9)},
		Edge:     Edge{Listen: "127.0.0.1:8445"},
		Metrics:  Metrics{Listen: "127.0.0.1:9464"},
		Console:  Console{Listen: "127.0.0.1:8444"},
		Alarms: Alarms{Thresholds: AlarmThresholds{HTTP5XXPercent: alarms.DefaultHTTP5XXPercent, P99LatencySeconds: alarms.DefaultP99LatencySeconds,
			DBConnections: alarms.DefaultDBConnections, ReplicaLagSeconds: alarms.DefaultReplicaLagSeconds}},
		Identity: Identity{Listen: "127.0.0.1:9443", Name: "University sign-in", KeyRotation: Duration(90 * 24 * 3600e9),
			KeyRetention: Duration(24 * 3600e9), IDTokenLifetime: Duration(3600e9)},
		AWS: AWS{Region: "eu-west-1", InstanceType: "t4g.small", DBInstanceClass: "db.t4g.medium", BackupWindow: "03:00-04:00",
			MaintenanceWindow: "sun:04:00-sun:05:00", LogRetention: Duration(90 * 24 * 3600e9)},
		TimeScale: 1,
	}
}
