# ---------------------------------------------------------------------------
# Identity and placement
# ---------------------------------------------------------------------------

variable "name" {
  description = "Name of the deployment (haven.yaml `name`). Prefixes every resource name; lower-case letters, digits and hyphens, at most 20 characters."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.name)) && !strcontains(var.name, "--") && !endswith(var.name, "-")
    error_message = "name must start with a letter and contain only lower-case letters, digits and hyphens (at most 20 characters), with no two hyphens in a row and none at the end (RDS refuses the database identifier <name>-db otherwise)."
  }
}

variable "region" {
  description = "AWS region (haven.yaml `aws.region`). Used for VPC endpoint service names; the provider is configured by the caller."
  type        = string
}

variable "azs" {
  description = "Availability Zone names, one per haven zone (haven.yaml `zones`), e.g. [\"eu-west-1a\", \"eu-west-1b\"]. Taken as a variable so planning needs no AWS API call."
  type        = list(string)

  validation {
    condition     = length(var.azs) >= 2 && length(var.azs) == length(distinct(var.azs))
    error_message = "azs must list at least two distinct Availability Zones."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------

variable "vpc_cidr" {
  description = "IPv4 CIDR of the VPC. Subnets are /24s carved from it: public 0..n, app 10..n, db 20..n."
  type        = string
  default     = "10.42.0.0/16"
}

variable "enable_nat_gateway" {
  description = "Create one NAT gateway (in the first AZ) for the app subnets. Off by default: VPC endpoints cover Secrets Manager, CloudWatch, SSM and S3."
  type        = bool
  default     = false
}

variable "interface_endpoints" {
  description = "Services that get an interface VPC endpoint in the app subnets."
  type        = list(string)
  default     = ["secretsmanager", "logs", "monitoring", "ssm", "ssmmessages", "ec2messages"]
}

variable "alb_ingress" {
  description = "Who may reach the ALB: \"cloudfront\" (default) admits HTTPS only from CloudFront's origin-facing servers, in one security group rule (the managed prefix list weighs 55 of the default 60 rules per group); \"internet\" admits 443 and 80 from 0.0.0.0/0, which lets viewers bypass the edge."
  type        = string
  default     = "cloudfront"

  validation {
    condition     = contains(["cloudfront", "internet"], var.alb_ingress)
    error_message = "alb_ingress must be \"cloudfront\" or \"internet\"."
  }
}

variable "cloudfront_prefix_list_id" {
  description = "ID of the managed prefix list com.amazonaws.global.cloudfront.origin-facing in this region, used when alb_ingress is \"cloudfront\". Null looks it up by name at plan time (needs AWS credentials); set it to plan offline."
  type        = string
  default     = null

  validation {
    condition     = var.cloudfront_prefix_list_id == null || can(regex("^pl-[0-9a-f]{8,17}$", var.cloudfront_prefix_list_id))
    error_message = "cloudfront_prefix_list_id must look like pl-0123abcd."
  }
}

# ---------------------------------------------------------------------------
# Load balancer
# ---------------------------------------------------------------------------

variable "certificate_arn" {
  description = "ARN of an existing ACM certificate for the HTTPS listener. When null, a DNS-validated certificate is requested for domain_name."
  type        = string
  default     = null
}

variable "domain_name" {
  description = "Extra name for the ALB certificate requested when certificate_arn is null (origin_domain_name is always on it)."
  type        = string
  default     = null
}

variable "route53_zone_id" {
  description = "Route 53 hosted zone of origin_domain_name and cloudfront_aliases. When set, the module creates the certificate validation records, an alias record origin_domain_name -> ALB, and alias records (A and AAAA) for each CloudFront alias -> the distribution. When null, create them yourself (outputs certificate_validation_records, alb_dns_name, cloudfront_domain_name)."
  type        = string
  default     = null
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listener (TLS 1.2 and 1.3 only)."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "alb_deletion_protection" {
  description = "Enable deletion protection on the ALB."
  type        = bool
  default     = true
}

variable "alb_idle_timeout" {
  description = "ALB idle timeout in seconds, 1-4000 (haven.yaml `load_balancer.idle_timeout`): a target silent this long gets a 504, and idle client connections close. AWS default 60."
  type        = number
  default     = 60

  validation {
    condition     = var.alb_idle_timeout >= 1 && var.alb_idle_timeout <= 4000
    error_message = "alb_idle_timeout must be between 1 and 4000 seconds."
  }
}

variable "app_port" {
  description = "Port the app listens on inside each instance (the target group port)."
  type        = number

  validation {
    condition     = var.app_port >= 1 && var.app_port <= 65535
    error_message = "app_port must be between 1 and 65535."
  }
}

variable "health_check" {
  description = "Target group health check (haven.yaml `app.health_check`), already clamped to AWS ranges by `haven aws tfvars`."
  type = object({
    path                = optional(string, "/")
    interval            = optional(number, 30)
    timeout             = optional(number, 5)
    healthy_threshold   = optional(number, 5)
    unhealthy_threshold = optional(number, 2)
    matcher             = optional(string, "200")
  })
  default = {}

  validation {
    condition = (
      var.health_check.interval >= 5 && var.health_check.interval <= 300 &&
      var.health_check.timeout >= 2 && var.health_check.timeout <= 120 &&
      var.health_check.timeout < var.health_check.interval &&
      var.health_check.healthy_threshold >= 2 && var.health_check.healthy_threshold <= 10 &&
      var.health_check.unhealthy_threshold >= 2 && var.health_check.unhealthy_threshold <= 10
    )
    error_message = "health_check: interval 5-300 s, timeout 2-120 s and below interval, thresholds 2-10."
  }
}

variable "deregistration_delay" {
  description = "Seconds a draining target keeps serving in-flight requests (0-3600, AWS default 300)."
  type        = number
  default     = 300

  validation {
    condition     = var.deregistration_delay >= 0 && var.deregistration_delay <= 3600
    error_message = "deregistration_delay must be between 0 and 3600 seconds."
  }
}

variable "slow_start" {
  description = "Slow start ramp-up in seconds: 0 (off) or 30-900."
  type        = number
  default     = 0

  validation {
    condition     = var.slow_start == 0 || (var.slow_start >= 30 && var.slow_start <= 900)
    error_message = "slow_start must be 0 or between 30 and 900 seconds."
  }
}

variable "load_balancing_algorithm" {
  description = "Target group routing algorithm: round_robin or least_outstanding_requests."
  type        = string
  default     = "round_robin"

  validation {
    condition     = contains(["round_robin", "least_outstanding_requests"], var.load_balancing_algorithm)
    error_message = "load_balancing_algorithm must be round_robin or least_outstanding_requests."
  }
}

# ---------------------------------------------------------------------------
# Fleet
# ---------------------------------------------------------------------------

variable "ami_id" {
  description = "AMI of the app instances (Amazon Linux 2023 for the instance type's architecture; it ships the AWS CLI used by user data)."
  type        = string
}

variable "instance_type" {
  description = "EC2 instance type (haven.yaml `aws.instance_type`)."
  type        = string
  default     = "t4g.small"
}

variable "root_volume_size" {
  description = "Root EBS volume size in GiB (gp3, encrypted)."
  type        = number
  default     = 20
}

variable "root_device_name" {
  description = "Root device name of the AMI."
  type        = string
  default     = "/dev/xvda"
}

variable "ebs_kms_key_arn" {
  description = "KMS key for EBS encryption. Null uses the account's default EBS key."
  type        = string
  default     = null
}

variable "artifacts_bucket" {
  description = "S3 bucket holding the app binary. The instance role may read only artifact_key in it."
  type        = string
}

variable "artifact_key" {
  description = "S3 key of the app binary in artifacts_bucket."
  type        = string
}

variable "app_command" {
  description = "Arguments passed to the app binary by its systemd unit (haven.yaml `app.command` without the program name)."
  type        = list(string)
  default     = ["serve"]
}

variable "app_environment" {
  description = "Extra environment for the app (haven.yaml `app.env`); it overrides the module's own variables of the same name. AWS endpoint overrides and static credentials are refused so the SDK talks to real AWS."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([
      for k in keys(var.app_environment) :
      !startswith(k, "AWS_ENDPOINT_URL") && k != "AWS_EC2_METADATA_SERVICE_ENDPOINT" && k != "AWS_ACCESS_KEY_ID" && k != "AWS_SECRET_ACCESS_KEY"
    ])
    error_message = "app_environment must not set AWS endpoint overrides or static credentials."
  }
}

variable "min_size" {
  description = "ASG minimum size (haven.yaml `fleet.min`)."
  type        = number
}

variable "max_size" {
  description = "ASG maximum size (haven.yaml `fleet.max`)."
  type        = number
}

variable "desired_capacity" {
  description = "ASG desired capacity at creation (haven.yaml `fleet.desired`). Later changes are left to scaling."
  type        = number
}

variable "health_check_type" {
  description = "What decides an instance is unhealthy (haven.yaml `fleet.health_check_type`): ELB (the target group's health checks, and the instance's status checks) or EC2 (the status checks only)."
  type        = string
  default     = "ELB"

  validation {
    condition     = contains(["ELB", "EC2"], var.health_check_type)
    error_message = "health_check_type must be ELB or EC2."
  }
}

variable "health_check_grace_period" {
  description = "Seconds after launch before ELB health checks can mark an instance unhealthy (haven.yaml `fleet.grace_period`)."
  type        = number
  default     = 300
}

variable "default_instance_warmup" {
  description = "ASG default instance warmup in seconds; null uses each policy's own warmup."
  type        = number
  default     = null
}

variable "target_tracking" {
  description = "Target tracking policies (haven.yaml `fleet.scaling[].target_tracking`). metric is cpu (ASGAverageCPUUtilization) or request_count (ALBRequestCountPerTarget); warmup in seconds."
  type = list(object({
    metric = string
    target = number
    warmup = optional(number, 300)
  }))
  default = [{ metric = "cpu", target = 50 }]

  validation {
    condition     = alltrue([for p in var.target_tracking : contains(["cpu", "request_count"], p.metric) && p.target > 0])
    error_message = "target_tracking metric must be cpu or request_count, with a positive target."
  }

  validation {
    condition     = length(var.target_tracking) == length(distinct([for p in var.target_tracking : p.metric]))
    error_message = "target_tracking may hold at most one policy per metric."
  }
}

variable "scheduled_actions" {
  description = "Scheduled actions (haven.yaml `fleet.scaling[].scheduled`). recurrence is a 5-field cron; null sizes are left unchanged; start_time and end_time (UTC, YYYY-MM-DDThh:mm:ssZ) bound the recurrence."
  type = list(object({
    name             = string
    recurrence       = string
    time_zone        = optional(string)
    min_size         = optional(number)
    max_size         = optional(number)
    desired_capacity = optional(number)
    start_time       = optional(string)
    end_time         = optional(string)
  }))
  default = []
}

variable "instance_refresh" {
  description = <<-EOT
    Instance refresh preferences (haven.yaml `fleet.instance_refresh`, the same fields `haven deploy` rolls out with locally).
    min_healthy_percentage (0-100) and max_healthy_percentage (100-200, at most 100 above min): 100 and 200 launch each batch before terminating, so serving capacity never drops below desired.
    checkpoint_percentages: strictly increasing, ending at 100; checkpoint_delay: the bake at each, in seconds (0-172800).
    instance_warmup: seconds a new instance runs before it counts.
    auto_rollback: a failed refresh, or one of the alarms in ALARM, rolls back to the previous launch template version.
    rollback_alarms: haven alarm names (alb-5xx-rate, healthy-hosts-below-min, target-p99-latency, db-cpu, db-free-storage, db-connections, asg-at-max) watched beside alb-5xx-rate and healthy-hosts-below-min, which every refresh watches.
  EOT
  type = object({
    min_healthy_percentage = optional(number, 100)
    max_healthy_percentage = optional(number, 200)
    checkpoint_percentages = optional(list(number), [50, 100])
    checkpoint_delay       = optional(number, 10)
    instance_warmup        = optional(number, 0)
    auto_rollback          = optional(bool, true)
    rollback_alarms        = optional(list(string), [])
  })
  default  = {}
  nullable = false

  validation {
    condition = (
      var.instance_refresh.min_healthy_percentage >= 0 && var.instance_refresh.min_healthy_percentage <= 100 &&
      var.instance_refresh.max_healthy_percentage >= 100 && var.instance_refresh.max_healthy_percentage <= 200 &&
      var.instance_refresh.max_healthy_percentage - var.instance_refresh.min_healthy_percentage <= 100 &&
      !(var.instance_refresh.min_healthy_percentage == 100 && var.instance_refresh.max_healthy_percentage == 100)
    )
    error_message = "instance_refresh: min_healthy_percentage must be 0-100 and max_healthy_percentage 100-200, at most 100 apart (AWS), and not both 100 (nothing could be replaced)."
  }

  validation {
    condition = (
      length(var.instance_refresh.checkpoint_percentages) > 0 &&
      alltrue([for i, c in var.instance_refresh.checkpoint_percentages : c >= 1 && c <= 100 && (i == 0 || c > var.instance_refresh.checkpoint_percentages[max(i - 1, 0)])]) &&
      try(var.instance_refresh.checkpoint_percentages[length(var.instance_refresh.checkpoint_percentages) - 1] == 100, false)
    )
    error_message = "instance_refresh.checkpoint_percentages must be strictly increasing, each 1-100, ending at 100 (the whole fleet)."
  }

  validation {
    condition     = var.instance_refresh.checkpoint_delay >= 0 && var.instance_refresh.checkpoint_delay <= 172800 && var.instance_refresh.instance_warmup >= 0
    error_message = "instance_refresh: checkpoint_delay must be 0-172800 seconds (AWS) and instance_warmup at least 0."
  }

  validation {
    condition     = alltrue([for a in var.instance_refresh.rollback_alarms : contains(["alb-5xx-rate", "healthy-hosts-below-min", "target-p99-latency", "db-cpu", "db-free-storage", "db-connections", "asg-at-max"], a)])
    error_message = "instance_refresh.rollback_alarms names an alarm the module does not create: use alb-5xx-rate, healthy-hosts-below-min, target-p99-latency, db-cpu, db-free-storage, db-connections or asg-at-max."
  }
}

# ---------------------------------------------------------------------------
# Database
# ---------------------------------------------------------------------------

variable "db_instance_class" {
  description = "RDS instance class (haven.yaml `aws.db_instance_class`)."
  type        = string
  default     = "db.t4g.medium"
}

variable "db_engine_version" {
  description = "PostgreSQL major (or major.minor) version."
  type        = string
  default     = "15"
}

variable "db_name" {
  description = "The app's database, created with the instance (haven.yaml `database.name`): a letter, then letters, digits or underscores, at most 63 characters."
  type        = string
  default     = "app"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.db_name))
    error_message = "db_name must start with a letter and hold only lower-case letters, digits and underscores (at most 63 characters)."
  }
}

