//! `make demo`: Kopter on a local AWS (moto), with nothing to configure.
//!
//! [`Demo::up`] does, in order: serve realistic price-list files (and a
//! webhook receiver) on 127.0.0.1; bootstrap every queue, topic and table;
//! create the trail bucket with S3 → SQS notifications to trail-ingest;
//! onboard the demo tenants' accounts (each with its `KopterAccess` role
//! and ExternalId), and one tenant through its AWS Organization (see
//! [`org`]); create their EC2 estate through those roles; start the
//! five services (five processes, one process, or in this process); write
//! CloudTrail log files; tick the schedule (describe sweep, price refresh,
//! spot refresh, then the hourly aggregate and the daily digest) and wait
//! until the queues are empty after each step; then read the
//! [`report::Report`]. The binary prints it and waits for Ctrl-C; the
//! integration test asserts on it.

pub mod config_keys;
pub mod estate;
pub mod fleet;
pub mod harness;
pub mod offers;
pub mod org;
pub mod ports;
pub mod report;
pub mod trail;

use std::collections::BTreeMap;

use anyhow::Context;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DurationRound, Utc};
use kopter_runtime::accounts::{OnboardError, Onboarding};
use kopter_runtime::messaging::envelope;
use kopter_runtime::queue::depth::depth_by_name;
use kopter_runtime::{Config, ServiceContext, provision};
use kopter_schema::items::{AccountRecord, TrailSource};
use kopter_schema::messages::{AggregateHour, DailyDigest, Severity, SpotRefresh, Sweep};
use kopter_schema::{Message, Service, TenantId};
use tokio_util::sync::CancellationToken;

pub use fleet::{Fleet, Mode};

/// The demo's regions (price files, onboarding, estate).
pub const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-southeast-2"];

/// One customer account of the demo.
#[derive(Debug, Clone)]
pub struct DemoAccount {
    pub tenant: String,
    pub account: String,
    /// `prod`, `staging`, … (the estate's `env` tag).
    pub label: String,
}

/// What to run and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// The local AWS endpoint (moto).
    pub endpoint: String,
    /// DynamoDB's own endpoint when not moto's (AWS's DynamoDB Local, for
    /// exact request units): `aws.dynamodb_endpoint_url`.
    pub dynamodb_endpoint: Option<String>,
    /// Kopter environment name (prefix of every queue, topic, table).
    pub env: String,
    pub accounts: Vec<DemoAccount>,
    /// A tenant connected through its organization (`org connect`); its
    /// member accounts join `accounts` (and `Demo::records`) once known.
    pub org: Option<org::DemoOrg>,
    pub mode: Mode,
    /// Metrics port of the describer; the other services follow, the
    /// all-in-one uses the one before.
    pub first_port: u16,
    /// Port of the price-file server (0: any free port).
    pub offers_port: u16,
    /// Port of the tenant API (`api.listen` on 127.0.0.1).
    pub api_port: u16,
    /// Logs of the service processes.
    pub run_dir: PathBuf,
    /// Longest wait for the queues to empty after each step.
    pub settle_timeout: Duration,
    /// Print progress lines.
    pub verbose: bool,
    /// Cancelled (Ctrl-C) while starting: stop what was started, fail.
    pub cancel: CancellationToken,
    /// Copies of each instance of an account's estate (1: the demo's ≈ 12
    /// resources per account; benchmarks scale the estate with it).
    pub estate_copies: usize,
}

impl Options {
    /// Every fixed TCP port this run listens on, with what it is for: the
    /// services' metrics ports (separate: `first_port`.. one per service,
    /// then the api's; all-in-one and in-process: `first_port - 1`), the
    /// api, and the price-file server when its port is fixed.
    pub fn ports(&self) -> Vec<(u16, String)> {
        let mut out = Vec::new();
        match &self.mode {
            Mode::Separate { .. } => {
                for (i, s) in Service::ALL.iter().enumerate() {
                    out.push((self.first_port + i as u16, format!("{} metrics", s.name())));
                }
                out.push((
                    self.first_port + Service::ALL.len() as u16,
                    "api metrics".into(),
                ));
            }
            Mode::AllInOne { .. } | Mode::InProcess => {
                out.push((self.first_port - 1, "kopter metrics".into()));
            }
        }
        out.push((self.api_port, "tenant API".into()));
        if self.offers_port != 0 {
            out.push((self.offers_port, "price files".into()));
        }
        out
    }

