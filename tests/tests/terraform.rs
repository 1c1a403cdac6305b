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
    fn join(args: FuncArgs) -> Result<hcl::Value, String> {
        let sep = args[0].as_str().ok_or("join separator is not a string")?;
        let parts = args[1]
            .as_array()
            .ok_or("join of non-list")?
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or("join of non-string"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(hcl::Value::String(parts.join(sep)))
    }
    let mut ctx = Context::new();
    ctx.declare_func(
        "join",
        FuncDef::builder()
            .param(ParamType::String)
            .param(ParamType::Array(Box::new(ParamType::String)))
            .build(join),
    );
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
        type Index = (String, String, Option<String>, Option<String>);
        let gsis: Vec<Index> = t["gsis"]
            .as_array()
            .expect("gsis list")
            .iter()
            .map(|g| {
                (
                    g["name"].as_str().unwrap().to_owned(),
                    g["hash_key"].as_str().unwrap().to_owned(),
                    g["range_key"].as_str().map(str::to_owned),
                    g["projection"].as_str().map(str::to_owned),
                )
            })
            .collect();
        let want: Vec<Index> = spec
            .gsis
            .iter()
            .map(|g| {
                (
                    g.name.to_owned(),
                    g.partition_key.to_owned(),
                    g.sort_key.map(str::to_owned),
                    Some(g.projection.as_str().to_owned()),
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
    let content = block(gsi, "content", &[]).body();
    assert_eq!(
        src(attr(content, "projection_type")),
        "global_secondary_index.value.projection"
    );
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
    // ... except the api, which has no queue (modules/api, checked below).
    assert!(dirs.contains("api"), "services/api");
    assert_eq!(
        dirs.iter()
            .map(String::as_str)
            .filter(|d| *d != "api")
            .collect::<BTreeSet<_>>(),
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
        ("spot-refresh".to_owned(), "pricing.refresh_spot"),
        ("aggregate".to_owned(), "aggregate.hour"),
        ("backups".to_owned(), "backup.sweep"),
        ("daily-digest".to_owned(), "notify.daily_digest"),
        ("org-discovery".to_owned(), "describe.org_discovery"),
    ]);
    assert_eq!(kinds, want);

    let expr = |job: &str| schedules[job]["expression"].as_str().unwrap().to_owned();
    assert_eq!(expr("describe-sweep"), "cron(0 * * * ? *)"); // hourly
    assert_eq!(expr("aggregate"), "cron(5 * * * ? *)"); // hourly
    assert_eq!(expr("backups"), "cron(0 */12 * * ? *)"); // every 12 h
    assert_eq!(expr("daily-digest"), "cron(0 23 * * ? *)"); // 23:00
    assert_eq!(expr("org-discovery"), "cron(20 */6 * * ? *)"); // every 6 h
    assert!(expr("pricing-refresh").ends_with(" * * ? *)"), "daily");
    // Before the aggregate tick (minute 5) prices the hour just ended.
    assert_eq!(expr("spot-refresh"), "cron(1 * * * ? *)"); // hourly

    let res = block(&body, "resource", &["aws_scheduler_schedule", "tick"]).body();
    assert_eq!(src(attr(res, "for_each")), "local.schedules");
    let target = block(res, "target", &[]).body();
    assert_eq!(
        src(attr(target, "arn")),
        "var.queues[each.value.service].queue_arn"
    );
    assert_eq!(src(attr(target, "input")), "each.value.input");
}

/// The jobs of `kopterctl tick` (the variants of its `Job` enum), as clap
/// names them on the command line (kebab-case).
fn kopterctl_tick_jobs() -> BTreeSet<String> {
    let path = root().join("tools/kopterctl/src/main.rs");
    let text = std::fs::read_to_string(&path).expect("read kopterctl's main.rs");
    let body = text
        .split_once("enum Job {")
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(body, _)| body)
        .expect("kopterctl has `enum Job { … }`");
    body.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//") && !l.starts_with('#'))
        .map(|variant| {
            let name = variant.trim_end_matches(',');
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric()),
                "unexpected line in enum Job: {variant:?}"
            );
            let mut kebab = String::new();
            for (i, c) in name.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    kebab.push('-');
                }
                kebab.push(c.to_ascii_lowercase());
            }
            kebab
        })
        .collect()
}

