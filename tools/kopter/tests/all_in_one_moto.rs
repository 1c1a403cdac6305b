//! `kopter` with everything (against moto): the five workers and the api
//! in one process, one `/readyz` covering the queues and the api, the api
//! reading DynamoDB through the same AWS context, and one drain.

use std::time::Duration;

use kopter_dev_issuer::{DevIssuer, TokenRequest};
use kopter_schema::Service;
use kopter_tests::{TestEnv, eventually, http_get};
use tokio_util::sync::CancellationToken;

fn free_addr() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn the_workers_and_the_api_run_and_drain_together() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("dev-issuer-key.json");
    let (telemetry, api_addr) = (free_addr(), free_addr());
    let env = TestEnv::with(|c| {
        c.telemetry.listen = telemetry;
        c.api.listen = api_addr;
        c.api.dev_issuer = true;
        c.api.dev_issuer_key_file = key_file.clone();
        c.api.public_url = format!("http://{api_addr}");
    })
    .await;
    env.create_tenants(&["acme"]).await;
    let api = api::process::Api::from_config(&env.ctx.config, &env.ctx.aws).unwrap();
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let ctx = env.ctx.clone();
    let task =
        tokio::spawn(
            async move { kopter::run_with_api(&ctx, &Service::ALL, Some(api), stop).await },
        );

    let http = reqwest::Client::new();
    eventually("/readyz answers 200", Duration::from_secs(30), || {
        let http = http.clone();
        async move {
            let r = http.get(format!("http://{telemetry}/readyz")).send().await;
            r.ok().filter(|r| r.status() == 200).map(|_| ())
        }
    })
    .await;

    // The api answers a token from its issuer with rows read from moto's
    // DynamoDB (no price catalogue written: an empty page, not an error).
    let c = &env.config.api;
    let token = DevIssuer::load_or_create(&key_file)
        .unwrap()
        .mint(&TokenRequest {
            tenant: "acme".into(),
            roles: vec![],
            ttl: Duration::from_secs(300),
            subject: "alice".into(),
            issuer: kopter_dev_issuer::issuer_url(&c.public_url),
            audience: c.audience.clone(),
            tenant_claim: c.tenant_claim.clone(),
            roles_claim: c.roles_claim.clone(),
        })
        .unwrap();
    let prices = http
        .get(format!("http://{api_addr}/v1/prices?region=eu-west-1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let status = prices.status();
    let body: serde_json::Value = prices.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"], serde_json::json!([]), "{body}");

    // The metrics page is the process's: worker and api series together.
    let (_, metrics) = http_get(telemetry, "/metrics").await;
    assert!(metrics.contains("kopter_api_"), "api metrics missing");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("drains within 20 s")
        .unwrap()
        .expect("clean drain");
    assert!(tokio::net::TcpStream::connect(api_addr).await.is_err());
}
