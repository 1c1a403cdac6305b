# The tenant HTTP API (services/api) on ECS Fargate behind an application
# load balancer. Unlike the workers (modules/service) it has no queue: it
# scales on CPU, receives traffic from the ALB only, and its task role can
# do nothing but assume the tenant-access role with a `kopter-tenant` tag
# (iam.tf); every DynamoDB call is made with that tenant's session.

data "aws_region" "current" {}
data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

locals {
  name           = "${var.env}-kopter-api"
  container_name = "api"

  # ECS waits this long after SIGTERM before SIGKILL. By then the load
  # balancer has drained the task for drain_seconds (ECS deregisters the
  # target before it stops the container), so only requests that outlived
  # that are still open; the server finishes them within this.
  stop_timeout = 30

  # Container environment: real config keys only (KOPTER_ + the key path
  # in capitals, `__` between sections; libs/runtime/src/config.rs). Lists
  # are written as `[a, b]`, the form the config loader reads from the
  # environment. Values set here win over var.config, except the console's
  # issuer: the first of var.issuers (the Cognito pool when the kopter
  # module creates one) unless var.config names another. The console's
  # session cookie is always Secure: the load balancer serves HTTPS only
  # (alb.tf), and the api refuses to serve in "prod" without it.
  environment = merge({ KOPTER_API__CONSOLE_ISSUER = var.issuers[0] }, var.config, var.public_url == null ? {} : { KOPTER_API__PUBLIC_URL = var.public_url }, {
    KOPTER_API__CONSOLE_COOKIE_SECURE = "true"
    KOPTER_ENV                        = var.env
    KOPTER_TELEMETRY__LISTEN          = "0.0.0.0:${var.telemetry_port}"
    KOPTER_TELEMETRY__LOG_FORMAT      = "json"
    KOPTER_API__LISTEN                = "0.0.0.0:${var.port}"
    KOPTER_API__ISSUERS               = "[${join(", ", var.issuers)}]"
    KOPTER_API__AUDIENCE              = var.audience
    KOPTER_API__TENANT_CLAIM          = var.tenant_claim
    KOPTER_API__ROLES_CLAIM           = var.roles_claim
    KOPTER_API__TENANT_ROLE_ARN       = aws_iam_role.tenant_access.arn
    KOPTER_API__CORS_ORIGINS          = "[${join(", ", var.cors_origins)}]"
  })

  # The cursor key never appears in the task definition: ECS injects it.
  secrets = merge(var.secrets, { KOPTER_API__CURSOR_KEY = var.cursor_key_secret_arn })

  ssm_secret_arns     = [for arn in values(local.secrets) : arn if can(regex("^arn:[^:]+:ssm:", arn))]
  secretsmanager_arns = [for arn in values(local.secrets) : arn if can(regex("^arn:[^:]+:secretsmanager:", arn))]
}

resource "aws_cloudwatch_log_group" "this" {
  # checkov:skip=CKV_AWS_338:Operational logs; retention is an input (default 90 days). The audit trail lives in DynamoDB, not here.
  name              = "/kopter/${var.env}/api"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_ecs_task_definition" "this" {
  family                   = local.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  task_role_arn            = aws_iam_role.task.arn
  execution_role_arn       = aws_iam_role.execution.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  volume {
    name = "tmp"
  }

  container_definitions = jsonencode([{
    name                   = local.container_name
    image                  = var.image
    command                = ["api"]
    essential              = true
    readonlyRootFilesystem = true
    stopTimeout            = local.stop_timeout
    portMappings = [
      { containerPort = var.port, protocol = "tcp", name = "api" },
      { containerPort = var.telemetry_port, protocol = "tcp", name = "metrics" },
    ]
    environment     = [for k in sort(keys(local.environment)) : { name = k, value = local.environment[k] }]
    secrets         = [for k in sort(keys(local.secrets)) : { name = k, valueFrom = local.secrets[k] }]
    mountPoints     = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
    linuxParameters = { initProcessEnabled = true }
    # Liveness only (as for the workers): the load balancer's health check
    # is the readiness one (/readyz: the issuers' keys are loaded).
    healthCheck = {
      command     = ["CMD", "/usr/local/bin/kopter-healthcheck", "--path", "/healthz"]
      interval    = 30
      timeout     = 10
      retries     = 3
      startPeriod = 60
    }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.this.name
        awslogs-region        = data.aws_region.current.region
        awslogs-stream-prefix = "api"
      }
    }
  }])

  tags = var.tags
}

resource "aws_ecs_service" "this" {
  name                               = local.name
  cluster                            = var.cluster_arn
  task_definition                    = aws_ecs_task_definition.this.arn
  desired_count                      = var.desired_count
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  enable_execute_command             = false
  propagate_tags                     = "SERVICE"
  # Time for a new task to load its issuers' keys before failed /readyz
  # checks count against it.
  health_check_grace_period_seconds = 60

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.api.arn
    container_name   = local.container_name
    container_port   = var.port
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  lifecycle {
    ignore_changes = [desired_count]
  }

  # The target group must belong to a load balancer before a service can
  # register into it.
  depends_on = [aws_lb_listener.https]

  tags = var.tags
}

# --- Autoscaling: CPU ------------------------------------------------------------
# Requests are short and CPU-bound (token verification, JSON encoding); an
# export streams from DynamoDB and costs little CPU, so CPU is the load.

resource "aws_appautoscaling_target" "this" {
  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${var.cluster_name}/${aws_ecs_service.this.name}"
  min_capacity       = var.min_count
  max_capacity       = var.max_count
  tags               = var.tags
}

resource "aws_appautoscaling_policy" "cpu" {
  name               = "${local.name}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this.service_namespace
  scalable_dimension = aws_appautoscaling_target.this.scalable_dimension
  resource_id        = aws_appautoscaling_target.this.resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.target_cpu_percent
    scale_out_cooldown = 60
    scale_in_cooldown  = 300

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}
