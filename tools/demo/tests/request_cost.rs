//! Issue 23: what Kopter's own AWS requests cost per watched account.
//!
//! The five services run as processes against moto through the fault
//! proxy with no faults (`kopter_tests::faults`: it logs every call with
//! its service, operation and — for DynamoDB — the request units). With
//! `DYNAMODB_ENDPOINT` (AWS's DynamoDB Local, as `scripts/bench-requests.sh`
//! runs it) DynamoDB is that, behind a proxy of its own, and its units are
//! the ones it reports (`ConsumedCapacity`); on moto they are estimated
//! from the bytes on the wire. A demo estate of `N` accounts is
//! watched for a number of simulated hours; each hour: a tenth of the
//! accounts stop or start an instance, every account delivers its hour's
//! CloudTrail records (one file, or `KOPTER_BENCH_FILES_PER_HOUR`), then a describe sweep and the aggregation of a *new*
//! hour (the hour after the last one computed: every cost item and roll-up
//! of it is written for the first time, as each hour in production) run
//! and the queues settle. The daily digest runs once and counts as 1/24
//! of a day per hour. Setup (bootstrap, onboarding, estate, price refresh,
//! the first sweep) is not counted.
//!
//! Reported per size: requests and request units per watched account per
//! hour, by service and operation; USD per watched account per month at
//! the us-east-1 request prices in [`PRICES`]; the floor (the requests
//! the design cannot avoid, computed from the same simulation) and the
//! ratio to it; CPU seconds and peak RSS per service. Idle SQS long polls
//! are a fixed cost of the fleet, not of an account: reported apart.
//!
//! `scripts/bench-requests.sh` runs it (sizes in `KOPTER_BENCH_ACCOUNTS`,
//! default `10,40`; hours in `KOPTER_BENCH_HOURS`, default 3; resources
//! per account in `KOPTER_BENCH_RESOURCES`, default 12: the demo estate,
//! each instance launched ⌈N/12⌉ times; accounts per tenant in
//! `KOPTER_BENCH_ACCOUNTS_PER_TENANT`, default 5; CloudTrail files per
//! account-hour in `KOPTER_BENCH_FILES_PER_HOUR`, default 1 (the hour's
//! records split among them); the services' binaries
//! from `KOPTER_BENCH_BIN_DIR`, default this test build's). Figures in
//! docs/benchmarks.md.

use std::collections::BTreeMap;

use std::time::{Duration, Instant};

use chrono::{DurationRound, Utc};
use kopter_demo::fleet::Fleet;
use kopter_demo::harness;
use kopter_demo::{Demo, DemoAccount, Mode, Options, trail};
use kopter_runtime::CustomerRole;
use kopter_schema::messages::{AggregateHour, DailyDigest, SpotRefresh, Sweep};
use kopter_schema::{Message, Service};
use kopter_tests::faults::{FaultPlan, FaultProxy, SignedCall, Units};
use kopter_tests::{endpoint, random_account, unique};

/// Request prices, us-east-1, USD, as published on AWS's pricing pages
/// (read 2026-11-30). One place, so a price change is one edit.
/// - DynamoDB on-demand: $0.625 per million write request units, $0.125
///   per million read request units (aws.amazon.com/dynamodb/pricing/on-demand/,
///   after the November 2024 reduction).
/// - SQS standard queues: $0.40 per million requests, each 64 KB chunk a
///   request (aws.amazon.com/sqs/pricing/); the first million a month free
///   is ignored (it is per AWS account, not per watched account).
/// - SNS standard topics: $0.50 per million publishes; deliveries to SQS
///   are free (aws.amazon.com/sns/pricing/).
/// - S3 Standard: GET $0.0004 per 1,000, PUT/COPY/POST/LIST $0.005 per
///   1,000 (aws.amazon.com/s3/pricing/).
/// - STS and EC2's Describe* calls: no charge.
/// - SES: $0.10 per 1,000 emails (aws.amazon.com/ses/pricing/).
const PRICES: Prices = Prices {
    dynamodb_wru: 0.625e-6,
    dynamodb_rru: 0.125e-6,
    sqs_request: 0.40e-6,
    sns_publish: 0.50e-6,
    s3_get: 0.0004e-3,
    s3_put_list: 0.005e-3,
    ses_email: 0.10e-3,
};

