locals {
  # Environment of the app. Only names and addresses: the DB password is
  # fetched at start from Secrets Manager with the instance role. No AWS
  # endpoint override is set, so the SDK talks to real AWS (IMDSv2 for
  # credentials, regional endpoints through the VPC endpoints).
  #
  # As locally, the spec's environment (app_environment) may override these,
  # but not PORT; HOST, HAVEN_INSTANCE_ID and HAVEN_ZONE come from the
  # instance's metadata at boot (modules/app_boot).
  app_environment = merge({
    AWS_REGION = var.region
    # The same names the app reads locally (libpq's PG* variables and the
    # secret's id); only the values differ. The secret is the app's own
    # login (db_logins.tf), never the master's.
    PGHOST               = aws_db_instance.this.address
    PGPORT               = tostring(aws_db_instance.this.port)
    PGDATABASE           = var.db_name
    PGSSLMODE            = "require"
    COURSES_DB_SECRET_ID = aws_secretsmanager_secret.db_app.arn
    S3_BUCKET            = aws_s3_bucket.assets.id
    S3_PREFIX            = var.materials_prefix
    # Signed URLs for signed_paths: the key pair's ID in CloudFront, and the
    # secret holding its private key.
    CLOUDFRONT_KEY_PAIR_ID           = aws_cloudfront_public_key.materials.id
    CLOUDFRONT_SIGNING_KEY_SECRET_ID = aws_secretsmanager_secret.signing_key.arn
  }, local.oidc_environment, var.app_environment, { PORT = tostring(var.app_port) })

  # Staff single sign-on: the issuer, the client ID and the ARN of the client
  # secret's secret (the app fetches the secret with the instance role, as it
  # does the database credential). The public URL is the first CloudFront
  # alias: the redirect URI the provider knows is that plus
  # /login/sso/callback.
  # All three or nothing: the launch template's precondition refuses half.
  oidc_enabled = var.oidc_issuer_url != null && var.oidc_client_id != null && var.oidc_client_secret_arn != null
  oidc_environment = local.oidc_enabled ? {
    COURSES_OIDC_ISSUER           = var.oidc_issuer_url
    COURSES_OIDC_CLIENT_ID        = var.oidc_client_id
    COURSES_OIDC_CLIENT_SECRET_ID = var.oidc_client_secret_arn
    COURSES_PUBLIC_URL            = "https://${var.cloudfront_aliases[0]}"
    COURSES_SSO_ONLY_STAFF        = tostring(var.oidc_staff_sso_only)
  } : {}

  # The alarms an instance refresh watches: the 5xx rate and healthy hosts
  # always (AWS's stand-ins for the local errors and health gates, which
  # compare versions), then the spec's rollback_on, by haven alarm name.
  # alarms.tf names each alarm "<name>-<haven alarm name>"; the names are
  # built here rather than referenced because asg-at-max watches this group
  # (a reference would be a cycle). The plan test checks each one exists.
  refresh_alarms = [
    for a in distinct(concat(["alb-5xx-rate", "healthy-hosts-below-min"], var.instance_refresh.rollback_alarms)) : "${var.name}-${a}"
  ]

  scaling_metric = {
    cpu           = "ASGAverageCPUUtilization"
    request_count = "ALBRequestCountPerTarget"
  }
}

# The user data: the binary, its environment file, its systemd unit and the
# boot script that adds HOST, HAVEN_INSTANCE_ID and HAVEN_ZONE (modules/app_boot).
module "app_boot" {
  source = "./modules/app_boot"

  name             = var.name
  region           = var.region
  artifacts_bucket = var.artifacts_bucket
  artifact_key     = var.artifact_key
  command          = var.app_command
  environment      = local.app_environment
}

