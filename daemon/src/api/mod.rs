//! The local control API: HTTP, authenticated by the API key
//! (`X-API-Key`) or a GUI session cookie with its CSRF token (see
//! [`auth`]). It serves the CLI, the web GUI (at `/`), the event stream
//! and `/metrics`; its OpenAPI document (`/rest/openapi.json`) is made from
//! the same annotations the routes are, so the two cannot drift apart.
//! Nothing imports this module; the daemon hands it the handles it reads.

pub mod auth;
mod conflicts;
mod devices;
pub mod dto;
mod folders;
mod gui;
mod login;
mod metrics;
mod status;
mod stream;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use tokio::sync::{mpsc, oneshot};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::model::folder::FolderHandle;
use crate::peer::Peers;

pub use auth::KEY_HEADER;

/// What the API reads and acts on.
pub struct ApiState {
    /// This device's ID.
    pub device_id: proto::DeviceId,
    /// The key clients must send.
    pub api_key: String,
    /// Whether the API listens on loopback only (then the Host header
    /// must name loopback too).
    pub loopback: bool,
    /// GUI sessions.
    pub sessions: auth::Sessions,
    /// The daemon's home (for the index size).
    pub home: crate::home::Home,
    /// The URLs our listeners are bound to (ports resolved).
    pub listening: Vec<String>,
    /// Running folders by ID (changed by reloads).
    pub folders: Arc<RwLock<HashMap<String, FolderHandle>>>,
    /// Sessions, pending devices, and the configuration in force.
    pub peers: Arc<Peers>,
    /// Asks the daemon to re-read and apply its configuration file.
    pub reload: mpsc::Sender<Reload>,
    /// The relay client.
    pub relays: Arc<crate::net::relay::listen::Relays>,
    /// The router's port mappings.
    pub nat: Arc<crate::net::nat::Nat>,
    /// The STUN client (none without a QUIC listener).
    pub stun: Option<Arc<crate::net::stun::Stun>>,
    /// Where dialled connections' addresses came from.
    pub sources: Arc<crate::connect::Sources>,
    /// The global discovery client.
    pub global: Arc<crate::discovery::global::Global>,
    /// LAN discovery.
    pub lan: Arc<crate::discovery::lan::Lan>,
}

/// A request to reload the configuration; the reply carries notes for the
/// user or why the new configuration was not applied.
pub struct Reload {
    /// A change the daemon makes to the saved configuration first (and
    /// saves); none: the file is re-read as it is.
    pub edit: Option<ConfigEdit>,
    /// Where the outcome goes.
    pub reply: oneshot::Sender<Result<Vec<String>, String>>,
}

/// A change to the configuration, refused with a reason.
pub type ConfigEdit =
    Box<dyn FnOnce(&mut crate::config::Config) -> Result<(), crate::config::ConfigError> + Send>;

impl ApiState {
    fn folder(&self, id: &str) -> Option<FolderHandle> {
        self.folders
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }
}

/// The route's `{id}` parameter (routes may have others, such as `{n}`).
async fn path_id(
    parts: &mut axum::http::request::Parts,
    s: &Arc<ApiState>,
) -> Result<String, Response> {
    use axum::extract::FromRequestParts;
    let params = axum::extract::RawPathParams::from_request_parts(parts, s)
        .await
        .map_err(IntoResponse::into_response)?;
    Ok(params
        .iter()
        .find(|(k, _)| *k == "id")
        .map(|(_, v)| v.to_string())
        .unwrap_or_default())
}

/// A configured folder, named by the route's `{id}`: extracting it
/// answers 404 for a folder that is not configured, so handlers start
/// from the handle.
pub(super) struct Known(pub FolderHandle);

impl axum::extract::FromRequestParts<Arc<ApiState>> for Known {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        s: &Arc<ApiState>,
    ) -> Result<Self, Response> {
        let id = path_id(parts, s).await?;
        s.folder(&id).map(Known).ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                format!("folder {id:?} is not configured"),
            )
        })
    }
}

/// A device ID given by a client, or the 400 answer saying why it is not one.
fn parse_device(id: &str) -> Result<proto::DeviceId, Box<Response>> {
    id.parse()
        .map_err(|e| bad_request(format!("device ID {id:?}: {e}")))
}

