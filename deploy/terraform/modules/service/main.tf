# One Kopter service on ECS Fargate: task definition, service, its two roles,
# its log group and autoscaling on the backlog of its own queue.

data "aws_region" "current" {}
data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

locals {
  name           = "${var.env}-kopter-${var.service}"
  container_name = var.service

  # ECS waits this long after SIGTERM before SIGKILL. The worker drains for
  # `worker.shutdown_grace`, then returns unfinished messages to the queue and
  # exits; the margin covers that last step (at most 120 s on Fargate).
  stop_timeout = min(var.shutdown_grace_seconds + 5, 120)

  # Container environment: the services' real config keys (KOPTER_ + the
  # key path in upper case, `__` between sections; see
  # libs/runtime/src/config.rs). Values set here win over var.config.
  environment = merge(var.config, {
    KOPTER_ENV                        = var.env
    KOPTER_TELEMETRY__LISTEN          = "0.0.0.0:${var.port}"
    KOPTER_TELEMETRY__LOG_FORMAT      = "json"
    KOPTER_WORKER__SHUTDOWN_GRACE     = "${var.shutdown_grace_seconds}s"
    KOPTER_WORKER__VISIBILITY_TIMEOUT = "${var.visibility_timeout_seconds}s"
    KOPTER_QUEUES__MAX_RECEIVE_COUNT  = tostring(var.max_receive_count)
  })

  ssm_secret_arns     = [for arn in values(var.secrets) : arn if can(regex("^arn:[^:]+:ssm:", arn))]
  secretsmanager_arns = [for arn in values(var.secrets) : arn if can(regex("^arn:[^:]+:secretsmanager:", arn))]
}

resource "aws_cloudwatch_log_group" "this" {
  # checkov:skip=CKV_AWS_338:Operational logs; retention is an input (default 90 days). The audit trail lives in DynamoDB, not here.
  name              = "/kopter/${var.env}/${var.service}"
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

  # Scratch space: the root filesystem is read-only.
  volume {
    name = "tmp"
  }

  container_definitions = jsonencode([{
    name                   = local.container_name
    image                  = var.image
    command                = var.command
    essential              = true
    readonlyRootFilesystem = true
    stopTimeout            = local.stop_timeout
    portMappings           = [{ containerPort = var.port, protocol = "tcp", name = "metrics" }]
    environment            = [for k in sort(keys(local.environment)) : { name = k, value = local.environment[k] }]
    secrets                = [for k in sort(keys(var.secrets)) : { name = k, valueFrom = var.secrets[k] }]
    mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
    linuxParameters        = { initProcessEnabled = true }
    # Liveness, not readiness: /healthz answers while the process and its
    # runtime do, so ECS replaces a wedged task but not one waiting out an
    # AWS outage (that shows on /readyz and in the alerts instead). ECS
    # ignores the image's HEALTHCHECK; it has to be declared here.
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
        awslogs-stream-prefix = var.service
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

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = var.security_group_ids
    assign_public_ip = false
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  # The autoscaling policy owns the task count after the first apply.
  lifecycle {
    ignore_changes = [desired_count]
  }

  tags = var.tags
}

# --- Autoscaling: backlog per task -------------------------------------------
# Target tracking on (visible messages in the service's queue) / (running
# tasks), the metric-math form AWS recommends for SQS workers. Scale-in stops
# tasks with SIGTERM; each drains within stopTimeout (above), so no message is
# cut off mid-work for longer than the drain grace, and what does not finish
# is returned to the queue at once.

resource "aws_appautoscaling_target" "this" {
  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${var.cluster_name}/${aws_ecs_service.this.name}"
  min_capacity       = var.min_count
  max_capacity       = var.max_count
  tags               = var.tags
}

resource "aws_appautoscaling_policy" "backlog" {
  name               = "${local.name}-backlog-per-task"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this.service_namespace
  scalable_dimension = aws_appautoscaling_target.this.scalable_dimension
  resource_id        = aws_appautoscaling_target.this.resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.target_backlog_per_task
    scale_out_cooldown = 60
    scale_in_cooldown  = 300

    customized_metric_specification {
      metrics {
        id          = "visible"
        label       = "Visible messages in ${var.queue_name}"
        return_data = false

        metric_stat {
          stat = "Sum"

          metric {
            namespace   = "AWS/SQS"
            metric_name = "ApproximateNumberOfMessagesVisible"

            dimensions {
              name  = "QueueName"
              value = var.queue_name
            }
          }
        }
      }

      metrics {
        id          = "tasks"
        label       = "Running tasks of ${local.name}"
        return_data = false

        # Container Insights must be on for the cluster (the kopter module
        # enables it).
        metric_stat {
          stat = "Average"

          metric {
            namespace   = "ECS/ContainerInsights"
            metric_name = "RunningTaskCount"

            dimensions {
              name  = "ClusterName"
              value = var.cluster_name
            }

            dimensions {
              name  = "ServiceName"
              value = aws_ecs_service.this.name
            }
          }
        }
      }

      metrics {
        id          = "backlog_per_task"
        label       = "Backlog per task"
        expression  = "visible / tasks"
        return_data = true
      }
    }
  }
}
