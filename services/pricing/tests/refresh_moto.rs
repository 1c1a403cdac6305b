//! Pricing end to end: offer files served by a local HTTP server in the
//! bulk API's layout (offer index → region index → region file), prices in
//! DynamoDB on moto, spot history from moto's EC2, the Price List Query
//! API answered by a local stand-in (nothing emulates it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{TimeZone, Utc};
use kopter_runtime::HandlerError;
use kopter_runtime::config::PriceSource;
use kopter_schema::{Envelope, Message, Service};
use kopter_store::prices::version_at;
use kopter_tests::TestEnv;
use pricing::ingest::{Ingestor, RegionOutcome};

const SMALL: &str = include_str!("fixtures/offer_small.json");
const V1: &str = "20250523232744";
const V2: &str = "20250601000000";

/// The fixture as version `version`, m5.large Linux at `m5_price`.
fn offer(version: &str, published: &str, m5_price: &str) -> String {
    let s = SMALL
        .replace(V1, version)
        .replace("2025-05-23T23:27:44Z", published);
    // The m5.large Linux on-demand rate is the only "0.0960000000" priced
    // in Hrs (see the parser's golden tests).
    s.replacen(
        "\"unit\" : \"Hrs\",\n              \"pricePerUnit\" : {\n                \"USD\" : \"0.0960000000\"",
        &format!("\"unit\" : \"Hrs\",\n              \"pricePerUnit\" : {{\n                \"USD\" : \"{m5_price}\""),
        1,
    )
}

#[derive(Default)]
struct Site {
    /// path → (body, etag)
    files: HashMap<String, (String, String)>,
    /// path → GETs answered with a body
    downloads: HashMap<String, usize>,
    not_modified: usize,
}

type Shared = Arc<Mutex<Site>>;

async fn serve_file(
    State(site): State<Shared>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/{path}");
    let mut site = site.lock().unwrap();
    let Some((body, etag)) = site.files.get(&path).cloned() else {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::from("no such key"))
            .unwrap();
    };
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str())
    {
        site.not_modified += 1;
        return Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .unwrap();
    }
    *site.downloads.entry(path).or_default() += 1;
    Response::builder()
        .header(header::ETAG, etag)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap()
}

/// The Price List Query API (awsJson1_1) for the two operations used.
async fn price_list_api(State(base): State<String>, headers: HeaderMap, body: String) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let req: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let json = match target {
        "AWSPriceListService.ListPriceLists" => {
            assert_eq!(req["ServiceCode"], "AmazonEC2");
            assert_eq!(req["CurrencyCode"], "USD");
            serde_json::json!({"PriceLists": [
                {"PriceListArn": format!("arn:aws:pricing:::price-list/aws/AmazonEC2/USD/{V2}/us-east-1"),
                 "RegionCode": "us-east-1", "CurrencyCode": "USD", "FileFormats": ["json", "csv"]}
            ]})
        }
        "AWSPriceListService.GetPriceListFileUrl" => {
            assert_eq!(req["FileFormat"], "json");
            serde_json::json!({"Url": format!("{base}/files/api-us-east-1.json")})
        }
        other => panic!("unexpected Price List API call {other}"),
    };
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-amz-json-1.1")
        .body(Body::from(json.to_string()))
        .unwrap()
}

