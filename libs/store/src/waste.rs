//! Waste findings: idle and forgotten resources with the money they cost
//! (issue 22). The aggregator's rule engine produces [`Finding`]s; this
//! module holds their shape, the per-tenant [`Thresholds`], and the store
//! of one [`FindingRow`] per (tenant, resource, rule) in the price-graph
//! table. The rules and amounts are described in the aggregator's
//! `src/waste/DESIGN.md`; the rows here in this crate's `DESIGN.md`.

use std::fmt;

use anyhow::Context;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use kopter_schema::{AccountId, Names, Table, TenantId};
use serde::{Deserialize, Serialize};

use crate::inventory::ResourceKind;

/// Hours in AWS's billing month: its price pages and the AWS Pricing
/// Calculator convert an hourly rate to a month with 730 hours
/// (365 days × 24 h ÷ 12; <https://docs.aws.amazon.com/pricing-calculator/latest/userguide/advanced-estimate.html>,
/// "Amazon EC2 … 730 hours in a month").
pub const HOURS_PER_MONTH: f64 = 730.0;

/// A waste rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// An EBS volume attached to nothing for longer than
    /// [`Thresholds::unattached_volume_hours`].
    UnattachedVolume,
    /// A volume attached to an instance that has been stopped for longer
    /// than [`Thresholds::stopped_instance_days`]: the instance is free,
    /// its volumes are not.
    StoppedInstanceVolume,
    /// A snapshot whose source volume no longer exists and that Kopter's
    /// backups do not manage, older than [`Thresholds::orphan_snapshot_days`].
    OrphanSnapshot,
    /// A snapshot older than the tenant's retention
    /// ([`Thresholds::snapshot_retention_days`]).
    SnapshotPastRetention,
    /// A gp2 volume that would cost less as gp3 at the same size and
    /// baseline performance.
    Gp2ToGp3,
    /// A running previous-generation instance whose current-generation
    /// equivalent costs less.
    PreviousGeneration,
    /// A running instance whose CloudWatch CPU maximum and network stayed
    /// below the tenant's thresholds on most of the last 14 days.
    IdleInstance,
}

impl Rule {
    pub const ALL: [Rule; 7] = [
        Rule::UnattachedVolume,
        Rule::StoppedInstanceVolume,
        Rule::OrphanSnapshot,
        Rule::SnapshotPastRetention,
        Rule::Gp2ToGp3,
        Rule::PreviousGeneration,
        Rule::IdleInstance,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Rule::UnattachedVolume => "unattached-volume",
            Rule::StoppedInstanceVolume => "stopped-instance-volume",
            Rule::OrphanSnapshot => "orphan-snapshot",
            Rule::SnapshotPastRetention => "snapshot-past-retention",
            Rule::Gp2ToGp3 => "gp2-to-gp3",
            Rule::PreviousGeneration => "previous-generation",
            Rule::IdleInstance => "idle-instance",
        }
    }

    /// Whether the resource itself is idle (its whole cost is waste), as
    /// opposed to a rule whose monthly figure is the saving of a cheaper
    /// equivalent.
    pub const fn idle(self) -> bool {
        !matches!(self, Rule::Gp2ToGp3 | Rule::PreviousGeneration)
    }
}

