//! The aggregator: inventory history × prices → hourly cost per resource
//! and account (the price graph), budgets and spikes. See `DESIGN.md`.

pub mod engine;
pub mod load;
pub mod waste;

#[cfg(test)]
mod engine_tests;
#[cfg(test)]
mod engine_zone_host_tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::anyhow;
use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use futures::StreamExt;
use kopter_runtime::accounts::AccountStore;
use kopter_runtime::config::AggregatorConfig;
use kopter_runtime::messaging::Outbox;
use kopter_runtime::metrics::register;
use kopter_runtime::{BoxFuture, Delivery, Handler, HandlerError, ServiceContext, decode_for};
use kopter_schema::messages::{AggregateHour, BudgetCrossed, CostSpike};
use kopter_schema::{AccountId, Envelope, Message, Service, TenantId};
use kopter_store::prices::PriceStore;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};

use crate::engine::{hour_of, price_timeline};
use crate::load::{AccountHistory, HistoryReader, PriceRows, VersionLists, load_book};
use kopter_store::graph::CostLine;
use kopter_store::graph::{GraphStore, expiry, hour_key, marker_expiry, month_key};

/// Allowed skew between the queue's clock (`SentTimestamp`) and ours.
const CLOCK_MARGIN_MS: i64 = 2_000;

struct Metrics {
    /// `kopter_aggregator_account_hour_computations_total`
    hours: IntCounter,
    /// `kopter_aggregator_resource_hour_lines_total{kind}`
    lines: IntCounterVec,
    /// `kopter_aggregator_prices_missing_total{kind}`
    missing: IntCounterVec,
    /// `kopter_aggregator_price_parts_missing_total{kind}`: resource-hours
    /// billed for their known components only.
    missing_parts: IntCounterVec,
    /// `kopter_aggregator_events_published_total{event=budget|spike}`
    events: IntCounterVec,
    /// `kopter_aggregator_changes_coalesced_total`: inventory changes whose
    /// hour a later-started recompute had already covered.
    coalesced: IntCounter,
    /// `kopter_aggregator_last_computed_hour_timestamp_seconds`: start of
    /// the newest hour computed (for any account).
    last_hour: IntGauge,
    /// `kopter_aggregator_account_retries_total{class}`: an account's costs
    /// or waste rules run again in the message after AWS back-pressure.
    account_retries: IntCounterVec,
}

fn metrics() -> &'static Metrics {
    static M: std::sync::LazyLock<Metrics> = std::sync::LazyLock::new(|| {
        Metrics {
        hours: register(
            IntCounter::new(
                "kopter_aggregator_account_hour_computations_total",
                "Account-hours computed",
            )
            .expect("metric"),
        ),
        lines: register(
            IntCounterVec::new(
                Opts::new(
                    "kopter_aggregator_resource_hour_lines_total",
                    "Resource-hours priced, by kind",
                ),
                &["kind"],
            )
            .expect("metric"),
        ),
        missing: register(
            IntCounterVec::new(
                Opts::new(
                    "kopter_aggregator_prices_missing_total",
                    "Resource-hours written with a price-missing mark, by kind",
                ),
                &["kind"],
            )
            .expect("metric"),
        ),
        missing_parts: register(
            IntCounterVec::new(
                Opts::new(
                    "kopter_aggregator_price_parts_missing_total",
                    "Resource-hours billed for some components only (the others' prices are unknown), by kind",
                ),
                &["kind"],
            )
            .expect("metric"),
        ),
        events: register(
            IntCounterVec::new(
                Opts::new(
                    "kopter_aggregator_events_published_total",
                    "Budget and spike events published",
                ),
                &["event"],
            )
            .expect("metric"),
        ),
        account_retries: register(
            IntCounterVec::new(
                Opts::new(
                    "kopter_aggregator_account_retries_total",
                    "Accounts computed again in the same message after AWS back-pressure (class throttling, server_error, timeout, connection) or another recompute of the same account-hour at work (class busy)",
                ),
                &["class"],
            )
            .expect("metric"),
        ),
        coalesced: register(
            IntCounter::new(
                "kopter_aggregator_changes_coalesced_total",
                "Inventory changes acknowledged without a recompute: one that started after they were queued already covered them",
            )
            .expect("metric"),
        ),
        last_hour: register(
            IntGauge::new(
                "kopter_aggregator_last_computed_hour_timestamp_seconds",
                "Start (Unix time) of the newest hour whose cost was computed",
            )
            .expect("metric"),
        ),
    }
    });
    &M
}

