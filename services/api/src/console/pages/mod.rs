//! The console's pages.

use axum::Router;
use axum::response::Html;
use axum::routing::get;

use super::session::ConsoleSession;
use crate::ApiState;

/// Every page route (relative to [`super::PREFIX`]).
pub fn routes() -> Router<ApiState> {
    Router::new().route("/", get(overview))
}

async fn overview(session: ConsoleSession) -> Html<String> {
    Html(
        maud::html! {
            h1 { "Kopter" }
            p { "Signed in to tenant " (session.principal.tenant.as_str()) }
        }
        .into_string(),
    )
}