impl std::str::FromStr for Rule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Rule::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "{s:?} is not a waste rule (one of {})",
                    Rule::ALL.map(Rule::as_str).join(", ")
                )
            })
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tenant's thresholds; every field defaults as documented, so a stored
/// partial setting keeps the other defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Thresholds {
    /// Hours a volume must have been unattached (default 24).
    pub unattached_volume_hours: u32,
    /// Days an instance must have been stopped before its volumes are
    /// flagged (default 7).
    pub stopped_instance_days: u32,
    /// Days an orphan snapshot must be old (default 30).
    pub orphan_snapshot_days: u32,
    /// The tenant's snapshot retention in days; `None` (default): the
    /// rule is off.
    pub snapshot_retention_days: Option<u32>,
    /// An idle instance's daily CPU maximum is below this (percent;
    /// default 5).
    pub idle_cpu_percent: f64,
    /// …and its daily network in + out below this (MB; default 5)…
    pub idle_network_mb: f64,
    /// …on at least this many of the last 14 days (default 8: most).
    pub idle_days: u32,
    /// Rules the tenant turned off.
    pub disabled: Vec<Rule>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            unattached_volume_hours: 24,
            stopped_instance_days: 7,
            orphan_snapshot_days: 30,
            snapshot_retention_days: None,
            idle_cpu_percent: 5.0,
            idle_network_mb: 5.0,
            idle_days: 8,
            disabled: Vec::new(),
        }
    }
}

impl Thresholds {
    pub fn enabled(&self, rule: Rule) -> bool {
        !self.disabled.contains(&rule)
    }
}

/// One finding as the rule engine states it at an evaluation.
///
/// Amounts are USD with the precision of the price graph's lines (f64
/// sums of offer-file decimals, as every Kopter cost figure).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub account: AccountId,
    pub region: String,
    pub resource_id: String,
    pub kind: ResourceKind,
    pub rule: Rule,
    /// When the condition began, from the state history (not when Kopter
    /// first noticed it).
    #[serde(with = "crate::inventory::fixed")]
    pub since: DateTime<Utc>,
    /// USD the resource cost from `since` to the evaluation: the sum of
    /// its priced hours, the first one counted for its share after
    /// `since`. Excludes the hours counted in `unpriced_hours`.
    pub accrued_usd: f64,
    /// Hours since `since` that have no price (a price missing, or the
    /// hour not computed): their cost is unknown, not 0.
    pub unpriced_hours: u32,
    /// Why the last unpriced hour has no price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unpriced_reason: Option<String>,
    /// The end of the last hour `accrued_usd` and `unpriced_hours` cover
    /// (the end of the evaluated hour): the next evaluation adds only the
    /// hours after it. `None` in rows written before accrual was
    /// incremental (the next evaluation re-prices from `since`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(with = "crate::inventory::fixed_opt")]
    pub accrued_through: Option<DateTime<Utc>>,
    /// Fingerprint of what the accrual was computed from: the resource's
    /// states from `since` to `accrued_through` and its units per hour. A
    /// later evaluation whose history differs there (a state that arrived
    /// late) re-prices from `since` instead of adding to `accrued_usd`.
    /// Not stable across Rust releases (std's `DefaultHasher`): a mismatch
    /// only costs one re-pricing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accrual_digest: Option<u64>,
    /// USD per month acting would save: for an idle resource its current
    /// hourly price × [`HOURS_PER_MONTH`]; for a cheaper equivalent the
    /// difference of the two hourly prices × [`HOURS_PER_MONTH`]. `None`
    /// when the current hour has no price.
    pub monthly_usd: Option<f64>,
    /// What to do, in a sentence.
    pub action: String,
    /// What the rule saw (`attached to i-… stopped since …`).
    pub detail: String,
}

/// Monthly amount from which an open finding is a `warning` in the feed.
pub const WARNING_MONTHLY_USD: f64 = 50.0;
/// …and from which it is `critical`.
pub const CRITICAL_MONTHLY_USD: f64 = 500.0;

/// Severity of an open finding's feed event, by what it costs a month
/// (`info` below [`WARNING_MONTHLY_USD`] and when unknown).
pub fn severity(monthly_usd: Option<f64>) -> kopter_schema::messages::Severity {
    use kopter_schema::messages::Severity;
    match monthly_usd {
        Some(m) if m >= CRITICAL_MONTHLY_USD => Severity::Critical,
        Some(m) if m >= WARNING_MONTHLY_USD => Severity::Warning,
        _ => Severity::Info,
    }
}

