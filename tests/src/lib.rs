//! Test harness for integration tests against a local AWS endpoint.
//!
//! The endpoint comes from `MOTO_ENDPOINT` (set by `make test`,
//! which starts moto on 127.0.0.1). Without it the tests fail loudly rather
//! than skip. Every [`TestEnv`] gets its own random environment name, so its
//! queues, topic and tables are its own and tests can run in parallel
//! against one moto server.

pub mod faults;
pub mod queries;

use std::net::SocketAddr;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use kopter_runtime::config::Config;
use kopter_runtime::{ServiceContext, provision};
use kopter_schema::Service;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The local AWS endpoint; panics with instructions when unset.
pub fn endpoint() -> String {
    match std::env::var("MOTO_ENDPOINT") {
        Ok(e) if !e.is_empty() => e,
        _ => panic!(
            "integration tests need a local AWS endpoint: run `make test`, or `make moto-start` \
             and export MOTO_ENDPOINT=http://127.0.0.1:5055 AWS_ACCESS_KEY_ID=testing \
             AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1"
        ),
    }
}

/// A DynamoDB endpoint that replaces moto's for DynamoDB only
/// (`DYNAMODB_ENDPOINT`, set by `make test`'s DynamoDB Local step: AWS's
/// own, stricter emulator), or `None` to use moto for everything.
pub fn dynamodb_endpoint() -> Option<String> {
    std::env::var("DYNAMODB_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
}

/// A unique lowercase name with a prefix.
pub fn unique(prefix: &str) -> String {
    let n: u32 = rand::random();
    format!("{prefix}{n:08x}")
}

/// A random 12-digit account id (moto keeps per-account state, so tests
/// that create resources use their own accounts).
pub fn random_account() -> String {
    let n: u64 = rand::random::<u64>() % 900_000_000_000 + 100_000_000_000;
    n.to_string()
}

/// One isolated environment on the local endpoint.
pub struct TestEnv {
    pub config: Config,
    pub ctx: ServiceContext,
}

impl TestEnv {
    /// A bootstrapped environment with test-friendly timings.
    pub async fn new() -> Self {
        Self::with(|_| {}).await
    }

    /// Like [`TestEnv::new`], with config changes applied before bootstrap.
    pub async fn with(tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::defaults(None);
        config.env = unique("t-");
        config.aws.endpoint_url = Some(endpoint());
        config.aws.dynamodb_endpoint_url = dynamodb_endpoint();
        config.aws.region = Some("us-east-1".into());
        config.telemetry.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.worker.wait_time_seconds = 1;
        config.worker.visibility_timeout = Duration::from_secs(10);
        config.worker.heartbeat_interval = Duration::from_secs(3);
        config.worker.shutdown_grace = Duration::from_secs(2);
        config.worker.retry_base = Duration::from_secs(1);
        config.worker.retry_max = Duration::from_secs(2);
        tweak(&mut config);
        config.validate().expect("test config is valid");
        let ctx = ServiceContext::new(config.clone(), None).await;
        provision::bootstrap(&ctx.aws, &config)
            .await
            .expect("bootstrap the test environment");
        Self { config, ctx }
    }

    /// Environment variables that point a Kopter binary at this env.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        let mut vars = vec![
            ("KOPTER_ENV".into(), self.config.env.clone()),
            ("KOPTER_AWS__ENDPOINT_URL".into(), endpoint()),
            ("KOPTER_AWS__REGION".into(), "us-east-1".into()),
            ("KOPTER_TELEMETRY__LISTEN".into(), "127.0.0.1:0".into()),
            ("KOPTER_TELEMETRY__LOG_FORMAT".into(), "json".into()),
            ("KOPTER_WORKER__WAIT_TIME_SECONDS".into(), "1".into()),
            // What bootstrap compares queues against, as in `TestEnv::with`.
            (
                "KOPTER_WORKER__VISIBILITY_TIMEOUT".into(),
                format!("{}s", self.config.worker.visibility_timeout.as_secs()),
            ),
            (
                "KOPTER_WORKER__HEARTBEAT_INTERVAL".into(),
                format!("{}s", self.config.worker.heartbeat_interval.as_secs()),
            ),
            (
                "KOPTER_QUEUES__MAX_RECEIVE_COUNT".into(),
                self.config.queues.max_receive_count.to_string(),
            ),
            // Keep a developer's kopter.toml out of the tests.
            ("KOPTER_CONFIG".into(), "/nonexistent/kopter.toml".into()),
        ];
        if let Some(url) = dynamodb_endpoint() {
            vars.push(("KOPTER_AWS__DYNAMODB_ENDPOINT_URL".into(), url));
        }
        vars
    }

    /// Creates an on-demand table `kopter-{env}-{suffix}` keyed by a
    /// string `pk` only, for tests whose subject is DynamoDB's wire
    /// behaviour rather than a Kopter table; returns its name.
    pub async fn create_scratch_table(&self, suffix: &str) -> String {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        };
        let table = format!("kopter-{}-{suffix}", self.config.env);
        self.ctx
            .aws
            .dynamodb()
            .create_table()
            .table_name(&table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("pk")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("name and type are set"),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("pk")
                    .key_type(KeyType::Hash)
                    .build()
                    .expect("name and key type are set"),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("create table {table}: {e:?}"));
        table
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        self.ctx.aws.sqs()
    }

    /// Runs `program` — a binary of the workspace, as a test sees it in
    /// `env!("CARGO_BIN_EXE_…")` — against this environment.
    pub async fn run(&self, program: &str, args: &[&str]) -> std::process::Output {
        tokio::process::Command::new(program)
            .envs(self.env_vars())
            .args(args)
            .output()
            .await
            .unwrap_or_else(|e| panic!("run {program}: {e}"))
    }

    /// Creates tenants (`kopterctl tenants create`): every verb and the
    /// api refuse a tenant that was not created.
    pub async fn create_tenants(&self, tenants: &[&str]) {
        let store =
            kopter_store::tenants::TenantStore::new(self.ctx.aws.dynamodb(), &self.ctx.names);
        for t in tenants {
            let id = kopter_schema::TenantId::new(*t).expect("a valid tenant id");
            store
                .create(&id)
                .await
                .unwrap_or_else(|e| panic!("create tenant {t}: {e:#}"));
        }
    }

    /// Puts `row` into this environment's `table`, as the service that owns
    /// the table would write it.
    pub async fn put_row<T: serde::Serialize>(&self, table: kopter_schema::Table, row: &T) {
        self.ctx
            .aws
            .dynamodb()
            .put_item()
            .table_name(self.ctx.names.table(table))
            .set_item(Some(
                serde_dynamo::to_item(row).expect("row encodes as an item"),
            ))
            .send()
            .await
            .unwrap_or_else(|e| panic!("put a row into {table:?}: {e:?}"));
    }

    pub async fn queue_url(&self, service: Service) -> String {
        self.url_of(&self.ctx.names.queue(service)).await
    }

    pub async fn dlq_url(&self, service: Service) -> String {
        self.url_of(&self.ctx.names.dlq(service)).await
    }

    async fn url_of(&self, name: &str) -> String {
        self.sqs()
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("queue {name}: {e:?}"))
            .queue_url
            .expect("queue url")
    }

    pub async fn send_raw(&self, url: &str, body: &str) {
        self.sqs()
            .send_message()
            .queue_url(url)
            .message_body(body)
            .send()
            .await
            .expect("send message");
    }

    /// `(visible, in flight)` of a queue.
    pub async fn depth(&self, url: &str) -> (u64, u64) {
        let attrs = self
            .sqs()
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .unwrap_or_default();
        let get = |k| {
            attrs
                .get(&k)
                .and_then(|v: &String| v.parse().ok())
                .unwrap_or(0)
        };
        (
            get(QueueAttributeName::ApproximateNumberOfMessages),
            get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }

    /// Receives up to 10 messages (short wait), hiding them for `hide`.
    pub async fn receive(&self, url: &str, hide: Duration) -> Vec<aws_sdk_sqs::types::Message> {
        self.sqs()
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(hide.as_secs() as i32)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default()
    }

    /// The envelopes on `url`, received (and left in flight for 30 s) up
    /// to five times until `enough` says so; panics on a body that is not
    /// an envelope.
    pub async fn receive_envelopes(
        &self,
        url: &str,
        enough: impl Fn(&[kopter_schema::Envelope]) -> bool,
    ) -> Vec<kopter_schema::Envelope> {
        let mut got = Vec::new();
        for _ in 0..5 {
            for m in self.receive(url, Duration::from_secs(30)).await {
                let body = m.body.as_deref().unwrap_or_default();
                got.push(
                    kopter_schema::Envelope::decode(body)
                        .unwrap_or_else(|e| panic!("not an envelope on {url}: {e:#}: {body}")),
                );
            }
            if enough(&got) {
                break;
            }
        }
        got
    }
}

/// Polls `check` every 200 ms until it returns `Some`, or panics naming
/// `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A minimal HTTP GET, returning `(status, body)`.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // HTTP/1.0: the answer comes unchunked and the server closes.
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write request");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read response");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
