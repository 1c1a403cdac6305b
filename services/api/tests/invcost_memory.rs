//! The in-memory fake of the inventory and cost areas behind the HTTP
//! layer: it answers like the DynamoDB implementation for the benchmark
//! and HTTP-layer tests (tenant-confined, paged, unpriced never 0).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use api::auth::jwks::{KeySource, RefreshPolicy};
use api::auth::{ClaimsConfig, IssuerKeys, Verifier};
use api::cursor::CursorCodec;
use api::memory::MemoryData;
use api::ratelimit::TenantLimiter;
use api::{ApiParts, ApiState};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::{DateTime, DurationRound, Utc};
use kopter_dev_issuer::{DevIssuer, TokenRequest};
use kopter_schema::{AccountId, TenantId, items::keys};
use kopter_store::graph::{ResourceHourRow, RollupRow, hour_key, resource_hour_pk};
use kopter_store::inventory::{InstanceFields, InventoryRow, Resource, inventory_sk};
use serde_json::Value;
use tower::ServiceExt;

const ISS: &str = "https://issuer.test";

fn row(tenant: &TenantId, account: &AccountId, id: &str) -> InventoryRow {
    let t: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let resource = Resource::Instance(InstanceFields {
        state: "running".into(),
        instance_type: "m5.large".into(),
        usage_operation: String::new(),
        platform_details: String::new(),
        tenancy: "default".into(),
        lifecycle: "on-demand".into(),
        availability_zone: String::new(),
        launch_time: None,
        state_transition_reason: String::new(),
        tags: BTreeMap::from([("Name".to_owned(), id.to_owned())]),
        volume_ids: vec![],
        zone: Default::default(),
        host_id: String::new(),
        capacity_reservation_id: String::new(),
    });
    InventoryRow {
        pk: keys::tenant_account(tenant, account),
        sk: inventory_sk("eu-west-1", resource.kind(), id),
        tenant: tenant.clone(),
        account: account.clone(),
        region: "eu-west-1".into(),
        resource_id: id.into(),
        gone: false,
        first_seen: t,
        last_seen: t,
        last_change_at: None,
        version: 1,
        unpublished: vec![],
        resource,
    }
}

fn cost(
    tenant: &TenantId,
    account: &AccountId,
    id: &str,
    hour: DateTime<Utc>,
    usd: Option<f64>,
) -> ResourceHourRow {
    ResourceHourRow {
        pk: resource_hour_pk(tenant, account, hour),
        sk: format!("instance#{id}"),
        tenant: tenant.clone(),
        account: account.clone(),
        region: "eu-west-1".into(),
        resource_id: id.into(),
        kind: "instance".into(),
        hour: hour_key(hour),
        usage: 1.0,
        unit: "Hrs".into(),
        cost_usd: usd,
        reserved_usd: None,
        price_missing: usd.is_none().then(|| "no price".to_owned()),
        price_missing_part: None,
        family: "m5".into(),
        detail: "m5.large".into(),
        lifecycle: "on-demand".into(),
        tags: BTreeMap::new(),
        note: None,
        expires_at: 0,
    }
}

fn rollup(
    tenant: &TenantId,
    account: &AccountId,
    hour: DateTime<Utc>,
    usd: f64,
    missing: u64,
) -> RollupRow {
    let hk = hour_key(hour);
    RollupRow {
        pk: format!("{tenant}#hour#account"),
        sk: format!("{hk}#{account}#{account}"),
        tenant: tenant.clone(),
        account: account.clone(),
        dimension: "account".into(),
        period: hk,
        group: account.to_string(),
        cost_usd: usd,
        reserved_usd: usd,
        price_missing: missing,
        price_partial: 0,
        resources: 2,
        expires_at: 0,
    }
}

