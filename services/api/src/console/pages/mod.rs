//! The console's pages. Every handler takes a [`ConsoleSession`] first
//! (no session: a redirect to sign-in, never the page) and reads through
//! the api's data seam ([`crate::data::TenantData`]) with the session's
//! tenant only; parameters are checked by the api's own checks, so a
//! page and the JSON api answer the same numbers and the same errors.
//! See `../DESIGN.md` for what each page reads.

mod audit;
mod cost;
mod inventory;
mod notifications;
mod overview;
mod settings;

use std::collections::BTreeMap;
use std::future::Future;

use axum::Router;
use axum::routing::{get, post};
use chrono::{DateTime, NaiveDate, Utc};

use super::layout;
use super::session::ConsoleSession;
use crate::ApiState;
use crate::cursor::Scope;
use crate::data::{DataError, Page, PageKey, PageRequest};
use crate::error::ApiError;
use crate::list::MAX_LIMIT;

/// Every page route (relative to [`super::PREFIX`]).
pub fn routes() -> Router<ApiState> {
    Router::new()
        .merge(layout::routes())
        .route("/", get(overview::page))
        .route("/cost", get(cost::page))
        .route("/cost.csv", get(cost::csv))
        .route("/inventory", get(inventory::page))
        .route("/resources/{id}", get(inventory::resource))
        .route("/audit", get(audit::page))
        .route("/audit/{id}", get(audit::record))
        .route("/notifications", get(notifications::page))
        .route("/notifications/{id}/read", post(notifications::mark_read))
        .route("/settings", get(settings::page))
        .route("/settings/budget", post(settings::budget))
        .route("/settings/channels", post(settings::channels))
        .route("/settings/backup-policy", post(settings::backup_policy))
}

/// A page's query string: `allowed` names only, each at most once; empty
/// values (a form's blank fields) count as absent. Errors name the
/// parameter, like the api's.
pub(crate) fn params(
    query: Option<&str>,
    allowed: &[&str],
) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if !allowed.contains(&k.as_ref()) {
            return Err(ApiError::UnknownParameter(k.into_owned()));
        }
        if v.trim().is_empty() {
            continue;
        }
        if out.insert(k.to_string(), v.trim().to_owned()).is_some() {
            return Err(ApiError::bad_parameter(k, "is given more than once"));
        }
    }
    Ok(out)
}

/// A form body (`application/x-www-form-urlencoded`) as name → value
/// (the last value of a repeated name).
pub(crate) fn form(body: &str) -> BTreeMap<String, String> {
    form_urlencoded::parse(body.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A time a person types into a form: RFC 3339, or a date (`2026-11-26`:
/// its 00:00 UTC), or a date and time without zone (`2026-11-26T17:00`,
/// `2026-11-26 17:00`: UTC). Answers RFC 3339, the api's form.
pub(crate) fn typed_time(name: &'static str, v: &str) -> Result<String, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(crate::data::inventory::rfc3339(t.with_timezone(&Utc)));
    }
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return Ok(crate::data::inventory::rfc3339(
            d.and_hms_opt(0, 0, 0).expect("midnight").and_utc(),
        ));
    }
    for f in [
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(v, f) {
            return Ok(crate::data::inventory::rfc3339(t.and_utc()));
        }
    }
    Err(ApiError::bad_parameter(
        name,
        format!(
            "{v:?} is not a time like 2026-11-26, 2026-11-26T17:00 (UTC) or 2026-11-26T17:00:00Z"
        ),
    ))
}

/// Every item of a list, page after page, up to `max` items; the bool
/// tells whether more were left.
pub(crate) async fn gather<T, F, Fut>(max: usize, mut fetch: F) -> Result<(Vec<T>, bool), DataError>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = Result<Page<T>, DataError>>,
{
    let mut items = Vec::new();
    let mut after = None;
    loop {
        let page = fetch(PageRequest {
            after,
            limit: MAX_LIMIT,
        })
        .await?;
        items.extend(page.items);
        match page.next {
            Some(k) if items.len() < max => after = Some(k),
            Some(_) => return Ok((items, true)),
            None => return Ok((items, false)),
        }
    }
}

/// Items of a paged list for one console page: store pages from `after`
/// until `want` items or `max_calls` calls (store pages may be short or
/// empty); the key to continue from, if any.
pub(crate) async fn one_screen<T, F, Fut>(
    after: Option<PageKey>,
    want: u32,
    max_calls: usize,
    mut fetch: F,
) -> Result<(Vec<T>, Option<PageKey>), DataError>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = Result<Page<T>, DataError>>,
{
    let mut items = Vec::new();
    let mut after = after;
    for _ in 0..max_calls {
        let left = want.saturating_sub(items.len() as u32).max(1);
        let page = fetch(PageRequest { after, limit: left }).await?;
        items.extend(page.items);
        match page.next {
            Some(k) if (items.len() as u32) < want => after = Some(k),
            next => return Ok((items, next)),
        }
    }
    Ok((items, after))
}

/// The console's cursors: the api's sealed cursors, bound to the tenant,
/// the page and its filters.
pub(crate) struct Cursors<'a> {
    pub state: &'a ApiState,
    pub session: &'a ConsoleSession,
    pub page: &'static str,
    pub filters: &'a str,
}

impl Cursors<'_> {
    fn scope(&self) -> Scope<'_> {
        Scope {
            tenant: &self.session.principal.tenant,
            endpoint: self.page,
            query: self.filters,
        }
    }

    pub fn open(&self, cursor: Option<&String>) -> Result<Option<PageKey>, ApiError> {
        cursor
            .map(|c| self.state.cursors().open(self.scope(), c))
            .transpose()
    }

    pub fn seal(&self, key: &PageKey) -> String {
        self.state.cursors().seal(self.scope(), key)
    }
}
