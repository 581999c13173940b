# Security groups are chained by reference: CloudFront (or the internet) ->
# alb-sg -> app-sg -> db-sg. No CIDR reaches the app or the database; besides
# app-sg, only the db-logins function's group reaches db-sg.

resource "aws_security_group" "alb" {
  name_prefix = "${var.name}-alb-sg-"
  description = "ALB: HTTPS and the HTTP redirect from the internet or CloudFront"
  vpc_id      = aws_vpc.this.id
  tags        = merge(local.common_tags, { Name = "${var.name}-alb-sg" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "app" {
  name_prefix = "${var.name}-app-sg-"
  description = "App instances: the app port from alb-sg only"
  vpc_id      = aws_vpc.this.id
  tags        = merge(local.common_tags, { Name = "${var.name}-app-sg" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "db" {
  name_prefix = "${var.name}-db-sg-"
  description = "Database: PostgreSQL from app-sg only"
  vpc_id      = aws_vpc.this.id
  tags        = merge(local.common_tags, { Name = "${var.name}-db-sg" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "db_logins" {
  name_prefix = "${var.name}-db-logins-sg-"
  description = "db-logins function: PostgreSQL on db-sg and HTTPS to the VPC endpoints"
  vpc_id      = aws_vpc.this.id
  tags        = merge(local.common_tags, { Name = "${var.name}-db-logins-sg" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "endpoints" {
  name_prefix = "${var.name}-vpce-sg-"
  description = "Interface VPC endpoints: HTTPS from app-sg only"
  vpc_id      = aws_vpc.this.id
  tags        = merge(local.common_tags, { Name = "${var.name}-vpce-sg" })

  lifecycle {
    create_before_destroy = true
  }
}

locals {
  alb_listener_ports  = { https = 443, http = 80 }
  alb_from_cloudfront = var.alb_ingress == "cloudfront"
  cloudfront_prefix_list_id = (
    !local.alb_from_cloudfront ? null :
    var.cloudfront_prefix_list_id != null ? var.cloudfront_prefix_list_id :
    data.aws_ec2_managed_prefix_list.cloudfront[0].id
  )
}

# Looked up only when alb_ingress is "cloudfront" and no ID is given; this is
# the module's one plan-time AWS query.
data "aws_ec2_managed_prefix_list" "cloudfront" {
  count = local.alb_from_cloudfront && var.cloudfront_prefix_list_id == null ? 1 : 0

  name = "com.amazonaws.global.cloudfront.origin-facing"
}

# --- alb-sg ---------------------------------------------------------------

resource "aws_vpc_security_group_ingress_rule" "alb_internet" {
  for_each = local.alb_from_cloudfront ? {} : local.alb_listener_ports

  security_group_id = aws_security_group.alb.id
  description       = "${upper(each.key)} from the internet"
  ip_protocol       = "tcp"
  from_port         = each.value
  to_port           = each.value
  cidr_ipv4         = "0.0.0.0/0"
}

# One rule, HTTPS only (CloudFront reaches the origin with https-only). A rule
# that references a managed prefix list counts as the list's weight against
# the rules-per-group quota: CloudFront's weighs 55 of the default 60, so a
# second such rule (e.g. for port 80) would need a quota increase.
resource "aws_vpc_security_group_ingress_rule" "alb_cloudfront" {
  count = local.alb_from_cloudfront ? 1 : 0

  security_group_id = aws_security_group.alb.id
  description       = "HTTPS from CloudFront origin-facing servers"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = local.cloudfront_prefix_list_id
}

resource "aws_vpc_security_group_egress_rule" "alb_to_app" {
  security_group_id            = aws_security_group.alb.id
  description                  = "To the app port on app-sg"
  ip_protocol                  = "tcp"
  from_port                    = var.app_port
  to_port                      = var.app_port
  referenced_security_group_id = aws_security_group.app.id
}

# --- app-sg ---------------------------------------------------------------

resource "aws_vpc_security_group_ingress_rule" "app_from_alb" {
  security_group_id            = aws_security_group.app.id
  description                  = "App port from alb-sg"
  ip_protocol                  = "tcp"
  from_port                    = var.app_port
  to_port                      = var.app_port
  referenced_security_group_id = aws_security_group.alb.id
}

resource "aws_vpc_security_group_egress_rule" "app_to_db" {
  security_group_id            = aws_security_group.app.id
  description                  = "PostgreSQL on db-sg"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.db.id
}

resource "aws_vpc_security_group_egress_rule" "app_to_endpoints" {
  security_group_id            = aws_security_group.app.id
  description                  = "HTTPS to interface VPC endpoints"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.endpoints.id
}

resource "aws_vpc_security_group_egress_rule" "app_to_s3" {
  security_group_id = aws_security_group.app.id
  description       = "HTTPS to S3 through the gateway endpoint"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = aws_vpc_endpoint.s3.prefix_list_id
}

resource "aws_vpc_security_group_egress_rule" "app_https_nat" {
  count = var.enable_nat_gateway ? 1 : 0

  security_group_id = aws_security_group.app.id
  description       = "HTTPS to the internet through the NAT gateway"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

# --- db-sg (no egress rules: the database starts no connections) -------------

resource "aws_vpc_security_group_ingress_rule" "db_from_app" {
  security_group_id            = aws_security_group.db.id
  description                  = "PostgreSQL from app-sg"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.app.id
}

resource "aws_vpc_security_group_ingress_rule" "db_from_db_logins" {
  security_group_id            = aws_security_group.db.id
  description                  = "PostgreSQL from the db-logins function"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.db_logins.id
}

# --- db-logins-sg (no ingress: Lambda takes no connections) -------------------

resource "aws_vpc_security_group_egress_rule" "db_logins_to_db" {
  security_group_id            = aws_security_group.db_logins.id
  description                  = "PostgreSQL on db-sg"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.db.id
}

resource "aws_vpc_security_group_egress_rule" "db_logins_to_endpoints" {
  security_group_id            = aws_security_group.db_logins.id
  description                  = "HTTPS to interface VPC endpoints (Secrets Manager)"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.endpoints.id
}

resource "aws_vpc_security_group_egress_rule" "db_logins_https_nat" {
  count = var.enable_nat_gateway ? 1 : 0

  security_group_id = aws_security_group.db_logins.id
  description       = "HTTPS to the internet through the NAT gateway"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

# --- endpoints ---------------------------------------------------------------

resource "aws_vpc_security_group_ingress_rule" "endpoints_from_app" {
  security_group_id            = aws_security_group.endpoints.id
  description                  = "HTTPS from app-sg"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.app.id
}

resource "aws_vpc_security_group_ingress_rule" "endpoints_from_db_logins" {
  security_group_id            = aws_security_group.endpoints.id
  description                  = "HTTPS from the db-logins function"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.db_logins.id
}

# --- rules from haven.yaml security_groups --------------------------------------
# The seed's chain above is fixed; haven.yaml may add rules to its groups
# (`haven aws tfvars` exports them), which the local region enforces too.

locals {
  security_group_ids = {
    "alb-sg"  = aws_security_group.alb.id
    "app-sg"  = aws_security_group.app.id
    "db-sg"   = aws_security_group.db.id
    "vpce-sg" = aws_security_group.endpoints.id
  }
  # Keyed by the rule itself, so reordering the list changes nothing.
  extra_security_group_rules = {
    for r in var.extra_security_group_rules :
    "${r.group} ${r.direction} ${r.protocol} ${r.from_port}-${r.to_port} ${coalesce(r.peer_group, r.cidr_ipv4, "-")}" => r
  }
}

resource "aws_vpc_security_group_ingress_rule" "extra" {
  for_each = { for k, r in local.extra_security_group_rules : k => r if r.direction == "ingress" }

  security_group_id            = local.security_group_ids[each.value.group]
  description                  = each.value.description
  ip_protocol                  = each.value.protocol
  from_port                    = each.value.from_port
  to_port                      = each.value.to_port
  cidr_ipv4                    = each.value.cidr_ipv4
  referenced_security_group_id = each.value.peer_group == null ? null : local.security_group_ids[each.value.peer_group]
}

resource "aws_vpc_security_group_egress_rule" "extra" {
  for_each = { for k, r in local.extra_security_group_rules : k => r if r.direction == "egress" }

  security_group_id            = local.security_group_ids[each.value.group]
  description                  = each.value.description
  ip_protocol                  = each.value.protocol
  from_port                    = each.value.from_port
  to_port                      = each.value.to_port
  cidr_ipv4                    = each.value.cidr_ipv4
  referenced_security_group_id = each.value.peer_group == null ? null : local.security_group_ids[each.value.peer_group]
}