#[tokio::test]
async fn the_memory_fake_serves_inventory_cost_and_budgets_per_tenant() {
    let acme = TenantId::new("acme").unwrap();
    let globex = TenantId::new("globex").unwrap();
    let a = AccountId::new("111111111111").unwrap();
    let g = AccountId::new("222222222222").unwrap();
    let last_hour = Utc::now()
        .duration_trunc(chrono::Duration::hours(1))
        .unwrap()
        - chrono::Duration::hours(1);
    let mut data = MemoryData::with_prices(vec![]);
    data.inventory.rows = vec![
        row(&acme, &a, "i-1"),
        row(&acme, &a, "i-2"),
        row(&globex, &g, "i-9"),
    ];
    data.cost.resource_hours = vec![
        cost(&acme, &a, "i-1", last_hour, Some(0.5)),
        cost(&acme, &a, "i-2", last_hour, None),
        cost(&globex, &g, "i-9", last_hour, Some(9.0)),
    ];
    data.cost.rollups = vec![
        rollup(&acme, &a, last_hour, 0.5, 1),
        rollup(&globex, &g, last_hour, 9.0, 0),
    ];
    let data = Arc::new(data);
    let key = DevIssuer::generate().unwrap();
    let issuer = Arc::new(IssuerKeys::new(
        ISS,
        "kopter",
        0,
        KeySource::Fixed(serde_json::from_value(key.jwks()).unwrap()),
        RefreshPolicy {
            refresh_interval: Duration::from_secs(30),
            max_age: Duration::from_secs(3600),
        },
    ));
    let router = api::router(
        ApiState::new(ApiParts {
            verifier: Verifier::new(
                vec![issuer],
                ClaimsConfig {
                    audience: "kopter".into(),
                    tenant_claim: "custom:tenant".into(),
                    roles_claim: "cognito:groups".into(),
                    admin_role: "admin".into(),
                    leeway_secs: 0,
                },
            ),
            limiter: TenantLimiter::new(1000, 1000),
            cursors: CursorCodec::new(&[5; 32]),
            data: data.clone(),
            dev_issuer: None,
            max_query_bytes: 4096,
        }),
        &[],
    );
    let token = |t: &str, roles: Vec<String>| {
        key.mint(&TokenRequest {
            tenant: t.into(),
            roles,
            ttl: Duration::from_secs(300),
            subject: "u".into(),
            issuer: ISS.into(),
            audience: "kopter".into(),
            tenant_claim: "custom:tenant".into(),
            roles_claim: "cognito:groups".into(),
        })
        .unwrap()
    };
    let call = |method: Method, uri: String, tok: String, body: Option<&'static str>| {
        let router = router.clone();
        async move {
            let mut req = Request::builder()
                .method(method)
                .uri(uri)
                .header(header::AUTHORIZATION, format!("Bearer {tok}"));
            if body.is_some() {
                req = req.header(header::CONTENT_TYPE, "application/json");
            }
            let r = router
                .oneshot(req.body(body.map_or_else(Body::empty, Body::from)).unwrap())
                .await
                .unwrap();
            let s = r.status();
            let b = axum::body::to_bytes(r.into_body(), usize::MAX)
                .await
                .unwrap();
            (
                s,
                serde_json::from_slice::<Value>(&b).unwrap_or(Value::Null),
            )
        }
    };
    let viewer = token("acme", vec![]);
    let (s, v) = call(
        Method::GET,
        "/v1/inventory?limit=1".into(),
        viewer.clone(),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["items"][0]["resource_id"], "i-1");
    assert_eq!(v["items"][0]["last_hour_cost_usd"], 0.5);
    let c = v["next_cursor"].as_str().unwrap().to_owned();
    let (_, v) = call(
        Method::GET,
        format!("/v1/inventory?limit=1&cursor={c}"),
        viewer.clone(),
        None,
    )
    .await;
    assert_eq!(v["items"][0]["resource_id"], "i-2");
    assert!(v["items"][0]["last_hour_cost_usd"].is_null());
    assert_eq!(v["items"][0]["last_hour_cost_missing"], "no price");
    assert!(v["next_cursor"].is_null());
    let (s, _) = call(
        Method::GET,
        "/v1/resources/i-9".into(),
        viewer.clone(),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let from = api::data::inventory::rfc3339(last_hour);
    let to = api::data::inventory::rfc3339(last_hour + chrono::Duration::hours(1));
    let (s, v) = call(
        Method::GET,
        format!("/v1/cost?from={from}&to={to}&granularity=hour"),
        viewer.clone(),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    assert_eq!(v["items"][0]["cost_usd"], 0.5);
    assert_eq!(v["items"][0]["price_missing"], 1);
    let (s, v) = call(
        Method::GET,
        format!("/v1/resources/i-2/cost?from={from}&to={to}"),
        viewer.clone(),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["items"][0]["cost_usd"].is_null());
    let (s, _) = call(
        Method::PUT,
        "/v1/budgets".into(),
        token("acme", vec!["admin".into()]),
        Some(r#"{"monthly_usd": 100}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (_, v) = call(Method::GET, "/v1/budgets".into(), viewer, None).await;
    assert_eq!(v["thresholds"], serde_json::json!([50, 80, 100]));
    let (s, _) = call(
        Method::GET,
        "/v1/budgets".into(),
        token("globex", vec![]),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(data.calls.lock().unwrap().contains(&globex));
}
