//! Issue 19's chaos run: the five service processes against moto through
//! the fault proxy (`kopter_tests::faults`), services SIGKILLed and
//! restarted at random, a workload like the issue's — CloudTrail files for
//! two tenants (S3 → SQS notifications, records repeated across files,
//! security-relevant records, one poison file), a describe sweep, price
//! refresh from the demo's offer files, spot refresh, aggregation, the
//! daily digest — and then exact checks:
//!
//! - audit rows per tenant are exactly the unique records' event ids;
//! - every security finding is in the tenant's feed exactly once;
//! - only the poison file's message is in a DLQ;
//! - the inventory equals moto's instances and their states;
//! - SIGTERM ends every service within `shutdown_grace` + 5 s, exit 0.
//!
//! The short run is part of `make test` (a few kills, 20 % throttling).
//! `make chaos` runs the long one (`--ignored`): ≥ 50 kills, 30 %
//! throttling + 5 % 503 + 2 % resets, larger workload; both print a table
//! (calls, injected faults by kind, kills per service, settle time, counts
//! against expected). The service binaries must be built
//! (`cargo build --workspace --bins`; the Makefile targets do).
//!
//! The setup (bootstrap, onboarding, estate, log files) talks to moto
//! directly: only the services' calls go through the proxy.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DurationRound, Utc};
use kopter_demo::fleet::{self, Fleet, Proc};
use kopter_demo::harness;
use kopter_demo::{Demo, DemoAccount, Mode, Options, REGIONS, trail};
use kopter_runtime::CustomerRole;
use kopter_runtime::queue::failures::FailureLog;
use kopter_schema::messages::{AggregateHour, DailyDigest, SpotRefresh, Sweep};
use kopter_schema::{Message, Service};
use kopter_store::audit::{AuditQuery, AuditStore};
use kopter_store::feed::FeedStore;
use kopter_store::inventory::{InventoryStore, ResourceKind, inventory_rows};
use kopter_tests::faults::{Fault, FaultCounts, FaultPlan, FaultProxy};
use kopter_tests::{endpoint, random_account, unique};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// One chaos run's shape.
#[derive(Debug, Clone)]
struct Plan {
    name: &'static str,
    faults: FaultPlan,
    /// SIGKILLs (each followed by a restart) over the run.
    kills: usize,
    /// Wait between two kills, drawn uniformly.
    kill_every: (Duration, Duration),
    /// Log files per account, records per file.
    files: usize,
    records: usize,
    /// Share of record slots (after an account's first file) that repeat
    /// an earlier record of the account.
    repeats: f64,
    /// Longest wait for the queues to empty after a step.
    settle_timeout: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn short_chaos_run_under_throttling_and_kills_is_exact() {
    run(Plan {
        name: "short",
        faults: FaultPlan {
            seed: rand::random(),
            throttle: 0.2,
            server_error: 0.0,
            reset: 0.0,
        },
        kills: 4,
        kill_every: (Duration::from_secs(4), Duration::from_secs(10)),
        files: 3,
        records: 20,
        repeats: 0.05,
        settle_timeout: Duration::from_secs(240),
    })
    .await;
}

/// `make chaos`: first a control run (the same workload, same seed, no
/// faults, no kills), then the chaos run; prints both times and their
/// ratio, and fails above 2 (the issue asks for the chaos run to settle
/// within twice the control's time).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "long (about 20 minutes): run by `make chaos`"]
async fn long_chaos_run_under_throttling_5xx_resets_and_50_kills_is_exact() {
    let seed = std::env::var("KOPTER_CHAOS_SEED")
        .ok()
        .map(|s| s.parse().expect("KOPTER_CHAOS_SEED: a u64"))
        .unwrap_or_else(rand::random);
    let chaos = Plan {
        name: "long",
        faults: FaultPlan {
            seed,
            throttle: 0.3,
            server_error: 0.05,
            reset: 0.02,
        },
        kills: 50,
        kill_every: (Duration::from_secs(3), Duration::from_secs(9)),
        files: 20,
        records: 50,
        repeats: 0.05,
        settle_timeout: Duration::from_secs(900),
    };
    let control = Plan {
        name: "control",
        faults: FaultPlan {
            seed,
            throttle: 0.0,
            server_error: 0.0,
            reset: 0.0,
        },
        kills: 0,
        ..chaos.clone()
    };
    let quiet = run(control).await;
    let loud = run(chaos).await;
    println!(
        "\n== work time (first step sent until the last step settled): control {:.0} s, chaos {:.0} s, ratio {:.2} (issue 19 asks for at most 2)\n",
        quiet.as_secs_f64(),
        loud.as_secs_f64(),
        loud.as_secs_f64() / quiet.as_secs_f64()
    );
    assert!(
        loud <= quiet * 2,
        "the chaos run's work took {loud:?}, more than twice the control's {quiet:?}"
    );
}

/// The log files: `(tenant, account, key, body)`; the poison file last.
struct Workload {
    files: Vec<(String, String, String, Vec<u8>)>,
    /// Per tenant: the unique records' event ids.
    unique: BTreeMap<String, BTreeSet<String>>,
    /// Per tenant: `(account, event id, rule)` of every finding.
    findings: BTreeMap<String, BTreeSet<(String, String, String)>>,
    records: usize,
    repeated: usize,
    poison_key: String,
}

/// Each file: one realistic block of the demo's log records (the estate's
/// RunInstances, sign-ins, security-relevant calls; a fresh salt, so fresh
/// event ids) and read-only calls up to `plan.records`, a share of slots
/// repeating an earlier record of the account.
fn workload(demo: &Demo, plan: &Plan, rng: &mut StdRng) -> Workload {
    let mut w = Workload {
        files: Vec::new(),
        unique: BTreeMap::new(),
        findings: BTreeMap::new(),
        records: 0,
        repeated: 0,
        poison_key: String::new(),
    };
    let now = Utc::now();
    for (n, rec) in demo.records.iter().enumerate() {
        let (tenant, account) = (rec.tenant_id.to_string(), rec.account_id.to_string());
        let made = &demo.estate[&account];
        let mut earlier: Vec<Value> = Vec::new();
        for f in 0..plan.files {
            let salt: u32 = rng.random();
            let mut block: Vec<Value> = trail::log_records(&account, n + f, made, now, salt)
                .into_iter()
                .flat_map(|(_, recs)| recs)
                .collect();
            block.truncate(plan.records);
            let template = block.last().cloned().expect("log_records gives records");
            let mut records = Vec::new();
            let mut k = 0;
            for slot in 0..plan.records {
                if !earlier.is_empty() && rng.random_bool(plan.repeats) {
                    records.push(earlier[rng.random_range(0..earlier.len())].clone());
                    w.repeated += 1;
                    continue;
                }
                let r = if slot < block.len() {
                    block[slot].clone()
                } else {
                    k += 1;
                    let mut r = template.clone();
                    r["eventID"] = format!("{salt:08x}-f111-4111-8111-{k:012x}").into();
                    r["eventName"] = "DescribeInstances".into();
                    r["readOnly"] = true.into();
                    r["eventTime"] = (now - chrono::Duration::seconds(rng.random_range(60..3000)))
                        .format("%Y-%m-%dT%H:%M:%SZ")
                        .to_string()
                        .into();
                    r
                };
                records.push(r);
            }
            for r in &records {
                let id = r["eventID"].as_str().unwrap().to_owned();
                if w.unique.entry(tenant.clone()).or_default().insert(id) {
                    let text = r.to_string();
                    let normalised = trail_ingest::normalise::normalise(text.as_bytes()).unwrap();
                    for finding in trail_ingest::rules::evaluate(&normalised) {
                        w.findings.entry(tenant.clone()).or_default().insert((
                            account.clone(),
                            normalised.event_id.clone(),
                            finding.rule.to_owned(),
                        ));
                    }
                }
            }
            w.records += records.len();
            earlier.extend(records.iter().cloned());
            let key = trail::key(
                &tenant,
                &account,
                "us-east-1",
                now,
                &format!("F{f}S{salt:08X}"),
            );
            w.files.push((
                tenant.clone(),
                account.clone(),
                key,
                trail::gzip(&records).unwrap(),
            ));
        }
    }
    // Not gzip at all: nothing in it can be filed, ever.
    let (tenant, account) = (
        demo.records[0].tenant_id.to_string(),
        demo.records[0].account_id.to_string(),
    );
    w.poison_key = trail::key(&tenant, &account, "us-east-1", now, "POISON");
    w.files.push((
        tenant,
        account,
        w.poison_key.clone(),
        b"this is not a CloudTrail log file".to_vec(),
    ));
    w
}

/// SIGKILLs a random service every `kill_every` until `kills` are done;
/// returns kills per service and the time of the last one.
async fn killer(
    procs: Arc<Mutex<Vec<Proc>>>,
    plan: Plan,
    seed: u64,
) -> (BTreeMap<String, usize>, Instant) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut killed: BTreeMap<String, usize> = BTreeMap::new();
    let mut last = Instant::now();
    for _ in 0..plan.kills {
        let wait = rng.random_range(plan.kill_every.0..=plan.kill_every.1);
        tokio::time::sleep(wait).await;
        let mut procs = procs.lock().unwrap();
        let i = rng.random_range(0..procs.len());
        let p = &mut procs[i];
        p.kill_and_restart()
            .unwrap_or_else(|e| panic!("restart {}: {e:#}", p.name));
        *killed.entry(p.name.clone()).or_default() += 1;
        last = Instant::now();
    }
    (killed, last)
}

