//! `kopterctl backup-policy show|set`: a tenant's scheduled EBS backup
//! policy (which instances, how often, how long snapshots are kept), read
//! by the describer's backup sweep. `set` changes only the options given
//! and validates the result before storing it.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use humantime_serde::re::humantime;
use kopter_runtime::AwsContext;
use kopter_runtime::accounts::AccountStore;
use kopter_schema::{Names, TenantId};
use kopter_store::backup::{BackupPolicy, BackupStore};

use crate::refuse;

#[derive(Args)]
pub struct BackupPolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Show a tenant's policy (the default when none was set).
    Show {
        #[arg(long)]
        tenant: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Change a tenant's policy; options not given keep their value.
    Set {
        #[arg(long)]
        tenant: String,
        /// Instances tagged KEY=VALUE are backed up (default
        /// `kopter:backup=true`).
        #[arg(long, value_name = "KEY=VALUE")]
        tag: Option<String>,
        /// One snapshot per volume per interval (`12h`, `1d`; at least 1h).
        #[arg(long, value_parser = humantime::parse_duration)]
        interval: Option<Duration>,
        /// Keep at most this many Kopter-managed snapshots per volume.
        #[arg(long, conflicts_with = "no_keep_count")]
        keep_count: Option<u32>,
        /// Drop the count limit (then `--keep-for` must be set).
        #[arg(long)]
        no_keep_count: bool,
        /// Delete Kopter-managed snapshots older than this (`30d`).
        #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "no_keep_for")]
        keep_for: Option<Duration>,
        /// Drop the age limit (then `--keep-count` must be set).
        #[arg(long)]
        no_keep_for: bool,
        /// Pause backups (retention of existing snapshots pauses too).
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        #[arg(long)]
        enable: bool,
    },
}

fn describe(tenant: &TenantId, p: &BackupPolicy) -> String {
    let keep = match (p.keep_count, p.keep_for) {
        (Some(n), Some(d)) => format!(
            "the newest {n} and none older than {}",
            humantime::format_duration(d)
        ),
        (Some(n), None) => format!("the newest {n}"),
        (None, Some(d)) => format!("none older than {}", humantime::format_duration(d)),
        (None, None) => "all".to_string(),
    };
    format!(
        "backup policy of {tenant}: {}; instances tagged {}={}; every {}; keep {keep} per volume",
        if p.enabled { "enabled" } else { "disabled" },
        p.tag_key,
        p.tag_value,
        humantime::format_duration(p.interval),
    )
}

pub async fn run(
    aws: &AwsContext,
    names: &Names,
    args: BackupPolicyArgs,
) -> anyhow::Result<ExitCode> {
    let store = BackupStore::new(aws.dynamodb(), names);
    match args.command {
        PolicyCommand::Show { tenant, json } => {
            let tenant = match TenantId::new(tenant) {
                Ok(t) => t,
                Err(e) => return Ok(refuse(e)),
            };
            let policy = store.policy(&tenant).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&policy)?);
            } else {
                println!("{}", describe(&tenant, &policy));
            }
        }
        PolicyCommand::Set {
            tenant,
            tag,
            interval,
            keep_count,
            no_keep_count,
            keep_for,
            no_keep_for,
            disable,
            enable,
        } => {
            let tenant = match TenantId::new(tenant) {
                Ok(t) => t,
                Err(e) => return Ok(refuse(e)),
            };
            let mut policy = store.policy(&tenant).await?;
            if let Some(tag) = tag {
                match tag.split_once('=') {
                    Some((k, v)) if !k.is_empty() => {
                        policy.tag_key = k.to_string();
                        policy.tag_value = v.to_string();
                    }
                    _ => return Ok(refuse(format!("--tag {tag:?}: expected KEY=VALUE"))),
                }
            }
            if let Some(i) = interval {
                policy.interval = i;
            }
            if no_keep_count {
                policy.keep_count = None;
            } else if let Some(n) = keep_count {
                policy.keep_count = Some(n);
            }
            if no_keep_for {
                policy.keep_for = None;
            } else if let Some(d) = keep_for {
                policy.keep_for = Some(d);
            }
            if disable {
                policy.enabled = false;
            }
            if enable {
                policy.enabled = true;
            }
            if let Err(why) = policy.validate() {
                return Ok(refuse(format!(
                    "backup policy of {tenant} not changed: {why}"
                )));
            }
            let accounts = AccountStore::new(aws.dynamodb(), names)
                .list(Some(&tenant))
                .await?;
            if accounts.is_empty() {
                eprintln!(
                    "kopterctl: note: {tenant} has no onboarded account yet; the policy applies once it has"
                );
            }
            store.set_policy(&tenant, &policy).await?;
            println!("{}", describe(&tenant, &policy));
        }
    }
    Ok(ExitCode::SUCCESS)
}