    /// `make demo`: tenants acme (two accounts) and globex (one), fixed
    /// account ids, onboarded one by one; tenant initech through its
    /// organization (management account 444444444444, two members whose
    /// ids moto chooses); environment `demo`.
    pub fn standard(endpoint: String, mode: Mode) -> Self {
        let acct = |tenant: &str, account: &str, label: &str| DemoAccount {
            tenant: tenant.into(),
            account: account.into(),
            label: label.into(),
        };
        Self {
            endpoint,
            dynamodb_endpoint: None,
            env: "demo".into(),
            accounts: vec![
                acct("acme", "111111111111", "prod"),
                acct("acme", "222222222222", "staging"),
                acct("globex", "333333333333", "prod"),
            ],
            org: Some(org::DemoOrg {
                tenant: "initech".into(),
                management: "444444444444".into(),
                members: 2,
            }),
            mode,
            estate_copies: 1,
            first_port: 9101,
            offers_port: 0,
            api_port: 8080,
            run_dir: PathBuf::from(".run"),
            settle_timeout: Duration::from_secs(240),
            verbose: true,
            cancel: CancellationToken::new(),
        }
    }
}

/// The configuration every demo process runs with.
pub fn demo_config(opts: &Options, offers_url: &str) -> Config {
    let mut c = Config::defaults(None);
    c.env = opts.env.clone();
    c.aws.endpoint_url = Some(opts.endpoint.clone());
    c.aws.dynamodb_endpoint_url = opts.dynamodb_endpoint.clone();
    c.aws.region = Some("us-east-1".into());
    c.telemetry.log_format = kopter_runtime::config::LogFormat::Json;
    c.worker.wait_time_seconds = 2;
    // A killed process's messages come back after their visibility runs
    // out (nothing can return them), so locally, where processes are
    // stopped and killed often (and the chaos run kills them 50 times), a
    // short lease held by frequent heartbeats: a crash costs ~10 s, not 30.
    // Production keeps 60 s / 20 s (the worker's design note weighs it).
    c.worker.visibility_timeout = Duration::from_secs(10);
    c.worker.heartbeat_interval = Duration::from_secs(3);
    c.worker.shutdown_grace = Duration::from_secs(10);
    c.worker.retry_base = Duration::from_secs(1);
    c.worker.retry_max = Duration::from_secs(10);
    c.pricing.offers_url = offers_url.to_owned();
    c.pricing.allow_http = true;
    c.trail.directory_refresh = Duration::from_secs(5);
    c.notifier.burst_window = Duration::ZERO;
    c.notifier.webhook_allow_local = true;
    // The tenant API with the development token issuer (never in prod).
    c.api.listen = std::net::SocketAddr::from(([127, 0, 0, 1], opts.api_port));
    c.api.public_url = format!("http://127.0.0.1:{}", opts.api_port);
    c.api.dev_issuer = true;
    c.api.dev_issuer_key_file = opts.run_dir.join("dev-issuer-key.json");
    c
}

/// Mints a token of the demo's development issuer for `tenant` (`admin`:
/// with the admin role), valid `ttl`, as `kopterctl token` would.
pub fn demo_token(
    config: &Config,
    tenant: &str,
    admin: bool,
    ttl: Duration,
) -> anyhow::Result<String> {
    let api = &config.api;
    let key = kopter_dev_issuer::DevIssuer::load_or_create(&api.dev_issuer_key_file)?;
    key.mint(&kopter_dev_issuer::TokenRequest {
        tenant: tenant.to_owned(),
        roles: if admin {
            vec![api.admin_role.clone()]
        } else {
            Vec::new()
        },
        ttl,
        subject: format!("demo-{tenant}"),
        issuer: kopter_dev_issuer::issuer_url(&api.public_url),
        audience: api.audience.clone(),
        tenant_claim: api.tenant_claim.clone(),
        roles_claim: api.roles_claim.clone(),
    })
}

