# The app's database credential: its own secret, not the RDS master's.
#
# The db-logins function (cmd/haven-rds-logins) does what `haven up` does
# locally. At deploy it logs in with the master secret, creates the owner
# role db_username (NOLOGIN, owner of the database) and its two logins
# <db_username>_a and <db_username>_b, and writes the app secret's first
# value. Then Secrets Manager calls it to rotate the app secret with
# alternating users: the new password goes to the login not in AWSCURRENT,
# so the app never holds a credential that stopped working. Only this
# function reads the master secret; the instance role reads the app secret.

resource "aws_secretsmanager_secret" "db_app" {
  name_prefix = "${var.name}/db-app-"
  description = "PostgreSQL login of the ${var.name} app (${var.db_rotation_strategy}, rotated by ${local.db_logins_function})"
  tags        = merge(local.common_tags, { "haven:rotation" = var.db_rotation_strategy })
}

locals {
  db_logins_function = "${var.name}-db-logins"
}

resource "aws_cloudwatch_log_group" "db_logins" {
  name              = "/aws/lambda/${local.db_logins_function}"
  retention_in_days = var.log_retention_days
  tags              = local.common_tags
}

data "aws_iam_policy_document" "db_logins_assume" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "db_logins" {
  name_prefix        = "${var.name}-db-logins-"
  assume_role_policy = data.aws_iam_policy_document.db_logins_assume.json
  tags               = local.common_tags
}

data "aws_iam_policy_document" "db_logins" {
  statement {
    sid       = "ReadMasterSecret"
    effect    = "Allow"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_db_instance.this.master_user_secret[0].secret_arn]
  }

  statement {
    sid    = "RotateAppSecret"
    effect = "Allow"
    actions = [
      "secretsmanager:DescribeSecret",
      "secretsmanager:GetSecretValue",
      "secretsmanager:PutSecretValue",
      "secretsmanager:UpdateSecretVersionStage",
    ]
    resources = [aws_secretsmanager_secret.db_app.arn]
  }

  statement {
    sid       = "WriteOwnLogs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.db_logins.arn}:*"]
  }
}

resource "aws_iam_role_policy" "db_logins" {
  name   = "${var.name}-db-logins"
  role   = aws_iam_role.db_logins.id
  policy = data.aws_iam_policy_document.db_logins.json
}

# Network interfaces in the app subnets (AWS-managed policy: the EC2 actions
# it grants cannot be scoped to a resource).
resource "aws_iam_role_policy_attachment" "db_logins_vpc" {
  role       = aws_iam_role.db_logins.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
}

resource "aws_lambda_function" "db_logins" {
  function_name = local.db_logins_function
  description   = "Creates the ${var.name} app's database roles and rotates their secret"
  role          = aws_iam_role.db_logins.arn
  runtime       = "provided.al2023"
  architectures = ["arm64"]
  handler       = "bootstrap"
  s3_bucket     = var.artifacts_bucket
  s3_key        = var.db_logins_artifact_key
  timeout       = 60
  memory_size   = 128

  vpc_config {
    subnet_ids         = aws_subnet.app[*].id
    security_group_ids = [aws_security_group.db_logins.id]
  }

  # Names and addresses only. The function reads both passwords from Secrets
  # Manager with its role.
  environment {
    variables = {
      HAVEN_APP_SECRET_ID    = aws_secretsmanager_secret.db_app.arn
      HAVEN_MASTER_SECRET_ID = aws_db_instance.this.master_user_secret[0].secret_arn
      HAVEN_DB_HOST          = aws_db_instance.this.address
      HAVEN_DB_PORT          = tostring(aws_db_instance.this.port)
      HAVEN_DB_NAME          = var.db_name
      HAVEN_DB_OWNER         = var.db_username
      HAVEN_DB_LOGINS        = join(",", local.db_logins)
      HAVEN_DB_STRATEGY      = var.db_rotation_strategy
    }
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.db_logins.name
  }

  tags = local.common_tags

  depends_on = [
    aws_iam_role_policy.db_logins,
    aws_iam_role_policy_attachment.db_logins_vpc,
  ]

  lifecycle {
    precondition {
      condition     = contains(var.interface_endpoints, "secretsmanager") || var.enable_nat_gateway
      error_message = "The db-logins function reaches Secrets Manager from the app subnets: keep \"secretsmanager\" in interface_endpoints, or set enable_nat_gateway."
    }
  }
}

resource "aws_lambda_permission" "db_logins_rotation" {
  statement_id  = "SecretsManagerRotation"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.db_logins.function_name
  principal     = "secretsmanager.amazonaws.com"
  source_arn    = aws_secretsmanager_secret.db_app.arn
}

# Runs once per database (and again when the roles change): creates the
# roles and the secret's first value, idempotently.
resource "aws_lambda_invocation" "db_bootstrap" {
  function_name = aws_lambda_function.db_logins.function_name
  input         = jsonencode({ haven = "bootstrap" })

  triggers = {
    db        = aws_db_instance.this.resource_id
    secret    = aws_secretsmanager_secret.db_app.arn
    owner     = var.db_username
    logins    = join(",", local.db_logins)
    strategy  = var.db_rotation_strategy
    artifact  = var.db_logins_artifact_key
    endpoints = join(",", sort(var.interface_endpoints))
  }

  depends_on = [
    aws_vpc_endpoint.interface,
    aws_vpc_security_group_ingress_rule.db_from_db_logins,
    aws_vpc_security_group_egress_rule.db_logins_to_db,
    aws_vpc_security_group_egress_rule.db_logins_to_endpoints,
    aws_vpc_security_group_ingress_rule.endpoints_from_db_logins,
    aws_route.app_nat,
  ]
}

# db_secret_rotation_days = 0 means no rotation, as secrets.db.rotation: 0
# does locally: no schedule at all, never a default one.
resource "aws_secretsmanager_secret_rotation" "db_app" {
  count = var.db_secret_rotation_days > 0 ? 1 : 0

  secret_id           = aws_secretsmanager_secret.db_app.id
  rotation_lambda_arn = aws_lambda_function.db_logins.arn

  rotation_rules {
    automatically_after_days = var.db_secret_rotation_days
  }

  depends_on = [aws_lambda_invocation.db_bootstrap, aws_lambda_permission.db_logins_rotation]
}