async fn start_site(site: Shared) -> String {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/{*path}", get(serve_file))
        .with_state(site.clone())
        .merge(
            Router::new()
                .route("/", post(price_list_api))
                .with_state(base.clone()),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// Publishes the bulk layout with `regions` → (version, file body).
fn publish(site: &Shared, regions: &[(&str, &str, String)]) {
    let mut s = site.lock().unwrap();
    s.files.insert(
        "/offers/v1.0/aws/index.json".into(),
        (
            serde_json::json!({"formatVersion": "v1.0", "offers": {
                "AmazonS3": {"offerCode": "AmazonS3", "currentRegionIndexUrl": "/offers/v1.0/aws/AmazonS3/current/region_index.json"},
                "AmazonEC2": {"offerCode": "AmazonEC2", "currentRegionIndexUrl": "/offers/v1.0/aws/AmazonEC2/current/region_index.json"}}})
            .to_string(),
            "\"oi\"".into(),
        ),
    );
    let mut index = serde_json::Map::new();
    for (region, version, body) in regions {
        let path = format!("/offers/v1.0/aws/AmazonEC2/{version}/{region}/index.json");
        index.insert(
            (*region).into(),
            serde_json::json!({"regionCode": region, "currentVersionUrl": path}),
        );
        if !body.is_empty() {
            s.files
                .insert(path, (body.clone(), format!("\"{region}-{version}\"")));
        }
    }
    s.files.insert(
        "/offers/v1.0/aws/AmazonEC2/current/region_index.json".into(),
        (
            serde_json::json!({"regions": index}).to_string(),
            "\"ri\"".into(),
        ),
    );
}

async fn setup(
    tweak: impl FnOnce(&mut kopter_runtime::Config),
) -> (TestEnv, Ingestor, Shared, String) {
    let site: Shared = Arc::default();
    let base = start_site(site.clone()).await;
    let b = base.clone();
    let env = TestEnv::with(move |c| {
        c.pricing.offers_url = b.clone();
        c.pricing.allow_http = true;
        c.pricing.api_endpoint_url = Some(b);
        tweak(c);
    })
    .await;
    let ingestor = Ingestor::new(&env.ctx).unwrap();
    (env, ingestor, site, base)
}

fn m5_linux(p: &kopter_store::prices::InstancePrices) -> f64 {
    p.on_demand["RunInstances"].usd_per_hour
}

#[tokio::test]
async fn full_ingest_then_unchanged_then_new_version_with_history() {
    let (env, ing, site, _) = setup(|_| {}).await;
    publish(
        &site,
        &[(
            "us-east-1",
            V1,
            offer(V1, "2025-05-23T23:27:44Z", "0.0960000000"),
        )],
    );

    let out = ing.refresh_region("us-east-1").await.unwrap();
    let RegionOutcome::Ingested {
        version,
        counts,
        committed,
    } = out
    else {
        panic!("{out:?}")
    };
    assert_eq!(version, V1);
    assert!(committed);
    assert_eq!(
        (counts.on_demand, counts.reserved, counts.ebs),
        (3, 5, 4),
        "{counts:?}"
    );

    let cur = ing.store.current("us-east-1").await.unwrap().unwrap();
    assert_eq!(cur.version, V1);
    assert_eq!(cur.etag.as_deref(), Some("\"us-east-1-20250523232744\""));
    let m5 = ing
        .store
        .instance_prices("us-east-1", V1, "m5.large", "Shared")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m5_linux(&m5), 0.096);
    assert_eq!(m5.on_demand["RunInstances:0002"].usd_per_hour, 0.188);
    assert_eq!(
        m5.on_demand["RunInstances:0002"].operating_system,
        "Windows"
    );
    assert!(!m5.reserved.is_empty());
    let ded = ing
        .store
        .instance_prices("us-east-1", V1, "c5.xlarge", "Dedicated")
        .await
        .unwrap()
        .unwrap();
    let ri = &ded.reserved["RunInstances|3yr|standard|Partial Upfront"];
    assert!(
        (ri.effective_hourly_usd - (0.068 + 1800.0 / 26280.0)).abs() < 1e-12,
        "{ri:?}"
    );
    let ebs = ing.store.ebs_prices("us-east-1", V1).await.unwrap();
    let gp3 = ebs
        .iter()
        .find(|e| e.volume_api_name == "gp3" && e.kind == "storage")
        .unwrap();
    assert_eq!((gp3.usd_per_unit, gp3.unit.as_str()), (0.08, "GB-Mo"));

    // Second run: the index names the version in force → no download.
    let out = ing.refresh_region("us-east-1").await.unwrap();
    assert_eq!(out, RegionOutcome::Unchanged { version: V1.into() });
    let path = format!("/offers/v1.0/aws/AmazonEC2/{V1}/us-east-1/index.json");
    assert_eq!(site.lock().unwrap().downloads[&path], 1);

    // A new version with a price change becomes current; the old stays
    // in the history, so past hours keep their price.
    publish(
        &site,
        &[(
            "us-east-1",
            V2,
            offer(V2, "2025-06-01T00:00:00Z", "0.1000000000"),
        )],
    );
    let out = ing.refresh_region("us-east-1").await.unwrap();
    assert!(
        matches!(
            out,
            RegionOutcome::Ingested {
                committed: true,
                ..
            }
        ),
        "{out:?}"
    );
    let versions = ing.store.versions("us-east-1").await.unwrap();
    assert_eq!(
        versions
            .iter()
            .map(|v| v.version.as_str())
            .collect::<Vec<_>>(),
        vec![V1, V2]
    );
    let may = version_at(
        &versions,
        Utc.with_ymd_and_hms(2025, 5, 28, 10, 0, 0).unwrap(),
    )
    .unwrap();
    let june = version_at(
        &versions,
        Utc.with_ymd_and_hms(2025, 6, 2, 10, 0, 0).unwrap(),
    )
    .unwrap();
    let p = |v: &str| {
        let store = ing.store.clone();
        let v = v.to_string();
        async move {
            m5_linux(
                &store
                    .instance_prices("us-east-1", &v, "m5.large", "Shared")
                    .await
                    .unwrap()
                    .unwrap(),
            )
        }
    };
    assert_eq!(p(&may.version).await, 0.096);
    assert_eq!(p(&june.version).await, 0.1);

    // prices.updated went out for both versions (the aggregator's queue
    // subscribes to it).
    let url = env.queue_url(Service::Aggregator).await;
    let is_update = |e: &Envelope| matches!(e.message, Message::PricesUpdated(_));
    let mut seen: Vec<String> = env
        .receive_envelopes(&url, |got| got.iter().filter(|e| is_update(e)).count() == 2)
        .await
        .into_iter()
        .filter_map(|e| match e.message {
            Message::PricesUpdated(p) => {
                assert_eq!(p.region, "us-east-1");
                Some(p.version)
            }
            _ => None,
        })
        .collect();
    seen.sort();
    assert_eq!(seen, vec![V1, V2]);
}

#[tokio::test]
async fn failed_ingests_keep_the_prices_in_force() {
    let (_env, ing, site, base) = setup(|_| {}).await;
    publish(
        &site,
        &[(
            "us-east-1",
            V1,
            offer(V1, "2025-05-23T23:27:44Z", "0.0960000000"),
        )],
    );
    ing.refresh_region("us-east-1").await.unwrap();

    let good = offer(V2, "2025-06-01T00:00:00Z", "0.1000000000");
    let bad_files = [
        (
            "truncated",
            good[..good.len() * 2 / 3].to_string(),
            "truncated",
        ),
        (
            "not a number",
            good.replacen("\"USD\" : \"0.1880000000\"", "\"USD\" : \"0.18x\"", 1),
            "0.18x",
        ),
        (
            "unknown currency",
            good.replacen(
                "\"USD\" : \"0.1880000000\"",
                "\"EUR\" : \"0.1880000000\"",
                1,
            ),
            "EUR",
        ),
        (
            "invalid JSON",
            good.replacen("\"products\" : {", "\"products\" : {,", 1),
            "byte",
        ),
        (
            "wrong offer",
            good.replacen(
                "\"offerCode\" : \"AmazonEC2\"",
                "\"offerCode\" : \"AmazonS3\"",
                1,
            ),
            "AmazonS3",
        ),
    ];
    for (what, body, needle) in bad_files {
        publish(&site, &[("us-east-1", V2, body)]);
        let err = match ing.refresh_region("us-east-1").await.unwrap_err() {
            HandlerError::Retry(e) => format!("{e:#}"),
            HandlerError::Permanent(e) => panic!("{what}: should be retried, got permanent {e:#}"),
        };
        assert!(
            err.contains("us-east-1")
                && err.contains(&format!(
                    "{base}/offers/v1.0/aws/AmazonEC2/{V2}/us-east-1/index.json"
                )),
            "{what}: {err}"
        );
        assert!(err.contains(needle), "{what}: {err}");
        let cur = ing.store.current("us-east-1").await.unwrap().unwrap();
        assert_eq!(cur.version, V1, "{what}");
        assert_eq!(
            ing.store.versions("us-east-1").await.unwrap().len(),
            1,
            "{what}"
        );
        let m5 = ing
            .store
            .instance_prices("us-east-1", V1, "m5.large", "Shared")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m5_linux(&m5), 0.096, "{what}");
    }

    // A region index pointing to a missing file (404).
    publish(&site, &[("us-east-1", "20990101000000", String::new())]);
    let err = format!("{:#}", ing.refresh_region("us-east-1").await.unwrap_err());
    assert!(
        err.contains("404") && err.contains("/20990101000000/us-east-1/index.json"),
        "{err}"
    );
    // A region the index does not list: permanent, named.
    match ing.refresh_region("xx-nowhere-1").await.unwrap_err() {
        HandlerError::Permanent(e) => assert!(format!("{e:#}").contains("xx-nowhere-1")),
        HandlerError::Retry(e) => panic!("unknown region should be permanent: {e:#}"),
    }
    // A region index pointing off the price list host is refused, not fetched.
    {
        let mut s = site.lock().unwrap();
        s.files.insert(
            "/offers/v1.0/aws/AmazonEC2/current/region_index.json".into(),
            (
                serde_json::json!({"regions": {"us-east-1": {"regionCode": "us-east-1",
                "currentVersionUrl": "http://169.254.169.254/latest/meta-data/"}}})
                .to_string(),
                "\"x\"".into(),
            ),
        );
    }
    let err = format!("{:#}", ing.refresh_region("us-east-1").await.unwrap_err());
    assert!(
        err.contains("169.254.169.254") && err.contains("refused"),
        "{err}"
    );
    assert_eq!(
        ing.store
            .current("us-east-1")
            .await
            .unwrap()
            .unwrap()
            .version,
        V1
    );
}