/// Waits until every service queue has drained; panics naming what is
/// left after `timeout`.
async fn settle(demo: &Demo, timeout: Duration, what: &str) -> Duration {
    harness::drained(&demo.ctx, timeout, Duration::from_secs(1), what)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// The run's directory (service logs, config): removed when the run
/// passes, kept and named when it fails (or with `KOPTER_CHAOS_KEEP=1`),
/// so a failure can be read in the services' own logs.
struct RunDir(Option<tempfile::TempDir>);

impl RunDir {
    fn new(name: &str) -> RunDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("kopter-chaos-{name}-"))
            .tempdir()
            .unwrap();
        println!(
            "chaos run {name:?}: service logs in {}",
            dir.path().display()
        );
        RunDir(Some(dir))
    }

    fn path(&self) -> &Path {
        self.0.as_ref().expect("until dropped").path()
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let dir = self.0.take().expect("dropped once");
        let keep =
            std::thread::panicking() || std::env::var("KOPTER_CHAOS_KEEP").is_ok_and(|v| v == "1");
        if keep {
            let path = dir.keep();
            // stderr: shown with the failure even without --nocapture.
            eprintln!(
                "chaos run: kept the run directory (service logs *.log): {}",
                path.display()
            );
        }
    }
}

/// Runs one plan and checks it; returns its work time (from the first
/// log file put until the last step's queues were empty).
async fn run(plan: Plan) -> Duration {
    let started = Instant::now();
    let run_dir = RunDir::new(plan.name);
    let mut opts = Options::standard(endpoint(), Mode::InProcess);
    // Only the fixed-list tenants: this test's figures are about them.
    opts.org = None;
    opts.env = unique("t-");
    opts.accounts = vec![
        DemoAccount {
            tenant: "acme".into(),
            account: random_account(),
            label: "prod".into(),
        },
        DemoAccount {
            tenant: "acme".into(),
            account: random_account(),
            label: "staging".into(),
        },
        DemoAccount {
            tenant: "globex".into(),
            account: random_account(),
            label: "prod".into(),
        },
    ];
    opts.run_dir = run_dir.path().to_path_buf();
    opts.verbose = false;
    let mut demo = Demo::prepared(opts)
        .await
        .expect("bootstrap, tenants, estate");
    let mut rng = StdRng::seed_from_u64(plan.faults.seed);
    let work = workload(&demo, &plan, &mut rng);

    // The fleet: five processes whose every AWS call crosses the proxy.
    let proxy = FaultProxy::start(&endpoint(), plan.faults).await.unwrap();
    let mut config = demo.config.clone();
    config.aws.endpoint_url = Some(proxy.url());
    let fleet = harness::start_fleet(
        harness::test_bin_dir(),
        &config,
        run_dir.path(),
        &demo.opts.cancel,
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    let Fleet::Procs(procs) = fleet else {
        unreachable!("separate processes")
    };
    let procs = Arc::new(Mutex::new(procs));
    let kills = tokio::spawn(killer(
        procs.clone(),
        plan.clone(),
        plan.faults.seed ^ 0x5eed,
    ));

    // The workload, while services die and come back.
    let work_started = Instant::now();
    let s3 = trail_ingest::s3_client(&demo.ctx.aws.sdk);
    for (_, _, key, body) in &work.files {
        s3.put_object()
            .bucket(&demo.bucket)
            .key(key)
            .body(body.clone().into())
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
    }
    let mut settles = Vec::new();
    demo.tick(
        Service::Describer,
        Message::DescribeSweep(Sweep {}),
        "describe-sweep",
    )
    .await
    .unwrap();
    demo.tick(
        Service::Pricing,
        Message::PricingRefreshAll(Sweep {}),
        "pricing-refresh",
    )
    .await
    .unwrap();
    settles.push(settle(&demo, plan.settle_timeout, "trail files, sweep, prices").await);
    demo.tick(
        Service::Pricing,
        Message::PricingRefreshSpot(SpotRefresh {
            regions: REGIONS.map(String::from).to_vec(),
        }),
        "spot-refresh",
    )
    .await
    .unwrap();
    settles.push(settle(&demo, plan.settle_timeout, "spot prices").await);
    let hour = Utc::now()
        .duration_trunc(chrono::Duration::hours(1))
        .unwrap();
    demo.tick(
        Service::Aggregator,
        Message::AggregateHour(AggregateHour {
            hour,
            backfill_hours: (hour - demo.period_from).num_hours().max(0) as u32,
            tenant: None,
        }),
        "aggregate",
    )
    .await
    .unwrap();
    settles.push(settle(&demo, plan.settle_timeout, "aggregation").await);
    demo.tick(
        Service::Notifier,
        Message::DailyDigest(DailyDigest {
            day: Utc::now().date_naive(),
            tenant: None,
        }),
        "daily-digest",
    )
    .await
    .unwrap();
    let last_tick = Instant::now();
    settles.push(settle(&demo, plan.settle_timeout, "digest").await);
    let work_time = work_started.elapsed();
    let (killed, last_kill) = kills.await.unwrap();
    // Settled after the last event (a kill or a tick), queues empty.
    let last_event = last_kill.max(last_tick);
    settle(&demo, plan.settle_timeout, "after the last kill").await;
    let settle_after_last_event = last_event.elapsed();
    let counts = proxy.counts();

    // SIGTERM under faults: every service exits 0 within grace + 5 s.
    let grace = config.worker.shutdown_grace;
    let mut procs = std::mem::take(&mut *procs.lock().unwrap());
    let stop_started = Instant::now();
    let exits = tokio::task::spawn_blocking(move || {
        fleet::stop_procs(&mut procs, grace + Duration::from_secs(5))
    })
    .await
    .unwrap();
    let stop_took = stop_started.elapsed();

    let found = Found::read(&demo).await;
    demo.down().await;
    println!(
        "{}",
        table(
            &plan,
            &work,
            &found,
            &counts,
            &killed,
            &settles,
            settle_after_last_event,
            work_time,
            stop_took,
            started.elapsed()
        )
    );
    for (name, status) in &exits {
        assert!(
            status.is_some_and(|s| s.success()),
            "{name} did not exit 0 within shutdown_grace + 5 s of SIGTERM: {status:?}"
        );
    }
    assert_eq!(killed.values().sum::<usize>(), plan.kills);
    if plan.faults.throttle > 0.0 {
        assert!(counts.total(Fault::Throttle) > 0, "{counts}");
    }
    found.assert_exact(&work);
    work_time
}

/// `(region, instance id, state)` of an account's instances.
type Instances = BTreeSet<(String, String, String)>;

/// A message in a DLQ and the worker's last recorded failure of it
/// (what `kopterctl dlq show` prints).
struct DeadLetter {
    message_id: String,
    body: String,
    /// `"{failures} failures, last at receive {n} ({outcome}): {reason}"`,
    /// or why there is none.
    failure: String,
}

impl std::fmt::Debug for DeadLetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "\n  message {}: {}\n    body: {}",
            self.message_id, self.failure, self.body
        )
    }
}

