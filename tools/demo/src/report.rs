//! The demo's report, read back from the stores the services wrote:
//! inventory per account (describer), cost per account and instance for
//! the demo period (aggregator's price graph), the latest audit events
//! (trail-ingest), notifications (notifier's feed, and webhooks received),
//! queue and DLQ depths, and where the metrics are.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Duration, DurationRound, Utc};
use kopter_schema::Service;
use kopter_store::audit::{AuditQuery, AuditRow, AuditStore};
use kopter_store::feed::{FeedRow, FeedStore};
use kopter_store::graph::{GraphStore, day_key, hour_key};
use kopter_store::inventory::{InventoryRow, Resource, ResourceKind};

use crate::Demo;

/// One account's part of the report.
#[derive(Debug, Clone)]
pub struct AccountPart {
    pub tenant: String,
    pub account: String,
    pub label: String,
    /// Instances, volumes and snapshots that exist (not gone).
    pub rows: Vec<InventoryRow>,
    /// Cost of each resource over the period (from its hour rows).
    pub resource_cost: BTreeMap<String, f64>,
    /// The account's cost over the period from the hourly roll-ups.
    pub cost_usd: f64,
    /// Resource-hours without a known price.
    pub price_missing: u64,
}

impl AccountPart {
    pub fn count(&self, kind: ResourceKind) -> usize {
        self.rows.iter().filter(|r| r.kind() == kind).count()
    }
    pub fn instances_in(&self, state: &str) -> usize {
        self.rows
            .iter()
            .filter(|r| r.kind() == ResourceKind::Instance && r.state() == state)
            .count()
    }
}

/// Everything the demo prints.
#[derive(Debug, Clone)]
pub struct Report {
    /// `[from, to)`, whole hours.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub accounts: Vec<AccountPart>,
    /// Per tenant: the aggregator's stored daily totals over the period's days.
    pub stored_daily_totals: BTreeMap<String, f64>,
    /// Per tenant: audit rows of the last day (newest first) and how many.
    pub audit: BTreeMap<String, Vec<AuditRow>>,
    /// Per tenant: feed rows, newest first.
    pub notifications: BTreeMap<String, Vec<FeedRow>>,
    /// Per tenant: webhook posts received by the demo's receiver.
    pub webhooks: BTreeMap<String, usize>,
    /// `(service, [visible, in flight, delayed], dlq depth)`.
    pub queues: Vec<(Service, [u64; 3], u64)>,
    /// `(process, metrics URL)`.
    pub metrics: Vec<(String, String)>,
    pub price_list_url: String,
    pub endpoint: String,
    pub env: String,
}