/// Queue depths: `[visible, in flight, delayed]` of a service's queue and
/// of its DLQ.
pub async fn queue_depths(
    ctx: &ServiceContext,
) -> anyhow::Result<Vec<(Service, [u64; 3], [u64; 3])>> {
    let sqs = ctx.aws.sqs();
    let depth = |name: String| {
        let sqs = sqs.clone();
        async move {
            let d = depth_by_name(&sqs, &name).await?;
            anyhow::Ok([d.visible, d.in_flight, d.delayed])
        }
    };
    let mut out = Vec::new();
    for s in Service::ALL {
        out.push((
            s,
            depth(ctx.names.queue(s)).await?,
            depth(ctx.names.dlq(s)).await?,
        ));
    }
    Ok(out)
}

/// The running demo.
pub struct Demo {
    pub opts: Options,
    pub config: Config,
    pub ctx: ServiceContext,
    pub site: offers::PriceSite,
    pub fleet: Option<Fleet>,
    pub records: Vec<AccountRecord>,
    pub estate: BTreeMap<String, estate::Made>,
    /// Start of the priced period (an hour boundary).
    pub period_from: chrono::DateTime<Utc>,
    /// The trail bucket (notifies the trail-ingest queue).
    pub bucket: String,
    stop_site: CancellationToken,
}

impl Demo {
    fn say(&self, line: impl AsRef<str>) {
        if self.opts.verbose {
            println!("{}", line.as_ref());
        }
    }

    /// Everything up to a settled system (see the module doc).
    pub async fn up(opts: Options) -> anyhow::Result<Demo> {
        let started = Instant::now();
        let mut demo = Self::new(opts).await?;
        match demo.run_steps().await {
            Ok(()) => {
                demo.say(format!(
                    "   (ready in {:.0} s)",
                    started.elapsed().as_secs_f64()
                ));
                Ok(demo)
            }
            Err(e) => {
                demo.down().await;
                Err(e)
            }
        }
    }

    /// Writes `{run_dir}/demo.env`: the variables that point `kopterctl`
    /// (and the AWS CLI) at this demo, to `source` in another shell, with
    /// `bin_dir` put first on `PATH` when given. Returns its path.
    pub fn write_env_file(&self, bin_dir: Option<&std::path::Path>) -> anyhow::Result<PathBuf> {
        use std::fmt::Write;
        let mut s = String::from(
            "# Written by `make demo` while it runs; `source` it to use kopterctl on the demo.\n",
        );
        for (k, v) in [
            ("KOPTER_ENV", self.config.env.as_str()),
            ("KOPTER_AWS__ENDPOINT_URL", self.opts.endpoint.as_str()),
            ("AWS_ENDPOINT_URL", self.opts.endpoint.as_str()),
            // moto takes any credentials; these keep real ones out of it.
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
        ] {
            let _ = writeln!(s, "export {k}={v}");
        }
        let org = self.org_accounts();
        if !org.is_empty() {
            // moto chose these ids: `kopterctl accounts list` shows them too.
            let _ = writeln!(s, "export KOPTER_DEMO_ORG_ACCOUNTS=\"{}\"", org.join(" "));
        }
        if let Some(dir) = bin_dir {
            let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
            let _ = writeln!(s, "export PATH=\"{}:$PATH\"", dir.display());
        }
        let path = self.opts.run_dir.join("demo.env");
        std::fs::write(&path, s).with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    }

    /// The price files served, the environment bootstrapped, the trail
    /// bucket, tenants, roles, estate and channels made — no services
    /// started, no log files, no ticks. The chaos test
    /// (`tests/chaos.rs`) goes on from here with its own fleet.
    pub async fn prepared(opts: Options) -> anyhow::Result<Demo> {
        let mut demo = Self::new(opts).await?;
        match demo.prepare().await {
            Ok(()) => Ok(demo),
            Err(e) => {
                demo.down().await;
                Err(e)
            }
        }
    }

    async fn new(opts: Options) -> anyhow::Result<Demo> {
        let stop_site = CancellationToken::new();
        let site = offers::PriceSite::start(
            offers::site_files(&REGIONS)?,
            std::net::SocketAddr::from(([127, 0, 0, 1], opts.offers_port)),
            stop_site.clone(),
        )
        .await?;
        let config = demo_config(&opts, &site.base_url);
        config.validate()?;
        let ctx = ServiceContext::new(config.clone(), None).await;
        Ok(Demo {
            opts,
            config,
            ctx,
            site,
            fleet: None,
            records: Vec::new(),
            estate: BTreeMap::new(),
            period_from: Utc::now(),
            bucket: String::new(),
            stop_site,
        })
    }

