locals {
  # Environment of the app. Only names and addresses: the DB password is
  # fetched at start from Secrets Manager with the instance role. No AWS
  # endpoint override is set, so the SDK talks to real AWS (IMDSv2 for
  # credentials, regional endpoints through the VPC endpoints).
  app_environment = merge({
    AWS_REGION = var.region
    PORT       = tostring(var.app_port)
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
  }, var.app_environment)

  systemd_unit = <<-UNIT
    [Unit]
    Description=${var.name} app
    Wants=network-online.target
    After=network-online.target

    [Service]
    DynamicUser=yes
    EnvironmentFile=/etc/${var.name}/env
    ExecStart=/usr/local/bin/${var.name} ${join(" ", [for a in var.app_command : format("%q", a)])}
    Restart=always
    RestartSec=2
    NoNewPrivileges=yes
    ProtectSystem=strict
    ProtectHome=yes
    PrivateTmp=yes

    [Install]
    WantedBy=multi-user.target
  UNIT

  cloud_config = {
    write_files = [
      {
        path        = "/etc/${var.name}/env"
        permissions = "0644"
        content     = join("", [for k in sort(keys(local.app_environment)) : "${k}=${local.app_environment[k]}\n"])
      },
      {
        path        = "/etc/systemd/system/${var.name}.service"
        permissions = "0644"
        content     = local.systemd_unit
      },
    ]
    runcmd = [
      ["aws", "s3", "cp", "--region", var.region, "s3://${var.artifacts_bucket}/${var.artifact_key}", "/usr/local/bin/${var.name}"],
      ["chmod", "0755", "/usr/local/bin/${var.name}"],
      ["systemctl", "daemon-reload"],
      ["systemctl", "enable", "--now", "${var.name}.service"],
    ]
  }

  user_data = "#cloud-config\n${yamlencode(local.cloud_config)}"

  scaling_metric = {
    cpu           = "ASGAverageCPUUtilization"
    request_count = "ALBRequestCountPerTarget"
  }
}

resource "aws_launch_template" "app" {
  name_prefix            = "${var.name}-app-"
  image_id               = var.ami_id
  instance_type          = var.instance_type
  vpc_security_group_ids = [aws_security_group.app.id]
  user_data              = base64encode(local.user_data)
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

  health_check_type         = "ELB"
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

  instance_refresh {
    strategy = "Rolling"

    preferences {
      min_healthy_percentage = var.instance_refresh_min_healthy_percentage
      auto_rollback          = true

      alarm_specification {
        alarms = [
          aws_cloudwatch_metric_alarm.alb_5xx_rate.alarm_name,
          aws_cloudwatch_metric_alarm.healthy_hosts.alarm_name,
        ]
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