/// An instance's CloudWatch utilisation verdict (see the aggregator's
/// `waste/idle.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "lowercase")]
pub enum IdleVerdict {
    /// Idle on `idle_days` of the window, the first of them `first_idle_day`.
    Idle {
        idle_days: u32,
        #[serde(with = "crate::inventory::fixed")]
        first_idle_day: DateTime<Utc>,
    },
    /// Used on too many days to be idle; `idle_days` counts the days that
    /// were idle or that had no data to tell (an upper bound).
    Busy { idle_days: u32 },
    /// Not enough data, or the read failed: never reported as idle.
    Undecided { reason: String },
}

/// The last utilisation read of an instance: `pk = {tenant}#waste-idle`,
/// `sk = {account}#{instance}` (price-graph table). Read at most once a
/// day per instance, and not before `due_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleCheck {
    pub pk: String,
    pub sk: String,
    pub instance_id: String,
    #[serde(with = "crate::inventory::fixed")]
    pub checked_at: DateTime<Utc>,
    #[serde(flatten)]
    pub verdict: IdleVerdict,
    /// When the verdict may first change (the rule's window slides a day
    /// at a time) and the instance is read again; `None` in rows written
    /// before: a day after `checked_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(with = "crate::inventory::fixed_opt")]
    pub due_at: Option<DateTime<Utc>>,
    /// The thresholds the verdict was read under (the aggregator's
    /// `IdleRule::key`): other thresholds read again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub expires_at: i64,
}

impl IdleCheck {
    /// Whether the verdict stands at `now` under the thresholds `rule`.
    pub fn stands(&self, now: DateTime<Utc>, rule: &str) -> bool {
        let due = self
            .due_at
            .unwrap_or(self.checked_at + chrono::Duration::days(1));
        now < due && self.rule.as_deref().is_none_or(|r| r == rule)
    }
}

/// Open or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Open,
    Resolved,
}

/// The stored finding: `pk = {tenant}#waste`, `sk = {account}#{resource}#{rule}`
/// in the price-graph table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingRow {
    pub pk: String,
    pub sk: String,
    pub tenant: TenantId,
    #[serde(flatten)]
    pub finding: Finding,
    pub status: Status,
    /// The end of the hour whose evaluation last wrote the row; an older
    /// evaluation (a redelivery) never overwrites a newer one. An open
    /// finding whose only change is its accrual is rewritten at most every
    /// [`ACCRUAL_REFRESH`], so this is when its accrual was last stored.
    #[serde(with = "crate::inventory::fixed")]
    pub evaluated_at: DateTime<Utc>,
    /// When the finding was resolved (the end of the evaluated hour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
    /// `resource gone` or `condition ended`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    /// The episode whose opening was published (its `since`), so a crash
    /// after writing and before publishing publishes on the next run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(with = "crate::inventory::fixed_opt")]
    pub open_published: Option<DateTime<Utc>>,
    #[serde(default)]
    pub resolve_published: bool,
    /// TTL of resolved rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

pub fn pk(tenant: &TenantId) -> String {
    format!("{tenant}#waste")
}

pub fn sk(account: &AccountId, resource_id: &str, rule: Rule) -> String {
    format!("{account}#{resource_id}#{rule}")
}

/// Days resolved findings are kept.
pub const RESOLVED_KEEP_DAYS: i64 = 90;

/// How stale a stored open finding's accrual (what it cost since `since`)
/// may grow before an evaluation that changes nothing else rewrites it.
/// Every hourly evaluation rewrote every open finding before (one write
/// unit each: at 100 resources per account ≈ 50 writes per account-hour,
/// ≈ 0.02 USD per account-month); now a finding is written when it opens,
/// changes (rule text, monthly saving by more than a part in a billion,
/// publication, status) or resolves,
/// and otherwise once a day. The accrual stays exact as of the row's
/// `accrued_through`: the next write adds the hours in between.
pub const ACCRUAL_REFRESH: chrono::Duration = chrono::Duration::hours(24);