/// What the stores and queues hold after the run.
struct Found {
    audit: BTreeMap<String, BTreeSet<String>>,
    audit_rows: BTreeMap<String, usize>,
    /// Per tenant: `(account, event id, rule)` → feed rows.
    findings: BTreeMap<String, BTreeMap<(String, String, String), usize>>,
    /// Per service: its dead letters.
    dlq: BTreeMap<String, Vec<DeadLetter>>,
    /// Per account: `(region, instance id, state)` in Kopter's inventory and
    /// in moto.
    inventory: BTreeMap<String, (Instances, Instances)>,
}

impl Found {
    async fn read(demo: &Demo) -> Found {
        let ctx = &demo.ctx;
        let ddb = ctx.aws.dynamodb();
        let audit_store = AuditStore::new(ddb.clone(), &ctx.names);
        let feed = FeedStore::new(ddb.clone(), &ctx.names);
        let inventory_store = InventoryStore::new(ddb, &ctx.names);
        let mut found = Found {
            audit: BTreeMap::new(),
            audit_rows: BTreeMap::new(),
            findings: BTreeMap::new(),
            dlq: BTreeMap::new(),
            inventory: BTreeMap::new(),
        };
        for tenant in demo.tenants() {
            let rows = audit_store
                .query(&AuditQuery {
                    tenant: tenant.clone(),
                    since: Utc::now() - chrono::Duration::days(1),
                    until: Utc::now() + chrono::Duration::hours(1),
                    principal: None,
                    event: None,
                    source: None,
                    resource: None,
                    caller_account: None,
                    limit: 1_000_000,
                })
                .await
                .unwrap();
            found.audit_rows.insert(tenant.to_string(), rows.len());
            found.audit.insert(
                tenant.to_string(),
                rows.into_iter().map(|r| r.event_id).collect(),
            );
            let mut told: BTreeMap<(String, String, String), usize> = BTreeMap::new();
            for row in feed.list(&tenant, false, 1_000_000).await.unwrap() {
                if row.kind != "security.finding" {
                    continue;
                }
                let event_id = row
                    .audit
                    .as_ref()
                    .and_then(|a| a.sk.split_once('#'))
                    .map(|(_, id)| id.to_owned())
                    .unwrap_or_default();
                let account = row
                    .account
                    .as_ref()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                *told
                    .entry((account, event_id, row.rule.clone()))
                    .or_default() += 1;
            }
            found.findings.insert(tenant.to_string(), told);
        }
        let sqs = ctx.aws.sqs();
        for s in Service::ALL {
            let url = sqs
                .get_queue_url()
                .queue_name(ctx.names.dlq(s))
                .send()
                .await
                .unwrap()
                .queue_url
                .unwrap();
            let failure_log = FailureLog::new(
                ctx.aws.dynamodb(),
                &ctx.names,
                s,
                Duration::from_secs(86_400),
            );
            let mut letters = Vec::new();
            loop {
                let got = sqs
                    .receive_message()
                    .queue_url(&url)
                    .max_number_of_messages(10)
                    .visibility_timeout(300)
                    .wait_time_seconds(1)
                    .send()
                    .await
                    .unwrap()
                    .messages
                    .unwrap_or_default();
                if got.is_empty() {
                    break;
                }
                for m in got {
                    let message_id = m.message_id.unwrap_or_default();
                    let failure = match failure_log.get(&message_id).await {
                        Ok(Some(r)) => format!(
                            "{} failures, last at receive {} ({}): {}",
                            r.failures, r.receive_count, r.outcome, r.reason
                        ),
                        Ok(None) => "no failure recorded: every receive ended in a crash \
                                     or lost visibility"
                            .to_owned(),
                        Err(e) => format!("failure record unreadable: {e:#}"),
                    };
                    letters.push(DeadLetter {
                        message_id,
                        body: m.body.unwrap_or_default(),
                        failure,
                    });
                }
            }
            found.dlq.insert(s.name().to_owned(), letters);
        }
        for rec in &demo.records {
            let rows = inventory_rows(
                &inventory_store,
                &ctx.accounts,
                &rec.tenant_id,
                Some(&rec.account_id),
                None,
            )
            .await
            .unwrap();
            let ours: BTreeSet<_> = rows
                .iter()
                .filter(|r| !r.gone && r.kind() == ResourceKind::Instance)
                .map(|r| {
                    (
                        r.region.clone(),
                        r.resource_id.clone(),
                        r.state().to_owned(),
                    )
                })
                .collect();
            let mut motos = BTreeSet::new();
            for region in REGIONS {
                let sdk = ctx
                    .credentials
                    .sdk_config(&ctx.aws.sdk, &CustomerRole::from(rec), region)
                    .await
                    .unwrap();
                let ec2 = aws_sdk_ec2::Client::new(&sdk);
                let out = ec2.describe_instances().send().await.unwrap();
                for r in out.reservations() {
                    for i in r.instances() {
                        let state = i
                            .state()
                            .and_then(|s| s.name())
                            .map(|n| n.as_str().to_owned())
                            .unwrap_or_default();
                        if state != "terminated" {
                            motos.insert((
                                region.to_owned(),
                                i.instance_id().unwrap_or_default().to_owned(),
                                state,
                            ));
                        }
                    }
                }
            }
            found
                .inventory
                .insert(rec.account_id.to_string(), (ours, motos));
        }
        found
    }