#[test]
fn every_tick_kopterctl_can_send_has_a_schedule_or_a_reason_not_to() {
    let body = tf("modules/schedules/main.tf");
    let mut ctx = ctx();
    let envelope = eval(local(&body, "envelope"), &ctx);
    ctx.declare_var(
        "local",
        hcl::value!({ envelope = (hcl::to_value(&envelope).unwrap()) }),
    );
    let scheduled: BTreeSet<String> = match eval(local(&body, "schedules"), &ctx) {
        serde_json::Value::Object(m) => m.keys().cloned().collect(),
        other => panic!("local.schedules is not an object: {other}"),
    };
    let unscheduled = match eval(local(&body, "unscheduled"), &ctx) {
        serde_json::Value::Object(m) => m,
        other => panic!("local.unscheduled is not an object: {other}"),
    };
    let jobs = kopterctl_tick_jobs();
    assert!(
        jobs.contains("spot-refresh") && jobs.contains("aggregate"),
        "kopterctl's jobs were not read: {jobs:?}"
    );
    for job in &jobs {
        match (scheduled.contains(job), unscheduled.get(job)) {
            (true, None) => {}
            (false, Some(why)) => assert!(
                why.as_str()
                    .is_some_and(|w| w.split_whitespace().count() >= 5),
                "{job}: the reason it has no schedule must say why: {why}"
            ),
            (true, Some(_)) => panic!("{job} is both scheduled and listed as unscheduled"),
            (false, None) => panic!(
                "kopterctl tick {job} has no schedule in modules/schedules/main.tf and no reason in local.unscheduled"
            ),
        }
    }
    // Nothing scheduled or excused that kopterctl cannot send.
    let named: BTreeSet<String> = scheduled
        .iter()
        .chain(unscheduled.keys())
        .cloned()
        .collect();
    assert_eq!(named, jobs);
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
    load_over(Config::defaults(Some(service)), env)
}

/// [`load`] over the given defaults (the api's: [`Config::api_defaults`]).
fn load_over(defaults: Config, env: &BTreeMap<String, String>) -> Result<Config, String> {
    let mut fig = Figment::from(Serialized::defaults(defaults));
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
                assert_eq!(
                    src(attr(body, "resources"))
                        .split_whitespace()
                        .collect::<String>(),
                    "[var.table_arns[\"prices\"]]"
                );
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

// --- The api (modules/api, modules/cognito) -------------------------------

/// Every `.tf` file of a module, parsed and merged into one body.
fn module(name: &str) -> Body {
    let dir = root().join("deploy/terraform/modules").join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "tf"))
        .collect();
    files.sort();
    let mut body = Body::builder();
    for f in files {
        let rel = f.strip_prefix(root().join("deploy/terraform")).unwrap();
        body = body.add_blocks(tf(&rel.to_string_lossy()).into_blocks());
    }
    body.build()
}

/// `(sid, body)` of each statement of `data "aws_iam_policy_document" name`,
/// plain or `dynamic "statement"`.
fn policy_statements(body: &Body, name: &str) -> Vec<(String, Body)> {
    let doc = block(body, "data", &["aws_iam_policy_document", name]);
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
        let sid = body
            .attributes()
            .find(|a| a.key() == "sid")
            .map(|a| src(a.expr()).trim_matches('"').to_owned())
            .unwrap_or_default();
        out.push((sid, body));
    }
    out
}

/// `(resource name, policy source)` of every inline policy or attachment
/// of the role `aws_iam_role.<role>`.
fn role_policies(body: &Body, role: &str) -> Vec<(String, String)> {
    let id = format!("aws_iam_role.{role}.id");
    let name = format!("aws_iam_role.{role}.name");
    blocks(body, "resource")
        .filter(|b| {
            matches!(
                b.labels()[0].as_str(),
                "aws_iam_role_policy"
                    | "aws_iam_role_policy_attachment"
                    | "aws_iam_role_policies_exclusive"
                    | "aws_iam_policy_attachment"
            )
        })
        .filter(|b| {
            b.body()
                .attributes()
                .filter(|a| a.key() == "role" || a.key() == "roles" || a.key() == "role_name")
                .any(|a| {
                    let s = src(a.expr());
                    s.contains(&id) || s.contains(&name)
                })
        })
        .map(|b| {
            let policy = b
                .body()
                .attributes()
                .find(|a| a.key() == "policy" || a.key() == "policy_arn")
                .map(|a| src(a.expr()))
                .unwrap_or_default();
            (b.labels()[1].as_str().to_owned(), policy)
        })
        .collect()
}

