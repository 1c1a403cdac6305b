//! Per-request overhead of the api, in process on one core (a
//! current-thread runtime): `GET /v1/prices?region=…&limit=100` through
//! the whole router — token verification (ES256), claims, rate limit, query
//! parsing, a page of 100 rows from the in-memory fake, JSON encoding —
//! against a baseline: the same page fetched and encoded by a route
//! without auth or query parsing. Prints p50/p99 and requests/s of both
//! and their ratio. Run with `scripts/bench-api.sh [requests]`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use api::auth::jwks::{KeySource, RefreshPolicy};
use api::auth::{ClaimsConfig, IssuerKeys, Verifier};
use api::cursor::CursorCodec;
use api::data::{PageRequest, PriceData, PriceFilter};
use api::memory::{MemoryData, sample_prices};
use api::ratelimit::TenantLimiter;
use api::{ApiParts, ApiState};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use kopter_dev_issuer::{DevIssuer, TokenRequest};
use kopter_schema::TenantId;
use tower::ServiceExt;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("requests: a number"))
        .unwrap_or(20_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(n));
}

async fn run(n: usize) {
    let key = DevIssuer::generate().unwrap();
    let iss = "https://issuer.bench";
    let issuer = Arc::new(IssuerKeys::new(
        iss,
        "kopter",
        0,
        KeySource::Fixed(serde_json::from_value(key.jwks()).unwrap()),
        RefreshPolicy {
            refresh_interval: Duration::from_secs(30),
            max_age: Duration::from_secs(3600),
        },
    ));
    let data = Arc::new(MemoryData::with_prices(sample_prices("eu-west-1", 1000)));
    let claims = ClaimsConfig {
        audience: "kopter".into(),
        tenant_claim: "custom:tenant".into(),
        roles_claim: "cognito:groups".into(),
        admin_role: "admin".into(),
        leeway_secs: 0,
    };
    let state = ApiState::new(ApiParts {
        verifier: Verifier::new(vec![issuer], claims),
        limiter: TenantLimiter::new(u32::MAX, u32::MAX),
        cursors: CursorCodec::new(&[3; 32]),
        data: data.clone(),
        dev_issuer: None,
        max_query_bytes: 4096,
    });
    let router = api::router(state, &[]);
    let token = key
        .mint(&TokenRequest {
            tenant: "acme".into(),
            roles: vec![],
            ttl: Duration::from_secs(3600),
            subject: "bench".into(),
            issuer: iss.into(),
            audience: "kopter".into(),
            tenant_claim: "custom:tenant".into(),
            roles_claim: "cognito:groups".into(),
        })
        .unwrap();
    let auth = format!("Bearer {token}");

    // Baseline: the page and its JSON, without HTTP routing, auth or
    // query parsing.
    let tenant = TenantId::new("acme").unwrap();
    let filter = PriceFilter {
        region: "eu-west-1".into(),
        instance_type: None,
        os: None,
    };
    let baseline = measure(n, || {
        let (data, tenant, filter) = (data.clone(), tenant.clone(), filter.clone());
        async move {
            let page = data
                .prices(
                    &tenant,
                    &filter,
                    PageRequest {
                        after: None,
                        limit: 100,
                    },
                )
                .await
                .unwrap();
            let body = serde_json::to_vec(&page.items).unwrap();
            assert!(body.len() > 1000);
        }
    })
    .await;
    let full = measure(n, || {
        let (router, auth) = (router.clone(), auth.clone());
        async move {
            let req = Request::get("/v1/prices?region=eu-west-1&limit=100")
                .header(header::AUTHORIZATION, auth)
                .body(Body::empty())
                .unwrap();
            let resp = router.oneshot(req).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            assert!(body.len() > 1000);
        }
    })
    .await;
    println!("GET /v1/prices, 100 rows, {n} requests, one core (current-thread runtime)");
    println!("{:<34} {:>9} {:>9} {:>10}", "", "p50 µs", "p99 µs", "req/s");
    for (name, s) in [
        ("baseline (fetch + JSON, no auth)", &baseline),
        ("api (token + router + page + JSON)", &full),
    ] {
        println!(
            "{name:<34} {:>9.1} {:>9.1} {:>10.0}",
            s.p50.as_secs_f64() * 1e6,
            s.p99.as_secs_f64() * 1e6,
            s.rate
        );
    }
    println!(
        "ratio api/baseline: p50 ×{:.2}, p99 ×{:.2}, throughput ×{:.2}",
        full.p50.as_secs_f64() / baseline.p50.as_secs_f64(),
        full.p99.as_secs_f64() / baseline.p99.as_secs_f64(),
        full.rate / baseline.rate
    );
    println!(
        "target p99 < 1 ms: {}",
        if full.p99 < Duration::from_millis(1) {
            "met"
        } else {
            "NOT met"
        }
    );
}

struct Stats {
    p50: Duration,
    p99: Duration,
    rate: f64,
}

async fn measure<F, Fut>(n: usize, mut f: F) -> Stats
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..n / 10 {
        f().await;
    }
    let mut times = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        f().await;
        times.push(t.elapsed());
    }
    let total = start.elapsed();
    times.sort_unstable();
    Stats {
        p50: times[n / 2],
        p99: times[n * 99 / 100],
        rate: n as f64 / total.as_secs_f64(),
    }
}