    fn assert_exact(&self, work: &Workload) {
        for (tenant, expected) in &work.unique {
            assert_eq!(
                self.audit_rows.get(tenant).copied().unwrap_or(0),
                expected.len(),
                "{tenant}: audit rows vs unique records"
            );
            assert_eq!(
                self.audit.get(tenant),
                Some(expected),
                "{tenant}: audit event ids"
            );
        }
        for (tenant, expected) in &work.findings {
            let told = self.findings.get(tenant).cloned().unwrap_or_default();
            let twice: Vec<_> = told.iter().filter(|(_, n)| **n > 1).collect();
            assert!(
                twice.is_empty(),
                "{tenant}: findings in the feed more than once: {twice:?}"
            );
            let told: BTreeSet<_> = told.into_keys().collect();
            let missing: Vec<_> = expected.difference(&told).collect();
            let extra: Vec<_> = told.difference(expected).collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "{tenant}: findings missing from the feed: {missing:?}; not expected: {extra:?}"
            );
        }
        for (service, letters) in &self.dlq {
            if service == Service::TrailIngest.name() {
                assert_eq!(letters.len(), 1, "trail-ingest DLQ: {letters:?}");
                // S3 event notifications carry the key URL-encoded.
                let encoded = work.poison_key.replace('/', "%2F");
                assert!(
                    letters[0].body.contains(&work.poison_key)
                        || letters[0].body.contains(&encoded),
                    "the DLQ holds the poison file's message: {:?}",
                    letters[0]
                );
            } else {
                assert!(letters.is_empty(), "{service} DLQ: {letters:?}");
            }
        }
        for (account, (ours, motos)) in &self.inventory {
            assert!(!motos.is_empty(), "{account}: moto has instances");
            assert_eq!(ours, motos, "{account}: inventory vs moto");
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn table(
    plan: &Plan,
    work: &Workload,
    found: &Found,
    counts: &FaultCounts,
    killed: &BTreeMap<String, usize>,
    settles: &[Duration],
    settle_after_last_event: Duration,
    work_time: Duration,
    stop_took: Duration,
    total: Duration,
) -> String {
    let mut t = String::new();
    let f = plan.faults;
    t.push_str(&format!(
        "\n== chaos run {:?}: {:.0} % throttling, {:.0} % 503, {:.0} % resets (seed {}), {} kills\n",
        plan.name,
        f.throttle * 100.0,
        f.server_error * 100.0,
        f.reset * 100.0,
        f.seed,
        plan.kills
    ));
    t.push_str(&format!(
        "workload: {} files ({} with records + 1 poison), {} records ({} repeated), {} unique, {} findings\n",
        work.files.len(),
        work.files.len() - 1,
        work.records,
        work.repeated,
        work.unique.values().map(BTreeSet::len).sum::<usize>(),
        work.findings.values().map(BTreeSet::len).sum::<usize>(),
    ));
    t.push_str(&format!(
        "AWS calls through the proxy: {}\n",
        counts.calls()
    ));
    t.push_str("  SERVICE        FORWARDED  THROTTLE  SERVER_ERROR  RESET\n");
    let services: BTreeSet<&String> = counts.by_service.keys().map(|(_, s)| s).collect();
    for s in services {
        t.push_str(&format!(
            "  {:<14} {:>9} {:>9} {:>13} {:>6}\n",
            s,
            counts.of(Fault::None, s),
            counts.of(Fault::Throttle, s),
            counts.of(Fault::ServerError, s),
            counts.of(Fault::Reset, s)
        ));
    }
    t.push_str(&format!(
        "  {:<14} {:>9} {:>9} {:>13} {:>6}\n",
        "total",
        counts.total(Fault::None),
        counts.total(Fault::Throttle),
        counts.total(Fault::ServerError),
        counts.total(Fault::Reset)
    ));
    t.push_str(&format!(
        "kills: {} ({})\n",
        killed.values().sum::<usize>(),
        killed
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    t.push_str(&format!(
        "settle per step: {}; work time {:.0} s; after the last kill or tick: {:.0} s; SIGTERM to all exited: {:.1} s; whole run {:.0} s\n",
        settles
            .iter()
            .map(|d| format!("{:.0} s", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", "),
        work_time.as_secs_f64(),
        settle_after_last_event.as_secs_f64(),
        stop_took.as_secs_f64(),
        total.as_secs_f64()
    ));
    t.push_str("  CHECK                               FOUND  EXPECTED\n");
    for (tenant, expected) in &work.unique {
        t.push_str(&format!(
            "  audit rows {:<24} {:>6} {:>9}\n",
            tenant,
            found.audit_rows.get(tenant).copied().unwrap_or(0),
            expected.len()
        ));
    }
    for (tenant, expected) in &work.findings {
        let told = found.findings.get(tenant);
        t.push_str(&format!(
            "  findings in the feed {:<14} {:>6} {:>9}   (feed rows {})\n",
            tenant,
            told.map_or(0, |m| m.keys().filter(|k| expected.contains(k)).count()),
            expected.len(),
            told.map_or(0, |m| m.values().sum::<usize>()),
        ));
    }
    for (service, letters) in &found.dlq {
        let expected = usize::from(service == Service::TrailIngest.name());
        t.push_str(&format!(
            "  DLQ {:<31} {:>6} {:>9}\n",
            service,
            letters.len(),
            expected
        ));
        for l in letters {
            t.push_str(&format!(
                "      {}: {}\n",
                l.message_id,
                l.failure.chars().take(300).collect::<String>()
            ));
        }
    }
    for (account, (ours, motos)) in &found.inventory {
        t.push_str(&format!(
            "  instances {:<25} {:>6} {:>9}   (moto; equal: {})\n",
            account,
            ours.len(),
            motos.len(),
            ours == motos
        ));
    }
    t
}