fn no_space(s: &str) -> String {
    s.split_whitespace().collect()
}

#[test]
fn the_api_task_role_may_only_assume_the_tenant_access_role() {
    let api = module("api");
    // One inline policy on the task role, nothing attached.
    assert_eq!(
        role_policies(&api, "task"),
        [(
            "task".to_owned(),
            "data.aws_iam_policy_document.task.json".to_owned()
        )]
    );
    let statements = policy_statements(&api, "task");
    assert_eq!(statements.len(), 1, "the task role has one statement");
    let (sid, st) = &statements[0];
    assert_eq!(
        actions(st),
        ["sts:AssumeRole", "sts:TagSession"]
            .map(String::from)
            .into(),
        "{sid}"
    );
    assert_eq!(
        no_space(&src(attr(st, "resources"))),
        "[aws_iam_role.tenant_access.arn]"
    );
    for (sid, st) in &statements {
        for a in actions(st) {
            assert!(
                !a.starts_with("dynamodb:") && !a.starts_with("kms:") && !a.contains('*'),
                "{sid} grants {a}"
            );
        }
        assert!(
            blocks(st, "not_actions").next().is_none()
                && st.attributes().all(|a| a.key() != "not_actions"),
            "{sid}"
        );
    }
    // Customers' KopterAccess roles trust `*-kopter-*-task` (the workers
    // that enter customer accounts); the api's role is not one of them.
    let customer = tf("modules/customer-role/main.tf");
    let trusted = format!("{:?}", customer);
    assert!(trusted.contains("-kopter-*-task"), "customer trust pattern");
    let role = block(&api, "resource", &["aws_iam_role", "task"]).body();
    let mut ctx = ctx();
    ctx.declare_var("local", hcl::value!({ name = "prod-kopter-api" }));
    let name = eval(attr(role, "name"), &ctx);
    let name = name.as_str().unwrap();
    assert!(!name.ends_with("-task"), "{name} matches *-kopter-*-task");
    assert_eq!(
        src(attr(role, "assume_role_policy")),
        "data.aws_iam_policy_document.ecs_tasks_assume.json"
    );
}

#[test]
fn the_tenant_access_role_trusts_the_api_with_a_tenant_tag_and_has_the_tenant_policy() {
    let api = module("api");
    let tag = eval(local(&api, "tenant_tag"), &ctx());
    assert_eq!(
        tag,
        serde_json::json!(kopter_runtime::credentials::TENANT_TAG)
    );

    // Trust: only the api's task role, AssumeRole with the tag.
    let role = block(&api, "resource", &["aws_iam_role", "tenant_access"]).body();
    assert_eq!(
        src(attr(role, "assume_role_policy")),
        "data.aws_iam_policy_document.tenant_access_trust.json"
    );
    let trust = policy_statements(&api, "tenant_access_trust");
    assert_eq!(trust.len(), 1);
    let (_, st) = &trust[0];
    assert_eq!(
        actions(st),
        ["sts:AssumeRole", "sts:TagSession"]
            .map(String::from)
            .into()
    );
    let principals: Vec<(String, String)> = blocks(st, "principals")
        .map(|p| {
            (
                src(attr(p.body(), "type")),
                no_space(&src(attr(p.body(), "identifiers"))),
            )
        })
        .collect();
    assert_eq!(
        principals,
        [("\"AWS\"".to_owned(), "[aws_iam_role.task.arn]".to_owned())]
    );
    let c = conditions(st);
    let has = |test: &str, var: &str, vals: &str| {
        c.iter()
            .any(|(t, v, x)| t == test && v == var && no_space(x) == vals)
    };
    assert!(
        has("Null", "aws:RequestTag/${local.tenant_tag}", "[\"false\"]"),
        "the tag must be present: {c:?}"
    );
    assert!(
        has(
            "ForAllValues:StringEquals",
            "aws:TagKeys",
            "[local.tenant_tag]"
        ),
        "no other session tag: {c:?}"
    );
    assert!(
        has(
            "StringLike",
            "aws:RequestTag/${local.tenant_tag}",
            "[\"?*\"]"
        ),
        "the tag is not empty: {c:?}"
    );

    // Policy: the tenant-read-policy module keyed on the principal tag,
    // plus the tables' key through DynamoDB only.
    let m = block(&api, "module", &["tenant_policy"]).body();
    assert_eq!(src(attr(m, "source")), "\"../tenant-read-policy\"");
    assert_eq!(src(attr(m, "tenant_tag_key")), "local.tenant_tag");
    assert!(
        m.attributes().all(|a| a.key() != "tenant_id"),
        "a fixed tenant_id would give every session one tenant's rows"
    );
    assert!(
        m.attributes()
            .all(|a| a.key() != "tables" && a.key() != "write_tables"),
        "the module's defaults (tenant-owned tables only) apply"
    );
    let mut policies = role_policies(&api, "tenant_access");
    policies.sort();
    assert_eq!(
        policies,
        [
            (
                "tenant_rows".to_owned(),
                "module.tenant_policy.policy_json".to_owned()
            ),
            (
                "tenant_tables_key".to_owned(),
                "data.aws_iam_policy_document.tenant_tables_key.json".to_owned()
            ),
        ]
    );
    let key = policy_statements(&api, "tenant_tables_key");
    assert_eq!(key.len(), 1);
    let (_, st) = &key[0];
    assert!(actions(st).iter().all(|a| a.starts_with("kms:")));
    assert_eq!(no_space(&src(attr(st, "resources"))), "[var.kms_key_arn]");
    assert!(
        conditions(st).iter().any(|(t, v, x)| t == "StringEquals"
            && v == "kms:ViaService"
            && x.contains("dynamodb.")),
        "the key is usable through DynamoDB only"
    );
    // The tenant-read policy itself is checked by
    // the_tenant_policy_confines_reads_and_the_admin_writes_to_the_tenants_keys.
}

