package spec

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
	// SecurityGroups adds rules to the seed's security groups (alb-sg,
	// app-sg, db-sg, vpce-sg), enforced locally by nftables and exported to
	// the Terraform module. Default: none, the seed's chain alone.
	SecurityGroups []SecurityGroup `yaml:"security_groups" json:"security_groups,omitempty"`
	// AWS holds the settings that exist only on AWS.
	AWS AWS `yaml:"aws" json:"aws"`
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
}

// ScalingPolicy is either a target tracking policy (TargetTracking set) or a
// scheduled action (Scheduled set), never both.
type ScalingPolicy struct {
	// TargetTracking names the metric to track: "cpu" (average CPU %) or
	// "request_count" (requests per target per minute).
	TargetTracking string `yaml:"target_tracking,omitempty" json:"target_tracking,omitempty"`
	// Target is the metric value to hold. Required with target_tracking.
	Target float64 `yaml:"target,omitempty" json:"target,omitempty"`
	// Warmup is the time a new instance's metrics are ignored. Default: 10s.
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
		Fleet: Fleet{Min: 2, Max: 12, Desired: 2, HealthCheckType: "elb", GracePeriod: Duration(10e9)},
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
		Edge:     Edge{Listen: "127.0.0.1:8444"},
		AWS: AWS{Region: "eu-west-1", InstanceType: "t4g.small", DBInstanceClass: "db.t4g.medium", BackupWindow: "03:00-04:00",
			MaintenanceWindow: "sun:04:00-sun:05:00", LogRetention: Duration(90 * 24 * 3600e9)},
	}
}
