//! Kopter's own memory per onboarded account, at 1,000 and 10,000
//! simulated accounts, next to a naive baseline in the same run.
//!
//! A local HTTP server answers STS `AssumeRole` (with a realistic ~900-byte
//! session token) and EC2 `DescribeInstances` (empty), so no AWS and no
//! moto is involved. For every account the describer's real path runs once:
//! AssumeRole through the runtime's `CredentialCache`, an EC2 client with
//! its own retry partition (`ec2_client_for_account`), one
//! describe call, and the per-account concurrency permit. What stays
//! allocated afterwards is the per-account state (credential cache entry,
//! retry partition state, permit), measured with a counting allocator.
//!
//! Baseline: the naive design that keeps one loaded `SdkConfig` + EC2
//! client (own credentials provider, own HTTP client) per account.
//!
//! `cargo run --release -p describer --example bench_accounts`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use aws_config::BehaviorVersion;
use describer::{AccountAccess, AssumedRoles};
use kopter_runtime::config::Config;
use kopter_runtime::{AwsContext, CredentialCache, CustomerRole};
use kopter_schema::{AccountId, TenantId};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn rss_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn fake_aws(body: String) -> axum::response::Response<String> {
    let token = "F".repeat(900);
    let xml = if body.contains("Action=AssumeRole") {
        format!(
            r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult><Credentials><AccessKeyId>ASIAEXAMPLEEXAMPLE01</AccessKeyId><SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY</SecretAccessKey><SessionToken>{token}</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials><AssumedRoleUser><Arn>arn:aws:sts::111122223333:assumed-role/KopterAccess/kopter-describer-acme</Arn><AssumedRoleId>AROAEXAMPLE:kopter-describer-acme</AssumedRoleId></AssumedRoleUser></AssumeRoleResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></AssumeRoleResponse>"#
        )
    } else {
        r#"<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId><reservationSet/></DescribeInstancesResponse>"#.to_owned()
    };
    axum::response::Response::builder()
        .header("content-type", "text/xml")
        .body(xml)
        .unwrap()
}

fn role(n: usize) -> CustomerRole {
    let account = format!("{:012}", 100_000_000_000u64 + n as u64);
    CustomerRole {
        tenant: TenantId::new(format!("tenant-{}", n % 100)).unwrap(),
        account: AccountId::new(account.clone()).unwrap(),
        role_arn: format!("arn:aws:iam::{account}:role/KopterAccess"),
        external_id: kopter_runtime::accounts::new_external_id(),
    }
}

/// Kopter's path: returns bytes still allocated per account afterwards.
async fn kopter(aws: &AwsContext, config: &Config, n: usize) -> f64 {
    let before = live();
    let credentials = CredentialCache::new(aws.sts(), "describer", &config.credentials);
    let permits = describer::describe::permit_cache();
    let access = AssumedRoles {
        base: aws.sdk.clone(),
        credentials: credentials.clone(),
    };
    for i in 0..n {
        let r = role(i);
        let ec2 = access.ec2(&r, "us-east-1").await.expect("assume");
        ec2.describe_instances().send().await.expect("describe");
        let sem = permits
            .get_with_by_ref(&r.account, async {
                Arc::new(tokio::sync::Semaphore::new(2))
            })
            .await;
        drop(sem.acquire().await.unwrap());
    }
    permits.run_pending_tasks().await;
    let after = live();
    let per = (after - before) as f64 / n as f64;
    drop((credentials, permits, access));
    per
}

/// Naive: one loaded SdkConfig and client kept per account.
async fn naive(endpoint: &str, n: usize) -> f64 {
    let before = live();
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let r = role(i);
        let base = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region("us-east-1")
            .load()
            .await;
        let provider = aws_config::sts::AssumeRoleProvider::builder(&r.role_arn)
            .external_id(&r.external_id)
            .session_name("kopter-describer")
            .configure(&base)
            .build()
            .await;
        let conf = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region("us-east-1")
            .credentials_provider(provider)
            .load()
            .await;
        let ec2 = aws_sdk_ec2::Client::new(&conf);
        ec2.describe_instances().send().await.expect("describe");
        clients.push(ec2);
    }
    let after = live();
    let per = (after - before) as f64 / n as f64;
    drop(clients);
    per
}

#[tokio::main]
async fn main() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let app = axum::Router::new().fallback(axum::routing::post(fake_aws));
        axum::serve(listener, app).await.unwrap();
    });
    // SAFETY: set before any other thread reads the environment.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "kopter");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "kopter");
    }
    let mut config = Config::defaults(None);
    config.aws.endpoint_url = Some(endpoint.clone());
    config.aws.region = Some("us-east-1".into());
    let aws = AwsContext::load(&config).await;
    // Warm up lazily initialised process-wide state (HTTP client, TLS
    // roots, metrics registry) so it is not charged to the accounts.
    kopter(&aws, &config, 10).await;
    naive(&endpoint, 10).await;

    println!(
        "{:>8} {:>22} {:>22} {:>7} {:>10}",
        "accounts", "kopter bytes/account", "naive bytes/account", "ratio", "seconds"
    );
    for n in [1_000usize, 10_000] {
        let t = Instant::now();
        let k = kopter(&aws, &config, n).await;
        let naive_n = if n > 1_000 { 1_000 } else { n };
        let b = naive(&endpoint, naive_n).await;
        println!(
            "{:>8} {:>22.0} {:>22.0} {:>6.1}x {:>10.1}",
            n,
            k,
            b,
            b / k,
            t.elapsed().as_secs_f64()
        );
    }
    println!(
        "target: <= 25600 bytes/account (25 KB); peak RSS {} MB (VmHWM)",
        rss_kb("VmHWM:") / 1024
    );
}
