//! notifier: every event worth telling becomes a row in the tenant's
//! notification feed and, per the tenant's channels, a webhook post and/or
//! an email; bursts are collapsed; a daily digest sums up the day. See
//! `DESIGN.md` next to this file.

pub mod deliver;
pub mod digest;
pub mod email;
pub mod event;
pub mod webhook;

use std::sync::{Arc, LazyLock};

use anyhow::Context;
use chrono::{NaiveDate, Utc};
use kopter_runtime::accounts::AccountStore;
use kopter_runtime::config::NotifierConfig;
use kopter_runtime::messaging::{Outbox, envelope};
use kopter_runtime::{BoxFuture, Delivery, Handler, HandlerError, ServiceContext, metrics};
use kopter_schema::messages::{BurstFlush, DailyDigest, Severity};
use kopter_schema::{Message, Service, TenantId};
use kopter_store::audit::AuditStore;
use prometheus::{IntCounterVec, Opts};

use crate::deliver::{Delivered, Deliverer, Dispatch, Markers};
use crate::digest::CostReader;
use crate::email::{Mailer, ses_client};
use crate::webhook::{AddressPolicy, Lookup, SystemLookup, WebhookClient};
use kopter_store::channels::ChannelStore;
use kopter_store::event::{Event, key_safe, stable_id};
use kopter_store::feed::{FeedRow, FeedStore, PutOutcome, burst_key};

struct NotifierMetrics {
    events: IntCounterVec,
}

fn m() -> &'static NotifierMetrics {
    static M: LazyLock<NotifierMetrics> = LazyLock::new(|| NotifierMetrics {
        events: metrics::register(
            IntCounterVec::new(
                Opts::new(
                    "kopter_notifier_events_total",
                    "Messages the notifier handled, by kind and outcome (new, duplicate, ignored).",
                ),
                &["kind", "outcome"],
            )
            .expect("valid metric"),
        ),
    });
    &M
}

/// What handling one message did (for tests and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Not worth telling (routine inventory change).
    Ignored,
    /// A new feed row; delivered now (no burst window) or counted in a
    /// burst window whose flush delivers it.
    New(Option<Delivered>),
    /// Already in the feed; only what was not delivered yet was.
    Duplicate(Option<Delivered>),
    Flushed(Option<Delivered>),
    DigestFannedOut(usize),
    Digest(Delivered),
}

pub struct Notifier {
    pub feed: FeedStore,
    pub deliverer: Deliverer,
    pub audit: AuditStore,
    pub costs: CostReader,
    /// Open waste findings (the digest's line).
    pub waste: kopter_store::waste::WasteStore,
    pub accounts: AccountStore,
    pub outbox: Outbox,
    pub sqs: aws_sdk_sqs::Client,
    pub config: NotifierConfig,
}

/// The service's queue handler.
pub struct NotifierHandler(pub Arc<Notifier>);

impl Handler for NotifierHandler {
    fn handle<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move { self.0.handle(delivery).await.map(|_| ()) })
    }
}

/// A notifier wired to the process's AWS clients and config, resolving
/// webhook hosts with the system resolver.
pub fn notifier(ctx: &ServiceContext) -> Notifier {
    notifier_with_lookup(ctx, Arc::new(SystemLookup))
}

/// The service's queue handler, as `main` runs it (the all-in-one `kopter`
/// process builds every service's handler this way).
pub fn handler(ctx: &ServiceContext) -> anyhow::Result<Arc<dyn Handler>> {
    Ok(Arc::new(NotifierHandler(Arc::new(notifier(ctx)))))
}

