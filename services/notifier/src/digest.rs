//! The daily digest (the talk's 23:00 `audit` cron): per tenant, the day's
//! security findings and notable audit events, the changes told in the
//! feed, and the day's cost.

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use kopter_schema::{Names, TenantId};
use kopter_store::audit::{AuditQuery, AuditRow, AuditStore};

use kopter_store::feed::FeedRow;
use kopter_store::graph::GraphStore;

/// Audit rows read per digest; more are reported as "N+".
pub const MAX_AUDIT_ROWS: usize = 5000;
/// Notable (finding-matching) audit events listed one per line.
pub const MAX_NOTABLE_LINES: usize = 10;

/// The day's cost over the tenant's accounts, USD, once the aggregator
/// has computed an hour of it: [`GraphStore::daily_total`] (the sum of
/// the day's `account` roll-ups in the price-graph table).
#[derive(Clone, Debug)]
pub struct CostReader {
    graph: GraphStore,
}

impl CostReader {
    pub fn new(ddb: aws_sdk_dynamodb::Client, names: &Names) -> Self {
        Self {
            graph: GraphStore::new(ddb, names),
        }
    }

    /// `(cost, currency)`; `None` before any hour of the day is computed.
    pub async fn day_total(
        &self,
        tenant: &TenantId,
        day: NaiveDate,
    ) -> anyhow::Result<Option<(f64, String)>> {
        let total = self
            .graph
            .daily_total(tenant, &day.format("%Y-%m-%d").to_string())
            .await
            .context("read the day's cost")?;
        Ok(total.map(|c| (c, "USD".to_owned())))
    }
}

pub fn day_bounds(day: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = day.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
    (start, start + Duration::days(1))
}

pub async fn audit_rows(
    audit: &AuditStore,
    tenant: &TenantId,
    day: NaiveDate,
) -> anyhow::Result<Vec<AuditRow>> {
    let (start, end) = day_bounds(day);
    audit
        .query(&AuditQuery {
            tenant: tenant.clone(),
            since: start,
            until: end - Duration::milliseconds(1),
            principal: None,
            event: None,
            source: None,
            resource: None,
            caller_account: None,
            limit: MAX_AUDIT_ROWS,
        })
        .await
        .context("read the day's audit log")
}

/// The digest's text.
pub fn render(
    tenant: &TenantId,
    day: NaiveDate,
    audit: &[AuditRow],
    feed: &[FeedRow],
    cost: Option<(f64, String)>,
    waste: &kopter_store::waste::Summary,
) -> String {
    let mut out = format!("Kopter daily digest for {tenant}, {day} (UTC)\n");

    let mut findings: BTreeMap<&str, usize> = BTreeMap::new();
    for r in audit {
        for f in &r.findings {
            *findings.entry(f.as_str()).or_default() += 1;
        }
    }
    let notable: Vec<&AuditRow> = audit.iter().filter(|r| !r.findings.is_empty()).collect();
    out.push_str(&format!(
        "\nSecurity findings: {}\n",
        findings.values().sum::<usize>()
    ));
    for (rule, n) in &findings {
        out.push_str(&format!("  - {rule}: {n}\n"));
    }
    if !notable.is_empty() {
        out.push_str("Notable audit events:\n");
        for r in notable.iter().take(MAX_NOTABLE_LINES) {
            out.push_str(&format!(
                "  {} {} {} {} by {} [{}]\n",
                r.event_time.format("%H:%M:%S"),
                r.account,
                r.region,
                r.event_name,
                r.principal_arn.as_deref().unwrap_or("?"),
                r.findings.join(", ")
            ));
        }
        if notable.len() > MAX_NOTABLE_LINES {
            out.push_str(&format!(
                "  … and {} more\n",
                notable.len() - MAX_NOTABLE_LINES
            ));
        }
    }

    let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
    for r in audit {
        *by_name.entry(r.event_name.as_str()).or_default() += 1;
    }
    let mut top: Vec<_> = by_name.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let plus = if audit.len() >= MAX_AUDIT_ROWS {
        "+"
    } else {
        ""
    };
    out.push_str(&format!("\nAudit events: {}{plus}", audit.len()));
    if !top.is_empty() {
        let list: Vec<String> = top
            .iter()
            .take(5)
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        out.push_str(&format!(" (most: {})", list.join(", ")));
    }
    out.push('\n');

    let mut changes: BTreeMap<&str, usize> = BTreeMap::new();
    for r in feed.iter().filter(|r| {
        !matches!(
            r.kind.as_str(),
            "security.finding" | "notify.daily_digest" | "waste.finding"
        )
    }) {
        *changes.entry(r.title.as_str()).or_default() += 1;
    }
    out.push_str(&format!("\nChanges: {}\n", changes.values().sum::<usize>()));
    for (title, n) in &changes {
        out.push_str(&format!("  - {title}: {n}\n"));
    }

    match cost {
        Some((c, cur)) => out.push_str(&format!("\nCost: {c:.2} {cur}\n")),
        None => out.push_str("\nCost: no cost data\n"),
    }
    // Open findings at the time of the digest, not only the day's.
    out.push_str(&format!("Waste: {}\n", waste.line()));
    out
}
