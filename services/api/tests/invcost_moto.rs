//! `/v1/inventory`, `/v1/resources/{id}[/history|/cost]`, `/v1/cost` and
//! `/v1/budgets` in-process over `DynamoData` against moto, with two
//! tenants whose rows are written through kopter-store's own stores (the
//! describer's `InventoryStore::apply`, the aggregator's
//! `GraphStore::replace_hour`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use api::auth::jwks::{KeySource, RefreshPolicy};
use api::auth::{ClaimsConfig, IssuerKeys, Verifier};
use api::cursor::CursorCodec;
use api::dynamo::DynamoData;
use api::ratelimit::TenantLimiter;
use api::tenant_db::TenantDb;
use api::{ApiParts, ApiState};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::{DateTime, DurationRound, Utc};
use kopter_dev_issuer::{DevIssuer, TokenRequest};
use kopter_runtime::accounts::Onboarding;
use kopter_schema::{AccountId, TenantId, items::keys};
use kopter_store::graph::{CostLine, GraphStore, expiry};
use kopter_store::inventory::{
    Change, EventRow, InstanceFields, InventoryRow, InventoryStore, Resource, SnapshotFields,
    VolumeFields, Write, inventory_sk,
};
use kopter_tests::{TestEnv, random_account, unique};
use serde_json::{Value, json};
use tower::ServiceExt;

const ISS: &str = "https://issuer.test";
const AUD: &str = "kopter";

struct World {
    router: axum::Router,
    key: DevIssuer,
    acme: TenantId,
    globex: TenantId,
    /// acme's two accounts, in id order.
    a1: AccountId,
    a2: AccountId,
    g1: AccountId,
    last_hour: DateTime<Utc>,
    ddb: aws_sdk_dynamodb::Client,
    names: kopter_schema::Names,
    data: Arc<DynamoData>,
}

fn hour(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(chrono::Duration::hours(1)).unwrap()
}

fn instance(state: &str, itype: &str, tags: &[(&str, &str)]) -> Resource {
    Resource::Instance(InstanceFields {
        state: state.into(),
        instance_type: itype.into(),
        usage_operation: "RunInstances".into(),
        platform_details: "Linux/UNIX".into(),
        tenancy: "default".into(),
        lifecycle: "on-demand".into(),
        availability_zone: String::new(),
        launch_time: None,
        state_transition_reason: String::new(),
        tags: tags
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        volume_ids: vec![],
        zone: Default::default(),
        host_id: String::new(),
        capacity_reservation_id: String::new(),
    })
}

fn volume(tags: &[(&str, &str)]) -> Resource {
    Resource::Volume(VolumeFields {
        state: "in-use".into(),
        volume_type: "gp3".into(),
        size_gib: 100,
        iops: None,
        throughput: None,
        attached_instance: None,
        availability_zone: String::new(),
        create_time: None,
        tags: tags
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        zone: Default::default(),
    })
}

fn snapshot() -> Resource {
    Resource::Snapshot(SnapshotFields {
        state: "completed".into(),
        volume_size_gib: 100,
        start_time: "2026-01-01T00:00:00Z".parse().unwrap(),
        volume_id: "vol-1".into(),
        tags: BTreeMap::new(),
    })
}

/// Writes a resource as the describer does: its inventory row and its
/// history rows (`changes`: when and what, oldest first; the state of the
/// last is the row's).
async fn put_resource(
    store: &InventoryStore,
    tenant: &TenantId,
    account: &AccountId,
    region: &str,
    id: &str,
    changes: Vec<(DateTime<Utc>, Change, Resource)>,
) {
    let (last_at, _, last) = changes.last().cloned().unwrap();
    let events: Vec<EventRow> = changes
        .iter()
        .map(|(at, change, r)| {
            EventRow::new(tenant, account, region, id, *change, *at, *at, r.clone())
        })
        .collect();
    let row = InventoryRow {
        pk: keys::tenant_account(tenant, account),
        sk: inventory_sk(region, last.kind(), id),
        tenant: tenant.clone(),
        account: account.clone(),
        region: region.into(),
        resource_id: id.into(),
        gone: false,
        first_seen: changes[0].0,
        last_seen: last_at,
        last_change_at: Some(last_at),
        version: 1,
        unpublished: vec![],
        resource: last,
    };
    store
        .apply(
            &Write::Put {
                row: Box::new(row.clone()),
                expected_version: None,
                events,
            },
            last_at,
            &row.pk,
        )
        .await
        .unwrap();
}

/// What vol-a1data's rows say is unpriced (its storage is priced).
const PARTIAL: &str = "gp3 throughput above 125 MiB/s: no price in eu-west-1";
/// i-a2db's note in the newest hour.
const NOTE: &str = "in capacity reservation cr-0123456789abcdef0: billed at the on-demand rate";

fn line(
    id: &str,
    kind: &'static str,
    region: &str,
    hour: DateTime<Utc>,
    cost: Option<f64>,
    family: &str,
    team: Option<&str>,
) -> CostLine {
    let mut tags = BTreeMap::new();
    if let Some(t) = team {
        tags.insert("team".to_owned(), t.to_owned());
    }
    CostLine {
        resource_id: id.into(),
        kind,
        region: region.into(),
        hour,
        usage: 1.0,
        unit: if kind == "instance" {
            "Hrs"
        } else {
            "GB-Hours"
        },
        cost_usd: cost,
        reserved_usd: cost.map(|c| c * 0.6),
        missing: cost
            .is_none()
            .then(|| "no on-demand price for x9.huge".to_owned()),
        missing_part: None,
        family: family.into(),
        detail: "m5.large".into(),
        lifecycle: if kind == "instance" { "on-demand" } else { "" }.into(),
        tags: Arc::new(tags),
        note: None,
    }
}

