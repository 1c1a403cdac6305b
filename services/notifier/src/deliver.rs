//! Delivery of one dispatch (an event, a collapsed burst or a digest) to a
//! tenant's channels, each at most once.
//!
//! - A channel is skipped when it is not configured, when the dispatch is
//!   below the channel's minimum severity, or when a marker in the dedup
//!   table (`{tenant}#notify-sent#{dispatch}#{channel}`) says it was
//!   delivered already: a retried message re-sends only what failed.
//! - A failed attempt is retried through the queue (the worker's backoff).
//!   On the last receive (`queues.max_receive_count`), or at once for a
//!   permanent failure (address refused, SES rejection, HTTP 4xx), the
//!   channel is marked failing with the reason and the message goes on to
//!   the DLQ. While a channel is marked failing its messages are not
//!   attempted: they go to the DLQ until `kopterctl channels set|reset`
//!   clears the mark (then redrive the DLQ).
//! - Each message is one tenant's; retries wait in the queue, not in a
//!   handler slot, so a failing tenant does not hold up the others.

use std::sync::LazyLock;

use anyhow::Context;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{Duration, Utc};
use kopter_runtime::{HandlerError, metrics};
use kopter_schema::items::keys;
use kopter_schema::messages::Severity;
use kopter_schema::{Names, Table, TenantId};
use prometheus::{IntCounterVec, Opts};

use crate::email::Mailer;
use crate::webhook::WebhookClient;
use kopter_store::channels::{Channel, ChannelStore, TenantChannels};
use kopter_store::event::severity_name;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendErrorKind {
    /// The destination is not allowed (SSRF policy).
    Refused,
    /// Will not succeed by retrying (HTTP 4xx, SES rejection, no sender).
    Permanent,
    /// Might succeed later (timeouts, 5xx, 429, throttling).
    Retry,
}

/// A failed delivery attempt. `reason` never contains the webhook URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct SendError {
    pub kind: SendErrorKind,
    pub reason: String,
}

impl SendError {
    pub fn refused(reason: String) -> Self {
        Self {
            kind: SendErrorKind::Refused,
            reason,
        }
    }
    pub fn permanent(reason: String) -> Self {
        Self {
            kind: SendErrorKind::Permanent,
            reason,
        }
    }
    pub fn retry(reason: String) -> Self {
        Self {
            kind: SendErrorKind::Retry,
            reason,
        }
    }
}

/// What to deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatch {
    pub tenant: TenantId,
    /// Names the delivery markers: the same dispatch is delivered once.
    pub id: String,
    pub severity: Severity,
    pub subject: String,
    pub text: String,
    /// A daily digest: goes to every channel with digests on, whatever its
    /// minimum severity.
    pub digest: bool,
}

impl Dispatch {
    pub fn webhook_text(&self) -> String {
        format!(
            "*[{}]* {}\n{}",
            severity_name(self.severity),
            self.subject,
            self.text
        )
    }

    pub fn email_subject(&self) -> String {
        if self.digest {
            format!("[Kopter] {}", self.subject)
        } else {
            format!(
                "[Kopter] [{}] {}",
                severity_name(self.severity),
                self.subject
            )
        }
    }
}

struct DeliveryMetrics {
    deliveries: IntCounterVec,
}

fn m() -> &'static DeliveryMetrics {
    static M: LazyLock<DeliveryMetrics> = LazyLock::new(|| DeliveryMetrics {
        deliveries: metrics::register(
            IntCounterVec::new(
                Opts::new(
                    "kopter_notifier_deliveries_total",
                    "Notification deliveries by channel and outcome (sent, failed, refused, \
                     duplicate, skipped_failing, marked_failing, waited_lease: one wait while \
                     another handler held the send).",
                ),
                &["channel", "outcome"],
            )
            .expect("valid metric"),
        ),
    });
    &M
}

fn count(ch: Channel, outcome: &str) {
    m().deliveries
        .with_label_values(&[ch.name(), outcome])
        .inc();
}