/// True if `row` differs from the stored `before` only in its accrual
/// (amount, unpriced hours and reason, through, digest) and evaluation
/// time, both open, and `before`'s accrual is younger than
/// [`ACCRUAL_REFRESH`] at `row`'s evaluation: then `row` need not be
/// written.
fn only_accrual_moved(before: &FindingRow, row: &FindingRow) -> bool {
    let fresh = before
        .finding
        .accrued_through
        .is_some_and(|t| row.evaluated_at - t < ACCRUAL_REFRESH);
    let mut same = before.finding.clone();
    // The monthly saving is the last hour's amount × 730, re-derived at
    // each evaluation from an accrual that starts elsewhere: the same rate
    // comes back a few ulps off (seen in the request-cost benchmark: every
    // `gp2-to-gp3` finding rewritten each hour for it). A part in a
    // billion is the same saving.
    if let (Some(a), Some(b)) = (before.finding.monthly_usd, row.finding.monthly_usd)
        && (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
    {
        same.monthly_usd = row.finding.monthly_usd;
    }
    same.accrued_usd = row.finding.accrued_usd;
    same.unpriced_hours = row.finding.unpriced_hours;
    same.unpriced_reason = row.finding.unpriced_reason.clone();
    same.accrued_through = row.finding.accrued_through;
    same.accrual_digest = row.finding.accrual_digest;
    fresh
        && before.status == Status::Open
        && row.status == Status::Open
        && same == row.finding
        && before.open_published == row.open_published
        && row.open_published == Some(row.finding.since)
        && before.resolve_published == row.resolve_published
        && before.resolved_at.is_none()
        && before.expires_at == row.expires_at
}

/// What one reconciliation changed: the rows to announce.
#[derive(Debug, Default, Clone)]
pub struct Reconciled {
    /// Open rows whose current episode has not been published.
    pub to_open: Vec<FindingRow>,
    /// Resolved rows whose resolution has not been published.
    pub to_resolve: Vec<FindingRow>,
    /// Open rows after the reconciliation.
    pub open: usize,
    /// Of those, rows left as stored: only their accrual moved, and it was
    /// stored less than [`ACCRUAL_REFRESH`] ago.
    pub unchanged: usize,
}

/// What a tenant's open findings add up to (the digest's line, the
/// console's card).
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Distinct resources with an open idle finding.
    pub idle_resources: usize,
    /// USD per month of those (each resource counted once, at its largest
    /// idle finding's amount; unknown amounts left out).
    pub idle_monthly_usd: f64,
    /// Distinct resources with an open cheaper-equivalent finding
    /// (gp2→gp3, previous generation) and no idle one.
    pub cheaper_resources: usize,
    /// USD per month those would save.
    pub cheaper_monthly_usd: f64,
    /// Resources counted above whose monthly amount is unknown.
    pub unknown_amounts: usize,
}

impl Summary {
    /// Sums the open rows of `rows`.
    pub fn of(rows: &[FindingRow]) -> Self {
        Self::of_open(rows.iter().filter(|r| r.status == Status::Open).map(|r| {
            let f = &r.finding;
            (
                f.account.as_str(),
                f.resource_id.as_str(),
                f.rule,
                f.monthly_usd,
            )
        }))
    }

