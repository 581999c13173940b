output "cloudfront_domain_name" {
  description = "Point the site's DNS here."
  value       = module.haven.cloudfront_domain_name
}

output "alb_dns_name" {
  description = "Point origin_domain_name here (done by the module when route53_zone_id is set)."
  value       = module.haven.alb_dns_name
}

output "db_endpoint" {
  description = "Database endpoint."
  value       = module.haven.db_endpoint
}

output "db_master_secret_arn" {
  description = "Secret holding the DB master credentials (administration only)."
  value       = module.haven.db_master_secret_arn
}

output "db_app_secret_arn" {
  description = "Secret holding the app's DB login."
  value       = module.haven.db_app_secret_arn
}

output "assets_bucket" {
  description = "Bucket for /static/* and /materials/*: upload the static files here (docs/aws.md)."
  value       = module.haven.assets_bucket
}

output "cloudfront_distribution_id" {
  description = "Distribution to invalidate after a static upload."
  value       = module.haven.cloudfront_distribution_id
}

output "signing_key_secret_arn" {
  description = "Put the URL-signing private key (PEM) here."
  value       = module.haven.signing_key_secret_arn
}

output "alarm_topic_arn" {
  description = "SNS topic of the alarms."
  value       = module.haven.alarm_topic_arn
}

output "app_environment" {
  description = "The app's environment on every instance (no secret values)."
  value       = module.haven.app_environment
}
