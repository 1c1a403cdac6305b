//! `kopterctl notifications` (a tenant's feed, mark read) and `kopterctl
//! channels` (where a tenant's notifications are delivered).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use kopter_runtime::{AwsContext, Config};
use kopter_schema::messages::Severity;
use kopter_schema::{Names, TenantId};
use kopter_store::channels::{Channel, ChannelStore, ChannelUpdate, valid_email};
use kopter_store::event::{parse_severity, severity_name};
use kopter_store::feed::FeedStore;
use kopter_store::webhook_url::{AddressPolicy, WebhookUrl};

#[derive(Args)]
pub struct NotificationsArgs {
    #[arg(long)]
    tenant: String,
    /// Only unread notifications.
    #[arg(long)]
    unread: bool,
    /// Mark these notifications read (their ID column), then list.
    #[arg(long, value_delimiter = ',')]
    mark_read: Vec<String>,
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print JSON rows instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ChannelsArgs {
    #[command(subcommand)]
    command: ChannelsCommand,
}

#[derive(Subcommand)]
enum ChannelsCommand {
    /// Set a tenant's channels; unnamed settings stay as they are.
    /// Changing a channel clears its failing mark.
    Set {
        #[arg(long)]
        tenant: String,
        /// Slack-compatible incoming-webhook URL (https; `none` removes it).
        #[arg(long)]
        webhook: Option<String>,
        /// Lowest severity posted to the webhook: info, warning, critical.
        #[arg(long)]
        webhook_min_severity: Option<String>,
        /// Recipient addresses, comma-separated (`none` removes email).
        #[arg(long, value_delimiter = ',')]
        email: Option<Vec<String>>,
        /// Lowest severity emailed: info, warning, critical.
        #[arg(long)]
        email_min_severity: Option<String>,
        /// Daily digest to the channels: on or off.
        #[arg(long)]
        digest: Option<String>,
    },
    /// Show a tenant's channels (the webhook's path is never shown).
    Show {
        #[arg(long)]
        tenant: String,
    },
    /// Clear failing marks after fixing a channel (then redrive the DLQ).
    Reset {
        #[arg(long)]
        tenant: String,
    },
}

fn refuse(why: impl std::fmt::Display) -> ExitCode {
    eprintln!("kopterctl: {why}");
    ExitCode::from(2)
}

pub async fn notifications(
    aws: &AwsContext,
    names: &Names,
    args: NotificationsArgs,
) -> anyhow::Result<ExitCode> {
    let tenant = match TenantId::new(args.tenant) {
        Ok(t) => t,
        Err(e) => return Ok(refuse(e)),
    };
    let feed = FeedStore::new(aws.dynamodb(), names);
    for id in &args.mark_read {
        if !feed.mark_read(&tenant, id).await? {
            eprintln!("kopterctl: tenant {tenant} has no notification {id}");
            return Ok(ExitCode::FAILURE);
        }
        println!("marked read: {id}");
    }
    let rows = feed.list(&tenant, args.unread, args.limit).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<58} {:<8} {:<6} {:<32} TEXT",
        "ID", "SEVERITY", "READ", "TITLE"
    );
    for r in &rows {
        println!(
            "{:<58} {:<8} {:<6} {:<32} {}",
            r.sk,
            severity_name(r.severity),
            if r.unread() { "no" } else { "yes" },
            r.title,
            r.text.lines().next().unwrap_or("")
        );
    }
    println!(
        "{} {}notification(s)",
        rows.len(),
        if args.unread { "unread " } else { "" }
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn channels(
    aws: &AwsContext,
    names: &Names,
    config: &Config,
    args: ChannelsArgs,
) -> anyhow::Result<ExitCode> {
    let store = ChannelStore::new(aws.dynamodb(), names);
    let policy = AddressPolicy {
        allow_local: config.notifier.webhook_allow_local,
    };
    let sev = |s: Option<String>, what: &str| -> Result<Option<Severity>, String> {
        s.map(|s| {
            parse_severity(&s)
                .ok_or_else(|| format!("--{what} {s:?}: expected info, warning or critical"))
        })
        .transpose()
    };
    match args.command {
        ChannelsCommand::Set {
            tenant,
            webhook,
            webhook_min_severity,
            email,
            email_min_severity,
            digest,
        } => {
            let tenant = match TenantId::new(tenant) {
                Ok(t) => t,
                Err(e) => return Ok(refuse(e)),
            };
            let webhook = match webhook.as_deref() {
                None => None,
                Some("none") => Some(None),
                Some(raw) => match WebhookUrl::parse(raw, policy) {
                    Ok(u) => Some(Some(u)),
                    // The refusal names the problem, never the URL.
                    Err(e) => return Ok(refuse(format!("--webhook: {e}"))),
                },
            };
            let email = match email {
                None => None,
                Some(list) if list == ["none"] => Some(Vec::new()),
                Some(list) => {
                    if let Some(bad) = list.iter().find(|a| !valid_email(a)) {
                        return Ok(refuse(format!("--email: {bad:?} is not an email address")));
                    }
                    Some(list)
                }
            };
            let webhook_min_severity = match sev(webhook_min_severity, "webhook-min-severity") {
                Ok(s) => s,
                Err(e) => return Ok(refuse(e)),
            };
            let email_min_severity = match sev(email_min_severity, "email-min-severity") {
                Ok(s) => s,
                Err(e) => return Ok(refuse(e)),
            };
            let digest = match digest.as_deref() {
                None => None,
                Some("on") => Some(true),
                Some("off") => Some(false),
                Some(other) => {
                    return Ok(refuse(format!("--digest {other:?}: expected on or off")));
                }
            };
            let update = ChannelUpdate {
                webhook,
                webhook_min_severity,
                email,
                email_min_severity,
                digest,
                reset: false,
            };
            store.update(&tenant, &update).await?;
            show(&store, &tenant).await?;
        }
        ChannelsCommand::Show { tenant } => {
            let tenant = match TenantId::new(tenant) {
                Ok(t) => t,
                Err(e) => return Ok(refuse(e)),
            };
            show(&store, &tenant).await?;
        }
        ChannelsCommand::Reset { tenant } => {
            let tenant = match TenantId::new(tenant) {
                Ok(t) => t,
                Err(e) => return Ok(refuse(e)),
            };
            store
                .update(
                    &tenant,
                    &ChannelUpdate {
                        reset: true,
                        ..Default::default()
                    },
                )
                .await?;
            show(&store, &tenant).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(store: &ChannelStore, tenant: &TenantId) -> anyhow::Result<()> {
    let c = store.get(tenant).await?;
    println!("tenant {tenant}");
    for ch in Channel::ALL {
        let target = match ch {
            Channel::Webhook => c.notify_webhook.as_ref().map(|u| u.to_string()),
            Channel::Email => (!c.notify_email.is_empty()).then(|| c.notify_email.join(",")),
        };
        let status = match c.failing(ch) {
            Some(f) => format!("FAILING since {}: {}", f.since.to_rfc3339(), f.reason),
            None => "ok".into(),
        };
        match target {
            Some(t) => println!(
                "  {:<8} {t} (min severity {}) {status}",
                ch.name(),
                severity_name(c.min_severity(ch))
            ),
            None => println!("  {:<8} not configured", ch.name()),
        }
    }
    println!("  digest   {}", if c.digest() { "on" } else { "off" });
    Ok(())
}
