locals {
  # A fixed identifier, so the log groups RDS writes to can be created (with
  # retention) before the instance; RDS would otherwise create them with
  # none.
  db_identifier  = "${var.name}-db"
  db_log_exports = ["postgresql", "upgrade"]

  # The app's two alternating logins, members of the owner role db_username
  # (the same scheme as `haven up`: <user>_a and <user>_b).
  db_logins = ["${var.db_username}_a", "${var.db_username}_b"]
}

resource "aws_db_subnet_group" "this" {
  name_prefix = "${var.name}-db-"
  description = "DB subnets of ${var.name}"
  subnet_ids  = aws_subnet.db[*].id
  tags        = local.common_tags
}

resource "aws_db_parameter_group" "this" {
  name_prefix = "${var.name}-pg15-"
  family      = "postgres15"
  description = "${var.name}: TLS required"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  tags = local.common_tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_cloudwatch_log_group" "rds" {
  for_each = toset(local.db_log_exports)

  name              = "/aws/rds/instance/${local.db_identifier}/${each.key}"
  retention_in_days = var.log_retention_days
  tags              = local.common_tags
}

resource "aws_db_instance" "this" {
  identifier     = local.db_identifier
  engine         = "postgres"
  engine_version = var.db_engine_version
  instance_class = var.db_instance_class

  allocated_storage     = var.db_allocated_storage
  max_allocated_storage = var.db_max_allocated_storage
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = var.db_kms_key_arn

  db_name  = var.db_name
  username = var.db_master_username
  # RDS generates the master password, keeps it in Secrets Manager and
  # rotates it. The master is for administration only; the app logs in as
  # its own roles (db_logins.tf).
  manage_master_user_password = true

  multi_az               = var.db_multi_az
  db_subnet_group_name   = aws_db_subnet_group.this.name
  vpc_security_group_ids = [aws_security_group.db.id]
  parameter_group_name   = aws_db_parameter_group.this.name
  publicly_accessible    = false

  backup_retention_period   = var.db_backup_retention_period
  backup_window             = var.db_backup_window
  copy_tags_to_snapshot     = true
  deletion_protection       = var.db_deletion_protection
  skip_final_snapshot       = false
  final_snapshot_identifier = "${var.name}-db-final"
  # Deleting the instance keeps its automated backups (for their retention
  # period), so a mistaken delete can still be restored to a point in time.
  delete_automated_backups = false

  # Minor upgrades and pending modifications land only in this window.
  maintenance_window         = var.db_maintenance_window
  auto_minor_version_upgrade = true

  enabled_cloudwatch_logs_exports = local.db_log_exports
  performance_insights_enabled    = true

  tags = local.common_tags

  depends_on = [aws_cloudwatch_log_group.rds]

  lifecycle {
    precondition {
      condition     = var.db_username != var.db_master_username
      error_message = "db_username (the app's role) must differ from db_master_username (administration only)."
    }
  }
}

resource "aws_secretsmanager_secret_rotation" "db_master" {
  secret_id = aws_db_instance.this.master_user_secret[0].secret_arn

  rotation_rules {
    automatically_after_days = var.db_master_secret_rotation_days
  }
}

# Failover, failure, maintenance and storage events of the instance go to the
# alarm topic, next to the CloudWatch alarms.
resource "aws_db_event_subscription" "db" {
  name        = "${var.name}-db-events"
  sns_topic   = aws_sns_topic.alarms.arn
  source_type = "db-instance"
  source_ids  = [aws_db_instance.this.identifier]
  event_categories = [
    "availability",
    "failover",
    "failure",
    "low storage",
    "maintenance",
  ]

  tags = local.common_tags

  depends_on = [aws_kms_key_policy.alarms]
}
