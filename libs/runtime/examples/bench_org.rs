//! One organization discovery of 5,000 accounts (issue 20), next to a
//! naive baseline in the same run.
//!
//! A local stand-in answers AWS Organizations `ListAccounts` in the real
//! wire format (JSON 1.1, `X-Amz-Target: AWSOrganizationsV20161128.…`,
//! at most 20 accounts a page with `NextToken`, `InvalidInputException`
//! above 20, as AWS does). moto answers the rest: STS AssumeRole of the
//! management role, DynamoDB, SNS. Every request is counted: the
//! stand-in counts its calls, an interceptor on the DynamoDB and SNS
//! clients counts each attempt by operation.
//!
//! Runs, on one organization:
//! 1. first discovery: every account is new;
//! 2. nothing changed: must write nothing;
//! 3. two accounts joined, one was suspended.
//!
//! Baseline (its own environment, so its rows never meet Kopter's): the
//! same listing, then per account a `GetItem` of its row and a `PutItem`
//! of it — the sync that writes every account every time.
//!
//! Peak RSS is per phase (`/proc/self/clear_refs` resets it, Linux).
//!
//! `scripts/bench-org.sh [accounts]` (default 5000; moto from
//! `scripts/with-moto.sh`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use kopter_runtime::messaging::Outbox;
use kopter_runtime::org::{ORG_SK_PREFIX, OrgConnection, Organizations};
use kopter_runtime::{AwsContext, Config, CredentialCache, provision};
use kopter_schema::items::keys;
use kopter_schema::{AccountId, TenantId};

