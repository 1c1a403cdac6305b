//! The overview: this month's cost, forecast and budget, the last 48
//! hours as a chart, the top accounts, regions and families of the month,
//! the newest findings, unread notifications, failing accounts and those
//! whose health is still unchecked.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::IntoResponse;
use chrono::{DateTime, Datelike, Duration, DurationRound, TimeZone, Utc};
use maud::{Markup, html};

use super::gather;
use crate::ApiState;
use crate::console::chart::{Series, StackedBars};
use crate::console::layout::{self, PageResult, Section, cost, href, usd, utc};
use crate::console::session::ConsoleSession;
use crate::data::PageRequest;
use crate::data::audit::{FindingFilter, NotificationFilter};
use crate::data::cost::{CostPoint, Granularity, GroupBy, SeriesQuery};
use crate::data::settings::AccountHealth;

/// Most groups listed per "top" table.
const TOP: usize = 5;
/// Findings and notifications listed.
const NEWEST: u32 = 5;
/// Points read per series at most (a month of days × groups).
const MAX_POINTS: usize = 20_000;

pub(super) async fn page(session: ConsoleSession, State(state): State<ApiState>) -> PageResult {
    let now = Utc::now();
    let data = state.data();
    let tenant = &session.principal.tenant;
    let hour = now
        .duration_trunc(Duration::hours(1))
        .expect("an hour truncates");
    let month_start = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .expect("the first of a month exists");
    let today = now
        .duration_trunc(Duration::days(1))
        .expect("a day truncates");

    let month = |dim: &str| SeriesQuery {
        granularity: Granularity::Day,
        by: GroupBy::Dimension(dim.to_owned()),
        first: month_start,
        last: today,
    };
    let (by_account, by_region, by_family) = (month("account"), month("region"), month("family"));
    let (accounts_mtd, _) =
        gather(MAX_POINTS, |p| data.cost_series(tenant, &by_account, p)).await?;
    let (regions_mtd, _) = gather(MAX_POINTS, |p| data.cost_series(tenant, &by_region, p)).await?;
    let (families_mtd, _) = gather(MAX_POINTS, |p| data.cost_series(tenant, &by_family, p)).await?;
    let last48 = SeriesQuery {
        granularity: Granularity::Hour,
        by: GroupBy::Dimension("account".into()),
        first: hour - Duration::hours(47),
        last: hour,
    };
    let (hours, _) = gather(MAX_POINTS, |p| data.cost_series(tenant, &last48, p)).await?;
    let budget = data.budget(tenant, now).await?;
    let findings = data
        .findings(
            tenant,
            &FindingFilter::default(),
            PageRequest {
                after: None,
                limit: NEWEST,
            },
        )
        .await?
        .items;
    let unread = data
        .notifications(
            tenant,
            &NotificationFilter { unread: true },
            PageRequest {
                after: None,
                limit: NEWEST * 2,
            },
        )
        .await?
        .items;
    let (accounts, _) = gather(10_000, |p| data.accounts(tenant, p)).await?;
    let (mut waste, _) = gather(MAX_POINTS, |p| {
        data.waste(tenant, Some(kopter_store::waste::Status::Open), p)
    })
    .await?;
    let waste_summary = kopter_store::waste::Summary::of_open(waste.iter().filter_map(|w| {
        Some((
            w.account.as_str(),
            w.resource_id.as_str(),
            w.rule.parse().ok()?,
            w.monthly_usd,
        ))
    }));
    waste.sort_by(|a, b| {
        b.monthly_usd
            .unwrap_or(-1.0)
            .total_cmp(&a.monthly_usd.unwrap_or(-1.0))
    });
    let of = |h: AccountHealth| -> Vec<_> { accounts.iter().filter(|a| a.health == h).collect() };
    // An unchecked account is not reachable as far as anyone knows: it
    // is listed apart, never counted among the working ones.
    let (failing, unchecked) = (of(AccountHealth::Failing), of(AccountHealth::Unchecked));
    let ok = accounts.len() - failing.len() - unchecked.len();

    let mtd: f64 = accounts_mtd.iter().filter_map(|p| p.cost_usd).sum();
    let mtd_missing: u64 = accounts_mtd.iter().map(|p| p.price_missing).sum();
    // The aggregator's linear forecast: month-to-date ÷ time elapsed to the
    // end of the current hour × the month's length.
    let elapsed = ((hour + Duration::hours(1)) - month_start).num_seconds() as f64;
    let next_month = if now.month() == 12 {
        Utc.with_ymd_and_hms(now.year() + 1, 1, 1, 0, 0, 0)
    } else {
        Utc.with_ymd_and_hms(now.year(), now.month() + 1, 1, 0, 0, 0)
    }
    .single()
    .expect("the first of a month exists");
    let month_secs = (next_month - month_start).num_seconds() as f64;
    let forecast = mtd / elapsed * month_secs;
    let month_name = month_start.format("%B %Y").to_string();

    let body = html! {
        section.cards aria-label="This month" {
            div.card #month-to-date {
                h2 { "Month to date" }
                p.big data-usd=(mtd) { (usd(mtd)) }
                p.note { (month_name) ", " (utc_range(month_start, hour + Duration::hours(1))) }
                @if mtd_missing > 0 {
                    p { (layout::price_missing("some resources could not be priced")) " "
                        (mtd_missing) " resource-days without a price are not in this sum" }
                }
            }
            div.card #forecast {
                h2 { "Forecast for " (month_name) }
                p.big { (usd(forecast)) }
                p.note { "Linear: month to date ÷ time elapsed × length of the month (the aggregator's budget forecast)." }
            }
            div.card #budget {
                h2 { "Budget" }
                @match &budget {
                    Some(b) => {
                        p.big { (usd(b.monthly_usd)) " a month" }
                        ul {
                            @for t in &b.thresholds {
                                @let limit = b.monthly_usd * f64::from(*t) / 100.0;
                                li {
                                    (t) " % = " (usd(limit))
                                    @if b.month_to_date_usd >= limit { " — " strong.state-bad { "crossed" } }
                                    @else if forecast >= limit { " — forecast to cross" }
                                }
                            }
                        }
                    }
                    None => {
                        p { "No budget is set." }
                        @if session.principal.role == crate::auth::Role::Admin {
                            p { a href=(href("/settings")) { "Set one in Settings" } }
                        }
                    }
                }
            }
        }
        section.cards aria-label="Waste" {
            div.card #waste {
                h2 { "Waste" }
                p.big { (usd(waste_summary.idle_monthly_usd)) " a month" }
                p {
                    (waste_summary.idle_resources) " idle resource"
                    @if waste_summary.idle_resources != 1 { "s" }
                    @if waste_summary.cheaper_resources > 0 {
                        "; " (waste_summary.cheaper_resources) " with a cheaper equivalent, "
                        (usd(waste_summary.cheaper_monthly_usd)) " a month"
                    }
                    @if waste_summary.unknown_amounts > 0 {
                        "; " (waste_summary.unknown_amounts) " without a price (not counted)"
                    }
                }
                @if !waste.is_empty() {
                    ul {
                        @for w in waste.iter().take(TOP) {
                            li {
                                (w.resource_id) " (" (w.rule) "): "
                                @match w.monthly_usd {
                                    Some(m) => { (usd(m)) " a month" }
                                    None => { (layout::price_missing("no current price")) }
                                }
                                ", " (usd(w.accrued_usd)) " since " (w.since.format("%Y-%m-%d %H:%M UTC"))
                            }
                        }
                    }
                }
                p.note { "A month = the current hourly price × 730 h; the full list is GET /v1/waste (kopterctl waste)." }
            }
        }
        section aria-labelledby="last48-h" {
            h2 #last48-h { "Cost of the last 48 hours, by account" }
            (hours_chart(&hours, last48.first, 48))
            p { a href=(href("/cost")) { "Cost by hour, as a table and CSV" } }
        }
        section.grid2 aria-label="Top of the month" {
            (top_table("top-accounts", "Top accounts this month", "account", &accounts_mtd))
            (top_table("top-regions", "Top regions this month", "region", &regions_mtd))
            (top_table("top-families", "Top instance families this month", "family", &families_mtd))
        }
        section.grid2 {
            div #findings {
                h2 { "Newest security findings" }
                @if findings.is_empty() { p { "No findings." } }
                ul {
                    @for f in &findings {
                        li {
                            span class={"badge " (severity(f.severity))} { (severity(f.severity)) }
                            " " (f.title) " — " (utc(&f.time))
                            @if let Some(r) = &f.record {
                                " " a href=(console_record(r)) { "record" }
                            }
                        }
                    }
                }
                p { a href=(href("/audit")) { "Audit log" } }
            }
            div #unread {
                h2 { "Unread notifications" }
                @if unread.is_empty() { p { "Nothing unread." } }
                ul {
                    @for n in &unread {
                        li {
                            span class={"badge " (severity(n.severity))} { (severity(n.severity)) }
                            " " (n.title) " — " (utc(&n.time))
                        }
                    }
                }
                p { a href=(href("/notifications")) { "All notifications" } }
            }
        }
        section #failing-accounts {
            h2 { "Accounts whose access is failing" }
            @if failing.is_empty() && unchecked.is_empty() {
                p { "Every account (" (accounts.len()) ") is reachable." }
            } @else if failing.is_empty() {
                p { "No account's access is failing: " (ok) " ok, " (unchecked.len()) " unchecked." }
            } @else {
                div.table-wrap { table {
                    thead { tr { th scope="col" { "Account" } th scope="col" { "Why" } th scope="col" { "Last describe" } } }
                    tbody {
                        @for a in &failing {
                            tr {
                                td { (a.account_id) }
                                td.state-bad { (a.health_reason.as_deref().unwrap_or("unhealthy")) }
                                td { @if let Some(t) = a.last_describe_at { (utc(&crate::data::inventory::rfc3339(t))) } @else { "never" } }
                            }
                        }
                    }
                } }
            }
        }
        @if !unchecked.is_empty() {
            section #unchecked-accounts {
                h2 { "Accounts not checked yet" }
                p {
                    "Nothing has tried these accounts' roles yet: "
                    code { "kopterctl accounts verify" }
                    " or the next describe sets their health."
                }
                ul {
                    @for a in &unchecked {
                        li { (a.account_id) " " span.badge.unchecked { (a.health.as_str()) } }
                    }
                }
            }
        }
    };
    Ok(layout::page(&session, Section::Overview, "Overview", body).into_response())
}