/// Per-channel delivery markers in the dedup table: a lease while a
/// handler sends, then "delivered".
///
/// Two handlers can hold the same dispatch at once (a duplicated event, a
/// retried burst flush scheduled twice, SQS redelivering a message whose
/// handler is slow). Each channel's send is therefore claimed first: a
/// conditional write takes the marker (`lease_until`, epoch milliseconds,
/// and a random `lease_owner`) when it does not exist or its lease has run
/// out; a second handler waits for the first's outcome instead of sending
/// again. A handler killed mid-send leaves a lease that runs out after
/// `lease`, and then the message's retry sends. What no marker can cover
/// is a crash after the receiver took the message and before "delivered"
/// is written: that one is sent again (at-least-once).
#[derive(Clone, Debug)]
pub struct Markers {
    ddb: aws_sdk_dynamodb::Client,
    table: String,
    retention_days: u32,
    lease: std::time::Duration,
    email_lease: std::time::Duration,
}

/// What [`Markers::claim`] found for one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This handler holds the lease (its owner token): send, then
    /// [`Markers::record`], or [`Markers::release`] on failure.
    Mine(String),
    /// Delivered before: do not send.
    Delivered,
    /// Another handler holds the lease until this time (epoch ms).
    Busy(i64),
}

impl Markers {
    /// `lease`: how long a claim holds off other handlers; longer than one
    /// send may take (the webhook timeout and some). The email channel's
    /// is the same unless [`Markers::with_email_lease`] sets it.
    pub fn new(
        ddb: aws_sdk_dynamodb::Client,
        names: &Names,
        retention_days: u32,
        lease: std::time::Duration,
    ) -> Self {
        Self {
            ddb,
            table: names.table(Table::Dedup),
            retention_days,
            lease,
            email_lease: lease,
        }
    }

    /// The email channel's lease: an SES send is one SDK operation, which
    /// retries up to `aws.operation_timeout`, so its lease is that and some.
    pub fn with_email_lease(mut self, lease: std::time::Duration) -> Self {
        self.email_lease = lease;
        self
    }

    /// The lease of a channel's claim.
    pub fn lease(&self, ch: Channel) -> std::time::Duration {
        match ch {
            Channel::Webhook => self.lease,
            Channel::Email => self.email_lease,
        }
    }

    fn key(tenant: &TenantId, dispatch: &str, ch: Channel) -> String {
        keys::tenant_dedup(tenant, "notify-sent", &format!("{dispatch}#{}", ch.name()))
    }

    fn expires(&self) -> AttributeValue {
        let expires = Utc::now() + Duration::days(i64::from(self.retention_days));
        AttributeValue::N(expires.timestamp().to_string())
    }

