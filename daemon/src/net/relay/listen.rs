//! The permanent side of the relay client: for each entry of the live
//! config's `relays` (a `relay://` URI, or a `dynamic+https://` pool whose
//! best relay is picked by [`pool`](super::pool)), one connection that
//! joins the relay, answers its pings, and joins every session it is
//! invited to. The URIs of the relays joined right now are what discovery
//! announces for us.
//!
//! ```text
//! supervisor (follows config.relays)
//!   └─ one task per entry: [pool: fetch, probe] → join → Ping/Pong, invitations → accept channel
//!                          └─ on loss: 1 s doubling to 60 s, then again (a pool is fetched again)
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::relay::{code, Message};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::{AbortHandle, JoinSet};

use super::{protocol_connection, relay_error, wire, Ctx, Invitation, RelayUri, ANSWER_TIMEOUT};
use crate::config::live::Live;
use crate::net::https::Https;
use crate::net::{Connection, NetError, HANDSHAKE_TIMEOUT};

/// First wait after a relay connection failed or ended.
const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A join that lasts this long resets the backoff.
const STABLE: Duration = Duration::from_secs(30);
/// Sessions being joined at once from invitations; more are refused (a
/// flood of invitations must not become a flood of sockets).
const MAX_JOINING: usize = 16;

/// One configured relay entry, for status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayState {
    /// The entry as configured (`relay://…` or `dynamic+https://…`).
    pub entry: String,
    /// The relay joined, or last tried.
    pub relay: Option<String>,
    /// Whether we are joined to it now.
    pub joined: bool,
    /// Its measured connect time (pool entries), in milliseconds.
    pub latency_ms: Option<u64>,
    /// What went wrong last.
    pub error: Option<String>,
}

