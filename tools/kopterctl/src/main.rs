//! `kopterctl`: the operator's command line.
//!
//! Reads the same configuration as the services (`kopter.toml`, `KOPTER_*`,
//! the standard AWS variables). Exit codes: 0 done, 1 failed, 2 refused
//! (bad arguments or configuration). `--env` and `--endpoint` override
//! `env` and `aws.endpoint_url`; every failure names both (`target.rs`).

mod accounts;
mod audit;
mod backups;
mod bulk;
mod cost;
mod dlq;
mod inventory;
mod notifications;
mod org;
mod output;
mod target;
mod templates;
mod tenants;
mod timearg;
mod token;
mod verify;
mod waste;

use std::process::ExitCode;

use anyhow::Context;
use chrono::{Duration, DurationRound, Utc};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use kopter_runtime::accounts::{OnboardError, Onboarding};
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
    /// Create every queue, DLQ, topic, subscription and table, and the
    /// tenant of every onboarded account (idempotent).
    Bootstrap,
    /// Tenants: create, list, show. Every other verb refuses a `--tenant`
    /// that was not created.
    Tenants {
        #[command(subcommand)]
        command: tenants::TenantsCommand,
    },
    /// Register a customer account and print the role it needs (link,
    /// trust and permissions policy, next steps); or many from a CSV file.
    Onboard {
        #[arg(long, required_unless_present = "from")]
        tenant: Option<String>,
        /// The customer's 12-digit AWS account id.
        #[arg(long, required_unless_present = "from")]
        account: Option<String>,
        /// The role Kopter assumes: arn:aws:iam::<account>:role/KopterAccess…
        #[arg(long, required_unless_present = "from")]
        role_arn: Option<String>,
        /// A CSV file of accounts (columns tenant, account, role_arn,
        /// regions, trail_bucket, trail_prefix, trail_customer_owned),
        /// checked whole before anything is written.
        #[arg(
            long,
            value_name = "FILE",
            conflicts_with_all = ["tenant", "account", "role_arn", "regions", "trail_bucket", "template_url"]
        )]
        from: Option<std::path::PathBuf>,
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
        /// Where deploy/cloudformation/kopter-member-role.json is hosted
        /// (an S3 HTTPS URL), for the one-click quick-create link.
        #[arg(long, env = "KOPTERCTL_MEMBER_TEMPLATE_URL")]
        template_url: Option<String>,
    },
    /// A customer's AWS Organization: connect (onboard every active
    /// account), list.
    Org {
        #[command(subcommand)]
        command: org::OrgCommand,
    },
    /// Onboarded accounts.
    Accounts {
        #[command(subcommand)]
        command: accounts::AccountsCommand,
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
    /// A tenant's waste findings (idle resources, with what they cost
    /// since and a month); `thresholds` shows or sets its thresholds.
    Waste(waste::WasteArgs),
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
    /// Re-list every connected organization (every 6 h).
    OrgDiscovery,
    /// Send each tenant's daily digest (23:00).
    DailyDigest,
}