variable "db_username" {
  description = "The app's role (haven.yaml `database.user`): it owns the database and everything in it, and nobody logs in as it. The app logs in as <db_username>_a or <db_username>_b, alternately, members of it; their credential is the app secret, rotated by the module's db-logins function."
  type        = string
  default     = "app"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_]{0,60}$", var.db_username))
    error_message = "db_username must be a lower-case SQL identifier of at most 61 characters."
  }
}

variable "db_master_username" {
  description = "RDS master user, for administration only: RDS generates its password, keeps it in a managed secret and rotates it. Neither the app nor its instance role can read that secret."
  type        = string
  default     = "haven_admin"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.db_master_username)) && !contains(["postgres", "rdsadmin", "admin"], var.db_master_username)
    error_message = "db_master_username must be a lower-case identifier of at most 63 characters, and not postgres, rdsadmin or admin."
  }
}

variable "db_rotation_strategy" {
  description = "Rotation of the app secret (haven.yaml `secrets.db.strategy`): alternating_users (the new password goes to the login that is not in use, so no login fails) or single_user."
  type        = string
  default     = "alternating_users"

  validation {
    condition     = contains(["alternating_users", "single_user"], var.db_rotation_strategy)
    error_message = "db_rotation_strategy must be alternating_users or single_user."
  }
}