    async fn run_steps(&mut self) -> anyhow::Result<()> {
        self.prepare().await?;
        self.start_and_run().await
    }

    async fn prepare(&mut self) -> anyhow::Result<()> {
        self.say(format!(
            "== price list: {} regions in the bulk layout at {}/offers/v1.0/aws/index.json",
            REGIONS.len(),
            self.site.base_url
        ));
        self.say(format!(
            "== bootstrap (environment {:?} on {})",
            self.config.env, self.opts.endpoint
        ));
        let changes = provision::bootstrap(&self.ctx.aws, &self.config).await?;
        let changed = changes
            .iter()
            .filter(|c| c.action != provision::Action::Unchanged)
            .count();
        self.say(format!(
            "   {changed} of {} resources created or updated",
            changes.len()
        ));

        let kopter_account = self
            .ctx
            .aws
            .sts()
            .get_caller_identity()
            .send()
            .await?
            .account
            .unwrap_or_default();
        let bucket = format!("{}-kopter-trail-{kopter_account}", self.config.env);
        trail::create_bucket(&self.ctx, &bucket).await?;
        self.bucket = bucket.clone();
        self.say(format!(
            "   trail bucket s3://{bucket} notifies the trail-ingest queue"
        ));

        self.say("== onboard demo tenants");
        let tenants =
            kopter_store::tenants::TenantStore::new(self.ctx.aws.dynamodb(), &self.ctx.names);
        for a in &self.opts.accounts {
            tenants.create(&TenantId::new(a.tenant.clone())?).await?;
        }
        for a in self.opts.accounts.clone() {
            let req = Onboarding::parse(
                &a.tenant,
                &a.account,
                &format!("arn:aws:iam::{}:role/KopterAccess", a.account),
                &REGIONS.map(String::from),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            let trail = TrailSource {
                bucket: bucket.clone(),
                prefix: a.tenant.clone(),
                customer_owned: false,
            };
            let rec = match self.ctx.accounts.onboard(req, Some(trail)).await {
                Ok(r) => r,
                Err(OnboardError::AlreadyOnboarded { .. }) => self
                    .ctx
                    .accounts
                    .get(
                        &TenantId::new(a.tenant.clone())?,
                        &kopter_schema::AccountId::new(a.account.clone())?,
                    )
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("account {} vanished", a.account))?,
                Err(e) => return Err(e.into()),
            };
            estate::create_role(&self.ctx, &rec, &kopter_account).await?;
            self.say(format!(
                "   {:<7} {} {:<8} role {} ExternalId {}…",
                rec.tenant_id,
                rec.account_id,
                a.label,
                rec.role_arn,
                &rec.external_id[..rec.external_id.len().min(16)]
            ));
            self.records.push(rec);
        }
        if let Some(o) = self.opts.org.clone() {
            self.connect_org(&o, &kopter_account).await?;
        }
        // EC2 launch times have whole seconds: launches after this are
        // after onboarding, so the describer files them as `launched`.
        tokio::time::sleep(Duration::from_millis(1100)).await;

        self.say("== customer estate (made through each account's role)");
        self.period_from = Utc::now().duration_trunc(chrono::Duration::hours(1))?;
        for (n, (a, rec)) in self.opts.accounts.iter().zip(&self.records).enumerate() {
            let specs = estate::estate_of(n);
            let made =
                estate::create_estate(&self.ctx, rec, &a.label, specs, self.opts.estate_copies)
                    .await?;
            let regions: std::collections::BTreeSet<_> = specs.iter().map(|s| s.region).collect();
            self.say(format!(
                "   {} {}: {} instances ({} Windows, {} spot, {} stopped), {} volumes in {}",
                rec.tenant_id,
                rec.account_id,
                made.instances.len(),
                specs.iter().filter(|s| s.windows).count(),
                specs.iter().filter(|s| s.spot).count(),
                specs.iter().filter(|s| s.stopped).count(),
                made.volumes,
                regions.into_iter().collect::<Vec<_>>().join(", ")
            ));
            self.estate.insert(rec.account_id.to_string(), made);
        }
        for tenant in self.tenants() {
            let store =
                kopter_store::channels::ChannelStore::new(self.ctx.aws.dynamodb(), &self.ctx.names);
            let url = kopter_store::webhook_url::WebhookUrl::parse(
                &format!("{}/webhook/{tenant}", self.site.base_url),
                kopter_store::webhook_url::AddressPolicy { allow_local: true },
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            store
                .update(
                    &tenant,
                    &kopter_store::channels::ChannelUpdate {
                        webhook: Some(Some(url)),
                        webhook_min_severity: Some(Severity::Warning),
                        digest: Some(true),
                        ..Default::default()
                    },
                )
                .await?;
        }
        self.say(format!(
            "   webhooks of every tenant (warning and up, and the digest) → {}/webhook/<tenant>",
            self.site.base_url
        ));
        Ok(())
    }

    /// Connects `o`'s organization and adds its onboarded members to the
    /// demo's accounts, each with the member role the StackSet would
    /// have deployed.
    async fn connect_org(&mut self, o: &org::DemoOrg, kopter_account: &str) -> anyhow::Result<()> {
        let tenant = TenantId::new(o.tenant.clone())?;
        kopter_store::tenants::TenantStore::new(self.ctx.aws.dynamodb(), &self.ctx.names)
            .create(&tenant)
            .await?;
        let (conn, r) =
            org::connect(&self.ctx, o, kopter_account, &REGIONS.map(String::from)).await?;
        self.say(format!(
            "   {:<7} kopterctl org connect --tenant {} --management-role-arn {}",
            tenant,
            tenant,
            o.management_role_arn()
        ));
        self.say(format!(
            "           organization {}: {} account(s) listed in {} call(s), {} onboarded, {} unchanged",
            conn.organization_id,
            r.listed,
            r.pages,
            r.onboarded.len(),
            r.unchanged
        ));
        // Every member of this organization, also those a previous run
        // onboarded (the listing then leaves them unchanged).
        let mut members: Vec<_> = self
            .ctx
            .accounts
            .list(Some(&tenant))
            .await?
            .into_iter()
            .filter(|a| a.organization.as_ref() == Some(&conn.management_account))
            .collect();
        members.sort_by(|a, b| a.account_id.cmp(&b.account_id));
        for (i, rec) in members.into_iter().enumerate() {
            estate::create_role(&self.ctx, &rec, kopter_account).await?;
            let label = format!("member-{}", i + 1);
            self.say(format!(
                "   {:<7} {} {:<8} role {} ExternalId {}",
                rec.tenant_id, rec.account_id, label, rec.role_arn, rec.external_id
            ));
            self.opts.accounts.push(DemoAccount {
                tenant: o.tenant.clone(),
                account: rec.account_id.to_string(),
                label,
            });
            self.records.push(rec);
        }
        Ok(())
    }

    /// The accounts onboarded through the demo's organization (ids moto
    /// chose).
    pub fn org_accounts(&self) -> Vec<String> {
        self.records
            .iter()
            .filter(|r| r.organization.is_some())
            .map(|r| r.account_id.to_string())
            .collect()
    }

    async fn start_and_run(&mut self) -> anyhow::Result<()> {
        let bucket = self.bucket.clone();

        self.say(format!("== start services ({})", self.opts.mode.describe()));
        let mut fleet = fleet::start(
            &self.opts.mode,
            &self.config,
            self.opts.first_port,
            &self.opts.run_dir,
        )
        .await?;
        let ready = fleet
            .wait_ready(Duration::from_secs(90), &self.opts.cancel)
            .await;
        let endpoints = fleet.endpoints();
        self.fleet = Some(fleet);
        ready?;
        for (name, addr) in endpoints {
            self.say(format!("   {name:<13} http://{addr}/metrics"));
        }

        self.say("== CloudTrail log files → trail bucket");
        for (n, rec) in self.records.iter().enumerate() {
            // Organization members are onboarded without a trail source
            // (`kopterctl accounts update --trail-bucket` adds one), so a
            // log file of theirs would be refused as unknown.
            if rec.trail.is_none() {
                continue;
            }
            let made = &self.estate[rec.account_id.as_str()];
            let (files, records) = trail::write_logs(
                &self.ctx,
                &bucket,
                rec.tenant_id.as_str(),
                rec.account_id.as_str(),
                n,
                made,
            )
            .await?;
            self.say(format!(
                "   {} {}: {files} files, {records} records",
                rec.tenant_id, rec.account_id
            ));
        }

        self.say("== tick the schedule");
        self.tick(
            Service::Describer,
            Message::DescribeSweep(Sweep {}),
            "describe-sweep",
        )
        .await?;
        self.tick(
            Service::Pricing,
            Message::PricingRefreshAll(Sweep {}),
            "pricing-refresh",
        )
        .await?;
        self.settle().await?;
        // Spot history is read from EC2 once prices exist per region.
        self.tick(
            Service::Pricing,
            Message::PricingRefreshSpot(SpotRefresh {
                regions: REGIONS.map(String::from).to_vec(),
            }),
            "spot-refresh",
        )
        .await?;
        self.settle().await?;
        let hour = Utc::now().duration_trunc(chrono::Duration::hours(1))?;
        let backfill = ((hour - self.period_from).num_hours()).max(0) as u32;
        self.tick(
            Service::Aggregator,
            Message::AggregateHour(AggregateHour {
                hour,
                backfill_hours: backfill,
                tenant: None,
            }),
            &format!(
                "aggregate --hour {} --backfill {backfill}",
                hour.format("%Y-%m-%dT%H:00Z")
            ),
        )
        .await?;
        self.settle().await?;
        self.tick(
            Service::Notifier,
            Message::DailyDigest(DailyDigest {
                day: Utc::now().date_naive(),
                tenant: None,
            }),
            "daily-digest",
        )
        .await?;
        self.settle().await?;
        Ok(())
    }

    /// The demo's tenants, in order of first appearance.
    pub fn tenants(&self) -> Vec<TenantId> {
        let mut out: Vec<TenantId> = Vec::new();
        for r in &self.records {
            if !out.contains(&r.tenant_id) {
                out.push(r.tenant_id.clone());
            }
        }
        out
    }

    /// Sends what `kopterctl tick <job>` sends.
    pub async fn tick(&self, service: Service, message: Message, job: &str) -> anyhow::Result<()> {
        let env = envelope(message);
        self.ctx.outbox.send(service, &env).await?;
        self.say(format!(
            "   kopterctl tick {job:<47} → {} queue",
            service.name()
        ));
        Ok(())
    }

    /// Waits until every service queue is empty (nothing visible, in
    /// flight or delayed) on three checks in a row.
    pub async fn settle(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.opts.settle_timeout;
        let started = Instant::now();
        let mut quiet = 0;
        while quiet < 3 {
            if let Some(f) = self.fleet.as_mut() {
                f.check_alive()?;
            }
            if self.opts.cancel.is_cancelled() {
                anyhow::bail!("interrupted");
            }
            let busy: u64 = queue_depths(&self.ctx)
                .await?
                .iter()
                .map(|(_, q, _)| q.iter().sum::<u64>())
                .sum();
            quiet = if busy == 0 { quiet + 1 } else { 0 };
            if Instant::now() > deadline {
                anyhow::bail!(
                    "the queues did not empty within {:?} ({busy} messages left); see the service logs",
                    self.opts.settle_timeout
                );
            }
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        self.say(format!(
            "   settled: every queue empty ({:.0} s)",
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    /// Reads the report from the stores.
    pub async fn report(&self) -> anyhow::Result<report::Report> {
        report::Report::read(self).await
    }

    /// Stops the services (drain) and the price-file server. Returns the
    /// processes' exit statuses.
    pub async fn down(&mut self) -> Vec<(String, Option<std::process::ExitStatus>)> {
        let mut out = Vec::new();
        if let Some(f) = self.fleet.take() {
            match f
                .stop(self.config.worker.shutdown_grace + Duration::from_secs(20))
                .await
            {
                Ok(s) => out = s,
                Err(e) => eprintln!("stopping the services: {e:#}"),
            }
        }
        self.stop_site.cancel();
        out
    }
}