/// What one account's computation did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AccountReport {
    pub hours: usize,
    pub lines: usize,
    pub missing: usize,
    /// Lines billed for some components only (`CostLine::missing_part`).
    pub partial: usize,
    pub spikes: usize,
}

/// The aggregator's work.
#[derive(Clone)]
pub struct Aggregator {
    pub history: HistoryReader,
    pub prices: PriceStore,
    pub graph: GraphStore,
    /// Waste findings (`waste/`).
    pub waste: kopter_store::waste::WasteStore,
    pub accounts: AccountStore,
    /// Customer accounts' CloudWatch (idle instances) through their roles:
    /// the process's AWS config and the STS credential cache.
    pub customer_aws: Option<(kopter_runtime::AwsContext, kopter_runtime::CredentialCache)>,
    pub outbox: Option<Outbox>,
    pub config: AggregatorConfig,
    /// Committed versions' price rows, kept across messages.
    pub price_rows: Arc<PriceRows>,
}

impl Aggregator {
    pub fn new(ctx: &ServiceContext) -> Self {
        let ddb = ctx.aws.dynamodb();
        Self {
            history: HistoryReader::new(ddb.clone(), &ctx.names),
            prices: PriceStore::new(ddb.clone(), &ctx.names),
            waste: kopter_store::waste::WasteStore::new(ddb.clone(), &ctx.names),
            graph: GraphStore::new(ddb, &ctx.names),
            accounts: ctx.accounts.clone(),
            customer_aws: Some((ctx.aws.clone(), ctx.credentials.clone())),
            outbox: Some(ctx.outbox.clone()),
            config: ctx.config.aggregator.clone(),
            price_rows: Arc::default(),
        }
    }

    /// Recomputes the hour of an inventory change, unless a recompute of
    /// that account-hour that started after the change was queued
    /// (`sent_at_ms`, the queue's `SentTimestamp`) has already completed:
    /// the describer writes the history before it publishes, so such a
    /// recompute read it. A burst of changes of one account costs a few
    /// recomputes, not one each. Returns whether it recomputed.
    pub async fn recompute_for_change(
        &self,
        change: &kopter_schema::messages::InventoryChanged,
        sent_at_ms: Option<u64>,
    ) -> anyhow::Result<bool> {
        let hour = hour_of(change.at);
        if let Some(sent) = sent_at_ms
            && let Some(done) = self
                .graph
                .recomputed_from(&change.tenant, &change.account, hour)
                .await?
            && done > sent as i64 + CLOCK_MARGIN_MS
        {
            metrics().coalesced.inc();
            tracing::debug!(tenant = %change.tenant, account = %change.account, %hour, "change already covered by a later recompute");
            return Ok(false);
        }
        let started_ms = Utc::now().timestamp_millis();
        let versions = VersionLists::default();
        retry_backpressure(|| {
            self.compute_account(
                &change.tenant,
                &change.account,
                hour,
                hour + Duration::hours(1),
                &versions,
            )
        })
        .await?;
        self.graph
            .mark_recomputed(&change.tenant, &change.account, hour, started_ms)
            .await?;
        Ok(true)
    }

    /// Computes hours `[from, to)` of one account and replaces them in the
    /// price graph, then checks each hour for a spike. `versions`: the
    /// price version lists of the message (shared by its accounts).
    pub async fn compute_account(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        versions: &VersionLists,
    ) -> anyhow::Result<AccountReport> {
        let from = hour_of(from);
        let history = self.history.history(tenant, account, from).await?;
        self.compute_history(&history, from, to, versions).await
    }