impl Report {
    pub async fn read(demo: &Demo) -> anyhow::Result<Report> {
        let ctx = &demo.ctx;
        let ddb = ctx.aws.dynamodb();
        let inventory = kopter_store::inventory::InventoryStore::new(ddb.clone(), &ctx.names);
        let graph = GraphStore::new(ddb.clone(), &ctx.names);
        let audit = AuditStore::new(ddb.clone(), &ctx.names);
        let feed = FeedStore::new(ddb, &ctx.names);
        let from = demo.period_from;
        let to = Utc::now().duration_trunc(Duration::hours(1))? + Duration::hours(1);
        let mut accounts = Vec::new();
        for (rec, a) in demo.records.iter().zip(&demo.opts.accounts) {
            let mut rows = kopter_store::inventory::inventory_rows(
                &inventory,
                &ctx.accounts,
                &rec.tenant_id,
                Some(&rec.account_id),
                None,
            )
            .await?;
            rows.retain(|r| !r.gone);
            let mut resource_cost = BTreeMap::new();
            let mut price_missing = 0;
            let mut h = from;
            while h < to {
                for r in graph
                    .resource_hours(&rec.tenant_id, &rec.account_id, h)
                    .await?
                {
                    *resource_cost.entry(r.resource_id.clone()).or_insert(0.0) +=
                        r.cost_usd.unwrap_or(0.0);
                    price_missing += u64::from(r.price_missing.is_some());
                }
                h += Duration::hours(1);
            }
            let series = graph
                .series(
                    &rec.tenant_id,
                    Some(&rec.account_id),
                    "hour",
                    "account",
                    &hour_key(from),
                    &hour_key(to - Duration::hours(1)),
                )
                .await?;
            accounts.push(AccountPart {
                tenant: rec.tenant_id.to_string(),
                account: rec.account_id.to_string(),
                label: a.label.clone(),
                rows,
                resource_cost,
                cost_usd: series.iter().map(|p| p.cost_usd).sum(),
                price_missing,
            });
        }
        let mut stored_daily_totals = BTreeMap::new();
        let mut audit_rows = BTreeMap::new();
        let mut notifications = BTreeMap::new();
        let mut webhooks = BTreeMap::new();
        for tenant in demo.tenants() {
            let mut days: Vec<String> = Vec::new();
            let mut h = from;
            while h < to {
                let d = day_key(h);
                if !days.contains(&d) {
                    days.push(d);
                }
                h += Duration::hours(1);
            }
            let mut total = 0.0;
            for d in &days {
                total += graph.daily_total(&tenant, d).await?.unwrap_or(0.0);
            }
            stored_daily_totals.insert(tenant.to_string(), total);
            let rows = audit
                .query(&AuditQuery {
                    tenant: tenant.clone(),
                    since: Utc::now() - Duration::days(1),
                    until: Utc::now() + Duration::minutes(1),
                    principal: None,
                    event: None,
                    source: None,
                    resource: None,
                    caller_account: None,
                    limit: 1000,
                })
                .await?;
            audit_rows.insert(tenant.to_string(), rows);
            notifications.insert(tenant.to_string(), feed.list(&tenant, false, 1000).await?);
            webhooks.insert(
                tenant.to_string(),
                demo.site.webhooks(tenant.as_str()).len(),
            );
        }
        let queues = crate::queue_depths(ctx)
            .await?
            .into_iter()
            .map(|(s, q, d)| (s, q, d.iter().sum()))
            .collect();
        let metrics = demo
            .fleet
            .as_ref()
            .map(|f| {
                f.endpoints()
                    .into_iter()
                    .map(|(n, a)| (n, format!("http://{a}/metrics")))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Report {
            from,
            to,
            accounts,
            stored_daily_totals,
            audit: audit_rows,
            notifications,
            webhooks,
            queues,
            metrics,
            price_list_url: format!("{}/offers/v1.0/aws/index.json", demo.site.base_url),
            endpoint: demo.opts.endpoint.clone(),
            env: demo.config.env.clone(),
        })
    }

    /// Sum of the accounts' costs per tenant.
    pub fn tenant_costs(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for a in &self.accounts {
            *out.entry(a.tenant.clone()).or_insert(0.0) += a.cost_usd;
        }
        out
    }

    /// The report as text.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let period = format!(
            "{} – {} UTC",
            self.from.format("%Y-%m-%d %H:%M"),
            self.to.format("%H:%M")
        );
        let _ = writeln!(o, "== inventory and cost per account ({period})");
        for a in &self.accounts {
            let _ = writeln!(
                o,
                "{} / {} ({}): {} instances ({} running, {} stopped), {} volumes, {} snapshots — {:.4} USD",
                a.tenant,
                a.account,
                a.label,
                a.count(ResourceKind::Instance),
                a.instances_in("running"),
                a.instances_in("stopped"),
                a.count(ResourceKind::Volume),
                a.count(ResourceKind::Snapshot),
                a.cost_usd
            );
            let _ = writeln!(
                o,
                "  {:<15} {:<20} {:<10} {:<11} {:<10} {:<9} {:<8} {:>10}",
                "REGION", "INSTANCE", "NAME", "TYPE", "PLATFORM", "MARKET", "STATE", "COST USD"
            );
            for r in &a.rows {
                let Resource::Instance(i) = &r.resource else {
                    continue;
                };
                let _ = writeln!(
                    o,
                    "  {:<15} {:<20} {:<10} {:<11} {:<10} {:<9} {:<8} {:>10.4}",
                    r.region,
                    r.resource_id,
                    i.tags.get("Name").map_or("-", String::as_str),
                    i.instance_type,
                    i.platform_details.split('/').next().unwrap_or("-"),
                    i.lifecycle,
                    i.state,
                    a.resource_cost.get(&r.resource_id).copied().unwrap_or(0.0)
                );
            }
            let volumes: f64 = a
                .rows
                .iter()
                .filter(|r| r.kind() != ResourceKind::Instance)
                .map(|r| a.resource_cost.get(&r.resource_id).copied().unwrap_or(0.0))
                .sum();
            let _ = writeln!(
                o,
                "  volumes and snapshots {volumes:>57.4}{}",
                if a.price_missing > 0 {
                    format!(
                        "\n  {} resource-hour(s) without a known price (not in the cost)",
                        a.price_missing
                    )
                } else {
                    String::new()
                }
            );
        }
        let _ = writeln!(o, "cost per tenant ({period}):");
        for (t, c) in self.tenant_costs() {
            let _ = writeln!(
                o,
                "  {t:<10} {c:>10.4} USD   (aggregator's day roll-ups: {:.4} USD)",
                self.stored_daily_totals.get(&t).copied().unwrap_or(0.0)
            );
        }

