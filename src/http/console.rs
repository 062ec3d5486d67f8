//! The web console: one self-contained page that lists a project's instances and their tasks
//! (with progress) and deletes finished ones, through the same API with an `X-Auth-Token`.

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse, Redirect};
use axum::routing::get;

use super::AppState;

const PAGE: &str = include_str!("console/index.html");

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(|| async { Redirect::to("/console") })).route("/console", get(page))
}

async fn page() -> impl IntoResponse {
    // The page talks only to this origin and holds the token; it must not be framed elsewhere.
    (
        [
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        Html(PAGE),
    )
}