variable "db_logins_artifact_key" {
  description = "S3 key in artifacts_bucket of the db-logins Lambda package: a zip holding `bootstrap`, built from cmd/haven-rds-logins for linux/arm64. It creates the app's roles at deploy and rotates the app secret."
  type        = string
}

variable "db_allocated_storage" {
  description = "Initial storage in GiB (gp3)."
  type        = number
  default     = 20
}

variable "db_max_allocated_storage" {
  description = "Storage autoscaling ceiling in GiB."
  type        = number
  default     = 100
}

variable "db_multi_az" {
  description = "Run a synchronous standby in a second AZ (haven.yaml `database.multi_az`)."
  type        = bool
  default     = true
}

variable "db_backup_retention_period" {
  description = "Automated backup retention in days, 1-35 (haven.yaml `database.backup_retention`)."
  type        = number
  default     = 7

  validation {
    condition     = var.db_backup_retention_period >= 1 && var.db_backup_retention_period <= 35
    error_message = "db_backup_retention_period must be between 1 and 35 days."
  }
}

variable "db_backup_window" {
  description = "Daily backup window in UTC, hh24:mi-hh24:mi, at least 30 minutes. Null lets RDS choose."
  type        = string
  default     = null
}

variable "db_maintenance_window" {
  description = "Weekly maintenance window in UTC, ddd:hh24:mi-ddd:hh24:mi, at least 30 minutes, not overlapping the backup window (haven.yaml `aws.maintenance_window`). Minor version upgrades and pending changes land only here."
  type        = string
  default     = "sun:04:00-sun:05:00"

  validation {
    condition     = can(regex("^(mon|tue|wed|thu|fri|sat|sun):([01][0-9]|2[0-3]):[0-5][0-9]-(mon|tue|wed|thu|fri|sat|sun):([01][0-9]|2[0-3]):[0-5][0-9]$", var.db_maintenance_window))
    error_message = "db_maintenance_window must look like sun:04:00-sun:05:00 (UTC)."
  }
}