fn utc_range(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    format!(
        "{} – {} UTC",
        from.format("%Y-%m-%d %H:%M"),
        to.format("%Y-%m-%d %H:%M")
    )
}

pub(super) fn severity(s: crate::data::audit::Severity) -> &'static str {
    use crate::data::audit::Severity as S;
    match s {
        S::Info => "info",
        S::Warning => "warning",
        S::Critical => "critical",
    }
}

/// The console page of an api record path (`/v1/audit/aws/{id}`).
pub(super) fn console_record(api_path: &str) -> String {
    let id = api_path.rsplit('/').next().unwrap_or_default();
    href(&format!("/audit/{id}"))
}

/// The 48-hour chart: one bar per hour, stacked by account.
fn hours_chart(points: &[CostPoint], first: DateTime<Utc>, n: i64) -> Markup {
    let labels: Vec<String> = (0..n)
        .map(|i| (first + Duration::hours(i)).format("%d %H:00").to_string())
        .collect();
    let index: BTreeMap<String, usize> = (0..n)
        .map(|i| {
            (
                crate::data::inventory::rfc3339(first + Duration::hours(i)),
                i as usize,
            )
        })
        .collect();
    let mut groups: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut missing = vec![false; n as usize];
    for p in points {
        let Some(&i) = index.get(&p.period) else {
            continue;
        };
        groups
            .entry(p.group.clone())
            .or_insert_with(|| vec![0.0; n as usize])[i] += p.cost_usd.unwrap_or(0.0);
        missing[i] |= p.price_missing > 0;
    }
    let total: f64 = points.iter().filter_map(|p| p.cost_usd).sum();
    let title = format!(
        "Cost per hour of the last 48 hours (UTC), stacked by account: {} in all",
        usd(total)
    );
    StackedBars {
        id: "chart-48h",
        title: &title,
        labels: &labels,
        series: groups
            .into_iter()
            .map(|(name, values)| Series { name, values })
            .collect(),
        price_missing: &missing,
    }
    .render()
}

