//! The console's page chrome and the formatting every page shares.
//!
//! One HTML shell ([`page`]): language, viewport, title, the stylesheet
//! (served here under a content-hash query, so it can be cached for a
//! year and still change with a release), a skip link, the header with
//! the navigation, the tenant and role and the sign-out form, and a
//! footer. Money, times and unpriced costs are formatted here only, so
//! every page writes them alike: `1.0837 USD`, `2026-11-26 17:00 UTC`,
//! and a visible "price missing" mark, never `0`.

use std::sync::OnceLock;

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use super::PREFIX;
use super::session::{CSRF_FIELD, ConsoleSession};
use crate::ApiState;
use crate::auth::Role;
use crate::data::DataError;
use crate::error::ApiError;

/// The stylesheet, compiled in.
const STYLESHEET: &str = include_str!("static/console.css");

/// Path of the stylesheet route (relative to [`PREFIX`]).
pub const STYLESHEET_PATH: &str = "/static/console.css";

/// A top-level section of the console: one entry of the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Cost,
    Inventory,
    Audit,
    Notifications,
    /// Shown to admins only.
    Settings,
}

impl Section {
    const ALL: [Section; 6] = [
        Section::Overview,
        Section::Cost,
        Section::Inventory,
        Section::Audit,
        Section::Notifications,
        Section::Settings,
    ];

    fn label(self) -> &'static str {
        match self {
            Section::Overview => "Overview",
            Section::Cost => "Cost",
            Section::Inventory => "Inventory",
            Section::Audit => "Audit log",
            Section::Notifications => "Notifications",
            Section::Settings => "Settings",
        }
    }

    /// The section's path under [`PREFIX`].
    pub fn path(self) -> &'static str {
        match self {
            Section::Overview => "",
            Section::Cost => "/cost",
            Section::Inventory => "/inventory",
            Section::Audit => "/audit",
            Section::Notifications => "/notifications",
            Section::Settings => "/settings",
        }
    }
}

/// The stylesheet's route: `GET /static/console.css`, cacheable for a
/// year (pages link it with its content hash as `?v=`).
pub fn routes() -> Router<ApiState> {
    Router::new().route(STYLESHEET_PATH, get(stylesheet))
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// The stylesheet's URL with its content hash (first 12 hex digits of
/// its SHA-256), so a new release's CSS is a new URL.
pub fn stylesheet_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, STYLESHEET.as_bytes());
        let hex: String = d.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect();
        format!("{PREFIX}{STYLESHEET_PATH}?v={hex}")
    })
}

/// A URL inside the console (`href("/cost")` → `/console/cost`).
pub fn href(path: &str) -> String {
    format!("{PREFIX}{path}")
}

/// A whole page for the signed-in `session`: `title` (also the `<h1>`),
/// with `section` marked current in the navigation.
pub fn page(session: &ConsoleSession, section: Section, title: &str, body: Markup) -> Html<String> {
    let p = &session.principal;
    let admin = p.role == Role::Admin;
    let role = if admin { "admin" } else { "viewer" };
    let chrome = html! {
        header.top {
            a.brand href=(href("")) { "Kopter" }
            nav aria-label="Console" {
                ul {
                    @for s in Section::ALL {
                        @if s != Section::Settings || admin {
                            li {
                                @if s == section {
                                    a href=(href(s.path())) aria-current="page" { (s.label()) }
                                } @else {
                                    a href=(href(s.path())) { (s.label()) }
                                }
                            }
                        }
                    }
                }
            }
            div.who {
                span.tenant { "Tenant " strong { (p.tenant.as_str()) } }
                " "
                span.role { "(" (role) ")" }
                form.signout method="post" action=(href("/sign-out")) {
                    input type="hidden" name=(CSRF_FIELD) value=(session.csrf_token());
                    button type="submit" { "Sign out" }
                }
            }
        }
    };
    Html(shell(title, chrome, body).into_string())
}

fn shell(title: &str, chrome: Markup, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Kopter" }
                link rel="stylesheet" href=(stylesheet_url());
            }
            body {
                a.skip href="#main" { "Skip to content" }
                (chrome)
                main #main {
                    h1 { (title) }
                    (body)
                }
                footer.bottom {
                    p { "Times are UTC. Money is USD. " a href="/docs" { "API documentation" } }
                }
            }
        }
    }
}

/// Why a page could not be shown: rendered as an HTML page with the
/// status (400 naming the parameter, 403, 404, 503; internal errors are
/// logged and shown without detail, like the api's).
#[derive(Debug)]
pub struct PageError(pub ApiError);

