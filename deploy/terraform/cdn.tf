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

  origin {
    origin_id   = local.alb_origin_id
    domain_name = coalesce(var.origin_domain_name, aws_lb.this.dns_name)

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
    }
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  viewer_certificate {
    cloudfront_default_certificate = var.cloudfront_certificate_arn == null
    acm_certificate_arn            = var.cloudfront_certificate_arn
    ssl_support_method             = var.cloudfront_certificate_arn == null ? null : "sni-only"
    minimum_protocol_version       = var.cloudfront_certificate_arn == null ? "TLSv1" : "TLSv1.2_2021"
  }

  tags = local.common_tags
}
