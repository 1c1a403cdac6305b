//! The settings endpoints over DynamoDB (moto), two tenants, and the IAM
//! half of tenant isolation: with `api.tenant_role_arn` set, every
//! DynamoDB call of a request is signed with credentials of the caller's
//! tenant's tagged session — asserted on the wire through a recording
//! proxy in front of moto, since moto does not enforce IAM.

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
use kopter_dev_issuer::{DevIssuer, TokenRequest};
use kopter_runtime::accounts::{AccountStore, Onboarding};
use kopter_runtime::{AwsContext, CredentialCache};
use kopter_schema::{AccountId, TenantId};
use kopter_store::webhook_url::AddressPolicy;
use kopter_tests::faults::{FaultPlan, FaultProxy};
use kopter_tests::{TestEnv, random_account};
use serde_json::{Value, json};
use tower::ServiceExt;

const ISS: &str = "https://issuer.test";
const AUD: &str = "kopter";
const ROLE: &str = "arn:aws:iam::123456789012:role/kopter-tenant-access";

struct Api {
    router: axum::Router,
    key: DevIssuer,
    proxy: FaultProxy,
    /// Tenant of each minted token.
    tokens: std::sync::Mutex<BTreeMap<String, String>>,
    /// `(index of the first proxied call, tenant)` of each request.
    requests: std::sync::Mutex<Vec<(usize, String)>>,
}

impl Api {
    /// The api over `env`'s tables, its AWS calls through a recording
    /// proxy, tenants' DynamoDB calls through the tagged tenant role.
    async fn start(env: &TestEnv) -> Self {
        let proxy = FaultProxy::start(&kopter_tests::endpoint(), FaultPlan::none())
            .await
            .unwrap();
        let mut config = env.config.clone();
        config.aws.endpoint_url = Some(proxy.url());
        // DynamoDB Local, when the suite runs on it, is not behind the
        // proxy; the signing checks below need every call to go through it.
        config.aws.dynamodb_endpoint_url = None;
        let aws = AwsContext::load(&config).await;
        let credentials = CredentialCache::new(aws.sts(), "api", &config.credentials);
        let db = TenantDb::new(aws, credentials, Some(ROLE.into()), 100);
        let data = Arc::new(DynamoData::new(db, config.names()));
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
            limiter: TenantLimiter::new(1000, 1000),
            cursors: CursorCodec::new(&[7; 32]),
            data,
            dev_issuer: None,
            max_query_bytes: 4096,
        })
        .with_webhook_policy(AddressPolicy::default());
        Self {
            router: api::router(state, &[]),
            key,
            proxy,
            tokens: Default::default(),
            requests: Default::default(),
        }
    }

    fn token(&self, tenant: &str, admin: bool) -> String {
        let roles = if admin { vec!["admin".into()] } else { vec![] };
        let token = self
            .key
            .mint(&TokenRequest {
                tenant: tenant.into(),
                roles,
                ttl: Duration::from_secs(300),
                subject: format!("{tenant}-user"),
                issuer: ISS.into(),
                audience: AUD.into(),
                tenant_claim: "custom:tenant".into(),
                roles_claim: "cognito:groups".into(),
            })
            .unwrap();
        self.tokens
            .lock()
            .unwrap()
            .insert(token.clone(), tenant.to_owned());
        token
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let tenant = self.tokens.lock().unwrap()[token].clone();
        self.requests
            .lock()
            .unwrap()
            .push((self.proxy.calls().len(), tenant));
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let resp = self
            .router
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, v)
    }
}

async fn onboard(env: &TestEnv, tenant: &str, n: usize) -> Vec<String> {
    let store = AccountStore::new(env.ctx.aws.dynamodb(), &env.ctx.names);
    let mut ids = Vec::new();
    for _ in 0..n {
        let account = random_account();
        store
            .onboard(
                Onboarding {
                    tenant: TenantId::new(tenant).unwrap(),
                    account: AccountId::new(&account).unwrap(),
                    role_arn: format!("arn:aws:iam::{account}:role/KopterAccess"),
                    regions: vec!["eu-west-1".into()],
                },
                None,
            )
            .await
            .unwrap();
        ids.push(account);
    }
    ids.sort();
    ids
}