/// The device ID in the route's `{id}`: extracting it answers 400 for
/// what is not a device ID.
pub(super) struct DeviceParam(pub proto::DeviceId);

impl axum::extract::FromRequestParts<Arc<ApiState>> for DeviceParam {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        s: &Arc<ApiState>,
    ) -> Result<Self, Response> {
        let id = path_id(parts, s).await?;
        parse_device(&id).map(DeviceParam).map_err(|r| *r)
    }
}

/// The answer to a request a paused folder cannot take.
fn paused(id: &str) -> Response {
    error(
        StatusCode::CONFLICT,
        format!("folder {id:?} is paused (`ferrosync folder resume {id}`)"),
    )
}

/// The OpenAPI document's fixed parts; the paths come from the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "ferrosync local API",
        description = "Control a ferrosync daemon: status, folders, devices, events. \
                       Authenticate with the `X-API-Key` header (the key is `api.key` in \
                       the config), or log in at `/rest/login` and send the session's \
                       `X-CSRF-Token` on every request that changes something."
    ),
    components(schemas(dto::ApiError))
)]
struct Doc;

/// Declares the API key scheme and requires it everywhere but on the
/// public paths, and documents the error answers every operation can
/// give: 400 (a malformed parameter or body), 401 and 403 (credentials),
/// and for a body 415 and 422 (not JSON, or not the shape asked for).
struct KeyAuth;

impl utoipa::Modify for KeyAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        use utoipa::openapi::{Ref, ResponseBuilder};
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new(KEY_HEADER))),
        );
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        doc.security = Some(vec![
            SecurityRequirement::new("api_key", Vec::<String>::new()),
            SecurityRequirement::new("bearer", Vec::<String>::new()),
        ]);
        let err = |what: &str| {
            ResponseBuilder::new()
                .description(what)
                .content(
                    "application/json",
                    utoipa::openapi::ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ApiError")))
                        .build(),
                )
                .build()
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            let open = public(path);
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let r = &mut op.responses.responses;
                let mut add = |code: &str, what: &str| {
                    r.entry(code.to_string())
                        .or_insert_with(|| err(what).into());
                };
                add("400", "A malformed parameter or body");
                if open {
                    op.security = Some(vec![SecurityRequirement::default()]);
                } else {
                    add("401", "No or wrong credentials");
                    add(
                        "403",
                        "A cookie session without its CSRF token, or a foreign Host",
                    );
                }
                if op.request_body.is_some() {
                    add("415", "The body is not JSON");
                    add("422", "The body is not of the shape asked for");
                }
            }
        }
    }
}

/// Gives the framework's own error answers (a rejected path, query or
/// body: plain text) the API's JSON error shape.
async fn json_errors(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let plain = res
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !(res.status().is_client_error() && plain) {
        return res;
    }
    let status = res.status();
    let body = axum::body::to_bytes(res.into_body(), 64 << 10)
        .await
        .unwrap_or_default();
    error(status, String::from_utf8_lossy(&body).into_owned())
}

/// Paths anyone may fetch: the GUI's files, the login calls and the API
/// document.
fn public(path: &str) -> bool {
    matches!(
        path,
        "/" | "/app.js" | "/style.css" | "/rest/auth" | "/rest/login" | "/rest/openapi.json"
    )
}