/// `ListAccounts`' largest page (AWS refuses more).
const MAX_PAGE: usize = 20;
const MANAGEMENT: &str = "999999999999";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(5000);
    let endpoint = std::env::var("MOTO_ENDPOINT")
        .map_err(|_| anyhow::anyhow!("MOTO_ENDPOINT unset: run through scripts/bench-org.sh"))?;

    let org = Arc::new(StandIn::new(n));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let standin = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new().route(
        "/",
        axum::routing::post({
            let org = org.clone();
            move |headers: HeaderMap, body: String| async move { org.answer(&headers, &body) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    let stamp = Utc::now().format("%H%M%S");
    let kopter = Env::new(&endpoint, &standin, &format!("bo{stamp}")).await?;
    let naive = Env::new(&endpoint, &standin, &format!("bn{stamp}")).await?;
    let conn = kopter.connection();

    println!(
        "organization of {n} accounts ({} listed pages minimum), stand-in {standin}, moto {endpoint}\n",
        n.div_ceil(MAX_PAGE)
    );
    println!(
        "{:<37} {:>9} {:>8} {:>8} {:>9} {:>8} {:>9} {:>9}",
        "run", "ListAcc.", "ddb rd", "ddb wr", "sns pub", "seconds", "peak MB", "changes"
    );
    let mut rows = Vec::new();
    for (name, change) in [
        ("1 first discovery", None),
        ("2 nothing changed", None),
        ("3 two joined, one suspended", Some(())),
    ] {
        if change.is_some() {
            org.join(2);
            org.suspend(&account(n / 2));
        }
        let k = kopter
            .measure(&org, async {
                let r = kopter
                    .orgs
                    .discover(&conn)
                    .await
                    .map_err(anyhow::Error::from)?;
                Ok(r.onboarded.len() + r.paused.len() + r.resumed.len())
            })
            .await?;
        let b = naive
            .measure(&org, async { naive_sync(&naive).await })
            .await?;
        println!("{}", k.row(&format!("Kopter   {name}")));
        println!("{}", b.row(&format!("baseline {name}")));
        rows.push((name, k, b));
    }

    println!("\nratios baseline / Kopter (higher is better for Kopter):");
    println!(
        "{:<30} {:>12} {:>12} {:>12} {:>10}",
        "run", "ddb requests", "ddb writes", "wall time", "peak RSS"
    );
    for (name, k, b) in &rows {
        println!(
            "{:<30} {:>12} {:>12} {:>12} {:>10}",
            name,
            ratio(b.ddb_reads + b.ddb_writes, k.ddb_reads + k.ddb_writes),
            ratio(b.ddb_writes, k.ddb_writes),
            format!("{:.2}×", b.seconds / k.seconds),
            format!("{:.2}×", b.peak_kb as f64 / k.peak_kb.max(1) as f64),
        );
    }
    let (_, first, _) = &rows[0];
    anyhow::ensure!(
        first.list_calls == n.div_ceil(MAX_PAGE),
        "discovery made {} ListAccounts calls, the minimum is {}",
        first.list_calls,
        n.div_ceil(MAX_PAGE)
    );
    let (_, second, _) = &rows[1];
    anyhow::ensure!(
        second.ddb_writes == 0 && second.sns_publishes == 0,
        "a discovery with nothing changed wrote {} rows and published {} notices",
        second.ddb_writes,
        second.sns_publishes
    );
    Ok(())
}

fn ratio(base: usize, kopter: usize) -> String {
    if kopter == 0 {
        format!("{base} vs 0")
    } else {
        format!("{:.1}×", base as f64 / kopter as f64)
    }
}

fn account(i: usize) -> String {
    format!("{:012}", 100_000_000_000usize + i)
}

/// The organization the stand-in serves: the management account first,
/// then members; each with its state.
struct StandIn {
    accounts: Mutex<Vec<(String, &'static str)>>,
    list_calls: AtomicUsize,
}

impl StandIn {
    fn new(n: usize) -> Self {
        let mut accounts = vec![(MANAGEMENT.to_owned(), "ACTIVE")];
        accounts.extend((1..n).map(|i| (account(i), "ACTIVE")));
        Self {
            accounts: Mutex::new(accounts),
            list_calls: AtomicUsize::new(0),
        }
    }

    fn join(&self, k: usize) {
        let mut a = self.accounts.lock().unwrap();
        let next = a.len();
        a.extend((next..next + k).map(|i| (account(i), "ACTIVE")));
    }

    fn suspend(&self, id: &str) {
        for a in self.accounts.lock().unwrap().iter_mut() {
            if a.0 == id {
                a.1 = "SUSPENDED";
            }
        }
    }

    /// One JSON 1.1 call. `NextToken` is the offset of the next page.
    fn answer(&self, headers: &HeaderMap, body: &str) -> (StatusCode, HeaderMap, String) {
        let mut out = HeaderMap::new();
        out.insert(
            "content-type",
            "application/x-amz-json-1.1".parse().unwrap(),
        );
        out.insert("x-amzn-requestid", "bench".parse().unwrap());
        let target = headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let fail = |out: HeaderMap, kind: &str, msg: &str| {
            (
                StatusCode::BAD_REQUEST,
                out,
                serde_json::json!({ "__type": kind, "Message": msg }).to_string(),
            )
        };
        if target != "AWSOrganizationsV20161128.ListAccounts" {
            return fail(out, "UnsupportedAPIEndpointException", target);
        }
        self.list_calls.fetch_add(1, Ordering::Relaxed);
        let req: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let max = req["MaxResults"].as_u64().unwrap_or(MAX_PAGE as u64) as usize;
        if !(1..=MAX_PAGE).contains(&max) {
            return fail(
                out,
                "InvalidInputException",
                "MaxResults: must be between 1 and 20",
            );
        }
        let from: usize = req["NextToken"]
            .as_str()
            .map(|t| t.parse().unwrap_or(usize::MAX))
            .unwrap_or(0);
        let all = self.accounts.lock().unwrap();
        if from > all.len() {
            return fail(out, "InvalidInputException", "NextToken: invalid");
        }
        let to = (from + max).min(all.len());
        let accounts: Vec<_> = all[from..to]
            .iter()
            .map(|(id, state)| {
                serde_json::json!({
                    "Id": id,
                    "Arn": format!("arn:aws:organizations::{MANAGEMENT}:account/o-bench00001/{id}"),
                    "Email": format!("aws+{id}@example.com"),
                    "Name": format!("account {id}"),
                    "Status": state,
                    "State": state,
                    "JoinedMethod": "CREATED",
                    "JoinedTimestamp": 1.7e9,
                })
            })
            .collect();
        let mut page = serde_json::json!({ "Accounts": accounts });
        if to < all.len() {
            page["NextToken"] = to.to_string().into();
        }
        (StatusCode::OK, out, page.to_string())
    }
}

/// Requests by (service, operation), counted per attempt.
#[derive(Debug, Default)]
struct Counter(Mutex<BTreeMap<(String, String), usize>>);

impl Counter {
    fn take(&self) -> BTreeMap<(String, String), usize> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[derive(Debug, Clone)]
struct Counting(Arc<Counter>);

impl Intercept for Counting {
    fn name(&self) -> &'static str {
        "bench-counter"
    }

    fn read_before_transmit(
        &self,
        _: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(m) = cfg.load::<Metadata>() {
            *self
                .0
                .0
                .lock()
                .unwrap()
                .entry((m.service().to_owned(), m.name().to_owned()))
                .or_default() += 1;
        }
        Ok(())
    }
}

/// One Kopter environment on moto with counted clients.
struct Env {
    orgs: Organizations,
    ddb: aws_sdk_dynamodb::Client,
    table: String,
    tenant: TenantId,
    counter: Arc<Counter>,
}

impl Env {
    async fn new(moto: &str, standin: &str, env: &str) -> anyhow::Result<Self> {
        let mut config = Config::defaults(None);
        config.env = env.to_owned();
        config.aws.endpoint_url = Some(moto.to_owned());
        // DynamoDB Local (scripts/bench-org.sh starts it): moto's DynamoDB
        // slows down as a table grows past a few thousand items.
        config.aws.dynamodb_endpoint_url = std::env::var("DYNAMODB_ENDPOINT")
            .ok()
            .filter(|e| !e.is_empty());
        config.aws.region = Some("us-east-1".into());
        let aws = AwsContext::load(&config).await;
        provision::bootstrap(&aws, &config).await?;
        let counter = Arc::new(Counter::default());
        let ddb = aws_sdk_dynamodb::Client::from_conf(
            aws.dynamodb()
                .config()
                .to_builder()
                .interceptor(Counting(counter.clone()))
                .build(),
        );
        let sns = aws_sdk_sns::Client::from_conf(
            aws.sns()
                .config()
                .to_builder()
                .interceptor(Counting(counter.clone()))
                .build(),
        );
        let names = config.names();
        // Organizations goes to the stand-in; everything else to moto.
        let base = aws.sdk.to_builder().endpoint_url(standin).build();
        let orgs = Organizations::new(
            base,
            CredentialCache::new(aws.sts(), "bench", &config.credentials),
            ddb.clone(),
            &names,
            Outbox::new(aws.sqs(), sns, names.clone()),
        );
        let tenant = TenantId::new("bench")?;
        Ok(Self {
            orgs,
            ddb,
            table: names.table(kopter_schema::Table::Accounts),
            tenant,
            counter,
        })
    }

    fn connection(&self) -> OrgConnection {
        let management = AccountId::new(MANAGEMENT).expect("12 digits");
        OrgConnection {
            pk: keys::account_pk(&self.tenant),
            sk: format!("{ORG_SK_PREFIX}{management}"),
            tenant_id: self.tenant.clone(),
            management_account: management.clone(),
            management_role_arn: format!("arn:aws:iam::{management}:role/KopterAccess-OrgRead"),
            member_role_name: "KopterAccess".into(),
            regions: vec!["us-east-1".into()],
            organization_id: "o-bench00001".into(),
            connected_at: Utc::now(),
        }
    }

    async fn measure(
        &self,
        org: &StandIn,
        run: impl std::future::Future<Output = anyhow::Result<usize>>,
    ) -> anyhow::Result<Measure> {
        self.counter.take();
        org.list_calls.store(0, Ordering::Relaxed);
        // Writing 5 resets the peak RSS (VmHWM) to the current RSS.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let started = Instant::now();
        let changes = run.await?;
        let seconds = started.elapsed().as_secs_f64();
        let peak_kb = status_kb("VmHWM");
        let calls = self.counter.take();
        let sum = |service: &str, ops: &[&str]| -> usize {
            calls
                .iter()
                .filter(|((s, o), _)| s.eq_ignore_ascii_case(service) && ops.iter().any(|x| x == o))
                .map(|(_, n)| n)
                .sum()
        };
        Ok(Measure {
            list_calls: org.list_calls.load(Ordering::Relaxed),
            ddb_reads: sum(
                "dynamodb",
                &[
                    "GetItem",
                    "Query",
                    "Scan",
                    "BatchGetItem",
                    "TransactGetItems",
                ],
            ),
            ddb_writes: sum(
                "dynamodb",
                &[
                    "PutItem",
                    "UpdateItem",
                    "DeleteItem",
                    "BatchWriteItem",
                    "TransactWriteItems",
                ],
            ),
            sns_publishes: sum("sns", &["Publish", "PublishBatch"]),
            seconds,
            peak_kb,
            changes,
        })
    }
}

/// The baseline: list the organization the same way, then read and
/// write every account's row.
async fn naive_sync(env: &Env) -> anyhow::Result<usize> {
    let conn = env.connection();
    // The listing is Kopter's (a baseline with smaller pages would only
    // add calls); what differs is what is done per account.
    let (listed, _) = env.orgs.list(&conn).await.map_err(anyhow::Error::from)?;
    let mut changed = 0;
    for (id, state) in listed {
        if id.as_str() == MANAGEMENT {
            continue;
        }
        let key = |item: aws_sdk_dynamodb::operation::get_item::builders::GetItemFluentBuilder| {
            item.table_name(&env.table)
                .key("pk", AttributeValue::S(keys::account_pk(&env.tenant)))
                .key("sk", AttributeValue::S(keys::account_sk(&id)))
        };
        let before = key(env.ddb.get_item()).send().await?.item;
        let mut rec = kopter_schema::items::AccountRecord::new(
            env.tenant.clone(),
            id.clone(),
            conn.member_role_arn(&id),
            "kopter-bench-members".into(),
            conn.regions.clone(),
            Utc::now(),
        );
        rec.organization = Some(conn.management_account.clone());
        if state != "ACTIVE" {
            rec.paused = Some(format!("{state} in organization"));
        }
        if before.is_none() || state != "ACTIVE" {
            changed += 1;
        }
        env.ddb
            .put_item()
            .table_name(&env.table)
            .set_item(Some(serde_dynamo::to_item(&rec)?))
            .send()
            .await?;
    }
    Ok(changed)
}

struct Measure {
    list_calls: usize,
    ddb_reads: usize,
    ddb_writes: usize,
    sns_publishes: usize,
    seconds: f64,
    peak_kb: u64,
    changes: usize,
}

impl Measure {
    fn row(&self, name: &str) -> String {
        format!(
            "{:<37} {:>9} {:>8} {:>8} {:>9} {:>8.1} {:>9.1} {:>9}",
            name,
            self.list_calls,
            self.ddb_reads,
            self.ddb_writes,
            self.sns_publishes,
            self.seconds,
            self.peak_kb as f64 / 1024.0,
            self.changes
        )
    }
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
