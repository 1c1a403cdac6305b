//! `kopterctl accounts`: list, verify, update and remove onboarded
//! accounts. See `DESIGN.md` beside `main.rs` for what each verb writes.

use std::process::ExitCode;

use std::io::Write;

use chrono::{SubsecRound, Utc};
use clap::Subcommand;
use kopter_runtime::accounts::{AccountChange, AccountStore, OnboardError};
use kopter_runtime::messaging::{Outbox, envelope};
use kopter_runtime::{AwsContext, Config, CredentialCache};
use kopter_schema::items::{AccountRecord, TrailSource};
use kopter_schema::messages::AccountHealth;
use kopter_schema::{AccountId, Message, TenantId};
use kopter_store::inventory::InventoryStore;

use crate::output;
use crate::verify::{self, Outcome};

#[derive(Subcommand)]
pub enum AccountsCommand {
    /// List accounts, of one tenant or all.
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        format: output::FormatArg,
    },
    /// Assume each account's role and try every permission Kopter needs
    /// with a harmless call (EC2 DryRun); one row per check; sets health.
    Verify {
        /// Only this tenant's accounts (default: every tenant's).
        #[arg(long)]
        tenant: Option<String>,
        /// Only this account (with --tenant).
        #[arg(long, requires = "tenant")]
        account: Option<String>,
        #[command(flatten)]
        format: output::FormatArg,
    },
    /// Change an account's regions, role or CloudTrail source.
    Update {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        account: String,
        /// Regions to describe, comma-separated; `all` for every enabled one.
        #[arg(long, value_delimiter = ',')]
        regions: Option<Vec<String>>,
        /// A new role in the same account (health becomes unchecked).
        #[arg(long)]
        role_arn: Option<String>,
        /// S3 bucket that receives the account's CloudTrail logs.
        #[arg(long, conflicts_with = "no_trail")]
        trail_bucket: Option<String>,
        /// Key prefix before `AWSLogs/` in the trail bucket.
        #[arg(long, default_value = "", requires = "trail_bucket")]
        trail_prefix: String,
        /// The trail bucket belongs to the customer (read via the role).
        #[arg(long, requires = "trail_bucket")]
        trail_customer_owned: bool,
        /// Stop reading the account's CloudTrail logs.
        #[arg(long)]
        no_trail: bool,
    },
    /// Stop describing and ingesting an account; its data stays unless
    /// --purge, which deletes its rows in every table.
    Remove {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        account: String,
        /// Also delete the account's rows in every table (bounded batches,
        /// progress on stderr; run again to resume).
        #[arg(long)]
        purge: bool,
    },
}

/// An account's health as shown: `unchecked` until a verify or a
/// describe reached it, then `ok` or `failing`.
pub fn health(a: &AccountRecord) -> &'static str {
    match (a.health_checked_at, a.healthy) {
        (None, _) => "unchecked",
        (Some(_), true) => "ok",
        (Some(_), false) => "failing",
    }
}