/// The routes and the document describing them.
fn routes() -> (Router<Arc<ApiState>>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(Doc::openapi())
        .routes(routes!(status::status))
        .routes(routes!(status::wait_scan))
        .routes(routes!(folders::list, folders::add))
        .routes(routes!(folders::patch, folders::remove))
        .routes(routes!(folders::share))
        .routes(routes!(folders::rescan))
        .routes(routes!(folders::pause))
        .routes(routes!(folders::resume))
        .routes(routes!(folders::accept_deletes))
        .routes(routes!(folders::override_changes))
        .routes(routes!(folders::revert_changes))
        .routes(routes!(folders::versions))
        .routes(routes!(folders::restore))
        .routes(routes!(folders::entries))
        .routes(routes!(folders::need))
        .routes(routes!(folders::get_ignores, folders::put_ignores))
        .routes(routes!(conflicts::list))
        .routes(routes!(conflicts::resolve))
        .routes(routes!(folders::doctor))
        .routes(routes!(folders::verify))
        .routes(routes!(devices::list, devices::add))
        .routes(routes!(devices::remove))
        .routes(routes!(devices::id))
        .routes(routes!(devices::qr))
        .routes(routes!(devices::pending))
        .routes(routes!(devices::accept_device))
        .routes(routes!(devices::ignore_device))
        .routes(routes!(devices::dismiss_device))
        .routes(routes!(devices::accept_folder))
        .routes(routes!(devices::ignore_folder))
        .routes(routes!(devices::dismiss_folder))
        .routes(routes!(devices::get_config))
        .routes(routes!(devices::set_config))
        .routes(routes!(reload))
        .routes(routes!(stream::events))
        .routes(routes!(stream::changes))
        .routes(routes!(login::auth_state))
        .routes(routes!(login::login))
        .routes(routes!(login::logout))
        .routes(routes!(login::set_password))
        .routes(routes!(metrics::metrics))
        .split_for_parts();
    // After the split, so that it sees every route's operations.
    utoipa::Modify::modify(&KeyAuth, &mut doc);
    (router, doc)
}

/// The OpenAPI document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().1
}

/// Builds the router.
pub fn router(state: Arc<ApiState>) -> Router {
    let (api, doc) = routes();
    let doc = Arc::new(doc);
    api.route(
        "/rest/openapi.json",
        axum::routing::get(move || {
            let doc = doc.clone();
            async move { Json(doc.as_ref().clone()) }
        }),
    )
    .merge(gui::routes())
    .layer(middleware::from_fn_with_state(state.clone(), guard))
    .layer(middleware::from_fn(json_errors))
    .with_state(state)
}

/// Refuses what may not pass: a foreign Host on a loopback API, and any
/// request without the key or a session (see [`auth::Sessions::check`]).
async fn guard(State(s): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    if s.loopback && !auth::host_allowed(req.headers()) {
        return error(
            StatusCode::FORBIDDEN,
            "the Host header must name this machine (loopback) for an API on loopback",
        );
    }
    let path = req.uri().path();
    let open = public(path) || (path == "/metrics" && s.peers.config().api.metrics_without_auth);
    if !open {
        if let Err(r) = s.sessions.check(&s.api_key, req.method(), req.headers()) {
            let (code, msg) = r.answer();
            return error(code, msg);
        }
    }
    next.run(req).await
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ApiState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(dto::ApiError { error: msg.into() })).into_response()
}

/// A 400 answer, boxed for the `Err` side of a parse.
fn bad_request(msg: impl Into<String>) -> Box<Response> {
    Box::new(error(StatusCode::BAD_REQUEST, msg))
}

/// Runs blocking work off the async threads; its error is a 500.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e)),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// Re-reads the configuration file and applies it.
#[utoipa::path(post, path = "/rest/config/reload", tag = "config",
    responses((status = 200, body = dto::Reloaded), (status = 400, body = dto::ApiError)))]
async fn reload(State(s): State<Arc<ApiState>>) -> Response {
    apply_config(&s, None).await
}

/// Has the daemon make `edit` to its configuration (if any) and apply it.
async fn apply_config(s: &ApiState, edit: Option<ConfigEdit>) -> Response {
    let (reply, rx) = oneshot::channel();
    if s.reload.send(Reload { edit, reply }).await.is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon is shutting down",
        );
    }
    match rx.await {
        Ok(Ok(notes)) => {
            s.peers.events.emit("ConfigSaved", serde_json::json!({}));
            Json(dto::Reloaded { notes }).into_response()
        }
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, e),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon is shutting down",
        ),
    }
}

/// Applies an edit of the configuration made by `f`.
async fn edit_config(
    s: &ApiState,
    f: impl FnOnce(&mut crate::config::Config) -> Result<(), crate::config::ConfigError>
        + Send
        + 'static,
) -> Response {
    apply_config(s, Some(Box::new(f))).await
}
