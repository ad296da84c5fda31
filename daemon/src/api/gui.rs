//! The web GUI: three static files built into the binary (no build step,
//! nothing fetched at run time), served at `/`. It talks to the API like
//! any client, with a session cookie.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("gui/index.html");
const APP: &str = include_str!("gui/app.js");
const STYLE: &str = include_str!("gui/style.css");

/// Headers every GUI file gets: not to be framed or sniffed, and nothing
/// but our own files run or load (an injected name stays text anyway).
const SAFE: [(header::HeaderName, &str); 4] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    ),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::CACHE_CONTROL, "no-cache"),
];

fn file(kind: &'static str, body: &'static str) -> impl IntoResponse {
    (SAFE, [(header::CONTENT_TYPE, kind)], body)
}

/// The GUI's routes.
pub(super) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { file("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/app.js",
            get(|| async { file("text/javascript; charset=utf-8", APP) }),
        )
        .route(
            "/style.css",
            get(|| async { file("text/css; charset=utf-8", STYLE) }),
        )
}
