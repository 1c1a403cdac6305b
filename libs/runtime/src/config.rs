//! Configuration: defaults → `kopter.toml` (optional) → `KOPTER_*` env.
//!
//! Nested keys are split on `__`: `KOPTER_WORKER__CONCURRENCY=8` sets
//! `worker.concurrency`. The file is `kopter.toml` in the working
//! directory, or the path in `KOPTER_CONFIG`. The standard AWS variables
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_PROFILE`, credentials) are read
//! by the AWS SDK itself; `aws.endpoint_url` / `aws.region` here override
//! them when set. After loading, [`Config::validate`] lists every problem
//! at once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use kopter_schema::{EnvName, Names, Service};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Environment name; prefixes every table, queue and topic
    /// (`{env}-kopter-…`). Default `dev`.
    pub env: String,
    pub aws: AwsConfig,
    pub worker: WorkerConfig,
    pub telemetry: TelemetryConfig,
    pub credentials: CredentialsConfig,
    pub queues: QueuesConfig,
    pub describer: DescriberConfig,
    pub trail: TrailConfig,
    pub pricing: PricingConfig,
    pub aggregator: AggregatorConfig,
    pub notifier: NotifierConfig,
    pub api: ApiConfig,
}

/// Default port of the api process's `/metrics` `/healthz` `/readyz`
/// server (the queue services use 9101-9105, the all-in-one 9100).
pub const API_TELEMETRY_PORT: u16 = 9106;

/// api settings: the tenant HTTP API (`services/api`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address of the API's HTTP listener. Default `0.0.0.0:8080`.
    pub listen: SocketAddr,
    /// Trusted OIDC issuers, exactly as they appear in tokens' `iss`
    /// (Cognito: `https://cognito-idp.{region}.amazonaws.com/{pool id}`).
    /// Keys come from `{issuer}/.well-known/openid-configuration` →
    /// `jwks_uri`. `https://` only, except loopback addresses. Default none.
    pub issuers: Vec<String>,
    /// The `aud` every token must carry (Cognito ID tokens: the app client
    /// id). Default `kopter`.
    pub audience: String,
    /// Claim holding the tenant id. Default `custom:tenant` (Cognito).
    pub tenant_claim: String,
    /// Claim holding the user's groups or roles (a list, or a
    /// space-separated string). Default `cognito:groups`.
    pub roles_claim: String,
    /// Group/role name that makes a user an admin of their tenant (admin
    /// endpoints: budgets, channels, backup policy). Every other signed-in
    /// user of a tenant is a viewer. Default `admin`.
    pub admin_role: String,
    /// Allowed clock skew for `exp` and `nbf`. Default 30 s (at most 5 min).
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// An issuer's keys are refetched at most this often when a token names
    /// an unknown `kid` (key rotation), so a flood of made-up `kid`s cannot
    /// turn into a flood of JWKS requests. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub jwks_refresh_interval: Duration,
    /// An issuer's keys are refetched when older than this. Default 1 h.
    #[serde(with = "humantime_serde")]
    pub jwks_max_age: Duration,
    /// Local development only: the API also runs its own OIDC issuer
    /// (`{public_url}/dev-issuer`, discovery + JWKS) whose signing key is
    /// in `dev_issuer_key_file`, so `kopterctl token` can mint tokens.
    /// Refused when `env` is `prod`. Default false.
    pub dev_issuer: bool,
    /// The dev issuer's signing key (created on first use, mode 0600).
    /// Default `.run/dev-issuer-key.json`.
    pub dev_issuer_key_file: PathBuf,
    /// The URL clients reach the API at; the dev issuer's `iss` is
    /// `{public_url}/dev-issuer`. Default `http://127.0.0.1:8080`.
    pub public_url: String,
    /// The tenant-access role assumed for every tenant's DynamoDB reads and
    /// writes, with the session tag `kopter-tenant=<tenant>` (its policy is
    /// Terraform's `tenant-read-policy`). Unset: the process's own
    /// credentials (local development). Default unset.
    pub tenant_role_arn: Option<String>,
    /// Key of the pagination cursors' MAC: base64 of at least 32 bytes.
    /// Unset: a random key per process (cursors do not survive a restart
    /// and are not shared between replicas); refused when `env` is `prod`.
    /// Default unset.
    pub cursor_key: Option<String>,
    /// Requests per second one tenant may make (sustained). Default 20.
    pub rate_limit_per_second: u32,
    /// Requests one tenant may make at once above the sustained rate.
    /// Default 40.
    pub rate_limit_burst: u32,
    /// Origins (`https://console.example.com`) allowed to call the API from
    /// a browser (CORS). Default none.
    pub cors_origins: Vec<String>,
    /// Longest accepted query string, in bytes; longer answers 414.
    /// Default 4096.
    pub max_query_bytes: usize,
    /// The issuer the web console signs users in with (authorization code
    /// flow with PKCE; its discovery document names the endpoints). Must
    /// be one of `issuers`, or the dev issuer. Unset: the dev issuer when
    /// `dev_issuer` is on, else the only entry of `issuers` (with several,
    /// it must be set). Default unset.
    pub console_issuer: Option<String>,
    /// The console's OAuth client id at that issuer (Cognito: the app
    /// client id). ID tokens carry it as `aud`, so it must equal
    /// `audience`. Unset: `audience`. Default unset.
    pub console_client_id: Option<String>,
    /// The console client's secret, for an issuer that requires one
    /// (Cognito app clients with a secret); sent with HTTP Basic auth to the
    /// token endpoint. Unset: a public client (PKCE only). Default unset.
    pub console_client_secret: Option<String>,
    /// Whether the console's cookies carry `Secure` (sent over HTTPS only).
    /// Must be on in env `prod`. Unset: on when `public_url` is `https://`,
    /// off for a local `http://` one. Default unset.
    pub console_cookie_secure: Option<bool>,
    /// Tenants the dev issuer's sign-in page offers (any tenant id can be
    /// typed in as well). Default `["acme", "globex"]` (the demo's).
    pub dev_issuer_tenants: Vec<String>,
}

