output "cloudfront_domain_name" {
  description = "Point the site's DNS here."
  value       = module.haven.cloudfront_domain_name
}

output "alb_dns_name" {
  description = "Point origin_domain_name here."
  value       = module.haven.alb_dns_name
}

output "db_endpoint" {
  description = "Database endpoint."
  value       = module.haven.db_endpoint
}

output "db_master_secret_arn" {
  description = "Secret holding the DB credentials."
  value       = module.haven.db_master_secret_arn
}

output "alarm_topic_arn" {
  description = "SNS topic of the alarms."
  value       = module.haven.alarm_topic_arn
}