#[tokio::test]
async fn etag_skips_an_unchanged_file_when_the_url_names_no_version() {
    let (_env, ing, site, _) = setup(|_| {}).await;
    // An index whose URLs carry no version (a mirror's `current/` layout).
    publish(&site, &[]);
    {
        let mut s = site.lock().unwrap();
        s.files.insert(
            "/offers/v1.0/aws/AmazonEC2/current/region_index.json".into(),
            (
                serde_json::json!({"regions": {"us-east-1": {"regionCode": "us-east-1",
                "currentVersionUrl": "/mirror/AmazonEC2/current/us-east-1/index.json"}}})
                .to_string(),
                "\"x\"".into(),
            ),
        );
        s.files.insert(
            "/mirror/AmazonEC2/current/us-east-1/index.json".into(),
            (
                offer(V1, "2025-05-23T23:27:44Z", "0.0960000000"),
                "\"etag-1\"".into(),
            ),
        );
    }
    assert!(matches!(
        ing.refresh_region("us-east-1").await.unwrap(),
        RegionOutcome::Ingested { .. }
    ));
    assert_eq!(
        ing.refresh_region("us-east-1").await.unwrap(),
        RegionOutcome::Unchanged { version: V1.into() }
    );
    let s = site.lock().unwrap();
    assert_eq!(s.not_modified, 1);
    assert_eq!(
        s.downloads["/mirror/AmazonEC2/current/us-east-1/index.json"],
        1
    );
}