/// Like [`notifier`], with a given name resolver (tests).
pub fn notifier_with_lookup(ctx: &ServiceContext, lookup: Arc<dyn Lookup>) -> Notifier {
    let c = &ctx.config.notifier;
    let ddb = ctx.aws.dynamodb();
    Notifier {
        feed: FeedStore::new(ddb.clone(), &ctx.names),
        deliverer: Deliverer {
            channels: ChannelStore::new(ddb.clone(), &ctx.names),
            webhook: WebhookClient::new(
                c.webhook_timeout,
                AddressPolicy {
                    allow_local: c.webhook_allow_local,
                },
                lookup,
            ),
            mailer: Mailer::new(ses_client(&ctx.aws.sdk), c.email_from.clone()),
            markers: Markers::new(
                ddb.clone(),
                &ctx.names,
                c.retention_days,
                c.webhook_timeout + std::time::Duration::from_secs(5),
            )
            .with_email_lease(ctx.config.aws.operation_timeout + std::time::Duration::from_secs(5)),
            max_receive_count: ctx.config.queues.max_receive_count,
        },
        audit: AuditStore::new(ddb.clone(), &ctx.names),
        waste: kopter_store::waste::WasteStore::new(ddb.clone(), &ctx.names),
        costs: CostReader::new(ddb, &ctx.names),
        accounts: ctx.accounts.clone(),
        outbox: ctx.outbox.clone(),
        sqs: ctx.aws.sqs(),
        config: c.clone(),
    }
}

impl Notifier {
    pub async fn handle(&self, delivery: &Delivery) -> Result<Handled, HandlerError> {
        let env = kopter_runtime::decode_for(Service::Notifier, delivery)?;
        let kind = env.message.kind();
        let rc = delivery.receive_count;
        let handled = match &env.message {
            Message::DailyDigest(DailyDigest { day, tenant: None }) => {
                self.fan_out_digest(*day).await?
            }
            Message::DailyDigest(DailyDigest {
                day,
                tenant: Some(t),
            }) => self.digest(t, *day, rc).await?,
            Message::BurstFlush(f) => self.flush(f, rc).await?,
            other => match event::from_message(other) {
                Some(ev) => self.event(ev, rc).await?,
                None => Handled::Ignored,
            },
        };
        let outcome = match &handled {
            Handled::Ignored => "ignored",
            Handled::Duplicate(_) => "duplicate",
            _ => "new",
        };
        m().events.with_label_values(&[kind, outcome]).inc();
        Ok(handled)
    }

    /// One event: a feed row, then delivery (now, or at its burst's end).
    pub async fn event(&self, ev: Event, rc: u32) -> Result<Handled, HandlerError> {
        let row = FeedRow::from_event(&ev, self.config.retention_days);
        let window = self.config.burst_window;
        if window.is_zero() {
            let outcome = self.feed.put(&row).await?;
            let dispatch = Dispatch {
                tenant: row.tenant.clone(),
                id: format!("n-{}", row.id),
                severity: row.severity,
                subject: row.title.clone(),
                text: row.text.clone(),
                digest: false,
            };
            let delivered = self.deliverer.deliver(&dispatch, rc).await?;
            return Ok(match outcome {
                PutOutcome::New => Handled::New(Some(delivered)),
                PutOutcome::Duplicate => Handled::Duplicate(Some(delivered)),
            });
        }
        let now = Utc::now();
        let (outcome, start) = self.feed.put_in_burst(&row, window, now).await?;
        let key = burst_key(&row.tenant, &row.rule, start);
        // The first event of a window schedules its flush. A retry of that
        // event (same id) schedules it again; a flush is idempotent.
        if self.feed.claim_flush(&key, &row.id).await? {
            let end = start + chrono::Duration::from_std(window).context("window")?;
            let wait = (end - Utc::now()).num_seconds().clamp(0, 899) + 1;
            self.send_to_self(
                Message::BurstFlush(BurstFlush {
                    tenant: row.tenant.clone(),
                    rule: row.rule.clone(),
                    window_start: start,
                }),
                wait as i32,
            )
            .await?;
        }
        Ok(match outcome {
            PutOutcome::New => Handled::New(None),
            PutOutcome::Duplicate => Handled::Duplicate(None),
        })
    }

