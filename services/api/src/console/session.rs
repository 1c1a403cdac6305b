//! The console's session: who is signed in, and the CSRF token of their
//! forms.
//!
//! The session cookie ([`SESSION_COOKIE`]) holds the OIDC ID token the
//! sign-in obtained, nothing else: every request verifies it again with the
//! api's [`Verifier`](crate::auth::Verifier) (issuer, signature, `aud`,
//! `exp`), so the cookie expires with the token, a forged or altered cookie
//! is simply "not signed in", and there is no server-side session store
//! that several api tasks would have to share. The cookie is `HttpOnly`,
//! `SameSite=Lax`, `Path=/console`, and `Secure` outside local mode.
//!
//! CSRF: each form carries [`ConsoleSession::csrf_token`], an HMAC (the
//! api's server key, purpose `console-csrf`) of the session's token, so it
//! is bound to this session, needs no storage and changes at every
//! sign-in. [`ConsoleSession::check_csrf`] compares in constant time, and
//! `security::csrf_guard` refuses every console `POST` whose form lacks
//! the right token before any handler runs.
//!
//! Each signed-in request takes one cell of the tenant's rate limit, as an
//! api request does (over it: 429).

use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};

use crate::ApiState;
use crate::auth::Principal;
use crate::error::ApiError;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "kopter_session";

/// Name of the hidden form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf_token";

/// The signed-in user of a console request. Extracting it from a request
/// without a valid session cookie answers a redirect to the sign-in page
/// (with `next` = the requested path), never the page.
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    /// The verified user; every data call of the request uses its tenant.
    pub principal: Principal,
    csrf: String,
}

impl ConsoleSession {
    /// The CSRF token to put in every form of this session (hidden field
    /// [`CSRF_FIELD`]).
    pub fn csrf_token(&self) -> &str {
        &self.csrf
    }

    /// Whether `submitted` is this session's CSRF token (constant-time).
    pub fn check_csrf(&self, submitted: Option<&str>) -> bool {
        match submitted {
            Some(s) => aws_lc_rs::constant_time::verify_slices_are_equal(
                s.as_bytes(),
                self.csrf.as_bytes(),
            )
            .is_ok(),
            None => false,
        }
    }
}

/// The CSRF token of the session whose cookie holds `token`.
pub fn csrf_token_for(state: &ApiState, token: &str) -> String {
    state.cursors().tag("console-csrf", token.as_bytes())
}

/// The session cookie's token in `parts`, if any.
pub fn session_token(parts: &Parts) -> Option<String> {
    cookie_value(&parts.headers, SESSION_COOKIE)
}

/// The value of the (first non-empty) cookie `name` in `headers`.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .filter(|c| c.name() == name && !c.value().is_empty())
        .map(|c| c.value().to_owned())
        .next()
}

/// The rejection of [`ConsoleSession`]: to the sign-in page.
#[derive(Debug)]
pub struct SignInRequired {
    next: String,
}

/// Why a console request has no [`ConsoleSession`]: not signed in (to the
/// sign-in page), or the tenant is over its rate limit (429).
#[derive(Debug)]
pub enum SessionRejection {
    SignIn(SignInRequired),
    RateLimited(ApiError),
    /// A signed-in user whose tenant does not exist.
    Forbidden(ApiError),
}

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        match self {
            Self::SignIn(s) => s.into_response(),
            Self::RateLimited(e) | Self::Forbidden(e) => super::security::error_page(&e),
        }
    }
}

impl IntoResponse for SignInRequired {
    fn into_response(self) -> Response {
        let next: String = form_urlencoded::byte_serialize(self.next.as_bytes()).collect();
        Redirect::to(&format!("{}/sign-in?next={next}", super::PREFIX)).into_response()
    }
}

impl FromRequestParts<ApiState> for ConsoleSession {
    type Rejection = SessionRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        // Inside the nested console router `parts.uri` lacks the prefix;
        // `next` must be the path the browser asked for.
        let reject = || {
            let uri = parts
                .extensions
                .get::<OriginalUri>()
                .map_or(&parts.uri, |o| &o.0);
            SessionRejection::SignIn(SignInRequired {
                next: uri
                    .path_and_query()
                    .map_or_else(|| super::PREFIX.to_owned(), |p| p.as_str().to_owned()),
            })
        };
        if let Some(s) = parts.extensions.get::<ConsoleSession>() {
            return Ok(s.clone());
        }
        let Some(token) = session_token(parts) else {
            return Err(reject());
        };
        let principal = match state.verifier().verify(&token).await {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %e, "console session cookie refused");
                return Err(reject());
            }
        };
        crate::auth::require_tenant(state, &principal.tenant)
            .await
            .map_err(SessionRejection::Forbidden)?;
        state
            .limiter()
            .check(&principal.tenant)
            .map_err(SessionRejection::RateLimited)?;
        let session = ConsoleSession {
            principal,
            csrf: csrf_token_for(state, &token),
        };
        parts.extensions.insert(session.clone());
        Ok(session)
    }
}