#[tokio::test]
async fn refresh_all_queues_only_changed_regions_from_the_index() {
    let (env, ing, site, _) = setup(|_| {}).await;
    publish(
        &site,
        &[
            (
                "us-east-1",
                V1,
                offer(V1, "2025-05-23T23:27:44Z", "0.0960000000"),
            ),
            // An opt-in region and a local zone: listed by the index, so priced.
            ("ap-east-2", V1, String::new()),
            ("us-east-1-mia-1", V1, String::new()),
        ],
    );
    ing.refresh_region("us-east-1").await.unwrap();
    let queued = ing.refresh_all().await.unwrap();
    let mut queued_sorted = queued.clone();
    queued_sorted.sort();
    assert_eq!(queued_sorted, vec!["ap-east-2", "us-east-1-mia-1"]);

    // The messages are on the pricing queue, one per region.
    let url = env.queue_url(Service::Pricing).await;
    let mut got = Vec::new();
    for _ in 0..5 {
        let out = env
            .sqs()
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        for m in out.messages.unwrap_or_default() {
            let e = Envelope::decode(m.body.as_deref().unwrap()).unwrap();
            match e.message {
                Message::PricingRefreshRegion(r) => got.push(r.region),
                other => panic!("{other:?}"),
            }
        }
        if got.len() == 2 {
            break;
        }
    }
    got.sort();
    assert_eq!(got, vec!["ap-east-2", "us-east-1-mia-1"]);
}