async fn world() -> World {
    let env = TestEnv::new().await;
    let acme = TenantId::new(unique("acme-")).unwrap();
    let globex = TenantId::new(unique("globex-")).unwrap();
    env.create_tenants(&[acme.as_str(), globex.as_str()]).await;
    let mut acme_accounts = [random_account(), random_account()];
    acme_accounts.sort();
    let a1 = AccountId::new(acme_accounts[0].clone()).unwrap();
    let a2 = AccountId::new(acme_accounts[1].clone()).unwrap();
    let g1 = AccountId::new(random_account()).unwrap();
    for (t, a) in [(&acme, &a1), (&acme, &a2), (&globex, &g1)] {
        env.ctx
            .accounts
            .onboard(
                Onboarding::parse(
                    t.as_str(),
                    a.as_str(),
                    &format!("arn:aws:iam::{a}:role/KopterAccess"),
                    &[],
                )
                .unwrap(),
                None,
            )
            .await
            .unwrap();
    }
    let ddb = env.ctx.aws.dynamodb();
    let inv = InventoryStore::new(ddb.clone(), &env.ctx.names);
    let t0: DateTime<Utc> = "2026-01-01T10:00:00Z".parse().unwrap();
    let t1: DateTime<Utc> = "2026-01-02T10:00:00Z".parse().unwrap();
    let web = [("Name", "web-1"), ("team", "web")];
    // acme, account 1: two instances and a volume and a snapshot in
    // eu-west-1, an instance in us-east-1 (stopped after a launch).
    put_resource(
        &inv,
        &acme,
        &a1,
        "eu-west-1",
        "i-a1web",
        vec![(t0, Change::Launched, instance("running", "m5.large", &web))],
    )
    .await;
    put_resource(
        &inv,
        &acme,
        &a1,
        "eu-west-1",
        "i-a1odd",
        vec![(
            t0,
            Change::Launched,
            instance("running", "x9.huge", &[("Name", "odd")]),
        )],
    )
    .await;
    put_resource(
        &inv,
        &acme,
        &a1,
        "eu-west-1",
        "vol-a1data",
        vec![(
            t0,
            Change::Created,
            volume(&[("Name", "data"), ("team", "db")]),
        )],
    )
    .await;
    put_resource(
        &inv,
        &acme,
        &a1,
        "eu-west-1",
        "snap-a1",
        vec![(t0, Change::Created, snapshot())],
    )
    .await;
    put_resource(
        &inv,
        &acme,
        &a1,
        "us-east-1",
        "i-a1batch",
        vec![
            (
                t0,
                Change::Launched,
                instance("running", "c5.large", &[("Name", "batch")]),
            ),
            (
                t1,
                Change::StateChanged,
                instance("stopped", "c5.large", &[("Name", "batch")]),
            ),
        ],
    )
    .await;
    // acme, account 2: two instances in eu-west-1.
    put_resource(
        &inv,
        &acme,
        &a2,
        "eu-west-1",
        "i-a2web",
        vec![(t0, Change::Launched, instance("running", "m5.large", &web))],
    )
    .await;
    put_resource(
        &inv,
        &acme,
        &a2,
        "eu-west-1",
        "i-a2db",
        vec![(
            t0,
            Change::Launched,
            instance("running", "r5.large", &[("Name", "db")]),
        )],
    )
    .await;
    // globex: one instance.
    put_resource(
        &inv,
        &globex,
        &g1,
        "eu-west-1",
        "i-g1web",
        vec![(t0, Change::Launched, instance("running", "m5.large", &web))],
    )
    .await;

    // Cost of the last three complete hours, as the aggregator writes it.
    let graph = GraphStore::new(ddb, &env.ctx.names);
    let last_hour = hour(Utc::now()) - chrono::Duration::hours(1);
    let tags = vec!["team".to_owned()];
    for back in 0..3 {
        let h = last_hour - chrono::Duration::hours(back);
        let a1_lines = vec![
            line(
                "i-a1web",
                "instance",
                "eu-west-1",
                h,
                Some(0.1),
                "m5",
                Some("web"),
            ),
            line("i-a1odd", "instance", "eu-west-1", h, None, "x9", None),
            line(
                "vol-a1data",
                "volume",
                "eu-west-1",
                h,
                Some(0.01),
                "ebs-gp3",
                Some("db"),
            ),
            line(
                "i-a1batch",
                "instance",
                "us-east-1",
                h,
                Some(0.085),
                "c5",
                None,
            ),
        ];
        let a2_lines = vec![
            line(
                "i-a2web",
                "instance",
                "eu-west-1",
                h,
                Some(0.2),
                "m5",
                Some("web"),
            ),
            line("i-a2db", "instance", "eu-west-1", h, Some(0.3), "r5", None),
        ];
        let g1_lines = vec![line(
            "i-g1web",
            "instance",
            "eu-west-1",
            h,
            Some(5.0),
            "m5",
            Some("web"),
        )];
        // vol-a1data is billed for its storage only (a component without a
        // price: roll-ups count it in `price_partial`); i-a2db runs in a
        // capacity reservation in the newest hour only, so its cost rows
        // mix a note and none.
        let mut a1_lines = a1_lines;
        let mut a2_lines = a2_lines;
        for l in a1_lines
            .iter_mut()
            .filter(|l| &*l.resource_id == "vol-a1data")
        {
            l.missing_part = Some(PARTIAL.to_owned());
        }
        if back == 0 {
            for l in a2_lines.iter_mut().filter(|l| &*l.resource_id == "i-a2db") {
                l.note = Some(NOTE.into());
            }
        }
        for (t, a, lines) in [
            (&acme, &a1, a1_lines),
            (&acme, &a2, a2_lines),
            (&globex, &g1, g1_lines),
        ] {
            graph
                .replace_hour(t, a, h, &lines, &tags, expiry(h, 30))
                .await
                .unwrap();
        }
    }

    // Waste findings through the store's reconciliation: acme has two
    // open (one in each account) and one resolved; globex one open.
    let waste = kopter_store::waste::WasteStore::new(env.ctx.aws.dynamodb(), &env.ctx.names);
    let finding = |a: &AccountId, id: &str, monthly: f64| kopter_store::waste::Finding {
        account: a.clone(),
        region: "us-east-1".into(),
        resource_id: id.into(),
        kind: kopter_store::inventory::ResourceKind::Volume,
        rule: kopter_store::waste::Rule::UnattachedVolume,
        since: t0,
        accrued_usd: 3.25,
        unpriced_hours: 0,
        unpriced_reason: None,
        accrued_through: None,
        accrual_digest: None,
        monthly_usd: Some(monthly),
        action: "Delete it".into(),
        detail: "100 GiB gp3".into(),
    };
    let present: std::collections::HashSet<String> = ["vol-w1", "vol-w2", "vol-w3", "vol-g"]
        .map(String::from)
        .into();
    for (i, (t, a, found)) in [
        (
            &acme,
            &a1,
            vec![finding(&a1, "vol-w1", 8.0), finding(&a1, "vol-w3", 1.0)],
        ),
        (&acme, &a2, vec![finding(&a2, "vol-w2", 9.5)]),
        (&globex, &g1, vec![finding(&g1, "vol-g", 4.0)]),
    ]
    .into_iter()
    .enumerate()
    {
        waste.reconcile(t, a, t1, &found, &present).await.unwrap();
        if i == 0 {
            // vol-w3's condition ends an hour later.
            waste
                .reconcile(t, a, t1 + chrono::Duration::hours(1), &found[..1], &present)
                .await
                .unwrap();
        }
    }

    let key = DevIssuer::generate().unwrap();
    let set = serde_json::from_value(key.jwks()).unwrap();
    let issuer = Arc::new(IssuerKeys::new(
        ISS,
        AUD,
        0,
        KeySource::Fixed(set),
        RefreshPolicy {
            refresh_interval: Duration::from_secs(30),
            max_age: Duration::from_secs(3600),
        },
    ));
    let db = TenantDb::new(env.ctx.aws.clone(), env.ctx.credentials.clone(), None, 16);
    let data = Arc::new(DynamoData::new(db, env.ctx.names.clone()));
    let (ddb, names) = (env.ctx.aws.dynamodb(), env.ctx.names.clone());
    let state = ApiState::new(ApiParts {
        verifier: Verifier::new(
            vec![issuer],
            ClaimsConfig {
                audience: AUD.into(),
                tenant_claim: "custom:tenant".into(),
                roles_claim: "cognito:groups".into(),
                admin_role: "admin".into(),
                leeway_secs: 0,
            },
        ),
        limiter: TenantLimiter::new(10_000, 10_000),
        cursors: CursorCodec::new(&[3; 32]),
        data: data.clone(),
        dev_issuer: None,
        max_query_bytes: 4096,
    });
    World {
        router: api::router(state, &[]),
        key,
        acme,
        globex,
        a1,
        a2,
        g1,
        last_hour,
        ddb,
        names,
        data,
    }
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl World {
    fn token(&self, tenant: &TenantId, admin: bool) -> String {
        self.key
            .mint(&TokenRequest {
                tenant: tenant.to_string(),
                roles: if admin { vec!["admin".into()] } else { vec![] },
                ttl: Duration::from_secs(600),
                subject: "user-1".into(),
                issuer: ISS.into(),
                audience: AUD.into(),
                tenant_claim: "custom:tenant".into(),
                roles_claim: "cognito:groups".into(),
            })
            .unwrap()
    }

    async fn call(&self, method: Method, uri: &str, token: &str, body: Option<&str>) -> Resp {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let resp = self
            .router
            .clone()
            .oneshot(
                req.body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, uri: &str, tenant: &TenantId) -> Resp {
        self.call(Method::GET, uri, &self.token(tenant, false), None)
            .await
    }

    /// Every JSON page of `uri` (which has a `?`) through `next_cursor`;
    /// returns the items and the number of pages.
    async fn pages(&self, uri: &str, tenant: &TenantId) -> (Vec<Value>, usize) {
        let mut items = Vec::new();
        let mut next = uri.to_owned();
        let mut pages = 0;
        loop {
            let r = self.get(&next, tenant).await;
            assert_eq!(r.status, StatusCode::OK, "{next}: {}", r.text());
            let v = r.json();
            items.extend(v["items"].as_array().unwrap().iter().cloned());
            pages += 1;
            assert!(pages < 200, "{uri}: no end of pages");
            match v["next_cursor"].as_str() {
                Some(c) => next = format!("{uri}&cursor={c}"),
                None => return (items, pages),
            }
        }
    }

    /// The CSV and NDJSON exports of `uri` equal `json_items`.
    async fn exports_match(&self, uri: &str, tenant: &TenantId, json_items: &[Value]) {
        let r = self.get(&format!("{uri}&format=ndjson"), tenant).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.headers[header::CONTENT_TYPE], "application/x-ndjson");
        let nd: Vec<Value> = r
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(nd, json_items, "{uri}: NDJSON");
        let r = self.get(&format!("{uri}&format=csv"), tenant).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let mut reader = csv::Reader::from_reader(r.body.as_slice());
        let headers = reader.headers().unwrap().clone();
        let rows: Vec<csv::StringRecord> = reader.records().map(|x| x.unwrap()).collect();
        assert_eq!(rows.len(), json_items.len(), "{uri}: CSV rows");
        for (row, item) in rows.iter().zip(json_items) {
            for (name, cell) in headers.iter().zip(row.iter()) {
                let want = match &item[name] {
                    Value::Null => String::new(),
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                // Numbers may print differently; compare them as numbers.
                match (cell.parse::<f64>(), want.parse::<f64>()) {
                    (Ok(a), Ok(b)) => {
                        assert!((a - b).abs() < 1e-9, "{uri}: {name} {cell} vs {want}")
                    }
                    _ => assert_eq!(cell, want, "{uri}: column {name}"),
                }
            }
        }
    }

    fn problem(&self, r: &Resp, status: StatusCode) -> Value {
        assert_eq!(r.status, status, "{}", r.text());
        assert_eq!(r.headers[header::CONTENT_TYPE], "application/problem+json");
        r.json()
    }
}

fn ids(items: &[Value], field: &str) -> BTreeSet<String> {
    items
        .iter()
        .map(|i| i[field].as_str().unwrap().to_owned())
        .collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn inventory_pages_filters_exports_and_isolation() {
    let w = world().await;
    // Every page of the tenant-wide list, three at a time, across accounts.
    let (items, pages) = w.pages("/v1/inventory?limit=3", &w.acme).await;
    assert_eq!(
        ids(&items, "resource_id"),
        set(&[
            "i-a1web",
            "i-a1odd",
            "vol-a1data",
            "snap-a1",
            "i-a1batch",
            "i-a2web",
            "i-a2db"
        ])
    );
    assert_eq!(items.len(), 7, "no resource twice");
    assert!(pages >= 3, "{pages} pages");
    // Account 1 first, then account 2 (ids in order).
    let accounts: Vec<&str> = items
        .iter()
        .map(|i| i["account"].as_str().unwrap())
        .collect();
    assert!(accounts.windows(2).all(|p| p[0] <= p[1]), "{accounts:?}");
    let by_id = |id: &str| {
        items
            .iter()
            .find(|i| i["resource_id"] == id)
            .unwrap()
            .clone()
    };
    let web = by_id("i-a1web");
    assert_eq!(web["name"], "web-1");
    assert_eq!(web["instance_type"], "m5.large");
    assert_eq!(web["last_hour_cost_usd"], 0.1);
    assert_eq!(web["last_hour"], api::data::inventory::rfc3339(w.last_hour));
    assert!(web["last_hour_cost_missing"].is_null());
    // Unpriced: null with the aggregator's reason, never 0.
    let odd = by_id("i-a1odd");
    assert!(odd["last_hour_cost_usd"].is_null());
    assert_eq!(
        odd["last_hour_cost_missing"],
        "no on-demand price for x9.huge"
    );
    // No cost row at all for the snapshot.
    let snap = by_id("snap-a1");
    assert!(snap["last_hour_cost_usd"].is_null());
    assert_eq!(
        snap["last_hour_cost_missing"],
        api::data::inventory::NO_COST_ROW
    );
    assert_eq!(by_id("vol-a1data")["volume_type"], "gp3");
    assert_eq!(by_id("i-a1batch")["state"], "stopped");

    // CSV and NDJSON equal the JSON pages.
    w.exports_match("/v1/inventory?limit=2", &w.acme, &items)
        .await;

    // Filters.
    for (query, want) in [
        (format!("account={}", w.a2), vec!["i-a2web", "i-a2db"]),
        ("region=us-east-1".to_owned(), vec!["i-a1batch"]),
        ("kind=volume".to_owned(), vec!["vol-a1data"]),
        (
            "region=eu-west-1&kind=instance".to_owned(),
            vec!["i-a1web", "i-a1odd", "i-a2web", "i-a2db"],
        ),
        ("state=stopped".to_owned(), vec!["i-a1batch"]),
        ("tag=team%3Dweb".to_owned(), vec!["i-a1web", "i-a2web"]),
        (
            "tag=team".to_owned(),
            vec!["i-a1web", "i-a2web", "vol-a1data"],
        ),
        (format!("account={}&tag=Name%3Dodd", w.a1), vec!["i-a1odd"]),
    ] {
        let (got, _) = w
            .pages(&format!("/v1/inventory?limit=2&{query}"), &w.acme)
            .await;
        assert_eq!(ids(&got, "resource_id"), set(&want), "{query}");
    }

    // The other tenant sees only its own.
    let (g, _) = w.pages("/v1/inventory?limit=5", &w.globex).await;
    assert_eq!(ids(&g, "resource_id"), set(&["i-g1web"]));
    assert_eq!(g[0]["last_hour_cost_usd"], 5.0);
    // acme's account id as a filter gives globex nothing.
    let (g, _) = w
        .pages(&format!("/v1/inventory?account={}", w.a1), &w.globex)
        .await;
    assert!(g.is_empty());

    // acme's cursor is refused for globex, and for another filter.
    let r = w.get("/v1/inventory?limit=2", &w.acme).await;
    let cursor = r.json()["next_cursor"].as_str().unwrap().to_owned();
    let p = w.problem(
        &w.get(&format!("/v1/inventory?limit=2&cursor={cursor}"), &w.globex)
            .await,
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(p["parameter"], "cursor");
    let p = w.problem(
        &w.get(
            &format!("/v1/inventory?limit=2&kind=volume&cursor={cursor}"),
            &w.acme,
        )
        .await,
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(p["parameter"], "cursor");

    // Malformed parameters.
    for (uri, param) in [
        ("/v1/inventory?limit=0", "limit"),
        ("/v1/inventory?kind=vm", "kind"),
        ("/v1/inventory?account=123", "account"),
        ("/v1/inventory?region=Mars", "region"),
        ("/v1/inventory?tag=%3Dx", "tag"),
        ("/v1/inventory?colour=red", "colour"),
    ] {
        let p = w.problem(&w.get(uri, &w.acme).await, StatusCode::BAD_REQUEST);
        assert_eq!(p["parameter"], param, "{uri}: {p}");
    }
}

#[tokio::test]
async fn a_resource_its_history_and_its_cost() {
    let w = world().await;
    let r = w.get("/v1/resources/i-a1batch", &w.acme).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(v["account"], w.a1.as_str());
    assert_eq!(v["region"], "us-east-1");
    assert_eq!(v["state"], "stopped");
    assert_eq!(v["tags"], json!({"Name": "batch"}));
    assert_eq!(v["details"]["instance_type"], "c5.large");
    // Another tenant's id, and a missing one: 404 alike.
    for (uri, tenant) in [
        ("/v1/resources/i-a1batch", &w.globex),
        ("/v1/resources/i-nothere", &w.acme),
        ("/v1/resources/i-a1batch/history", &w.globex),
        (
            "/v1/resources/i-g1web/cost?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z",
            &w.acme,
        ),
    ] {
        w.problem(&w.get(uri, tenant).await, StatusCode::NOT_FOUND);
    }
    let p = w.problem(
        &w.get("/v1/resources/not-an-id", &w.acme).await,
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(p["parameter"], "id");

    // History: both changes, one per page, oldest first.
    let (h, pages) = w
        .pages("/v1/resources/i-a1batch/history?limit=1", &w.acme)
        .await;
    assert!(pages >= 2);
    let changes: Vec<(&str, &str)> = h
        .iter()
        .map(|e| (e["change"].as_str().unwrap(), e["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        changes,
        [("launched", "running"), ("state_changed", "stopped")]
    );
    assert_eq!(h[1]["at"], "2026-01-02T10:00:00Z");
    w.exports_match("/v1/resources/i-a1batch/history?limit=1", &w.acme, &h)
        .await;
    // A history cursor does not open for another resource.
    let r = w
        .get("/v1/resources/i-a1batch/history?limit=1", &w.acme)
        .await;
    let c = r.json()["next_cursor"].as_str().unwrap().to_owned();
    let p = w.problem(
        &w.get(
            &format!("/v1/resources/i-a1web/history?limit=1&cursor={c}"),
            &w.acme,
        )
        .await,
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(p["parameter"], "cursor");

    // Cost: the three recorded hours in a window of five, two per page.
    let from = api::data::inventory::rfc3339(w.last_hour - chrono::Duration::hours(3));
    let to = api::data::inventory::rfc3339(w.last_hour + chrono::Duration::hours(2));
    for (id, want) in [("i-a1web", Some(0.1)), ("i-a1odd", None)] {
        let uri = format!("/v1/resources/{id}/cost?from={from}&to={to}&limit=2");
        let (rows, pages) = w.pages(&uri, &w.acme).await;
        assert_eq!(rows.len(), 3, "{id}: {rows:?}");
        assert_eq!(pages, 3, "five hours, two a page");
        let hours: Vec<&str> = rows.iter().map(|r| r["hour"].as_str().unwrap()).collect();
        let mut sorted = hours.clone();
        sorted.sort();
        assert_eq!(hours, sorted);
        assert_eq!(hours[2], api::data::inventory::rfc3339(w.last_hour));
        for r in &rows {
            assert_eq!(r["cost_usd"].as_f64(), want, "{id}");
            assert_eq!(r["price_missing"].is_null(), want.is_some(), "{id}: {r}");
        }
        w.exports_match(&uri, &w.acme, &rows).await;
    }
    // A partly priced volume: its known cost, the rest named, not missing.
    let uri = format!("/v1/resources/vol-a1data/cost?from={from}&to={to}");
    let (rows, _) = w.pages(&uri, &w.acme).await;
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert_eq!(r["cost_usd"].as_f64(), Some(0.01), "{r}");
        assert_eq!(r["price_missing_part"], PARTIAL, "{r}");
        assert!(r["price_missing"].is_null(), "{r}");
        assert!(r["note"].is_null(), "{r}");
    }
    w.exports_match(&uri, &w.acme, &rows).await;
    // The note on the newest hour only; every row (and CSV line) has the
    // field, null where there is no note.
    let uri = format!("/v1/resources/i-a2db/cost?from={from}&to={to}");
    let (rows, _) = w.pages(&uri, &w.acme).await;
    let notes: Vec<&Value> = rows.iter().map(|r| &r["note"]).collect();
    assert_eq!(
        notes,
        [&Value::Null, &Value::Null, &json!(NOTE)],
        "{rows:?}"
    );
    assert!(rows.iter().all(|r| r["price_missing_part"].is_null()));
    w.exports_match(&uri, &w.acme, &rows).await;

    for (uri, param) in [
        (
            "/v1/resources/i-a1web/cost?from=yesterday&to=2026-01-02T00:00:00Z",
            "from",
        ),
        (
            "/v1/resources/i-a1web/cost?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
            "to",
        ),
        (
            "/v1/resources/i-a1web/cost?from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z",
            "to",
        ),
        ("/v1/resources/i-a1web/cost?to=2026-03-01T00:00:00Z", "from"),
    ] {
        let p = w.problem(&w.get(uri, &w.acme).await, StatusCode::BAD_REQUEST);
        assert_eq!(p["parameter"], param, "{uri}: {p}");
    }
}

#[tokio::test]
async fn cost_series_by_each_dimension_pages_and_exports() {
    let w = world().await;
    let from = api::data::inventory::rfc3339(w.last_hour - chrono::Duration::hours(2));
    let to = api::data::inventory::rfc3339(w.last_hour + chrono::Duration::hours(1));
    let q = |rest: &str| format!("/v1/cost?from={from}&to={to}&{rest}");
    let close = |v: &Value, want: f64| (v.as_f64().unwrap() - want).abs() < 1e-9;

    // By account, hourly: one point per account and hour.
    let (pts, pages) = w
        .pages(&q("granularity=hour&by=account&limit=2"), &w.acme)
        .await;
    assert_eq!(pts.len(), 6, "{pts:?}");
    assert_eq!(pages, 3);
    for p in &pts {
        let (cost, missing, partial) = if p["group"] == w.a1.as_str() {
            (0.195, 1, 1)
        } else {
            (0.5, 0, 0)
        };
        assert!(close(&p["cost_usd"], cost), "{p}");
        assert_eq!(p["price_missing"], missing, "{p}");
        assert_eq!(p["price_partial"], partial, "{p}");
    }
    w.exports_match(&q("granularity=hour&by=account&limit=4"), &w.acme, &pts)
        .await;

    // By region: eu-west-1 sums both accounts (0.1 + 0.01 + 0.2 + 0.3),
    // one resource unpriced; one point per page still covers every row.
    let (pts, pages) = w
        .pages(&q("granularity=hour&by=region&limit=1"), &w.acme)
        .await;
    assert_eq!(pts.len(), 6, "{pts:?}");
    assert_eq!(pages, 6);
    for p in pts.iter().filter(|p| p["group"] == "eu-west-1") {
        assert!(close(&p["cost_usd"], 0.61), "{p}");
        assert_eq!(p["price_missing"], 1);
        assert_eq!(p["resources"], 5);
    }
    // By family: x9 has only an unpriced resource: null, never 0.
    let (pts, _) = w.pages(&q("granularity=hour&by=family"), &w.acme).await;
    let x9: Vec<&Value> = pts.iter().filter(|p| p["group"] == "x9").collect();
    assert_eq!(x9.len(), 3);
    assert!(
        x9.iter()
            .all(|p| p["cost_usd"].is_null() && p["price_missing"] == 1)
    );
    let m5: Vec<&Value> = pts.iter().filter(|p| p["group"] == "m5").collect();
    assert!(m5.iter().all(|p| close(&p["cost_usd"], 0.3)), "{m5:?}");
    // By a rolled-up tag.
    let (pts, _) = w.pages(&q("granularity=hour&by=tag:team"), &w.acme).await;
    assert_eq!(ids(&pts, "group"), set(&["web", "db", "(untagged)"]));
    // By resource (hourly), walking accounts and hours page by page.
    let (pts, _) = w
        .pages(&q("granularity=hour&by=resource&limit=2"), &w.acme)
        .await;
    assert_eq!(pts.len(), 18, "6 resources × 3 hours");
    let odd: Vec<&Value> = pts.iter().filter(|p| p["group"] == "i-a1odd").collect();
    assert!(odd.iter().all(|p| p["cost_usd"].is_null()
        && p["price_missing_reason"] == "no on-demand price for x9.huge"
        && p["price_partial"] == 0));
    let data: Vec<&Value> = pts.iter().filter(|p| p["group"] == "vol-a1data").collect();
    assert_eq!(data.len(), 3);
    assert!(
        data.iter().all(|p| close(&p["cost_usd"], 0.01)
            && p["price_missing"] == 0
            && p["price_partial"] == 1
            && p["price_missing_part"] == PARTIAL),
        "{data:?}"
    );
    let db_notes = pts
        .iter()
        .filter(|p| p["group"] == "i-a2db" && p["note"] == NOTE)
        .count();
    assert_eq!(db_notes, 1, "the newest hour's point carries the note");
    w.exports_match(&q("granularity=hour&by=resource&limit=5"), &w.acme, &pts)
        .await;
    // Daily: the days the three hours fall in, summed per account.
    let day_from = api::data::inventory::rfc3339(w.last_hour - chrono::Duration::days(2));
    let (pts, _) = w
        .pages(
            &format!("/v1/cost?from={day_from}&to={to}&granularity=day"),
            &w.acme,
        )
        .await;
    let a2_total: f64 = pts
        .iter()
        .filter(|p| p["group"] == w.a2.as_str())
        .map(|p| p["cost_usd"].as_f64().unwrap())
        .sum();
    assert!((a2_total - 1.5).abs() < 1e-9, "{pts:?}");
    // A day counts partly priced resource-hours, like unpriced ones.
    let a1_partial: u64 = pts
        .iter()
        .filter(|p| p["group"] == w.a1.as_str())
        .map(|p| p["price_partial"].as_u64().unwrap())
        .sum();
    assert_eq!(a1_partial, 3, "{pts:?}");

    // globex sees its own cost only.
    let (g, _) = w.pages(&q("granularity=hour"), &w.globex).await;
    assert_eq!(ids(&g, "group"), set(&[w.g1.as_str()]));
    assert!(g.iter().all(|p| close(&p["cost_usd"], 5.0)));
    let r = w.get(&q("granularity=hour&limit=1"), &w.acme).await;
    let c = r.json()["next_cursor"].as_str().unwrap().to_owned();
    let p = w.problem(
        &w.get(
            &format!("{}&cursor={c}", q("granularity=hour&limit=1")),
            &w.globex,
        )
        .await,
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(p["parameter"], "cursor");

    for (uri, param) in [
        (q("granularity=week"), "granularity"),
        (q("by=colour"), "by"),
        (q("by=resource&granularity=day"), "by"),
        (
            "/v1/cost?from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z&granularity=hour"
                .to_owned(),
            "to",
        ),
        (
            "/v1/cost?from=2026-01-01&to=2026-03-01T00:00:00Z".to_owned(),
            "from",
        ),
        ("/v1/cost?to=2026-03-01T00:00:00Z".to_owned(), "from"),
    ] {
        let p = w.problem(&w.get(&uri, &w.acme).await, StatusCode::BAD_REQUEST);
        assert_eq!(p["parameter"], param, "{uri}: {p}");
    }
}

#[tokio::test]
async fn budgets_read_by_viewers_written_by_admins() {
    let w = world().await;
    let viewer = w.token(&w.acme, false);
    let admin = w.token(&w.acme, true);
    w.problem(
        &w.call(Method::GET, "/v1/budgets", &viewer, None).await,
        StatusCode::NOT_FOUND,
    );
    let body = r#"{"monthly_usd": 250.5, "thresholds": [100, 50, 80, 50]}"#;
    w.problem(
        &w.call(Method::PUT, "/v1/budgets", &viewer, Some(body))
            .await,
        StatusCode::FORBIDDEN,
    );
    for _ in 0..2 {
        let r = w.call(Method::PUT, "/v1/budgets", &admin, Some(body)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["thresholds"], json!([50, 80, 100]));
    }
    let r = w.call(Method::GET, "/v1/budgets", &viewer, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(v["monthly_usd"], 250.5);
    assert_eq!(v["thresholds"], json!([50, 80, 100]));
    assert_eq!(v["month"], Utc::now().format("%Y-%m").to_string());
    // acme's cost is 0.695 USD an hour (0.1 + 0.01 + 0.085 in a1, 0.2 +
    // 0.3 in a2) over the last three complete hours: those of this month
    // count (none in the first hour of a month), and "nothing" is 0, not
    // -0 (an empty f64 sum).
    let month = Utc::now().format("%Y-%m").to_string();
    let in_month = (0..3)
        .filter(|b| {
            (w.last_hour - chrono::Duration::hours(*b))
                .format("%Y-%m")
                .to_string()
                == month
        })
        .count();
    let mtd = v["month_to_date_usd"].as_f64().unwrap();
    assert!(
        (mtd - 0.695 * in_month as f64).abs() < 1e-9 && mtd.is_sign_positive(),
        "{v}, {in_month} hours of this month"
    );
    // The other tenant has none.
    w.problem(
        &w.call(Method::GET, "/v1/budgets", &w.token(&w.globex, false), None)
            .await,
        StatusCode::NOT_FOUND,
    );
    // Bad bodies: 400 naming the field; the stored budget is unchanged.
    for (body, field) in [
        (r#"{"thresholds": [50]}"#, "monthly_usd"),
        (r#"{"monthly_usd": 0}"#, "monthly_usd"),
        (r#"{"monthly_usd": -5}"#, "monthly_usd"),
        (r#"{"monthly_usd": "ten"}"#, "monthly_usd"),
        (
            r#"{"monthly_usd": 10, "thresholds": [50, 0]}"#,
            "thresholds[1]",
        ),
        (
            r#"{"monthly_usd": 10, "thresholds": [1001]}"#,
            "thresholds[0]",
        ),
        (r#"{"monthly_usd": 10, "thresholds": []}"#, "thresholds"),
        (r#"{"monthly_usd": 10, "colour": "red"}"#, "colour"),
        ("not json", "expected"),
    ] {
        let p = w.problem(
            &w.call(Method::PUT, "/v1/budgets", &admin, Some(body)).await,
            StatusCode::BAD_REQUEST,
        );
        assert!(p["detail"].as_str().unwrap().contains(field), "{body}: {p}");
    }
    let v = w
        .call(Method::GET, "/v1/budgets", &viewer, None)
        .await
        .json();
    assert_eq!(v["monthly_usd"], 250.5);
}

/// The issue's bound of two DynamoDB calls a page: a tenant-wide
/// inventory page inside an account makes two (inventory `Query` + cost
/// `BatchGetItem`); only the first page and a page where an account's rows
/// end add the `Limit 1` query for the next account. Calls are counted on
/// the wire (a recording proxy in front of moto).
#[tokio::test]
async fn a_tenant_wide_inventory_page_costs_two_calls_three_where_an_account_ends() {
    use api::data::PageRequest;
    use api::data::inventory::{InventoryData, InventorySelection};
    use kopter_tests::faults::{FaultPlan, FaultProxy};

    let env = TestEnv::new().await;
    let acme = TenantId::new(unique("acme-")).unwrap();
    let mut accounts = [random_account(), random_account()];
    accounts.sort();
    let accounts = accounts.map(|a| AccountId::new(a).unwrap());
    for a in &accounts {
        env.ctx
            .accounts
            .onboard(
                Onboarding::parse(
                    acme.as_str(),
                    a.as_str(),
                    &format!("arn:aws:iam::{a}:role/KopterAccess"),
                    &[],
                )
                .unwrap(),
                None,
            )
            .await
            .unwrap();
    }
    let inv = InventoryStore::new(env.ctx.aws.dynamodb(), &env.ctx.names);
    let t0: DateTime<Utc> = "2026-01-01T10:00:00Z".parse().unwrap();
    let mut want = BTreeSet::new();
    for (a, n) in [(&accounts[0], 5), (&accounts[1], 3)] {
        for k in 0..n {
            let id = format!("i-{}{k}", &a.as_str()[..6]);
            put_resource(
                &inv,
                &acme,
                a,
                "eu-west-1",
                &id,
                vec![(t0, Change::Launched, instance("running", "m5.large", &[]))],
            )
            .await;
            want.insert(id);
        }
    }

    let proxy = FaultProxy::start(&kopter_tests::endpoint(), FaultPlan::none())
        .await
        .unwrap();
    let mut config = env.config.clone();
    config.aws.endpoint_url = Some(proxy.url());
    config.aws.dynamodb_endpoint_url = None;
    let aws = kopter_runtime::aws::AwsContext::load(&config).await;
    let credentials = kopter_runtime::CredentialCache::new(aws.sts(), "api", &config.credentials);
    let data = DynamoData::new(TenantDb::new(aws, credentials, None, 16), config.names());
    let dynamodb_calls = || {
        proxy
            .calls()
            .iter()
            .filter(|c| c.service == "dynamodb")
            .count()
    };

    let selection = InventorySelection {
        account: None,
        region: None,
        kind: None,
        state: None,
        tag: None,
    };
    let last_hour = hour(Utc::now());
    let (mut got, mut after, mut pages) = (BTreeSet::new(), None, Vec::new());
    loop {
        let before = dynamodb_calls();
        let page = data
            .inventory(
                &acme,
                &selection,
                last_hour,
                PageRequest {
                    after: after.clone(),
                    limit: 2,
                },
            )
            .await
            .unwrap();
        let calls = dynamodb_calls() - before;
        let account = |k: &Option<api::data::PageKey>| {
            k.as_ref()
                .map(|k| k.0["account"].as_str().unwrap().to_owned())
        };
        let (here, next) = (account(&after), account(&page.next));
        // Inside one account: the position stays in it.
        let inside = here.is_some() && here == next;
        pages.push((calls, inside));
        assert!(
            calls <= if inside { 2 } else { 3 },
            "page {}: {calls} calls",
            pages.len()
        );
        got.extend(page.items.into_iter().map(|i| i.resource_id));
        match page.next {
            Some(k) => after = Some(k),
            None => break,
        }
    }
    assert_eq!(got, want, "every resource once, across both accounts");
    assert!(
        pages.iter().filter(|(_, inside)| *inside).count() >= 2,
        "the walk has pages inside an account: {pages:?}"
    );
}

#[tokio::test]
async fn waste_findings_open_by_default_paged_exported_and_isolated() {
    let w = world().await;
    let (items, pages) = w.pages("/v1/waste?limit=1", &w.acme).await;
    // DynamoDB applies `Limit` before the status filter: the resolved
    // vol-w3 between them makes a short page, and the last page may be
    // empty (DynamoDB returns a key after a full last page; moto not).
    assert!((3..=4).contains(&pages), "{pages} pages: {items:?}");
    assert_eq!(ids(&items, "resource_id"), set(&["vol-w1", "vol-w2"]));
    let first = items.iter().find(|i| i["resource_id"] == "vol-w1").unwrap();
    assert_eq!(first["account"], w.a1.as_str());
    assert_eq!(first["rule"], "unattached-volume");
    assert_eq!(first["status"], "open");
    assert_eq!(first["monthly_usd"], 8.0);
    assert_eq!(first["accrued_usd"], 3.25);
    assert_eq!(first["since"], "2026-01-01T10:00:00Z");
    w.exports_match(
        "/v1/waste?status=open",
        &w.acme,
        &w.pages("/v1/waste?status=open", &w.acme).await.0,
    )
    .await;

    let (all, _) = w.pages("/v1/waste?status=all", &w.acme).await;
    assert_eq!(
        ids(&all, "resource_id"),
        set(&["vol-w1", "vol-w2", "vol-w3"])
    );
    let (resolved, _) = w.pages("/v1/waste?status=resolved", &w.acme).await;
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0]["resolution"], "condition ended");
    assert_eq!(resolved[0]["resolved_at"], "2026-01-02T11:00:00Z");

    // globex sees its own only.
    let (g, _) = w.pages("/v1/waste?status=all", &w.globex).await;
    assert_eq!(ids(&g, "resource_id"), set(&["vol-g"]));

    // Bad parameters name themselves.
    for (uri, name) in [
        ("/v1/waste?status=idle", "status"),
        ("/v1/waste?rule=x", "rule"),
    ] {
        let p = w.problem(&w.get(uri, &w.acme).await, StatusCode::BAD_REQUEST);
        assert!(p.to_string().contains(name), "{uri}: {p}");
    }
}

/// Roll-ups written before packing (one row per period, group and
/// account) are read beside packed items: an account's packed item of a
/// period, even an empty one, hides its rows of before there, and other
/// accounts' rows still count. Every page size gives the same points; a
/// cursor made before packing (the key of the last row sent) resumes after
/// its point, and a position before the series' start is clamped to it.
#[tokio::test]
async fn cost_series_read_rows_of_before_packing_beside_packed_items() {
    use api::data::cost::{CostData, Granularity, GroupBy, SeriesQuery};
    use kopter_schema::Table;
    use kopter_store::graph::{RollupRow, rollups};

    let w = world().await;
    let (t, a1, a2) = (&w.acme, &w.a1, &w.a2);
    let (h10, h11) = ("2026-01-10T10", "2026-01-10T11");
    let pk = format!("{t}#hour#region");
    let expires_at = 4_102_444_800;
    let row = |account: &AccountId, period: &str, region: &str, cost: f64| RollupRow {
        pk: pk.clone(),
        sk: format!("{period}#{region}#{account}"),
        tenant: t.clone(),
        account: account.clone(),
        dimension: "region".into(),
        period: period.into(),
        group: region.into(),
        cost_usd: cost,
        reserved_usd: cost,
        price_missing: 0,
        price_partial: 0,
        resources: 1,
        expires_at,
    };
    let table = w.names.table(Table::PriceGraph);
    let put = |item| {
        w.ddb
            .put_item()
            .table_name(&table)
            .set_item(Some(item))
            .send()
    };
    for r in [
        row(a1, h10, "eu-west-1", 1.0),
        row(a1, h10, "us-east-1", 2.0),
        row(a2, h10, "eu-west-1", 4.0),
        // Replaced by a1's packed item of 11:00.
        row(a1, h11, "eu-west-1", 8.0),
        // Replaced by a2's empty packed item of 11:00.
        row(a2, h11, "us-east-1", 16.0),
    ] {
        put(serde_dynamo::to_item(&r).unwrap()).await.unwrap();
    }
    let now = [
        row(a1, h11, "eu-west-1", 0.5),
        row(a1, h11, "us-east-1", 0.25),
    ];
    for (account, rows) in [(a1, &now[..]), (a2, &[])] {
        for item in rollups::packed_items(t, account, &pk, "region", h11, rows, expires_at).unwrap()
        {
            put(item).await.unwrap();
        }
    }

    let want = vec![
        (
            "2026-01-10T10:00:00Z".to_owned(),
            "eu-west-1".to_owned(),
            5.0,
        ),
        ("2026-01-10T10:00:00Z".into(), "us-east-1".into(), 2.0),
        ("2026-01-10T11:00:00Z".into(), "eu-west-1".into(), 0.5),
        ("2026-01-10T11:00:00Z".into(), "us-east-1".into(), 0.25),
    ];
    let got = |pts: &[Value]| -> Vec<(String, String, f64)> {
        pts.iter()
            .map(|p| {
                (
                    p["period"].as_str().unwrap().to_owned(),
                    p["group"].as_str().unwrap().to_owned(),
                    p["cost_usd"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    for limit in [1, 2, 3, 1000] {
        let (pts, pages) = w
            .pages(
                &format!(
                    "/v1/cost?from=2026-01-10T10:00:00Z&to=2026-01-10T12:00:00Z\
                     &granularity=hour&by=region&limit={limit}"
                ),
                t,
            )
            .await;
        assert_eq!(got(&pts), want, "limit {limit}");
        assert!(pages <= 4 / limit + 1, "limit {limit}: {pages} pages");
    }

    let query = SeriesQuery {
        granularity: Granularity::Hour,
        by: GroupBy::Dimension("region".into()),
        first: "2026-01-10T10:00:00Z".parse().unwrap(),
        last: "2026-01-10T11:00:00Z".parse().unwrap(),
    };
    let from = |after: Value| {
        let data = w.data.clone();
        let query = &query;
        async move {
            let page = data
                .cost_series(
                    t,
                    query,
                    api::data::PageRequest {
                        after: Some(api::data::PageKey(after)),
                        limit: 10,
                    },
                )
                .await
                .unwrap();
            assert!(page.next.is_none());
            page.items
                .iter()
                .map(|p| (p.period.clone(), p.group.clone(), p.cost_usd.unwrap()))
                .collect::<Vec<_>>()
        }
    };
    // A cursor of before packing: after the last row of (10:00, eu-west-1).
    let old = json!({ "pk": pk, "sk": format!("{h10}#eu-west-1#{a2}") });
    assert_eq!(from(old).await, want[1..].to_vec());
    // A position before the series (a cursor of another query's range)
    // does not reach before `from`.
    let early = json!({ "period": "2026-01-01T00", "group": "zzz" });
    assert_eq!(from(early).await, want);
    // One after the series' end is its end.
    let late = json!({ "period": "2026-02-01T00", "group": "" });
    assert_eq!(from(late).await, vec![]);
}