resource "aws_launch_template" "app" {
  name_prefix            = "${var.name}-app-"
  image_id               = var.ami_id
  instance_type          = var.instance_type
  vpc_security_group_ids = [aws_security_group.app.id]
  user_data              = base64encode(module.app_boot.user_data)
  update_default_version = true
  ebs_optimized          = true

  iam_instance_profile {
    arn = aws_iam_instance_profile.app.arn
  }

  # IMDSv2 only, and the token cannot leave the instance (hop limit 1).
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  block_device_mappings {
    device_name = var.root_device_name

    ebs {
      volume_size           = var.root_volume_size
      volume_type           = "gp3"
      encrypted             = true
      kms_key_id            = var.ebs_kms_key_arn
      delete_on_termination = true
    }
  }

  monitoring {
    enabled = true
  }

  lifecycle {
    precondition {
      condition     = (var.oidc_issuer_url == null) == (var.oidc_client_id == null) && (var.oidc_issuer_url == null) == (var.oidc_client_secret_arn == null)
      error_message = "oidc_issuer_url, oidc_client_id and oidc_client_secret_arn go together: set all three for single sign-on, or none."
    }
    precondition {
      condition     = !var.oidc_staff_sso_only || var.oidc_issuer_url != null
      error_message = "oidc_staff_sso_only needs oidc_issuer_url: without single sign-on, staff could not log in at all."
    }
  }

  tag_specifications {
    resource_type = "instance"
    tags          = merge(local.common_tags, { Name = "${var.name}-app" })
  }

  tag_specifications {
    resource_type = "volume"
    tags          = merge(local.common_tags, { Name = "${var.name}-app" })
  }

  tags = local.common_tags
}

resource "aws_autoscaling_group" "app" {
  name_prefix         = "${var.name}-app-"
  min_size            = var.min_size
  max_size            = var.max_size
  desired_capacity    = var.desired_capacity
  vpc_zone_identifier = aws_subnet.app[*].id
  target_group_arns   = [aws_lb_target_group.app.arn]

  health_check_type         = var.health_check_type
  health_check_grace_period = var.health_check_grace_period
  default_instance_warmup   = var.default_instance_warmup
  capacity_rebalance        = true
  wait_for_capacity_timeout = "15m"

  enabled_metrics = [
    "GroupMinSize",
    "GroupMaxSize",
    "GroupDesiredCapacity",
    "GroupInServiceInstances",
    "GroupTotalInstances",
  ]

  launch_template {
    id      = aws_launch_template.app.id
    version = aws_launch_template.app.latest_version
  }

  # A new launch template version rolls out as `haven deploy` rolls it out
  # locally, from the same spec fields (var.instance_refresh): launch before
  # terminate up to max_healthy_percentage, a bake at each checkpoint, and a
  # rollback when a watched alarm goes to ALARM.
  instance_refresh {
    strategy = "Rolling"

    preferences {
      min_healthy_percentage = var.instance_refresh.min_healthy_percentage
      max_healthy_percentage = var.instance_refresh.max_healthy_percentage
      checkpoint_percentages = var.instance_refresh.checkpoint_percentages
      checkpoint_delay       = tostring(var.instance_refresh.checkpoint_delay)
      instance_warmup        = tostring(var.instance_refresh.instance_warmup)
      auto_rollback          = var.instance_refresh.auto_rollback

      alarm_specification {
        alarms = local.refresh_alarms
      }
    }
  }

  tag {
    key                 = "Name"
    value               = "${var.name}-app"
    propagate_at_launch = true
  }

  dynamic "tag" {
    for_each = local.common_tags

    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }

  # Instances start once the app's database roles and secret exist.
  depends_on = [aws_lambda_invocation.db_bootstrap]

  lifecycle {
    # Scaling policies and scheduled actions own desired capacity after creation.
    ignore_changes = [desired_capacity]

    precondition {
      condition     = var.min_size <= var.desired_capacity && var.desired_capacity <= var.max_size
      error_message = "desired_capacity must lie between min_size and max_size."
    }
  }
}

resource "aws_autoscaling_policy" "target_tracking" {
  for_each = { for p in var.target_tracking : p.metric => p }

  name                      = "${var.name}-${replace(each.key, "_", "-")}"
  autoscaling_group_name    = aws_autoscaling_group.app.name
  policy_type               = "TargetTrackingScaling"
  estimated_instance_warmup = each.value.warmup

  target_tracking_configuration {
    target_value = each.value.target

    predefined_metric_specification {
      predefined_metric_type = local.scaling_metric[each.key]
      resource_label         = each.key == "request_count" ? "${aws_lb.this.arn_suffix}/${aws_lb_target_group.app.arn_suffix}" : null
    }
  }
}

resource "aws_autoscaling_schedule" "app" {
  for_each = { for s in var.scheduled_actions : s.name => s }

  scheduled_action_name  = each.key
  autoscaling_group_name = aws_autoscaling_group.app.name
  recurrence             = each.value.recurrence
  time_zone              = each.value.time_zone
  # -1 leaves the value unchanged when the action fires.
  min_size         = coalesce(each.value.min_size, -1)
  max_size         = coalesce(each.value.max_size, -1)
  desired_capacity = coalesce(each.value.desired_capacity, -1)
  start_time       = each.value.start_time
  end_time         = each.value.end_time
}