#[test]
fn the_api_load_balancer_redirects_http_and_checks_readyz() {
    let api = module("api");
    let vars = tf("modules/api/variables.tf");
    let default_of = |name: &str| -> serde_json::Value {
        eval(
            attr(block(&vars, "variable", &[name]).body(), "default"),
            &ctx(),
        )
    };
    let defaults = Config::api_defaults();
    assert_eq!(
        default_of("port").as_u64(),
        Some(u64::from(defaults.api.listen.port()))
    );
    assert_eq!(
        default_of("telemetry_port").as_u64(),
        Some(u64::from(kopter_runtime::config::API_TELEMETRY_PORT))
    );

    // 80 answers a permanent redirect to HTTPS on 443, nothing else.
    let http = block(&api, "resource", &["aws_lb_listener", "http"]).body();
    assert_eq!(src(attr(http, "port")), "80");
    assert_eq!(src(attr(http, "protocol")), "\"HTTP\"");
    let actions: Vec<&Block> = blocks(http, "default_action").collect();
    assert_eq!(actions.len(), 1);
    assert_eq!(src(attr(actions[0].body(), "type")), "\"redirect\"");
    let redirect = block(actions[0].body(), "redirect", &[]).body();
    assert_eq!(src(attr(redirect, "protocol")), "\"HTTPS\"");
    assert_eq!(src(attr(redirect, "port")), "\"443\"");
    assert_eq!(src(attr(redirect, "status_code")), "\"HTTP_301\"");

    // 443 terminates TLS with the given certificate and forwards.
    let https = block(&api, "resource", &["aws_lb_listener", "https"]).body();
    assert_eq!(src(attr(https, "port")), "443");
    assert_eq!(src(attr(https, "protocol")), "\"HTTPS\"");
    assert_eq!(src(attr(https, "certificate_arn")), "var.certificate_arn");
    let fwd = block(https, "default_action", &[]).body();
    assert_eq!(src(attr(fwd, "type")), "\"forward\"");
    assert_eq!(
        src(attr(fwd, "target_group_arn")),
        "aws_lb_target_group.api.arn"
    );
    let listeners = blocks(&api, "resource")
        .filter(|b| b.labels()[0].as_str() == "aws_lb_listener")
        .count();
    assert_eq!(listeners, 2, "no other listener");

    // Targets are task IPs on the API port; health is /readyz on the
    // telemetry port.
    let tg = block(&api, "resource", &["aws_lb_target_group", "api"]).body();
    assert_eq!(src(attr(tg, "target_type")), "\"ip\"");
    assert_eq!(src(attr(tg, "port")), "var.port");
    let hc = block(tg, "health_check", &[]).body();
    assert_eq!(src(attr(hc, "path")), "\"/readyz\"");
    assert_eq!(src(attr(hc, "port")), "tostring(var.telemetry_port)");
    assert_eq!(src(attr(hc, "matcher")), "\"200\"");
    let lb = block(&api, "resource", &["aws_lb", "this"]).body();
    assert_eq!(src(attr(lb, "drop_invalid_header_fields")), "true");
    let svc = block(&api, "resource", &["aws_ecs_service", "this"]).body();
    let lbb = block(svc, "load_balancer", &[]).body();
    assert_eq!(
        src(attr(lbb, "target_group_arn")),
        "aws_lb_target_group.api.arn"
    );
    assert_eq!(src(attr(lbb, "container_port")), "var.port");

    // Security groups: the load balancer takes 443/80 from the allowed
    // CIDRs; the tasks take traffic from the load balancer (and scrapers
    // on the telemetry port) only, never from an address range.
    let rules: Vec<(&str, &Body)> = blocks(&api, "resource")
        .filter(|b| b.labels()[0].as_str() == "aws_vpc_security_group_ingress_rule")
        .map(|b| (b.labels()[1].as_str(), b.body()))
        .collect();
    let mut alb_ports = BTreeSet::new();
    for (name, r) in &rules {
        let sg = src(attr(r, "security_group_id"));
        let cidr = r.attributes().find(|a| a.key() == "cidr_ipv4");
        let cidr6 = r.attributes().find(|a| a.key() == "cidr_ipv6");
        assert!(cidr6.is_none(), "{name}");
        match sg.as_str() {
            "aws_security_group.alb.id" => {
                assert_eq!(
                    src(attr(r, "for_each")),
                    "toset(var.allowed_cidrs)",
                    "{name}"
                );
                assert_eq!(
                    cidr.map(|a| src(a.expr())),
                    Some("each.value".into()),
                    "{name}"
                );
                assert_eq!(src(attr(r, "from_port")), src(attr(r, "to_port")), "{name}");
                alb_ports.insert(src(attr(r, "from_port")));
            }
            "aws_security_group.tasks.id" => {
                assert!(cidr.is_none(), "{name}: tasks take no address range");
                let from = src(attr(r, "referenced_security_group_id"));
                let port = src(attr(r, "from_port"));
                assert_eq!(port, src(attr(r, "to_port")), "{name}");
                match from.as_str() {
                    "aws_security_group.alb.id" => {
                        assert!(port == "var.port" || port == "var.telemetry_port", "{name}")
                    }
                    "each.value" => {
                        assert_eq!(
                            src(attr(r, "for_each")),
                            "toset(var.metrics_scraper_security_group_ids)"
                        );
                        assert_eq!(port, "var.telemetry_port", "{name}");
                    }
                    other => panic!("{name}: tasks reachable from {other}"),
                }
            }
            other => panic!("{name}: unknown security group {other}"),
        }
    }
    assert_eq!(alb_ports, ["443".to_owned(), "80".to_owned()].into());
    let svc_sgs = no_space(&src(attr(
        block(svc, "network_configuration", &[]).body(),
        "security_groups",
    )));
    assert_eq!(svc_sgs, "[aws_security_group.tasks.id]");
}

