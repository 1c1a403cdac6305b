//! The hourly waste evaluation of one account: read the history, price
//! what the findings need, run the pure rules ([`super::evaluate`]), make
//! the stored findings match, publish openings and resolutions.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use kopter_runtime::metrics::register;
use kopter_schema::messages::WasteFinding;
use kopter_schema::{AccountId, Message, TenantId};
use kopter_store::waste::{FindingRow, Status};
use prometheus::{IntCounterVec, Opts};

use crate::Aggregator;
use crate::engine::{hour_of, price_timeline};
use crate::load::load_book;

/// What one evaluation did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WasteReport {
    /// Open findings after the evaluation.
    pub open: usize,
    /// Openings and resolutions published.
    pub opened: usize,
    pub resolved: usize,
}

/// `kopter_aggregator_waste_events_total{event=opened|resolved}`.
fn events() -> &'static IntCounterVec {
    static M: std::sync::LazyLock<IntCounterVec> = std::sync::LazyLock::new(|| {
        register(
            IntCounterVec::new(
                Opts::new(
                    "kopter_aggregator_waste_events_total",
                    "Waste findings opened or resolved (published)",
                ),
                &["event"],
            )
            .expect("metric"),
        )
    });
    &M
}

impl Aggregator {
    /// Evaluates the waste rules of one account at the end of `hour`.
    ///
    /// Reads `waste_history_days` of history; prices in memory only the
    /// resources a rule holds for, from their `since` (so the amounts do
    /// not depend on which hours the price graph kept). A redelivered or
    /// older evaluation leaves newer rows alone; an opening or resolution
    /// is published until its row says it was (deterministic envelope
    /// ids, so a crash between the two publishes a duplicate the feed
    /// drops).
    pub async fn evaluate_waste(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        hour: DateTime<Utc>,
    ) -> anyhow::Result<WasteReport> {
        let now = hour_of(hour) + Duration::hours(1);
        let from = now - Duration::days(i64::from(self.config.waste_history_days));
        let timelines = self.history.timelines(tenant, account, from, now).await?;
        let thresholds = self.waste.thresholds(tenant).await?;
        // Pass 1: which resources a rule holds for, and since when (the
        // amounts are not needed yet; the last hour's prices are, for the
        // cheaper-equivalent rules).
        let last_hour_book =
            load_book(&self.prices, &timelines, now - Duration::hours(1), now).await?;
        let candidates =
            super::evaluate(account, &timelines, &[], now, &thresholds, &last_hour_book);
        let mut since: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
        for f in &candidates {
            let s = since.entry(f.resource_id.as_str()).or_insert(f.since);
            *s = (*s).min(f.since);
        }
        // Pass 2: price those resources from their earliest `since`.
        let priced: Vec<_> = timelines
            .iter()
            .filter(|t| since.contains_key(t.resource_id.as_str()))
            .cloned()
            .collect();
        let findings = match since.values().min() {
            None => Vec::new(),
            Some(earliest) => {
                let book = load_book(&self.prices, &priced, hour_of(*earliest), now).await?;
                let mut lines = Vec::new();
                for t in &priced {
                    price_timeline(t, since[t.resource_id.as_str()], now, &book, &mut lines);
                }
                super::evaluate(account, &timelines, &lines, now, &thresholds, &book)
            }
        };
        let present: HashSet<String> = timelines
            .iter()
            .filter(|t| {
                t.states
                    .iter()
                    .rev()
                    .find(|(at, _)| *at < now)
                    .is_some_and(|(_, r)| super::exists(r))
            })
            .map(|t| t.resource_id.clone())
            .collect();
        let rec = self
            .waste
            .reconcile(tenant, account, now, &findings, &present)
            .await?;
        let mut report = WasteReport {
            open: rec.open,
            ..WasteReport::default()
        };
        for row in rec.to_open.iter().chain(&rec.to_resolve) {
            self.publish(envelope_id(row), Message::WasteFinding(message(row)))
                .await?;
            self.waste.mark_published(row).await?;
            let event = match row.status {
                Status::Open => {
                    report.opened += 1;
                    "opened"
                }
                Status::Resolved => {
                    report.resolved += 1;
                    "resolved"
                }
            };
            events().with_label_values(&[event]).inc();
            tracing::info!(%tenant, %account, resource = %row.finding.resource_id, rule = %row.finding.rule, event, monthly_usd = ?row.finding.monthly_usd, "waste finding");
        }
        Ok(report)
    }
}

fn status(row: &FindingRow) -> &'static str {
    match row.status {
        Status::Open => "open",
        Status::Resolved => "resolved",
    }
}

/// `waste:{tenant}:{account}:{resource}:{rule}:{since}:{status}`: the same
/// for every publication of one episode's opening or resolution.
fn envelope_id(row: &FindingRow) -> String {
    let f = &row.finding;
    format!(
        "waste:{}:{}:{}:{}:{}:{}",
        row.tenant,
        f.account,
        f.resource_id,
        f.rule,
        f.since.timestamp(),
        status(row)
    )
}

fn message(row: &FindingRow) -> WasteFinding {
    let f = &row.finding;
    WasteFinding {
        tenant: row.tenant.clone(),
        account: f.account.clone(),
        region: f.region.clone(),
        resource_id: f.resource_id.clone(),
        rule: f.rule.to_string(),
        status: status(row).into(),
        since: f.since,
        accrued_usd: f.accrued_usd,
        unpriced_hours: f.unpriced_hours,
        monthly_usd: f.monthly_usd,
        action: f.action.clone(),
        detail: f.detail.clone(),
        at: row.evaluated_at,
        resolution: row.resolution.clone(),
    }
}