/// AWS bills a month as 730 hours (the pricing pages' monthly figures).
const HOURS_PER_MONTH: f64 = 730.0;

struct Prices {
    dynamodb_wru: f64,
    dynamodb_rru: f64,
    sqs_request: f64,
    sns_publish: f64,
    s3_get: f64,
    s3_put_list: f64,
    ses_email: f64,
}

/// The USD one call costs (`units` for DynamoDB).
fn usd(c: &SignedCall, units: Units) -> f64 {
    let op = c.operation.rsplit('.').next().unwrap_or(&c.operation);
    match c.service.as_str() {
        "dynamodb" => {
            units.write as f64 * PRICES.dynamodb_wru
                + units.read_halves as f64 / 2.0 * PRICES.dynamodb_rru
        }
        "sqs" => PRICES.sqs_request,
        // SNS bills each 64 KB chunk of a request's payload as one request
        // (aws.amazon.com/sns/pricing/); the form-encoded body is a little
        // larger than the payload, so this errs high.
        "sns" if op == "Publish" || op == "PublishBatch" => {
            let bytes = c.form.as_ref().map_or(0, String::len);
            PRICES.sns_publish * bytes.div_ceil(64 * 1024).max(1) as f64
        }
        "s3" if op.starts_with("Get") || op.starts_with("Head") || op.is_empty() => PRICES.s3_get,
        "s3" => PRICES.s3_put_list,
        "ses" if op.starts_with("Send") => PRICES.ses_email,
        _ => 0.0,
    }
}

/// One operation's totals over the counted hours.
#[derive(Debug, Default, Clone)]
struct OpTotal {
    calls: f64,
    write_units: f64,
    read_halves: f64,
    usd: f64,
}

/// What one size measured.
struct Measure {
    accounts: usize,
    hours: usize,
    resources: usize,
    by_op: BTreeMap<(String, String), OpTotal>,
    /// DynamoDB only, by table (the environment's prefix cut) and operation.
    by_table: BTreeMap<(String, String), OpTotal>,
    /// DynamoDB writes by table and item kind (`dynamodb_key_kind`).
    by_kind: BTreeMap<(String, String), OpTotal>,
    idle_polls_per_hour: f64,
    depth_polls_per_hour: f64,
    floor: Floor,
    /// CloudTrail records and files sent per account-hour.
    records_per_hour: f64,
    files_per_hour: f64,
    cpu_and_rss: Vec<(String, f64, u64)>,
    /// Where DynamoDB's units come from: `Some(n)` on DynamoDB Local (its
    /// `ConsumedCapacity`; `n` calls had none and were estimated), `None`
    /// on moto (estimated from the wire sizes).
    exact_units: Option<u64>,
}

/// The requests the design cannot avoid per account-hour (see
/// [`floor`]).
#[derive(Debug, Clone, Copy, Default)]
struct Floor {
    ec2: f64,
    sts: f64,
    dynamodb_writes: f64,
    audit_writes: f64,
    audit_wru: f64,
    /// Feed rows (one write unit each).
    feed_writes: f64,
    dynamodb_reads: f64,
    /// Read units of those reads, at the size of what they read.
    dynamodb_rru: f64,
    sqs: f64,
    s3_get: f64,
}

impl Floor {
    fn requests(&self) -> f64 {
        self.ec2
            + self.sts
            + self.dynamodb_writes
            + self.audit_writes
            + self.feed_writes
            + self.dynamodb_reads
            + self.sqs
            + self.s3_get
    }
    fn usd(&self) -> f64 {
        (self.dynamodb_writes + self.audit_wru + self.feed_writes) * PRICES.dynamodb_wru
            + self.dynamodb_rru * PRICES.dynamodb_rru
            + self.sqs * PRICES.sqs_request
            + self.s3_get * PRICES.s3_get
    }
}

