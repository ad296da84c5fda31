//! The dialler: keeps every configured device connected. It follows the
//! live config (a device added while the daemon runs is dialled at once,
//! a removed one no more), asks the [`Finder`] for candidate addresses on
//! every attempt, dials them through `net` in order, and hands the first
//! connection that authenticates to `peer`.
//!
//! ```text
//! spawn ── supervisor task (follows the live config)
//!            └─ one dial loop per configured device (JoinSet: dropped with the supervisor)
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use proto::DeviceId;
use tokio::task::{AbortHandle, JoinSet};

use crate::config::live::Live;
use crate::discovery::{Finder, Source};
use crate::net::{Connection, Net};
use crate::peer::{Link, Peers};

/// First wait between failed rounds of dials.
const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between failed rounds of dials.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A session that lasts this long is a success; one that ends at once
/// (the peer does not know us yet, say) is not, and must not make us
/// redial in a tight loop.
const STABLE: Duration = Duration::from_secs(30);

/// Where the address of each device's last outgoing connection came from.
#[derive(Default)]
pub struct Sources(std::sync::Mutex<HashMap<DeviceId, (String, Source)>>);

impl Sources {
    /// The URL and source of the last connection we dialled to `device`.
    pub fn get(&self, device: &DeviceId) -> Option<(String, Source)> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(device)
            .cloned()
    }

    fn set(&self, device: DeviceId, url: String, source: Source) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(device, (url, source));
    }
}

/// The running dialler; stops when dropped or [`Dialler::stop`]ped.
pub struct Dialler {
    task: tokio::task::JoinHandle<()>,
    /// What each outgoing connection was dialled from (for status).
    pub sources: Arc<Sources>,
}

impl Dialler {
    /// Stops every dial loop (sessions already up are not touched).
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for Dialler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts dialling every device in the live config.
pub fn spawn(net: Net, peers: Arc<Peers>, finder: Finder, config: Live) -> Dialler {
    let sources = Arc::new(Sources::default());
    Dialler {
        task: tokio::spawn(supervise(net, peers, finder, config, sources.clone())),
        sources,
    }
}

/// The peer-side form of an authenticated connection.
pub fn link(c: Connection) -> Link {
    Link {
        device_id: c.device_id,
        transport: c.transport.as_str(),
        remote_addr: c.remote_addr,
        outgoing: c.outgoing,
        reader: c.reader,
        writer: c.writer,
        keepalive: None,
        until_hello: c
            .admitted
            .map(|a| Box::new(a) as Box<dyn std::any::Any + Send>),
    }
}

/// Keeps one dial loop per configured device.
async fn supervise(
    net: Net,
    peers: Arc<Peers>,
    finder: Finder,
    config: Live,
    sources: Arc<Sources>,
) {
    let mut rx = config.subscribe();
    let mut loops: JoinSet<()> = JoinSet::new();
    let mut running: HashMap<DeviceId, AbortHandle> = HashMap::new();
    loop {
        let wanted: Vec<DeviceId> = rx
            .borrow_and_update()
            .devices
            .iter()
            .map(|d| d.id)
            .collect();
        running.retain(|id, task| {
            let keep = wanted.contains(id);
            if !keep {
                task.abort();
            }
            keep
        });
        for id in wanted {
            running.entry(id).or_insert_with(|| {
                loops.spawn(dial_loop(
                    Dial {
                        net: net.clone(),
                        peers: peers.clone(),
                        finder: finder.clone(),
                        sources: sources.clone(),
                    },
                    config.subscribe(),
                    id,
                ))
            });
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            // Reaps finished loops (aborted ones) so the set stays small.
            Some(_) = loops.join_next(), if !loops.is_empty() => {}
        }
    }
}

/// Keeps `device` connected: dials when there is no session (every
/// candidate in the finder's order, until one works), and backs off from
/// 1 s to 60 s until a session lasts. A config change starts over at once.
async fn dial_loop(
    dial: Dial,
    mut config: tokio::sync::watch::Receiver<Arc<crate::config::Config>>,
    device: DeviceId,
) {
    let peers = dial.peers.clone();
    let mut changed = peers.changed.subscribe();
    let mut found = dial.finder.changed();
    let mut backoff = MIN_BACKOFF;
    let mut up_since: Option<tokio::time::Instant> = None;
    let mut last_round: Option<tokio::time::Instant> = None;
    loop {
        changed.borrow_and_update();
        let now = tokio::time::Instant::now();
        if peers.session(&device).is_some() {
            up_since.get_or_insert(now);
        } else {
            if up_since.take().is_some_and(|t| now - t >= STABLE) {
                backoff = MIN_BACKOFF;
            }
            if last_round.is_none_or(|t| now >= t + backoff) {
                last_round = Some(now);
                dial.round(device).await;
                // Also after a connection: only one that lasts resets it.
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        let wake = last_round
            .map_or(now + backoff, |t| t + backoff)
            .max(now + Duration::from_millis(10));
        tokio::select! {
            _ = changed.changed() => {}
            r = config.changed() => {
                if r.is_err() {
                    return;
                }
                // New addresses (or a device edited): try them now.
                backoff = MIN_BACKOFF;
                last_round = None;
            }
            _ = tokio::time::sleep_until(wake) => {}
            // A source learnt new addresses: try them now.
            Ok(()) = async {
                match found.as_mut() {
                    Some(f) => f.changed().await,
                    None => std::future::pending().await,
                }
            } => {
                if peers.session(&device).is_none() {
                    last_round = None;
                }
            }
        }
    }
}

/// What every dial loop shares.
struct Dial {
    net: Net,
    peers: Arc<Peers>,
    finder: Finder,
    sources: Arc<Sources>,
}

impl Dial {
    /// Dials the candidates in order until one connects.
    async fn round(&self, device: DeviceId) {
        let candidates = self.finder.candidates(&device).await;
        for c in &candidates {
            match self.net.dial(&c.url, device).await {
                Ok(conn) => {
                    tracing::debug!(%device, url = %c.url, source = %c.source, "dialled");
                    self.sources.set(device, c.url.clone(), c.source);
                    tokio::spawn(self.peers.clone().run_link(link(conn)));
                    return;
                }
                Err(e) => {
                    tracing::debug!(%device, url = %c.url, source = %c.source, "dial failed: {e}")
                }
            }
        }
        if !candidates.is_empty() {
            self.finder.failed(&device);
        }
    }
}