    /// [`Aggregator::compute_account`] of an account's read history
    /// (`history.since` at or before `from`): the aggregate message reads
    /// it once for the account's costs and its waste rules.
    pub async fn compute_history(
        &self,
        history: &AccountHistory,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        versions: &VersionLists,
    ) -> anyhow::Result<AccountReport> {
        let (tenant, account) = (&history.tenant, &history.account);
        let (from, to) = (
            hour_of(from),
            hour_of(to - Duration::seconds(1)) + Duration::hours(1),
        );
        let timelines = self.history.timelines_of(history, from, to).await?;
        let book = load_book(
            &self.prices,
            &self.price_rows,
            versions,
            &timelines,
            from,
            to,
        )
        .await?;
        let mut lines = Vec::new();
        for t in &timelines {
            price_timeline(t, from, to, &book, &mut lines);
        }
        let mut by_hour: BTreeMap<DateTime<Utc>, Vec<CostLine>> = BTreeMap::new();
        let mut h = from;
        while h < to {
            by_hour.insert(h, Vec::new());
            h += Duration::hours(1);
        }
        let mut report = AccountReport::default();
        for l in lines {
            report.lines += 1;
            metrics().lines.with_label_values(&[l.kind]).inc();
            if l.missing.is_some() {
                report.missing += 1;
                metrics().missing.with_label_values(&[l.kind]).inc();
                tracing::warn!(%tenant, %account, resource = %l.resource_id, hour = %l.hour, reason = l.missing.as_deref().unwrap_or(""), "price missing");
            }
            if let Some(part) = &l.missing_part {
                report.partial += 1;
                metrics().missing_parts.with_label_values(&[l.kind]).inc();
                tracing::warn!(%tenant, %account, resource = %l.resource_id, hour = %l.hour, reason = %part, cost_usd = l.cost_usd.unwrap_or(0.0), "price of a component missing; billed for the others");
            }
            by_hour.entry(l.hour).or_default().push(l);
        }
        for (hour, lines) in &by_hour {
            self.graph
                .replace_hour(
                    tenant,
                    account,
                    *hour,
                    lines,
                    &self.config.rollup_tags,
                    expiry(*hour, self.config.retention_days),
                )
                .await?;
            report.hours += 1;
            metrics().hours.inc();
            let last = &metrics().last_hour;
            last.set(last.get().max(hour.timestamp()));
            let total: f64 = lines.iter().filter_map(|l| l.cost_usd).sum();
            if self.check_spike(tenant, account, *hour, total).await? {
                report.spikes += 1;
            }
        }
        Ok(report)
    }

    /// Publishes one `cost.spike` for an hour costing `spike_factor` ×
    /// the previous hour and `spike_min_usd` more (once per account-hour).
    async fn check_spike(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        hour: DateTime<Utc>,
        current: f64,
    ) -> anyhow::Result<bool> {
        let Some(previous) = self
            .graph
            .account_hour_total(tenant, account, hour - Duration::hours(1))
            .await?
        else {
            return Ok(false);
        };
        if !(previous > 0.0
            && current >= previous * self.config.spike_factor
            && current - previous >= self.config.spike_min_usd)
        {
            return Ok(false);
        }
        let (pk, sk) = (
            format!("{tenant}#spike"),
            format!("{account}#{}", hour_key(hour)),
        );
        if self.graph.marker_exists(&pk, &sk).await? {
            return Ok(false);
        }
        let msg = Message::CostSpike(CostSpike {
            tenant: tenant.clone(),
            account: account.clone(),
            hour,
            previous,
            current,
            factor: current / previous,
            currency: "USD".into(),
        });
        // Deterministic id: a crash between publish and marker republishes
        // the same event, which consumers deduplicate.
        self.publish(format!("spike:{tenant}:{account}:{}", hour_key(hour)), msg)
            .await?;
        self.graph
            .put_marker(&pk, &sk, marker_expiry(hour, self.config.retention_days))
            .await?;
        metrics().events.with_label_values(&["spike"]).inc();
        Ok(true)
    }