/// The api module's container environment for these inputs.
fn api_environment(issuers: &[&str], public_url: Option<&str>) -> BTreeMap<String, String> {
    let api = module("api");
    let mut ctx = ctx();
    let public_url = match public_url {
        Some(u) => hcl::Value::from(u),
        None => hcl::Value::Null,
    };
    ctx.declare_var(
        "var",
        hcl::value!({
            config = { KOPTER_API__RATE_LIMIT_PER_SECOND = "50" }
            public_url = (public_url)
            env = "prod"
            telemetry_port = 9106
            port = 8080
            issuers = (issuers.iter().map(|s| hcl::Value::from(*s)).collect::<Vec<_>>())
            audience = "5d3n0example1client2id3"
            tenant_claim = "custom:tenant"
            roles_claim = "cognito:groups"
            cors_origins = ["https://console.example.com"]
        }),
    );
    ctx.declare_var(
        "aws_iam_role",
        hcl::value!({
            tenant_access = { arn = "arn:aws:iam::222222222222:role/prod-kopter-api-tenant-access" }
        }),
    );
    serde_json::from_value(eval(local(&api, "environment"), &ctx)).unwrap()
}

#[test]
fn the_api_container_environment_holds_real_config_keys_that_load() {
    let api = module("api");
    let cognito = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123";
    let other = "https://login.example.com/realms/kopter";
    // A random key as the secret's value (ECS injects it).
    let cursor_key = "3q2+7w0KbWFkZSB1cCBmb3IgdGhlIHRlc3QsIG5vdCBhIHJlYWwga2V5IQ==";

    for (issuers, public_url) in [
        (vec![cognito], None),
        (vec![cognito, other], Some("https://api.kopter.example.com")),
    ] {
        let env = api_environment(&issuers, public_url);
        for k in env.keys() {
            let path = config_path(k).unwrap_or_else(|| panic!("{k} is not a KOPTER_ key"));
            assert!(is_config_key(&path), "{k} is not a config key");
        }
        let mut all = env.clone();
        all.insert("KOPTER_API__CURSOR_KEY".into(), cursor_key.into());
        let config = load_over(Config::api_defaults(), &all).unwrap_or_else(|e| panic!("{e}"));
        config.validate_api_serving().unwrap();
        assert_eq!(config.env, "prod");
        assert_eq!(config.api.issuers, issuers);
        assert_eq!(config.api.audience, "5d3n0example1client2id3");
        assert_eq!(
            config.api.tenant_role_arn.as_deref(),
            Some("arn:aws:iam::222222222222:role/prod-kopter-api-tenant-access")
        );
        assert_eq!(config.api.cors_origins, ["https://console.example.com"]);
        assert_eq!(config.api.listen.port(), 8080);
        assert_eq!(config.telemetry.listen.port(), 9106);
        assert_eq!(config.api.rate_limit_per_second, 50);
        assert!(!config.api.dev_issuer);
        // The console signs in at the first issuer, with Secure cookies
        // (HTTPS-only load balancer) whatever the public URL.
        assert_eq!(config.api.console_issuer().as_deref(), Some(issuers[0]));
        assert!(config.api.console_cookie_secure());
        if let Some(u) = public_url {
            assert_eq!(config.api.public_url, u);
        }
        // Without the injected key the api refuses to serve in prod: the
        // secret is what makes it start.
        let config = load_over(Config::api_defaults(), &env).unwrap();
        assert!(config.validate_api_serving().is_err());
    }

    // The cursor key comes from the secret, never from the environment.
    let mut sctx = ctx();
    sctx.declare_var(
        "var",
        hcl::value!({
            secrets = {}
            cursor_key_secret_arn = "arn:aws:secretsmanager:eu-west-1:222222222222:secret:k-AbCdEf"
        }),
    );
    let secrets = eval(local(&api, "secrets"), &sctx);
    assert_eq!(
        secrets,
        serde_json::json!({"KOPTER_API__CURSOR_KEY": "arn:aws:secretsmanager:eu-west-1:222222222222:secret:k-AbCdEf"})
    );
    let task = block(&api, "resource", &["aws_ecs_task_definition", "this"]).body();
    let container = no_space(&src(attr(task, "container_definitions")));
    assert!(container.contains("command=[\"api\"]"), "{container}");
    assert!(
        container.contains("valueFrom=local.secrets[k]"),
        "{container}"
    );
    assert!(
        container.contains("value=local.environment[k]"),
        "{container}"
    );

    // The environments' examples: api.config keys are real and load.
    for e in ["dev", "prod"] {
        let file = format!("environments/{e}/terraform.tfvars.example");
        let body = tf(&file);
        let api_vars = eval(attr(&body, "api"), &ctx());
        let config: BTreeMap<String, String> = api_vars
            .get("config")
            .map(|c| serde_json::from_value(c.clone()).unwrap())
            .unwrap_or_default();
        let mut all = api_environment(&[cognito], None);
        for k in config.keys() {
            let path = config_path(k).unwrap_or_else(|| panic!("{file}: {k}"));
            assert!(is_config_key(&path), "{file}: {k} is not a config key");
        }
        all.extend(config);
        load_over(Config::api_defaults(), &all).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(
            api_vars["cursor_key_secret_arn"].as_str().is_some(),
            "{file}: the api needs its cursor key secret"
        );
        let main = tf(&format!("environments/{e}/main.tf"));
        let kopter = block(&main, "module", &["kopter"]).body();
        assert_eq!(
            src(attr(kopter, "api")),
            "var.api",
            "environments/{e}/main.tf"
        );
    }
}

