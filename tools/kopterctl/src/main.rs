//! `kopterctl`: the operator's command line.
//!
//! Reads the same configuration as the services (`kopter.toml`, `KOPTER_*`,
//! the standard AWS variables). Exit codes: 0 done, 1 failed, 2 refused
//! (bad arguments or configuration). `--env` and `--endpoint` override
//! `env` and `aws.endpoint_url`; every failure names both (`target.rs`).

mod audit;
mod backups;
mod cost;
mod dlq;
mod inventory;
mod notifications;
mod output;
mod target;
mod timearg;
mod token;

use std::process::ExitCode;

use anyhow::Context;
use chrono::{Duration, DurationRound, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use kopter_runtime::accounts::{OnboardError, Onboarding, trust_policy};
use kopter_runtime::messaging::envelope;
use kopter_runtime::provision::{self, Action};
use kopter_runtime::queue::depth::depth_by_name;
use kopter_runtime::{AwsContext, Config};
use kopter_schema::items::TrailSource;
use kopter_schema::messages::{AggregateHour, DailyDigest, RegionOnly, SpotRefresh, Sweep};
use kopter_schema::{Message, Service, TenantId};

#[derive(Parser)]
#[command(name = "kopterctl", version, about = "Operate a Kopter environment")]
struct Cli {
    /// Environment (prefix of every table and queue name); default
    /// `KOPTER_ENV`, `env` in kopter.toml, else `dev`.
    #[arg(long, global = true, value_name = "ENV")]
    env: Option<String>,
    /// AWS endpoint (moto, LocalStack: `http://127.0.0.1:5055`); default
    /// `KOPTER_AWS__ENDPOINT_URL`, `AWS_ENDPOINT_URL`, else real AWS.
    #[arg(long, global = true, value_name = "URL")]
    endpoint: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create every queue, DLQ, topic, subscription and table (idempotent).
    Bootstrap,
    /// Register a customer account and print the trust policy it needs.
    Onboard {
        #[arg(long)]
        tenant: String,
        /// The customer's 12-digit AWS account id.
        #[arg(long)]
        account: String,
        /// The role Kopter assumes: arn:aws:iam::<account>:role/KopterAccess…
        #[arg(long)]
        role_arn: String,
        /// Regions to watch (comma-separated); default every enabled region.
        #[arg(long, value_delimiter = ',')]
        regions: Vec<String>,
        /// S3 bucket that receives the account's CloudTrail logs.
        #[arg(long)]
        trail_bucket: Option<String>,
        /// Key prefix before `AWSLogs/` in the trail bucket.
        #[arg(long, default_value = "")]
        trail_prefix: String,
        /// The trail bucket belongs to the customer (read via the role).
        #[arg(long)]
        trail_customer_owned: bool,
    },
    /// Onboarded accounts.
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
    },
    /// Depth, in-flight and DLQ depth of every service queue.
    Queues {
        #[command(flatten)]
        format: output::FormatArg,
    },
    /// A service's dead-letter queue: list, show, redrive.
    Dlq(dlq::DlqArgs),
    /// A tenant's instances, volumes and snapshots with their state.
    Inventory(inventory::InventoryArgs),
    /// A tenant's notification feed (newest first); mark notifications read.
    Notifications(notifications::NotificationsArgs),
    /// Where a tenant's notifications are delivered (webhook, email).
    Channels(notifications::ChannelsArgs),
    /// A tenant's cost series from the price graph.
    Cost(cost::CostArgs),
    /// A tenant's monthly budget.
    Budget(cost::BudgetArgs),
    /// A tenant's scheduled EBS backup policy.
    BackupPolicy(backups::BackupPolicyArgs),
    /// Mint a bearer token for the local api (development issuer).
    Token(token::TokenArgs),
    /// Search a tenant's CloudTrail audit log (newest first); `quarantine`
    /// and `rules` manage what could not be filed and the security rules.
    #[command(args_conflicts_with_subcommands = true)]
    Audit {
        #[command(subcommand)]
        action: Option<audit::AuditAction>,
        /// Required for a search.
        #[arg(long)]
        tenant: Option<String>,
        /// Start: a date (`2026-11-29`), an RFC 3339 time or a duration
        /// back from now (`24h`, `7d`).
        #[arg(long, default_value = "24h")]
        since: String,
        /// End: the same forms (a date: through its end); default now.
        #[arg(long)]
        until: Option<String>,
        /// Principal ARN.
        #[arg(long)]
        principal: Option<String>,
        /// Event name (e.g. ConsoleLogin, RunInstances).
        #[arg(long)]
        event: Option<String>,
        /// Event source (e.g. ec2.amazonaws.com).
        #[arg(long)]
        source: Option<String>,
        /// Resource id or ARN (e.g. an instance id).
        #[arg(long)]
        resource: Option<String>,
        /// The caller's account (`userIdentity.accountId`).
        #[arg(long)]
        caller_account: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// json rows carry the raw record.
        #[command(flatten)]
        format: output::FormatArg,
    },
    /// Send the message the schedule sends (EventBridge Scheduler in AWS).
    Tick {
        job: Job,
        /// For `aggregate`: the hour to compute, any time in it — a date,
        /// RFC 3339 or a duration back (`3h`); default: the last full hour.
        #[arg(long)]
        hour: Option<String>,
        /// For `aggregate`: also recompute this many hours before it.
        #[arg(long, default_value_t = 0)]
        backfill: u32,
        /// For `aggregate` and `daily-digest`: only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// For `pricing-region`: the region; for `spot-refresh`: limit to these.
        #[arg(long, value_delimiter = ',')]
        region: Vec<String>,
        /// For `daily-digest`: the day — a date, RFC 3339 or a duration
        /// back (`1d`); default: today, UTC.
        #[arg(long)]
        day: Option<String>,
    },
}