    /// Checks a tenant's budget at the end of `hour`: each threshold
    /// crossed by month-to-date cost (or, after `forecast_after`, by the
    /// linear forecast) publishes one `budget.crossed` per month.
    pub async fn check_budget(
        &self,
        tenant: &TenantId,
        hour: DateTime<Utc>,
    ) -> anyhow::Result<Vec<u32>> {
        let Some(budget) = self.graph.budget(tenant).await? else {
            return Ok(Vec::new());
        };
        let month_start = Utc
            .with_ymd_and_hms(hour.year(), hour.month(), 1, 0, 0, 0)
            .single()
            .ok_or_else(|| anyhow!("month of {hour}"))?;
        let mtd = self.graph.month_to_date(tenant, month_start).await?;
        let elapsed = ((hour_of(hour) + Duration::hours(1)) - month_start).num_seconds() as f64;
        let month_secs = engine::seconds_in_month(hour);
        let forecast = if elapsed > 0.0 {
            mtd / elapsed * month_secs
        } else {
            mtd
        };
        let forecast_counts = elapsed >= self.config.forecast_after.as_secs_f64();
        let month = month_key(hour);
        let mut crossed = Vec::new();
        for &pct in &budget.thresholds {
            let limit = budget.monthly_usd * f64::from(pct) / 100.0;
            if !(mtd >= limit || (forecast_counts && forecast >= limit)) {
                continue;
            }
            let (pk, sk) = (format!("{tenant}#budget"), format!("crossed#{month}#{pct}"));
            if self.graph.marker_exists(&pk, &sk).await? {
                continue;
            }
            // Dated when first seen, so the feed orders it by the crossing
            // and a republication (crash before the marker) keeps its key.
            let crossed_at = self
                .graph
                .first_time(
                    &pk,
                    &format!("crossing#{month}#{pct}"),
                    hour_of(hour) + Duration::hours(1),
                    marker_expiry(hour, 400),
                )
                .await?;
            let msg = Message::BudgetCrossed(BudgetCrossed {
                tenant: tenant.clone(),
                month: month.clone(),
                threshold_percent: pct,
                budget: budget.monthly_usd,
                month_to_date: mtd,
                forecast,
                currency: "USD".into(),
                crossed_at: Some(crossed_at),
            });
            self.publish(format!("budget:{tenant}:{month}:{pct}"), msg)
                .await?;
            self.graph
                .put_marker(&pk, &sk, marker_expiry(hour, 400))
                .await?;
            metrics().events.with_label_values(&["budget"]).inc();
            crossed.push(pct);
        }
        Ok(crossed)
    }

    async fn publish(&self, id: String, msg: Message) -> anyhow::Result<()> {
        if let Some(outbox) = &self.outbox {
            outbox.publish(&Envelope::new(id, Utc::now(), msg)).await?;
        }
        Ok(())
    }

    /// `aggregate.hour` as the queue delivers it: a message for every
    /// tenant (the scheduled tick's) whose accounts belong to more than one
    /// tenant queues one `aggregate.hour` per tenant on the aggregator's
    /// queue and does nothing else; a tenant's message is [`Self::aggregate`].
    ///
    /// Why: one message for every tenant was one long unit of work (every
    /// account's backfill, then waste and budgets) that a crash or one
    /// account's failure restarted from the first account, and it grew
    /// with the number of tenants. A tenant's message redoes only that
    /// tenant, and tenants run in parallel on the worker's slots. A fan-out
    /// redelivered after a crash queues the tenants again: the hours are
    /// replaced (idempotent), spikes and budget crossings are marked once.
    pub async fn handle_aggregate(&self, m: &AggregateHour) -> Result<AggregateWork, HandlerError> {
        self.check_backfill(m)?;
        let Some(outbox) = self.outbox.as_ref().filter(|_| m.tenant.is_none()) else {
            return self.aggregate(m).await.map(AggregateWork::Computed);
        };
        let tenants: std::collections::BTreeSet<TenantId> = self
            .accounts
            .list(None)
            .await
            .map_err(HandlerError::retry)?
            .into_iter()
            .map(|a| a.tenant_id)
            .collect();
        if tenants.len() <= 1 {
            return self.aggregate(m).await.map(AggregateWork::Computed);
        }
        for tenant in &tenants {
            let msg = Message::AggregateHour(AggregateHour {
                tenant: Some(tenant.clone()),
                ..m.clone()
            });
            outbox
                .send(
                    Service::Aggregator,
                    &kopter_runtime::messaging::envelope(msg),
                )
                .await
                .map_err(HandlerError::retry)?;
        }
        tracing::info!(queued = tenants.len(), hour = %m.hour, "aggregation fanned out per tenant");
        Ok(AggregateWork::FannedOut(tenants.into_iter().collect()))
    }