variable "db_deletion_protection" {
  description = "Enable deletion protection on the database."
  type        = bool
  default     = true
}

variable "db_secret_rotation_days" {
  description = "Rotation period in days of the app's database secret (haven.yaml `secrets.db.rotation`), 1-1000; 0 turns rotation off (no rotation schedule), as `secrets.db.rotation: 0` does locally."
  type        = number
  default     = 7

  validation {
    condition     = var.db_secret_rotation_days == 0 || (var.db_secret_rotation_days >= 1 && var.db_secret_rotation_days <= 1000)
    error_message = "db_secret_rotation_days must be 0 (off) or between 1 and 1000."
  }
}

variable "db_master_secret_rotation_days" {
  description = "Rotation period in days of the RDS-managed master secret, 1-1000."
  type        = number
  default     = 7

  validation {
    condition     = var.db_master_secret_rotation_days >= 1 && var.db_master_secret_rotation_days <= 1000
    error_message = "db_master_secret_rotation_days must be between 1 and 1000."
  }
}

variable "db_kms_key_arn" {
  description = "KMS key for RDS storage encryption. Null uses the aws/rds key."
  type        = string
  default     = null
}

# ---------------------------------------------------------------------------
# Static content, edge
# ---------------------------------------------------------------------------

variable "origin_domain_name" {
  description = "Host name CloudFront uses to reach the ALB over HTTPS, e.g. origin.courses.example.edu. The ALB certificate must cover it (a requested certificate always does), and it must resolve to the ALB (the module adds the alias record when route53_zone_id is set). The ALB's own AWS DNS name cannot be used: no certificate of yours can cover it."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.origin_domain_name)) && !endswith(var.origin_domain_name, ".elb.amazonaws.com")
    error_message = "origin_domain_name must be a lower-case DNS name of yours (not the ALB's *.elb.amazonaws.com name)."
  }
}