#[derive(Subcommand)]
enum AccountsCommand {
    /// List accounts, of one tenant or all.
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        format: output::FormatArg,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Job {
    /// Describe every account × enabled region (hourly).
    DescribeSweep,
    /// Refresh every region's prices from the Price List (daily).
    PricingRefresh,
    /// Refresh one region's prices (`--region`).
    PricingRegion,
    /// Refresh spot prices (hourly).
    SpotRefresh,
    /// Compute the cost of the last hour (hourly).
    Aggregate,
    /// Take scheduled EBS backups (every 12 h).
    Backups,
    /// Send each tenant's daily digest (23:00).
    DailyDigest,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = match Config::load(None) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kopterctl: {e:#}");
            return ExitCode::from(2);
        }
    };
    if let Some(env) = cli.env.clone() {
        config.env = env;
    }
    if let Some(url) = cli.endpoint.clone() {
        config.aws.endpoint_url = Some(url);
    }
    if let Err(e) = config.validate() {
        eprintln!("kopterctl: {e:#}");
        return ExitCode::from(2);
    }
    let command = match cli.command {
        Command::Token(args) => {
            return token::run(&config, args).unwrap_or_else(|e| {
                eprintln!("kopterctl: {e:#}");
                ExitCode::FAILURE
            });
        }
        command => command,
    };
    let aws = AwsContext::load(&config).await;
    let target = target::Target::new(&config, &aws);
    if let Err(why) = target.check_reachable().await {
        eprintln!("kopterctl: {why}");
        return ExitCode::FAILURE;
    }
    match run(command, &config, &aws, &target).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!(
                "kopterctl: {}",
                target.explain(&aws, &config.names(), &e).await
            );
            ExitCode::FAILURE
        }
    }
}