/// describer settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DescriberConfig {
    /// Describe / backup jobs of one customer account running at once in
    /// one process (keeps Kopter under the customer's EC2 API rate
    /// limits). Default 2.
    pub account_concurrency: usize,
    /// Accounts a sweep resolves (regions, fan-out) at once. Default 16.
    pub sweep_concurrency: usize,
    /// Inventory rows written at once per job. Default 16.
    pub write_concurrency: usize,
}

/// notifier settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierConfig {
    /// How long feed rows are kept (DynamoDB TTL). Default 90 days.
    pub retention_days: u32,
    /// Events of one tenant and rule within this window are delivered as
    /// one message with a count, at the window's end. `0s` delivers each
    /// event at once. At most 15 min (the SQS delay limit). Default 5 min.
    #[serde(with = "humantime_serde")]
    pub burst_window: Duration,
    /// Sender address of notification emails (an SES-verified identity).
    /// Unset: email channels fail with that reason. Default unset.
    pub email_from: Option<String>,
    /// Time limit of one webhook request. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub webhook_timeout: Duration,
    /// Local development only: allow `http://` webhooks and loopback
    /// addresses (private, link-local and metadata addresses stay
    /// refused). Default false.
    pub webhook_allow_local: bool,
}

/// aggregator settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregatorConfig {
    /// Tag keys with their own cost roll-up (`--by tag:K`). Default
    /// `["team", "env"]`.
    pub rollup_tags: Vec<String>,
    /// How long price-graph rows are kept (DynamoDB TTL). Default 400 days.
    pub retention_days: u32,
    /// An hour costing at least this many times the previous one is a
    /// spike. Default 2.0.
    pub spike_factor: f64,
    /// …and at least this many USD more than it. Default 1.0.
    pub spike_min_usd: f64,
    /// A budget threshold is crossed by the forecast only after this much
    /// of the month has passed (by month-to-date cost at any time).
    /// Default 3 days.
    #[serde(with = "humantime_serde")]
    pub forecast_after: Duration,
    /// Accounts computed at once per message. Default 4.
    pub account_concurrency: usize,
    /// Largest backfill one message may ask for, in hours. Default 1488
    /// (62 days).
    pub max_backfill_hours: u32,
    /// Days of state history the hourly waste evaluation reads (a finding's
    /// `since` is no earlier than this, unless the resource's inventory row
    /// says its state is older). Default 35.
    pub waste_history_days: u32,
}

/// Where the pricing service reads the AWS Price List from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PriceSource {
    /// The public bulk API: offer index → region index → region file.
    Bulk,
    /// The Price List Query API (`ListPriceLists` + `GetPriceListFileUrl`).
    Api,
}

/// pricing settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricingConfig {
    /// `bulk` (default) or `api`.
    pub source: PriceSource,
    /// Base URL of the bulk price list (the offer index is
    /// `{offers_url}/offers/v1.0/aws/index.json`). Default AWS's public host.
    pub offers_url: String,
    /// Endpoint of the Price List Query API (source `api`); unset = AWS's.
    pub api_endpoint_url: Option<String>,
    /// Region of the Price List Query API (`us-east-1`, `eu-central-1` or
    /// `ap-south-1`). Default `us-east-1`.
    pub api_region: String,
    /// Only these regions (empty = every region the price list has).
    pub regions: Vec<String>,
    /// Spot price history fetched on the first refresh of a region
    /// (later refreshes continue from the newest point kept). Default 1 day.
    #[serde(with = "humantime_serde")]
    pub spot_lookback: Duration,
    /// Longest a single offer file download + parse may take. Default 30 min.
    #[serde(with = "humantime_serde")]
    pub download_timeout: Duration,
    /// DynamoDB batch writes in flight per region ingest. Default 8.
    pub write_concurrency: usize,
    /// Allow `http://` offer/file URLs (local development and tests only).
    pub allow_http: bool,
}

