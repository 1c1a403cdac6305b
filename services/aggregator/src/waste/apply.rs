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
use crate::load::{VersionLists, load_book};

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
        let history = self
            .history
            .history(tenant, account, self.waste_since(hour))
            .await?;
        self.evaluate_waste_of(&history, hour).await
    }

    /// Where the waste rules of `hour` start reading history:
    /// `waste_history_days` before the hour's end.
    pub fn waste_since(&self, hour: DateTime<Utc>) -> DateTime<Utc> {
        hour_of(hour) + Duration::hours(1)
            - Duration::days(i64::from(self.config.waste_history_days))
    }

    /// [`Aggregator::evaluate_waste`] of an account's read history
    /// (`history.since` at or before [`Aggregator::waste_since`]).
    pub async fn evaluate_waste_of(
        &self,
        history: &crate::load::AccountHistory,
        hour: DateTime<Utc>,
    ) -> anyhow::Result<WasteReport> {
        let (tenant, account) = (&history.tenant, &history.account);
        let now = hour_of(hour) + Duration::hours(1);
        let from = self.waste_since(hour);
        let timelines = self.history.timelines_of(history, from, now).await?;
        let thresholds = self.waste.thresholds(tenant).await?;
        let idle = self
            .idle_verdicts(tenant, account, &timelines, now, &thresholds)
            .await?;
        // Pass 1: which resources a rule holds for, and since when (the
        // amounts are not needed yet; the last hour's prices are, for the
        // cheaper-equivalent rules).
        let versions = VersionLists::default();
        let last_hour_book = load_book(
            &self.prices,
            &self.price_rows,
            &versions,
            &timelines,
            now - Duration::hours(1),
            now,
        )
        .await?;
        let candidates = super::evaluate_with_idle(
            account,
            &timelines,
            &[],
            now,
            &thresholds,
            &last_hour_book,
            &idle,
        );
        // Pass 2: price those resources from where their amounts are not
        // known yet: the end of the stored accrual when it can be
        // extended (the last hour at least, for the monthly rate), else
        // `since`.
        let stored = self.waste.account_findings(tenant, account).await?;
        let priors: super::Priors = stored
            .iter()
            .filter(|r| r.status == Status::Open)
            .map(|r| {
                (
                    (r.finding.resource_id.clone(), r.finding.rule),
                    r.finding.clone(),
                )
            })
            .collect();
        let start = super::pricing_starts(&candidates, &timelines, &priors, now, &last_hour_book);
        let priced: Vec<_> = timelines
            .iter()
            .filter(|t| start.contains_key(t.resource_id.as_str()))
            .cloned()
            .collect();
        let findings = match start.values().min() {
            None => Vec::new(),
            Some(earliest) => {
                let book = load_book(
                    &self.prices,
                    &self.price_rows,
                    &versions,
                    &priced,
                    hour_of(*earliest),
                    now,
                )
                .await?;
                let mut lines = Vec::new();
                for t in &priced {
                    price_timeline(t, start[t.resource_id.as_str()], now, &book, &mut lines);
                }
                super::evaluate_extending(
                    account,
                    &timelines,
                    &lines,
                    now,
                    &thresholds,
                    &book,
                    &idle,
                    Some(&priors),
                )
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
            .reconcile_stored(tenant, account, now, &findings, &present, stored)
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

impl Aggregator {
    /// The CloudWatch verdicts of the account's running instances: the
    /// stored ones, after reading (through the customer's role, batched,
    /// by region) those whose last read is a day old or more. A failed
    /// read (role denied, throttled) is stored as undecided: never idle,
    /// and not retried before the next day.
    async fn idle_verdicts(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        timelines: &[crate::engine::Timeline],
        now: DateTime<Utc>,
        thresholds: &kopter_store::waste::Thresholds,
    ) -> anyhow::Result<std::collections::HashMap<String, kopter_store::waste::IdleVerdict>> {
        use kopter_store::inventory::Resource;
        let mut checks = self.waste.idle_checks(tenant, account).await?;
        let Some((aws, credentials)) = &self.customer_aws else {
            return Ok(checks.into_iter().map(|(k, c)| (k, c.verdict)).collect());
        };
        if !thresholds.enabled(kopter_store::waste::Rule::IdleInstance) {
            return Ok(Default::default());
        }
        let rule = super::idle::IdleRule::from(thresholds);
        let rule_key = rule.key();
        let mut due: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        // Region → (due at, instance) of the verdicts that still stand.
        type Standing = Vec<(Option<DateTime<Utc>>, String)>;
        let mut standing: BTreeMap<&str, Standing> = BTreeMap::new();
        for t in timelines {
            let running =
                t.states.iter().rev().find(|(at, _)| *at < now).is_some_and(
                    |(_, r)| matches!(r, Resource::Instance(i) if i.state == "running"),
                );
            if !running {
                continue;
            }
            match checks.get(&t.resource_id) {
                Some(c) if c.stands(now, &rule_key) => standing
                    .entry(t.region.as_str())
                    .or_default()
                    .push((c.due_at, t.resource_id.clone())),
                _ => due
                    .entry(t.region.as_str())
                    .or_default()
                    .push(t.resource_id.clone()),
            }
        }
        // A region's last CPU call has room left: fill it with the
        // standing verdicts due soonest (read early, never more than once
        // a day), so the reads spread over the days instead of all coming
        // due on the same one — calls, not reads, are what is counted.
        for (region, instances) in due.iter_mut() {
            let room = instances
                .len()
                .next_multiple_of(super::idle::MAX_QUERIES_PER_CALL)
                - instances.len();
            if let Some(mut early) = standing.remove(region) {
                early.sort();
                instances.extend(early.into_iter().take(room).map(|(_, id)| id));
            }
        }
        if due.is_empty() {
            return Ok(checks.into_iter().map(|(k, c)| (k, c.verdict)).collect());
        }
        let record = self
            .accounts
            .get(tenant, account)
            .await?
            .ok_or_else(|| anyhow::anyhow!("account {tenant}/{account} is not onboarded"))?;
        let role = kopter_runtime::CustomerRole::from(&record);
        let today = now - Duration::seconds(now.timestamp().rem_euclid(86_400));
        for (region, instances) in due {
            let verdicts = match credentials.sdk_config(&aws.sdk, &role, region).await {
                Ok(sdk) => {
                    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
                    let (v, calls) = super::idle::fetch(&cw, &instances, today, &rule).await;
                    idle_calls().inc_by(calls as u64);
                    v
                }
                Err(e) => instances
                    .iter()
                    .map(|i| {
                        (
                            i.clone(),
                            kopter_store::waste::IdleVerdict::Undecided {
                                reason: format!("assume the customer's role: {e}"),
                            },
                        )
                    })
                    .collect(),
            };
            for (instance, verdict) in verdicts {
                if let kopter_store::waste::IdleVerdict::Undecided { reason } = &verdict {
                    tracing::warn!(%tenant, %account, %region, %instance, %reason, "idle check undecided");
                }
                // Read again when the sliding window could change the
                // verdict: from the start of that day, at this hour.
                let due_at =
                    now + Duration::days(i64::from(super::idle::valid_days(&verdict, &rule)));
                let row = self
                    .waste
                    .put_idle_check(tenant, account, &instance, now, due_at, &rule_key, verdict)
                    .await?;
                checks.insert(instance, row);
            }
        }
        Ok(checks.into_iter().map(|(k, c)| (k, c.verdict)).collect())
    }
}

/// `kopter_aggregator_cloudwatch_calls_total`: GetMetricData calls made.
fn idle_calls() -> &'static prometheus::IntCounter {
    static M: std::sync::LazyLock<prometheus::IntCounter> = std::sync::LazyLock::new(|| {
        register(
            prometheus::IntCounter::new(
                "kopter_aggregator_cloudwatch_calls_total",
                "CloudWatch GetMetricData calls made for idle instances",
            )
            .expect("metric"),
        )
    });
    &M
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
