//! The all-in-one runs the api: it serves on `api.listen`, its readiness is
//! part of the one `/readyz`, it answers tokens of the configured issuer,
//! and it stops on shutdown. No AWS is reachable (no queue service runs).

use std::net::SocketAddr;
use std::time::Duration;

use kopter::Part;
use kopter_dev_issuer::{DevIssuer, TokenRequest};
use kopter_runtime::{Config, ServiceContext};
use kopter_schema::Service;
use tokio_util::sync::CancellationToken;

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::defaults(None);
    c.env = "local".into();
    // Never reached: no queue service runs in these tests.
    c.aws.endpoint_url = Some("http://127.0.0.1:9".into());
    c.aws.region = Some("us-east-1".into());
    c.telemetry.listen = free_addr();
    c.api.listen = free_addr();
    c.api.dev_issuer = true;
    c.api.dev_issuer_key_file = dir.join("dev-issuer-key.json");
    c.api.public_url = format!("http://{}", c.api.listen);
    c
}

#[test]
fn parts_are_the_five_services_and_the_api() {
    assert_eq!("api".parse::<Part>(), Ok(Part::Api));
    assert_eq!(
        "trail-ingest".parse::<Part>(),
        Ok(Part::Service(Service::TrailIngest))
    );
    let err = "apii".parse::<Part>().unwrap_err();
    assert!(
        err.contains("\"apii\"") && err.contains("api") && err.contains("notifier"),
        "{err}"
    );
    let all = Part::all();
    assert_eq!(all.len(), Service::ALL.len() + 1);
    assert!(all.contains(&Part::Api));
    for s in Service::ALL {
        assert!(all.contains(&Part::Service(s)));
        assert_eq!(
            Part::Service(s).to_string().parse::<Part>(),
            Ok(Part::Service(s))
        );
    }
}

#[tokio::test]
async fn a_configuration_the_api_cannot_serve_with_is_refused_before_it_listens() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.api.dev_issuer = false;
    let ctx = ServiceContext::new(c.clone(), None).await;
    let err = api::process::Api::from_config(&ctx.config, &ctx.aws)
        .err()
        .expect("no issuer");
    assert!(format!("{err:#}").contains("no token issuer"), "{err:#}");

    // In prod the cursor key is required of a process serving the api.
    c.env = "prod".into();
    c.api.issuers = vec!["https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_x".into()];
    c.validate().expect("valid for a worker");
    let ctx = ServiceContext::new(c, None).await;
    let err = api::process::Api::from_config(&ctx.config, &ctx.aws)
        .err()
        .expect("no cursor key");
    assert!(format!("{err:#}").contains("api.cursor_key"), "{err:#}");
    assert!(
        std::net::TcpStream::connect(ctx.config.api.listen).is_err(),
        "nothing listens after a refused configuration"
    );
}

#[tokio::test]
async fn the_api_alone_runs_in_the_all_in_one_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let (api_addr, telemetry) = (c.api.listen, c.telemetry.listen);
    let issuer = kopter_dev_issuer::issuer_url(&c.api.public_url);
    let (audience, tenant_claim, roles_claim) = (
        c.api.audience.clone(),
        c.api.tenant_claim.clone(),
        c.api.roles_claim.clone(),
    );
    let ctx = ServiceContext::new(c, None).await;
    let api = api::process::Api::from_config(&ctx.config, &ctx.aws).unwrap();
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let task = tokio::spawn(async move { kopter::run_with_api(&ctx, &[], Some(api), stop).await });

    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ready = http
            .get(format!("http://{telemetry}/readyz"))
            .send()
            .await
            .map(|r| r.status().as_u16());
        if matches!(ready, Ok(200)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz not 200: {ready:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A token of the configured (dev) issuer is accepted; none is 401.
    let key = DevIssuer::load_or_create(&dir.path().join("dev-issuer-key.json")).unwrap();
    let token = key
        .mint(&TokenRequest {
            tenant: "acme".into(),
            roles: vec![],
            ttl: Duration::from_secs(300),
            subject: "alice".into(),
            issuer,
            audience,
            tenant_claim,
            roles_claim,
        })
        .unwrap();
    let me = http
        .get(format!("http://{api_addr}/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    // The token is accepted (not 401); whether its tenant exists is read
    // from DynamoDB, which is unreachable here: a 503 that says so. (The
    // answer with a reachable DynamoDB is `all_in_one_moto.rs`'s.)
    let status = me.status();
    let body = me.text().await.unwrap();
    assert_eq!(status, 503, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["type"], "urn:kopter:problem:unavailable", "{body}");
    let anonymous = http
        .get(format!("http://{api_addr}/v1/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    // Not stopped by anything but shutdown (no services: the api alone
    // keeps it running).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!task.is_finished());
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops within 10 s")
        .unwrap()
        .expect("clean stop");
    assert!(
        tokio::net::TcpStream::connect(api_addr).await.is_err(),
        "the api no longer listens"
    );
}
