//! `kopterctl notifications` (a tenant's feed, mark read) and `kopterctl
//! channels` (where a tenant's notifications are delivered).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use kopter_runtime::{AwsContext, Config};
use kopter_schema::messages::Severity;
use kopter_schema::{Names, TenantId};
use kopter_store::channels::{Channel, ChannelStore, ChannelUpdate, valid_email};
use kopter_store::event::{parse_severity, severity_name};
use kopter_store::feed::{FeedQuery, FeedRow, FeedStore};
use kopter_store::webhook_url::{AddressPolicy, WebhookUrl};

use crate::output::{self, Listing};

/// Characters of a notification's id the table shows; `--mark-read`
/// takes these, any longer prefix, the whole id or the JSON's `sk`.
pub const SHORT_ID: usize = 12;
/// The shortest id prefix `--mark-read` accepts.
const MIN_ID_PREFIX: usize = 6;

#[derive(Args)]
pub struct NotificationsArgs {
    #[arg(long)]
    tenant: String,
    /// Only unread notifications.
    #[arg(long)]
    unread: bool,
    /// Only these severities (comma-separated: info, warning, critical).
    #[arg(long, value_delimiter = ',')]
    severity: Vec<String>,
    /// Mark these notifications read, then list: the ID column (or any
    /// prefix of 6+ characters of the id, or the JSON's `id` or `sk`).
    #[arg(long, value_delimiter = ',')]
    mark_read: Vec<String>,
    #[arg(long, default_value_t = 50)]
    limit: usize,
    #[command(flatten)]
    format: output::FormatArg,
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
    let severities = match args
        .severity
        .iter()
        .map(|s| {
            parse_severity(s)
                .ok_or_else(|| format!("--severity {s:?}: expected info, warning or critical"))
        })
        .collect::<Result<Vec<Severity>, String>>()
    {
        Ok(s) => s,
        Err(e) => return Ok(refuse(e)),
    };
    let feed = FeedStore::new(aws.dynamodb(), names);
    for given in &args.mark_read {
        let sk = match resolve(&feed, &tenant, given).await? {
            Ok(sk) => sk,
            Err(why) => {
                eprintln!("kopterctl: --mark-read {given}: {why}");
                return Ok(ExitCode::FAILURE);
            }
        };
        if !feed.mark_read(&tenant, &sk).await? {
            eprintln!("kopterctl: tenant {tenant} has no notification {given}");
            return Ok(ExitCode::FAILURE);
        }
        println!("marked read: {given}");
    }
    let rows = list(&feed, &tenant, args.unread, &severities, args.limit).await?;
    let mut t = Listing::new(&["ID", "TIME", "SEVERITY", "READ", "TITLE", "TEXT"]);
    for r in &rows {
        t.row(vec![
            r.id.chars().take(SHORT_ID).collect(),
            r.at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            severity_name(r.severity).to_owned(),
            if r.unread() { "no" } else { "yes" }.to_owned(),
            r.title.clone(),
            r.text.lines().next().unwrap_or("").to_owned(),
        ]);
    }
    t.note(format!(
        "{} {}notification(s), newest event first",
        rows.len(),
        if args.unread { "unread " } else { "" }
    ));
    output::print(args.format.get(), &t, &rows)?;
    Ok(ExitCode::SUCCESS)
}

/// Newest first, at most `limit`, of the given severities (all when
/// empty): pages of the feed, filtered by DynamoDB for one severity and
/// here for several.
async fn list(
    feed: &FeedStore,
    tenant: &TenantId,
    unread_only: bool,
    severities: &[Severity],
    limit: usize,
) -> anyhow::Result<Vec<FeedRow>> {
    let q = FeedQuery {
        unread_only,
        severity: match severities {
            [one] => Some(*one),
            _ => None,
        },
        limit: limit.clamp(1, 1000),
        ..FeedQuery::default()
    };
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = feed.page(tenant, &q, after.as_ref()).await?;
        out.extend(
            page.items
                .into_iter()
                .filter(|r| severities.is_empty() || severities.contains(&r.severity)),
        );
        if out.len() >= limit || page.next.is_none() {
            break;
        }
        after = page.next;
    }
    out.truncate(limit);
    Ok(out)
}

/// The sort key of the notification `given` names: a sort key as the JSON
/// shows it, or an id or id prefix (`Err`: none or several match).
async fn resolve(
    feed: &FeedStore,
    tenant: &TenantId,
    given: &str,
) -> anyhow::Result<Result<String, String>> {
    if given.contains('#') {
        return Ok(Ok(given.to_owned()));
    }
    if given.len() < MIN_ID_PREFIX || !given.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(Err(format!(
            "expected the ID column ({SHORT_ID} hex characters, at least {MIN_ID_PREFIX}) or a JSON `sk`"
        )));
    }
    let found = feed.find_by_id(tenant, &given.to_ascii_lowercase()).await?;
    Ok(match found.as_slice() {
        [one] => Ok(one.sk.clone()),
        [] => Err(format!("tenant {tenant} has no notification with this id")),
        many => Err(format!(
            "{} notifications' ids start with it; give more characters",
            many.len()
        )),
    })
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
