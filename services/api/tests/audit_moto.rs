//! `/v1/audit/aws`, `/v1/audit/aws/{id}`, `/v1/findings` and
//! `/v1/notifications` end to end against moto: two tenants' rows written
//! through the real stores (findings and inventory notifications through
//! the notifier's own event mapping), read through the in-process router
//! over `DynamoData`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use api::auth::jwks::{KeySource, RefreshPolicy};
use api::auth::{ClaimsConfig, IssuerKeys, Verifier};
use api::cursor::CursorCodec;
use api::data::audit::{AuditEvent, Finding, Notification};
use api::dynamo::DynamoData;
use api::ratelimit::TenantLimiter;
use api::tenant_db::TenantDb;
use api::{ApiParts, ApiState};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use kopter_dev_issuer::{DevIssuer, TokenRequest};
use kopter_runtime::CredentialCache;
use kopter_schema::messages::{InventoryChanged, SecurityFinding, Severity};
use kopter_schema::{AccountId, Message, TenantId};
use kopter_store::audit::{AuditQuery, AuditRecord, AuditRow, AuditStore};
use kopter_store::feed::{FeedQuery, FeedRow, FeedStore, PutOutcome};
use kopter_tests::{TestEnv, unique};
use serde_json::Value;
use tower::ServiceExt;

const ISS: &str = "https://issuer.test";
const AUD: &str = "kopter";
const A1: &str = "111111111111";
const A2: &str = "222222222222";
const G1: &str = "333333333333";
/// Touched by several of acme's records (first resource of some, a further
/// one of others) and by one of globex's.
const SHARED: &str = "i-0123456789abcdef0";

struct Setup {
    _env: TestEnv,
    router: axum::Router,
    key: DevIssuer,
    now: DateTime<Utc>,
    /// acme's rows, newest first.
    acme: Vec<AuditRow>,
    globex: Vec<AuditRow>,
}

fn record(k: usize, at: DateTime<Utc>, tenant: &str, account: &str) -> (AuditRecord, Vec<String>) {
    let (source, event) = match k % 3 {
        0 => ("ec2.amazonaws.com", "RunInstances"),
        1 => ("iam.amazonaws.com", "CreateUser"),
        _ => ("signin.amazonaws.com", "ConsoleLogin"),
    };
    let user = if k.is_multiple_of(2) { "alice" } else { "bob" };
    let principal = format!("arn:aws:iam::{account}:user/{user}");
    let event_id = format!("{tenant}-{k:04}-0000-4000-8000-000000000000");
    let resources = match k % 4 {
        0 => vec![SHARED.to_owned(), format!("vol-{k:017}")],
        1 => vec![format!("i-{k:017}"), SHARED.to_owned()],
        2 => vec![format!("sg-{k:017}")],
        _ => vec![],
    };
    let raw = serde_json::json!({
        "eventVersion": "1.08",
        "eventID": event_id,
        "eventTime": at.to_rfc3339_opts(SecondsFormat::Secs, true),
        "eventSource": source,
        "eventName": event,
        "awsRegion": "us-east-1",
        "recipientAccountId": account,
        "userIdentity": {"type": "IAMUser", "arn": principal, "accountId": account},
        "sourceIPAddress": "198.51.100.7",
    })
    .to_string();
    let findings = if k.is_multiple_of(5) {
        vec!["root-activity".to_owned()]
    } else if k % 5 == 2 {
        vec!["iam-user-created".to_owned()]
    } else {
        vec![]
    };
    let rec = AuditRecord {
        event_id,
        event_time: at,
        event_source: source.into(),
        event_name: event.into(),
        aws_region: "us-east-1".into(),
        recipient_account: Some(account.into()),
        user_account: Some(account.into()),
        principal_arn: Some(principal),
        principal_type: Some("IAMUser".into()),
        source_ip: Some("198.51.100.7".into()),
        user_agent: Some("aws-cli/2".into()),
        read_only: Some(false),
        error_code: None,
        error_message: None,
        resources,
        raw,
        mfa_used: None,
        console_login: None,
    };
    (rec, findings)
}

