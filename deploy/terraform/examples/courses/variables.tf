# Every variable below is written by `haven aws tfvars` from haven.yaml,
# except the ones marked "deployment": those describe the AWS account and
# go in a separate tfvars file.

variable "offline_plan" {
  description = "Deployment: plan without AWS credentials (CI). Never true for apply."
  type        = bool
  default     = false
}

variable "name" {
  description = "haven.yaml name."
  type        = string
  default     = "courses"
}

variable "region" {
  description = "haven.yaml aws.region."
  type        = string
  default     = "eu-west-1"
}

variable "azs" {
  description = "Availability Zones, one per haven zone."
  type        = list(string)
  default     = ["eu-west-1a", "eu-west-1b"]
}

variable "enable_nat_gateway" {
  description = "Deployment: add one NAT gateway."
  type        = bool
  default     = false
}

variable "alb_ingress" {
  description = "Deployment: \"cloudfront\" (default: only CloudFront reaches the ALB) or \"internet\"."
  type        = string
  default     = "cloudfront"
}

variable "cloudfront_prefix_list_id" {
  description = "Deployment: ID of com.amazonaws.global.cloudfront.origin-facing in the region. Null looks it up (needs credentials at plan)."
  type        = string
  default     = null
}

variable "origin_domain_name" {
  description = "Deployment: name CloudFront uses for the ALB, covered by the ALB certificate (e.g. origin.courses.example.edu)."
  type        = string
}

variable "cloudfront_aliases" {
  description = "Deployment: names viewers use for the site (e.g. [\"courses.example.edu\"])."
  type        = list(string)
}

variable "cloudfront_certificate_arn" {
  description = "Deployment: ACM certificate in us-east-1 covering cloudfront_aliases."
  type        = string
}

variable "materials_signing_public_key" {
  description = "Deployment: PEM public key of the key pair the app signs material URLs with."
  type        = string
}

variable "certificate_arn" {
  description = "Deployment: ACM certificate ARN for the ALB."
  type        = string
  default     = null
}

variable "domain_name" {
  description = "Deployment: domain for a DNS-validated certificate when certificate_arn is null."
  type        = string
  default     = null
}

variable "route53_zone_id" {
  description = "Deployment: hosted zone of origin_domain_name and the aliases; the module then writes their records and the certificate validation records."
  type        = string
  default     = null
}

variable "alb_deletion_protection" {
  description = "Deployment: ALB deletion protection."
  type        = bool
  default     = true
}

variable "app_port" {
  description = "App port on each instance."
  type        = number
  default     = 8080
}

variable "health_check" {
  description = "Target group health check (seconds)."
  type = object({
    path                = optional(string, "/")
    interval            = optional(number, 30)
    timeout             = optional(number, 5)
    healthy_threshold   = optional(number, 5)
    unhealthy_threshold = optional(number, 2)
    matcher             = optional(string, "200")
  })
  default = {}
}

variable "deregistration_delay" {
  description = "Target deregistration delay (seconds)."
  type        = number
  default     = 300
}

variable "slow_start" {
  description = "Slow start (seconds, 0 = off)."
  type        = number
  default     = 0
}

variable "load_balancing_algorithm" {
  description = "round_robin or least_outstanding_requests."
  type        = string
  default     = "round_robin"
}

variable "alb_idle_timeout" {
  description = "haven.yaml load_balancer.idle_timeout (seconds)."
  type        = number
  default     = 60
}

variable "ami_id" {
  description = "Deployment: AMI of the app instances (Amazon Linux 2023)."
  type        = string
}

variable "instance_type" {
  description = "haven.yaml aws.instance_type."
  type        = string
  default     = "t4g.small"
}

variable "artifacts_bucket" {
  description = "Deployment: bucket holding the app binary."
  type        = string
}

variable "artifact_key" {
  description = "Deployment: key of the app binary."
  type        = string
}

variable "db_logins_artifact_key" {
  description = "Deployment: key of the db-logins Lambda zip (cmd/haven-rds-logins) in artifacts_bucket."
  type        = string
}

variable "app_command" {
  description = "Arguments of the app binary."
  type        = list(string)
  default     = ["serve"]
}

variable "app_environment" {
  description = "haven.yaml app.env."
  type        = map(string)
  default     = {}
}

variable "min_size" {
  description = "haven.yaml fleet.min."
  type        = number
  default     = 2
}

variable "max_size" {
  description = "haven.yaml fleet.max."
  type        = number
  default     = 12
}

