//! What every console response and request goes through, whatever page
//! it is for, so a page added later is covered without doing anything:
//!
//! - [`headers`]: a strict Content-Security-Policy (no script at all,
//!   styles and images from the api only, forms to the api and the
//!   issuer's logout only, never framed), `nosniff`, no referrer, and
//!   `Cache-Control: no-store` on everything but static files — on every
//!   response under `/console` (404s included) and on the dev issuer's
//!   sign-in page.
//! - [`csrf_guard`]: every console request that is not `GET`/`HEAD`/
//!   `OPTIONS` must carry the session's CSRF token in its form
//!   ([`CSRF_FIELD`]); anything else is 403 before routing to a handler.
//!
//! Both are layers of the whole app (see `crate::router`), not of the
//! nested console router, because a nested router's layers miss its
//! fallback (unknown console paths).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};

use super::PREFIX;
use super::session::{CSRF_FIELD, SESSION_COOKIE, cookie_value, csrf_token_for};
use crate::ApiState;
use crate::error::ApiError;

/// Static files under this path keep their own `Cache-Control`.
const STATIC_PREFIX: &str = "/console/static/";

/// The dev issuer's sign-in page (HTML, so it gets the same headers).
const DEV_ISSUER_PAGES: &str = "/dev-issuer/authorize";

/// Whether `path` is the console's.
pub fn is_console(path: &str) -> bool {
    path == PREFIX
        || path
            .strip_prefix(PREFIX)
            .is_some_and(|r| r.starts_with('/'))
}

/// The Content-Security-Policy of console pages; `form_origins` are the
/// origins besides the api's own a form may lead to (the issuer's logout,
/// reached by a redirect after `POST /console/sign-out`: `form-action`
/// covers redirects after a submission).
pub fn content_security_policy(form_origins: &[String]) -> String {
    let mut form_action = String::from("'self'");
    for o in form_origins {
        form_action.push(' ');
        form_action.push_str(o);
    }
    format!(
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    )
}

/// Middleware: the security headers (see the module doc).
pub async fn headers(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if !is_console(&path) && !path.starts_with(DEV_ISSUER_PAGES) {
        return next.run(req).await;
    }
    let mut resp = next.run(req).await;
    let origins = state
        .console()
        .map(|c| c.form_action_origins())
        .unwrap_or_default();
    let csp = content_security_policy(&origins);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(&csp).expect("origins are ASCII URLs"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Console URLs name resources and carry codes on the callback.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !path.starts_with(STATIC_PREFIX) || !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// Middleware: refuses (403) a console request with a body-carrying
/// method unless its `application/x-www-form-urlencoded` body has
/// [`CSRF_FIELD`] equal to the session's CSRF token (constant-time). The
/// body is read once (at most `body::MAX_BODY_BYTES`) and handed on
/// unchanged.
pub async fn csrf_guard(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    if !is_console(req.uri().path())
        || matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
    {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, crate::body::MAX_BODY_BYTES).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            message_page(
                "Form too large",
                "The form is larger than the console accepts.",
                None,
            ),
        )
            .into_response();
    };
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    let submitted = is_form
        .then(|| {
            form_urlencoded::parse(&bytes)
                .find(|(k, _)| k == CSRF_FIELD)
                .map(|(_, v)| v.into_owned())
        })
        .flatten();
    let expected = cookie_value(&parts.headers, SESSION_COOKIE).map(|t| csrf_token_for(&state, &t));
    let ok = match (&expected, &submitted) {
        (Some(e), Some(s)) => {
            aws_lc_rs::constant_time::verify_slices_are_equal(e.as_bytes(), s.as_bytes()).is_ok()
        }
        _ => false,
    };
    if !ok {
        let reason = match (expected.is_some(), submitted.is_some()) {
            (false, _) => "no session",
            (true, false) => "no CSRF token in the form",
            (true, true) => "wrong CSRF token",
        };
        tracing::warn!(path = %parts.uri.path(), method = %parts.method, reason, "console form refused (CSRF)");
        crate::metrics::api()
            .auth_failures
            .with_label_values(&["console_csrf"])
            .inc();
        return (
            StatusCode::FORBIDDEN,
            message_page(
                "Form refused",
                "This form did not come from your current console session (it may have expired). Reload the page and try again.",
                Some((PREFIX, "Back to the console")),
            ),
        )
            .into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// An HTML document: `title` and `body`, no script, no inline style.
pub fn html_page(title: &str, body: maud::Markup) -> Html<String> {
    Html(
        maud::html! {
            (maud::DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " — Kopter" }
                }
                body { main { (body) } }
            }
        }
        .into_string(),
    )
}

/// A page with a heading, a sentence and maybe one link `(href, text)`.
pub fn message_page(title: &str, text: &str, link: Option<(&str, &str)>) -> Html<String> {
    html_page(
        title,
        maud::html! {
            h1 { (title) }
            p { (text) }
            @if let Some((href, label)) = link {
                p { a href=(href) { (label) } }
            }
        },
    )
}

/// An [`ApiError`] as an HTML page with its status and headers
/// (`Retry-After` of a 429); internal errors say nothing more.
pub fn error_page(error: &ApiError) -> Response {
    let status = error.status();
    let text = if status.is_server_error() {
        "Something went wrong on our side; please try again.".to_owned()
    } else {
        error.to_string()
    };
    let mut resp = (
        status,
        message_page(status.canonical_reason().unwrap_or("Error"), &text, None),
    )
        .into_response();
    if let ApiError::RateLimited { retry_after } = error {
        let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_paths() {
        assert!(is_console("/console"));
        assert!(is_console("/console/cost"));
        assert!(!is_console("/consoles"));
        assert!(!is_console("/v1/cost"));
    }

    #[test]
    fn the_policy_allows_no_script_and_only_named_form_targets() {
        let csp = content_security_policy(&["https://auth.example.com".into()]);
        assert_eq!(
            csp,
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self' https://auth.example.com; frame-ancestors 'none'; base-uri 'none'"
        );
        assert!(!csp.contains("script-src"));
    }
}