#[tokio::test]
async fn price_list_api_source_feeds_the_same_parser() {
    let (_env, ing, site, _) = setup(|c| c.pricing.source = PriceSource::Api).await;
    site.lock().unwrap().files.insert(
        "/files/api-us-east-1.json".into(),
        (
            offer(V2, "2025-06-01T00:00:00Z", "0.1000000000"),
            "\"api\"".into(),
        ),
    );
    let locations = ing.sources.list().await.unwrap();
    assert_eq!(locations.len(), 1);
    assert_eq!(locations[0].version.as_deref(), Some(V2));
    let out = ing.refresh_region("us-east-1").await.unwrap();
    assert!(
        matches!(out, RegionOutcome::Ingested { ref version, .. } if version == V2),
        "{out:?}"
    );
    let cur = ing.store.current("us-east-1").await.unwrap().unwrap();
    assert!(
        cur.source
            .starts_with("arn:aws:pricing:::price-list/aws/AmazonEC2/USD/"),
        "{}",
        cur.source
    );
    let m5 = ing
        .store
        .instance_prices("us-east-1", V2, "m5.large", "Shared")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m5_linux(&m5), 0.1);
    // Unchanged on the second run, without asking for the file URL again.
    assert_eq!(
        ing.refresh_region("us-east-1").await.unwrap(),
        RegionOutcome::Unchanged { version: V2.into() }
    );
    assert_eq!(
        site.lock().unwrap().downloads["/files/api-us-east-1.json"],
        1
    );
}

#[tokio::test]
async fn spot_history_from_moto_is_kept_and_looked_up_by_time() {
    let (_env, ing, _site, _) = setup(|_| {}).await;
    let summary = ing.refresh_spot(&["us-east-1".to_string()]).await.unwrap();
    assert_eq!(summary.regions, 1);
    assert!(summary.points > 100, "{summary:?}");
    let cursor = ing.store.spot_cursor("us-east-1").await.unwrap().unwrap();
    let history = ing
        .store
        .spot_history("us-east-1", "m5.large")
        .await
        .unwrap();
    assert!(!history.is_empty());
    let p = &history[0];
    assert!(p.availability_zone.starts_with("us-east-1"));
    assert_eq!(p.product_description, "Linux/UNIX (Amazon VPC)");
    assert!(p.at <= cursor.newest);
    let found = ing
        .store
        .spot_price_at(
            "us-east-1",
            "m5.large",
            &p.availability_zone,
            &p.product_description,
            p.at + chrono::Duration::hours(5),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.usd_per_hour, p.usd_per_hour);
    // Before the first point: nothing.
    assert!(
        ing.store
            .spot_price_at(
                "us-east-1",
                "m5.large",
                &p.availability_zone,
                &p.product_description,
                p.at - chrono::Duration::seconds(1)
            )
            .await
            .unwrap()
            .is_none()
    );
    // A second refresh writes the same keys (idempotent).
    ing.refresh_spot(&["us-east-1".to_string()]).await.unwrap();
    assert_eq!(
        ing.store
            .spot_history("us-east-1", "m5.large")
            .await
            .unwrap()
            .len(),
        history.len()
    );
}