variable "cloudfront_aliases" {
  description = "Names viewers use for the site, e.g. [\"courses.example.edu\"]; covered by cloudfront_certificate_arn. At least one: the *.cloudfront.net certificate would allow TLS 1.0."
  type        = list(string)

  validation {
    condition     = length(var.cloudfront_aliases) >= 1
    error_message = "cloudfront_aliases must name at least one domain (the default *.cloudfront.net certificate forces minimum TLSv1)."
  }
}

variable "cloudfront_certificate_arn" {
  description = "ACM certificate in us-east-1 covering cloudfront_aliases. Viewers need TLS 1.2 or later (security policy TLSv1.2_2021)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:acm:us-east-1:[0-9]{12}:certificate/", var.cloudfront_certificate_arn))
    error_message = "cloudfront_certificate_arn must be an ACM certificate ARN in us-east-1 (CloudFront reads certificates only there)."
  }
}

variable "cloudfront_price_class" {
  description = "CloudFront price class."
  type        = string
  default     = "PriceClass_100"
}

variable "waf_web_acl_arn" {
  description = "ARN of a WAFv2 web ACL (scope CLOUDFRONT) to attach to the distribution. Null attaches none."
  type        = string
  default     = null
}

variable "static_paths" {
  description = "Path patterns served from the S3 bucket through CloudFront (haven.yaml `edge.static`)."
  type        = list(string)
  default     = ["/static/*", "/materials/*"]
}