#[test]
fn a_bad_api_environment_would_be_caught() {
    // The loader used above refuses what the api would refuse.
    let mut env = api_environment(&["https://cognito-idp.eu-west-1.amazonaws.com/x"], None);
    env.insert(
        "KOPTER_API__TENANT_ROLE_ARN".into(),
        "arn:aws:iam::1234:role/short-account".into(),
    );
    assert!(
        load_over(Config::api_defaults(), &env)
            .unwrap_err()
            .contains("api.tenant_role_arn")
    );
    let env = api_environment(&["http://not-https.example.com"], None);
    assert!(
        load_over(Config::api_defaults(), &env)
            .unwrap_err()
            .contains("api.issuers")
    );
}

#[test]
fn the_cognito_pool_gives_tokens_the_apis_tenant_and_role_claims() {
    let cognito = module("cognito");
    let defaults = Config::api_defaults().api;
    let pool = block(&cognito, "resource", &["aws_cognito_user_pool", "this"]).body();
    let schema = block(pool, "schema", &[]).body();
    let name = eval(attr(schema, "name"), &ctx());
    // Cognito names custom attributes `custom:<name>` in tokens.
    assert_eq!(
        format!("custom:{}", name.as_str().unwrap()),
        defaults.tenant_claim
    );
    assert_eq!(src(attr(schema, "attribute_data_type")), "\"String\"");
    assert_eq!(
        src(attr(schema, "mutable")),
        "false",
        "a user's tenant is set once, by the administrator who creates them"
    );
    let admin_only = block(pool, "admin_create_user_config", &[]).body();
    assert_eq!(
        src(attr(admin_only, "allow_admin_create_user_only")),
        "true"
    );

    // The app client shows the tenant in tokens but can never write it.
    let client = block(
        &cognito,
        "resource",
        &["aws_cognito_user_pool_client", "api"],
    )
    .body();
    let read = strings(&eval(attr(client, "read_attributes"), &ctx()));
    let write = strings(&eval(attr(client, "write_attributes"), &ctx()));
    assert!(read.contains(&defaults.tenant_claim), "{read:?}");
    assert!(
        !write.iter().any(|a| a.starts_with("custom:")),
        "the client may write {write:?}"
    );
    assert_eq!(src(attr(client, "generate_secret")), "false");

    // Groups are the api's roles (cognito:groups).
    assert_eq!(defaults.roles_claim, "cognito:groups");
    let groups = block(&cognito, "resource", &["aws_cognito_user_group", "role"]).body();
    let names: BTreeSet<String> = eval(attr(groups, "for_each"), &ctx())
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        names,
        [defaults.admin_role.clone(), "viewer".to_owned()].into()
    );

    // The issuer the api trusts is the pool's, the audience its client's.
    let out = tf("modules/cognito/outputs.tf");
    let issuer = src(attr(block(&out, "output", &["issuer_url"]).body(), "value"));
    assert_eq!(
        issuer,
        "\"https://cognito-idp.${data.aws_region.current.region}.amazonaws.com/${aws_cognito_user_pool.this.id}\""
    );
    assert_eq!(
        src(attr(block(&out, "output", &["client_id"]).body(), "value")),
        "aws_cognito_user_pool_client.api.id"
    );
    let kopter = module("kopter");
    let issuers = no_space(&src(local(&kopter, "api_issuers")));
    assert!(
        issuers.contains("local.cognito?[module.cognito[0].issuer_url]:var.api.oidc.issuers"),
        "{issuers}"
    );
    let audience = no_space(&src(local(&kopter, "api_audience")));
    assert!(
        audience.contains("local.cognito?module.cognito[0].client_id:var.api.oidc.audience"),
        "{audience}"
    );
    let m = block(&kopter, "module", &["api"]).body();
    assert_eq!(src(attr(m, "issuers")), "local.api_issuers");
    assert_eq!(src(attr(m, "audience")), "local.api_audience");
    assert_eq!(src(attr(m, "table_arns")), "module.tables.table_arns");
}