pub async fn run(
    aws: &AwsContext,
    config: &Config,
    cmd: AccountsCommand,
) -> anyhow::Result<ExitCode> {
    let names = &config.names();
    let store = AccountStore::new(aws.dynamodb(), names);
    match cmd {
        AccountsCommand::Verify {
            tenant,
            account,
            format,
        } => return verify_accounts(aws, config, &store, tenant, account, format).await,
        AccountsCommand::Update {
            tenant,
            account,
            regions,
            role_arn,
            trail_bucket,
            trail_prefix,
            trail_customer_owned,
            no_trail,
        } => {
            let (tenant, account) = match ids(&tenant, &account) {
                Ok(x) => x,
                Err(e) => return Ok(crate::refuse(e)),
            };
            let change = AccountChange {
                regions: regions.map(|r| if r == ["all"] { Vec::new() } else { r }),
                role_arn,
                trail: if no_trail {
                    Some(None)
                } else {
                    trail_bucket.map(|bucket| {
                        Some(TrailSource {
                            bucket,
                            prefix: trail_prefix,
                            customer_owned: trail_customer_owned,
                        })
                    })
                },
            };
            let rec = match store.update(&tenant, &account, &change).await {
                Ok(r) => r,
                Err(OnboardError::Aws(e)) => return Err(e),
                Err(e) => return Ok(crate::refuse(e)),
            };
            println!(
                "updated account {} of tenant {}: regions {}, role {}, trail {}, health {}",
                rec.account_id,
                rec.tenant_id,
                if rec.regions.is_empty() {
                    "all enabled".to_owned()
                } else {
                    rec.regions.join(",")
                },
                rec.role_arn,
                rec.trail.as_ref().map_or("none".to_owned(), |t| format!(
                    "s3://{}/{}",
                    t.bucket, t.prefix
                )),
                health(&rec)
            );
        }
        AccountsCommand::Remove {
            tenant,
            account,
            purge,
        } => {
            let (tenant, account) = match ids(&tenant, &account) {
                Ok(x) => x,
                Err(e) => return Ok(crate::refuse(e)),
            };
            match store.remove(&tenant, &account).await? {
                Some(_) => println!(
                    "removed account {account} from tenant {tenant}: no longer described or ingested"
                ),
                // Already removed: a purge after a plain remove (or a
                // re-run of an interrupted purge) goes on.
                None if purge => println!(
                    "account {account} of tenant {tenant} was removed already; purging its rows"
                ),
                None => {
                    return Ok(crate::refuse(format!(
                        "account {account} is not onboarded under tenant {tenant} (`kopterctl accounts list --tenant {tenant}`)"
                    )));
                }
            }
            if purge {
                let mut err = std::io::stderr();
                let done = kopter_store::purge::purge_account(
                    &aws.dynamodb(),
                    names,
                    &tenant,
                    &account,
                    |table, n| {
                        let _ = write!(err, "\rpurge {}: {n} row(s) deleted", names.table(table));
                        let _ = err.flush();
                    },
                )
                .await?;
                eprintln!();
                let total: usize = done.iter().map(|(_, n)| n).sum();
                for (table, n) in &done {
                    println!("purged {n} row(s) of {}", names.table(*table));
                }
                println!(
                    "purged account {account} of tenant {tenant}: {total} row(s); the tenant's cost rollups keep the hours already computed"
                );
            } else {
                println!(
                    "its inventory, cost and audit rows stay; `kopterctl accounts remove --tenant {tenant} --account {account} --purge` deletes them"
                );
            }
        }
        AccountsCommand::List { tenant, format } => {
            let tenant = match tenant.map(TenantId::new).transpose() {
                Ok(t) => t,
                Err(e) => return Ok(crate::refuse(e)),
            };
            let accounts = store.list(tenant.as_ref()).await?;
            let mut table =
                output::Listing::new(&["TENANT", "ACCOUNT", "HEALTH", "REGIONS", "ROLE"]);
            for a in &accounts {
                table.row(vec![
                    a.tenant_id.to_string(),
                    a.account_id.to_string(),
                    health(a).into(),
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
    }
    Ok(ExitCode::SUCCESS)
}

fn ids(tenant: &str, account: &str) -> Result<(TenantId, AccountId), kopter_schema::IdError> {
    Ok((TenantId::new(tenant)?, AccountId::new(account)?))
}

async fn verify_accounts(
    aws: &AwsContext,
    config: &Config,
    store: &AccountStore,
    tenant: Option<String>,
    account: Option<String>,
    format: output::FormatArg,
) -> anyhow::Result<ExitCode> {
    let tenant = match tenant.map(TenantId::new).transpose() {
        Ok(t) => t,
        Err(e) => return Ok(crate::refuse(e)),
    };
    let accounts = match (&tenant, account) {
        (Some(t), Some(a)) => {
            let a = match AccountId::new(a) {
                Ok(a) => a,
                Err(e) => return Ok(crate::refuse(e)),
            };
            match store.get(t, &a).await? {
                Some(rec) => vec![rec],
                None => {
                    return Ok(crate::refuse(format!(
                        "account {a} is not onboarded under tenant {t}"
                    )));
                }
            }
        }
        (t, _) => store.list(t.as_ref()).await?,
    };
    let names = config.names();
    let credentials = CredentialCache::new(aws.sts(), "kopterctl", &config.credentials);
    let health_store = InventoryStore::new(aws.dynamodb(), &names);
    let outbox = Outbox::new(aws.sqs(), aws.sns(), names.clone());
    let mut rows = Vec::new();
    let mut failing = 0;
    for a in &accounts {
        let v = verify::verify(aws, config, &credentials, a).await;
        if let Some((healthy, reason)) = v.health {
            failing += usize::from(!healthy);
            record_health(&health_store, &outbox, a, healthy, reason).await?;
        }
        rows.extend(v.rows);
    }
    let mut table =
        output::Listing::new(&["TENANT", "ACCOUNT", "CHECK", "REGION", "OUTCOME", "DETAIL"]);
    for r in &rows {
        table.row(vec![
            r.tenant.clone(),
            r.account.clone(),
            r.check.clone(),
            r.region.clone(),
            r.outcome.as_str().into(),
            r.detail.clone(),
        ]);
    }
    let inconclusive = rows.iter().filter(|r| r.outcome == Outcome::Error).count();
    table.note(format!(
        "{} account(s) verified: {failing} failing; {inconclusive} check(s) inconclusive (health left as it was)",
        accounts.len()
    ));
    output::print(format.get(), &table, &rows)?;
    Ok(if failing > 0 || inconclusive > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Stores the verdict like the describer does: an `account.health` event
/// first when the health changes (so a crash repeats it rather than
/// losing it), then the row.
async fn record_health(
    store: &InventoryStore,
    outbox: &Outbox,
    a: &AccountRecord,
    healthy: bool,
    reason: Option<String>,
) -> anyhow::Result<()> {
    let at = Utc::now().trunc_subsecs(3);
    if a.healthy != healthy || a.health_reason != reason {
        outbox
            .publish(&envelope(Message::AccountHealth(AccountHealth {
                tenant: a.tenant_id.clone(),
                account: a.account_id.clone(),
                healthy,
                reason: reason.clone(),
                at,
            })))
            .await?;
    }
    store
        .set_health(&a.tenant_id, &a.account_id, healthy, reason.as_deref(), at)
        .await
}
