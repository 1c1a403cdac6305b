# The application load balancer in front of the api tasks: HTTPS on 443
# (the certificate is an input), 80 only redirects to it. Targets are the
# tasks' IPs (awsvpc: each task has its own ENI, so the load balancer
# reaches any port of it). The health check is /readyz on the telemetry
# port: that is where the process reports readiness (its issuers' keys are
# loaded), and the API port has no health route of its own.

resource "aws_security_group" "alb" {
  name        = "${local.name}-alb"
  description = "Kopter ${var.env} api load balancer: 443/80 in from the allowed CIDRs, out to the api tasks only."
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  for_each = toset(var.allowed_cidrs)

  security_group_id = aws_security_group.alb.id
  description       = "HTTPS to the API"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "alb_http" {
  for_each = toset(var.allowed_cidrs)

  security_group_id = aws_security_group.alb.id
  description       = "HTTP, answered with a redirect to HTTPS"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "alb_to_api" {
  security_group_id            = aws_security_group.alb.id
  description                  = "Requests to the api tasks"
  ip_protocol                  = "tcp"
  from_port                    = var.port
  to_port                      = var.port
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_vpc_security_group_egress_rule" "alb_to_health" {
  security_group_id            = aws_security_group.alb.id
  description                  = "Health checks (/readyz) of the api tasks"
  ip_protocol                  = "tcp"
  from_port                    = var.telemetry_port
  to_port                      = var.telemetry_port
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_security_group" "tasks" {
  name        = "${local.name}-tasks"
  description = "Kopter ${var.env} api tasks: in from the load balancer only (and scrapers on the metrics port), HTTPS out."
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "api_from_alb" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "API requests from the load balancer"
  ip_protocol                  = "tcp"
  from_port                    = var.port
  to_port                      = var.port
  referenced_security_group_id = aws_security_group.alb.id
}

resource "aws_vpc_security_group_ingress_rule" "health_from_alb" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Health checks from the load balancer"
  ip_protocol                  = "tcp"
  from_port                    = var.telemetry_port
  to_port                      = var.telemetry_port
  referenced_security_group_id = aws_security_group.alb.id
}

resource "aws_vpc_security_group_ingress_rule" "metrics" {
  for_each = toset(var.metrics_scraper_security_group_ids)

  security_group_id            = aws_security_group.tasks.id
  description                  = "Prometheus scrapes /metrics"
  ip_protocol                  = "tcp"
  from_port                    = var.telemetry_port
  to_port                      = var.telemetry_port
  referenced_security_group_id = each.value
}

resource "aws_vpc_security_group_egress_rule" "tasks_https" {
  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS to STS, DynamoDB and the issuers' JWKS"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_lb" "this" {
  # checkov:skip=CKV_AWS_150:Deletion protection is an input (default on); an environment that is torn down on purpose (dev) turns it off with its tables'.
  name                       = local.name
  load_balancer_type         = "application"
  internal                   = var.internal
  security_groups            = [aws_security_group.alb.id]
  subnets                    = var.alb_subnet_ids
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection

  dynamic "access_logs" {
    for_each = var.access_logs_bucket == null ? [] : [var.access_logs_bucket]
    content {
      bucket  = access_logs.value
      prefix  = local.name
      enabled = true
    }
  }

  tags = var.tags
}

resource "aws_wafv2_web_acl_association" "this" {
  count = var.web_acl_arn == null ? 0 : 1

  resource_arn = aws_lb.this.arn
  web_acl_arn  = var.web_acl_arn
}

resource "aws_lb_target_group" "api" {
  name                 = local.name
  target_type          = "ip"
  port                 = var.port
  protocol             = "HTTP"
  vpc_id               = var.vpc_id
  deregistration_delay = var.drain_seconds

  health_check {
    enabled             = true
    path                = "/readyz"
    port                = tostring(var.telemetry_port)
    protocol            = "HTTP"
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = var.tags
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.api.arn
  }

  tags = var.tags
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"

    redirect {
      protocol    = "HTTPS"
      port        = "443"
      status_code = "HTTP_301"
    }
  }

  tags = var.tags
}