/// From the queue, a spot refresh of several regions only queues one
/// message per region (a crash then redoes one region, not all); a
/// message of one region is refreshed at once.
#[tokio::test]
async fn a_spot_refresh_of_several_regions_is_split_into_one_message_per_region() {
    use pricing::ingest::SpotWork;

    let (env, ing, _site, _) = setup(|_| {}).await;
    let regions = ["us-east-1".to_string(), "eu-west-1".to_string()];
    assert_eq!(
        ing.handle_spot(&regions).await.unwrap(),
        SpotWork::FannedOut(regions.to_vec())
    );
    // Nothing stored by the fan-out itself.
    assert!(ing.store.spot_cursor("us-east-1").await.unwrap().is_none());
    let url = env.queue_url(Service::Pricing).await;
    let mut queued: Vec<Vec<String>> = env
        .receive_envelopes(&url, |got| got.len() >= 2)
        .await
        .into_iter()
        .map(|e| match e.message {
            Message::PricingRefreshSpot(s) => s.regions,
            other => panic!("unexpected message on the pricing queue: {other:?}"),
        })
        .collect();
    queued.sort();
    assert_eq!(
        queued,
        vec![vec!["eu-west-1".to_string()], vec!["us-east-1".to_string()]]
    );
    // One region's message is the work itself.
    let SpotWork::Refreshed(summary) = ing.handle_spot(&queued[1]).await.unwrap() else {
        panic!("one region must be refreshed, not split");
    };
    assert_eq!(summary.regions, 1);
    assert!(summary.points > 100, "{summary:?}");
    assert!(ing.store.spot_cursor("us-east-1").await.unwrap().is_some());
}

#[tokio::test]
async fn through_the_queue_a_good_refresh_is_acknowledged_a_bad_file_ends_in_the_dlq() {
    use kopter_runtime::worker::WorkerSettings;
    use kopter_runtime::{SqsQueue, Worker};
    use kopter_tests::eventually;
    use std::time::Duration;

    let (env, ing, site, _) = setup(|c| c.queues.max_receive_count = 2).await;
    publish(
        &site,
        &[(
            "us-east-1",
            V1,
            offer(V1, "2025-05-23T23:27:44Z", "0.0960000000"),
        )],
    );
    let q = SqsQueue::resolve(env.sqs(), &env.ctx.names.queue(Service::Pricing))
        .await
        .unwrap();
    let token = tokio_util::sync::CancellationToken::new();
    let worker = Worker::new(
        Arc::new(q),
        Arc::new(pricing::PricingHandler(ing.clone())),
        WorkerSettings::from(&env.config.worker),
    );
    let task = tokio::spawn(worker.run(token.clone()));
    let url = env.queue_url(Service::Pricing).await;
    let send = |region: &str| {
        let body = kopter_runtime::messaging::envelope(Message::PricingRefreshRegion(
            kopter_schema::messages::RegionOnly {
                region: region.into(),
            },
        ))
        .to_json();
        let (env, url) = (&env, url.clone());
        async move { env.send_raw(&url, &body).await }
    };
    send("us-east-1").await;
    eventually("us-east-1 priced", Duration::from_secs(30), || async {
        ing.store.current("us-east-1").await.unwrap()
    })
    .await;

    // A truncated new version: retried, then in the DLQ; V1 stays.
    let good = offer(V2, "2025-06-01T00:00:00Z", "0.1000000000");
    publish(
        &site,
        &[("us-east-1", V2, good[..good.len() / 2].to_string())],
    );
    send("us-east-1").await;
    let dlq = env.dlq_url(Service::Pricing).await;
    eventually(
        "the bad refresh in the DLQ",
        Duration::from_secs(60),
        || async { (env.depth(&dlq).await.0 == 1).then_some(()) },
    )
    .await;
    let path = format!("/offers/v1.0/aws/AmazonEC2/{V2}/us-east-1/index.json");
    assert_eq!(site.lock().unwrap().downloads[&path], 2, "tried twice");
    assert_eq!(
        ing.store
            .current("us-east-1")
            .await
            .unwrap()
            .unwrap()
            .version,
        V1
    );
    assert_eq!(env.depth(&url).await, (0, 0));
    token.cancel();
    let summary = task.await.unwrap();
    assert!(summary.failed >= 2, "{summary:?}");
}