/// The running relay client.
pub struct Relays {
    state: Mutex<BTreeMap<String, RelayState>>,
    joined: watch::Sender<Vec<String>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Relays {
    /// The state of every configured entry.
    pub fn status(&self) -> Vec<RelayState> {
        self.lock().values().cloned().collect()
    }

    /// The URIs of the relays joined now (what peers may dial us by).
    pub fn joined(&self) -> watch::Receiver<Vec<String>> {
        self.joined.subscribe()
    }

    /// Leaves every relay.
    pub fn stop(&self) {
        if let Some(t) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.abort();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, RelayState>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, entry: &str, f: impl FnOnce(&mut RelayState)) {
        f(self
            .lock()
            .entry(entry.to_string())
            .or_insert_with(|| RelayState {
                entry: entry.to_string(),
                ..RelayState::default()
            }));
        self.update_joined();
    }

    fn forget(&self, entry: &str) {
        self.lock().remove(entry);
        self.update_joined();
    }

    fn update_joined(&self) {
        let joined: Vec<String> = self
            .lock()
            .values()
            .filter(|s| s.joined)
            .filter_map(|s| s.relay.clone())
            .collect();
        crate::net::publish(&self.joined, joined);
    }
}

impl Drop for Relays {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What every entry's task shares.
struct Shared {
    relays: Arc<Relays>,
    ctx: Arc<Ctx>,
    https: Https,
    accept: mpsc::Sender<Connection>,
    joining: Arc<Semaphore>,
}

/// Starts the client; incoming relayed connections go to `accept`.
pub(in crate::net) fn spawn(
    ctx: Arc<Ctx>,
    https: Https,
    config: Live,
    accept: mpsc::Sender<Connection>,
) -> Arc<Relays> {
    let relays = Arc::new(Relays {
        state: Mutex::new(BTreeMap::new()),
        joined: watch::channel(Vec::new()).0,
        task: Mutex::new(None),
    });
    let shared = Arc::new(Shared {
        relays: relays.clone(),
        ctx,
        https,
        accept,
        joining: Arc::new(Semaphore::new(MAX_JOINING)),
    });
    let task = tokio::spawn(supervise(shared, config));
    *relays.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    relays
}

/// Keeps one task per configured entry.
async fn supervise(shared: Arc<Shared>, config: Live) {
    let mut rx = config.subscribe();
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut running: HashMap<String, AbortHandle> = HashMap::new();
    loop {
        let wanted: Vec<String> = rx.borrow_and_update().relays.clone();
        running.retain(|entry, task| {
            let keep = wanted.contains(entry);
            if !keep {
                task.abort();
                shared.relays.forget(entry);
            }
            keep
        });
        for entry in wanted {
            if let std::collections::hash_map::Entry::Vacant(v) = running.entry(entry.clone()) {
                shared.relays.update(&entry, |_| {});
                v.insert(tasks.spawn(keep(shared.clone(), entry)));
            }
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}

/// Keeps `entry` joined, for as long as it is configured.
async fn keep(shared: Arc<Shared>, entry: String) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let choices = if entry.starts_with("dynamic+") {
            super::pool::choose(&entry, &shared.https).await
        } else {
            RelayUri::parse(&entry).map(|u| vec![(u, None)])
        };
        match choices {
            Err(e) => {
                tracing::debug!(%entry, "relay: {e}");
                shared
                    .relays
                    .update(&entry, |s| s.error = Some(e.to_string()));
            }
            Ok(choices) if choices.is_empty() => {
                shared.relays.update(&entry, |s| {
                    s.error = Some("the pool lists no relay that answers".into())
                });
            }
            Ok(choices) => {
                for (uri, latency) in choices {
                    shared.relays.update(&entry, |s| {
                        s.relay = Some(uri.url.clone());
                        s.latency_ms = latency.map(|l| l.as_millis() as u64);
                    });
                    let started = Instant::now();
                    let e = run(&shared, &entry, &uri).await;
                    tracing::debug!(relay = %uri.url, "relay connection: {e}");
                    shared.relays.update(&entry, |s| {
                        s.joined = false;
                        s.error = Some(e.to_string());
                    });
                    if started.elapsed() >= STABLE {
                        // It worked for a while: start over (a pool is
                        // asked again) rather than fall to a worse relay.
                        backoff = MIN_BACKOFF;
                        break;
                    }
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One permanent connection to `uri`, until it fails (the error says how).
async fn run(shared: &Shared, entry: &str, uri: &RelayUri) -> NetError {
    let (mut stream, relay_addr) = match protocol_connection(uri, &shared.ctx.tls).await {
        Ok(c) => c,
        Err(e) => return e,
    };
    let io = |e| NetError::Io {
        context: format!("relay {}", uri.authority()),
        source: e,
    };
    let join = tokio::time::timeout(ANSWER_TIMEOUT, async {
        wire::write(
            &mut stream,
            &Message::JoinRelayRequest {
                token: uri.token.clone(),
            },
        )
        .await?;
        wire::read(&mut stream).await
    })
    .await;
    match join {
        Err(_) => {
            return NetError::Timeout {
                what: format!("joining relay {}", uri.authority()),
                after: ANSWER_TIMEOUT,
            }
        }
        Ok(Err(e)) => return io(e),
        Ok(Ok(Message::Response {
            code: code::SUCCESS,
            ..
        })) => {}
        Ok(Ok(Message::Response { code, message })) => {
            return relay_error(uri, format!("refused the join: {message} (code {code})"))
        }
        Ok(Ok(Message::RelayFull)) => return relay_error(uri, "the relay is full"),
        Ok(Ok(other)) => {
            return relay_error(uri, format!("answered the join with {}", other.name()))
        }
    }
    tracing::info!(relay = %uri.url, "joined relay");
    shared.relays.update(entry, |s| {
        s.joined = true;
        s.error = None;
    });
    loop {
        let m = match tokio::time::timeout(uri.network_timeout, wire::read(&mut stream)).await {
            Err(_) => {
                return NetError::Timeout {
                    what: format!("a message from relay {}", uri.authority()),
                    after: uri.network_timeout,
                }
            }
            Ok(Err(e)) => return io(e),
            Ok(Ok(m)) => m,
        };
        match m {
            Message::Ping => {
                if let Err(e) = wire::write(&mut stream, &Message::Pong).await {
                    return io(e);
                }
            }
            m @ Message::SessionInvitation { .. } => match Invitation::new(m, relay_addr) {
                Some(inv) => accept(shared, inv, uri.clone()),
                None => tracing::debug!(relay = %uri.url, "unreadable invitation"),
            },
            other => tracing::debug!(relay = %uri.url, "relay sent {}", other.name()),
        }
    }
}

/// Joins an invited session in a task of its own and hands the
/// connection to the accept channel (who it is, and whether it is
/// welcome, is the peer layer's business, as for any incoming connection).
fn accept(shared: &Shared, inv: Invitation, uri: RelayUri) {
    let Ok(permit) = shared.joining.clone().try_acquire_owned() else {
        tracing::debug!(relay = %uri.url, "too many relayed sessions being joined; invitation dropped");
        return;
    };
    let (ctx, tx) = (shared.ctx.clone(), shared.accept.clone());
    tokio::spawn(async move {
        let _permit = permit;
        let limit = HANDSHAKE_TIMEOUT * 2;
        match tokio::time::timeout(limit, inv.join(&uri, &ctx.tls, ctx.my_id)).await {
            Ok(Ok(conn)) => {
                tracing::debug!(relay = %uri.url, device = %conn.device_id, "relayed session accepted");
                let _ = tx.send(conn).await;
            }
            Ok(Err(e)) => tracing::debug!(relay = %uri.url, "relayed session refused: {e}"),
            Err(_) => {
                tracing::debug!(relay = %uri.url, "relayed session not set up within {limit:?}")
            }
        }
    });
}