variable "desired_capacity" {
  description = "haven.yaml fleet.desired."
  type        = number
  default     = 2
}

variable "health_check_type" {
  description = "haven.yaml fleet.health_check_type (ELB or EC2)."
  type        = string
  default     = "ELB"
}

variable "health_check_grace_period" {
  description = "haven.yaml fleet.grace_period (seconds)."
  type        = number
  default     = 300
}

variable "target_tracking" {
  description = "Target tracking policies."
  type = list(object({
    metric = string
    target = number
    warmup = optional(number, 300)
  }))
  default = [{ metric = "cpu", target = 50 }]
}

variable "scheduled_actions" {
  description = "Scheduled actions."
  type = list(object({
    name             = string
    recurrence       = string
    time_zone        = optional(string)
    min_size         = optional(number)
    max_size         = optional(number)
    desired_capacity = optional(number)
  }))
  default = []
}

variable "instance_refresh" {
  description = "haven.yaml fleet.instance_refresh (see the module's variable)."
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
}

variable "db_instance_class" {
  description = "haven.yaml aws.db_instance_class."
  type        = string
  default     = "db.t4g.medium"
}

variable "db_multi_az" {
  description = "haven.yaml database.multi_az."
  type        = bool
  default     = true
}

variable "db_name" {
  description = "haven.yaml database.name."
  type        = string
  default     = "app"
}

variable "db_username" {
  description = "haven.yaml database.user (the app's owner role)."
  type        = string
  default     = "app"
}

variable "db_backup_retention_period" {
  description = "haven.yaml database.backup_retention (days)."
  type        = number
  default     = 7
}

variable "db_backup_window" {
  description = "Backup window (UTC hh24:mi-hh24:mi)."
  type        = string
  default     = null
}

variable "db_maintenance_window" {
  description = "haven.yaml aws.maintenance_window (UTC ddd:hh24:mi-ddd:hh24:mi)."
  type        = string
  default     = "sun:04:00-sun:05:00"
}

variable "db_rotation_strategy" {
  description = "haven.yaml secrets.db.strategy."
  type        = string
  default     = "alternating_users"
}

variable "log_retention_days" {
  description = "haven.yaml aws.log_retention (days, a CloudWatch Logs value)."
  type        = number
  default     = 90
}

variable "db_deletion_protection" {
  description = "Deployment: database deletion protection."
  type        = bool
  default     = true
}

variable "db_secret_rotation_days" {
  description = "haven.yaml secrets.db.rotation (days; 0: no rotation)."
  type        = number
  default     = 7
}

variable "static_paths" {
  description = "haven.yaml edge.behaviors: the paths of behaviours whose target is a bucket."
  type        = list(string)
  default     = ["/static/*", "/materials/*"]
}

variable "signed_paths" {
  description = "haven.yaml edge.behaviors: the paths of signed behaviours (a subset of static_paths)."
  type        = list(string)
  default     = ["/materials/*"]
}

variable "waf_web_acl_arn" {
  description = "Deployment: WAFv2 web ACL (CLOUDFRONT scope)."
  type        = string
  default     = null
}

variable "alarm_email" {
  description = "Deployment: e-mail subscribed to alarms."
  type        = string
  default     = null
}

variable "alarm_5xx_rate_percent" {
  description = "haven.yaml alarms.thresholds.http_5xx_percent: alarm when 5xx responses exceed this percentage of requests."
  type        = number
  default     = 5
}

variable "alarm_p99_latency_seconds" {
  description = "haven.yaml alarms.thresholds.p99_latency_seconds: alarm when the target p99 response time exceeds this many seconds."
  type        = number
  default     = 1
}

variable "alarm_db_connections" {
  description = "haven.yaml alarms.thresholds.db_connections: alarm when database connections exceed this number."
  type        = number
  default     = 100
}

variable "oidc_issuer_url" {
  description = "Deployment: the university's OpenID Connect issuer URL (Okta, Entra ID). Null: staff single sign-on off."
  type        = string
  default     = null
}

variable "oidc_client_id" {
  description = "Deployment: the app's client ID at the provider."
  type        = string
  default     = null
}

variable "oidc_client_secret_arn" {
  description = "Deployment: ARN of the Secrets Manager secret holding the client secret (never the secret itself)."
  type        = string
  default     = null
}

variable "oidc_staff_sso_only" {
  description = "Deployment: refuse teachers' password logins (staff sign in with the university account only)."
  type        = bool
  default     = false
}

variable "extra_security_group_rules" {
  description = "haven.yaml security_groups: rules added to the seed's security groups."
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
}
