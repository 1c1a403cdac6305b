//! The audit, findings and notification endpoints over the in-memory fake
//! (`MemoryData`, what HTTP-layer tests and the benchmark use): it pages,
//! filters, pins the window and isolates tenants like the DynamoDB
//! implementation (`audit_moto.rs` checks that one against moto).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::auth::jwks::{KeySource, RefreshPolicy};
use api::auth::{ClaimsConfig, IssuerKeys, Verifier};
use api::cursor::CursorCodec;
use api::memory::MemoryData;
use api::ratelimit::TenantLimiter;
use api::{ApiParts, ApiState};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::{DateTime, SubsecRound, Utc};
use kopter_dev_issuer::{DevIssuer, TokenRequest};
use kopter_schema::messages::Severity;
use kopter_schema::{AccountId, TenantId};
use kopter_store::audit::{AuditRecord, AuditRow};
use kopter_store::event::{AuditRef, Event};
use kopter_store::feed::FeedRow;
use serde_json::Value;
use tower::ServiceExt;

const ISS: &str = "https://issuer.test";
const AUD: &str = "kopter";

fn row(tenant: &str, k: i64, now: DateTime<Utc>) -> AuditRow {
    let at = now - chrono::Duration::hours(5 * k);
    let rec = AuditRecord {
        event_id: format!("{tenant}-{k}"),
        event_time: at,
        event_source: "iam.amazonaws.com".into(),
        event_name: if k % 2 == 0 {
            "CreateUser"
        } else {
            "DeleteUser"
        }
        .into(),
        aws_region: "us-east-1".into(),
        recipient_account: None,
        // Odd records come from another account.
        user_account: (k % 2 == 1).then(|| "222222222222".into()),
        principal_arn: Some("arn:aws:iam::111111111111:user/alice".into()),
        principal_type: Some("IAMUser".into()),
        source_ip: None,
        user_agent: None,
        read_only: Some(false),
        error_code: None,
        error_message: None,
        resources: vec![],
        raw: format!(r#"{{"eventID":"{tenant}-{k}"}}"#),
        mfa_used: None,
        console_login: None,
    };
    let t = TenantId::new(tenant).unwrap();
    AuditRow::new(
        &t,
        &AccountId::new("111111111111").unwrap(),
        &rec,
        vec![],
        30,
    )
}

fn finding(r: &AuditRow) -> FeedRow {
    FeedRow::from_event(
        &Event {
            tenant: r.tenant.clone(),
            kind: "security.finding",
            rule: "iam-user-created".into(),
            identity: format!("finding:{}", r.event_id),
            severity: Severity::Warning,
            title: "IAM user created".into(),
            text: "CreateUser".into(),
            at: r.event_time,
            account: Some(r.account.clone()),
            resource: None,
            audit: Some(AuditRef {
                pk: r.pk.clone(),
                sk: r.sk.clone(),
            }),
        },
        30,
    )
}

struct App {
    router: axum::Router,
    key: DevIssuer,
}

impl App {
    async fn call(&self, method: Method, uri: &str, tenant: &str) -> (StatusCode, Value) {
        let token = self
            .key
            .mint(&TokenRequest {
                tenant: tenant.into(),
                roles: vec![],
                ttl: Duration::from_secs(300),
                subject: "u".into(),
                issuer: ISS.into(),
                audience: AUD.into(),
                tenant_claim: "custom:tenant".into(),
                roles_claim: "cognito:groups".into(),
            })
            .unwrap();
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, v)
    }
}

fn app(now: DateTime<Utc>) -> App {
    let mut audit: Vec<AuditRow> = (0..12).map(|k| row("acme", k, now)).collect();
    audit.extend((0..3).map(|k| row("globex", k, now)));
    let feed: Vec<FeedRow> = audit.iter().map(finding).collect();
    let data = Arc::new(MemoryData {
        audit,
        feed: Mutex::new(feed),
        ..MemoryData::default()
    });
    let key = DevIssuer::generate().unwrap();
    let set = serde_json::from_value(key.jwks()).unwrap();
    let policy = RefreshPolicy {
        refresh_interval: Duration::from_secs(30),
        max_age: Duration::from_secs(3600),
    };
    let state = ApiState::new(ApiParts {
        verifier: Verifier::new(
            vec![Arc::new(IssuerKeys::new(
                ISS,
                AUD,
                0,
                KeySource::Fixed(set),
                policy,
            ))],
            ClaimsConfig {
                audience: AUD.into(),
                tenant_claim: "custom:tenant".into(),
                roles_claim: "cognito:groups".into(),
                admin_role: "admin".into(),
                leeway_secs: 0,
            },
        ),
        limiter: TenantLimiter::new(1000, 1000),
        cursors: CursorCodec::new(&[3; 32]),
        data,
        dev_issuer: None,
        max_query_bytes: 4096,
    });
    App {
        router: api::router(state, &[]),
        key,
    }
}

#[tokio::test]
async fn the_fake_pages_filters_and_isolates_like_the_store() {
    let now = Utc::now().trunc_subsecs(3);
    let a = app(now);
    // Default window (24 h): records 0..=4, 5 h apart; pages of 2.
    let mut ids = Vec::new();
    let mut uri = "/v1/audit/aws?limit=2".to_owned();
    loop {
        let (s, v) = a.call(Method::GET, &uri, "acme").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        ids.extend(
            v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["event_id"].as_str().unwrap().to_owned()),
        );
        match v["next_cursor"].as_str() {
            Some(c) => uri = format!("/v1/audit/aws?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(ids, (0..5).map(|k| format!("acme-{k}")).collect::<Vec<_>>());

    let (_, v) = a
        .call(Method::GET, "/v1/audit/aws?event=DeleteUser", "acme")
        .await;
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{v}");
    let record = items[0]["record"].as_str().unwrap().to_owned();
    let (s, v) = a.call(Method::GET, &record, "acme").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["raw"]["eventID"], "acme-1");
    assert_eq!(
        a.call(Method::GET, &record, "globex").await.0,
        StatusCode::NOT_FOUND
    );

    // The caller's account is shown and filters.
    let (s, v) = a
        .call(
            Method::GET,
            "/v1/audit/aws?caller_account=222222222222",
            "acme",
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let callers: Vec<_> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["event_id"].as_str().unwrap(),
                i["caller_account"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        callers,
        [
            ("acme-1", Some("222222222222")),
            ("acme-3", Some("222222222222"))
        ]
    );
    let (s, v) = a
        .call(Method::GET, "/v1/audit/aws?caller_account=12", "acme")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    let (_, v) = a.call(Method::GET, "/v1/findings?limit=100", "acme").await;
    let findings = v["items"].as_array().unwrap();
    assert_eq!(findings.len(), 12);
    assert_eq!(findings[1]["record"].as_str(), Some(record.as_str()));

    let id = findings[0]["id"].as_str().unwrap();
    let read = format!("/v1/notifications/{id}/read");
    assert_eq!(
        a.call(Method::POST, &read, "globex").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        a.call(Method::POST, &read, "acme").await.0,
        StatusCode::NO_CONTENT
    );
    let (_, v) = a
        .call(
            Method::GET,
            "/v1/notifications?unread=true&limit=100",
            "acme",
        )
        .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 11);
    let (_, v) = a
        .call(Method::GET, "/v1/notifications?limit=100", "globex")
        .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 3);
}