#[tokio::main]
async fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
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
    match tenants::check_flag(&aws, &config.names(), &matches).await {
        Ok(None) => {}
        Ok(Some(refused)) => return refused,
        Err(e) => {
            eprintln!(
                "kopterctl: {}",
                target.explain(&aws, &config.names(), &e).await
            );
            return ExitCode::FAILURE;
        }
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
            // Tenants became rows of their own after accounts existed:
            // each onboarded account's tenant is created here, so an
            // upgraded environment keeps working (see README, Tenants).
            let tenants = kopter_store::tenants::TenantStore::new(aws.dynamodb(), &names);
            let accounts = kopter_runtime::accounts::AccountStore::new(aws.dynamodb(), &names);
            let owners: std::collections::BTreeSet<TenantId> = accounts
                .list(None)
                .await?
                .into_iter()
                .map(|a| a.tenant_id)
                .collect();
            for t in owners {
                if tenants.create(&t).await?.1 == kopter_store::tenants::Created::New {
                    println!("tenant {t}: created (it has onboarded accounts)");
                }
            }
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
            template_url,
            from,
        } => {
            if let Some(path) = from {
                println!("target: {}", target.describe());
                return bulk::run(&aws, &names, &path).await;
            }
            let (Some(tenant), Some(account), Some(role_arn)) = (tenant, account, role_arn) else {
                unreachable!("clap requires them without --from");
            };
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
                Err(OnboardError::AlreadyOnboarded { tenant, account }) => {
                    // Nothing changes; say where the ExternalId the role
                    // must trust is, since that is what a second run wants.
                    let at = store.get(&tenant, &account).await?;
                    return Ok(refuse(format!(
                        "account {account} is already onboarded under tenant {tenant}{}: its ExternalId {} is stored on the account's row (`kopterctl accounts list --tenant {tenant} --format json`, field external_id); change the role, regions or trail with `kopterctl accounts update`",
                        at.as_ref()
                            .map(|a| format!(
                                " (since {})",
                                a.onboarded_at.format("%Y-%m-%dT%H:%M:%SZ")
                            ))
                            .unwrap_or_default(),
                        at.as_ref()
                            .map_or("(unreadable)", |a| a.external_id.as_str()),
                    )));
                }
                Err(e @ OnboardError::OwnedByOtherTenant(_)) => return Ok(refuse(e)),
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
            let role_name = record.role_arn.rsplit('/').next().unwrap_or("KopterAccess");
            let customer_trail = record.trail.as_ref().filter(|t| t.customer_owned);
            let params = std::collections::BTreeMap::from([
                ("KopterAccountId", kopter_account.clone()),
                ("ExternalId", record.external_id.clone()),
                ("RoleName", role_name.to_owned()),
                (
                    "TrailBucketName",
                    customer_trail.map(|t| t.bucket.clone()).unwrap_or_default(),
                ),
                (
                    "TrailPrefix",
                    customer_trail
                        .map(|t| t.prefix.trim_end_matches('/').to_owned())
                        .unwrap_or_default(),
                ),
            ]);
            let partition = record.role_arn.split(':').nth(1).unwrap_or("aws");
            let fill = templates::Fill {
                partition,
                customer_account: record.account_id.as_str(),
                params: params.clone(),
            };
            let (trust, permissions) = fill.policies();
            println!();
            println!(
                "1. In account {}, create the role {} — one of:",
                record.account_id, record.role_arn
            );
            match &template_url {
                Some(url) => println!(
                    "   a. one click (CloudFormation quick-create, every parameter filled in):\n      {}",
                    templates::quick_create_link(
                        url,
                        record.regions.first().map_or("us-east-1", String::as_str),
                        &params
                    )
                ),
                None => println!(
                    "   a. CloudFormation: deploy/cloudformation/kopter-member-role.json with KopterAccountId={kopter_account} ExternalId={} RoleName={role_name} (host it in S3 and pass --template-url for a one-click link)",
                    record.external_id
                ),
            }
            println!(
                "   b. Terraform: deploy/terraform/modules/customer-role with kopter_account_id = \"{kopter_account}\", external_id = \"{}\"",
                record.external_id
            );
            println!("   c. by hand: this trust policy");
            println!("{}", serde_json::to_string_pretty(&trust)?);
            println!("      and this inline permissions policy");
            println!("{}", serde_json::to_string_pretty(&permissions)?);
            println!(
                "2. Check the access: kopterctl accounts verify --tenant {} --account {}",
                record.tenant_id, record.account_id
            );
            println!(
                "3. Its health stays `unchecked` until a verify or the hourly describe reaches it (kopterctl accounts list --tenant {})",
                record.tenant_id
            );
        }
        Command::Accounts { command } => return accounts::run(&aws, &config, command).await,
        Command::Tenants { command } => return tenants::run(&aws, &names, command).await,
        Command::Org { command } => return org::run(&aws, &config, command).await,
        Command::Inventory(args) => return inventory::run(&aws, &names, args).await,
        Command::Dlq(args) => return dlq::run(&aws, &names, args).await,
        Command::Token(_) => unreachable!("handled before AWS is loaded"),
        Command::Cost(args) => {
            return cost::cost(&aws, &names, &config.aggregator.rollup_tags, args).await;
        }
        Command::Budget(args) => return cost::budget(&aws, &names, args).await,
        Command::Waste(args) => return waste::run(&aws, &names, args).await,
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
                Job::OrgDiscovery => (Service::Describer, Message::OrgDiscovery(Sweep {})),
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