#[tokio::test]
async fn real_region_index_lists_every_region_with_its_version() {
    let (_env, ing, site, base) = setup(|_| {}).await;
    publish(&site, &[]);
    site.lock().unwrap().files.insert(
        "/offers/v1.0/aws/AmazonEC2/current/region_index.json".into(),
        (
            include_str!("fixtures/region_index_20250523.json").into(),
            "\"ri\"".into(),
        ),
    );
    let locations = ing.sources.list().await.unwrap();
    assert_eq!(locations.len(), 101);
    assert!(locations.iter().all(|l| l.version.as_deref() == Some(V1)));
    for region in [
        "ca-west-1",
        "il-central-1",
        "us-gov-west-1",
        "us-east-1-mia-1",
        "us-east-1",
    ] {
        let l = locations.iter().find(|l| l.region == region).unwrap();
        assert_eq!(
            l.source(),
            format!("{base}/offers/v1.0/aws/AmazonEC2/{V1}/{region}/index.json")
        );
    }
}

/// A stand-in EC2 endpoint answering DescribeSpotPriceHistory with a real
/// response (first page), then an empty page.
async fn fake_ec2() -> String {
    async fn answer(body: String) -> Response {
        assert!(body.contains("Action=DescribeSpotPriceHistory"), "{body}");
        let xml = if body.contains("NextToken=") {
            r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeSpotPriceHistoryResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r2</requestId><spotPriceHistorySet/><nextToken></nextToken></DescribeSpotPriceHistoryResponse>"#
                .to_string()
        } else {
            include_str!("fixtures/describe_spot_price_history.xml").to_string()
        };
        Response::builder()
            .header(header::CONTENT_TYPE, "text/xml")
            .body(Body::from(xml))
            .unwrap()
    }
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().route("/", post(answer));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test]
async fn spot_history_golden_from_a_real_response() {
    let (_env, mut ing, _site, _) = setup(|_| {}).await;
    let ec2 = fake_ec2().await;
    ing.sdk = ing.sdk.into_builder().endpoint_url(ec2).build();
    let summary = ing.refresh_spot(&["us-west-2".to_string()]).await.unwrap();
    assert_eq!(summary.regions, 1);
    // 1000 items; a few repeat the same type/AZ/product/time.
    assert!(
        summary.points > 900 && summary.points <= 1000,
        "{summary:?}"
    );
    let at = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .with_timezone(&Utc)
    };
    let price = |t: &'static str, az: &'static str, p: &'static str, when: &'static str| {
        let store = ing.store.clone();
        async move {
            store
                .spot_price_at("us-west-2", t, az, p, at(when))
                .await
                .unwrap()
                .map(|p| p.usd_per_hour)
        }
    };
    // Hand-checked against the response: m1.small us-west-2b Linux/UNIX
    // was 0.02 from 13:30:15 and 0.01 from 13:35:55.
    assert_eq!(
        price(
            "m1.small",
            "us-west-2b",
            "Linux/UNIX",
            "2013-03-20T13:33:00Z"
        )
        .await,
        Some(0.02)
    );
    assert_eq!(
        price(
            "m1.small",
            "us-west-2b",
            "Linux/UNIX",
            "2013-03-20T13:35:55Z"
        )
        .await,
        Some(0.01)
    );
    assert_eq!(
        price("m1.large", "us-west-2c", "Windows", "2013-03-20T14:00:00Z").await,
        Some(0.106)
    );
    // m2.xlarge us-west-2a Linux/UNIX: first seen 2013-03-17T14:35:51.
    assert_eq!(
        price(
            "m2.xlarge",
            "us-west-2a",
            "Linux/UNIX",
            "2013-03-17T14:35:50Z"
        )
        .await,
        None
    );
    assert_eq!(
        price(
            "m2.xlarge",
            "us-west-2a",
            "Linux/UNIX",
            "2013-03-17T14:35:51Z"
        )
        .await,
        Some(0.056)
    );
    let cursor = ing.store.spot_cursor("us-west-2").await.unwrap().unwrap();
    assert_eq!(cursor.newest, at("2013-03-20T13:35:55Z"));
}

