//! The cost page: the series of `GET /v1/cost` for a form's parameters
//! (hour or day; by account, region, family, tag or resource) as a
//! stacked chart and as a table of the same points, and its CSV: the
//! api's own CSV of the same parameters.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, DurationRound, Utc};
use maud::{Markup, html};

use super::{gather, params, typed_time};
use crate::ApiState;
use crate::console::chart::{Series, StackedBars};
use crate::console::layout::{self, PageError, PageResult, Section, cost, href, period, usd};
use crate::console::session::ConsoleSession;
use crate::data::cost::{CostFilter, CostPoint, Granularity};
use crate::data::inventory::rfc3339;
use crate::error::ApiError;
use crate::list::{DEFAULT_LIMIT, Format, ListQuery};

/// Points shown at most (31 days of hours × ~27 groups); more are cut
/// with a note (the CSV has them all).
const MAX_POINTS: usize = 20_000;

const NAMES: [&str; 4] = ["from", "to", "granularity", "by"];

/// The form's parameters, defaulted and normalised to the api's
/// (`from`/`to` RFC 3339).
struct CostForm {
    filter: CostFilter,
}

impl CostForm {
    fn parse(uri: &Uri, now: DateTime<Utc>) -> Result<Self, ApiError> {
        let p = params(uri.query(), &NAMES)?;
        let granularity = match p.get("granularity").map(String::as_str) {
            None | Some("hour") => Granularity::Hour,
            Some("day") => Granularity::Day,
            Some(other) => {
                return Err(ApiError::bad_parameter(
                    "granularity",
                    format!("{other:?} is not one of hour, day"),
                ));
            }
        };
        // Defaults: the last 48 hours to the end of this hour, or the last
        // 30 days to the end of today.
        let (span, unit) = match granularity {
            Granularity::Hour => (Duration::hours(48), Duration::hours(1)),
            Granularity::Day => (Duration::days(30), Duration::days(1)),
        };
        let end = now.duration_trunc(unit).expect("truncates") + unit;
        let to = match p.get("to") {
            Some(v) => typed_time("to", v)?,
            None => rfc3339(end),
        };
        let from = match p.get("from") {
            Some(v) => typed_time("from", v)?,
            None => rfc3339(
                DateTime::parse_from_rfc3339(&to)
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or(end)
                    - span,
            ),
        };
        Ok(Self {
            filter: CostFilter {
                from,
                to,
                granularity: Some(granularity),
                by: Some(p.get("by").cloned().unwrap_or_else(|| "account".into())),
            },
        })
    }

    fn granularity(&self) -> Granularity {
        self.filter.granularity.unwrap_or(Granularity::Hour)
    }

    fn by(&self) -> &str {
        self.filter.by.as_deref().unwrap_or("account")
    }

    /// The api's query of these parameters (what `/v1/cost` takes).
    fn api_query(&self) -> String {
        layout::query(&[
            ("by", self.by()),
            ("from", &self.filter.from),
            ("granularity", self.granularity().as_str()),
            ("to", &self.filter.to),
        ])
    }
}

pub(super) async fn page(
    session: ConsoleSession,
    State(state): State<ApiState>,
    uri: Uri,
) -> PageResult {
    let form = CostForm::parse(&uri, Utc::now())?;
    let series = crate::routes::cost::series_query(&form.filter)?;
    let data = state.data();
    let tenant = &session.principal.tenant;
    let (points, cut) = gather(MAX_POINTS, |p| data.cost_series(tenant, &series, p)).await?;
    let hourly = form.granularity() == Granularity::Hour;
    let unit = if hourly {
        Duration::hours(1)
    } else {
        Duration::days(1)
    };
    let n = ((series.last - series.first).num_seconds() / unit.num_seconds() + 1) as usize;
    let periods: Vec<DateTime<Utc>> = (0..n).map(|i| series.first + unit * i as i32).collect();
    let total: f64 = points.iter().filter_map(|p| p.cost_usd).sum();
    let missing_points = points.iter().filter(|p| p.price_missing > 0).count();
    let partial_points = points.iter().filter(|p| p.price_partial > 0).count();
    let csv = href(&format!("/cost.csv?{}", form.api_query()));
    let body = html! {
        (form_markup(&form))
        p #cost-total {
            "Total: " strong data-usd=(total) { (usd(total)) }
            " over " (points.len()) " points"
            @if missing_points > 0 {
                " — " (layout::price_missing("resources whose price is unknown are not in the sums"))
                " in " (missing_points) " points (their unpriced resources are not in the sums)"
            }
            @if partial_points > 0 {
                " — " (layout::price_partial("components without a price (a volume's IOPS or throughput, say)"))
                " resources in " (partial_points) " points (only their priced components are in the sums)"
            }
        }
        @if cut {
            p.error { "Only the first " (MAX_POINTS) " points are shown; narrow the window or download the CSV for all." }
        }
        (chart(&points, &periods, hourly, form.by()))
        p { a #csv href=(csv) download { "Download this table as CSV" } " (the api's " code { "/v1/cost?format=csv" } " for the same parameters)" }
        (table(&points, hourly, form.by() == "resource"))
    };
    Ok(layout::page(&session, Section::Cost, "Cost", body).into_response())
}