variable "signed_paths" {
  description = "Path patterns of static_paths that CloudFront serves only with a signed URL or cookie from the trusted key group."
  type        = list(string)
  default     = ["/materials/*"]
}

variable "materials_signing_public_key" {
  description = "PEM public key (RSA 2048 or ECDSA P-256) of the key pair the app signs CloudFront URLs with. The module puts it in the trusted key group of signed_paths; the private key goes into the secret of output signing_key_secret_arn, never into a variable."
  type        = string

  validation {
    condition     = startswith(trimspace(var.materials_signing_public_key), "-----BEGIN PUBLIC KEY-----") && endswith(trimspace(var.materials_signing_public_key), "-----END PUBLIC KEY-----")
    error_message = "materials_signing_public_key must be a PEM public key (-----BEGIN PUBLIC KEY----- ... -----END PUBLIC KEY-----), not a private key."
  }
}

variable "materials_prefix" {
  description = "Key prefix in the bucket that the app may read and write."
  type        = string
  default     = "materials/"
}

variable "log_retention_days" {
  description = "Days to keep logs (haven.yaml `aws.log_retention`): ALB access logs and VPC flow logs in the logs bucket, and the CloudWatch log groups of RDS and the db-logins function. A value CloudWatch Logs accepts."
  type        = number
  default     = 90

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one CloudWatch Logs accepts: 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653."
  }
}

# ---------------------------------------------------------------------------
# Alarms
# ---------------------------------------------------------------------------

variable "alarm_email" {
  description = "E-mail address subscribed to the alarm topic. Null subscribes nobody."
  type        = string
  default     = null
}