    /// Takes the channel's lease for this dispatch unless it was delivered
    /// or another handler holds an unexpired lease. One conditional
    /// `UpdateItem`, and a consistent `GetItem` when the condition fails.
    pub async fn claim(
        &self,
        tenant: &TenantId,
        dispatch: &str,
        ch: Channel,
    ) -> anyhow::Result<Claim> {
        let key = Self::key(tenant, dispatch, ch);
        let owner = format!("{:016x}", rand::random::<u64>());
        let now = Utc::now().timestamp_millis();
        let until = now + i64::try_from(self.lease(ch).as_millis()).unwrap_or(i64::MAX / 2);
        let r = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.clone()))
            .update_expression("SET lease_until = :until, lease_owner = :owner, expires_at = :exp")
            .condition_expression(
                "attribute_not_exists(pk) OR \
                 (attribute_not_exists(delivered_at) AND lease_until < :now)",
            )
            .expression_attribute_values(":until", AttributeValue::N(until.to_string()))
            .expression_attribute_values(":owner", AttributeValue::S(owner.clone()))
            .expression_attribute_values(":exp", self.expires())
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .send()
            .await;
        match r {
            Ok(_) => return Ok(Claim::Mine(owner)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
            Err(e) => return Err(anyhow::Error::new(e).context("claim a delivery marker")),
        }
        let out = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key))
            .consistent_read(true)
            .send()
            .await
            .context("read a delivery marker")?;
        let Some(item) = out.item else {
            // Released between the two calls: free now.
            return Ok(Claim::Busy(now));
        };
        if item.contains_key("delivered_at") {
            return Ok(Claim::Delivered);
        }
        let until = match item.get("lease_until") {
            Some(AttributeValue::N(n)) => n.parse().unwrap_or(now),
            _ => now,
        };
        Ok(Claim::Busy(until))
    }

    /// Marks the channel delivered (replaces the lease; kept for
    /// `retention_days`).
    pub async fn record(
        &self,
        tenant: &TenantId,
        dispatch: &str,
        ch: Channel,
    ) -> anyhow::Result<()> {
        self.ddb
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(Self::key(tenant, dispatch, ch)))
            .item("delivered_at", AttributeValue::S(Utc::now().to_rfc3339()))
            .item("expires_at", self.expires())
            .send()
            .await
            .context("write a delivery marker")?;
        Ok(())
    }

    /// Gives up this handler's lease after a failed send, so the retry (or
    /// a concurrent handler) need not wait for it to run out. Does nothing
    /// if the lease has passed to another owner.
    pub async fn release(
        &self,
        tenant: &TenantId,
        dispatch: &str,
        ch: Channel,
        owner: &str,
    ) -> anyhow::Result<()> {
        let r = self
            .ddb
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(Self::key(tenant, dispatch, ch)))
            .condition_expression("attribute_not_exists(delivered_at) AND lease_owner = :owner")
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()))
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(anyhow::Error::new(e).context("release a delivery marker")),
        }
    }

    /// [`Markers::claim`], waiting out another handler's lease (polling
    /// after 200 ms, then doubling up to 2 s) for at most twice the lease:
    /// `None` if the dispatch was delivered meanwhile, the owner token once
    /// this handler holds it.
    /// Errors (retry) if the lease is still held at the deadline.
    pub async fn claim_or_wait(
        &self,
        tenant: &TenantId,
        dispatch: &str,
        ch: Channel,
    ) -> Result<Option<String>, HandlerError> {
        let deadline = tokio::time::Instant::now() + self.lease(ch) * 2;
        let mut wait = std::time::Duration::from_millis(200);
        loop {
            match self.claim(tenant, dispatch, ch).await? {
                Claim::Mine(owner) => return Ok(Some(owner)),
                Claim::Delivered => return Ok(None),
                Claim::Busy(until) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(HandlerError::retry(anyhow::anyhow!(
                            "another handler is delivering {dispatch} to the {} channel of \
                             tenant {tenant} (lease until {until} ms); retry later",
                            ch.name()
                        )));
                    }
                    count(ch, "waited_lease");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(std::time::Duration::from_secs(2));
                }
            }
        }
    }
}

#[derive(Clone)]
pub struct Deliverer {
    pub channels: ChannelStore,
    pub webhook: WebhookClient,
    pub mailer: Mailer,
    pub markers: Markers,
    /// `queues.max_receive_count`: the receive after which a failing
    /// channel is marked failing (the message then goes to the DLQ).
    pub max_receive_count: u32,
}

/// Channels a dispatch went to in this call.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub sent: Vec<Channel>,
    pub already: Vec<Channel>,
}

