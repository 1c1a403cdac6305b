//! Sign-in, callback and sign-out of the console.

use axum::Router;

use crate::ApiState;

/// `GET /sign-in`, `GET /callback`, `POST /sign-out` (relative to
/// [`super::PREFIX`]).
pub fn routes() -> Router<ApiState> {
    Router::new()
}
