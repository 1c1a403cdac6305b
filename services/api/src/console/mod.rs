//! The tenant web console (issue 16): server-rendered HTML pages on the
//! same data seam as the JSON api ([`crate::data::TenantData`]), served by
//! the api process under `/console`.
//!
//! - [`session`]: the signed-in user ([`session::ConsoleSession`]), read
//!   from the session cookie on every request, and the CSRF token of every
//!   form.
//! - [`signin`]: sign-in (OIDC authorization code flow with PKCE), the
//!   callback and sign-out.
//! - [`security`]: security headers on every console response, and the
//!   CSRF check of every console form post.
//! - [`pages`]: the pages themselves.

use axum::Router;

use crate::ApiState;

pub mod chart;
pub mod layout;
pub mod pages;
pub mod security;
pub mod session;
pub mod signin;

/// Path prefix of every console route.
pub const PREFIX: &str = "/console";

/// The console's routes, to be nested under [`PREFIX`].
pub fn routes() -> Router<ApiState> {
    Router::new().merge(signin::routes()).merge(pages::routes())
}