/// trail-ingest settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrailConfig {
    /// How long audit rows are kept (DynamoDB TTL). Default 365 days.
    pub retention_days: u32,
    /// A CloudTrail record larger than this is rejected. Default 8 MiB.
    pub max_record_bytes: usize,
    /// Audit segments (a file's records of one hour,
    /// `kopter_store::audit::Segment`) written at once per log file.
    /// Default 32.
    pub write_concurrency: usize,
    /// Attempts at one audit segment (each up to `aws.max_attempts` SDK
    /// attempts) when DynamoDB pushes back (throttling, 5xx, timeouts,
    /// resets), before its records — not the file — count as failed.
    /// Default 8.
    pub record_write_attempts: u32,
    /// Wait before a segment's second attempt; doubles per attempt up to 8 s,
    /// jittered. Default 250 ms.
    #[serde(with = "humantime_serde")]
    pub record_retry_backoff: Duration,
    /// How often the account directory (account → tenant, trail buckets)
    /// is reloaded. Default 60 s.
    #[serde(with = "humantime_serde")]
    pub directory_refresh: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// Endpoint for every AWS service (moto, LocalStack). Default: unset,
    /// i.e. `AWS_ENDPOINT_URL` or the real AWS endpoints.
    pub endpoint_url: Option<String>,
    /// Endpoint for DynamoDB only, winning over `endpoint_url` and the
    /// SDK's `AWS_ENDPOINT_URL_DYNAMODB` (e.g. AWS's DynamoDB Local while
    /// moto serves the rest). Default: unset.
    pub dynamodb_endpoint_url: Option<String>,
    /// Region of Kopter's own resources. Default: unset, i.e. `AWS_REGION`
    /// or the profile's region.
    pub region: Option<String>,
    /// Attempts per AWS call, first included (jittered exponential
    /// backoff between them). Default 5.
    pub max_attempts: u32,
    /// Retry mode of Kopter's own clients: `standard` (default) or
    /// `adaptive`. Adaptive adds the SDK's client-side rate limiter, which
    /// is process-wide per AWS service and cuts the send rate by 30 % on
    /// every throttle down to 0.5 requests/s — one hot table then slows
    /// every call to DynamoDB, heartbeats and receives to SQS included.
    /// Kopter slows its writers itself (`limiter`), so `standard` is the
    /// default. Clients into customer accounts use the same mode, each
    /// account and region with its own retry quota
    /// (`kopter_runtime::aws::ec2_client_for_account` says why).
    pub retry_mode: AwsRetryMode,
    /// Retry quota per AWS service and process, in tokens (the SDK's retry
    /// token bucket: a retry after a throttle or an error costs 5, after a
    /// timeout or connection failure 10; a retried call that succeeds
    /// gives its tokens back; an empty bucket means "no more retries").
    /// `0` disables the quota. Default 500 (the SDK's own).
    pub retry_quota: u32,
    /// Tokens the retry quota regains per second by itself, so a quota
    /// drained by a burst of throttling recovers without waiting for
    /// successes. Default 10.
    pub retry_quota_refill_per_second: f64,
    /// Time limit for opening a connection (TCP + TLS). Default 3 s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time limit of one attempt of one call, from sending the request to
    /// the parsed response. Must exceed the SQS long-poll wait
    /// (`worker.wait_time_seconds`) by 5 s. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub attempt_timeout: Duration,
    /// Time limit of a whole call, retries and backoff included. Default
    /// 60 s.
    #[serde(with = "humantime_serde")]
    pub operation_timeout: Duration,
}