        let _ = writeln!(o, "\n== latest audit events (CloudTrail → audit log)");
        for (t, rows) in &self.audit {
            let flagged = rows.iter().filter(|r| !r.findings.is_empty()).count();
            let _ = writeln!(
                o,
                "{t}: {} events, {flagged} with security findings",
                rows.len()
            );
            // The newest changes (read-only calls are most of a trail).
            for r in rows.iter().filter(|r| r.read_only != Some(true)).take(8) {
                let _ = writeln!(
                    o,
                    "  {} {} {:<14} {:<44} {}",
                    r.event_time.format("%H:%M:%S"),
                    r.account,
                    r.region,
                    format!(
                        "{}:{}",
                        r.event_source.trim_end_matches(".amazonaws.com"),
                        r.event_name
                    ),
                    if r.findings.is_empty() {
                        String::new()
                    } else {
                        format!("⚠ {}", r.findings.join(","))
                    }
                );
            }
        }

        let _ = writeln!(o, "\n== notifications (feed; webhook posts received)");
        for (t, rows) in &self.notifications {
            let by_sev = |s: &str| {
                rows.iter()
                    .filter(|r| format!("{:?}", r.severity).eq_ignore_ascii_case(s))
                    .count()
            };
            let _ = writeln!(
                o,
                "{t}: {} notifications ({} critical, {} warning, {} info); {} webhook posts",
                rows.len(),
                by_sev("critical"),
                by_sev("warning"),
                by_sev("info"),
                self.webhooks.get(t).copied().unwrap_or(0)
            );
            let mut shown: Vec<&FeedRow> = rows
                .iter()
                .filter(|r| format!("{:?}", r.severity) != "Info")
                .take(5)
                .collect();
            if shown.is_empty() {
                shown = rows.iter().take(5).collect();
            }
            for r in shown {
                let _ = writeln!(
                    o,
                    "  {:<8} {}",
                    format!("{:?}", r.severity).to_lowercase(),
                    r.title
                );
            }
        }

        let _ = writeln!(o, "\n== queues");
        let _ = writeln!(
            o,
            "{:<14} {:>8} {:>10} {:>8} {:>6}",
            "SERVICE", "VISIBLE", "IN-FLIGHT", "DELAYED", "DLQ"
        );
        for (s, q, d) in &self.queues {
            let _ = writeln!(
                o,
                "{:<14} {:>8} {:>10} {:>8} {:>6}",
                s.name(),
                q[0],
                q[1],
                q[2],
                d
            );
        }

        let _ = writeln!(o, "\n== endpoints");
        for (n, url) in &self.metrics {
            let _ = writeln!(o, "{n:<20} {url}");
        }
        let _ = writeln!(o, "{:<20} {}", "price list", self.price_list_url);
        let _ = writeln!(
            o,
            "{:<20} {} (environment {})",
            "local AWS (moto)", self.endpoint, self.env
        );
        o
    }
}