    fn check_backfill(&self, m: &AggregateHour) -> Result<(), HandlerError> {
        if m.backfill_hours > self.config.max_backfill_hours {
            return Err(HandlerError::permanent(anyhow!(
                "backfill of {} hours exceeds aggregator.max_backfill_hours ({})",
                m.backfill_hours,
                self.config.max_backfill_hours
            )));
        }
        Ok(())
    }

    /// `aggregate.hour`: every account (of one tenant when given), hours
    /// `hour - backfill_hours ..= hour`, then budgets at `hour`.
    pub async fn aggregate(&self, m: &AggregateHour) -> Result<Vec<AccountReport>, HandlerError> {
        self.check_backfill(m)?;
        let hour = hour_of(m.hour);
        let from = hour - Duration::hours(i64::from(m.backfill_hours));
        let to = hour + Duration::hours(1);
        let accounts = self
            .accounts
            .list(m.tenant.as_ref())
            .await
            .map_err(HandlerError::retry)?;
        let versions = VersionLists::default();
        let versions = &versions;
        // Boxed: a closure returning the future is not general enough over
        // its lifetimes for the Send handler.
        type Job<'a> = futures::future::BoxFuture<'a, AccountOutcome>;
        // One job per account: its costs, then its waste rules (hourly, at
        // `hour`) from the same read of its inventory and history (the
        // waste rules' window holds the costs'), as many accounts at once
        // as `account_concurrency`: each is a chain of sequential reads, so
        // one after another the tenant's accounts add up (seconds each
        // under throttling). The waste rules run whether the costs failed
        // or not. A retried attempt reads the history again: back-pressure
        // of another recompute (`Contended`) means fresher inputs.
        let since = from.min(self.waste_since(hour));
        let jobs: Vec<Job<'_>> = accounts
            .iter()
            .map(|a| {
                let job: Job<'_> = Box::pin(async move {
                    let (t, acct) = (&a.tenant_id, &a.account_id);
                    let cost = retry_backpressure(|| async move {
                        let history = self.history.history(t, acct, since).await?;
                        let report = self.compute_history(&history, from, to, versions).await?;
                        Ok((history, report))
                    })
                    .await
                    .map_err(|e| e.context(format!("account {t}/{acct}")));
                    let (mut shared, cost) = match cost {
                        Ok((history, report)) => (Some(history), Ok(report)),
                        Err(e) => (None, Err(e)),
                    };
                    let waste = retry_backpressure(|| {
                        let history = shared.take();
                        async move {
                            match history {
                                Some(h) => self.evaluate_waste_of(&h, hour).await,
                                None => self.evaluate_waste(t, acct, hour).await,
                            }
                        }
                    })
                    .await
                    .err()
                    .map(|e| e.context(format!("waste of {t}/{acct}")));
                    (t.clone(), cost, waste)
                });
                job
            })
            .collect();
        let results: Vec<AccountOutcome> = futures::stream::iter(jobs)
            .buffer_unordered(self.config.account_concurrency)
            .collect()
            .await;
        let mut reports = Vec::new();
        let mut failed: Vec<anyhow::Error> = Vec::new();
        let mut tenants = std::collections::BTreeSet::new();
        for (tenant, r, waste) in results {
            tenants.insert(tenant);
            match r {
                Ok(r) => reports.push(r),
                Err(e) => failed.push(e),
            }
            failed.extend(waste);
        }
        for t in &tenants {
            self.check_budget(t, hour)
                .await
                .map_err(HandlerError::retry)?;
        }
        if failed.is_empty() {
            return Ok(reports);
        }
        // One failure keeps its chain — a back-pressure one if any, so the
        // worker still sees AWS back-pressure (and retries in-process) —
        // the others are named in the context.
        let all = failed
            .iter()
            .map(|e| format!("{e:#}"))
            .collect::<Vec<_>>()
            .join("; ");
        let (n, total) = (failed.len(), accounts.len());
        let carrier = failed
            .iter()
            .position(|e| kopter_runtime::aws::classify_anyhow(e).is_some())
            .unwrap_or(0);
        let first = failed.swap_remove(carrier);
        Err(HandlerError::retry(
            first.context(format!("{n} of {total} accounts failed: {all}")),
        ))
    }
}

/// One account's part of an aggregate message: its tenant, its costs'
/// report, and its waste rules' error if they failed.
type AccountOutcome = (
    TenantId,
    anyhow::Result<AccountReport>,
    Option<anyhow::Error>,
);

