output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "public_subnet_ids" {
  description = "Public subnets (ALB), one per AZ."
  value       = aws_subnet.public[*].id
}

output "app_subnet_ids" {
  description = "Private app subnets (ASG), one per AZ."
  value       = aws_subnet.app[*].id
}

output "db_subnet_ids" {
  description = "Private DB subnets, one per AZ."
  value       = aws_subnet.db[*].id
}

output "security_group_ids" {
  description = "Security groups of the chain: alb, app, db, and the VPC endpoints."
  value = {
    alb       = aws_security_group.alb.id
    app       = aws_security_group.app.id
    db        = aws_security_group.db.id
    endpoints = aws_security_group.endpoints.id
  }
}

output "alb_dns_name" {
  description = "DNS name of the ALB (point origin_domain_name here when route53_zone_id is null)."
  value       = aws_lb.this.dns_name
}

output "alb_zone_id" {
  description = "Route 53 zone ID of the ALB, for alias records."
  value       = aws_lb.this.zone_id
}

output "alb_arn" {
  description = "ARN of the ALB."
  value       = aws_lb.this.arn
}

output "target_group_arn" {
  description = "ARN of the app target group."
  value       = aws_lb_target_group.app.arn
}

output "certificate_validation_records" {
  description = "DNS records to create when the module requested the certificate and route53_zone_id is null."
  value       = local.create_certificate ? aws_acm_certificate.this[0].domain_validation_options : []
}

output "alb_certificate_names" {
  description = "Names the requested ALB certificate covers (origin_domain_name first); empty when certificate_arn is given, which must then cover origin_domain_name."
  value       = local.create_certificate ? local.alb_certificate_names : []
}

output "cloudfront_domain_name" {
  description = "Domain name of the CloudFront distribution."
  value       = aws_cloudfront_distribution.this.domain_name
}

output "cloudfront_distribution_id" {
  description = "ID of the CloudFront distribution."
  value       = aws_cloudfront_distribution.this.id
}

output "assets_bucket" {
  description = "Bucket for /static/* and /materials/* (reachable only through CloudFront)."
  value       = aws_s3_bucket.assets.id
}

output "logs_bucket" {
  description = "Bucket holding ALB access logs."
  value       = aws_s3_bucket.logs.id
}

output "autoscaling_group_name" {
  description = "Name of the app Auto Scaling group."
  value       = aws_autoscaling_group.app.name
}

output "launch_template_id" {
  description = "ID of the app launch template."
  value       = aws_launch_template.app.id
}

output "instance_role_arn" {
  description = "ARN of the app instance role."
  value       = aws_iam_role.app.arn
}

output "db_endpoint" {
  description = "Endpoint (host:port) of the database; the name survives failover."
  value       = aws_db_instance.this.endpoint
}

output "db_address" {
  description = "Host name of the database."
  value       = aws_db_instance.this.address
}

output "db_master_secret_arn" {
  description = "ARN of the RDS-managed secret with the master credentials: for administration only (the app cannot read it)."
  value       = aws_db_instance.this.master_user_secret[0].secret_arn
}

output "db_app_secret_arn" {
  description = "ARN of the app's database secret (its login, rotated with alternating users); the app reads it as COURSES_DB_SECRET_ID."
  value       = aws_secretsmanager_secret.db_app.arn
}

output "db_logins_function_name" {
  description = "Lambda function that created the app's database roles and rotates the app secret."
  value       = aws_lambda_function.db_logins.function_name
}

output "signing_key_secret_arn" {
  description = "Secret to put the PEM private key of materials_signing_public_key in; the app reads it as CLOUDFRONT_SIGNING_KEY_SECRET_ID."
  value       = aws_secretsmanager_secret.signing_key.arn
}

output "cloudfront_key_pair_id" {
  description = "ID of the CloudFront public key the app signs URLs with (CLOUDFRONT_KEY_PAIR_ID)."
  value       = aws_cloudfront_public_key.materials.id
}

output "alarm_topic_arn" {
  description = "SNS topic that receives every alarm."
  value       = aws_sns_topic.alarms.arn
}

output "app_environment" {
  description = "The environment every app instance gets: names, addresses and secret ARNs, never a secret value."
  value       = local.app_environment
}
