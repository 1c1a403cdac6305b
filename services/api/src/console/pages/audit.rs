//! The audit log: a search form with the api's filters (`/v1/audit/aws`),
//! a screenful of records at a time with sealed cursors, finding badges;
//! and a record's page with its raw CloudTrail JSON.

use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::IntoResponse;
use chrono::Utc;
use maud::html;

use super::{Cursors, one_screen, params, typed_time};
use crate::ApiState;
use crate::console::layout::{self, PageError, PageResult, Section, href, utc};
use crate::console::session::ConsoleSession;
use crate::list::decode_filters;
use crate::routes::audit::{AuditParams, audit_filter, record_id};

const SCREEN: u32 = 50;
/// Day partitions a screen may walk through (two per store page).
const MAX_CALLS: usize = 8;
const FILTERS: [&str; 7] = [
    "since",
    "until",
    "principal",
    "event",
    "source",
    "resource",
    "account",
];
const NAMES: [&str; 8] = [
    "since",
    "until",
    "principal",
    "event",
    "source",
    "resource",
    "account",
    "cursor",
];

pub(super) async fn page(
    session: ConsoleSession,
    State(state): State<ApiState>,
    uri: Uri,
) -> PageResult {
    let mut p = params(uri.query(), &NAMES)?;
    for t in ["since", "until"] {
        if let Some(v) = p.get(t) {
            let normal = typed_time(t, v)?;
            p.insert(t.to_owned(), normal);
        }
    }
    let pairs: Vec<(&str, &str)> = FILTERS
        .iter()
        .filter_map(|k| p.get(*k).map(|v| (*k, v.as_str())))
        .collect();
    let filters = layout::query(&pairs);
    let api_params: AuditParams = decode_filters(&filters)?;
    let filter = audit_filter(&api_params, Utc::now())?;
    let cursors = Cursors {
        state: &state,
        session: &session,
        page: "/console/audit",
        filters: &filters,
    };
    let after = cursors.open(p.get("cursor"))?;
    let data = state.data();
    let tenant = &session.principal.tenant;
    let (events, next) = one_screen(after, SCREEN, MAX_CALLS, |page| {
        data.audit_events(tenant, &filter, page)
    })
    .await?;
    let next_link = next.map(|k| {
        let mut with = pairs.clone();
        let c = cursors.seal(&k);
        with.push(("cursor", &c));
        href(&format!("/audit?{}", layout::query(&with)))
    });
    let field = |name: &str| p.get(name).cloned();
    let body = html! {
        form.filters method="get" action=(href("/audit")) {
            label { "Since (UTC)" input name="since" value=[field("since")] placeholder="2026-11-26T00:00:00Z"; }
            label { "Until (UTC)" input name="until" value=[field("until")] placeholder="now"; }
            label { "Principal ARN" input name="principal" value=[field("principal")] placeholder="arn:aws:iam::111111111111:user/alice"; }
            label { "Event" input name="event" value=[field("event")] placeholder="RunInstances"; }
            label { "Source" input name="source" value=[field("source")] placeholder="ec2.amazonaws.com"; }
            label { "Resource" input name="resource" value=[field("resource")] placeholder="i-0abc…"; }
            label { "Account" input name="account" value=[field("account")] inputmode="numeric"; }
            button type="submit" { "Search" }
            a href=(href("/audit")) { "Clear" }
        }
        p.note { "Records from " (utc(&crate::data::audit::rfc3339(filter.since))) " to " (utc(&crate::data::audit::rfc3339(filter.until))) ", newest first." }
        div.table-wrap { table #audit-table {
            caption { (events.len()) " records on this page" }
            thead { tr {
                th scope="col" { "Time (UTC)" } th scope="col" { "Account" } th scope="col" { "Region" }
                th scope="col" { "Event" } th scope="col" { "Principal" } th scope="col" { "Error" }
                th scope="col" { "Findings" } th scope="col" { "Record" }
            } }
            tbody {
                @if events.is_empty() { tr { td colspan="8" { "No records on this page." } } }
                @for e in &events {
                    tr {
                        td { (utc(&e.time)) }
                        td { (e.account) }
                        td { (e.region) }
                        td.event { (e.source.trim_end_matches(".amazonaws.com")) ":" (e.event) }
                        td { (e.principal.as_deref().unwrap_or("")) }
                        td { (e.error_code.as_deref().unwrap_or("")) }
                        td.findings {
                            @for f in e.findings.split(',').filter(|f| !f.is_empty()) {
                                span.badge.finding { (f) }
                            }
                        }
                        td { a href=(href(&format!("/audit/{}", e.id))) { "view" } }
                    }
                }
            }
        } }
        nav.pager aria-label="Pages" {
            @if p.contains_key("cursor") { a href=(href(&format!("/audit?{}", filters))) { "First page" } }
            @if let Some(n) = &next_link { a rel="next" href=(n) { "Next page" } }
        }
    };
    Ok(layout::page(&session, Section::Audit, "Audit log", body).into_response())
}

pub(super) async fn record(
    session: ConsoleSession,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> PageResult {
    let id = record_id("id", &id)?;
    let Some(r) = state
        .data()
        .audit_record(&session.principal.tenant, &id)
        .await?
    else {
        return Err(PageError::not_found("no such audit record"));
    };
    let raw = serde_json::to_string_pretty(&r.raw).unwrap_or_else(|_| r.raw.to_string());
    let title = format!(
        "{} {}",
        r.source.trim_end_matches(".amazonaws.com"),
        r.event
    );
    let body = html! {
        div.table-wrap { table #record-facts {
            tbody {
                tr { th scope="row" { "Time" } td { (utc(&r.time)) } }
                tr { th scope="row" { "Account / region" } td { (r.account) " / " (r.region) } }
                tr { th scope="row" { "Principal" } td { (r.principal.as_deref().unwrap_or("")) " " (r.principal_type.as_deref().unwrap_or("")) } }
                tr { th scope="row" { "Source IP" } td { (r.source_ip.as_deref().unwrap_or("")) } }
                tr { th scope="row" { "User agent" } td { (r.user_agent.as_deref().unwrap_or("")) } }
                tr { th scope="row" { "Error" } td { (r.error_code.as_deref().unwrap_or("")) } }
                tr { th scope="row" { "Resources" } td { @for res in &r.resources { code { (res) } " " } } }
                tr { th scope="row" { "Findings" } td { @for f in &r.findings { span.badge.finding { (f) } } } }
                tr { th scope="row" { "Event id" } td { code { (r.event_id) } } }
            }
        } }
        h2 { "Raw CloudTrail record" @if r.raw_truncated { " (cut at 300 KiB)" } }
        pre.raw #raw { code { (raw) } }
        p { a href=(href("/audit")) { "Back to the audit log" } }
    };
    Ok(layout::page(&session, Section::Audit, &title, body).into_response())
}