    async fn send_to_self(&self, message: Message, delay_seconds: i32) -> anyhow::Result<()> {
        let url = self.outbox.queue_url(Service::Notifier).await?;
        let env = envelope(message);
        self.sqs
            .send_message()
            .queue_url(url)
            .message_body(env.to_json())
            .delay_seconds(delay_seconds)
            .send()
            .await
            .with_context(|| format!("send {} to the notifier queue", env.message.kind()))?;
        Ok(())
    }

    /// A burst window has ended: deliver it as one message with a count.
    pub async fn flush(&self, f: &BurstFlush, rc: u32) -> Result<Handled, HandlerError> {
        let key = burst_key(&f.tenant, &key_safe(&f.rule), f.window_start);
        let Some(b) = self.feed.close_burst(&key).await? else {
            tracing::warn!(tenant = %f.tenant, rule = %f.rule, "burst window not found (expired?); nothing to flush");
            return Ok(Handled::Flushed(None));
        };
        if b.tenant != f.tenant {
            return Err(HandlerError::permanent(anyhow::anyhow!(
                "burst {key} belongs to another tenant; refusing"
            )));
        }
        let (subject, text) = if b.n <= 1 {
            (b.title.clone(), b.first_text.clone())
        } else {
            (
                format!("{} ×{}", b.title, b.n),
                format!(
                    "{} events of this kind between {} and {} (UTC).\nFirst: {}\nLast: {}",
                    b.n,
                    b.first_at.format("%Y-%m-%d %H:%M:%S"),
                    b.last_at.format("%Y-%m-%d %H:%M:%S"),
                    b.first_text,
                    b.last_text
                ),
            )
        };
        let dispatch = Dispatch {
            tenant: b.tenant.clone(),
            id: format!("b-{}", stable_id(&key)),
            severity: b.severity,
            subject,
            text,
            digest: false,
        };
        let delivered = self.deliverer.deliver(&dispatch, rc).await?;
        Ok(Handled::Flushed(Some(delivered)))
    }

    /// The schedule's digest message: one message per tenant, so tenants
    /// are delivered, retried and dead-lettered independently.
    async fn fan_out_digest(&self, day: NaiveDate) -> Result<Handled, HandlerError> {
        let mut tenants: Vec<TenantId> = self
            .accounts
            .list(None)
            .await?
            .into_iter()
            .map(|a| a.tenant_id)
            .collect();
        tenants.dedup();
        for t in &tenants {
            let env = envelope(Message::DailyDigest(DailyDigest {
                day,
                tenant: Some(t.clone()),
            }));
            self.outbox.send(Service::Notifier, &env).await?;
        }
        Ok(Handled::DigestFannedOut(tenants.len()))
    }

    /// One tenant's digest: a feed row and a delivery, once per day.
    pub async fn digest(
        &self,
        tenant: &TenantId,
        day: NaiveDate,
        rc: u32,
    ) -> Result<Handled, HandlerError> {
        let (start, end) = digest::day_bounds(day);
        let audit = digest::audit_rows(&self.audit, tenant, day).await?;
        let feed = self.feed.between(tenant, start, end, 10_000).await?;
        let cost = self.costs.day_total(tenant, day).await?;
        let waste = kopter_store::waste::Summary::of(&self.waste.findings(tenant).await?);
        let text = digest::render(tenant, day, &audit, &feed, cost, &waste);
        let subject = format!("Daily digest {day}");
        let ev = Event {
            tenant: tenant.clone(),
            kind: "notify.daily_digest",
            rule: "digest".into(),
            identity: format!("digest:{day}"),
            severity: Severity::Info,
            title: subject.clone(),
            text: text.clone(),
            at: end - chrono::Duration::seconds(1),
            account: None,
            resource: None,
            audit: None,
        };
        let row = FeedRow::from_event(&ev, self.config.retention_days);
        self.feed.put(&row).await?;
        let dispatch = Dispatch {
            tenant: tenant.clone(),
            id: format!("d-{day}"),
            severity: Severity::Info,
            subject,
            text,
            digest: true,
        };
        let delivered = self.deliverer.deliver(&dispatch, rc).await?;
        Ok(Handled::Digest(delivered))
    }
}