impl Deliverer {
    /// Delivers to every channel that wants it and has not had it yet.
    pub async fn deliver(
        &self,
        d: &Dispatch,
        receive_count: u32,
    ) -> Result<Delivered, HandlerError> {
        let settings = self.channels.get(&d.tenant).await?;
        let mut report = Delivered::default();
        let mut errors: Vec<(Channel, SendError)> = Vec::new();
        for ch in Channel::ALL {
            if !wants(&settings, ch, d) {
                continue;
            }
            let Some(owner) = self.markers.claim_or_wait(&d.tenant, &d.id, ch).await? else {
                count(ch, "duplicate");
                report.already.push(ch);
                continue;
            };
            if let Some(f) = settings.failing(ch) {
                self.markers.release(&d.tenant, &d.id, ch, &owner).await?;
                count(ch, "skipped_failing");
                errors.push((
                    ch,
                    SendError::permanent(format!(
                        "the {} channel is marked failing since {} ({}); not attempted — fix it, \
                         run `kopterctl channels reset`, then redrive the DLQ",
                        ch.name(),
                        f.since.to_rfc3339(),
                        f.reason
                    )),
                ));
                continue;
            }
            let result = match ch {
                Channel::Webhook => {
                    let url = settings.notify_webhook.as_ref().expect("configured");
                    self.webhook.post(url, &d.webhook_text()).await
                }
                Channel::Email => {
                    self.mailer
                        .send(&settings.notify_email, &d.email_subject(), &d.text)
                        .await
                }
            };
            match result {
                Ok(()) => {
                    count(ch, "sent");
                    self.markers.record(&d.tenant, &d.id, ch).await?;
                    report.sent.push(ch);
                }
                Err(e) => {
                    self.markers.release(&d.tenant, &d.id, ch, &owner).await?;
                    count(
                        ch,
                        if e.kind == SendErrorKind::Refused {
                            "refused"
                        } else {
                            "failed"
                        },
                    );
                    let last = receive_count >= self.max_receive_count;
                    if e.kind != SendErrorKind::Retry || last {
                        self.channels.mark_failing(&d.tenant, ch, &e.reason).await?;
                        count(ch, "marked_failing");
                        tracing::warn!(
                            tenant = %d.tenant,
                            channel = ch.name(),
                            reason = %e.reason,
                            "channel marked failing; its messages go to the DLQ"
                        );
                        errors.push((ch, SendError::permanent(e.reason)));
                    } else {
                        tracing::info!(
                            tenant = %d.tenant,
                            channel = ch.name(),
                            reason = %e.reason,
                            receive_count,
                            "delivery failed; will retry"
                        );
                        errors.push((ch, e));
                    }
                }
            }
        }
        if errors.is_empty() {
            return Ok(report);
        }
        let text = errors
            .iter()
            .map(|(ch, e)| format!("{}: {}", ch.name(), e.reason))
            .collect::<Vec<_>>()
            .join("; ");
        let err = anyhow::anyhow!("deliver {} to tenant {}: {text}", d.id, d.tenant);
        if errors.iter().any(|(_, e)| e.kind == SendErrorKind::Retry) {
            Err(HandlerError::Retry(err))
        } else {
            Err(HandlerError::Permanent(err))
        }
    }
}

fn wants(settings: &TenantChannels, ch: Channel, d: &Dispatch) -> bool {
    if !settings.configured(ch) {
        return false;
    }
    if d.digest {
        settings.digest()
    } else {
        d.severity >= settings.min_severity(ch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_carry_severity_and_subject() {
        let d = Dispatch {
            tenant: TenantId::new("acme").unwrap(),
            id: "n-1".into(),
            severity: Severity::Critical,
            subject: "Root user activity".into(),
            text: "ConsoleLogin in account 111122223333".into(),
            digest: false,
        };
        assert_eq!(d.email_subject(), "[Kopter] [critical] Root user activity");
        assert_eq!(
            d.webhook_text(),
            "*[critical]* Root user activity\nConsoleLogin in account 111122223333"
        );
        let digest = Dispatch {
            digest: true,
            subject: "Daily digest 2026-03-04".into(),
            ..d
        };
        assert_eq!(digest.email_subject(), "[Kopter] Daily digest 2026-03-04");
    }

    #[test]
    fn each_channel_has_its_lease() {
        let conf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .build();
        let ddb = aws_sdk_dynamodb::Client::from_conf(conf);
        let names = Names::new(kopter_schema::EnvName::new("test").unwrap());
        let m = Markers::new(ddb, &names, 7, std::time::Duration::from_secs(15));
        assert_eq!(m.lease(Channel::Email), std::time::Duration::from_secs(15));
        let m = m.with_email_lease(std::time::Duration::from_secs(65));
        assert_eq!(
            m.lease(Channel::Webhook),
            std::time::Duration::from_secs(15)
        );
        assert_eq!(m.lease(Channel::Email), std::time::Duration::from_secs(65));
    }

    #[test]
    fn severity_and_digest_routing() {
        let mut c = TenantChannels {
            notify_email: vec!["ops@example.com".into()],
            ..Default::default()
        };
        let d = |severity, digest| Dispatch {
            tenant: TenantId::new("acme").unwrap(),
            id: "x".into(),
            severity,
            subject: String::new(),
            text: String::new(),
            digest,
        };
        assert!(!wants(&c, Channel::Webhook, &d(Severity::Critical, false)));
        assert!(!wants(&c, Channel::Email, &d(Severity::Info, false)));
        assert!(wants(&c, Channel::Email, &d(Severity::Warning, false)));
        assert!(wants(&c, Channel::Email, &d(Severity::Info, true)));
        c.notify_digest = Some(false);
        assert!(!wants(&c, Channel::Email, &d(Severity::Info, true)));
    }
}
