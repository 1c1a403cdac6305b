//! The inventory page (the api's `/v1/inventory` with its filters, a
//! screenful at a time with sealed cursors, sorted on the server by the
//! column asked for) and the resource page (details, tags, state history
//! as a timeline, the last 48 hours of cost as a chart and a table).

use std::cmp::Ordering;

use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::IntoResponse;
use chrono::{Duration, DurationRound, Utc};
use maud::{Markup, html};

use super::{Cursors, gather, one_screen, params};
use crate::ApiState;
use crate::console::chart::{Series, StackedBars};
use crate::console::layout::{self, PageError, PageResult, Section, cost, href, period, utc};
use crate::console::session::ConsoleSession;
use crate::data::cost::HourWindow;
use crate::data::inventory::{InventoryFilter, InventoryItem, KindParam};
use crate::error::ApiError;

/// Resources a screen aims for (store pages are per account and may be
/// short, so a screen reads up to [`MAX_CALLS`] of them).
const SCREEN: u32 = 50;
const MAX_CALLS: usize = 10;
const FILTERS: [&str; 5] = ["account", "region", "kind", "state", "tag"];
const NAMES: [&str; 8] = [
    "account", "region", "kind", "state", "tag", "sort", "dir", "cursor",
];

/// Sortable columns: (parameter value, heading).
const COLUMNS: [(&str, &str); 10] = [
    ("name", "Name"),
    ("id", "Resource"),
    ("account", "Account"),
    ("region", "Region"),
    ("kind", "Kind"),
    ("state", "State"),
    ("type", "Type"),
    ("platform", "Platform"),
    ("market", "Market"),
    ("cost", "Cost, last hour"),
];

pub(super) async fn page(
    session: ConsoleSession,
    State(state): State<ApiState>,
    uri: Uri,
) -> PageResult {
    let p = params(uri.query(), &NAMES)?;
    let kind = match p.get("kind").map(String::as_str) {
        None => None,
        Some("instance") => Some(KindParam::Instance),
        Some("volume") => Some(KindParam::Volume),
        Some("snapshot") => Some(KindParam::Snapshot),
        Some(other) => {
            return Err(ApiError::bad_parameter(
                "kind",
                format!("{other:?} is not one of instance, volume, snapshot"),
            )
            .into());
        }
    };
    let filter = InventoryFilter {
        account: p.get("account").cloned(),
        region: p.get("region").cloned(),
        kind,
        state: p.get("state").cloned(),
        tag: p.get("tag").cloned(),
    };
    let selection = crate::routes::inventory::selection(&filter)?;
    let sort = p.get("sort").map_or("account", String::as_str);
    if !COLUMNS.iter().any(|(c, _)| *c == sort) {
        return Err(ApiError::bad_parameter(
            "sort",
            format!(
                "{sort:?} is not a column ({})",
                COLUMNS.map(|c| c.0).join(", ")
            ),
        )
        .into());
    }
    let desc = match p.get("dir").map(String::as_str) {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(
                ApiError::bad_parameter("dir", format!("{other:?} is not asc or desc")).into(),
            );
        }
    };
    let filter_pairs: Vec<(&str, &str)> = FILTERS
        .iter()
        .filter_map(|k| p.get(*k).map(|v| (*k, v.as_str())))
        .collect();
    let filters = layout::query(&filter_pairs);
    let cursors = Cursors {
        state: &state,
        session: &session,
        page: "/console/inventory",
        filters: &filters,
    };
    let after = cursors.open(p.get("cursor"))?;
    let last_hour = crate::routes::inventory::last_hour(Utc::now());
    let data = state.data();
    let tenant = &session.principal.tenant;
    let (mut items, next) = one_screen(after, SCREEN, MAX_CALLS, |page| {
        data.inventory(tenant, &selection, last_hour, page)
    })
    .await?;
    sort_items(&mut items, sort, desc);
    let here = |extra: &[(&str, &str)]| {
        let mut pairs = filter_pairs.clone();
        pairs.extend_from_slice(extra);
        href(&format!("/inventory?{}", layout::query(&pairs)))
    };
    let cursor = p.get("cursor").map_or("", String::as_str);
    let next_link = next.map(|k| {
        let c = cursors.seal(&k);
        here(&[
            ("sort", sort),
            ("dir", if desc { "desc" } else { "asc" }),
            ("cursor", &c),
        ])
    });
    let kind_value = p.get("kind").map_or("", String::as_str);
    let body = html! {
        form.filters method="get" action=(href("/inventory")) {
            label { "Account" input name="account" value=[p.get("account")] inputmode="numeric" placeholder="111111111111"; }
            label { "Region" input name="region" value=[p.get("region")] placeholder="eu-west-1"; }
            label { "Kind"
                select name="kind" {
                    option value="" selected[kind_value.is_empty()] { "any" }
                    @for k in ["instance", "volume", "snapshot"] {
                        option value=(k) selected[kind_value == k] { (k) }
                    }
                }
            }
            label { "State" input name="state" value=[p.get("state")] placeholder="running"; }
            label { "Tag (Key or Key=Value)" input name="tag" value=[p.get("tag")] placeholder="Name=web-1"; }
            input type="hidden" name="sort" value=(sort);
            input type="hidden" name="dir" value=(if desc { "desc" } else { "asc" });
            button type="submit" { "Filter" }
            a href=(href("/inventory")) { "Clear" }
        }
        p.note { "Costs are of the last complete hour, " (period(&crate::data::inventory::rfc3339(last_hour), true)) ". Sorting orders this page." }
        div.table-wrap { table #inventory-table {
            caption { (items.len()) " resources on this page" }
            thead { tr {
                @for (col, heading) in COLUMNS {
                    @let (dir, mark) = if col == sort { if desc { ("asc", " ▼") } else { ("desc", " ▲") } } else { ("asc", "") };
                    th scope="col" class=[(col == "cost").then_some("num")]
                        aria-sort=[(col == sort).then_some(if desc { "descending" } else { "ascending" })] {
                        a href=(here(&[("sort", col), ("dir", dir), ("cursor", cursor)])) { (heading) (mark) }
                    }
                }
            } }
            tbody {
                @if items.is_empty() { tr { td colspan="10" { "No resources on this page." } } }
                @for i in &items {
                    tr {
                        td.name { (i.name.as_deref().unwrap_or("")) }
                        td { a href=(href(&format!("/resources/{}", i.resource_id))) { (i.resource_id) } }
                        td { (i.account) }
                        td { (i.region) }
                        td { (i.kind) }
                        td { (i.state) @if i.gone { " (gone)" } }
                        td { (type_of(i)) }
                        td { (i.platform.as_deref().unwrap_or("")) }
                        td { (i.lifecycle.as_deref().unwrap_or("")) }
                        td.num data-usd=[i.last_hour_cost_usd] { (cost(i.last_hour_cost_usd, i.last_hour_cost_missing.as_deref())) }
                    }
                }
            }
        } }
        nav.pager aria-label="Pages" {
            @if !cursor.is_empty() { a href=(here(&[("sort", sort), ("dir", if desc { "desc" } else { "asc" })])) { "First page" } }
            @if let Some(n) = &next_link { a rel="next" href=(n) { "Next page" } }
        }
    };
    Ok(layout::page(&session, Section::Inventory, "Inventory", body).into_response())
}

