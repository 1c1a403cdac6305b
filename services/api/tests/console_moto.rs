//! The console over `DynamoData` against moto: the overview's
//! month-to-date total and the cost page's table equal the JSON api's
//! `/v1/cost` for the same tenant and period, and the cost CSV is the
//! api's. Rows are written by the aggregator's own store
//! (`GraphStore::replace_hour`) for two tenants.

use std::collections::BTreeMap;
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
use axum::http::{Request, StatusCode, header};
use chrono::{DateTime, Datelike, DurationRound, TimeZone, Utc};
use kopter_dev_issuer::{DevIssuer, TokenRequest};
use kopter_runtime::accounts::Onboarding;
use kopter_schema::{AccountId, TenantId};
use kopter_store::graph::{CostLine, GraphStore, expiry};
use kopter_tests::{TestEnv, random_account, unique};
use scraper::{Html, Selector};
use serde_json::Value;
use tower::ServiceExt;

const ISS: &str = "https://issuer.test";
const AUD: &str = "kopter";

fn line(id: &str, region: &str, hour: DateTime<Utc>, cost: Option<f64>, family: &str) -> CostLine {
    CostLine {
        resource_id: id.into(),
        kind: "instance",
        region: region.into(),
        hour,
        usage: 1.0,
        unit: "Hrs",
        cost_usd: cost,
        reserved_usd: cost.map(|c| c * 0.6),
        missing: cost
            .is_none()
            .then(|| "no on-demand price for x9.huge".to_owned()),
        family: family.into(),
        detail: format!("{family}.large").into(),
        lifecycle: "on-demand".into(),
        tags: Arc::new(BTreeMap::new()),
        missing_part: None,
        note: None,
    }
}

struct World {
    router: axum::Router,
    key: DevIssuer,
    acme: TenantId,
}

impl World {
    fn token(&self, tenant: &TenantId) -> String {
        self.key
            .mint(&TokenRequest {
                tenant: tenant.to_string(),
                roles: vec![],
                ttl: Duration::from_secs(300),
                subject: "u".into(),
                issuer: ISS.into(),
                audience: AUD.into(),
                tenant_claim: "custom:tenant".into(),
                roles_claim: "cognito:groups".into(),
            })
            .unwrap()
    }

    async fn get(
        &self,
        uri: &str,
        cookie: Option<&str>,
        bearer: Option<&str>,
    ) -> (StatusCode, String) {
        let mut req = Request::get(uri);
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, format!("kopter_session={c}"));
        }
        if let Some(b) = bearer {
            req = req.header(header::AUTHORIZATION, format!("Bearer {b}"));
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
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }
}

async fn world() -> World {
    let env = TestEnv::new().await;
    let acme = TenantId::new(unique("acme-")).unwrap();
    let globex = TenantId::new(unique("globex-")).unwrap();
    env.create_tenants(&[acme.as_str(), globex.as_str()]).await;
    let a1 = AccountId::new(random_account()).unwrap();
    let a2 = AccountId::new(random_account()).unwrap();
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
    let graph = GraphStore::new(env.ctx.aws.dynamodb(), &env.ctx.names);
    let now = hour(Utc::now());
    // The current hour and the two before it (the aggregator writes the
    // current hour too: the demo's period).
    for back in 0..3 {
        let h = now - chrono::Duration::hours(back);
        let scale = 1.0 + back as f64;
        for (t, a, lines) in [
            (
                &acme,
                &a1,
                vec![
                    line("i-a1web", "eu-west-1", h, Some(0.0867 * scale), "m5"),
                    line("i-a1odd", "eu-west-1", h, None, "x9"),
                    line("i-a1db", "us-east-1", h, Some(0.2276), "r5"),
                ],
            ),
            (
                &acme,
                &a2,
                vec![line("i-a2web", "ap-southeast-2", h, Some(0.107), "m5")],
            ),
            (
                &globex,
                &g1,
                vec![line("i-g1", "eu-west-1", h, Some(5.0), "m5")],
            ),
        ] {
            graph
                .replace_hour(t, a, h, &lines, &[], expiry(h, 30))
                .await
                .unwrap();
        }
    }
    let key = DevIssuer::generate().unwrap();
    let issuer = Arc::new(IssuerKeys::new(
        ISS,
        AUD,
        0,
        KeySource::Fixed(serde_json::from_value(key.jwks()).unwrap()),
        RefreshPolicy {
            refresh_interval: Duration::from_secs(30),
            max_age: Duration::from_secs(3600),
        },
    ));
    let db = TenantDb::new(env.ctx.aws.clone(), env.ctx.credentials.clone(), None, 16);
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
        cursors: CursorCodec::new(&[5; 32]),
        data: Arc::new(DynamoData::new(db, env.ctx.names.clone())),
        dev_issuer: None,
        max_query_bytes: 4096,
    });
    World {
        router: api::router(state, &[]),
        key,
        acme,
    }
}

fn hour(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(chrono::Duration::hours(1)).unwrap()
}

fn sel(s: &str) -> Selector {
    Selector::parse(s).unwrap()
}

