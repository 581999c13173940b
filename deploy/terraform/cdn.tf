locals {
  # AWS managed CloudFront policies (IDs are global constants).
  cache_policy_caching_optimized           = "658327ea-f89d-4fab-a63d-7e88639e58f6"
  cache_policy_caching_disabled            = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
  origin_request_policy_all_viewer_no_host = "b689b0a8-53d0-40ab-baf2-68738e2966ac"
  origin_request_policy_cors_s3            = "88a5eaf4-2fd4-4709-b370-b4c650ea3fcf"

  s3_origin_id  = "s3-assets"
  alb_origin_id = "alb"
}

resource "aws_cloudfront_origin_access_control" "assets" {
  name                              = "${var.name}-assets"
  description                       = "CloudFront access to the ${var.name} assets bucket"
  origin_access_control_origin_type = "s3"
  signing_behavior                  = "always"
  signing_protocol                  = "sigv4"
}

# Signed URLs for signed_paths (course materials): CloudFront serves them only
# with a URL or cookie signed by a key in this group. The app holds the
# private key (in the secret below) and signs for enrolled students.
resource "aws_cloudfront_public_key" "materials" {
  name_prefix = "${var.name}-materials-"
  comment     = "${var.name}: signs URLs of ${join(", ", var.signed_paths)}"
  encoded_key = "${trimspace(var.materials_signing_public_key)}\n"

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_cloudfront_key_group" "materials" {
  name    = "${var.name}-materials"
  comment = "Trusted signers of ${var.name}'s signed URLs"
  items   = [aws_cloudfront_public_key.materials.id]
}

# The private key of materials_signing_public_key. The module creates the
# secret empty; put the PEM in with `aws secretsmanager put-secret-value`
# (docs/aws.md). Only the instance role may read it.
resource "aws_secretsmanager_secret" "signing_key" {
  name_prefix = "${var.name}/cloudfront-signing-key-"
  description = "PEM private key whose public half is CloudFront key ${aws_cloudfront_public_key.materials.name}"
  tags        = local.common_tags
}

resource "aws_cloudfront_distribution" "this" {
  enabled         = true
  is_ipv6_enabled = true
  http_version    = "http2and3"
  comment         = "${var.name} edge"
  price_class     = var.cloudfront_price_class
  aliases         = var.cloudfront_aliases
  web_acl_id      = var.waf_web_acl_arn

  origin {
    origin_id                = local.s3_origin_id
    domain_name              = aws_s3_bucket.assets.bucket_regional_domain_name
    origin_access_control_id = aws_cloudfront_origin_access_control.assets.id
  }

  # A name on the ALB's certificate (never the ALB's AWS DNS name), so
  # CloudFront's TLS connection to the origin verifies.
  origin {
    origin_id   = local.alb_origin_id
    domain_name = var.origin_domain_name

    custom_origin_config {
      http_port              = 80
      https_port             = 443
      origin_protocol_policy = "https-only"
      origin_ssl_protocols   = ["TLSv1.2"]
      origin_read_timeout    = 60
    }
  }

  # Everything else goes to the ALB: no caching, every viewer header (except
  # Host, so TLS to the origin matches its certificate), cookies and query
  # strings forwarded.
  default_cache_behavior {
    target_origin_id         = local.alb_origin_id
    viewer_protocol_policy   = "redirect-to-https"
    allowed_methods          = ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"]
    cached_methods           = ["GET", "HEAD"]
    compress                 = true
    cache_policy_id          = local.cache_policy_caching_disabled
    origin_request_policy_id = local.origin_request_policy_all_viewer_no_host
  }

  dynamic "ordered_cache_behavior" {
    for_each = var.static_paths

    content {
      path_pattern             = ordered_cache_behavior.value
      target_origin_id         = local.s3_origin_id
      viewer_protocol_policy   = "redirect-to-https"
      allowed_methods          = ["GET", "HEAD", "OPTIONS"]
      cached_methods           = ["GET", "HEAD"]
      compress                 = true
      cache_policy_id          = local.cache_policy_caching_optimized
      origin_request_policy_id = local.origin_request_policy_cors_s3
      trusted_key_groups       = contains(var.signed_paths, ordered_cache_behavior.value) ? [aws_cloudfront_key_group.materials.id] : null
    }
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  # Viewers need TLS 1.2 or later. The *.cloudfront.net certificate would
  # force TLSv1, so the module requires a certificate of yours.
  viewer_certificate {
    cloudfront_default_certificate = false
    acm_certificate_arn            = var.cloudfront_certificate_arn
    ssl_support_method             = "sni-only"
    minimum_protocol_version       = "TLSv1.2_2021"
  }

  tags = local.common_tags

  lifecycle {
    precondition {
      condition     = !contains(var.cloudfront_aliases, var.origin_domain_name)
      error_message = "origin_domain_name must not be one of cloudfront_aliases: it resolves to the ALB, the aliases to CloudFront."
    }

    precondition {
      condition     = alltrue([for p in var.signed_paths : contains(var.static_paths, p)])
      error_message = "Every signed_paths pattern must also be in static_paths."
    }
  }
}

# Viewer names -> the distribution, when the zone is managed here.
resource "aws_route53_record" "cloudfront" {
  for_each = var.route53_zone_id == null ? {} : {
    for pair in setproduct(var.cloudfront_aliases, ["A", "AAAA"]) : "${pair[0]} ${pair[1]}" => { name = pair[0], type = pair[1] }
  }

  zone_id = var.route53_zone_id
  name    = each.value.name
  type    = each.value.type

  alias {
    name                   = aws_cloudfront_distribution.this.domain_name
    zone_id                = aws_cloudfront_distribution.this.hosted_zone_id
    evaluate_target_health = false
  }
}
