//! The HTTP layer in-process (`tower::ServiceExt::oneshot`) over the
//! in-memory data fake: tokens, errors, paging, formats, rate limits, the
//! OpenAPI document and the docs page.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::auth::jwks::{KeySource, RefreshPolicy};
use api::auth::{ClaimsConfig, IssuerKeys, Verifier};
use api::cursor::CursorCodec;
use api::data::Price;
use api::memory::{MemoryData, sample_prices};
use api::ratelimit::TenantLimiter;
use api::{ApiParts, ApiState};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kopter_dev_issuer::{DevIssuer, TokenRequest};
use serde_json::{Value, json};
use tower::ServiceExt;

const ISS: &str = "https://issuer.test";
const AUD: &str = "kopter";

fn claims_config() -> ClaimsConfig {
    ClaimsConfig {
        audience: AUD.into(),
        tenant_claim: "custom:tenant".into(),
        roles_claim: "cognito:groups".into(),
        admin_role: "admin".into(),
        leeway_secs: 0,
    }
}

fn policy() -> RefreshPolicy {
    RefreshPolicy {
        refresh_interval: Duration::from_secs(30),
        max_age: Duration::from_secs(3600),
    }
}

struct App {
    router: axum::Router,
    key: DevIssuer,
    data: Arc<MemoryData>,
}

fn app_with(prices: Vec<Price>, per_second: u32, burst: u32) -> App {
    let key = DevIssuer::generate().unwrap();
    let set = serde_json::from_value(key.jwks()).unwrap();
    let issuer = Arc::new(IssuerKeys::new(
        ISS,
        AUD,
        0,
        KeySource::Fixed(set),
        policy(),
    ));
    let data = Arc::new(MemoryData::with_prices(prices));
    let state = ApiState::new(ApiParts {
        verifier: Verifier::new(vec![issuer], claims_config()),
        limiter: TenantLimiter::new(per_second, burst),
        cursors: CursorCodec::new(&[1; 32]),
        data: data.clone(),
        dev_issuer: None,
        max_query_bytes: 4096,
    });
    App {
        router: api::router(state, &[]),
        key,
        data,
    }
}

fn app() -> App {
    let mut prices = sample_prices("eu-west-1", 250);
    prices.extend(sample_prices("us-east-1", 3));
    app_with(prices, 1000, 1000)
}

fn request(tenant: &str, roles: &[&str], ttl: u64) -> TokenRequest {
    TokenRequest {
        tenant: tenant.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        ttl: Duration::from_secs(ttl),
        subject: "user-1".into(),
        issuer: ISS.into(),
        audience: AUD.into(),
        tenant_claim: "custom:tenant".into(),
        roles_claim: "cognito:groups".into(),
    }
}

impl App {
    fn token(&self, tenant: &str) -> String {
        self.key.mint(&request(tenant, &[], 300)).unwrap()
    }