fn type_of(i: &InventoryItem) -> String {
    i.instance_type
        .clone()
        .or_else(|| i.volume_type.clone())
        .map(|t| match i.size_gib {
            Some(g) if i.kind != "instance" => format!("{t} {g} GiB"),
            _ => t,
        })
        .or_else(|| i.size_gib.map(|g| format!("{g} GiB")))
        .unwrap_or_default()
}

fn sort_items(items: &mut [InventoryItem], by: &str, desc: bool) {
    let text = |i: &InventoryItem| -> String {
        match by {
            "name" => i.name.clone().unwrap_or_default(),
            "id" => i.resource_id.clone(),
            "region" => i.region.clone(),
            "kind" => i.kind.clone(),
            "state" => i.state.clone(),
            "type" => type_of(i),
            "platform" => i.platform.clone().unwrap_or_default(),
            "market" => i.lifecycle.clone().unwrap_or_default(),
            _ => i.account.clone(),
        }
    };
    items.sort_by(|a, b| {
        let o = if by == "cost" {
            // Unpriced sorts below every price, either direction's end.
            match (a.last_hour_cost_usd, b.last_hour_cost_usd) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                (Some(_), None) => Ordering::Greater,
                (None, Some(_)) => Ordering::Less,
                (None, None) => Ordering::Equal,
            }
        } else {
            text(a).cmp(&text(b))
        };
        let o = o.then_with(|| a.resource_id.cmp(&b.resource_id));
        if desc { o.reverse() } else { o }
    });
}

/// Hours of cost shown on a resource page.
const COST_HOURS: i64 = 48;