    /// Sums open findings given as (account, resource, rule, USD/month).
    pub fn of_open<'a>(
        findings: impl IntoIterator<Item = (&'a str, &'a str, Rule, Option<f64>)>,
    ) -> Self {
        use std::collections::BTreeMap;
        // resource → (idle?, largest known monthly, any unknown)
        let mut by: BTreeMap<(&str, &str), (bool, Option<f64>, bool)> = BTreeMap::new();
        for (account, resource, rule, monthly_usd) in findings {
            let e = by
                .entry((account, resource))
                .or_insert((false, None, false));
            let idle = rule.idle();
            if idle && !e.0 {
                // An idle finding replaces cheaper-equivalent amounts.
                *e = (true, None, false);
            } else if !idle && e.0 {
                continue;
            }
            match monthly_usd {
                Some(m) => e.1 = Some(e.1.map_or(m, |x: f64| x.max(m))),
                None => e.2 = true,
            }
        }
        let mut out = Summary::default();
        for (idle, monthly, unknown) in by.into_values() {
            if idle {
                out.idle_resources += 1;
                out.idle_monthly_usd += monthly.unwrap_or(0.0);
            } else {
                out.cheaper_resources += 1;
                out.cheaper_monthly_usd += monthly.unwrap_or(0.0);
            }
            if monthly.is_none() && unknown {
                out.unknown_amounts += 1;
            }
        }
        out
    }

    /// `12 idle resources, 380.00 USD/month; 3 with a cheaper equivalent,
    /// 15.20 USD/month` (and how many amounts are unknown).
    pub fn line(&self) -> String {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        let mut line = format!(
            "{} idle resource{}, {:.2} USD/month",
            self.idle_resources,
            plural(self.idle_resources),
            self.idle_monthly_usd
        );
        if self.cheaper_resources > 0 {
            line.push_str(&format!(
                "; {} with a cheaper equivalent, {:.2} USD/month",
                self.cheaper_resources, self.cheaper_monthly_usd
            ));
        }
        if self.unknown_amounts > 0 {
            line.push_str(&format!(
                " ({} without a price, not counted)",
                self.unknown_amounts
            ));
        }
        line
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// The findings store (price-graph table).
#[derive(Clone, Debug)]
pub struct WasteStore {
    ddb: Client,
    table: String,
}

impl WasteStore {
    pub fn new(ddb: Client, names: &Names) -> Self {
        Self {
            ddb,
            table: names.table(Table::PriceGraph),
        }
    }

    /// The account's last utilisation reads, by instance id.
    pub async fn idle_checks(
        &self,
        tenant: &TenantId,
        account: &AccountId,
    ) -> anyhow::Result<std::collections::HashMap<String, IdleCheck>> {
        let q = self
            .ddb
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :a)")
            .expression_attribute_values(":pk", s(format!("{tenant}#waste-idle")))
            .expression_attribute_values(":a", s(format!("{account}#")));
        let rows: Vec<IdleCheck> =
            kopter_runtime::dynamo::query_all(q, &format!("the idle checks of {tenant}/{account}"))
                .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.instance_id.clone(), r))
            .collect())
    }

    /// Records an instance's utilisation read, standing until `due_at`
    /// under thresholds `rule` (kept 3 days past `due_at`). Returns the
    /// row.
    #[allow(clippy::too_many_arguments)]
    pub async fn put_idle_check(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        instance_id: &str,
        checked_at: DateTime<Utc>,
        due_at: DateTime<Utc>,
        rule: &str,
        verdict: IdleVerdict,
    ) -> anyhow::Result<IdleCheck> {
        let row = IdleCheck {
            pk: format!("{tenant}#waste-idle"),
            sk: format!("{account}#{instance_id}"),
            instance_id: instance_id.to_owned(),
            checked_at,
            verdict,
            due_at: Some(due_at),
            rule: Some(rule.to_owned()),
            expires_at: (due_at.max(checked_at) + chrono::Duration::days(3)).timestamp(),
        };
        self.ddb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(
                serde_dynamo::to_item(&row).context("encode an idle check")?,
            ))
            .send()
            .await
            .with_context(|| format!("put the idle check of {instance_id}"))?;
        Ok(row)
    }

    /// A tenant's thresholds (the defaults when none are set).
    pub async fn thresholds(&self, tenant: &TenantId) -> anyhow::Result<Thresholds> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("{tenant}#waste-config")))
            .key("sk", s("thresholds"))
            .send()
            .await
            .with_context(|| format!("get the waste thresholds of {tenant}"))?;
        match out.item.and_then(|mut i| i.remove("thresholds")) {
            None => Ok(Thresholds::default()),
            Some(v) => serde_dynamo::from_attribute_value(v)
                .with_context(|| format!("decode the waste thresholds of {tenant}")),
        }
    }

    /// Sets a tenant's thresholds.
    pub async fn put_thresholds(&self, tenant: &TenantId, t: &Thresholds) -> anyhow::Result<()> {
        self.ddb
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("{tenant}#waste-config")))
            .item("sk", s("thresholds"))
            .item(
                "thresholds",
                serde_dynamo::to_attribute_value(t).context("encode waste thresholds")?,
            )
            .send()
            .await
            .with_context(|| format!("put the waste thresholds of {tenant}"))?;
        Ok(())
    }

    /// One page of a tenant's findings in key order (account, resource,
    /// rule); only those with `status` when given (a filter: a page may be
    /// short).
    pub async fn page(
        &self,
        tenant: &TenantId,
        status: Option<Status>,
        start: Option<&crate::page::PageKey>,
        limit: u32,
    ) -> anyhow::Result<crate::page::Page<FindingRow>> {
        let pk = pk(tenant);
        let mut q = self
            .ddb
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(&pk))
            .limit(limit as i32);
        if let Some(st) = status {
            q = q
                .filter_expression("#status = :st")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(
                    ":st",
                    s(match st {
                        Status::Open => "open",
                        Status::Resolved => "resolved",
                    }),
                );
        }
        if let Some(start) = start {
            q = q.set_exclusive_start_key(Some(crate::page::start_key(
                start,
                &["pk", "sk"],
                ("pk", &pk),
            )?));
        }
        let out = q
            .send()
            .await
            .with_context(|| format!("query a page of the waste findings of {tenant}"))?;
        crate::page::page_of(out.items, out.last_evaluated_key, "a waste finding")
    }

    /// Every finding row of a tenant (open and resolved), in key order.
    pub async fn findings(&self, tenant: &TenantId) -> anyhow::Result<Vec<FindingRow>> {
        self.query(tenant, None).await
    }

    async fn query(
        &self,
        tenant: &TenantId,
        account: Option<&AccountId>,
    ) -> anyhow::Result<Vec<FindingRow>> {
        let mut q = self
            .ddb
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .expression_attribute_values(":pk", s(pk(tenant)));
        q = match account {
            Some(a) => q
                .key_condition_expression("pk = :pk AND begins_with(sk, :a)")
                .expression_attribute_values(":a", s(format!("{a}#"))),
            None => q.key_condition_expression("pk = :pk"),
        };
        kopter_runtime::dynamo::query_all(q, &format!("the waste findings of {tenant}")).await
    }

    /// Makes the stored findings of one account those of an evaluation at
    /// `evaluated_at` (the end of the evaluated hour): each finding is put
    /// (opened, or updated while it lasts); each open row it lacks is
    /// resolved — `resource gone` when its resource is not in `present`.
    /// Idempotent, and a redelivered older evaluation changes nothing
    /// (conditional on `evaluated_at`). Returns the rows whose opening or
    /// resolution still has to be published.
    pub async fn reconcile(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        evaluated_at: DateTime<Utc>,
        findings: &[Finding],
        present: &std::collections::HashSet<String>,
    ) -> anyhow::Result<Reconciled> {
        let stored = self.account_findings(tenant, account).await?;
        self.reconcile_stored(tenant, account, evaluated_at, findings, present, stored)
            .await
    }

    /// Every finding row of one account (open and resolved), read
    /// consistently.
    pub async fn account_findings(
        &self,
        tenant: &TenantId,
        account: &AccountId,
    ) -> anyhow::Result<Vec<FindingRow>> {
        self.query(tenant, Some(account)).await
    }

    /// [`Self::reconcile`] with the rows already read
    /// ([`Self::account_findings`], before the evaluation: the conditional
    /// puts keep a newer evaluation's rows whatever happened since).
    pub async fn reconcile_stored(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        evaluated_at: DateTime<Utc>,
        findings: &[Finding],
        present: &std::collections::HashSet<String>,
        stored: Vec<FindingRow>,
    ) -> anyhow::Result<Reconciled> {
        let by_sk: std::collections::HashMap<&str, &FindingRow> =
            stored.iter().map(|r| (r.sk.as_str(), r)).collect();
        let mut out = Reconciled::default();
        let mut current = std::collections::HashSet::new();
        for f in findings {
            let key = sk(account, &f.resource_id, f.rule);
            current.insert(key.clone());
            let before = by_sk.get(key.as_str());
            if before.is_some_and(|b| b.evaluated_at > evaluated_at) {
                continue;
            }
            // A resolved finding that holds again is a new episode.
            let open_published = before
                .filter(|b| b.status == Status::Open)
                .and_then(|b| b.open_published);
            let row = FindingRow {
                pk: pk(tenant),
                sk: key,
                tenant: tenant.clone(),
                finding: f.clone(),
                status: Status::Open,
                evaluated_at,
                resolved_at: None,
                resolution: None,
                open_published,
                resolve_published: false,
                expires_at: None,
            };
            if before.is_some_and(|b| only_accrual_moved(b, &row)) {
                // Published already (`open_published` is `since`): nothing
                // to tell either.
                out.open += 1;
                out.unchanged += 1;
                continue;
            }
            if self.put_if_newer(&row).await? {
                out.open += 1;
                if row.open_published != Some(f.since) {
                    out.to_open.push(row);
                }
            }
        }
        for row in &stored {
            if current.contains(&row.sk) || row.evaluated_at > evaluated_at {
                continue;
            }
            match row.status {
                Status::Resolved => {
                    if !row.resolve_published {
                        out.to_resolve.push(row.clone());
                    }
                }
                Status::Open => {
                    let mut r = row.clone();
                    r.status = Status::Resolved;
                    r.evaluated_at = evaluated_at;
                    r.resolved_at = Some(evaluated_at);
                    r.resolution = Some(
                        if present.contains(&row.finding.resource_id) {
                            "condition ended"
                        } else {
                            "resource gone"
                        }
                        .into(),
                    );
                    r.expires_at = Some(
                        (evaluated_at + chrono::Duration::days(RESOLVED_KEEP_DAYS)).timestamp(),
                    );
                    if self.put_if_newer(&r).await? {
                        out.to_resolve.push(r);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Puts `row` unless the stored one was written by a later evaluation.
    /// Returns whether it was written.
    async fn put_if_newer(&self, row: &FindingRow) -> anyhow::Result<bool> {
        let r = self
            .ddb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(
                serde_dynamo::to_item(row).context("encode a finding")?,
            ))
            .condition_expression("attribute_not_exists(sk) OR evaluated_at <= :at")
            .expression_attribute_values(":at", s(crate::inventory::fixed_time(row.evaluated_at)))
            .send()
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(anyhow::Error::new(e).context(format!("put finding {}", row.sk))),
        }
    }

    /// Records that the opening (episode `since`) or the resolution of a
    /// row was published.
    pub async fn mark_published(&self, row: &FindingRow) -> anyhow::Result<()> {
        let (expr, value) = match row.status {
            Status::Open => (
                "SET open_published = :v",
                s(crate::inventory::fixed_time(row.finding.since)),
            ),
            Status::Resolved => ("SET resolve_published = :v", AttributeValue::Bool(true)),
        };
        self.ddb
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&row.pk))
            .key("sk", s(&row.sk))
            .update_expression(expr)
            .condition_expression("attribute_exists(sk) AND evaluated_at = :at")
            .expression_attribute_values(":v", value)
            .expression_attribute_values(":at", s(crate::inventory::fixed_time(row.evaluated_at)))
            .send()
            .await
            .map(drop)
            .or_else(|e| {
                // A newer evaluation rewrote the row: it publishes itself.
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception())
                {
                    Ok(())
                } else {
                    Err(anyhow::Error::new(e).context(format!("mark finding {} published", row.sk)))
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(resource: &str, rule: Rule, monthly: Option<f64>, status: Status) -> FindingRow {
        let tenant = TenantId::new("acme").unwrap();
        let account = AccountId::new("111111111111").unwrap();
        FindingRow {
            pk: pk(&tenant),
            sk: sk(&account, resource, rule),
            tenant,
            finding: Finding {
                account,
                region: "us-east-1".into(),
                resource_id: resource.into(),
                kind: ResourceKind::Volume,
                rule,
                since: "2025-05-01T00:00:00Z".parse().unwrap(),
                accrued_usd: 1.0,
                unpriced_hours: 0,
                unpriced_reason: None,
                accrued_through: None,
                accrual_digest: None,
                monthly_usd: monthly,
                action: String::new(),
                detail: String::new(),
            },
            status,
            evaluated_at: "2025-05-02T00:00:00Z".parse().unwrap(),
            resolved_at: None,
            resolution: None,
            open_published: None,
            resolve_published: false,
            expires_at: None,
        }
    }

    #[test]
    fn a_monthly_saving_a_few_ulps_off_is_no_change_and_a_real_one_is() {
        let mut before = row(
            "vol-1",
            Rule::Gp2ToGp3,
            Some(0.039247311827957036),
            Status::Open,
        );
        before.finding.accrued_through = Some(before.evaluated_at);
        before.open_published = Some(before.finding.since);
        let mut next = before.clone();
        next.evaluated_at = before.evaluated_at + chrono::Duration::hours(1);
        next.finding.accrued_through = Some(next.evaluated_at);
        next.finding.accrued_usd = 1.5;
        // The benchmark's pair: the same rate from another accrual start.
        next.finding.monthly_usd = Some(0.03924731182795702);
        assert!(only_accrual_moved(&before, &next));
        next.finding.monthly_usd = Some(0.0393);
        assert!(!only_accrual_moved(&before, &next));
        next.finding.monthly_usd = None;
        assert!(!only_accrual_moved(&before, &next));
    }

    #[test]
    fn summary_counts_each_resource_once_and_open_rows_only() {
        let rows = [
            // Idle twice (orphan and past retention): counted once, at 8.
            row("snap-1", Rule::OrphanSnapshot, Some(8.0), Status::Open),
            row(
                "snap-1",
                Rule::SnapshotPastRetention,
                Some(8.0),
                Status::Open,
            ),
            // Idle and gp2: the idle amount (the whole price) only.
            row("vol-1", Rule::UnattachedVolume, Some(10.0), Status::Open),
            row("vol-1", Rule::Gp2ToGp3, Some(2.0), Status::Open),
            row("vol-2", Rule::Gp2ToGp3, Some(1.5), Status::Open),
            row("vol-3", Rule::UnattachedVolume, None, Status::Open),
            row(
                "vol-4",
                Rule::UnattachedVolume,
                Some(99.0),
                Status::Resolved,
            ),
        ];
        let s = Summary::of(&rows);
        assert_eq!(
            s,
            Summary {
                idle_resources: 3,
                idle_monthly_usd: 18.0,
                cheaper_resources: 1,
                cheaper_monthly_usd: 1.5,
                unknown_amounts: 1,
            }
        );
        assert_eq!(
            s.line(),
            "3 idle resources, 18.00 USD/month; 1 with a cheaper equivalent, 1.50 USD/month \
             (1 without a price, not counted)"
        );
    }

    #[test]
    fn severity_by_monthly_amount() {
        use kopter_schema::messages::Severity;
        assert_eq!(severity(None), Severity::Info);
        assert_eq!(severity(Some(49.99)), Severity::Info);
        assert_eq!(severity(Some(50.0)), Severity::Warning);
        assert_eq!(severity(Some(500.0)), Severity::Critical);
    }
}