impl PageError {
    pub fn forbidden(why: &str) -> Self {
        Self(ApiError::Forbidden(why.to_owned()))
    }
    pub fn not_found(what: &str) -> Self {
        Self(ApiError::NotFound(what.to_owned()))
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl From<DataError> for PageError {
    fn from(e: DataError) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        if let ApiError::Internal(e) = &self.0 {
            tracing::error!(error = %e, "console page failed");
        }
        let problem = self.0.problem();
        let title = status.canonical_reason().unwrap_or("Error");
        let body = html! {
            p.error { (problem.detail) }
            p { a href=(href("")) { "Back to the overview" } }
        };
        let chrome = html! { header.top { a.brand href=(href("")) { "Kopter" } } };
        (status, Html(shell(title, chrome, body).into_string())).into_response()
    }
}

/// Result of a page handler.
pub type PageResult = Result<Response, PageError>;

/// `usd` as `1.0837 USD`: at least two decimals, and every further
/// decimal the value has up to eight (sub-cent prices are exact).
pub fn usd(usd: f64) -> String {
    format!("{} USD", amount(usd))
}

/// The number part of [`usd`].
pub fn amount(usd: f64) -> String {
    let mut s = format!("{usd:.8}");
    while s.ends_with('0') && s.len() - s.find('.').unwrap_or(s.len()) > 3 {
        s.pop();
    }
    if s == "-0.00" { "0.00".to_owned() } else { s }
}

/// A cost that may be unknown: the amount, or a visible "price missing"
/// mark with the reason (never `0`).
pub fn cost(usd: Option<f64>, reason: Option<&str>) -> Markup {
    match usd {
        Some(v) => html! { span.money { (self::usd(v)) } },
        None => price_missing(reason.unwrap_or("price missing")),
    }
}

/// The "price missing" mark.
pub fn price_missing(reason: &str) -> Markup {
    html! { span.missing title=(reason) { "price missing" } }
}

/// The mark for an amount that covers only the priced components of a
/// resource (a gp3 volume whose throughput has no price, say): the
/// amount is a lower bound, `part` names what is left out.
pub fn price_partial(part: &str) -> Markup {
    html! { span.partial title=(format!("not in the amount: {part}")) { "partly priced" } }
}

/// An RFC 3339 time as `2026-11-26 17:00:05 UTC` in a `<time>` element
/// (the text as given when it is not RFC 3339).
pub fn utc(t: &str) -> Markup {
    match DateTime::parse_from_rfc3339(t) {
        Ok(d) => {
            let d = d.with_timezone(&Utc);
            html! { time datetime=(t) { (d.format("%Y-%m-%d %H:%M:%S UTC")) } }
        }
        Err(_) => html! { (t) },
    }
}

/// A period start as `2026-11-26 17:00 UTC` (hours) or `2026-11-26`
/// (days, UTC days).
pub fn period(t: &str, hourly: bool) -> String {
    match DateTime::parse_from_rfc3339(t) {
        Ok(d) if hourly => d
            .with_timezone(&Utc)
            .format("%Y-%m-%d %H:%M UTC")
            .to_string(),
        Ok(d) => d.with_timezone(&Utc).format("%Y-%m-%d").to_string(),
        Err(_) => t.to_owned(),
    }
}

/// A hidden CSRF field for a form of `session`.
pub fn csrf_field(session: &ConsoleSession) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(session.csrf_token()); }
}

/// 403 for a form posted without this session's CSRF token.
pub fn csrf_refused() -> PageError {
    PageError::forbidden(
        "the form's CSRF token is missing or not this session's: reload the page and submit again",
    )
}

/// A query string of `pairs` (values encoded), without the leading `?`.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            s.append_pair(k, v);
        }
    }
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_keeps_two_decimals_and_every_sub_cent_digit() {
        assert_eq!(usd(1.5), "1.50 USD");
        assert_eq!(usd(0.0867), "0.0867 USD");
        assert_eq!(usd(0.00001), "0.00001 USD");
        assert_eq!(usd(0.0), "0.00 USD");
        assert_eq!(usd(12.0), "12.00 USD");
        assert_eq!(usd(0.1 + 0.2), "0.30 USD");
    }

    #[test]
    fn times_name_the_zone() {
        let m = utc("2026-11-26T17:00:05+02:00").into_string();
        assert!(m.contains("2026-11-26 15:00:05 UTC"), "{m}");
        assert_eq!(period("2026-11-26T17:00:00Z", true), "2026-11-26 17:00 UTC");
        assert_eq!(period("2026-11-26T00:00:00Z", false), "2026-11-26");
    }
}