pub(super) async fn resource(
    session: ConsoleSession,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> PageResult {
    crate::routes::inventory::resource_id(&id)?;
    let data = state.data();
    let tenant = &session.principal.tenant;
    let Some(r) = data.resource(tenant, &id).await? else {
        return Err(PageError::not_found(&format!("no resource {id}")));
    };
    let (history, history_cut) = gather(1000, |p| async {
        Ok(data
            .resource_history(tenant, &id, p)
            .await?
            .unwrap_or_else(|| crate::data::Page {
                items: vec![],
                next: None,
            }))
    })
    .await?;
    let hour = Utc::now()
        .duration_trunc(Duration::hours(1))
        .expect("truncates");
    let window = HourWindow {
        first: hour - Duration::hours(COST_HOURS - 1),
        last: hour,
    };
    let (hours, _) = gather(usize::MAX, |p| async {
        Ok(data
            .resource_cost(tenant, &id, window, p)
            .await?
            .unwrap_or_else(|| crate::data::Page {
                items: vec![],
                next: None,
            }))
    })
    .await?;
    let title = format!("{} {}", r.kind, r.resource_id);
    let details: Vec<(String, String)> = r
        .details
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    let text = match v {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    (k.clone(), text)
                })
                .collect()
        })
        .unwrap_or_default();
    let body = html! {
        dl.cards #resource-facts {
            div.card { dt { "Name" } dd.name { (r.name.as_deref().unwrap_or("(no Name tag)")) } }
            div.card { dt { "State" } dd { (r.state) @if r.gone { " (gone: no longer returned by EC2)" } } }
            div.card { dt { "Account / region" } dd { (r.account) " / " (r.region) } }
            div.card { dt { "Seen" } dd { (utc(&r.first_seen)) " – " (utc(&r.last_seen)) } }
        }
        section.grid2 {
            div { div.table-wrap { table #tags {
                caption { "Tags" }
                thead { tr { th scope="col" { "Key" } th scope="col" { "Value" } } }
                tbody {
                    @if r.tags.is_empty() { tr { td colspan="2" { "No tags." } } }
                    @for (k, v) in &r.tags { tr { td { (k) } td { (v) } } }
                }
            } } }
            div { div.table-wrap { table #details {
                caption { "Details" }
                thead { tr { th scope="col" { "Field" } th scope="col" { "Value" } } }
                tbody { @for (k, v) in &details { tr { td { (k) } td { (v) } } } }
            } } }
        }
        section aria-labelledby="history-h" {
            h2 #history-h { "State history" }
            ol.timeline #history {
                @for h in &history {
                    li {
                        (utc(&h.at)) " — " strong { (h.change) } ": " (h.state)
                        @if let Some(t) = &h.instance_type { ", " (t) }
                        @if let Some(t) = &h.volume_type { ", " (t) }
                        @if let Some(g) = h.size_gib { ", " (g) " GiB" }
                        span.note { " (observed " (utc(&h.observed_at)) ")" }
                    }
                }
            }
            @if history_cut { p.note { "Only the first 1000 changes are shown." } }
        }
        section aria-labelledby="rcost-h" {
            h2 #rcost-h { "Cost of the last " (COST_HOURS) " hours" }
            (resource_chart(&r.resource_id, &hours, window))
            div.table-wrap { table #resource-cost {
                caption { "Cost per hour (hours without a cost row are left out)" }
                thead { tr { th scope="col" { "Hour (UTC)" } th.num scope="col" { "Usage" } th scope="col" { "Type" } th.num scope="col" { "Cost" } } }
                tbody {
                    @if hours.is_empty() { tr { td colspan="4" { "No cost recorded in these hours." } } }
                    @for h in &hours {
                        tr {
                            td { (period(&h.hour, true)) }
                            td.num { (format!("{:.4}", h.usage)) " " (h.unit) }
                            td { (h.detail) }
                            td.num data-usd=[h.cost_usd] {
                                (cost(h.cost_usd, h.price_missing.as_deref()))
                                @if let Some(part) = &h.price_missing_part { " " (layout::price_partial(part)) }
                                @if let Some(note) = &h.note { " " small.note { (note) } }
                            }
                        }
                    }
                }
            } }
            p { a href=(href(&format!("/audit?{}", layout::query(&[("resource", &r.resource_id)])))) { "Audit records of this resource" } }
        }
    };
    Ok(layout::page(&session, Section::Inventory, &title, body).into_response())
}

fn resource_chart(id: &str, hours: &[crate::data::cost::ResourceCost], w: HourWindow) -> Markup {
    let n = COST_HOURS as usize;
    let mut values = vec![0.0; n];
    let mut missing = vec![false; n];
    for h in hours {
        let Ok(t) = chrono::DateTime::parse_from_rfc3339(&h.hour) else {
            continue;
        };
        let i = (t.with_timezone(&Utc) - w.first).num_hours();
        if let Ok(i) = usize::try_from(i)
            && i < n
        {
            values[i] += h.cost_usd.unwrap_or(0.0);
            missing[i] |= h.cost_usd.is_none();
        }
    }
    let labels: Vec<String> = (0..COST_HOURS)
        .map(|i| {
            (w.first + Duration::hours(i))
                .format("%d %H:00")
                .to_string()
        })
        .collect();
    let title = format!("Cost per hour (UTC) of {id}, the last {COST_HOURS} hours");
    StackedBars {
        id: "chart-resource",
        title: &title,
        labels: &labels,
        series: vec![Series {
            name: id.to_owned(),
            values,
        }],
        price_missing: &missing,
    }
    .render()
}