/// `GET /cost.csv`: the api's CSV of `/v1/cost` for the page's
/// parameters, produced by the api's handler itself.
pub(super) async fn csv(
    session: ConsoleSession,
    State(state): State<ApiState>,
    uri: Uri,
) -> Result<Response, PageError> {
    let form = CostForm::parse(&uri, Utc::now())?;
    let canonical = form.api_query();
    let query = ListQuery {
        filter: form.filter,
        limit: DEFAULT_LIMIT,
        cursor: None,
        format: Format::Csv,
        canonical,
    };
    let mut response = crate::routes::cost::series(session.principal, State(state), query).await?;
    response.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"kopter-cost.csv\""),
    );
    Ok(response)
}

fn form_markup(form: &CostForm) -> Markup {
    let g = form.granularity();
    let by = form.by();
    html! {
        form.filters method="get" action=(href("/cost")) {
            label { "From (UTC)" input name="from" value=(form.filter.from) placeholder="2026-11-26T00:00:00Z"; }
            label { "To (UTC, exclusive)" input name="to" value=(form.filter.to) placeholder="2026-11-28T00:00:00Z"; }
            label { "Granularity"
                select name="granularity" {
                    option value="hour" selected[g == Granularity::Hour] { "hour" }
                    option value="day" selected[g == Granularity::Day] { "day" }
                }
            }
            label { "Group by (account, region, family, tag:Key, resource)"
                input name="by" value=(by) list="by-options";
            }
            datalist #by-options {
                option value="account" {} option value="region" {} option value="family" {} option value="resource" {}
            }
            button type="submit" { "Show" }
        }
    }
}

/// Stacked bars: one series per group, one bar per period.
fn chart(points: &[CostPoint], periods: &[DateTime<Utc>], hourly: bool, by: &str) -> Markup {
    let index: BTreeMap<String, usize> = periods
        .iter()
        .enumerate()
        .map(|(i, t)| (rfc3339(*t), i))
        .collect();
    let mut groups: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut missing = vec![false; periods.len()];
    for p in points {
        let Some(&i) = index.get(&p.period) else {
            continue;
        };
        groups
            .entry(p.group.as_str())
            .or_insert_with(|| vec![0.0; periods.len()])[i] += p.cost_usd.unwrap_or(0.0);
        missing[i] |= p.price_missing > 0;
    }
    let labels: Vec<String> = periods
        .iter()
        .map(|t| {
            if hourly {
                t.format("%m-%d %H:00").to_string()
            } else {
                t.format("%Y-%m-%d").to_string()
            }
        })
        .collect();
    let title = format!(
        "Cost per {} (UTC), stacked by {by}; the table below has the same numbers",
        if hourly { "hour" } else { "day" }
    );
    StackedBars {
        id: "chart-cost",
        title: &title,
        labels: &labels,
        series: groups
            .into_iter()
            .map(|(name, values)| Series {
                name: name.to_owned(),
                values,
            })
            .collect(),
        price_missing: &missing,
    }
    .render()
}

fn table(points: &[CostPoint], hourly: bool, by_resource: bool) -> Markup {
    html! {
        div.table-wrap { table #cost-table {
            caption { "Cost per " (if hourly { "hour" } else { "day" }) " and group" }
            thead { tr {
                th scope="col" { "Period (UTC)" }
                th scope="col" { "Group" }
                @if by_resource { th scope="col" { "Account" } }
                th.num scope="col" { "Cost" }
                th.num scope="col" { "At reserved rates" }
                th.num scope="col" { "Price missing" }
                th.num scope="col" { "Partly priced" }
                th.num scope="col" { "Resources" }
            } }
            tbody {
                @if points.is_empty() { tr { td colspan="8" { "No cost recorded in this window." } } }
                @for p in points {
                    tr {
                        td { (period(&p.period, hourly)) }
                        td { @if by_resource { a href=(href(&format!("/resources/{}", p.group))) { (p.group) } } @else { (p.group) } }
                        @if by_resource { td { (p.account.as_deref().unwrap_or("")) } }
                        td.num data-usd=[p.cost_usd] { (cost(p.cost_usd, p.price_missing_reason.as_deref())) }
                        td.num { (cost(p.reserved_usd, p.price_missing_reason.as_deref())) }
                        td.num {
                            @if p.price_missing > 0 { (layout::price_missing("resources whose price is unknown")) " " (p.price_missing) }
                            @else { "0" }
                        }
                        td.num {
                            @if p.price_partial > 0 {
                                (layout::price_partial(p.price_missing_part.as_deref().unwrap_or("components without a price")))
                                " " (p.price_partial)
                            } @else { "0" }
                            @if let Some(note) = &p.note { " " small.note { (note) } }
                        }
                        td.num { (p.resources) }
                    }
                }
            }
        } }
    }
}
