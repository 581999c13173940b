# The courses LMS on AWS, driven by haven.yaml:
#
#   haven aws tfvars -f haven.yaml -o terraform.tfvars.json
#   terraform init && terraform plan -out plan.bin
#   terraform show -json plan.bin > plan.json && haven audit plan plan.json
#
# Deployment-specific values (AMI, artifact locations, certificates, names,
# the URL-signing public key) go in a second file, e.g.
# deploy.auto.tfvars.json. None of them is a secret.

provider "aws" {
  region = var.region

  # offline_plan lets CI validate and plan without an AWS account: no STS
  # call, no account lookup, no instance metadata. Never set it to apply.
  skip_credentials_validation = var.offline_plan
  skip_requesting_account_id  = var.offline_plan
  skip_metadata_api_check     = var.offline_plan
  skip_region_validation      = var.offline_plan

  default_tags {
    tags = {
      "haven:example" = "courses"
    }
  }
}

module "haven" {
  source = "../.."

  name   = var.name
  region = var.region
  azs    = var.azs

  enable_nat_gateway        = var.enable_nat_gateway
  alb_ingress               = var.alb_ingress
  cloudfront_prefix_list_id = var.cloudfront_prefix_list_id

  certificate_arn         = var.certificate_arn
  domain_name             = var.domain_name
  route53_zone_id         = var.route53_zone_id
  alb_deletion_protection = var.alb_deletion_protection

  app_port                 = var.app_port
  health_check             = var.health_check
  deregistration_delay     = var.deregistration_delay
  slow_start               = var.slow_start
  load_balancing_algorithm = var.load_balancing_algorithm
  alb_idle_timeout         = var.alb_idle_timeout

  ami_id           = var.ami_id
  instance_type    = var.instance_type
  artifacts_bucket = var.artifacts_bucket
  artifact_key     = var.artifact_key
  app_command      = var.app_command
  app_environment  = var.app_environment

  db_logins_artifact_key = var.db_logins_artifact_key

  min_size                  = var.min_size
  max_size                  = var.max_size
  desired_capacity          = var.desired_capacity
  health_check_type         = var.health_check_type
  health_check_grace_period = var.health_check_grace_period
  target_tracking           = var.target_tracking
  scheduled_actions         = var.scheduled_actions
  instance_refresh          = var.instance_refresh

  db_instance_class          = var.db_instance_class
  db_multi_az                = var.db_multi_az
  db_name                    = var.db_name
  db_username                = var.db_username
  db_backup_retention_period = var.db_backup_retention_period
  db_backup_window           = var.db_backup_window
  db_maintenance_window      = var.db_maintenance_window
  db_deletion_protection     = var.db_deletion_protection
  db_secret_rotation_days    = var.db_secret_rotation_days
  db_rotation_strategy       = var.db_rotation_strategy
  log_retention_days         = var.log_retention_days

  origin_domain_name           = var.origin_domain_name
  cloudfront_aliases           = var.cloudfront_aliases
  cloudfront_certificate_arn   = var.cloudfront_certificate_arn
  materials_signing_public_key = var.materials_signing_public_key
  static_paths                 = var.static_paths
  signed_paths                 = var.signed_paths
  extra_security_group_rules   = var.extra_security_group_rules
  waf_web_acl_arn              = var.waf_web_acl_arn
  alarm_email                  = var.alarm_email
  alarm_5xx_rate_percent       = var.alarm_5xx_rate_percent
  alarm_p99_latency_seconds    = var.alarm_p99_latency_seconds
  alarm_db_connections         = var.alarm_db_connections

  oidc_issuer_url        = var.oidc_issuer_url
  oidc_client_id         = var.oidc_client_id
  oidc_client_secret_arn = var.oidc_client_secret_arn
  oidc_staff_sso_only    = var.oidc_staff_sso_only
}
