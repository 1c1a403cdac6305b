//! deploy/terraform agrees with the code: tables, queues, topic,
//! subscriptions, ECS services, schedule messages and container environment
//! are checked against the schema crate and the config struct. Parses the HCL
//! only (no Terraform, no provider, no AWS).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::Serialized;
use hcl::eval::{Context, Evaluate, FuncArgs, FuncDef, ParamType};
use hcl::{Block, Body, Expression};
use kopter_runtime::config::Config;
use kopter_schema::queues::EVENT_TYPE_ATTRIBUTE;
use kopter_schema::{Envelope, Message, Service, Subscription, Table};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tf(rel: &str) -> Body {
    let path = root().join("deploy/terraform").join(rel);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    hcl::parse(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

fn blocks<'a>(body: &'a Body, kind: &str) -> impl Iterator<Item = &'a Block> + use<'a> {
    let kind = kind.to_owned();
    body.blocks().filter(move |b| b.identifier() == kind)
}

/// The block `kind "label0" "label1"`.
fn block<'a>(body: &'a Body, kind: &str, labels: &[&str]) -> &'a Block {
    blocks(body, kind)
        .find(|b| {
            b.labels().len() == labels.len()
                && b.labels().iter().zip(labels).all(|(l, w)| l.as_str() == *w)
        })
        .unwrap_or_else(|| panic!("no block {kind} {labels:?}"))
}

fn attr<'a>(body: &'a Body, name: &str) -> &'a Expression {
    body.attributes()
        .find(|a| a.key() == name)
        .map(|a| a.expr())
        .unwrap_or_else(|| panic!("no attribute {name}"))
}

/// An attribute as HCL source text, for expressions that are references or
/// templates (`"${var.env}-kopter-${each.key}"`).
fn src(expr: &Expression) -> String {
    hcl::format::to_string(expr).expect("format expression")
}

/// A `locals` attribute anywhere in the file.
fn local<'a>(body: &'a Body, name: &str) -> &'a Expression {
    blocks(body, "locals")
        .flat_map(|b| b.body().attributes())
        .find(|a| a.key() == name)
        .map(|a| a.expr())
        .unwrap_or_else(|| panic!("no local {name}"))
}

/// Evaluation context with the few Terraform functions the checked
/// expressions use.
fn ctx() -> Context<'static> {
    fn merge(args: FuncArgs) -> Result<hcl::Value, String> {
        let mut out = hcl::Map::new();
        for v in args.iter() {
            match v {
                hcl::Value::Object(o) => out.extend(o.clone()),
                other => return Err(format!("merge of non-object {other:?}")),
            }
        }
        Ok(hcl::Value::Object(out))
    }
    fn jsonencode(args: FuncArgs) -> Result<hcl::Value, String> {
        serde_json::to_string(&args[0])
            .map(hcl::Value::String)
            .map_err(|e| e.to_string())
    }
    fn tostring(args: FuncArgs) -> Result<hcl::Value, String> {
        Ok(hcl::Value::String(match &args[0] {
            hcl::Value::String(s) => s.clone(),
            other => other.to_string(),
        }))
    }
    fn min(args: FuncArgs) -> Result<hcl::Value, String> {
        args.iter()
            .map(|v| v.as_f64().ok_or("min of non-number"))
            .try_fold(f64::INFINITY, |m, v| Ok(m.min(v?)))
            .map(|m| hcl::Value::from(m as i64))
    }
    let mut ctx = Context::new();
    ctx.declare_func(
        "merge",
        FuncDef::builder()
            .variadic_param(ParamType::Any)
            .build(merge),
    );
    ctx.declare_func(
        "jsonencode",
        FuncDef::builder().param(ParamType::Any).build(jsonencode),
    );
    ctx.declare_func(
        "tostring",
        FuncDef::builder().param(ParamType::Any).build(tostring),
    );
    ctx.declare_func(
        "min",
        FuncDef::builder()
            .variadic_param(ParamType::Number)
            .build(min),
    );
    ctx
}

fn eval(expr: &Expression, ctx: &Context) -> serde_json::Value {
    let v = expr
        .evaluate(ctx)
        .unwrap_or_else(|e| panic!("evaluate {}: {e}", src(expr)));
    serde_json::to_value(v).expect("HCL values are JSON")
}