/// Writes `n` records for `tenant`, one every `step` back from `now` (150
/// minutes: several per day partition, over several days), their findings
/// into the feed as the notifier does, and returns the rows newest first.
async fn seed(
    env: &TestEnv,
    tenant: &str,
    accounts: &[&str],
    n: usize,
    now: DateTime<Utc>,
    step: chrono::Duration,
) -> Vec<AuditRow> {
    let ddb = env.ctx.aws.dynamodb();
    let audit = AuditStore::new(ddb.clone(), &env.ctx.names);
    let feed = FeedStore::new(ddb, &env.ctx.names);
    let t = TenantId::new(tenant).unwrap();
    let mut rows = Vec::new();
    for k in 0..n {
        let at = now - step * k as i32;
        let account = accounts[k % accounts.len()];
        let (rec, findings) = record(k, at, tenant, account);
        let row = AuditRow::new(
            &t,
            &AccountId::new(account).unwrap(),
            &rec,
            findings.clone(),
            30,
        );
        audit.put(&row).await.unwrap();
        for rule in &findings {
            let msg = Message::SecurityFinding(SecurityFinding {
                tenant: t.clone(),
                account: AccountId::new(account).unwrap(),
                region: "us-east-1".into(),
                rule: rule.clone(),
                severity: if rule == "root-activity" {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                event_id: rec.event_id.clone(),
                event_name: rec.event_name.clone(),
                principal: rec.principal_arn.clone(),
                at,
                summary: format!("{rule} summary"),
            });
            let ev = notifier::event::from_message(&msg).expect("a finding is told");
            assert_eq!(
                feed.put(&FeedRow::from_event(&ev, 30)).await.unwrap(),
                PutOutcome::New
            );
        }
        rows.push(row);
    }
    rows
}

async fn setup() -> Setup {
    let env = TestEnv::new().await;
    env.create_tenants(&["acme", "globex"]).await;
    let now = Utc::now().trunc_subsecs(3);
    let step = chrono::Duration::minutes(150);
    let acme = seed(&env, "acme", &[A1, A2], 30, now, step).await;
    let globex = seed(&env, "globex", &[G1], 6, now, step).await;
    // Inventory notifications (not findings) in acme's feed.
    let feed = FeedStore::new(env.ctx.aws.dynamodb(), &env.ctx.names);
    for k in 0..5 {
        let msg = Message::InventoryChanged(InventoryChanged {
            tenant: TenantId::new("acme").unwrap(),
            account: AccountId::new(A1).unwrap(),
            region: "eu-west-1".into(),
            resource_id: format!("i-{k:017}"),
            resource_kind: "instance".into(),
            change: "launched".into(),
            at: now - chrono::Duration::minutes(37 * k),
            detail: Value::Null,
        });
        let ev = notifier::event::from_message(&msg).expect("a launch is told");
        feed.put(&FeedRow::from_event(&ev, 30)).await.unwrap();
    }

    let credentials = CredentialCache::new(env.ctx.aws.sts(), "api", &env.config.credentials);
    let db = TenantDb::new(env.ctx.aws.clone(), credentials, None, 16);
    let data = Arc::new(DynamoData::new(db, env.ctx.names.clone()));
    let key = DevIssuer::generate().unwrap();
    let set = serde_json::from_value(key.jwks()).unwrap();
    let policy = RefreshPolicy {
        refresh_interval: Duration::from_secs(30),
        max_age: Duration::from_secs(3600),
    };
    let issuer = Arc::new(IssuerKeys::new(ISS, AUD, 0, KeySource::Fixed(set), policy));
    let claims = ClaimsConfig {
        audience: AUD.into(),
        tenant_claim: "custom:tenant".into(),
        roles_claim: "cognito:groups".into(),
        admin_role: "admin".into(),
        leeway_secs: 0,
    };
    let state = ApiState::new(ApiParts {
        verifier: Verifier::new(vec![issuer], claims),
        limiter: TenantLimiter::new(10_000, 10_000),
        cursors: CursorCodec::new(&[7; 32]),
        data,
        dev_issuer: None,
        max_query_bytes: 4096,
    });
    Setup {
        _env: env,
        router: api::router(state, &[]),
        key,
        now,
        acme,
        globex,
    }
}

impl Setup {
    fn token(&self, tenant: &str) -> String {
        self.key
            .mint(&TokenRequest {
                tenant: tenant.into(),
                roles: vec![],
                ttl: Duration::from_secs(600),
                subject: "user-1".into(),
                issuer: ISS.into(),
                audience: AUD.into(),
                tenant_claim: "custom:tenant".into(),
                roles_claim: "cognito:groups".into(),
            })
            .unwrap()
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        tenant: &str,
        accept: Option<&str>,
    ) -> (StatusCode, Vec<u8>) {
        let mut req = Request::builder().method(method).uri(uri).header(
            header::AUTHORIZATION,
            format!("Bearer {}", self.token(tenant)),
        );
        if let Some(a) = accept {
            req = req.header(header::ACCEPT, a);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        (status, body)
    }

    async fn get(&self, uri: &str, tenant: &str) -> (StatusCode, Value) {
        let (s, body) = self.call(Method::GET, uri, tenant, None).await;
        let v = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("{uri}: {e}: {}", String::from_utf8_lossy(&body)))
        };
        (s, v)
    }

    /// Every item of a list through its cursors (`uri` has a query
    /// string), checking each page's size; returns the items and the
    /// number of pages.
    async fn all_pages(&self, uri: &str, tenant: &str, limit: usize) -> (Vec<Value>, usize) {
        let mut items = Vec::new();
        let mut pages = 0;
        let mut next = format!("{uri}&limit={limit}");
        loop {
            let (s, v) = self.get(&next, tenant).await;
            assert_eq!(s, StatusCode::OK, "{next}: {v}");
            let page = v["items"].as_array().unwrap();
            assert!(page.len() <= limit, "{next}: {} items", page.len());
            items.extend(page.iter().cloned());
            pages += 1;
            assert!(pages < 200, "{uri}: the cursors do not end");
            match v["next_cursor"].as_str() {
                Some(c) => next = format!("{uri}&limit={limit}&cursor={c}"),
                None => return (items, pages),
            }
        }
    }

    /// The CSV and NDJSON exports of `uri` (every page), decoded as `T`.
    async fn exports<T: serde::de::DeserializeOwned>(
        &self,
        uri: &str,
        tenant: &str,
    ) -> (Vec<T>, Vec<T>) {
        let (s, body) = self
            .call(
                Method::GET,
                &format!("{uri}&format=ndjson&limit=4"),
                tenant,
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let nd = String::from_utf8(body)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let (s, body) = self
            .call(
                Method::GET,
                &format!("{uri}&limit=5"),
                tenant,
                Some("text/csv"),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let csv = csv::Reader::from_reader(body.as_slice())
            .deserialize()
            .map(|r| r.unwrap())
            .collect();
        (nd, csv)
    }

    async fn problem_parameter(&self, uri: &str, tenant: &str) -> String {
        let (s, v) = self.get(uri, tenant).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}: {v}");
        v["parameter"].as_str().unwrap_or_default().to_owned()
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn ids(items: &[Value], key: &str) -> Vec<String> {
    items
        .iter()
        .map(|i| i[key].as_str().unwrap().to_owned())
        .collect()
}

fn event_ids(rows: &[&AuditRow]) -> Vec<String> {
    rows.iter().map(|r| r.event_id.clone()).collect()
}

fn typed<T: serde::de::DeserializeOwned>(items: &[Value]) -> Vec<T> {
    items
        .iter()
        .map(|v| serde_json::from_value(v.clone()).unwrap())
        .collect()
}

#[tokio::test]
async fn the_audit_log_lists_pages_filters_and_isolates_tenants() {
    let s = setup().await;
    let since = ts(s.now - chrono::Duration::hours(80));
    let until = ts(s.now);
    let window = format!("/v1/audit/aws?since={since}&until={until}");
    let all: Vec<&AuditRow> = s.acme.iter().collect();

    // The whole window: every record, newest first, over several day
    // partitions, through every page.
    let (items, pages) = s.all_pages(&window, "acme", 7).await;
    assert_eq!(ids(&items, "event_id"), event_ids(&all));
    assert!(pages >= 5, "{pages} pages");
    let first: AuditEvent = serde_json::from_value(items[0].clone()).unwrap();
    assert_eq!(first.time, ts(s.acme[0].event_time));
    assert_eq!(first.account, A1);
    assert_eq!(first.findings, "root-activity");
    assert_eq!(first.resources, format!("{SHARED} vol-{:017}", 0));

    // CSV and NDJSON carry exactly the JSON pages' items.
    let json: Vec<AuditEvent> = typed(&items);
    let (nd, csv) = s.exports::<AuditEvent>(&window, "acme").await;
    assert_eq!(nd, json);
    assert_eq!(csv, json);

    // Default window: the last 24 hours (records 0..=9, 150 min apart).
    let (items, _) = s.all_pages("/v1/audit/aws?", "acme", 3).await;
    assert_eq!(ids(&items, "event_id"), event_ids(&all[..10]));

    // Each filter, paged: through the summaries (principal, event,
    // resource, first or further) and on the rows read (source, account).
    let alice = format!("arn:aws:iam::{A1}:user/alice");
    let cases: Vec<(String, Vec<&AuditRow>)> = vec![
        (
            format!("principal={alice}"),
            all.iter()
                .copied()
                .filter(|r| r.principal_arn.as_deref() == Some(&alice))
                .collect(),
        ),
        (
            "event=CreateUser".into(),
            all.iter()
                .copied()
                .filter(|r| r.event_name == "CreateUser")
                .collect(),
        ),
        (
            format!("resource={SHARED}"),
            all.iter()
                .copied()
                .filter(|r| r.resources.iter().any(|x| x == SHARED))
                .collect(),
        ),
        (
            "source=signin.amazonaws.com".into(),
            all.iter()
                .copied()
                .filter(|r| r.event_source == "signin.amazonaws.com")
                .collect(),
        ),
        (
            format!("account={A2}"),
            all.iter()
                .copied()
                .filter(|r| r.account.as_str() == A2)
                .collect(),
        ),
        (
            format!("event=RunInstances&resource={SHARED}&account={A1}"),
            all.iter()
                .copied()
                .filter(|r| {
                    r.event_name == "RunInstances"
                        && r.resources.iter().any(|x| x == SHARED)
                        && r.account.as_str() == A1
                })
                .collect(),
        ),
    ];
    for (filter, want) in cases {
        assert!(!want.is_empty(), "{filter}: the fixture must exercise it");
        assert!(want.len() < all.len(), "{filter}: the fixture must narrow");
        let (items, _) = s.all_pages(&format!("{window}&{filter}"), "acme", 4).await;
        assert_eq!(ids(&items, "event_id"), event_ids(&want), "{filter}");
    }
    // A resource that appears only as a further resource of its records.
    let further = s.acme[0].resources[1].clone();
    let (items, _) = s
        .all_pages(&format!("{window}&resource={further}"), "acme", 4)
        .await;
    assert_eq!(ids(&items, "event_id"), vec![s.acme[0].event_id.clone()]);

    // globex sees only its own, even for the resource both touched.
    let (items, _) = s
        .all_pages(&format!("{window}&resource={SHARED}"), "globex", 2)
        .await;
    assert!(!items.is_empty());
    assert!(items.iter().all(|i| i["account"] == G1), "{items:?}");
    let (items, _) = s.all_pages(&window, "globex", 100).await;
    assert_eq!(items.len(), s.globex.len());

    // One record with its raw CloudTrail JSON; another tenant's id is 404.
    let (st, v) = s.get(first.record.as_str(), "acme").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["event_id"], s.acme[0].event_id.as_str());
    assert_eq!(v["raw"]["eventID"], s.acme[0].event_id.as_str());
    assert_eq!(v["raw"]["userIdentity"]["arn"], alice.as_str());
    assert_eq!(
        v["resources"],
        serde_json::json!([SHARED, format!("vol-{:017}", 0)])
    );
    assert_eq!(v["findings"], serde_json::json!(["root-activity"]));
    assert_eq!(v["raw_truncated"], false);
    let (st, v) = s.get(first.record.as_str(), "globex").await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    // globex's record with the same time and a made-up id of acme's shape.
    let (_, v) = s.get(&format!("{window}&limit=1"), "globex").await;
    let globex_record = v["items"][0]["record"].as_str().unwrap().to_owned();
    assert_eq!(s.get(&globex_record, "globex").await.0, StatusCode::OK);
    assert_eq!(s.get(&globex_record, "acme").await.0, StatusCode::NOT_FOUND);

    // acme's cursor is refused for globex, and for another filter.
    let (_, v) = s.get(&format!("{window}&limit=2"), "acme").await;
    let cursor = v["next_cursor"].as_str().unwrap().to_owned();
    for (uri, tenant) in [
        (format!("{window}&limit=2&cursor={cursor}"), "globex"),
        (
            format!("{window}&event=CreateUser&limit=2&cursor={cursor}"),
            "acme",
        ),
    ] {
        assert_eq!(s.problem_parameter(&uri, tenant).await, "cursor", "{uri}");
    }

    // Malformed parameters are 400 naming them, never 500.
    let far = ts(s.now - chrono::Duration::days(91));
    for (uri, param) in [
        ("/v1/audit/aws?since=yesterday".to_owned(), "since"),
        (
            "/v1/audit/aws?until=2026-13-01T00:00:00Z".to_owned(),
            "until",
        ),
        (
            format!("/v1/audit/aws?since={until}&until={since}"),
            "until",
        ),
        (format!("/v1/audit/aws?since={far}&until={until}"), "since"),
        ("/v1/audit/aws?account=12ab".to_owned(), "account"),
        ("/v1/audit/aws?limit=0".to_owned(), "limit"),
        ("/v1/audit/aws?limit=1001".to_owned(), "limit"),
        ("/v1/audit/aws?user=alice".to_owned(), "user"),
        ("/v1/audit/aws?event=".to_owned(), "event"),
        ("/v1/audit/aws?cursor=garbage".to_owned(), "cursor"),
        ("/v1/audit/aws/not-an-id".to_owned(), "id"),
        (
            format!("/v1/audit/aws?principal={}", "p".repeat(1901)),
            "principal",
        ),
    ] {
        assert_eq!(s.problem_parameter(&uri, "acme").await, param, "{uri}");
    }
    let (_, v) = s
        .get(&format!("/v1/audit/aws?since={far}&until={until}"), "acme")
        .await;
    assert!(v["detail"].as_str().unwrap().contains("90 days"), "{v}");
}

#[tokio::test]
async fn findings_link_their_records_and_filter() {
    let s = setup().await;
    let with_findings: Vec<(&AuditRow, &String)> = s
        .acme
        .iter()
        .flat_map(|r| r.findings.iter().map(move |f| (r, f)))
        .collect();
    assert!(with_findings.len() >= 10);

    let (items, pages) = s.all_pages("/v1/findings?", "acme", 5).await;
    assert!(pages >= 3, "{pages}");
    let got: Vec<Finding> = typed(&items);
    assert_eq!(
        got.iter()
            .map(|f| (f.time.clone(), f.rule.clone()))
            .collect::<Vec<_>>(),
        with_findings
            .iter()
            .map(|(r, f)| (ts(r.event_time), (*f).clone()))
            .collect::<Vec<_>>()
    );
    // Each links its own audit record.
    for (f, (row, rule)) in got.iter().zip(&with_findings).take(4) {
        let (st, v) = s.get(f.record.as_deref().unwrap(), "acme").await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(v["event_id"], row.event_id.as_str());
        assert!(
            v["findings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == rule.as_str())
        );
        assert_eq!(
            s.get(f.record.as_deref().unwrap(), "globex").await.0,
            StatusCode::NOT_FOUND
        );
    }
    let (nd, csv) = s.exports::<Finding>("/v1/findings?", "acme").await;
    assert_eq!(nd, got);
    assert_eq!(csv, got);

    // Filters: severity, rule, time.
    let (items, _) = s
        .all_pages("/v1/findings?severity=critical", "acme", 2)
        .await;
    let want = with_findings
        .iter()
        .filter(|(_, f)| *f == "root-activity")
        .count();
    assert_eq!(items.len(), want);
    assert!(
        items
            .iter()
            .all(|i| i["severity"] == "critical" && i["rule"] == "root-activity")
    );
    let (items, _) = s
        .all_pages("/v1/findings?rule=iam-user-created", "acme", 2)
        .await;
    assert_eq!(items.len(), with_findings.len() - want);
    assert!(items.iter().all(|i| i["severity"] == "warning"));
    let since = s.now - chrono::Duration::hours(30);
    let until = s.now - chrono::Duration::hours(5);
    let (items, _) = s
        .all_pages(
            &format!("/v1/findings?since={}&until={}", ts(since), ts(until)),
            "acme",
            3,
        )
        .await;
    let want: Vec<String> = with_findings
        .iter()
        .filter(|(r, _)| r.event_time >= since && r.event_time <= until)
        .map(|(r, _)| ts(r.event_time))
        .collect();
    assert!(!want.is_empty());
    assert_eq!(ids(&items, "time"), want);

    // globex: its own findings only.
    let (items, _) = s.all_pages("/v1/findings?", "globex", 100).await;
    let globex_n: usize = s.globex.iter().map(|r| r.findings.len()).sum();
    assert_eq!(items.len(), globex_n);
    assert!(items.iter().all(|i| i["account"] == G1));

    let (_, v) = s.get("/v1/findings?limit=2", "acme").await;
    let cursor = v["next_cursor"].as_str().unwrap().to_owned();
    let uri = format!("/v1/findings?limit=2&cursor={cursor}");
    assert_eq!(s.problem_parameter(&uri, "globex").await, "cursor");
    for (uri, param) in [
        ("/v1/findings?severity=high", "severity"),
        ("/v1/findings?since=2026-11-29", "since"),
        (
            "/v1/findings?since=2026-11-29T00:00:00Z&until=2026-11-28T00:00:00Z",
            "until",
        ),
        ("/v1/findings?principal=x", "principal"),
    ] {
        assert_eq!(s.problem_parameter(uri, "acme").await, param, "{uri}");
    }
}

#[tokio::test]
async fn notifications_list_and_mark_read_per_tenant() {
    let s = setup().await;
    let n_findings: usize = s.acme.iter().map(|r| r.findings.len()).sum();
    let (items, pages) = s.all_pages("/v1/notifications?", "acme", 4).await;
    assert_eq!(items.len(), n_findings + 5);
    assert!(pages >= 5);
    let got: Vec<Notification> = typed(&items);
    let mut times: Vec<&String> = got.iter().map(|n| &n.time).collect();
    times.dedup();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    let kinds: BTreeSet<&str> = got.iter().map(|n| n.kind.as_str()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["inventory.changed", "security.finding"])
    );
    assert!(got.iter().all(|n| !n.read && n.read_at.is_none()));
    let (nd, csv) = s
        .exports::<Notification>("/v1/notifications?", "acme")
        .await;
    assert_eq!(nd, got);
    assert_eq!(csv, got);

    // Mark one read (a viewer may), twice: idempotent, first time kept.
    let target = got[3].clone();
    let read_uri = format!("/v1/notifications/{}/read", target.id);
    let (st, _) = s.call(Method::POST, &read_uri, "acme", None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (items, _) = s.all_pages("/v1/notifications?", "acme", 100).await;
    let marked: Vec<Notification> = typed(&items);
    let first_read = marked.iter().find(|n| n.id == target.id).unwrap().clone();
    assert!(first_read.read);
    let read_at = first_read.read_at.clone().expect("read_at set");
    let (st, _) = s.call(Method::POST, &read_uri, "acme", None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (items, _) = s.all_pages("/v1/notifications?", "acme", 100).await;
    let again: Vec<Notification> = typed(&items);
    assert_eq!(
        again.iter().find(|n| n.id == target.id).unwrap().read_at,
        Some(read_at)
    );

    // unread=true leaves it out (the sparse index), paged.
    let (items, _) = s
        .all_pages("/v1/notifications?unread=true", "acme", 3)
        .await;
    let unread: Vec<Notification> = typed(&items);
    assert_eq!(unread.len(), got.len() - 1);
    assert!(unread.iter().all(|n| n.id != target.id && !n.read));
    let (items, _) = s
        .all_pages("/v1/notifications?unread=false", "acme", 100)
        .await;
    assert_eq!(items.len(), got.len());

    // Another tenant: cannot see, mark or page acme's feed.
    let (items, _) = s.all_pages("/v1/notifications?", "globex", 100).await;
    let globex: Vec<Notification> = typed(&items);
    assert_eq!(
        globex.len(),
        s.globex.iter().map(|r| r.findings.len()).sum::<usize>()
    );
    assert!(globex.iter().all(|n| n.account.as_deref() == Some(G1)));
    let other = format!("/v1/notifications/{}/read", got[0].id);
    let (st, body) = s.call(Method::POST, &other, "globex", None).await;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (items, _) = s
        .all_pages("/v1/notifications?unread=true", "acme", 100)
        .await;
    assert_eq!(
        items.len(),
        got.len() - 1,
        "globex's attempt marked nothing"
    );
    let (_, v) = s.get("/v1/notifications?limit=2", "acme").await;
    let cursor = v["next_cursor"].as_str().unwrap().to_owned();
    let uri = format!("/v1/notifications?limit=2&cursor={cursor}");
    assert_eq!(s.problem_parameter(&uri, "globex").await, "cursor");
    let uri = format!("/v1/notifications?unread=true&limit=2&cursor={cursor}");
    assert_eq!(s.problem_parameter(&uri, "acme").await, "cursor");

    for (uri, param) in [
        ("/v1/notifications?unread=yes", "unread"),
        ("/v1/notifications?severity=info", "severity"),
    ] {
        assert_eq!(s.problem_parameter(uri, "acme").await, param, "{uri}");
    }
    let (st, body) = s
        .call(Method::POST, "/v1/notifications/%2E%2E/read", "acme", None)
        .await;
    assert_eq!(
        st,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&body)
    );
}

/// Counts the requests a DynamoDB client sends.
#[derive(Debug, Clone, Default)]
struct CallCounter(Arc<AtomicUsize>);

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// The bound: a page costs at most two DynamoDB calls — also for a
/// walk over weeks of empty day partitions, and a search (summaries, then
/// their segments).
#[tokio::test]
async fn every_page_costs_at_most_two_dynamodb_calls() {
    let env = TestEnv::new().await;
    let now = Utc::now().trunc_subsecs(3);
    // One record every 5 days over 55 days: most day partitions are empty.
    let rows = seed(&env, "acme", &[A1, A2], 12, now, chrono::Duration::days(5)).await;
    seed(&env, "globex", &[G1], 3, now, chrono::Duration::days(5)).await;
    let counter = CallCounter::default();
    let conf = env
        .ctx
        .aws
        .dynamodb()
        .config()
        .to_builder()
        .interceptor(counter.clone())
        .build();
    let ddb = aws_sdk_dynamodb::Client::from_conf(conf);
    let audit = AuditStore::new(ddb.clone(), &env.ctx.names);
    let acme = TenantId::new("acme").unwrap();

    let query = |limit: usize, resource: Option<&str>| AuditQuery {
        tenant: acme.clone(),
        since: now - chrono::Duration::days(60),
        until: now,
        principal: None,
        event: None,
        source: None,
        resource: resource.map(str::to_owned),
        caller_account: None,
        limit,
    };
    let alice = format!("arn:aws:iam::{A1}:user/alice");
    for (q, want) in [
        (query(3, None), rows.iter().collect::<Vec<_>>()),
        // SHARED is the first resource of some of these records, the
        // second of others: found through the summaries alike.
        (
            query(2, Some(SHARED)),
            rows.iter()
                .filter(|r| r.resources.iter().any(|x| x == SHARED))
                .collect(),
        ),
        (
            AuditQuery {
                principal: Some(alice.clone()),
                ..query(2, None)
            },
            rows.iter()
                .filter(|r| r.principal_arn.as_deref() == Some(alice.as_str()))
                .collect(),
        ),
        (
            AuditQuery {
                event: Some("CreateUser".into()),
                ..query(1000, None)
            },
            rows.iter()
                .filter(|r| r.event_name == "CreateUser")
                .collect(),
        ),
    ] {
        assert!(!want.is_empty(), "{q:?} finds nothing: a vacuous check");
        let mut got = Vec::new();
        let mut after = None;
        let mut pages = 0;
        loop {
            let before = counter.0.load(Ordering::SeqCst);
            let page = audit.page(&q, after.as_ref()).await.unwrap();
            let calls = counter.0.load(Ordering::SeqCst) - before;
            assert!((1..=2).contains(&calls), "page {pages}: {calls} calls");
            assert!(page.items.len() <= q.limit);
            got.extend(page.items);
            pages += 1;
            match page.next {
                Some(k) => after = Some(k),
                None => break,
            }
        }
        assert_eq!(
            event_ids(&got.iter().collect::<Vec<_>>()),
            event_ids(&want),
            "{q:?}"
        );
        // Whole rows, raw record included.
        let mut got_sorted: Vec<&AuditRow> = got.iter().collect();
        got_sorted.sort_by(|a, b| b.sk.cmp(&a.sk));
        let mut want_sorted = want.clone();
        want_sorted.sort_by(|a, b| b.sk.cmp(&a.sk));
        assert_eq!(got_sorted, want_sorted, "{q:?}");
        assert!(got.iter().all(|r| !r.raw.is_empty()));
        // A walk over 61 day partitions, two per page.
        if q.resource.is_none() && q.principal.is_none() && q.event.is_none() {
            assert!(pages >= 30, "{pages} pages");
        }
    }

    // A range that ends before it starts matches nothing: an empty last
    // page, not an error.
    let empty = audit
        .page(
            &AuditQuery {
                since: now,
                until: now - chrono::Duration::days(1),
                ..query(10, None)
            },
            None,
        )
        .await
        .unwrap();
    assert!(empty.items.is_empty() && empty.next.is_none());

    let feed = FeedStore::new(ddb, &env.ctx.names);
    let q = FeedQuery {
        kind: Some("security.finding".into()),
        severity: Some(Severity::Critical),
        limit: 2,
        ..FeedQuery::default()
    };
    let mut n = 0;
    let mut after = None;
    loop {
        let before = counter.0.load(Ordering::SeqCst);
        let page = feed.page(&acme, &q, after.as_ref()).await.unwrap();
        assert!(counter.0.load(Ordering::SeqCst) - before <= 2);
        assert!(
            page.items
                .iter()
                .all(|r| r.tenant == acme && r.severity == Severity::Critical)
        );
        n += page.items.len();
        match page.next {
            Some(k) => after = Some(k),
            None => break,
        }
    }
    assert_eq!(
        n,
        rows.iter()
            .filter(|r| r.findings == ["root-activity"])
            .count()
    );
}

#[test]
fn the_openapi_document_describes_the_audit_routes() {
    let doc = serde_json::to_value(api::openapi()).unwrap();
    let paths = &doc["paths"];
    let params = |path: &str, method: &str| -> BTreeSet<String> {
        paths[path][method]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{method} {path} is documented"))
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let names = |list: &[&str]| {
        list.iter()
            .map(|s| (*s).to_owned())
            .collect::<BTreeSet<_>>()
    };
    let paging = ["limit", "cursor", "format"];
    let with_paging = |list: &[&str]| {
        let mut all = names(list);
        all.extend(names(&paging));
        all
    };
    assert_eq!(
        params("/v1/audit/aws", "get"),
        with_paging(&[
            "since",
            "until",
            "principal",
            "event",
            "source",
            "resource",
            "account",
            "caller_account"
        ])
    );
    assert_eq!(params("/v1/audit/aws/{id}", "get"), names(&["id"]));
    assert_eq!(
        params("/v1/findings", "get"),
        with_paging(&["since", "until", "severity", "rule"])
    );
    assert_eq!(params("/v1/notifications", "get"), with_paging(&["unread"]));
    assert_eq!(
        params("/v1/notifications/{id}/read", "post"),
        names(&["id"])
    );
    for schema in [
        "AuditEvent",
        "AuditRecordDetail",
        "Finding",
        "Notification",
        "Severity",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
}

/// A small deterministic generator (xorshift64*), so a failing case
/// repeats.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Issue 23's segments against the truth: records of two accounts over
/// three days, in files whose times overlap (as CloudTrail's files of
/// several regions do), some records in two files, some sharing a
/// millisecond. Every walk and search, paged with small and large
/// limits, gives each matching record exactly once, newest first, in at
/// most two DynamoDB calls a page.
#[tokio::test]
async fn pages_give_every_record_once_in_order_whatever_the_segments() {
    use kopter_store::audit::{Segment, SegmentBuilder};
    let env = TestEnv::new().await;
    let counter = CallCounter::default();
    let conf = env
        .ctx
        .aws
        .dynamodb()
        .config()
        .to_builder()
        .interceptor(counter.clone())
        .build();
    let audit = AuditStore::new(aws_sdk_dynamodb::Client::from_conf(conf), &env.ctx.names);
    let t = TenantId::new(unique("merge-")).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let start = Utc::now().trunc_subsecs(0) - chrono::Duration::days(3);
    let principals = ["alice", "bob", "carol"];
    let events = ["RunInstances", "CreateUser", "ConsoleLogin"];
    let mut rows: Vec<AuditRow> = Vec::new();
    for k in 0..400u64 {
        let account = if k % 3 == 0 { A2 } else { A1 };
        // Seconds over three days; every 10th shares the previous one's ms.
        let at = match rows.last() {
            Some(prev) if k % 10 == 0 => prev.event_time,
            _ => start + chrono::Duration::milliseconds(rng.below(3 * 86_400_000) as i64),
        };
        let (mut rec, _) = record(k as usize, at, t.as_str(), account);
        rec.event_id = format!("{k:04}-{}", rng.below(1000));
        rec.principal_arn = Some(format!(
            "arn:aws:iam::{account}:user/{}",
            principals[rng.below(3) as usize]
        ));
        rec.event_name = events[rng.below(3) as usize].into();
        rec.resources = (0..rng.below(3))
            .map(|_| format!("i-{:04}", rng.below(20)))
            .collect();
        rec.resources.sort();
        rec.resources.dedup();
        rec.raw = serde_json::json!({"eventID": rec.event_id, "n": k}).to_string();
        rows.push(AuditRow::new(
            &t,
            &AccountId::new(account).unwrap(),
            &rec,
            vec![],
            30,
        ));
    }
    // Files: each account's records in a shuffled order, cut into runs
    // of 1–40; every 7th record also goes into the next file.
    let mut files: Vec<Vec<AuditRow>> = Vec::new();
    for account in [A1, A2] {
        let mut mine: Vec<AuditRow> = rows
            .iter()
            .filter(|r| r.account.as_str() == account)
            .cloned()
            .collect();
        for i in (1..mine.len()).rev() {
            mine.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut i = 0;
        while i < mine.len() {
            let n = 1 + rng.below(40) as usize;
            let mut file: Vec<AuditRow> = mine[i..(i + n).min(mine.len())].to_vec();
            if let Some(extra) = mine.get(i + n).filter(|_| i % 7 == 0) {
                file.push(extra.clone());
            }
            files.push(file);
            i += n;
        }
    }
    let mut segments = 0;
    for file in files {
        let account = file[0].account.clone();
        let mut b = SegmentBuilder::<()>::default();
        let mut cuts = Vec::new();
        for row in file {
            cuts.extend(b.push(row, ()));
        }
        cuts.extend(b.finish());
        for cut in cuts {
            let seg =
                Segment::new(&t, &account, cut.into_iter().map(|(r, ())| r).collect()).unwrap();
            audit.put_segment(&seg).await.unwrap();
            segments += 1;
        }
    }
    assert!(segments > 40, "{segments} segments: overlapping files");

    let all = AuditQuery {
        tenant: t.clone(),
        since: start - chrono::Duration::hours(1),
        until: Utc::now(),
        principal: None,
        event: None,
        source: None,
        resource: None,
        caller_account: None,
        limit: 1000,
    };
    let alice = format!("arn:aws:iam::{A1}:user/alice");
    let queries = [
        all.clone(),
        AuditQuery {
            principal: Some(alice.clone()),
            ..all.clone()
        },
        AuditQuery {
            event: Some("CreateUser".into()),
            ..all.clone()
        },
        AuditQuery {
            resource: Some("i-0007".into()),
            ..all.clone()
        },
        AuditQuery {
            principal: Some(alice),
            event: Some("ConsoleLogin".into()),
            ..all.clone()
        },
        // A window inside the range: its edges cut segments.
        AuditQuery {
            since: start + chrono::Duration::hours(20),
            until: start + chrono::Duration::hours(50),
            ..all.clone()
        },
        AuditQuery {
            since: start + chrono::Duration::hours(20),
            until: start + chrono::Duration::hours(50),
            resource: Some("i-0003".into()),
            ..all.clone()
        },
    ];
    for q in queries {
        let mut want: Vec<&AuditRow> = rows.iter().filter(|r| q.matches(r)).collect();
        want.sort_by(|a, b| b.sk.cmp(&a.sk));
        want.dedup_by(|a, b| a.sk == b.sk);
        assert!(
            want.len() >= 3,
            "{q:?} finds {}: too few to tell",
            want.len()
        );
        for limit in [1, 3, 7, 1000] {
            let q = AuditQuery { limit, ..q.clone() };
            let mut got = Vec::new();
            let mut after = None;
            let mut pages = 0;
            loop {
                let before = counter.0.load(Ordering::SeqCst);
                let page = audit.page(&q, after.as_ref()).await.unwrap();
                let calls = counter.0.load(Ordering::SeqCst) - before;
                assert!((1..=2).contains(&calls), "page {pages}: {calls} calls");
                assert!(page.items.len() <= limit);
                got.extend(page.items);
                pages += 1;
                assert!(pages < 2000, "{q:?}: the pages do not end");
                match page.next {
                    Some(k) => after = Some(k),
                    None => break,
                }
            }
            let got_keys: Vec<&str> = got.iter().map(|r| r.sk.as_str()).collect();
            let want_keys: Vec<&str> = want.iter().map(|r| r.sk.as_str()).collect();
            assert_eq!(got_keys, want_keys, "limit {limit}, {q:?}");
            assert_eq!(got.iter().collect::<Vec<_>>(), want, "whole records");
        }
        // query() is the pages to the end.
        let got = audit.query(&q).await.unwrap();
        assert_eq!(got.len(), want.len());
    }
    // Any record by its key.
    for r in rows.iter().step_by(37) {
        assert_eq!(audit.get(&t, &r.sk).await.unwrap().as_ref(), Some(r));
    }
    let other = TenantId::new(unique("other-")).unwrap();
    assert_eq!(audit.get(&other, &rows[0].sk).await.unwrap(), None);
}

/// Rows written before segments (one item per record, reference rows for
/// further resources) are read by time walks as they are; searches find
/// them once `repack_day` rewrote them as segments, which it does once.
#[tokio::test]
async fn rows_of_before_segments_are_walked_then_repacked_for_searches() {
    let env = TestEnv::new().await;
    let ddb = env.ctx.aws.dynamodb();
    let audit = AuditStore::new(ddb.clone(), &env.ctx.names);
    let table = env.ctx.names.table(kopter_schema::Table::AuditLog);
    let t = TenantId::new(unique("before-")).unwrap();
    let now = Utc::now().trunc_subsecs(3);
    let day = now.date_naive();
    let midnight = day.and_hms_opt(0, 0, 0).unwrap().and_utc();
    let mut old = Vec::new();
    for k in 0..12usize {
        let at = midnight + (now - midnight) * k as i32 / 12;
        let account = if k % 2 == 0 { A1 } else { A2 };
        let (rec, _) = record(k, at, t.as_str(), account);
        let row = AuditRow::new(&t, &AccountId::new(account).unwrap(), &rec, vec![], 30);
        // The item as Kopter wrote it before segments: the row's fields,
        // its index keys, and a reference row per further resource.
        let mut item: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> =
            serde_dynamo::to_item(&row).unwrap();
        use aws_sdk_dynamodb::types::AttributeValue as V;
        item.insert("event_key".into(), V::S(format!("{t}#{}", row.event_name)));
        ddb.put_item()
            .table_name(&table)
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
        for n in 1..row.resources.len() {
            ddb.put_item()
                .table_name(&table)
                .item("pk", V::S(row.pk.clone()))
                .item("sk", V::S(format!("{}#r{n}", row.sk)))
                .item("ref", V::Bool(true))
                .item("resource_key", V::S(format!("{t}#{}", row.resources[n])))
                .send()
                .await
                .unwrap();
        }
        old.push(row);
    }
    old.sort_by(|a, b| b.sk.cmp(&a.sk));
    let walk = AuditQuery {
        tenant: t.clone(),
        since: midnight,
        until: now,
        principal: None,
        event: None,
        source: None,
        resource: None,
        caller_account: None,
        limit: 5,
    };
    assert_eq!(
        audit
            .query(&AuditQuery {
                limit: 100,
                ..walk.clone()
            })
            .await
            .unwrap(),
        old
    );
    let search = AuditQuery {
        resource: Some(SHARED.into()),
        limit: 100,
        ..walk.clone()
    };
    let want: Vec<AuditRow> = old
        .iter()
        .filter(|r| r.resources.iter().any(|x| x == SHARED))
        .cloned()
        .collect();
    assert!(want.len() >= 4);
    assert!(
        audit.query(&search).await.unwrap().is_empty(),
        "no summaries yet"
    );

    let done = audit.repack_day(&t, day).await.unwrap();
    let refs: usize = old
        .iter()
        .map(|r| r.resources.len().saturating_sub(1))
        .sum();
    assert_eq!(done.records, 12);
    assert_eq!(done.deleted, 12 + refs);
    // Two accounts, one hour each at most per segment.
    assert!(done.segments >= 2, "{done:?}");
    assert_eq!(audit.query(&search).await.unwrap(), want);
    assert_eq!(
        audit
            .query(&AuditQuery {
                limit: 100,
                ..walk.clone()
            })
            .await
            .unwrap(),
        old
    );
    for r in &old {
        assert_eq!(audit.get(&t, &r.sk).await.unwrap().as_ref(), Some(r));
    }
    // Nothing of before is left; a second run finds nothing to do.
    let again = audit.repack_day(&t, day).await.unwrap();
    assert_eq!(again, kopter_store::audit::Repacked::default());
}

/// A crowded hour: 40 accounts' files covering the same five minutes (an
/// organization's trail), and 40 rows of before with the same second.
/// Every page moves on and the pages give each record once, in order,
/// whatever the limit — a page that waited for all overlapping items to
/// fit in its reads would stall here for good.
#[tokio::test]
async fn crowded_hours_page_to_the_end() {
    use kopter_store::audit::Segment;
    let env = TestEnv::new().await;
    let ddb = env.ctx.aws.dynamodb();
    let audit = AuditStore::new(ddb.clone(), &env.ctx.names);
    let table = env.ctx.names.table(kopter_schema::Table::AuditLog);
    let t = TenantId::new(unique("crowd-")).unwrap();
    let ten = Utc::now().trunc_subsecs(0) - chrono::Duration::hours(2);
    let ten = ten - chrono::Duration::minutes(ten.format("%M").to_string().parse().unwrap());
    let mut all = Vec::new();
    for a in 0..40u64 {
        let account = format!("{:012}", 100_000_000_000 + a);
        let rows: Vec<AuditRow> = (0..6)
            .map(|k| {
                let at = ten + chrono::Duration::seconds((k * 53 + a as i64 * 7) % 300);
                let (mut rec, _) = record(k as usize, at, t.as_str(), &account);
                rec.event_id = format!("{a:02}-{k}");
                AuditRow::new(
                    &t,
                    &AccountId::new(account.clone()).unwrap(),
                    &rec,
                    vec![],
                    30,
                )
            })
            .collect();
        all.extend(rows.clone());
        let seg = Segment::new(&t, &AccountId::new(account).unwrap(), rows).unwrap();
        audit.put_segment(&seg).await.unwrap();
    }
    // Rows of before, all at one second of the same hour.
    let second = ten + chrono::Duration::minutes(2);
    for k in 0..40usize {
        let (mut rec, _) = record(k, second, t.as_str(), A1);
        rec.event_id = format!("old-{k:02}");
        let row = AuditRow::new(&t, &AccountId::new(A1).unwrap(), &rec, vec![], 30);
        let item: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> =
            serde_dynamo::to_item(&row).unwrap();
        ddb.put_item()
            .table_name(&table)
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
        all.push(row);
    }
    all.sort_by(|a, b| b.sk.cmp(&a.sk));
    let base = AuditQuery {
        tenant: t.clone(),
        since: ten - chrono::Duration::hours(1),
        until: Utc::now(),
        principal: None,
        event: None,
        source: None,
        resource: None,
        caller_account: None,
        limit: 1,
    };
    // Accounts 100000000000 + a; alice makes the even-numbered records.
    let alice_a1 = format!("arn:aws:iam::{:012}:user/alice", 100_000_000_003u64);
    for q in [
        base.clone(),
        AuditQuery {
            event: Some("RunInstances".into()),
            ..base.clone()
        },
        AuditQuery {
            principal: Some(alice_a1),
            ..base.clone()
        },
    ] {
        // Searches read summaries: rows of before have none (until
        // `repack_day`); walks list them.
        let search = !q.tokens().is_empty();
        let want: Vec<&str> = all
            .iter()
            .filter(|r| q.matches(r) && !(search && r.event_id.starts_with("old-")))
            .map(|r| r.sk.as_str())
            .collect();
        assert!(want.len() >= 3, "{q:?}: {}", want.len());
        for limit in [1, 7, 1000] {
            let q = AuditQuery { limit, ..q.clone() };
            let mut got = Vec::new();
            let mut after = None;
            let mut pages = 0;
            loop {
                let page = audit.page(&q, after.as_ref()).await.unwrap();
                pages += 1;
                assert!(pages <= want.len() + 10, "{q:?}: the pages do not end");
                if page.next.is_some() {
                    assert_ne!(page.next, after, "a page that does not move on");
                }
                got.extend(page.items.into_iter().map(|r| r.sk));
                match page.next {
                    Some(k) => after = Some(k),
                    None => break,
                }
            }
            assert_eq!(got, want, "limit {limit}, {q:?}");
        }
        assert_eq!(
            audit
                .query(&AuditQuery {
                    limit: 10_000,
                    ..q.clone()
                })
                .await
                .unwrap()
                .len(),
            want.len()
        );
    }
}

/// One damaged segment (its records do not inflate) is left out, logged,
/// and does not stop the pages of its hour: the other segments' records
/// are listed, searched and read by key.
#[tokio::test]
async fn a_damaged_segment_does_not_hide_its_hour() {
    use aws_sdk_dynamodb::types::AttributeValue as V;
    use kopter_store::audit::Segment;
    let env = TestEnv::new().await;
    let ddb = env.ctx.aws.dynamodb();
    let audit = AuditStore::new(ddb.clone(), &env.ctx.names);
    let table = env.ctx.names.table(kopter_schema::Table::AuditLog);
    let t = TenantId::new(unique("damaged-")).unwrap();
    let at = Utc::now().trunc_subsecs(3) - chrono::Duration::hours(1);
    let account = AccountId::new(A1).unwrap();
    let seg = |k: usize| {
        let (rec, _) = record(
            k,
            at + chrono::Duration::milliseconds(k as i64),
            t.as_str(),
            A1,
        );
        Segment::new(
            &t,
            &account,
            vec![AuditRow::new(&t, &account, &rec, vec![], 30)],
        )
        .unwrap()
    };
    let (good, bad) = (seg(0), seg(1));
    audit.put_segment(&good).await.unwrap();
    audit.put_segment(&bad).await.unwrap();
    ddb.update_item()
        .table_name(&table)
        .key("pk", V::S(bad.pk.clone()))
        .key("sk", V::S(bad.sk.clone()))
        .update_expression("SET z = :z")
        .expression_attribute_values(
            ":z",
            V::B(aws_smithy_types::Blob::new(b"not deflate".to_vec())),
        )
        .send()
        .await
        .unwrap();
    let q = AuditQuery {
        tenant: t.clone(),
        since: at - chrono::Duration::hours(1),
        until: Utc::now(),
        principal: None,
        event: None,
        source: None,
        resource: None,
        caller_account: None,
        limit: 10,
    };
    let unreadable = || {
        kopter_runtime::metrics::render()
            .lines()
            .find(|l| l.starts_with("kopter_audit_items_unreadable_total "))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let before = unreadable();
    let principal = good.rows[0].principal_arn.clone();
    for q in [
        q.clone(),
        AuditQuery {
            principal,
            ..q.clone()
        },
    ] {
        assert_eq!(audit.query(&q).await.unwrap(), good.rows, "{q:?}");
    }
    assert_eq!(
        audit.get(&t, &good.rows[0].sk).await.unwrap().as_ref(),
        Some(&good.rows[0])
    );
    assert_eq!(audit.get(&t, &bad.rows[0].sk).await.unwrap(), None);
    // Counted for operators: the walk and the get met it (the search for
    // the good record's principal passes its summary by).
    assert!(unreadable() >= before + 2.0, "{before} → {}", unreadable());
}