/// Read units of one eventually consistent read of an account's whole
/// inventory (every row: what the aggregator must read an hour), averaged
/// over the accounts: DynamoDB Local's `ConsumedCapacity` when it reports
/// one, else the rows' sizes by AWS's rules (names and values in bytes,
/// 4 KB a unit, half for eventual consistency), approximately.
async fn inventory_read_units(demo: &Demo) -> f64 {
    use aws_sdk_dynamodb::types::{AttributeValue, ReturnConsumedCapacity};
    fn size(v: &AttributeValue) -> usize {
        match v {
            AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
            AttributeValue::B(b) => b.as_ref().len(),
            AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
            AttributeValue::L(l) => 3 + l.iter().map(|v| 1 + size(v)).sum::<usize>(),
            AttributeValue::M(m) => 3 + m.iter().map(|(k, v)| 1 + k.len() + size(v)).sum::<usize>(),
            AttributeValue::Ss(v) | AttributeValue::Ns(v) => v.iter().map(String::len).sum(),
            _ => 0,
        }
    }
    let ddb = demo.ctx.aws.dynamodb();
    let table = demo.ctx.names.table(kopter_schema::Table::Inventory);
    let mut total = 0.0;
    for rec in &demo.records {
        let pk = kopter_schema::items::keys::tenant_account(&rec.tenant_id, &rec.account_id);
        let mut start = None;
        loop {
            let out = ddb
                .query()
                .table_name(&table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
                .consistent_read(false)
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .set_exclusive_start_key(start)
                .send()
                .await
                .unwrap();
            let bytes: usize = out
                .items()
                .iter()
                .map(|i| i.iter().map(|(k, v)| k.len() + size(v)).sum::<usize>())
                .sum();
            let estimated = (bytes.div_ceil(4096).max(1)) as f64 / 2.0;
            total += out
                .consumed_capacity()
                .and_then(|c| c.capacity_units())
                .filter(|u| *u > 0.0 && kopter_tests::dynamodb_endpoint().is_some())
                .unwrap_or(estimated);
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
    }
    total / demo.records.len().max(1) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark (minutes): run by scripts/bench-requests.sh"]
async fn requests_per_watched_account() {
    let sizes: Vec<usize> = std::env::var("KOPTER_BENCH_ACCOUNTS")
        .unwrap_or_else(|_| "10,40".into())
        .split(',')
        .map(|s| s.trim().parse().expect("KOPTER_BENCH_ACCOUNTS: numbers"))
        .collect();
    let hours: usize = std::env::var("KOPTER_BENCH_HOURS")
        .map(|h| h.parse().expect("KOPTER_BENCH_HOURS: a number"))
        .unwrap_or(3);
    // The demo estate has ≈ 12 resources per account (instances, their
    // root volumes, a data volume); larger estates repeat each instance.
    let copies = std::env::var("KOPTER_BENCH_RESOURCES")
        .map(|r| {
            let r: usize = r.parse().expect("KOPTER_BENCH_RESOURCES: a number");
            r.div_ceil(12).max(1)
        })
        .unwrap_or(1);
    let mut measures = Vec::new();
    for n in sizes {
        let m = measure(n, hours, copies).await;
        print!("{}", render(&m));
        measures.push(m);
    }
    if measures.len() >= 2 {
        let (a, b) = (&measures[0], &measures[measures.len() - 1]);
        let per = |m: &Measure| total(m).1 / (m.accounts * m.hours) as f64;
        let usd = |m: &Measure| total(m).0 / (m.accounts * m.hours) as f64;
        println!(
            "\n== linearity: requests per account-hour {:.1} at {} accounts, {:.1} at {} (ratio {:.2}); USD per account-hour ratio {:.2}",
            per(a),
            a.accounts,
            per(b),
            b.accounts,
            per(b) / per(a),
            usd(b) / usd(a)
        );
    }
}

/// (USD, requests) over the counted hours, idle polls excluded.
fn total(m: &Measure) -> (f64, f64) {
    m.by_op
        .values()
        .fold((0.0, 0.0), |(u, r), t| (u + t.usd, r + t.calls))
}

async fn measure(n: usize, hours: usize, estate_copies: usize) -> Measure {
    let run_dir = tempfile::Builder::new()
        .prefix("kopter-bench-requests-")
        .tempdir()
        .unwrap();
    let mut opts = Options::standard(endpoint(), Mode::InProcess);
    // Only the fixed-list tenants: this test's figures are about them.
    opts.org = None;
    opts.env = unique("b-");
    let labels = ["prod", "staging", "prod"];
    let per_tenant: usize = std::env::var("KOPTER_BENCH_ACCOUNTS_PER_TENANT")
        .ok()
        .map(|v| {
            v.parse()
                .expect("KOPTER_BENCH_ACCOUNTS_PER_TENANT: a number")
        })
        .unwrap_or(5)
        .max(1);
    opts.accounts = (0..n)
        .map(|i| DemoAccount {
            tenant: format!("tenant{}", i / per_tenant),
            account: random_account(),
            label: labels[i % 3].into(),
        })
        .collect();
    opts.run_dir = run_dir.path().to_path_buf();
    opts.verbose = false;
    opts.settle_timeout = Duration::from_secs(900);
    opts.estate_copies = estate_copies;
    // Not the demo's fixed 8080: another run on the machine may hold it.
    opts.api_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port for the api");
    // `scripts/bench-requests.sh` runs DynamoDB Local (exact units, and it
    // keeps its pace as tables grow); without it, moto's DynamoDB.
    opts.dynamodb_endpoint = kopter_tests::dynamodb_endpoint();
    let demo = Demo::prepared(opts)
        .await
        .expect("bootstrap, tenants, estate");
    let resources: usize = demo
        .estate
        .values()
        .map(|m| m.instances.len() + m.volumes)
        .sum();

    let proxy = FaultProxy::start(&endpoint(), FaultPlan::none())
        .await
        .unwrap();
    // DynamoDB Local gets a proxy of its own: every call is still seen.
    let ddb_proxy = match &demo.opts.dynamodb_endpoint {
        Some(url) => Some(FaultProxy::start(url, FaultPlan::none()).await.unwrap()),
        None => None,
    };
    let mut config = demo.config.clone();
    config.aws.endpoint_url = Some(proxy.url());
    config.aws.dynamodb_endpoint_url = ddb_proxy.as_ref().map(FaultProxy::url);
    let proxies: Vec<&FaultProxy> = std::iter::once(&proxy).chain(ddb_proxy.as_ref()).collect();
    let exact_units = ddb_proxy.is_some();
    // Production's long poll (the demo's is 2 s, for a snappy demo): idle
    // polls are then what a deployment pays.
    config.worker.wait_time_seconds = 20;
    // `KOPTER_BENCH_BIN_DIR`: the services' binaries to run (the script's
    // `KOPTER_BENCH_RELEASE=1` points it at a release build, for CPU
    // figures a deployment would see); default this test build's.
    let bin_dir = std::env::var_os("KOPTER_BENCH_BIN_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(harness::test_bin_dir);
    println!(
        "== services from {}",
        bin_dir.file_name().map_or_else(
            || bin_dir.display().to_string(),
            |n| n.to_string_lossy().into_owned()
        )
    );
    let fleet = harness::start_fleet(bin_dir, &config, run_dir.path(), &demo.opts.cancel)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));

    // Setup that any deployment does once: prices, spot, a first sweep.
    demo.tick(
        Service::Pricing,
        Message::PricingRefreshAll(Sweep {}),
        "pricing-refresh",
    )
    .await
    .unwrap();
    demo.tick(
        Service::Pricing,
        Message::PricingRefreshSpot(SpotRefresh {
            regions: kopter_demo::REGIONS.map(String::from).to_vec(),
        }),
        "spot-refresh",
    )
    .await
    .unwrap();
    demo.tick(
        Service::Describer,
        Message::DescribeSweep(Sweep {}),
        "describe-sweep",
    )
    .await
    .unwrap();
    settle(&demo).await;
    let hour = Utc::now()
        .duration_trunc(chrono::Duration::hours(1))
        .unwrap();
    demo.tick(
        Service::Aggregator,
        Message::AggregateHour(AggregateHour {
            hour,
            backfill_hours: 0,
            tenant: None,
        }),
        "aggregate",
    )
    .await
    .unwrap();
    settle(&demo).await;

    let mark: Vec<usize> = proxies.iter().map(|p| p.calls().len()).collect();
    let started = Instant::now();
    let cpu_at_mark = cpu_by_service(&fleet);
    let s3 = trail_ingest::s3_client(&demo.ctx.aws.sdk);
    let mut changes = 0usize;
    let mut unique_records = 0usize;
    let mut files = 0usize;
    // Write units of the files' records stored as compactly as CloudTrail
    // ships them (gzip), a KB each: what any store of them pays.
    let mut file_units = 0usize;
    let files_per_hour: usize = std::env::var("KOPTER_BENCH_FILES_PER_HOUR")
        .map(|v| v.parse().expect("KOPTER_BENCH_FILES_PER_HOUR: a number"))
        .unwrap_or(1)
        .max(1);
    for h in 0..hours {
        // A tenth of the accounts stop or start one instance.
        for (i, rec) in demo.records.iter().enumerate() {
            if (i + h) % 10 != 0 {
                continue;
            }
            let made = &demo.estate[&rec.account_id.to_string()];
            let (region, id, _) = &made.instances[h % made.instances.len()];
            let sdk = demo
                .ctx
                .credentials
                .sdk_config(&demo.ctx.aws.sdk, &CustomerRole::from(rec), region)
                .await
                .unwrap();
            let ec2 = aws_sdk_ec2::Client::new(&sdk);
            let state = ec2
                .describe_instances()
                .instance_ids(id)
                .send()
                .await
                .unwrap()
                .reservations()[0]
                .instances()[0]
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_owned())
                .unwrap_or_default();
            if state == "running" {
                ec2.stop_instances().instance_ids(id).send().await.unwrap();
            } else {
                ec2.start_instances().instance_ids(id).send().await.unwrap();
            }
            changes += 1;
        }
        // The account's CloudTrail records of the hour, in
        // `files_per_hour` files (CloudTrail delivers about every 5 minutes
        // per region with activity: 12 an hour is a busy region).
        let now = Utc::now();
        for (i, rec) in demo.records.iter().enumerate() {
            let account = rec.account_id.to_string();
            let made = &demo.estate[&account];
            let salt: u32 = rand::random();
            let records: Vec<serde_json::Value> =
                trail::log_records(&account, i + h, made, now, salt)
                    .into_iter()
                    .flat_map(|(_, recs)| recs)
                    .collect();
            unique_records += records.len();
            let per_file = records.len().div_ceil(files_per_hour).max(1);
            for (f, part) in records.chunks(per_file).enumerate() {
                let key = trail::key(
                    rec.tenant_id.as_ref(),
                    &account,
                    "us-east-1",
                    now,
                    &format!("H{h}F{f}S{salt:08X}"),
                );
                let gz = trail::gzip(part).unwrap();
                file_units += gz.len().div_ceil(1024);
                s3.put_object()
                    .bucket(&demo.bucket)
                    .key(&key)
                    .body(gz.into())
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
                files += 1;
            }
        }
        demo.tick(
            Service::Describer,
            Message::DescribeSweep(Sweep {}),
            "describe-sweep",
        )
        .await
        .unwrap();
        settle(&demo).await;
        // A new hour each time (the estate's state carries on into it).
        demo.tick(
            Service::Aggregator,
            Message::AggregateHour(AggregateHour {
                hour: hour + chrono::Duration::hours(h as i64 + 1),
                backfill_hours: 0,
                tenant: None,
            }),
            "aggregate",
        )
        .await
        .unwrap();
        settle(&demo).await;
    }
    let hours_mark: Vec<usize> = proxies.iter().map(|p| p.calls().len()).collect();
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
    settle(&demo).await;
    let wall = started.elapsed();

    let mut by_op: BTreeMap<(String, String), OpTotal> = BTreeMap::new();
    let mut by_table: BTreeMap<(String, String), OpTotal> = BTreeMap::new();
    let mut by_kind: BTreeMap<(String, String), OpTotal> = BTreeMap::new();
    let mut idle = 0u64;
    let mut depth_polls = 0u64;
    let mut estimated = 0u64;
    for (p, proxy) in proxies.iter().enumerate() {
        let calls = proxy.calls();
        for (i, c) in calls[mark[p]..].iter().enumerate() {
            // Fleet costs, whatever the number of accounts: idle long polls
            // and the queue-depth gauges' reads.
            if c.empty_receive {
                idle += 1;
                continue;
            }
            if c.operation.ends_with("GetQueueAttributes") {
                depth_polls += 1;
                continue;
            }
            // The digest is daily: 1/24 of it per hour, times the hours.
            let weight = if mark[p] + i >= hours_mark[p] {
                hours as f64 / 24.0
            } else {
                1.0
            };
            // DynamoDB Local's own count when it gave one; moto's fixed
            // numbers are not sizes, so there the wire-size estimate.
            let units = match c.reported {
                Some(u) if exact_units => u,
                _ => {
                    if exact_units && c.service == "dynamodb" {
                        estimated += 1;
                    }
                    c.units
                }
            };
            let op = c.operation.rsplit('.').next().unwrap_or(&c.operation);
            let t = by_op.entry((c.service.clone(), op.to_owned())).or_default();
            t.calls += weight;
            t.write_units += units.write as f64 * weight;
            t.read_halves += units.read_halves as f64 * weight;
            t.usd += usd(c, units) * weight;
            if let Some(table) = &c.table {
                let short = table
                    .split_once("-kopter-")
                    .map_or(table.as_str(), |(_, t)| t);
                let t = by_table
                    .entry((short.to_owned(), op.to_owned()))
                    .or_default();
                t.calls += weight;
                t.write_units += units.write as f64 * weight;
                t.read_halves += units.read_halves as f64 * weight;
                t.usd += usd(c, units) * weight;
                if units.write > 0 {
                    let kind = c.key_kind.clone().unwrap_or_else(|| "-".to_owned());
                    let t = by_kind.entry((short.to_owned(), kind)).or_default();
                    t.calls += weight;
                    t.write_units += units.write as f64 * weight;
                    t.usd += usd(c, units) * weight;
                }
            }
        }
    }
    // CPU of the counted hours only (the setup's price refresh aside);
    // peak RSS over the whole life.
    let cpu_and_rss = cpu_by_service(&fleet)
        .into_iter()
        .map(|(name, cpu, rss)| {
            let before = cpu_at_mark
                .iter()
                .find(|(n, _, _)| *n == name)
                .map_or(0.0, |(_, c, _)| *c);
            (name, cpu - before, rss)
        })
        .collect();
    fleet.stop(Duration::from_secs(10)).await.unwrap();
    let inventory_units = inventory_read_units(&demo).await;

    let per = (n * hours) as f64;
    let regions = kopter_demo::REGIONS.len() as f64;
    let floor = Floor {
        // Instances, volumes, snapshots: one Describe each per enabled
        // region and hour (one page at this size).
        ec2: 3.0 * regions,
        // Role credentials last an hour.
        sts: 1.0,
        // One packed cost item per account-hour (every resource's line in
        // it: libs/store/src/graph/design.md), an inventory and a history
        // row per change, one roll-up per account-hour.
        dynamodb_writes: 1.0 + 2.0 * changes as f64 / per + 1.0,
        // The audit log: one write per CloudTrail file, of the file's
        // records at gzip's size (libs/store/src/audit/design.md packs a
        // file's records per hour; per-record items were the floor
        // before issue 23's segments).
        audit_writes: files as f64 / per,
        audit_wru: file_units as f64 / per,
        // One row per notification in the tenant's feed (what the
        // notifier's rules raise from this simulation; the `unread` index
        // copy is a design choice, not counted).
        feed_writes: by_table
            .get(&("notifications".to_owned(), "PutItem".to_owned()))
            .map_or(0.0, |t| t.calls)
            / per,
        // The account's inventory read once per hour by the aggregator, at
        // its size (eventually consistent). The describer need not read it
        // to diff when nothing changed (its region digests); its reads
        // where something did are not counted.
        dynamodb_reads: 1.0,
        dynamodb_rru: inventory_units,
        // Send, receive, delete of: one describe job per account-region,
        // one aggregation per account, one notification per file.
        sqs: 3.0 * (regions + 1.0 + files as f64 / per),
        s3_get: files as f64 / per,
    };
    Measure {
        accounts: n,
        hours,
        resources,
        by_op,
        by_table,
        by_kind,
        idle_polls_per_hour: idle as f64 / wall.as_secs_f64() * 3600.0,
        depth_polls_per_hour: depth_polls as f64 / wall.as_secs_f64() * 3600.0,
        floor,
        records_per_hour: unique_records as f64 / per,
        files_per_hour: files as f64 / per,
        cpu_and_rss,
        exact_units: exact_units.then_some(estimated),
    }
}

fn render(m: &Measure) -> String {
    use std::fmt::Write;
    let per = (m.accounts * m.hours) as f64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n== {} accounts ({} resources), {} simulated hours: requests per watched account-hour",
        m.accounts, m.resources, m.hours
    );
    let _ = writeln!(
        s,
        "  DynamoDB units: {}",
        match m.exact_units {
            Some(0) => "as DynamoDB Local reported them (ConsumedCapacity)".to_owned(),
            Some(n) => format!(
                "as DynamoDB Local reported them; {n} calls without ConsumedCapacity estimated from sizes"
            ),
            None => "estimated from the bytes on the wire (moto)".to_owned(),
        }
    );
    let _ = writeln!(
        s,
        "  {:<10} {:<22} {:>10} {:>10} {:>10} {:>14}",
        "SERVICE", "OPERATION", "CALLS", "WRU", "RRU", "USD/ACCT-MONTH"
    );
    for ((svc, op), t) in &m.by_op {
        let _ = writeln!(
            s,
            "  {:<10} {:<22} {:>10.2} {:>10.2} {:>10.2} {:>14.6}",
            svc,
            op,
            t.calls / per,
            t.write_units / per,
            t.read_halves / 2.0 / per,
            t.usd / per * HOURS_PER_MONTH
        );
    }
    let _ = writeln!(s, "  DynamoDB by table (who pays):");
    for ((table, op), t) in &m.by_table {
        let _ = writeln!(
            s,
            "    {:<20} {:<20} {:>10.2} {:>10.2} {:>10.2} {:>14.6}",
            table,
            op,
            t.calls / per,
            t.write_units / per,
            t.read_halves / 2.0 / per,
            t.usd / per * HOURS_PER_MONTH
        );
    }
    let _ = writeln!(
        s,
        "  DynamoDB writes by item kind (partition key without tenant and ids):"
    );
    let mut kinds: Vec<_> = m.by_kind.iter().collect();
    kinds.sort_by(|a, b| b.1.write_units.total_cmp(&a.1.write_units));
    for ((table, kind), t) in kinds {
        let _ = writeln!(
            s,
            "    {:<20} {:<34} {:>8.2} calls {:>8.2} WRU {:>12.6}",
            table,
            kind,
            t.calls / per,
            t.write_units / per,
            t.usd / per * HOURS_PER_MONTH
        );
    }
    let (usd, calls) = total(m);
    let month = usd / per * HOURS_PER_MONTH;
    let floor_month = m.floor.usd() * HOURS_PER_MONTH;
    let _ = writeln!(
        s,
        "  CloudTrail: {:.2} records in {:.2} files per account-hour",
        m.records_per_hour, m.files_per_hour
    );
    let _ = writeln!(
        s,
        "  total: {:.1} requests per account-hour, {:.6} USD per watched account per month",
        calls / per,
        month
    );
    let _ = writeln!(
        s,
        "  floor: {:.1} requests per account-hour ({:?}), {:.6} USD per account-month; measured/floor: requests {:.2}, USD {:.2}",
        m.floor.requests(),
        m.floor,
        floor_month,
        calls / per / m.floor.requests(),
        month / floor_month
    );
    let _ = writeln!(
        s,
        "  fleet, not per account: {:.0} idle SQS long polls and {:.0} queue-depth reads per hour = {:.4} USD per month",
        m.idle_polls_per_hour,
        m.depth_polls_per_hour,
        (m.idle_polls_per_hour + m.depth_polls_per_hour) * HOURS_PER_MONTH * PRICES.sqs_request
    );
    for (name, cpu, rss) in &m.cpu_and_rss {
        let _ = writeln!(
            s,
            "  {:<13} CPU {:>7.1} s ({:.3} s per account-hour), peak RSS {:>6.1} MB",
            name,
            cpu,
            cpu / per,
            *rss as f64 / 1e6
        );
    }
    s
}

/// (service, CPU seconds, peak RSS bytes) of each service process.
fn cpu_by_service(fleet: &Fleet) -> Vec<(String, f64, u64)> {
    match fleet {
        Fleet::Procs(procs) => procs
            .iter()
            .map(|p| {
                let (cpu, rss) = cpu_rss(p.child.id());
                (p.name.clone(), cpu, rss)
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// CPU seconds (user + system) and peak RSS (bytes, VmHWM) of a live
/// process, from /proc.
fn cpu_rss(pid: u32) -> (f64, u64) {
    let Ok(p) = procfs::process::Process::new(pid as i32) else {
        return (0.0, 0);
    };
    let cpu = p.stat().map_or(0.0, |s| {
        (s.utime + s.stime) as f64 / procfs::ticks_per_second() as f64
    });
    let rss = p.status().ok().and_then(|s| s.vmhwm).unwrap_or(0) * 1024;
    (cpu, rss)
}

async fn settle(demo: &Demo) {
    harness::drained(
        &demo.ctx,
        Duration::from_secs(900),
        Duration::from_millis(500),
        "request-cost run",
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}