fn cell_text(e: scraper::ElementRef<'_>) -> String {
    e.text()
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every point of `/v1/cost` for `query` (following cursors).
async fn api_points(w: &World, token: &str, query: &str) -> Vec<Value> {
    let mut points = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut uri = format!("/v1/cost?{query}&limit=2");
        if let Some(c) = &cursor {
            uri.push_str(&format!("&cursor={c}"));
        }
        let (status, body) = w.get(&uri, None, Some(token)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        points.extend(v["items"].as_array().unwrap().iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return points,
        }
    }
}

fn usd(v: f64) -> String {
    // The console's format: two decimals at least, up to eight.
    let mut s = format!("{v:.8}");
    while s.ends_with('0') && s.len() - s.find('.').unwrap() > 3 {
        s.pop();
    }
    format!("{s} USD")
}

/// A point's cost as the console writes it: the amount, or the
/// "price missing" mark when the api's `cost_usd` is null.
fn shown_cost(p: &Value) -> String {
    p["cost_usd"]
        .as_f64()
        .map_or_else(|| "price missing".to_owned(), usd)
}

#[tokio::test]
async fn the_console_shows_the_apis_cost_numbers_over_dynamodb() {
    let w = world().await;
    let token = w.token(&w.acme);
    let now = Utc::now();

    // Overview: month to date = the api's daily series by account summed.
    let (status, html) = w.get("/console", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let doc = Html::parse_document(&html);
    let month_start = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .unwrap();
    let tomorrow =
        now.duration_trunc(chrono::Duration::days(1)).unwrap() + chrono::Duration::days(1);
    let query = format!(
        "granularity=day&by=account&from={}&to={}",
        month_start.format("%Y-%m-%dT%H:%M:%SZ"),
        tomorrow.format("%Y-%m-%dT%H:%M:%SZ")
    );
    let days = api_points(&w, &token, &query).await;
    assert!(!days.is_empty());
    let mtd: f64 = days.iter().filter_map(|p| p["cost_usd"].as_f64()).sum();
    let shown = doc.select(&sel("#month-to-date .big")).next().unwrap();
    assert_eq!(cell_text(shown), usd(mtd));
    let data_usd: f64 = shown.value().attr("data-usd").unwrap().parse().unwrap();
    assert!((data_usd - mtd).abs() < 1e-9, "{data_usd} vs {mtd}");
    // acme's first account has an unpriced resource: the api's day point
    // for it has no priced cost (its `price_missing` sums resource-hours
    // while `resources` is the most in any hour), and the console says a
    // price is missing rather than showing a smaller number silently.
    assert!(days.iter().any(|p| p["price_missing"].as_u64() > Some(0)));
    let card = doc.select(&sel("#month-to-date")).next().unwrap();
    assert!(card.select(&sel(".missing")).next().is_some());
    assert!(!html.contains("5.00 USD"), "globex's cost is not acme's");

    // Cost page (default: the last 48 hours by account, hourly): each row
    // is the api's point for the same parameters.
    let (status, html) = w.get("/console/cost", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    let doc = Html::parse_document(&html);
    let csv_href = doc
        .select(&sel("a#csv"))
        .next()
        .unwrap()
        .value()
        .attr("href")
        .unwrap()
        .to_owned();
    let query = csv_href
        .strip_prefix("/console/cost.csv?")
        .unwrap()
        .to_owned();
    let points = api_points(&w, &token, &query).await;
    let rows: Vec<Vec<String>> = doc
        .select(&sel("#cost-table tbody tr"))
        .map(|tr| tr.select(&sel("td")).map(cell_text).collect())
        .collect();
    assert_eq!(rows.len(), points.len());
    assert_eq!(rows.len(), 6, "two accounts × three hours: {rows:?}");
    for (row, p) in rows.iter().zip(&points) {
        let period: DateTime<Utc> = p["period"].as_str().unwrap().parse().unwrap();
        assert_eq!(row[0], period.format("%Y-%m-%d %H:%M UTC").to_string());
        assert_eq!(row[1], p["group"].as_str().unwrap());
        assert_eq!(row[2], shown_cost(p));
        let missing = p["price_missing"].as_u64().unwrap();
        if missing > 0 {
            assert_eq!(row[4], format!("price missing {missing}"));
        } else {
            assert_eq!(row[4], "0");
        }
    }
    assert!(rows.iter().any(|r| r[4] == "price missing 1"));

    // The CSV download is the api's CSV of those parameters.
    let (status, console_csv) = w.get(&csv_href, Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, api_csv) = w
        .get(&format!("/v1/cost?format=csv&{query}"), None, Some(&token))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(console_csv, api_csv);
    assert_eq!(console_csv.lines().count(), 7);

    // By region, day by day: the same equality.
    let (status, html) = w
        .get(
            "/console/cost?granularity=day&by=region",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let doc = Html::parse_document(&html);
    let csv_href = doc
        .select(&sel("a#csv"))
        .next()
        .unwrap()
        .value()
        .attr("href")
        .unwrap()
        .to_owned();
    let query = csv_href
        .strip_prefix("/console/cost.csv?")
        .unwrap()
        .to_owned();
    let points = api_points(&w, &token, &query).await;
    let shown: Vec<(String, String)> = doc
        .select(&sel("#cost-table tbody tr"))
        .map(|tr| {
            let cells: Vec<String> = tr.select(&sel("td")).map(cell_text).collect();
            (cells[1].clone(), cells[2].clone())
        })
        .collect();
    let expected: Vec<(String, String)> = points
        .iter()
        .map(|p| (p["group"].as_str().unwrap().to_owned(), shown_cost(p)))
        .collect();
    assert_eq!(shown, expected);
    assert!(shown.iter().any(|(g, _)| g == "ap-southeast-2"));
}