async fn run(
    command: Command,
    config: &Config,
    aws: &AwsContext,
    target: &target::Target,
) -> anyhow::Result<ExitCode> {
    let config = config.clone();
    let aws = aws.clone();
    let names = config.names();
    match command {
        Command::Bootstrap => {
            println!("target: {}", target.describe());
            let changes = provision::bootstrap(&aws, &config).await?;
            for c in &changes {
                println!("{c}");
            }
            let changed = changes
                .iter()
                .filter(|c| c.action != Action::Unchanged)
                .count();
            if changed == 0 {
                println!(
                    "environment {} is up to date: nothing changed ({} resources)",
                    config.env,
                    changes.len()
                );
            } else {
                println!(
                    "environment {}: {changed} of {} resources created or updated",
                    config.env,
                    changes.len()
                );
            }
        }
        Command::Onboard {
            tenant,
            account,
            role_arn,
            regions,
            trail_bucket,
            trail_prefix,
            trail_customer_owned,
        } => {
            let req = match Onboarding::parse(&tenant, &account, &role_arn, &regions) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("kopterctl: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            println!("target: {}", target.describe());
            let store = kopter_runtime::accounts::AccountStore::new(aws.dynamodb(), &names);
            let trail = trail_bucket.map(|bucket| TrailSource {
                bucket,
                prefix: trail_prefix,
                customer_owned: trail_customer_owned,
            });
            let record = match store.onboard(req, trail).await {
                Ok(r) => r,
                Err(
                    e @ (OnboardError::OwnedByOtherTenant(_)
                    | OnboardError::AlreadyOnboarded { .. }),
                ) => {
                    eprintln!("kopterctl: {e}");
                    return Ok(ExitCode::from(2));
                }
                Err(e) => return Err(e.into()),
            };
            let me = aws
                .sts()
                .get_caller_identity()
                .send()
                .await
                .context("find Kopter's own account id (sts:GetCallerIdentity)")?;
            let kopter_account = me.account.unwrap_or_default();
            println!(
                "onboarded account {} for tenant {} (regions: {})",
                record.account_id,
                record.tenant_id,
                if record.regions.is_empty() {
                    "all enabled".to_string()
                } else {
                    record.regions.join(",")
                }
            );
            println!("external id: {}", record.external_id);
            println!(
                "create role {} in account {} with this trust policy:",
                record.role_arn, record.account_id
            );
            println!(
                "{}",
                serde_json::to_string_pretty(&trust_policy(&kopter_account, &record.external_id))?
            );
        }
        Command::Accounts {
            command: AccountsCommand::List { tenant, format },
        } => {
            let tenant = match tenant.map(TenantId::new).transpose() {
                Ok(t) => t,
                Err(e) => return Ok(refuse(e)),
            };
            let store = kopter_runtime::accounts::AccountStore::new(aws.dynamodb(), &names);
            let accounts = store.list(tenant.as_ref()).await?;
            let mut table =
                output::Listing::new(&["TENANT", "ACCOUNT", "HEALTH", "REGIONS", "ROLE"]);
            for a in &accounts {
                table.row(vec![
                    a.tenant_id.to_string(),
                    a.account_id.to_string(),
                    if a.healthy { "ok" } else { "failing" }.into(),
                    if a.regions.is_empty() {
                        "all".to_string()
                    } else {
                        a.regions.join(",")
                    },
                    a.role_arn.clone(),
                ]);
            }
            table.note(format!("{} account(s)", accounts.len()));
            output::print(format.get(), &table, &accounts)?;
        }
        Command::Inventory(args) => return inventory::run(&aws, &names, args).await,
        Command::Dlq(args) => return dlq::run(&aws, &names, args).await,
        Command::Token(_) => unreachable!("handled before AWS is loaded"),
        Command::Cost(args) => {
            return cost::cost(&aws, &names, &config.aggregator.rollup_tags, args).await;
        }
        Command::Budget(args) => return cost::budget(&aws, &names, args).await,
        Command::BackupPolicy(args) => return backups::run(&aws, &names, args).await,
        Command::Notifications(args) => {
            return notifications::notifications(&aws, &names, args).await;
        }
        Command::Channels(args) => {
            return notifications::channels(&aws, &names, &config, args).await;
        }
        Command::Queues { format } => {
            /// One service's queue and DLQ as `queues` lists them.
            #[derive(serde::Serialize)]
            struct QueueRow {
                service: &'static str,
                visible: u64,
                in_flight: u64,
                delayed: u64,
                dlq: u64,
            }
            let sqs = aws.sqs();
            let mut rows = Vec::new();
            for s in Service::ALL {
                let q = depth_by_name(&sqs, &names.queue(s)).await?;
                let d = depth_by_name(&sqs, &names.dlq(s)).await?;
                rows.push(QueueRow {
                    service: s.name(),
                    visible: q.visible,
                    in_flight: q.in_flight,
                    delayed: q.delayed,
                    dlq: d.total(),
                });
            }
            let mut table =
                output::Listing::new(&["SERVICE", "VISIBLE", "IN-FLIGHT", "DELAYED", "DLQ"])
                    .right_aligned(&[1, 2, 3, 4]);
            for r in &rows {
                table.row(vec![
                    r.service.into(),
                    r.visible.to_string(),
                    r.in_flight.to_string(),
                    r.delayed.to_string(),
                    r.dlq.to_string(),
                ]);
            }
            output::print(format.get(), &table, &rows)?;
        }
        Command::Audit {
            action: Some(action),
            ..
        } => return audit::run(&aws, &names, action).await,
        Command::Audit {
            action: None,
            tenant,
            since,
            until,
            principal,
            event,
            source,
            resource,
            caller_account,
            limit,
            format,
        } => {
            let Some(tenant) = tenant else {
                return Ok(refuse("audit: --tenant is required for a search"));
            };
            let tenant = match TenantId::new(tenant) {
                Ok(t) => t,
                Err(e) => return Ok(refuse(e)),
            };
            let now = Utc::now();
            let until = match until.map(|u| timearg::flag("until", &u, timearg::Bound::End, now)) {
                None => now,
                Some(Ok(t)) => t,
                Some(Err(e)) => return Ok(refuse(e)),
            };
            let since = match timearg::flag("since", &since, timearg::Bound::Start, now) {
                Ok(t) => t,
                Err(e) => return Ok(refuse(e)),
            };
            if since > until {
                return Ok(refuse(format!("--since {since} is after --until {until}")));
            }
            let store = kopter_store::audit::AuditStore::new(aws.dynamodb(), &names);
            let query = kopter_store::audit::AuditQuery {
                tenant,
                since,
                until,
                principal,
                event,
                source,
                resource,
                caller_account,
                limit,
            };
            let rows = store.query(&query).await?;
            // Say exactly what was read: a search without a principal,
            // event or resource filter looks back a bounded number of days.
            let ((from, to), cut) = query.searched_range();
            let searched = format!(
                "searched {} .. {}",
                from.format("%Y-%m-%dT%H:%M:%SZ"),
                to.format("%Y-%m-%dT%H:%M:%SZ")
            );
            if cut {
                eprintln!(
                    "kopterctl: {searched} only: without --principal, --event or --resource a search reads at most {} days back from --until; narrow --until or add a filter to reach earlier rows",
                    kopter_store::audit::MAX_WALK_DAYS
                );
            }
            let mut table = output::Listing::new(&[
                "TIME",
                "ACCOUNT",
                "CALLER",
                "REGION",
                "EVENT",
                "FINDINGS",
                "PRINCIPAL",
            ])
            .right_aligned(&[5]);
            for r in &rows {
                table.row(vec![
                    r.event_time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    r.account.to_string(),
                    r.caller_account.as_deref().unwrap_or("-").to_owned(),
                    r.region.clone(),
                    format!(
                        "{}:{}",
                        r.event_source.trim_end_matches(".amazonaws.com"),
                        r.event_name
                    ),
                    r.findings.len().to_string(),
                    r.principal_arn.as_deref().unwrap_or("-").to_owned(),
                ]);
            }
            table.note(format!("{} event(s); {searched}", rows.len()));
            output::print(format.get(), &table, &rows)?;
        }
        Command::Tick {
            job,
            hour,
            backfill,
            tenant,
            region,
            day,
        } => {
            let tenant = match tenant.map(TenantId::new).transpose() {
                Ok(t) => t,
                Err(e) => return Ok(refuse(e)),
            };
            let now = Utc::now();
            let hour = match hour.map(|h| timearg::flag("hour", &h, timearg::Bound::Start, now)) {
                None => None,
                Some(Ok(t)) => Some(t),
                Some(Err(e)) => return Ok(refuse(e)),
            };
            let day = match day.map(|d| timearg::flag("day", &d, timearg::Bound::Start, now)) {
                None => None,
                Some(Ok(t)) => Some(t.date_naive()),
                Some(Err(e)) => return Ok(refuse(e)),
            };
            let (service, message) = match job {
                Job::DescribeSweep => (Service::Describer, Message::DescribeSweep(Sweep {})),
                Job::Backups => (Service::Describer, Message::BackupSweep(Sweep {})),
                Job::PricingRefresh => (Service::Pricing, Message::PricingRefreshAll(Sweep {})),
                Job::PricingRegion => {
                    let [region] = region.as_slice() else {
                        eprintln!("kopterctl: tick pricing-region needs exactly one --region");
                        return Ok(ExitCode::from(2));
                    };
                    (
                        Service::Pricing,
                        Message::PricingRefreshRegion(RegionOnly {
                            region: region.clone(),
                        }),
                    )
                }
                Job::SpotRefresh => (
                    Service::Pricing,
                    Message::PricingRefreshSpot(SpotRefresh { regions: region }),
                ),
                Job::Aggregate => {
                    let hour = match hour {
                        Some(h) => h.duration_trunc(Duration::hours(1))?,
                        None => Utc::now().duration_trunc(Duration::hours(1))? - Duration::hours(1),
                    };
                    (
                        Service::Aggregator,
                        Message::AggregateHour(AggregateHour {
                            hour,
                            backfill_hours: backfill,
                            tenant,
                        }),
                    )
                }
                Job::DailyDigest => (
                    Service::Notifier,
                    Message::DailyDigest(DailyDigest {
                        day: day.unwrap_or_else(|| Utc::now().date_naive()),
                        tenant,
                    }),
                ),
            };
            let outbox = kopter_runtime::messaging::Outbox::new(aws.sqs(), aws.sns(), names);
            let env = envelope(message);
            outbox.send(service, &env).await?;
            println!(
                "sent {} to the {} queue (message {})",
                env.message.kind(),
                service.name(),
                env.id
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints why the arguments were refused; exit code 2.
fn refuse(why: impl std::fmt::Display) -> ExitCode {
    eprintln!("kopterctl: {why}");
    ExitCode::from(2)
}