/// `aws.retry_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AwsRetryMode {
    Standard,
    Adaptive,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Handlers running at once per service. Default 8.
    pub concurrency: usize,
    /// Long-poll wait, seconds (0-20). Default 20.
    pub wait_time_seconds: u32,
    /// Messages per receive (1-10). Default 10.
    pub max_messages: u32,
    /// Visibility timeout set on receive and by each heartbeat; also how
    /// long the messages of a process killed without SIGTERM stay
    /// invisible. Default 60 s (the trade-off: `queue/design.md`).
    #[serde(with = "humantime_serde")]
    pub visibility_timeout: Duration,
    /// Heartbeat period; at most half the visibility timeout (a third
    /// recommended). Default 20 s.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// On SIGTERM/SIGINT, how long in-flight handlers may finish before
    /// their messages are returned to the queue. Default 25 s (ECS gives 30).
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// First retry delay for a failed message (visibility set to this,
    /// doubling per receive, with jitter). Default 5 s.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    /// Longest retry delay. Default 5 min.
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// How long a handler that failed on AWS back-pressure (throttling,
    /// 5xx, timeouts, connection failures) is retried in-process, with
    /// jittered backoff while the heartbeat keeps its message invisible,
    /// before the message is returned to the queue. Such retries do not
    /// count against `queues.max_receive_count`. `0s` disables them.
    /// Default 2 min.
    #[serde(with = "humantime_serde")]
    pub backpressure_retry_budget: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Address of the `/metrics` `/healthz` `/readyz` server. Default
    /// `0.0.0.0:<service port>` (describer 9101 … notifier 9105).
    pub listen: SocketAddr,
    /// `auto` (pretty on a terminal, JSON otherwise), `json` or `pretty`.
    pub log_format: LogFormat,
    /// `tracing` filter directive. Default `info`; `RUST_LOG` wins if set.
    pub log_level: String,
    /// How often each worker polls its queue's and DLQ's depth and oldest
    /// message age for `/metrics` (1s-1h). Default 30 s.
    #[serde(with = "humantime_serde")]
    pub queue_poll_interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Json,
    Pretty,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsConfig {
    /// Customer accounts whose assumed-role credentials are cached.
    /// Default 20000.
    pub cache_capacity: u64,
    /// Assumed-role session length. Default 1 h (AWS minimum 15 min).
    #[serde(with = "humantime_serde")]
    pub session_duration: Duration,
    /// Refresh credentials this long before they expire. Default 5 min.
    #[serde(with = "humantime_serde")]
    pub refresh_before_expiry: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueuesConfig {
    /// Receives before a message moves to its DLQ. Default 5.
    pub max_receive_count: u32,
    /// How long the DLQ keeps messages. Default 14 days (the SQS maximum).
    #[serde(with = "humantime_serde")]
    pub dlq_retention: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n  - {}", problems.join("\n  - "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl Config {
    /// Defaults for one service (its own HTTP port), or for a process that
    /// is not a service (`kopterctl`, the all-in-one) with `None`.
    pub fn defaults(service: Option<Service>) -> Self {
        let port = service.map_or(9100, |s| s.default_http_port());
        Self {
            env: "dev".into(),
            aws: AwsConfig {
                endpoint_url: None,
                dynamodb_endpoint_url: None,
                region: None,
                max_attempts: 5,
                retry_mode: AwsRetryMode::Standard,
                retry_quota: 500,
                retry_quota_refill_per_second: 10.0,
                connect_timeout: Duration::from_secs(3),
                attempt_timeout: Duration::from_secs(30),
                operation_timeout: Duration::from_secs(60),
            },
            worker: WorkerConfig {
                concurrency: 8,
                wait_time_seconds: 20,
                max_messages: 10,
                visibility_timeout: Duration::from_secs(60),
                heartbeat_interval: Duration::from_secs(20),
                shutdown_grace: Duration::from_secs(25),
                retry_base: Duration::from_secs(5),
                retry_max: Duration::from_secs(300),
                backpressure_retry_budget: Duration::from_secs(120),
            },
            telemetry: TelemetryConfig {
                listen: SocketAddr::from(([0, 0, 0, 0], port)),
                log_format: LogFormat::Auto,
                log_level: "info".into(),
                queue_poll_interval: Duration::from_secs(30),
            },
            credentials: CredentialsConfig {
                cache_capacity: 20_000,
                session_duration: Duration::from_secs(3600),
                refresh_before_expiry: Duration::from_secs(300),
            },
            queues: QueuesConfig {
                max_receive_count: 5,
                dlq_retention: Duration::from_secs(14 * 24 * 3600),
            },
            describer: DescriberConfig {
                account_concurrency: 2,
                sweep_concurrency: 16,
                write_concurrency: 16,
            },
            trail: TrailConfig {
                retention_days: 365,
                max_record_bytes: 8 << 20,
                write_concurrency: 32,
                record_write_attempts: 8,
                record_retry_backoff: Duration::from_millis(250),
                directory_refresh: Duration::from_secs(60),
            },
            aggregator: AggregatorConfig {
                rollup_tags: vec!["team".into(), "env".into()],
                retention_days: 400,
                spike_factor: 2.0,
                spike_min_usd: 1.0,
                forecast_after: Duration::from_secs(3 * 24 * 3600),
                account_concurrency: 4,
                max_backfill_hours: 1488,
                waste_history_days: 35,
            },
            pricing: PricingConfig {
                source: PriceSource::Bulk,
                offers_url: "https://pricing.us-east-1.amazonaws.com".into(),
                api_endpoint_url: None,
                api_region: "us-east-1".into(),
                regions: Vec::new(),
                spot_lookback: Duration::from_secs(24 * 3600),
                download_timeout: Duration::from_secs(30 * 60),
                write_concurrency: 8,
                allow_http: false,
            },
            notifier: NotifierConfig {
                retention_days: 90,
                burst_window: Duration::from_secs(300),
                email_from: None,
                webhook_timeout: Duration::from_secs(10),
                webhook_allow_local: false,
            },
            api: ApiConfig {
                listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
                issuers: Vec::new(),
                audience: "kopter".into(),
                tenant_claim: "custom:tenant".into(),
                roles_claim: "cognito:groups".into(),
                admin_role: "admin".into(),
                leeway: Duration::from_secs(30),
                jwks_refresh_interval: Duration::from_secs(30),
                jwks_max_age: Duration::from_secs(3600),
                dev_issuer: false,
                dev_issuer_key_file: PathBuf::from(".run/dev-issuer-key.json"),
                public_url: "http://127.0.0.1:8080".into(),
                tenant_role_arn: None,
                cursor_key: None,
                rate_limit_per_second: 20,
                rate_limit_burst: 40,
                cors_origins: Vec::new(),
                max_query_bytes: 4096,
                console_issuer: None,
                console_client_id: None,
                console_client_secret: None,
                console_cookie_secure: None,
                dev_issuer_tenants: vec!["acme".into(), "globex".into()],
            },
        }
    }

    /// Defaults of the api process: [`Config::defaults`] with the
    /// telemetry server on [`API_TELEMETRY_PORT`].
    pub fn api_defaults() -> Self {
        let mut c = Self::defaults(None);
        c.telemetry.listen.set_port(API_TELEMETRY_PORT);
        c
    }

    /// [`Config::load`] for the api process (its own telemetry port), with
    /// [`Config::validate_api_serving`].
    pub fn load_api() -> anyhow::Result<Self> {
        let config = Self::load_from(Self::api_defaults())?;
        config.validate_api_serving()?;
        Ok(config)
    }

    /// What a process that serves the API (the `api` binary, `kopter` with
    /// the api) needs beyond [`Config::validate`]: in env `prod`, a shared
    /// `api.cursor_key` and `Secure` console cookies; an issuer the console
    /// can sign in with. Not part of `validate`, which every worker runs:
    /// a worker has no cursors nor console and must not need their keys.
    pub fn validate_api_serving(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.env == "prod" && self.api.cursor_key.is_none() {
            problems.push(
                "api.cursor_key: required in env \"prod\" (a per-process random key breaks paging across replicas)"
                    .into(),
            );
        }
        if self.env == "prod" && !self.api.console_cookie_secure() {
            problems.push(
                "api.console_cookie_secure: must be on in env \"prod\" (session cookies over HTTPS only; or an https:// api.public_url)"
                    .into(),
            );
        }
        if self.api.console_issuer().is_none() && self.api.issuers.len() > 1 {
            problems.push(
                "api.console_issuer: api.issuers has several issuers; name the one the console signs in with".into(),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Loads from the real environment and validates.
    pub fn load(service: Option<Service>) -> anyhow::Result<Self> {
        Self::load_from(Self::defaults(service))
    }

    fn load_from(defaults: Self) -> anyhow::Result<Self> {
        let file = std::env::var_os("KOPTER_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("kopter.toml"));
        let config = Self::figment_over(defaults, file)
            .extract::<Config>()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        config.validate()?;
        Ok(config)
    }

    /// The layered figment, exposed so tests can add their own layers.
    pub fn figment(service: Option<Service>, file: PathBuf) -> Figment {
        Self::figment_over(Self::defaults(service), file)
    }

    /// The layered figment over the given defaults.
    pub fn figment_over(defaults: Self, file: PathBuf) -> Figment {
        Figment::from(Serialized::defaults(defaults))
            .merge(Toml::file(file))
            .merge(Env::prefixed("KOPTER_").split("__").ignore(&["config"]))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if let Err(e) = EnvName::new(self.env.clone()) {
            problems.push(format!("env: {e}"));
        }
        let w = &self.worker;
        if w.concurrency == 0 || w.concurrency > 1000 {
            problems.push(format!(
                "worker.concurrency: {} is outside 1..=1000",
                w.concurrency
            ));
        }
        if w.wait_time_seconds > 20 {
            problems.push(format!(
                "worker.wait_time_seconds: {} is over the SQS maximum of 20",
                w.wait_time_seconds
            ));
        }
        if !(1..=10).contains(&w.max_messages) {
            problems.push(format!(
                "worker.max_messages: {} is outside 1..=10",
                w.max_messages
            ));
        }
        if w.visibility_timeout < Duration::from_secs(1)
            || w.visibility_timeout > Duration::from_secs(12 * 3600)
        {
            problems.push("worker.visibility_timeout: must be between 1s and 12h".into());
        }
        if w.heartbeat_interval.is_zero() || w.heartbeat_interval * 2 > w.visibility_timeout {
            problems.push(format!(
                "worker.heartbeat_interval: {:?} must be non-zero and at most half of worker.visibility_timeout ({:?})",
                w.heartbeat_interval, w.visibility_timeout
            ));
        }
        if w.shutdown_grace > Duration::from_secs(120) {
            problems.push(
                "worker.shutdown_grace: must be at most 120s (the longest ECS stopTimeout)".into(),
            );
        }
        if w.retry_base.is_zero() || w.retry_base > w.retry_max {
            problems
                .push("worker.retry_base: must be non-zero and at most worker.retry_max".into());
        }
        if w.retry_max > Duration::from_secs(12 * 3600) {
            problems
                .push("worker.retry_max: must be at most 12h (the SQS visibility maximum)".into());
        }
        let poll = self.telemetry.queue_poll_interval;
        if poll < Duration::from_secs(1) || poll > Duration::from_secs(3600) {
            problems.push("telemetry.queue_poll_interval: must be between 1s and 1h".into());
        }
        if self.aws.max_attempts == 0 || self.aws.max_attempts > 20 {
            problems.push(format!(
                "aws.max_attempts: {} is outside 1..=20",
                self.aws.max_attempts
            ));
        }
        let aws = &self.aws;
        if aws.retry_quota > 500_000_000 {
            problems.push(format!(
                "aws.retry_quota: {} is over the SDK's maximum of 500000000",
                aws.retry_quota
            ));
        }
        if !(aws.retry_quota_refill_per_second >= 0.0 && aws.retry_quota_refill_per_second <= 1e6) {
            problems.push(format!(
                "aws.retry_quota_refill_per_second: {} must be between 0 and 1000000",
                aws.retry_quota_refill_per_second
            ));
        }
        if aws.connect_timeout < Duration::from_millis(100)
            || aws.connect_timeout > Duration::from_secs(60)
        {
            problems.push("aws.connect_timeout: must be between 100ms and 60s".into());
        }
        let long_poll = Duration::from_secs(u64::from(w.wait_time_seconds) + 5);
        if aws.attempt_timeout < long_poll || aws.attempt_timeout > Duration::from_secs(900) {
            problems.push(format!(
                "aws.attempt_timeout: {:?} must be at least worker.wait_time_seconds + 5s ({long_poll:?}) and at most 15m",
                aws.attempt_timeout
            ));
        }
        if aws.operation_timeout < aws.attempt_timeout
            || aws.operation_timeout > Duration::from_secs(3600)
        {
            problems.push(format!(
                "aws.operation_timeout: {:?} must be at least aws.attempt_timeout ({:?}) and at most 1h",
                aws.operation_timeout, aws.attempt_timeout
            ));
        }
        if w.backpressure_retry_budget > Duration::from_secs(12 * 3600) {
            problems.push(
                "worker.backpressure_retry_budget: must be at most 12h (the SQS visibility maximum)"
                    .into(),
            );
        }
        for (key, url) in [
            ("aws.endpoint_url", &self.aws.endpoint_url),
            ("aws.dynamodb_endpoint_url", &self.aws.dynamodb_endpoint_url),
        ] {
            if let Some(url) = url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                problems.push(format!(
                    "{key}: {url:?} must start with http:// or https://"
                ));
            }
        }
        let c = &self.credentials;
        if c.cache_capacity == 0 {
            problems.push("credentials.cache_capacity: must be at least 1".into());
        }
        if c.session_duration < Duration::from_secs(900)
            || c.session_duration > Duration::from_secs(12 * 3600)
        {
            problems.push(
                "credentials.session_duration: must be between 15m and 12h (AWS limits)".into(),
            );
        }
        if c.refresh_before_expiry >= c.session_duration {
            problems.push(
                "credentials.refresh_before_expiry: must be shorter than credentials.session_duration"
                    .into(),
            );
        }
        if !(1..=1000).contains(&self.queues.max_receive_count) {
            problems.push(format!(
                "queues.max_receive_count: {} is outside 1..=1000 (SQS limits)",
                self.queues.max_receive_count
            ));
        }
        if self.queues.dlq_retention < Duration::from_secs(60)
            || self.queues.dlq_retention > Duration::from_secs(14 * 24 * 3600)
        {
            problems.push("queues.dlq_retention: must be between 1m and 14d".into());
        }
        let t = &self.trail;
        if t.retention_days == 0 {
            problems.push("trail.retention_days: must be at least 1".into());
        }
        if t.max_record_bytes < 1024 || t.max_record_bytes > (64 << 20) {
            problems.push("trail.max_record_bytes: must be between 1 KiB and 64 MiB".into());
        }
        if t.write_concurrency == 0 || t.write_concurrency > 512 {
            problems.push(format!(
                "trail.write_concurrency: {} is outside 1..=512",
                t.write_concurrency
            ));
        }
        if t.record_write_attempts == 0 || t.record_write_attempts > 50 {
            problems.push(format!(
                "trail.record_write_attempts: {} is outside 1..=50",
                t.record_write_attempts
            ));
        }
        if t.record_retry_backoff > Duration::from_secs(60) {
            problems.push("trail.record_retry_backoff: must be at most 60s".into());
        }
        let a = &self.aggregator;
        if a.retention_days == 0 {
            problems.push("aggregator.retention_days: must be at least 1".into());
        }
        if !(a.spike_factor > 1.0 && a.spike_factor.is_finite()) {
            problems.push(format!(
                "aggregator.spike_factor: {} must be a number above 1",
                a.spike_factor
            ));
        }
        if !(a.spike_min_usd >= 0.0 && a.spike_min_usd.is_finite()) {
            problems.push("aggregator.spike_min_usd: must be 0 or more".into());
        }
        let d = &self.describer;
        for (key, value) in [
            ("account_concurrency", d.account_concurrency),
            ("sweep_concurrency", d.sweep_concurrency),
            ("write_concurrency", d.write_concurrency),
        ] {
            if value == 0 || value > 256 {
                problems.push(format!("describer.{key}: {value} is outside 1..=256"));
            }
        }
        if a.account_concurrency == 0 || a.account_concurrency > 64 {
            problems.push(format!(
                "aggregator.account_concurrency: {} is outside 1..=64",
                a.account_concurrency
            ));
        }
        if a.waste_history_days == 0 {
            problems.push("aggregator.waste_history_days: must be at least 1".into());
        }
        if a.max_backfill_hours == 0 {
            problems.push("aggregator.max_backfill_hours: must be at least 1".into());
        }
        for k in &a.rollup_tags {
            if k.is_empty() || k.contains('#') {
                problems.push(format!(
                    "aggregator.rollup_tags: {k:?} must be non-empty without '#'"
                ));
            }
        }
        let p = &self.pricing;
        match p.offers_url.split_once("://") {
            Some(("https", rest)) if !rest.is_empty() => {}
            Some(("http", rest)) if !rest.is_empty() && p.allow_http => {}
            _ => problems.push(format!(
                "pricing.offers_url: {:?} must be an https:// URL (http:// only with pricing.allow_http)",
                p.offers_url
            )),
        }
        if p.write_concurrency == 0 || p.write_concurrency > 64 {
            problems.push(format!(
                "pricing.write_concurrency: {} is outside 1..=64",
                p.write_concurrency
            ));
        }
        if p.download_timeout < Duration::from_secs(10) {
            problems.push("pricing.download_timeout: must be at least 10s".into());
        }
        let n = &self.notifier;
        if n.retention_days == 0 {
            problems.push("notifier.retention_days: must be at least 1".into());
        }
        if n.burst_window > Duration::from_secs(900) {
            problems
                .push("notifier.burst_window: must be at most 15m (the SQS delay limit)".into());
        }
        if n.webhook_timeout.is_zero() || n.webhook_timeout > Duration::from_secs(300) {
            problems.push("notifier.webhook_timeout: must be between 1ms and 5m".into());
        }
        if let Some(from) = &n.email_from
            && (from.matches('@').count() != 1 || from.starts_with('@') || from.ends_with('@'))
        {
            problems.push(format!(
                "notifier.email_from: {from:?} is not an email address"
            ));
        }
        self.api.check(&self.env, &mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Resource names of this config's environment. Call after `validate`.
    pub fn names(&self) -> Names {
        Names::new(EnvName::new(self.env.clone()).expect("validated env name"))
    }
}

impl ApiConfig {
    /// The issuer the console signs in with (see
    /// [`ApiConfig::console_issuer`]); `None` when it cannot be chosen
    /// (validation names the problem).
    pub fn console_issuer(&self) -> Option<String> {
        if let Some(iss) = &self.console_issuer {
            return Some(iss.clone());
        }
        if self.dev_issuer {
            return Some(self.dev_issuer_url());
        }
        match self.issuers.as_slice() {
            [only] => Some(only.clone()),
            _ => None,
        }
    }

    /// The console's OAuth client id: `console_client_id`, else `audience`.
    pub fn console_client_id(&self) -> &str {
        self.console_client_id.as_deref().unwrap_or(&self.audience)
    }

    /// Whether the console's cookies are `Secure`: `console_cookie_secure`,
    /// else whether `public_url` is `https://`.
    pub fn console_cookie_secure(&self) -> bool {
        self.console_cookie_secure
            .unwrap_or_else(|| self.public_url.starts_with("https://"))
    }

    /// `{public_url}/dev-issuer`: the dev issuer's `iss` (the path is
    /// `kopter_dev_issuer::ISSUER_PATH`; the runtime does not link it).
    fn dev_issuer_url(&self) -> String {
        format!("{}/dev-issuer", self.public_url.trim_end_matches('/'))
    }

    fn check_console(&self, problems: &mut Vec<String>) {
        // Unset and ambiguous is checked by `validate_api_serving`.
        if let Some(iss) = &self.console_issuer {
            let trusted =
                self.issuers.contains(iss) || (self.dev_issuer && *iss == self.dev_issuer_url());
            if !trusted {
                problems.push(format!(
                    "api.console_issuer: {iss:?} is not one of api.issuers (nor the dev issuer): its ID tokens would not verify"
                ));
            }
        }
        if let Some(id) = &self.console_client_id {
            if id.trim().is_empty() {
                problems.push("api.console_client_id: must not be empty".into());
            } else if *id != self.audience {
                problems.push(format!(
                    "api.console_client_id: {id:?} differs from api.audience {:?}; ID tokens carry the client id as `aud`, which every token must match",
                    self.audience
                ));
            }
        }
        if self
            .console_client_secret
            .as_ref()
            .is_some_and(|s| s.trim().is_empty())
        {
            problems.push("api.console_client_secret: must not be empty when set".into());
        }
        for t in &self.dev_issuer_tenants {
            if kopter_schema::TenantId::new(t.clone()).is_err() {
                problems.push(format!("api.dev_issuer_tenants: {t:?} is not a tenant id"));
            }
        }
    }

    fn check(&self, env: &str, problems: &mut Vec<String>) {
        self.check_console(problems);
        if self.dev_issuer && env == "prod" {
            problems.push(
                "api.dev_issuer: a development token issuer cannot run in env \"prod\"".into(),
            );
        }
        for issuer in &self.issuers {
            if let Err(e) = check_url(issuer, true) {
                problems.push(format!("api.issuers: {issuer:?} {e}"));
            }
        }
        if let Err(e) = check_url(&self.public_url, true) {
            problems.push(format!("api.public_url: {:?} {e}", self.public_url));
        }
        for (key, value) in [
            ("audience", &self.audience),
            ("tenant_claim", &self.tenant_claim),
            ("roles_claim", &self.roles_claim),
            ("admin_role", &self.admin_role),
        ] {
            if value.trim().is_empty() {
                problems.push(format!("api.{key}: must not be empty"));
            }
        }
        if self.leeway > Duration::from_secs(300) {
            problems.push("api.leeway: must be at most 5m".into());
        }
        if self.jwks_refresh_interval < Duration::from_secs(1)
            || self.jwks_refresh_interval > self.jwks_max_age
        {
            problems.push(
                "api.jwks_refresh_interval: must be at least 1s and at most api.jwks_max_age"
                    .into(),
            );
        }
        if let Some(arn) = &self.tenant_role_arn
            && !is_role_arn(arn)
        {
            problems.push(format!(
                "api.tenant_role_arn: {arn:?} is not an IAM role ARN (arn:aws:iam::<12 digits>:role/<name>)"
            ));
        }
        // Its absence is checked by `validate_api_serving` (only a process
        // serving the API needs it).
        if let Some(key) = &self.cursor_key {
            use base64::Engine;
            match base64::engine::general_purpose::STANDARD.decode(key.trim()) {
                Ok(bytes) if bytes.len() >= 32 => {}
                Ok(bytes) => problems.push(format!(
                    "api.cursor_key: {} bytes; use at least 32 random bytes, base64-encoded",
                    bytes.len()
                )),
                Err(_) => problems.push("api.cursor_key: not valid base64".into()),
            }
        }
        if self.rate_limit_per_second == 0 {
            problems.push("api.rate_limit_per_second: must be at least 1".into());
        }
        if self.rate_limit_burst == 0 {
            problems.push("api.rate_limit_burst: must be at least 1".into());
        }
        for origin in &self.cors_origins {
            let ok = check_url(origin, false).is_ok()
                && origin
                    .split_once("://")
                    .is_some_and(|(_, rest)| !rest.contains('/'));
            if !ok {
                problems.push(format!(
                    "api.cors_origins: {origin:?} must be an origin: scheme://host[:port], no path"
                ));
            }
        }
        if !(256..=65536).contains(&self.max_query_bytes) {
            problems.push(format!(
                "api.max_query_bytes: {} is outside 256..=65536",
                self.max_query_bytes
            ));
        }
    }
}

/// `https://host…`, or `http://` to a loopback host when `loopback_http`.
fn check_url(url: &str, loopback_http: bool) -> Result<(), &'static str> {
    match url.split_once("://") {
        Some(("https", rest)) if !rest.is_empty() => Ok(()),
        Some(("http", rest)) if !rest.is_empty() => {
            let authority = rest.split('/').next().unwrap_or("");
            let loopback = ["127.0.0.1", "localhost", "[::1]"].iter().any(|h| {
                authority == *h
                    || authority
                        .strip_prefix(h)
                        .is_some_and(|p| p.starts_with(':'))
            });
            if !loopback_http || loopback {
                Ok(())
            } else {
                Err("must be an https:// URL (http:// only for 127.0.0.1 or localhost)")
            }
        }
        _ => Err("must be an https:// URL"),
    }
}

fn is_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5]
            .strip_prefix("role/")
            .is_some_and(|n| !n.is_empty())
}

#[cfg(test)]
// figment's Jail API returns its large error type by design.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn layers_apply_in_order() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "kopter.toml",
                "env = \"staging\"\n[worker]\nconcurrency = 3\nshutdown_grace = \"10s\"\n",
            )?;
            jail.set_env("KOPTER_WORKER__CONCURRENCY", "7");
            jail.set_env("KOPTER_AWS__ENDPOINT_URL", "http://127.0.0.1:5000");
            jail.set_env("KOPTER_DESCRIBER__ACCOUNT_CONCURRENCY", "5");
            let c: Config =
                Config::figment(Some(Service::Pricing), "kopter.toml".into()).extract()?;
            assert_eq!(c.env, "staging");
            assert_eq!(c.worker.concurrency, 7);
            assert_eq!(c.worker.shutdown_grace, Duration::from_secs(10));
            assert_eq!(c.aws.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
            assert_eq!(c.telemetry.listen.port(), 9102);
            assert_eq!(c.describer.account_concurrency, 5);
            assert_eq!(c.describer.sweep_concurrency, 16);
            c.validate().unwrap();
            Ok(())
        });
    }

    #[test]
    fn validate_lists_every_problem() {
        let mut c = Config::defaults(None);
        c.env = "Bad Env".into();
        c.worker.concurrency = 0;
        c.worker.max_messages = 11;
        c.worker.heartbeat_interval = Duration::from_secs(59);
        c.aws.endpoint_url = Some("localhost:5000".into());
        c.aws.dynamodb_endpoint_url = Some("127.0.0.1:8000".into());
        c.describer.write_concurrency = 0;
        c.aws.attempt_timeout = Duration::from_secs(10);
        c.aws.retry_quota_refill_per_second = f64::NAN;
        let err = c.validate().unwrap_err();
        let text = err.to_string();
        assert_eq!(err.problems.len(), 9, "{text}");
        for needle in [
            "env:",
            "describer.write_concurrency: 0",
            "worker.concurrency",
            "worker.max_messages",
            "worker.heartbeat_interval",
            "aws.endpoint_url",
            "aws.attempt_timeout: 10s must be at least worker.wait_time_seconds + 5s (25s)",
            "aws.retry_quota_refill_per_second: NaN",
            "aws.dynamodb_endpoint_url: \"127.0.0.1:8000\"",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }

    #[test]
    fn api_settings_are_checked() {
        let mut c = Config::api_defaults();
        assert_eq!(c.telemetry.listen.port(), API_TELEMETRY_PORT);
        assert_eq!(c.api.listen.port(), 8080);
        c.validate().unwrap();
        c.env = "prod".into();
        c.api.dev_issuer = true;
        c.api.issuers = vec![
            "http://evil.example".into(),
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc".into(),
            "http://127.0.0.1:9000/dev".into(),
        ];
        c.api.tenant_role_arn = Some("arn:aws:iam::12345:role/x".into());
        c.api.cors_origins = vec!["https://console.example.com/app".into()];
        c.api.rate_limit_per_second = 0;
        let text = c.validate().unwrap_err().to_string();
        for needle in [
            "api.dev_issuer",
            "api.issuers: \"http://evil.example\"",
            "api.tenant_role_arn",
            "api.cors_origins",
            "api.rate_limit_per_second",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        assert!(!text.contains("cognito-idp"), "{text}");
        assert!(!text.contains("127.0.0.1:9000"), "{text}");
        // A worker in prod needs no cursor key; a process serving the API does.
        assert!(!text.contains("api.cursor_key"), "{text}");
        let serving = c.validate_api_serving().unwrap_err().to_string();
        assert!(serving.contains("api.cursor_key: required"), "{serving}");
        assert!(
            serving.contains("api.console_cookie_secure: must be on"),
            "{serving}"
        );
        c.api.cursor_key = Some("A".repeat(44));
        c.api.public_url = "https://kopter.example.com".into();
        c.api.console_issuer = Some(c.api.issuers[1].clone());
        c.validate_api_serving().unwrap();

        let mut c = Config::api_defaults();
        c.api.cursor_key = Some("c2hvcnQ=".into());
        c.api.tenant_role_arn = Some("arn:aws:iam::123456789012:role/KopterTenantAccess".into());
        let text = c.validate().unwrap_err().to_string();
        assert!(text.contains("api.cursor_key: 5 bytes"), "{text}");
        assert!(!text.contains("tenant_role_arn"), "{text}");
    }

    #[test]
    fn console_settings_are_checked() {
        let mut c = Config::api_defaults();
        c.api.dev_issuer = true;
        assert_eq!(
            c.api.console_issuer().as_deref(),
            Some("http://127.0.0.1:8080/dev-issuer")
        );
        assert_eq!(c.api.console_client_id(), "kopter");
        assert!(!c.api.console_cookie_secure(), "local http: not Secure");
        c.validate().unwrap();

        let cognito = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc";
        let mut c = Config::api_defaults();
        c.env = "prod".into();
        c.api.public_url = "https://kopter.example.com".into();
        c.api.issuers = vec![cognito.into()];
        c.api.audience = "client-1".into();
        assert_eq!(c.api.console_issuer().as_deref(), Some(cognito));
        assert!(c.api.console_cookie_secure());
        c.validate().unwrap();

        c.api.cursor_key = Some("A".repeat(44));
        c.validate_api_serving().unwrap();

        c.api.issuers.push("https://login.example.com".into());
        c.api.console_cookie_secure = Some(false);
        let serving = c.validate_api_serving().unwrap_err().to_string();
        for needle in [
            "api.console_issuer: api.issuers has several",
            "api.console_cookie_secure: must be on in env \"prod\"",
        ] {
            assert!(serving.contains(needle), "{needle} missing from {serving}");
        }
        c.api.console_client_id = Some("client-2".into());
        c.api.console_client_secret = Some(" ".into());
        c.api.dev_issuer_tenants = vec!["Not A Tenant".into()];
        let text = c.validate().unwrap_err().to_string();
        for needle in [
            "api.console_client_id: \"client-2\" differs from api.audience",
            "api.console_client_secret",
            "api.dev_issuer_tenants: \"Not A Tenant\"",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        c.api.console_issuer = Some("https://elsewhere.example.com".into());
        let text = c.validate().unwrap_err().to_string();
        assert!(
            text.contains("api.console_issuer: \"https://elsewhere.example.com\" is not one of"),
            "{text}"
        );
        c.api.console_issuer = Some(cognito.into());
        let text = c.validate().unwrap_err().to_string();
        assert!(!text.contains("api.console_issuer"), "{text}");
    }

    #[test]
    fn unknown_keys_and_bad_types_are_named() {
        Jail::expect_with(|jail| {
            jail.set_env("KOPTER_WORKER__CONCURENCY", "3");
            let err = Config::figment(None, "none.toml".into())
                .extract::<Config>()
                .unwrap_err();
            assert!(err.to_string().contains("concurency"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("KOPTER_WORKER__CONCURRENCY", "many");
            let err = Config::figment(None, "none.toml".into())
                .extract::<Config>()
                .unwrap_err();
            assert!(
                err.to_string()
                    .to_lowercase()
                    .contains("worker.concurrency"),
                "{err}"
            );
            Ok(())
        });
    }
}
