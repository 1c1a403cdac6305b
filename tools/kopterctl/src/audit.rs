//! `kopterctl audit quarantine list|replay` and `kopterctl audit rules
//! list|disable|enable`: what trail-ingest could not file, and which
//! security rules a tenant turned off.
//!
//! `kopterctl audit repack`: rows written before segments (issue 23) into
//! segments, so that searches find them.
//!
//! Replay does not re-parse anything here: it asks trail-ingest to read
//! each quarantined record's log file again (a `kopterReplay` notice on the
//! trail-ingest queue). The file's segments that come out the same cost a
//! conditional check each (one whose quarantined record now files is a new
//! segment; its other records are then stored twice and shown once);
//! the quarantined records are filed if they now can be (after a fix or a
//! raised `trail.max_record_bytes`), or quarantined again; only once the
//! file was read to the end does trail-ingest release its older items, so a
//! replay that fails (the file is gone, S3 refuses) loses nothing and ends
//! in the DLQ with the reason.

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use kopter_runtime::AwsContext;
use kopter_schema::{Names, Service, TenantId};
use kopter_store::audit::{AuditStore, RULE_IDS, quarantine_replay_body};

#[derive(Subcommand)]
pub enum AuditAction {
    /// Records trail-ingest kept out of the audit log, and their replay.
    Quarantine {
        #[command(subcommand)]
        action: QuarantineAction,
    },
    /// Security rules of a tenant: list, turn one off or on again.
    Rules {
        #[command(subcommand)]
        action: RulesAction,
    },
    /// Rewrite a tenant's audit rows of before segments (one item per
    /// record, Kopter before issue 23) as segments, so that searches by
    /// principal, event and resource find them; idempotent, resumable.
    Repack {
        #[arg(long)]
        tenant: String,
        /// Days back from today (UTC) to repack, today included.
        #[arg(long, default_value_t = kopter_store::audit::MAX_WALK_DAYS)]
        days: i64,
    },
}