/// Attempts of one account's computation (costs, or waste rules) in one
/// message when it fails under AWS back-pressure (throttling, 5xx,
/// timeouts, resets), 200 ms apart, then doubling
/// (`kopter_runtime::dynamo::retry_backpressure`). The work is idempotent
/// (writes only what changed), and retrying the failed account alone
/// spares the tenant's other accounts a recompute and the message a
/// redelivery.
pub const ACCOUNT_ATTEMPTS: u32 = 4;

/// Runs `f` (one account's computation) again under back-pressure, up to
/// [`ACCOUNT_ATTEMPTS`] attempts, 200 ms apart then doubling: AWS's
/// (throttling, 5xx, timeouts, resets), and another recompute of one of
/// its account-hours at work ([`kopter_store::graph::Contended`], class
/// `busy`: the hour is computed again from fresh inputs once the other is
/// done). Counted by class; other errors return at once. When the attempts
/// run out the message fails with the same back-pressure, which the worker
/// retries in-process.
async fn retry_backpressure<T, F, Fut>(f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let retry = kopter_runtime::dynamo::WriteRetry {
        attempts: ACCOUNT_ATTEMPTS,
        backoff: std::time::Duration::from_millis(200),
    };
    kopter_runtime::dynamo::retry_backpressure(
        retry,
        |class| {
            metrics()
                .account_retries
                .with_label_values(&[class.label()])
                .inc();
        },
        f,
    )
    .await
}

/// What an `aggregate.hour` message did ([`Aggregator::handle_aggregate`]).
#[derive(Debug)]
pub enum AggregateWork {
    /// Computed here: one report per account.
    Computed(Vec<AccountReport>),
    /// Split: one message per tenant queued on the aggregator's queue.
    FannedOut(Vec<TenantId>),
}

/// The service's queue handler.
pub struct AggregatorHandler(pub Aggregator);

/// The service's queue handler, as `main` runs it (the all-in-one `kopter`
/// process builds every service's handler this way).
pub fn handler(ctx: &ServiceContext) -> anyhow::Result<std::sync::Arc<dyn Handler>> {
    Ok(std::sync::Arc::new(AggregatorHandler(Aggregator::new(ctx))))
}

impl Handler for AggregatorHandler {
    fn handle<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let env = decode_for(Service::Aggregator, delivery)?;
            match env.message {
                Message::AggregateHour(m) => self.0.handle_aggregate(&m).await.map(drop),
                // A change recomputes its hour of its account (the hourly
                // tick computes it again once the hour is over).
                Message::InventoryChanged(c) => self
                    .0
                    .recompute_for_change(&c, delivery.sent_at_ms)
                    .await
                    .map(drop)
                    .map_err(HandlerError::retry),
                // New prices apply from their publication on; the hours
                // after it are computed by the hourly tick.
                Message::PricesUpdated(p) => {
                    tracing::info!(region = %p.region, version = %p.version, "prices updated; hours from now on use them");
                    Ok(())
                }
                other => Err(HandlerError::permanent(anyhow!(
                    "message {}: the aggregator does not handle {:?}",
                    delivery.message_id,
                    other.kind()
                ))),
            }
        })
    }
}

#[cfg(test)]
mod retry_tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn reset() -> anyhow::Error {
        anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
            .context("query acme#111122223333#rollups#2025-06-02")
    }

    #[tokio::test]
    async fn back_pressure_is_retried_alone_and_other_errors_are_not() {
        let calls = AtomicU32::new(0);
        let r = retry_backpressure(|| async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(reset()),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(r.unwrap(), 2);
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let calls = AtomicU32::new(0);
        let r: anyhow::Result<()> = retry_backpressure(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(anyhow!("price row of m5.large is malformed"))
        })
        .await;
        assert!(format!("{:#}", r.unwrap_err()).contains("malformed"));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "not back-pressure: once");

        let calls = AtomicU32::new(0);
        let r: anyhow::Result<()> = retry_backpressure(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(reset())
        })
        .await;
        let e = r.unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), ACCOUNT_ATTEMPTS);
        // The chain still says what it was, for the worker.
        assert_eq!(
            kopter_runtime::aws::classify_anyhow(&e),
            Some(kopter_runtime::aws::ErrorClass::Connection)
        );
    }
}