#[tokio::test]
async fn settings_are_per_tenant_and_every_dynamodb_call_is_signed_by_the_tenants_session() {
    let env = TestEnv::new().await;
    env.create_tenants(&["acme", "globex"]).await;
    let acme_accounts = onboard(&env, "acme", 5).await;
    let globex_accounts = onboard(&env, "globex", 2).await;
    let api = Api::start(&env).await;
    let (acme, acme_admin) = (api.token("acme", false), api.token("acme", true));
    let globex_admin = api.token("globex", true);

    // Accounts: every page through the cursor, only the tenant's own.
    let mut seen = Vec::new();
    let mut uri = "/v1/accounts?limit=2".to_owned();
    loop {
        let (s, page) = api.call(Method::GET, &uri, &acme, None).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        for a in page["items"].as_array().unwrap() {
            assert_eq!(a["healthy"], true);
            assert_eq!(a["health"], "unchecked", "nothing reached the role yet");
            assert_eq!(a["regions"], json!(["eu-west-1"]));
            assert!(
                a.get("external_id").is_none(),
                "the ExternalId stays inside"
            );
            seen.push(a["account_id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => uri = format!("/v1/accounts?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, acme_accounts);
    // acme's cursor is refused for globex.
    let (_, first) = api
        .call(Method::GET, "/v1/accounts?limit=2", &acme, None)
        .await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let (s, p) = api
        .call(
            Method::GET,
            &format!("/v1/accounts?limit=2&cursor={cursor}"),
            &globex_admin,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{p}");
    let (s, page) = api
        .call(Method::GET, "/v1/accounts", &globex_admin, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let globex_seen: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["account_id"].as_str().unwrap())
        .collect();
    assert_eq!(globex_seen, globex_accounts);

    // Channels: defaults, a viewer may not write, an admin may; the other
    // tenant is untouched; the webhook URL is never echoed.
    let (s, c) = api.call(Method::GET, "/v1/channels", &acme, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(c["email"], json!([]));
    assert_eq!(c["webhook_min_severity"], "info");
    let change = json!({
        "webhook_url": "https://hooks.example.com/services/T000/B000/secret-token",
        "email": ["ops@acme.example"],
        "email_min_severity": "critical",
        "digest": false
    });
    let (s, _) = api
        .call(Method::PUT, "/v1/channels", &acme, Some(change.clone()))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, c) = api
        .call(Method::PUT, "/v1/channels", &acme_admin, Some(change))
        .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["webhook_host"], "hooks.example.com");
    assert!(!c.to_string().contains("secret-token"), "{c}");
    assert_eq!(c["email"], json!(["ops@acme.example"]));
    assert_eq!(c["email_min_severity"], "critical");
    assert_eq!(c["digest"], false);
    let (_, g) = api
        .call(Method::GET, "/v1/channels", &globex_admin, None)
        .await;
    assert_eq!(g["email"], json!([]), "globex untouched: {g}");
    assert!(g.get("webhook_host").is_none(), "{g}");
    // Bad bodies are 400s naming the field; nothing changes.
    for (body, needle) in [
        (
            json!({"webhook_url": "http://169.254.169.254/latest"}),
            "webhook_url",
        ),
        (
            json!({"webhook_url": "https://10.0.0.1/hook"}),
            "webhook_url",
        ),
        (json!({"email": ["not-an-address"]}), "email[0]"),
        (json!({"email_min_severity": "loud"}), "email_min_severity"),
        (json!({"tenant": "globex"}), "unknown field `tenant`"),
    ] {
        let (s, p) = api
            .call(Method::PUT, "/v1/channels", &acme_admin, Some(body.clone()))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {p}");
        assert!(
            p["detail"].as_str().unwrap().contains(needle),
            "{body}: {p}"
        );
    }
    // `null` removes the webhook.
    let (_, c) = api
        .call(
            Method::PUT,
            "/v1/channels",
            &acme_admin,
            Some(json!({"webhook_url": null})),
        )
        .await;
    assert!(c.get("webhook_host").is_none(), "{c}");
    assert_eq!(c["email"], json!(["ops@acme.example"]), "the rest stays");

    // Backup policy: default, validated replace, per tenant.
    let (s, p) = api
        .call(Method::GET, "/v1/backup-policy", &acme, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(p["interval"], "12h");
    let policy = json!({"enabled": true, "tag_key": "backup", "tag_value": "daily",
        "interval": "1day", "keep_count": 7, "keep_for": "30days"});
    let (s, p) = api
        .call(
            Method::PUT,
            "/v1/backup-policy",
            &acme_admin,
            Some(policy.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["interval"], "1day");
    assert_eq!(p["keep_for"], "30days");
    let (_, p) = api
        .call(Method::GET, "/v1/backup-policy", &acme, None)
        .await;
    assert_eq!(
        (p["tag_key"].as_str(), p["keep_count"].as_u64()),
        (Some("backup"), Some(7))
    );
    let (_, g) = api
        .call(Method::GET, "/v1/backup-policy", &globex_admin, None)
        .await;
    assert_eq!(g["interval"], "12h", "globex keeps the default: {g}");
    for (body, needle) in [
        (
            json!({"enabled": true, "tag_key": "b", "tag_value": "x", "interval": "10m", "keep_count": 1, "keep_for": null}),
            "at least 1h",
        ),
        (
            json!({"enabled": true, "tag_key": "b", "tag_value": "x", "interval": "soon", "keep_count": 1, "keep_for": null}),
            "interval",
        ),
        (
            json!({"enabled": true, "tag_key": "", "tag_value": "x", "interval": "1h", "keep_count": 1, "keep_for": null}),
            "tag_key",
        ),
        (json!({"enabled": true}), "missing field"),
    ] {
        let (s, p) = api
            .call(
                Method::PUT,
                "/v1/backup-policy",
                &acme_admin,
                Some(body.clone()),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {p}");
        assert!(
            p["detail"].as_str().unwrap().contains(needle),
            "{body}: {p}"
        );
    }

    // The wire: which credentials signed what.
    let calls = api.proxy.calls();
    let base_key = calls
        .iter()
        .find(|c| c.service == "sts")
        .and_then(|c| c.access_key.clone())
        .expect("the api called STS with its own credentials");
    // Each AssumeRole: the tenant-access role, tagged with one tenant; the
    // key moto issued to it.
    let mut issued: BTreeMap<String, String> = BTreeMap::new();
    for c in calls.iter().filter(|c| c.operation == "AssumeRole") {
        let form: BTreeMap<String, String> =
            form_urlencoded::parse(c.form.as_ref().unwrap().as_bytes())
                .into_owned()
                .collect();
        assert_eq!(form["RoleArn"], ROLE);
        assert_eq!(form["Tags.member.1.Key"], "kopter-tenant");
        let tenant = form["Tags.member.1.Value"].clone();
        let resp = c.sts_response.as_ref().unwrap();
        let key = resp
            .split("<AccessKeyId>")
            .nth(1)
            .and_then(|r| r.split("</AccessKeyId>").next())
            .expect("AssumeRole answered with credentials")
            .to_owned();
        assert_ne!(key, base_key);
        issued.insert(key, tenant);
    }
    let tenants: BTreeSet<&str> = issued.values().map(String::as_str).collect();
    assert_eq!(tenants, BTreeSet::from(["acme", "globex"]), "{issued:?}");
    let dynamo: Vec<_> = calls.iter().filter(|c| c.service == "dynamodb").collect();
    assert!(dynamo.len() >= 12, "{}", dynamo.len());
    for c in &dynamo {
        let key = c.access_key.as_ref().expect("signed");
        assert!(
            issued.contains_key(key),
            "{} signed with {key}, not a tenant session's key (the api's own is {base_key})",
            c.operation
        );
    }
    // Each request's DynamoDB calls were signed by its own tenant's
    // session: never the other tenant's, never the api's own.
    let requests = api.requests.lock().unwrap().clone();
    let mut checked = BTreeSet::new();
    for (i, c) in calls.iter().enumerate() {
        if c.service != "dynamodb" {
            continue;
        }
        let (_, tenant) = requests
            .iter()
            .rev()
            .find(|(start, _)| *start <= i)
            .expect("a call during a request");
        let signer = &issued[c.access_key.as_ref().unwrap()];
        assert_eq!(signer, tenant, "{} of a {tenant} request", c.operation);
        checked.insert(tenant.clone());
    }
    assert_eq!(
        checked,
        BTreeSet::from(["acme".to_owned(), "globex".to_owned()])
    );
}

#[tokio::test]
async fn a_token_of_a_tenant_that_was_never_created_is_refused_until_it_is() {
    let env = TestEnv::new().await;
    // A settings row alone (a budget or channel written before tenants
    // were rows) does not make a tenant.
    kopter_store::channels::ChannelStore::new(env.ctx.aws.dynamodb(), &env.ctx.names)
        .update(
            &TenantId::new("initech").unwrap(),
            &kopter_store::channels::ChannelUpdate {
                digest: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let api = Api::start(&env).await;
    let token = api.token("initech", true);
    for uri in ["/v1/me", "/v1/accounts", "/v1/channels"] {
        let (s, body) = api.call(Method::GET, uri, &token, None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{uri}: {body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("\"initech\" does not exist")
                && detail.contains("kopterctl tenants create initech"),
            "{uri}: {body}"
        );
    }
    let (s, _) = api
        .call(
            Method::PUT,
            "/v1/channels",
            &token,
            Some(json!({"digest": true})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a write is refused as well");
    env.create_tenants(&["initech"]).await;
    let (s, body) = api.call(Method::GET, "/v1/me", &token, None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["tenant"], "initech");
}