fn opt_str(v: &serde_json::Value) -> Option<&str> {
    v.as_str()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().expect("string").to_owned())
        .collect()
}

/// The fleet as declared once in modules/kopter (`local.services`).
fn fleet() -> serde_json::Map<String, serde_json::Value> {
    let body = tf("modules/kopter/main.tf");
    match eval(local(&body, "services"), &ctx()) {
        serde_json::Value::Object(m) => m,
        other => panic!("local.services is not an object: {other}"),
    }
}

#[test]
fn every_table_is_declared_as_the_schema_says_and_nothing_else() {
    let body = tf("modules/tables/main.tf");
    let declared = match eval(local(&body, "tables"), &ctx()) {
        serde_json::Value::Object(m) => m,
        other => panic!("local.tables is not an object: {other}"),
    };
    let wanted: BTreeSet<&str> = Table::ALL.iter().map(|t| t.spec().suffix).collect();
    let have: BTreeSet<&str> = declared.keys().map(String::as_str).collect();
    assert_eq!(have, wanted, "tables in Terraform vs libs/schema");

    for table in Table::ALL {
        let spec = table.spec();
        let t = &declared[spec.suffix];
        assert_eq!(
            opt_str(&t["hash_key"]),
            Some(spec.partition_key),
            "{table:?}"
        );
        assert_eq!(
            opt_str(&t["range_key"]),
            spec.sort_key,
            "{table:?} sort key"
        );
        assert_eq!(
            opt_str(&t["ttl_attribute"]),
            spec.ttl_attribute,
            "{table:?} TTL"
        );
        let gsis: Vec<(String, String, Option<String>)> = t["gsis"]
            .as_array()
            .expect("gsis list")
            .iter()
            .map(|g| {
                (
                    g["name"].as_str().unwrap().to_owned(),
                    g["hash_key"].as_str().unwrap().to_owned(),
                    g["range_key"].as_str().map(str::to_owned),
                )
            })
            .collect();
        let want: Vec<(String, String, Option<String>)> = spec
            .gsis
            .iter()
            .map(|g| {
                (
                    g.name.to_owned(),
                    g.partition_key.to_owned(),
                    g.sort_key.map(str::to_owned),
                )
            })
            .collect();
        assert_eq!(gsis, want, "{table:?} indexes");
    }

    let res = block(&body, "resource", &["aws_dynamodb_table", "this"]).body();
    assert_eq!(src(attr(res, "for_each")), "local.tables");
    // names.rs: `{env}-kopter-{suffix}`
    assert_eq!(src(attr(res, "name")), r#""${var.env}-kopter-${each.key}""#);
    assert_eq!(src(attr(res, "billing_mode")), r#""PAY_PER_REQUEST""#);
    let pitr = block(res, "point_in_time_recovery", &[]).body();
    assert_eq!(src(attr(pitr, "enabled")), "true");
    let sse = block(res, "server_side_encryption", &[]).body();
    assert_eq!(src(attr(sse, "enabled")), "true");
    // Keys, indexes and TTL come from the map checked above.
    assert_eq!(src(attr(res, "hash_key")), "each.value.hash_key");
    assert_eq!(src(attr(res, "range_key")), "each.value.range_key");
    let dynamics: BTreeSet<String> = blocks(res, "dynamic")
        .map(|b| b.labels()[0].as_str().to_owned())
        .collect();
    for d in ["attribute", "global_secondary_index", "ttl"] {
        assert!(dynamics.contains(d), "dynamic {d} missing");
    }
    let gsi = block(res, "dynamic", &["global_secondary_index"]).body();
    assert_eq!(src(attr(gsi, "for_each")), "each.value.gsis");
}

#[test]
fn every_service_has_a_queue_with_dlq_an_ecs_service_and_its_subscription() {
    let fleet = fleet();
    let names: BTreeSet<&str> = fleet.keys().map(String::as_str).collect();
    let wanted: BTreeSet<&str> = Service::ALL.iter().map(|s| s.name()).collect();
    assert_eq!(names, wanted, "services in Terraform vs libs/schema");

    // Every binary under services/ is one of them.
    let dirs: BTreeSet<String> = std::fs::read_dir(root().join("services"))
        .expect("read services/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        dirs.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        wanted,
        "services/ vs Service::ALL"
    );

    let table_suffixes: BTreeSet<&str> = Table::ALL.iter().map(|t| t.spec().suffix).collect();
    for service in Service::ALL {
        let s = &fleet[service.name()];
        assert_eq!(
            s["port"].as_u64(),
            Some(u64::from(service.default_http_port())),
            "{service} port"
        );
        let events = strings(&s["events"]);
        let want: Vec<String> = service
            .subscribed_events()
            .iter()
            .map(|e| e.as_str().to_owned())
            .collect();
        assert_eq!(events, want, "{service} subscribed events");
        for t in strings(&s["read_tables"])
            .iter()
            .chain(&strings(&s["write_tables"]))
        {
            assert!(table_suffixes.contains(t.as_str()), "{service}: table {t}");
        }
    }

    let kopter = tf("modules/kopter/main.tf");
    for name in ["queues", "services"] {
        let m = block(&kopter, "module", &[name]).body();
        assert_eq!(src(attr(m, "for_each")), "local.services", "module {name}");
        assert_eq!(src(attr(m, "service")), "each.key", "module {name}");
        assert_eq!(
            src(attr(m, "max_receive_count")),
            "var.max_receive_count",
            "module {name}: queue redrive and service config must share it"
        );
    }
    // Each service module instance declares an ECS service running its binary.
    let svc = tf("modules/service/main.tf");
    let ecs = block(&svc, "resource", &["aws_ecs_service", "this"]).body();
    assert_eq!(src(attr(ecs, "launch_type")), r#""FARGATE""#);
    let command = src(attr(
        block(&kopter, "module", &["services"]).body(),
        "command",
    ));
    assert_eq!(command.split_whitespace().collect::<String>(), "[each.key]");

    // Queue and DLQ names (names.rs) and the redrive policy.
    let q = tf("modules/queue/main.tf");
    let main = block(&q, "resource", &["aws_sqs_queue", "main"]).body();
    let dlq = block(&q, "resource", &["aws_sqs_queue", "dlq"]).body();
    assert_eq!(src(attr(main, "name")), "local.name");
    assert_eq!(src(attr(dlq, "name")), "local.dlq_name");
    assert_eq!(
        src(local(&q, "name")),
        r#""${var.env}-kopter-${var.service}""#
    );
    assert_eq!(
        src(local(&q, "dlq_name")),
        r#""${var.env}-kopter-${var.service}-dlq""#
    );
    let redrive = src(attr(main, "redrive_policy"));
    assert!(
        redrive.contains("deadLetterTargetArn = aws_sqs_queue.dlq.arn")
            && redrive.contains("maxReceiveCount = var.max_receive_count"),
        "{redrive}"
    );
    for enc in [main, dlq] {
        assert_eq!(src(attr(enc, "kms_master_key_id")), "var.kms_key_arn");
    }

    // Defaults agree with the config the services run with.
    let defaults = Config::defaults(None);
    let vars = tf("modules/queue/variables.tf");
    let default_of = |name: &str| -> serde_json::Value {
        eval(
            attr(block(&vars, "variable", &[name]).body(), "default"),
            &ctx(),
        )
    };
    assert_eq!(
        default_of("max_receive_count").as_u64(),
        Some(u64::from(defaults.queues.max_receive_count))
    );
    assert_eq!(
        default_of("dlq_retention_seconds").as_u64(),
        Some(defaults.queues.dlq_retention.as_secs())
    );
    assert_eq!(
        default_of("visibility_timeout_seconds").as_u64(),
        Some(defaults.worker.visibility_timeout.as_secs())
    );
}

#[test]
fn the_topic_and_its_subscriptions_are_the_schemas() {
    let events = tf("modules/events/main.tf");
    let topic = block(&events, "resource", &["aws_sns_topic", "events"]).body();
    assert_eq!(src(attr(topic, "name")), r#""${var.env}-kopter-events""#);
    let sub = block(
        &events,
        "resource",
        &["aws_sns_topic_subscription", "queue"],
    )
    .body();
    assert_eq!(src(attr(sub, "raw_message_delivery")), "true");
    assert_eq!(src(attr(sub, "protocol")), r#""sqs""#);
    assert_eq!(
        src(attr(sub, "filter_policy_scope")),
        r#""MessageAttributes""#
    );
    assert!(
        blocks(&events, "resource").any(|b| b.labels()[0].as_str() == "aws_sqs_queue_policy"),
        "subscribed queues need a policy letting the topic send"
    );

    // The filter policy each subscribed queue gets, evaluated from the HCL,
    // equals Subscription::filter_policy().
    let mut ctx = ctx();
    let fleet = fleet();
    let subscribed: BTreeMap<String, serde_json::Value> = fleet
        .iter()
        .filter(|(_, s)| !strings(&s["events"]).is_empty())
        .map(|(name, s)| {
            ctx.declare_var(
                "each",
                hcl::value!({ value = { event_types = (hcl::to_value(&s["events"]).unwrap()) } }),
            );
            let policy = eval(attr(sub, "filter_policy"), &ctx);
            let policy: serde_json::Value =
                serde_json::from_str(policy.as_str().expect("JSON string")).unwrap();
            (name.clone(), policy)
        })
        .collect();
    let wanted: BTreeMap<String, serde_json::Value> = Subscription::all()
        .into_iter()
        .map(|s| {
            (
                s.service.name().to_owned(),
                serde_json::from_str(&s.filter_policy()).unwrap(),
            )
        })
        .collect();
    assert_eq!(subscribed, wanted);
    assert!(
        wanted
            .values()
            .all(|p| p.get(EVENT_TYPE_ATTRIBUTE).is_some())
    );
    let kopter = tf("modules/kopter/main.tf");
    let subs = src(attr(
        block(&kopter, "module", &["events"]).body(),
        "subscriptions",
    ));
    assert!(subs.contains("if length(s.events) > 0"), "{subs}");
}

/// Fills Scheduler's context attributes as it would at 23:00 UTC.
fn invoke(input: &str) -> String {
    input
        .replace(
            "<aws.scheduler.execution-id>",
            "5f3c9a52-1b7e-4c1a-9d8e-0a2b3c4d5e6f",
        )
        .replace("<aws.scheduler.scheduled-time>", "2026-11-26T23:00:00Z")
}

#[test]
fn every_enabled_schedule_sends_a_valid_envelope_to_the_right_queue() {
    let body = tf("modules/schedules/main.tf");
    let mut ctx = ctx();
    let envelope = eval(local(&body, "envelope"), &ctx);
    ctx.declare_var(
        "local",
        hcl::value!({ envelope = (hcl::to_value(&envelope).unwrap()) }),
    );
    let schedules = match eval(local(&body, "schedules"), &ctx) {
        serde_json::Value::Object(m) => m,
        other => panic!("local.schedules is not an object: {other}"),
    };

    let mut kinds = BTreeMap::new();
    for (job, s) in &schedules {
        let service: Service = s["service"].as_str().unwrap().parse().unwrap();
        let input = s["input"].as_str().expect("input is a JSON string");
        let decoded = Envelope::decode(&invoke(input));
        if s["enabled"] == serde_json::Value::Bool(true) {
            let env = decoded.unwrap_or_else(|e| panic!("{job}: {e}\n{input}"));
            assert_eq!(env.id, "5f3c9a52-1b7e-4c1a-9d8e-0a2b3c4d5e6f", "{job}");
            assert_eq!(env.sent_at.to_rfc3339(), "2026-11-26T23:00:00+00:00");
            assert!(
                service.accepts(env.message.kind()),
                "{job}: {} does not belong on the {service} queue",
                env.message.kind()
            );
            if let Message::AggregateHour(a) = &env.message {
                assert_eq!(a.hour, env.sent_at, "{job}");
                assert_eq!(a.backfill_hours, 1, "{job}: the hour just ended too");
                assert_eq!(a.tenant, None);
            }
            kinds.insert(job.clone(), env.message.kind());
        } else {
            // A job is disabled only while its message cannot be built by
            // Scheduler. Once the contract accepts it, enable the schedule.
            let err = decoded.expect_err(&format!(
                "{job} now decodes: set enabled = true in modules/schedules/main.tf"
            ));
            assert!(
                err.to_string().contains("notify.daily_digest"),
                "{job}: {err}"
            );
            let raw: serde_json::Value = serde_json::from_str(input).unwrap();
            kinds.insert(job.clone(), {
                let k = raw["kind"].as_str().unwrap();
                Message::KINDS.iter().find(|x| **x == k).copied().unwrap()
            });
        }
    }
    let want = BTreeMap::from([
        ("describe-sweep".to_owned(), "describe.sweep"),
        ("pricing-refresh".to_owned(), "pricing.refresh_all"),
        ("aggregate".to_owned(), "aggregate.hour"),
        ("backups".to_owned(), "backup.sweep"),
        ("daily-digest".to_owned(), "notify.daily_digest"),
    ]);
    assert_eq!(kinds, want);

    let expr = |job: &str| schedules[job]["expression"].as_str().unwrap().to_owned();
    assert_eq!(expr("describe-sweep"), "cron(0 * * * ? *)"); // hourly
    assert_eq!(expr("aggregate"), "cron(5 * * * ? *)"); // hourly
    assert_eq!(expr("backups"), "cron(0 */12 * * ? *)"); // every 12 h
    assert_eq!(expr("daily-digest"), "cron(0 23 * * ? *)"); // 23:00
    assert!(expr("pricing-refresh").ends_with(" * * ? *)"), "daily");

    let res = block(&body, "resource", &["aws_scheduler_schedule", "tick"]).body();
    assert_eq!(src(attr(res, "for_each")), "local.schedules");
    let target = block(res, "target", &[]).body();
    assert_eq!(
        src(attr(target, "arn")),
        "var.queues[each.value.service].queue_arn"
    );
    assert_eq!(src(attr(target, "input")), "each.value.input");
}

/// `KOPTER_WORKER__SHUTDOWN_GRACE` → `["worker", "shutdown_grace"]`.
fn config_path(var: &str) -> Option<Vec<String>> {
    let rest = var.strip_prefix("KOPTER_")?;
    Some(rest.split("__").map(|p| p.to_lowercase()).collect())
}

fn is_config_key(path: &[String]) -> bool {
    let mut v = serde_json::to_value(Config::defaults(None)).unwrap();
    for p in path {
        match v.get(p) {
            Some(next) => v = next.clone(),
            None => return false,
        }
    }
    !v.is_object()
}

/// Loads these variables the way the services do (figment: defaults, then
/// `KOPTER_*` values parsed like the Env provider parses them) and validates.
fn load(service: Service, env: &BTreeMap<String, String>) -> Result<Config, String> {
    let mut fig = Figment::from(Serialized::defaults(Config::defaults(Some(service))));
    for (k, v) in env {
        let Some(path) = config_path(k) else { continue };
        let value: figment::value::Value = v.parse().expect("infallible");
        fig = fig.merge(Serialized::defaults(figment::util::nest(
            &path.join("."),
            value,
        )));
    }
    let config: Config = fig.extract().map_err(|e| e.to_string())?;
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

#[test]
fn container_environment_holds_real_config_keys_only() {
    let svc = tf("modules/service/main.tf");
    let vars = tf("modules/service/variables.tf");
    let default_of = |name: &str| -> serde_json::Value {
        eval(
            attr(block(&vars, "variable", &[name]).body(), "default"),
            &ctx(),
        )
    };
    let grace = default_of("shutdown_grace_seconds").as_u64().unwrap();

    let container = src(attr(
        block(&svc, "resource", &["aws_ecs_task_definition", "this"]).body(),
        "container_definitions",
    ));
    assert!(container.contains("local.environment"), "{container}");
    assert!(container.contains("stopTimeout = local.stop_timeout"));
    assert!(container.contains("valueFrom = var.secrets[k]"));
    // ECS ignores the image's HEALTHCHECK: the task definition declares it.
    assert!(
        container.contains(r#"healthCheck = { command = ["CMD", "/usr/local/bin/kopter-healthcheck", "--path", "/healthz"]"#),
        "{container}"
    );

    let example_configs = example_fleet_configs();
    assert!(
        !example_configs.is_empty(),
        "the tfvars examples set some config"
    );

    for service in Service::ALL {
        let mut ctx = ctx();
        ctx.declare_var(
            "var",
            hcl::value!({
                config = {}
                env = "prod"
                port = (service.default_http_port())
                shutdown_grace_seconds = (grace)
                visibility_timeout_seconds = (default_of("visibility_timeout_seconds").as_u64().unwrap())
                max_receive_count = (default_of("max_receive_count").as_u64().unwrap())
            }),
        );
        let env: BTreeMap<String, String> =
            serde_json::from_value(eval(local(&svc, "environment"), &ctx)).unwrap();
        for k in env.keys() {
            let path = config_path(k).unwrap_or_else(|| panic!("{k} is not a KOPTER_ key"));
            assert!(is_config_key(&path), "{k} is not a config key");
        }
        let config = load(service, &env).unwrap_or_else(|e| panic!("{service}: {e}"));
        assert_eq!(config.env, "prod");
        assert_eq!(config.telemetry.listen.port(), service.default_http_port());
        assert_eq!(config.worker.shutdown_grace.as_secs(), grace);
        assert_eq!(
            config.worker.visibility_timeout,
            Config::defaults(None).worker.visibility_timeout
        );

        // And with each environment's extra keys and secrets on top.
        for (file, fleet) in &example_configs {
            let Some((config_keys, secret_keys)) = fleet.get(service.name()) else {
                continue;
            };
            for k in config_keys.keys().chain(secret_keys) {
                let path = config_path(k).unwrap_or_else(|| panic!("{file}: {k}"));
                assert!(is_config_key(&path), "{file}: {k} is not a config key");
            }
            let mut all = env.clone();
            all.extend(config_keys.clone());
            load(service, &all).unwrap_or_else(|e| panic!("{file} {service}: {e}"));
        }
    }

    // stopTimeout covers the drain for every allowed grace.
    for grace in 1..=115u64 {
        let mut ctx = ctx();
        ctx.declare_var("var", hcl::value!({ shutdown_grace_seconds = (grace) }));
        let stop = eval(local(&svc, "stop_timeout"), &ctx).as_u64().unwrap();
        assert!(
            stop > grace && stop <= 120,
            "grace {grace}: stopTimeout {stop}"
        );
    }
}

type ExampleFleet = BTreeMap<String, (BTreeMap<String, String>, Vec<String>)>;

/// `fleet[*].config` and the keys of `fleet[*].secrets` in each
/// environment's terraform.tfvars.example.
fn example_fleet_configs() -> Vec<(String, ExampleFleet)> {
    ["dev", "prod"]
        .into_iter()
        .map(|e| {
            let file = format!("environments/{e}/terraform.tfvars.example");
            let body = tf(&file);
            let fleet = eval(attr(&body, "fleet"), &ctx());
            let services: ExampleFleet = fleet
                .as_object()
                .unwrap()
                .iter()
                .map(|(name, s)| {
                    let config: BTreeMap<String, String> = s
                        .get("config")
                        .map(|c| serde_json::from_value(c.clone()).unwrap())
                        .unwrap_or_default();
                    let secrets: Vec<String> = s
                        .get("secrets")
                        .and_then(|c| c.as_object())
                        .map(|o| o.keys().cloned().collect())
                        .unwrap_or_default();
                    (name.clone(), (config, secrets))
                })
                .collect();
            let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
            let wanted: BTreeSet<&str> = Service::ALL.iter().map(|s| s.name()).collect();
            assert_eq!(names, wanted, "{file}: fleet must size every service");
            (file, services)
        })
        .collect()
}

#[test]
fn a_misnamed_config_key_would_be_caught() {
    // The checks above can fail: a typo is not a config key, and a bad value
    // does not load.
    let typo = config_path("KOPTER_WORKER__CONCURENCY").unwrap();
    assert!(!is_config_key(&typo));
    assert!(!is_config_key(&config_path("KOPTER_WORKER").unwrap()));
    let bad = BTreeMap::from([("KOPTER_WORKER__SHUTDOWN_GRACE".to_owned(), "10m".to_owned())]);
    assert!(
        load(Service::Pricing, &bad)
            .unwrap_err()
            .contains("shutdown_grace")
    );
    let list = BTreeMap::from([(
        "KOPTER_PRICING__REGIONS".to_owned(),
        "[eu-west-1, us-east-1]".to_owned(),
    )]);
    assert_eq!(
        load(Service::Pricing, &list).unwrap().pricing.regions,
        ["eu-west-1", "us-east-1"]
    );
}

/// Every statement of the tenant policy document, `(sid, body)`, whether
/// written plainly or as a `dynamic "statement"` block's `content`.
fn tenant_policy_statements() -> Vec<(String, Body)> {
    let main = tf("modules/tenant-read-policy/main.tf");
    let doc = block(&main, "data", &["aws_iam_policy_document", "this"]);
    let mut out = Vec::new();
    for b in doc.body().blocks() {
        let body = match (b.identifier(), b.labels().first().map(|l| l.as_str())) {
            ("statement", _) => b.body().clone(),
            ("dynamic", Some("statement")) => blocks(b.body(), "content")
                .next()
                .expect("dynamic statement has content")
                .body()
                .clone(),
            _ => continue,
        };
        let sid = src(attr(&body, "sid")).trim_matches('"').to_owned();
        out.push((sid, body));
    }
    out
}

fn actions(body: &Body) -> BTreeSet<String> {
    strings(&eval(attr(body, "actions"), &ctx()))
        .into_iter()
        .collect()
}

/// `(test, variable, values as source)` of each condition.
fn conditions(body: &Body) -> Vec<(String, String, String)> {
    blocks(body, "condition")
        .map(|c| {
            let b = c.body();
            (
                src(attr(b, "test")).trim_matches('"').to_owned(),
                src(attr(b, "variable")).trim_matches('"').to_owned(),
                src(attr(b, "values")),
            )
        })
        .collect()
}

#[test]
fn the_tenant_policy_confines_reads_and_the_admin_writes_to_the_tenants_keys() {
    let statements = tenant_policy_statements();
    let sids: Vec<&str> = statements.iter().map(|(s, _)| s.as_str()).collect();
    for want in ["OwnRowsOnly", "WriteOwnRows", "ReadPriceCatalogue"] {
        assert!(sids.contains(&want), "{want} missing: {sids:?}");
    }
    let leading_keys = |body: &Body, sid: &str| {
        let c = conditions(body);
        assert!(
            c.iter().any(|(t, v, vals)| t == "ForAllValues:StringLike"
                && v == "dynamodb:LeadingKeys"
                && vals.contains("local.tenant")
                && vals.contains("${local.tenant}#*")),
            "{sid}: {c:?}"
        );
        // ForAllValues holds for an empty key set (Scan, PartiQL): the
        // statement must also insist that keys are present.
        assert!(
            c.iter().any(|(t, v, vals)| t == "Null"
                && v == "dynamodb:LeadingKeys"
                && vals.contains("false")),
            "{sid}: {c:?}"
        );
    };
    let never = [
        "dynamodb:*",
        "dynamodb:Scan",
        "dynamodb:PartiQLSelect",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:DeleteTable",
    ];
    for (sid, body) in &statements {
        let acts = actions(body);
        for a in never {
            assert!(!acts.contains(a), "{sid} grants {a}");
        }
        match sid.as_str() {
            "OwnRowsOnly" => {
                assert_eq!(
                    acts,
                    [
                        "dynamodb:BatchGetItem",
                        "dynamodb:GetItem",
                        "dynamodb:Query"
                    ]
                    .map(String::from)
                    .into()
                );
                leading_keys(body, sid);
            }
            "WriteOwnRows" => {
                assert_eq!(
                    acts,
                    ["dynamodb:PutItem", "dynamodb:UpdateItem"]
                        .map(String::from)
                        .into()
                );
                leading_keys(body, sid);
            }
            "ReadPriceCatalogue" => {
                assert_eq!(
                    acts,
                    ["dynamodb:GetItem", "dynamodb:Query"]
                        .map(String::from)
                        .into()
                );
                assert_eq!(src(attr(body, "resources")), "[var.table_arns[\"prices\"]]");
            }
            _ => assert!(acts.iter().all(|a| a.starts_with("s3:")), "{sid}: {acts:?}"),
        }
    }
    // The principal tag is the one the api's sessions carry.
    let vars = tf("modules/tenant-read-policy/variables.tf");
    let tag = block(&vars, "variable", &["tenant_tag_key"]);
    assert_eq!(
        eval(attr(tag.body(), "default"), &ctx()),
        serde_json::json!(kopter_runtime::credentials::TENANT_TAG)
    );
    let main = tf("modules/tenant-read-policy/main.tf");
    assert!(src(local(&main, "tenant")).contains("aws:PrincipalTag/"));
    // Writes go to tenant-owned tables only.
    let writes = block(&vars, "variable", &["write_tables"]);
    for t in strings(&eval(attr(writes.body(), "default"), &ctx())) {
        let table = Table::ALL
            .into_iter()
            .find(|x| x.spec().suffix == t)
            .unwrap_or_else(|| panic!("write table {t} is not in the schema"));
        assert!(table.spec().tenant_owned, "{t} is not tenant-owned");
    }
}