#[derive(Subcommand)]
pub enum QuarantineAction {
    /// Every quarantined record of a tenant: file, index, offset, reason.
    List {
        #[arg(long)]
        tenant: String,
        /// Print JSON (with each record's raw text) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Ask trail-ingest to read the quarantined records' files again.
    Replay {
        #[arg(long)]
        tenant: String,
        /// Only the file with this S3 key.
        #[arg(long)]
        key: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum RulesAction {
    /// Every rule and whether it is on for the tenant.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Turn a rule off for the tenant (its matches no longer become
    /// findings; takes effect within a minute).
    Disable {
        #[arg(long)]
        tenant: String,
        rule: String,
    },
    /// Turn a rule on again.
    Enable {
        #[arg(long)]
        tenant: String,
        rule: String,
    },
}

pub async fn run(aws: &AwsContext, names: &Names, action: AuditAction) -> anyhow::Result<ExitCode> {
    let store = AuditStore::new(aws.dynamodb(), names);
    let tenant = |t: &str| TenantId::new(t);
    match action {
        AuditAction::Quarantine {
            action: QuarantineAction::List { tenant: t, json },
        } => {
            let t = match tenant(&t) {
                Ok(t) => t,
                Err(e) => return Ok(crate::refuse(e)),
            };
            let items = store.quarantined(&t, None).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&items)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<20} {:<13} {:>6} {:>10} {:<14} {:<48} KEY",
                "QUARANTINED", "REASON", "INDEX", "OFFSET", "ACCOUNT", "DETAIL"
            );
            for q in &items {
                let mut detail = q.detail.clone();
                if detail.chars().count() > 48 {
                    detail = detail.chars().take(47).collect::<String>() + "…";
                }
                println!(
                    "{:<20} {:<13} {:>6} {:>10} {:<14} {:<48} s3://{}/{}",
                    q.quarantined_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    q.reason,
                    q.index,
                    q.offset,
                    q.account,
                    detail,
                    q.bucket,
                    q.key
                );
            }
            println!("{} quarantined record(s)", items.len());
        }
        AuditAction::Quarantine {
            action: QuarantineAction::Replay { tenant: t, key },
        } => {
            let t = match tenant(&t) {
                Ok(t) => t,
                Err(e) => return Ok(crate::refuse(e)),
            };
            let items = store.quarantined(&t, None).await?;
            let files: BTreeSet<(String, String)> = items
                .iter()
                .filter(|q| key.as_ref().is_none_or(|k| *k == q.key))
                .map(|q| (q.bucket.clone(), q.key.clone()))
                .collect();
            if files.is_empty() {
                println!(
                    "nothing to replay: no quarantined record of tenant {t}{}",
                    match &key {
                        Some(k) => format!(" in {k}"),
                        None => String::new(),
                    }
                );
                return Ok(ExitCode::SUCCESS);
            }
            let outbox =
                kopter_runtime::messaging::Outbox::new(aws.sqs(), aws.sns(), names.clone());
            let url = outbox.queue_url(Service::TrailIngest).await?;
            for (bucket, key) in &files {
                aws.sqs()
                    .send_message()
                    .queue_url(&url)
                    .message_body(quarantine_replay_body(bucket, key))
                    .send()
                    .await
                    .with_context(|| format!("queue the replay of s3://{bucket}/{key}"))?;
                let n = items
                    .iter()
                    .filter(|q| q.bucket == *bucket && q.key == *key)
                    .count();
                println!("s3://{bucket}/{key}: {n} record(s) → trail-ingest queue");
            }
            println!(
                "{} file(s) queued; records that still cannot be filed stay quarantined (`kopterctl audit quarantine list --tenant {t}`)",
                files.len()
            );
        }
        AuditAction::Repack { tenant: t, days } => {
            let t = match tenant(&t) {
                Ok(t) => t,
                Err(e) => return Ok(crate::refuse(e)),
            };
            if !(1..=kopter_store::audit::MAX_WALK_DAYS).contains(&days) {
                return Ok(crate::refuse(format!(
                    "--days must be 1..={}",
                    kopter_store::audit::MAX_WALK_DAYS
                )));
            }
            let today = chrono::Utc::now().date_naive();
            let mut total = kopter_store::audit::Repacked::default();
            for back in 0..days {
                let day = today - chrono::Duration::days(back);
                let r = store.repack_day(&t, day).await?;
                if r.records > 0 || r.deleted > 0 {
                    println!(
                        "{day}: {} record(s) → {} segment(s), {} item(s) deleted",
                        r.records, r.segments, r.deleted
                    );
                }
                total.records += r.records;
                total.segments += r.segments;
                total.deleted += r.deleted;
            }
            println!(
                "tenant {t}: {} record(s) of {days} day(s) repacked into {} segment(s); {} item(s) of before deleted",
                total.records, total.segments, total.deleted
            );
        }
        AuditAction::Rules { action } => {
            let (t, change) = match action {
                RulesAction::List { tenant } => (tenant, None),
                RulesAction::Disable { tenant, rule } => (tenant, Some((rule, false))),
                RulesAction::Enable { tenant, rule } => (tenant, Some((rule, true))),
            };
            let t = match tenant(&t) {
                Ok(t) => t,
                Err(e) => return Ok(crate::refuse(e)),
            };
            if let Some((rule, enabled)) = change {
                if !RULE_IDS.contains(&rule.as_str()) {
                    return Ok(crate::refuse(format!(
                        "no rule {rule:?}; rules: {}",
                        RULE_IDS.join(", ")
                    )));
                }
                store.set_rule_enabled(&t, &rule, enabled).await?;
            }
            let settings = store.settings(&t).await?;
            for id in RULE_IDS {
                let state = if settings.disabled_rules.contains(*id) {
                    "off"
                } else {
                    "on"
                };
                println!("{id:<32} {state}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