/// The groups of `points` by total, largest first (the first [`TOP`]).
fn top_table(id: &str, title: &str, dim: &str, points: &[CostPoint]) -> Markup {
    let mut totals: BTreeMap<&str, (f64, u64)> = BTreeMap::new();
    for p in points {
        let e = totals.entry(p.group.as_str()).or_default();
        e.0 += p.cost_usd.unwrap_or(0.0);
        e.1 += p.price_missing;
    }
    let mut rows: Vec<_> = totals.into_iter().collect();
    rows.sort_by(|a, b| b.1.0.total_cmp(&a.1.0).then(a.0.cmp(b.0)));
    rows.truncate(TOP);
    html! {
        div id=(id) {
            div.table-wrap { table {
                caption { (title) }
                thead { tr { th scope="col" { (dim) } th.num scope="col" { "Cost" } } }
                tbody {
                    @if rows.is_empty() { tr { td colspan="2" { "No cost recorded this month." } } }
                    @for (group, (sum, missing)) in &rows {
                        tr {
                            td { (group) }
                            td.num {
                                (cost(Some(*sum), None))
                                @if *missing > 0 { " " (layout::price_missing("resources without a price are not in this sum")) }
                            }
                        }
                    }
                }
            } }
            p { a href=(href(&format!("/cost?{}", layout::query(&[("granularity", "day"), ("by", dim)])))) { "By " (dim) ", day by day" } }
        }
    }
}
