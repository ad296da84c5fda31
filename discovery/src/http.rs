//! The discovery API (Syncthing's global discovery v3) as an axum router:
//! `POST` announces the addresses of the device whose TLS client
//! certificate made the connection, `GET ?device=ID` looks one up, and
//! `/ping` answers 204. Any path works for both, as in stdiscosrv (`/v2/`
//! is only a convention).
//!
//! The device ID comes from the connection's certificate alone, never from
//! the body or a header: stdiscosrv also took certificates from proxy
//! headers on direct TLS connections, so anyone could announce for any
//! device (protocol facts §11).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Extension, Router};
use http_body_util::BodyExt;
use proto::DeviceId;
use serde::Deserialize;

use crate::fixup;
use crate::limit::Limiter;
use crate::metrics::{Announce, Lookup, Metrics};
use crate::store::{Record, Store};

/// Largest announcement body read: 64 addresses of 512 bytes fit easily.
pub const MAX_BODY: usize = 64 << 10;

/// Who made a connection: its address and, if it sent a certificate, the
/// device ID that certificate hashes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The TCP peer.
    pub addr: SocketAddr,
    /// The device of its client certificate.
    pub device: Option<DeviceId>,
}

/// What every request shares.
pub struct App {
    /// Announcements.
    pub store: Store,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The per-IP limit, if any.
    pub limiter: Option<Limiter>,
    /// The reverse proxy that speaks for clients (`--behind-proxy`).
    pub proxy: Option<std::net::IpAddr>,
}

/// The API. Each request must carry a [`Peer`] extension (the server adds
/// it per connection).
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/ping", any(ping))
        .fallback(root)
        .with_state(app)
}

async fn ping() -> StatusCode {
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct LookupQuery {
    device: Option<String>,
}

#[derive(Deserialize)]
struct Announcement {
    #[serde(default)]
    addresses: Vec<String>,
}

/// The addresses an announcement body from `remote` gives, fixed up
/// (unspecified hosts and ports filled in from `remote`); `None` when the
/// body is not an announcement or leaves no usable address.
pub fn announced_addresses(body: &[u8], remote: std::net::SocketAddr) -> Option<Vec<String>> {
    let ann = serde_json::from_slice::<Announcement>(body).ok()?;
    let (ip, port) = fixup::remote_parts(remote);
    let addresses = fixup::fix_up(&ann.addresses, ip, port);
    (!addresses.is_empty()).then_some(addresses)
}

async fn root(
    State(app): State<Arc<App>>,
    Extension(peer): Extension<Peer>,
    method: Method,
    headers: axum::http::HeaderMap,
    query: Result<Query<LookupQuery>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Response {
    let started = Instant::now();
    let peer = match app.proxy {
        None => peer,
        Some(proxy) => match crate::proxy::client(proxy, peer, &headers) {
            Ok(p) => p,
            Err(crate::proxy::Refused::NotTheProxy(ip)) => {
                tracing::debug!(%ip, "a request not through the proxy");
                return StatusCode::FORBIDDEN.into_response();
            }
            Err(crate::proxy::Refused::NoClientAddress) => {
                return (StatusCode::BAD_REQUEST, "no X-Forwarded-For from the proxy")
                    .into_response();
            }
        },
    };
    let response = answer(&app, peer, method, query.ok().map(|q| q.0), body).await;
    app.metrics.observe(started.elapsed());
    response
}

async fn answer(
    app: &App,
    peer: Peer,
    method: Method,
    query: Option<LookupQuery>,
    body: Body,
) -> Response {
    if let Some(l) = &app.limiter {
        if let Err(wait) = l.check(peer.addr.ip(), Instant::now()) {
            app.metrics.rate_limited();
            return with_retry(StatusCode::TOO_MANY_REQUESTS, wait.as_secs().max(1));
        }
    }
    match method {
        Method::GET => lookup(app, query).await,
        Method::POST => announce(app, peer, body).await,
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, POST")],
        )
            .into_response(),
    }
}

async fn lookup(app: &App, query: Option<LookupQuery>) -> Response {
    let device = query
        .and_then(|q| q.device)
        .and_then(|d| d.parse::<DeviceId>().ok());
    let Some(device) = device else {
        app.metrics.lookup(Lookup::BadRequest);
        return with_retry(StatusCode::BAD_REQUEST, retry_after_error());
    };
    match app.store.answer(&device).await {
        Ok(Some(body)) => {
            app.metrics.lookup(Lookup::Success);
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }
        Ok(None) => {
            app.metrics.lookup(Lookup::NotFound);
            // Syncthing's clients wait this long before asking again.
            with_retry(StatusCode::NOT_FOUND, 60 + rand::random_range(0..60))
        }
        Err(e) => {
            tracing::warn!("lookup: {e}");
            app.metrics.lookup(Lookup::InternalError);
            with_retry(StatusCode::INTERNAL_SERVER_ERROR, retry_after_error())
        }
    }
}

async fn announce(app: &App, peer: Peer, body: Body) -> Response {
    let Some(device) = peer.device else {
        app.metrics.announce(Announce::NoCertificate);
        return with_retry(StatusCode::FORBIDDEN, retry_after_error());
    };
    let bytes = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            app.metrics.too_large();
            return with_retry(StatusCode::PAYLOAD_TOO_LARGE, retry_after_error());
        }
        Err(_) => {
            app.metrics.announce(Announce::BadRequest);
            return with_retry(StatusCode::BAD_REQUEST, retry_after_error());
        }
    };
    let Some(addresses) = announced_addresses(&bytes, peer.addr) else {
        app.metrics.announce(Announce::BadRequest);
        return with_retry(StatusCode::BAD_REQUEST, retry_after_error());
    };
    tracing::debug!(%device, ?addresses, "announce");
    match app.store.put(&device, &Record::now(addresses)).await {
        Ok(()) => {
            app.metrics.announce(Announce::Success);
            let secs = 3300 + rand::random_range(0..300u64);
            (
                StatusCode::NO_CONTENT,
                [("reannounce-after", HeaderValue::from(secs))],
            )
                .into_response()
        }
        Err(e) => {
            tracing::warn!(%device, "announce: {e}");
            app.metrics.announce(Announce::InternalError);
            with_retry(StatusCode::INTERNAL_SERVER_ERROR, retry_after_error())
        }
    }
}

/// How long a client should wait after an error (stdiscosrv's 25–30 min).
fn retry_after_error() -> u64 {
    1500 + rand::random_range(0..300)
}

fn with_retry(status: StatusCode, secs: u64) -> Response {
    (status, [(header::RETRY_AFTER, HeaderValue::from(secs))]).into_response()
}
