//! The notification feed (`/v1/notifications`: all, or unread only), a
//! screenful at a time, and mark-read: a POST form with the session's
//! CSRF token (refused 403 without it), then back to the feed.

use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Redirect};
use maud::html;

use super::overview::{console_record, severity};
use super::{Cursors, form, one_screen, params};
use crate::ApiState;
use crate::console::layout::{self, PageError, PageResult, Section, csrf_field, href, utc};
use crate::console::session::{CSRF_FIELD, ConsoleSession};
use crate::data::audit::NotificationFilter;
use crate::error::ApiError;
use crate::routes::audit::record_id;

const SCREEN: u32 = 50;
const MAX_CALLS: usize = 4;

pub(super) async fn page(
    session: ConsoleSession,
    State(state): State<ApiState>,
    uri: Uri,
) -> PageResult {
    let p = params(uri.query(), &["unread", "cursor"])?;
    let unread = match p.get("unread").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad_parameter(
                "unread",
                format!("{other:?} is not true or false"),
            )
            .into());
        }
    };
    let filters = if unread { "unread=true" } else { "" };
    let cursors = Cursors {
        state: &state,
        session: &session,
        page: "/console/notifications",
        filters,
    };
    let after = cursors.open(p.get("cursor"))?;
    let data = state.data();
    let tenant = &session.principal.tenant;
    let filter = NotificationFilter { unread };
    let (items, next) = one_screen(after, SCREEN, MAX_CALLS, |page| {
        data.notifications(tenant, &filter, page)
    })
    .await?;
    let next_link = next.map(|k| {
        let c = cursors.seal(&k);
        href(&format!(
            "/notifications?{}",
            layout::query(&[("unread", if unread { "true" } else { "" }), ("cursor", &c)])
        ))
    });
    let body = html! {
        form.filters method="get" action=(href("/notifications")) {
            label { "Show"
                select name="unread" {
                    option value="false" selected[!unread] { "all" }
                    option value="true" selected[unread] { "unread only" }
                }
            }
            button type="submit" { "Show" }
        }
        div.table-wrap { table #notifications-table {
            caption { (items.len()) " notifications on this page" }
            thead { tr {
                th scope="col" { "Time (UTC)" } th scope="col" { "Severity" } th scope="col" { "What" }
                th scope="col" { "Account" } th scope="col" { "Links" } th scope="col" { "Read" }
            } }
            tbody {
                @if items.is_empty() { tr { td colspan="6" { "No notifications." } } }
                @for n in &items {
                    tr class=[(!n.read).then_some("unread")] {
                        td { (utc(&n.time)) }
                        td { span class={"badge " (severity(n.severity))} { (severity(n.severity)) } }
                        td { strong.title { (n.title) } br; span.text { (n.text) } }
                        td { (n.account.as_deref().unwrap_or("")) }
                        td {
                            @if let Some(r) = &n.record { a href=(console_record(r)) { "audit record" } " " }
                            @if let Some(res) = &n.resource {
                                @if let Some(id) = res.rsplit('/').next() {
                                    a href=(href(&format!("/resources/{id}"))) { (id) }
                                }
                            }
                        }
                        td {
                            @if n.read {
                                "read " @if let Some(t) = &n.read_at { (utc(t)) }
                            } @else {
                                form.inline method="post" action=(href(&format!("/notifications/{}/read", n.id))) {
                                    (csrf_field(&session))
                                    button type="submit" aria-label={"Mark read: " (n.title)} { "Mark read" }
                                }
                            }
                        }
                    }
                }
            }
        } }
        nav.pager aria-label="Pages" {
            @if p.contains_key("cursor") { a href=(href(&format!("/notifications?{filters}"))) { "First page" } }
            @if let Some(n) = &next_link { a rel="next" href=(n) { "Next page" } }
        }
    };
    Ok(layout::page(&session, Section::Notifications, "Notifications", body).into_response())
}

/// `POST /notifications/{id}/read`: 403 without this session's CSRF
/// token; 404 for another tenant's or a missing id; then 303 to the feed.
pub(super) async fn mark_read(
    session: ConsoleSession,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: String,
) -> PageResult {
    let f = form(&body);
    if !session.check_csrf(f.get(CSRF_FIELD).map(String::as_str)) {
        return Err(layout::csrf_refused());
    }
    let id = record_id("id", &id)?;
    if !state
        .data()
        .mark_notification_read(&session.principal.tenant, &id)
        .await?
    {
        return Err(PageError::not_found("no such notification"));
    }
    Ok(Redirect::to(&href("/notifications")).into_response())
}
