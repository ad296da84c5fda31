//! The status listener: `GET /status` (strelaysrv's JSON fields) and
//! `GET /metrics` (Prometheus text), plain HTTP.

use axum::routing::get;
use tokio::net::TcpListener;

use crate::server::StatusSource;

/// Serves until the task is aborted.
pub async fn serve(listener: TcpListener, source: StatusSource) {
    let (s1, s2) = (source.clone(), source);
    let router = axum::Router::new()
        .route(
            "/status",
            get(move || {
                let s = s1.clone();
                async move { axum::Json(s.json()) }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let s = s2.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        s.metrics(),
                    )
                }
            }),
        );
    if let Err(e) = axum::serve(listener, router).await {
        tracing::warn!("status listener: {e}");
    }
}