#[tokio::test]
async fn a_local_file_is_stored_for_its_region_only() {
    let (_env, ing, _site, _) = setup(|_| {}).await;
    let body = offer(V1, "2025-05-23T23:27:44Z", "0.0960000000").into_bytes();
    let (outcome, meta, counts) = ing
        .ingest_reader(
            std::io::Cursor::new(body.clone()),
            "index.json",
            "us-east-1",
        )
        .await
        .unwrap();
    assert!(matches!(
        outcome,
        RegionOutcome::Ingested {
            committed: true,
            ..
        }
    ));
    assert_eq!((meta.version.as_str(), counts.on_demand), (V1, 3));
    let cur = ing.store.current("us-east-1").await.unwrap().unwrap();
    assert_eq!(cur.source, "file:index.json");
    // The file has no eu-west-1 prices: refused, nothing made current.
    let err = ing
        .ingest_reader(std::io::Cursor::new(body), "index.json", "eu-west-1")
        .await
        .unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("index.json (region eu-west-1)")
            && err.contains("no on-demand instance price for region eu-west-1"),
        "{err}"
    );
    assert!(ing.store.current("eu-west-1").await.unwrap().is_none());
}

#[tokio::test]
async fn spot_window_reads_the_point_in_force_and_the_changes_of_the_window_only() {
    use kopter_store::prices::SpotPoint;

    let (env, ing, _site, _) = setup(|_| {}).await;
    let at = |h: u32, m: u32| Utc.with_ymd_and_hms(2025, 6, 2, h, m, 0).unwrap();
    let vpc = "Linux/UNIX (Amazon VPC)";
    let points = [
        ("us-east-1a", vpc, at(1, 0), 0.03),
        ("us-east-1a", vpc, at(5, 0), 0.04),
        ("us-east-1a", vpc, at(10, 30), 0.05),
        ("us-east-1a", vpc, at(12, 0), 0.06),
        ("us-east-1a", vpc, at(15, 0), 0.07),
        // Other products and AZs of the same partition stay out.
        ("us-east-1a", "Linux/UNIX", at(9, 0), 0.5),
        ("us-east-1a", "Windows (Amazon VPC)", at(10, 45), 0.9),
        ("us-east-1b", vpc, at(10, 0), 0.8),
    ];
    for (az, product, when, usd) in points {
        let p = SpotPoint::new("us-east-1", "m5.large", az, product, when, usd);
        env.put_row(kopter_schema::Table::Prices, &p).await;
    }
    let window = |from, to| {
        let store = &ing.store;
        async move {
            store
                .spot_window("us-east-1", "m5.large", "us-east-1a", vpc, from, to)
                .await
                .unwrap()
                .into_iter()
                .map(|p| (p.at, p.usd_per_hour))
                .collect::<Vec<_>>()
        }
    };
    // In force at 10:00 (05:00), then the change at 10:30; 12:00 is the
    // window's end, not in it.
    assert_eq!(
        window(at(10, 0), at(12, 0)).await,
        vec![(at(5, 0), 0.04), (at(10, 30), 0.05)]
    );
    // A window starting on a change has it once.
    assert_eq!(
        window(at(10, 30), at(13, 0)).await,
        vec![(at(10, 30), 0.05), (at(12, 0), 0.06)]
    );
    // Before the first point: only what changes inside.
    assert_eq!(window(at(0, 0), at(2, 0)).await, vec![(at(1, 0), 0.03)]);
    // After the last: the last one, in force.
    assert_eq!(window(at(20, 0), at(21, 0)).await, vec![(at(15, 0), 0.07)]);
}