    /// Signs arbitrary claims with the issuer's key (ES256).
    fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(self.key.kid().to_owned());
        jsonwebtoken::encode(&h, claims, self.key.encoding_key()).unwrap()
    }

    async fn get(
        &self,
        uri: &str,
        token: Option<&str>,
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        self.call(uri, token, None).await
    }

    async fn call(
        &self,
        uri: &str,
        token: Option<&str>,
        accept: Option<&str>,
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let mut req = Request::get(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
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
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        (status, headers, body)
    }
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn problem(
    status: StatusCode,
    headers: &axum::http::HeaderMap,
    body: &[u8],
    want: StatusCode,
) -> Value {
    assert_eq!(status, want, "{}", String::from_utf8_lossy(body));
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    let p = json_of(body);
    assert_eq!(p["status"], want.as_u16());
    p
}

#[tokio::test]
async fn a_valid_token_names_the_tenant_and_role() {
    let a = app();
    let token = a.key.mint(&request("acme", &["admin"], 300)).unwrap();
    let (s, _, body) = a.get("/v1/me", Some(&token)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        json_of(&body),
        json!({"tenant": "acme", "subject": "user-1", "role": "admin"})
    );
    let (_, _, body) = a.get("/v1/me", Some(&a.token("globex"))).await;
    assert_eq!(json_of(&body)["role"], "viewer");
}

#[tokio::test]
async fn bad_tokens_are_refused_with_401_and_a_reason() {
    let a = app();
    let base =
        json!({"iss": ISS, "aud": AUD, "sub": "u", "custom:tenant": "acme", "exp": now() + 300});
    let with = |patch: Value| {
        let mut c = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let cases = [
        (a.sign(&with(json!({"exp": now() - 60}))), "expired"),
        (a.sign(&with(json!({"nbf": now() + 600}))), "not valid yet"),
        (
            a.sign(&with(json!({"iss": "https://other.test"}))),
            "not trusted",
        ),
        (a.sign(&with(json!({"aud": "someone-else"}))), "audience"),
        (a.sign(&with(json!({"exp": null}))), "exp"),
    ];
    for (token, needle) in cases {
        let (s, h, body) = a.get("/v1/me", Some(&token)).await;
        let p = problem(s, &h, &body, StatusCode::UNAUTHORIZED);
        assert!(
            p["detail"].as_str().unwrap().contains(needle),
            "{needle}: {p}"
        );
        assert!(
            h[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
    }
    // A signature by another key with the same kid.
    let other = DevIssuer::generate().unwrap();
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(a.key.kid().to_owned());
    let forged = jsonwebtoken::encode(&h, &base, other.encoding_key()).unwrap();
    let (s, hd, body) = a.get("/v1/me", Some(&forged)).await;
    let p = problem(s, &hd, &body, StatusCode::UNAUTHORIZED);
    assert!(p["detail"].as_str().unwrap().contains("signature"), "{p}");
    // No header, wrong scheme.
    let (s, hd, body) = a.get("/v1/me", None).await;
    problem(s, &hd, &body, StatusCode::UNAUTHORIZED);
    let (s, _, _) = a
        .router
        .clone()
        .oneshot(
            Request::get("/v1/me")
                .header(header::AUTHORIZATION, "Basic YTpi")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .map(|r| (r.status(), (), ()))
        .unwrap();
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn alg_none_and_hs256_with_the_public_key_are_refused() {
    let a = app();
    let claims = json!({"iss": ISS, "aud": AUD, "custom:tenant": "acme", "exp": now() + 300});
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    let none = format!(
        "{}.{}.",
        enc(&json!({"alg": "none", "typ": "JWT", "kid": a.key.kid()})),
        enc(&claims)
    );
    // HS256 keyed with the published public key (the classic confusion).
    let jwk = a.key.jwk();
    let public = serde_json::to_vec(&jwk).unwrap();
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some(a.key.kid().to_owned());
    let hs = jsonwebtoken::encode(
        &h,
        &claims,
        &EncodingKey::from_secret(public.as_slice()).unwrap(),
    )
    .unwrap();
    let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    let hs_x = jsonwebtoken::encode(
        &h,
        &claims,
        &EncodingKey::from_secret(x.as_slice()).unwrap(),
    )
    .unwrap();
    for token in [none, hs, hs_x] {
        let (s, hd, body) = a.get("/v1/me", Some(&token)).await;
        problem(s, &hd, &body, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn a_token_without_a_tenant_is_403_not_401() {
    let a = app();
    let token = a.sign(&json!({"iss": ISS, "aud": AUD, "sub": "u", "exp": now() + 300}));
    let (s, h, body) = a.get("/v1/me", Some(&token)).await;
    let p = problem(s, &h, &body, StatusCode::FORBIDDEN);
    assert!(
        p["detail"].as_str().unwrap().contains("custom:tenant"),
        "{p}"
    );
    let token = a.sign(
        &json!({"iss": ISS, "aud": AUD, "exp": now() + 300, "custom:tenant": "Not A Tenant"}),
    );
    let (s, h, body) = a.get("/v1/me", Some(&token)).await;
    problem(s, &h, &body, StatusCode::FORBIDDEN);
}

/// A JWKS endpoint whose keys can be swapped, counting fetches.
struct Jwks {
    url: String,
    keys: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

async fn jwks_server(initial: Value) -> Jwks {
    let keys = Arc::new(Mutex::new(initial));
    let fetches = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (k, f, u) = (keys.clone(), fetches.clone(), url.clone());
    let app = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            axum::routing::get(move || {
                let u = u.clone();
                async move { axum::Json(json!({"issuer": u, "jwks_uri": format!("{u}/keys")})) }
            }),
        )
        .route(
            "/keys",
            axum::routing::get(move || {
                let (k, f) = (k.clone(), f.clone());
                async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    axum::Json(k.lock().unwrap().clone())
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Jwks { url, keys, fetches }
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_jwks_once_per_interval() {
    let old = DevIssuer::generate().unwrap();
    let new = DevIssuer::generate().unwrap();
    let server = jwks_server(old.jwks()).await;
    let keys = Arc::new(IssuerKeys::new(
        server.url.clone(),
        AUD,
        0,
        KeySource::Discovery(reqwest::Client::new()),
        RefreshPolicy {
            refresh_interval: Duration::from_millis(400),
            max_age: Duration::from_secs(3600),
        },
    ));
    let verifier = Verifier::new(vec![keys], claims_config());
    let mint = |k: &DevIssuer| {
        let mut r = request("acme", &[], 300);
        r.issuer = server.url.clone();
        k.mint(&r).unwrap()
    };
    verifier.verify(&mint(&old)).await.unwrap();
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);
    // The issuer rotates; a token with the new kid arrives within the
    // interval of the first fetch: no refetch yet, refused.
    *server.keys.lock().unwrap() = new.jwks();
    let err = verifier.verify(&mint(&new)).await.unwrap_err();
    assert!(err.to_string().contains("not in the JWKS"), "{err}");
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let p = verifier.verify(&mint(&new)).await.unwrap();
    assert_eq!(p.tenant.as_str(), "acme");
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);
    // Made-up kids do not cause more fetches within the interval.
    for _ in 0..20 {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("made-up".into());
        let t = jsonwebtoken::encode(
            &h,
            &json!({"iss": server.url, "aud": AUD, "exp": now() + 60, "custom:tenant": "acme"}),
            new.encoding_key(),
        )
        .unwrap();
        assert!(verifier.verify(&t).await.is_err());
    }
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);
    // After the interval, an unknown kid may cause one fetch again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("made-up".into());
    let t = jsonwebtoken::encode(
        &h,
        &json!({"iss": server.url, "aud": AUD, "exp": now() + 60, "custom:tenant": "acme"}),
        new.encoding_key(),
    )
    .unwrap();
    assert!(verifier.verify(&t).await.is_err());
    assert_eq!(server.fetches.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn rs256_tokens_from_a_jwks_are_accepted() {
    let (encoding, n, e) = rsa_key();
    let server = jwks_server(json!({"keys": [{"kty": "RSA", "kid": "r1", "alg": "RS256", "use": "sig", "n": n, "e": e}]})).await;
    let verifier = Verifier::new(
        vec![Arc::new(IssuerKeys::new(
            server.url.clone(),
            AUD,
            0,
            KeySource::Discovery(reqwest::Client::new()),
            policy(),
        ))],
        claims_config(),
    );
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("r1".into());
    let claims = json!({"iss": server.url, "aud": AUD, "exp": now() + 60, "custom:tenant": "acme", "cognito:groups": ["admin"]});
    let token = jsonwebtoken::encode(&h, &claims, &encoding).unwrap();
    let p = verifier.verify(&token).await.unwrap();
    assert_eq!(p.role, api::auth::Role::Admin);
    // The same RSA key may not verify an ES256 header.
    h.alg = Algorithm::ES256;
    let es =
        jsonwebtoken::encode(&h, &claims, DevIssuer::generate().unwrap().encoding_key()).unwrap();
    let err = verifier.verify(&es).await.unwrap_err();
    assert!(err.to_string().contains("is for RS256"), "{err}");
}

/// An RSA-2048 signing key (PKCS#1 DER, as jsonwebtoken's aws-lc backend
/// takes it) and its public `n`, `e` (base64url).
fn rsa_key() -> (EncodingKey, String, String) {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::KeyPair;
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).unwrap();
    let pkcs1 = pkcs1_of(pkcs8.as_ref());
    let public = pair.public_key();
    let n = URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
    let e = URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
    (EncodingKey::from_rsa_der(&pkcs1), n, e)
}

/// The RSAPrivateKey inside a PKCS#8 PrivateKeyInfo:
/// SEQUENCE { INTEGER, SEQUENCE {…}, OCTET STRING { RSAPrivateKey } }.
fn pkcs1_of(der: &[u8]) -> Vec<u8> {
    fn tlv(b: &[u8]) -> (u8, &[u8], &[u8]) {
        let (len, hdr) = if b[1] < 0x80 {
            (b[1] as usize, 2)
        } else {
            let n = (b[1] & 0x7f) as usize;
            (
                b[2..2 + n].iter().fold(0usize, |a, x| a << 8 | *x as usize),
                2 + n,
            )
        };
        (b[0], &b[hdr..hdr + len], &b[hdr + len..])
    }
    let (_, info, _) = tlv(der);
    let (_, _, rest) = tlv(info);
    let (_, _, rest) = tlv(rest);
    let (tag, key, _) = tlv(rest);
    assert_eq!(tag, 0x04);
    key.to_vec()
}

#[tokio::test]
async fn every_page_is_reached_through_cursors_and_formats_agree() {
    let a = app();
    let t = a.token("acme");
    let mut json_rows = Vec::new();
    let mut uri = "/v1/prices?region=eu-west-1&limit=100".to_owned();
    let mut pages = 0;
    loop {
        let (s, _, body) = a.get(&uri, Some(&t)).await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let v = json_of(&body);
        json_rows.extend(v["items"].as_array().unwrap().iter().cloned());
        pages += 1;
        match v["next_cursor"].as_str() {
            Some(c) => uri = format!("/v1/prices?region=eu-west-1&limit=100&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(json_rows.len(), 250);
    assert!(json_rows.iter().all(|r| r["region"] == "eu-west-1"));
    // Every data call carried the token's tenant.
    assert!(
        a.data
            .calls
            .lock()
            .unwrap()
            .iter()
            .all(|t| t.as_str() == "acme")
    );

    // NDJSON (by format=) and CSV (by Accept) stream every page.
    let (s, h, body) = a
        .get(
            "/v1/prices?region=eu-west-1&limit=7&format=ndjson",
            Some(&t),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h[header::CONTENT_TYPE], "application/x-ndjson");
    let nd: Vec<Value> = String::from_utf8(body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(nd, json_rows);
    let (s, h, body) = a
        .call(
            "/v1/prices?region=eu-west-1&limit=9",
            Some(&t),
            Some("text/csv"),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        h[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let mut r = csv::Reader::from_reader(body.as_slice());
    let rows: Vec<Price> = r.deserialize().map(|x| x.unwrap()).collect();
    let from_json: Vec<Price> = json_rows
        .iter()
        .map(|v| serde_json::from_value(v.clone()).unwrap())
        .collect();
    assert_eq!(rows, from_json);

    // Filters narrow.
    let (_, _, body) = a
        .get(
            "/v1/prices?region=eu-west-1&os=Windows&instance_type=m5.",
            Some(&t),
        )
        .await;
    let v = json_of(&body);
    let items = v["items"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(items.iter().all(|p| p["operating_system"] == "Windows"
        && p["instance_type"].as_str().unwrap().starts_with("m5.")));
}

#[tokio::test]
async fn cursors_of_another_tenant_or_query_are_refused() {
    let a = app();
    let (_, _, body) = a
        .get(
            "/v1/prices?region=eu-west-1&limit=10",
            Some(&a.token("acme")),
        )
        .await;
    let cursor = json_of(&body)["next_cursor"].as_str().unwrap().to_owned();
    for (uri, tenant) in [
        (
            format!("/v1/prices?region=eu-west-1&limit=10&cursor={cursor}"),
            "globex",
        ),
        (
            format!("/v1/prices?region=eu-west-1&os=Linux&limit=10&cursor={cursor}"),
            "acme",
        ),
        (
            "/v1/prices?region=eu-west-1&cursor=eyJhdCI6MTB9".to_owned(),
            "acme",
        ),
    ] {
        let (s, h, body) = a.get(&uri, Some(&a.token(tenant))).await;
        let p = problem(s, &h, &body, StatusCode::BAD_REQUEST);
        assert_eq!(p["parameter"], "cursor", "{p}");
    }
}

#[tokio::test]
async fn bad_input_is_400_naming_the_parameter_never_500() {
    let a = app();
    let t = a.token("acme");
    for (uri, param) in [
        ("/v1/prices?region=eu-west-1&limit=0", "limit"),
        ("/v1/prices?region=eu-west-1&limit=1001", "limit"),
        (
            "/v1/prices?region=eu-west-1&limit=99999999999999999999",
            "limit",
        ),
        ("/v1/prices?region=eu-west-1&limit=ten", "limit"),
        ("/v1/prices?region=eu-west-1&format=xml", "format"),
        ("/v1/prices", "region"),
        ("/v1/prices?region=Europe", "region"),
        (
            "/v1/prices?region=eu-west-1&instance_type=%3Cscript%3E",
            "instance_type",
        ),
        ("/v1/prices?region=eu-west-1&colour=red", "colour"),
        ("/v1/prices?region=eu-west-1&region=us-east-1", "region"),
    ] {
        let (s, h, body) = a.get(uri, Some(&t)).await;
        let p = problem(s, &h, &body, StatusCode::BAD_REQUEST);
        assert_eq!(p["parameter"], param, "{uri}: {p}");
        assert!(p["detail"].as_str().unwrap().contains(param), "{uri}: {p}");
    }
    let long = format!("/v1/prices?region=eu-west-1&os={}", "x".repeat(10_000));
    let (s, h, body) = a.get(&long, Some(&t)).await;
    let p = problem(s, &h, &body, StatusCode::URI_TOO_LONG);
    assert!(
        p["detail"].as_str().unwrap().contains("query string"),
        "{p}"
    );
    let (s, h, body) = a.get("/v1/nothing-here", Some(&t)).await;
    problem(s, &h, &body, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_tenant_over_its_rate_gets_429_with_retry_after_others_do_not() {
    let a = app_with(sample_prices("eu-west-1", 3), 1, 2);
    let acme = a.token("acme");
    for _ in 0..2 {
        assert_eq!(a.get("/v1/me", Some(&acme)).await.0, StatusCode::OK);
    }
    let (s, h, body) = a.get("/v1/me", Some(&acme)).await;
    problem(s, &h, &body, StatusCode::TOO_MANY_REQUESTS);
    let secs: u64 = h[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=1).contains(&secs), "{secs}");
    assert_eq!(
        a.get("/v1/me", Some(&a.token("globex"))).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_openapi_document_and_docs_page_describe_the_routes() {
    let a = app();
    let (s, _, body) = a.get("/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    let spec = json_of(&body);
    assert!(
        spec["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        spec["openapi"]
    );
    let prices = &spec["paths"]["/v1/prices"]["get"];
    let params: Vec<&str> = prices["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in ["region", "instance_type", "os", "limit", "cursor", "format"] {
        assert!(params.contains(&p), "{p} missing: {params:?}");
    }
    assert_eq!(prices["security"][0]["bearer"], json!([]));
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(spec["paths"]["/v1/me"]["get"].is_object());
    // Cost items: partly priced next to unpriced, and the cost row's note.
    let schemas = &spec["components"]["schemas"];
    for (schema, fields) in [
        (
            "CostPoint",
            &[
                "price_missing",
                "price_partial",
                "price_missing_part",
                "note",
            ][..],
        ),
        (
            "ResourceCost",
            &["price_missing", "price_missing_part", "note"][..],
        ),
    ] {
        for f in fields {
            assert!(
                schemas[schema]["properties"][f].is_object(),
                "{schema}.{f}: {}",
                schemas[schema]
            );
        }
    }
    let point = &schemas["CostPoint"];
    assert_eq!(point["properties"]["price_partial"]["type"], "integer");
    assert!(
        point["required"]
            .as_array()
            .unwrap()
            .contains(&json!("price_partial")),
        "{point}"
    );
    let (s, h, body) = a.get("/docs", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        h[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = String::from_utf8(body).unwrap();
    assert!(html.contains("GET /v1/prices") && html.contains("instance_type"));
    assert!(!html.contains("<script"), "the docs page runs no script");
}