variable "alarm_5xx_rate_percent" {
  description = "Alarm when 5xx responses exceed this percentage of requests."
  type        = number
  default     = 5
}

variable "alarm_p99_latency_seconds" {
  description = "Alarm when the target p99 response time exceeds this many seconds."
  type        = number
  default     = 1
}

variable "alarm_db_cpu_percent" {
  description = "Alarm when database CPU exceeds this percentage."
  type        = number
  default     = 80
}

variable "alarm_db_free_storage_bytes" {
  description = "Alarm when database free storage falls below this many bytes."
  type        = number
  default     = 2147483648
}

variable "alarm_db_connections" {
  description = "Alarm when database connections exceed this number."
  type        = number
  default     = 100
}

# Staff single sign-on (docs/aws.md, "Staff single sign-on"). Null turns it
# off: every user logs in with a password kept by the app.

variable "oidc_issuer_url" {
  description = "Issuer URL of the university's OpenID Connect provider, e.g. https://university.okta.com or https://login.microsoftonline.com/<tenant-id>/v2.0. The app reads its discovery document. Null: single sign-on off."
  type        = string
  default     = null

  validation {
    condition     = var.oidc_issuer_url == null || can(regex("^https://[^/?#]+(/[^?#]*)?$", var.oidc_issuer_url))
    error_message = "oidc_issuer_url must be an https URL without a query or fragment (the provider's issuer, as in its discovery document)."
  }
}

variable "oidc_client_id" {
  description = "The app's client ID at the provider (not a secret). Required with oidc_issuer_url."
  type        = string
  default     = null

  validation {
    condition     = var.oidc_client_id == null || length(trimspace(coalesce(var.oidc_client_id, " "))) > 0
    error_message = "oidc_client_id must not be empty."
  }
}

variable "oidc_client_secret_arn" {
  description = "ARN of the Secrets Manager secret that holds the app's client secret (the secret string alone, or {\"client_secret\": \"...\"}). The instance role may read this secret and no other new one; the secret itself never goes into a variable. Required with oidc_issuer_url."
  type        = string
  default     = null

  validation {
    condition     = var.oidc_client_secret_arn == null || can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$", var.oidc_client_secret_arn))
    error_message = "oidc_client_secret_arn must be a Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>), never the secret itself."
  }
}

variable "oidc_staff_sso_only" {
  description = "Refuse teachers' password logins: staff sign in with the university account only. Needs oidc_issuer_url."
  type        = bool
  default     = false
}

variable "extra_security_group_rules" {
  description = "Rules added to the module's security groups beyond the seed's chain (haven.yaml `security_groups`, exported by `haven aws tfvars`): each names its group (alb-sg, app-sg, db-sg or vpce-sg), ingress or egress, tcp or udp, a port range, and one peer: another of those groups (peer_group) or an IPv4 range (cidr_ipv4)."
  type = list(object({
    group       = string
    direction   = string
    protocol    = string
    from_port   = number
    to_port     = number
    peer_group  = optional(string)
    cidr_ipv4   = optional(string)
    description = string
  }))
  default = []

  validation {
    condition = alltrue([for r in var.extra_security_group_rules :
      contains(["alb-sg", "app-sg", "db-sg", "vpce-sg"], r.group) && contains(["ingress", "egress"], r.direction) && contains(["tcp", "udp"], r.protocol) &&
      r.from_port >= 1 && r.to_port >= r.from_port && r.to_port <= 65535 &&
      ((r.peer_group == null) != (r.cidr_ipv4 == null)) && (r.peer_group == null || contains(["alb-sg", "app-sg", "db-sg", "vpce-sg"], coalesce(r.peer_group, "alb-sg")))
    ])
    error_message = "extra_security_group_rules: each rule needs a group and a peer_group among alb-sg, app-sg, db-sg, vpce-sg (or a cidr_ipv4 instead of the peer_group), direction ingress or egress, protocol tcp or udp, and ports within 1-65535."
  }
}
