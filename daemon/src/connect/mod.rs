//! The dialler: keeps every configured device connected. It follows the
//! live config (a device added while the daemon runs is dialled at once,
//! a removed one no more), asks the [`Finder`] for candidate addresses on
//! every attempt, dials them through `net` in order, and hands the first
//! connection that authenticates to `peer`.
//!
//! Relays: a device's relay addresses are dialled alongside its direct
//! ones (after a 1 s head start for those), not after every direct
//! attempt has failed as Syncthing does, so a relayed session is up within
//! seconds. While a device is connected only through a relay its direct
//! addresses are dialled every few seconds, all at once (which is also
//! what punches QUIC through two NATs); a direct session replaces the
//! relayed one (`peer` keeps the better of two). A device connected
//! directly is never dialled through a relay: a Syncthing 1.19.2 peer
//! would let a newer relayed connection replace the direct one.
//!
//! ```text
//! spawn ── supervisor task (follows the live config)
//!            └─ one dial loop per configured device (JoinSet: dropped with the supervisor)
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use proto::addr::Transport;
use proto::DeviceId;
use tokio::task::{AbortHandle, JoinSet};

use crate::config::live::Live;
use crate::discovery::{Candidate, Finder, Source};
use crate::net::{Connection, Net, HANDSHAKE_TIMEOUT};
use crate::peer::{Link, Peers};

/// First wait between failed rounds of dials.
const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between failed rounds of dials.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A session that lasts this long is a success; one that ends at once
/// (the peer does not know us yet, say) is not, and must not make us
/// redial in a tight loop.
const STABLE: Duration = Duration::from_secs(30);
/// How long direct dials have before the relays are dialled too: on a LAN
/// or through an open port they connect within milliseconds.
const RELAY_HEAD_START: Duration = Duration::from_secs(1);
/// How often a device connected only through a relay has its direct
/// addresses dialled.
const UPGRADE_INTERVAL: Duration = Duration::from_secs(5);
/// Direct dials of a round start this far apart, best first: the best
/// usually wins, and a dead address costs the others nothing.
const STAGGER: Duration = Duration::from_millis(250);
/// How often discovery is asked again for relays while direct dials run.
const RELAY_POLL: Duration = Duration::from_secs(2);

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
        relay: c.relay,
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
/// A relayed session is upgraded: direct addresses dialled every
/// [`UPGRADE_INTERVAL`].
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
    let mut last_upgrade: Option<tokio::time::Instant> = None;
    loop {
        changed.borrow_and_update();
        let now = tokio::time::Instant::now();
        // When to look again without news: never while connected directly
        // (a session's end is news), at the next upgrade while relayed,
        // after the backoff while not connected.
        let wake = match peers.session(&device) {
            Some(s) => {
                // A new session: what discovery said of the device may be
                // stale (it connected through a relay before we found it).
                let new = up_since.is_none();
                up_since.get_or_insert(now);
                if s.transport == Transport::Relay.as_str() {
                    if new || last_upgrade.is_none_or(|t| now >= t + UPGRADE_INTERVAL) {
                        last_upgrade = Some(now);
                        dial.upgrade(device, new).await;
                    }
                    last_upgrade.map(|t| t + UPGRADE_INTERVAL)
                } else {
                    None
                }
            }
            None => {
                if up_since.take().is_some_and(|t| now - t >= STABLE) {
                    backoff = MIN_BACKOFF;
                }
                if last_round.is_none_or(|t| now >= t + backoff) {
                    last_round = Some(now);
                    dial.round(device).await;
                    // Also after a connection: only one that lasts resets it.
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                last_round.map(|t| t + backoff)
            }
        }
        .map(|t| t.max(tokio::time::Instant::now() + Duration::from_millis(10)));
        tokio::select! {
            _ = changed.changed() => {}
            r = config.changed() => {
                if r.is_err() {
                    return;
                }
                // New addresses (or a device edited): try them now.
                backoff = MIN_BACKOFF;
                last_round = None;
                last_upgrade = None;
            }
            _ = async {
                match wake {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => {}
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
                last_upgrade = None;
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
    /// One round for a device with no session: its direct candidates
    /// (each started [`STAGGER`] after the one before, best first), and
    /// from [`RELAY_HEAD_START`] on its relays beside them. While direct
    /// dials are still being tried, discovery is asked again every
    /// [`RELAY_POLL`] for relays (a device announces the relay it joined
    /// a moment after its listeners). A relayed connection is handed over
    /// at once; direct dials still running go on, and one that works
    /// replaces it.
    async fn round(&self, device: DeviceId) {
        let candidates = self.finder.candidates(&device).await;
        let (relayed, direct): (Vec<Candidate>, Vec<Candidate>) = candidates
            .iter()
            .cloned()
            .partition(|c| c.transport == Transport::Relay);
        let polling = !direct.is_empty();
        let direct_dials = self.direct(device, direct, STAGGER);
        let relay_dials = self.relays(device, relayed, polling);
        tokio::pin!(direct_dials, relay_dials);
        let connected = tokio::select! {
            d = &mut direct_dials => match d {
                Some(c) => self.hand_over(device, c),
                None => relay_dials.await.map(|c| self.hand_over(device, c)).is_some(),
            },
            r = &mut relay_dials => {
                let relayed = r.map(|c| self.hand_over(device, c)).is_some();
                direct_dials.await.map(|c| self.hand_over(device, c)).is_some() || relayed
            }
        };
        // Nothing worked, or nothing was known: discovery is asked again
        // next round, not after its not-found answer's minute. A device
        // that started with us has often not announced yet when first
        // looked up; the rounds' backoff (1 s doubling to 60 s) keeps the
        // lookups of a device that stays away to one a minute.
        if !connected {
            self.finder.failed(&device);
        }
    }

    /// The relay half of a round: `known` relays, and while direct dials
    /// run (`polling`), the relays discovery learns of meanwhile.
    async fn relays(
        &self,
        device: DeviceId,
        known: Vec<Candidate>,
        polling: bool,
    ) -> Option<(Connection, Candidate)> {
        let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
        let mut tried = std::collections::HashSet::new();
        let mut relays = known;
        if polling {
            tokio::time::sleep(RELAY_HEAD_START).await;
            if relays.is_empty() {
                // What was looked up a second ago predates the relay the
                // device joined as it started.
                relays = self.fresh_relays(device).await;
            }
        }
        loop {
            for c in relays.iter().filter(|c| tried.insert(c.url.clone())) {
                match self.net.dial(&c.url, device).await {
                    Ok(conn) => return Some((conn, c.clone())),
                    Err(e) => {
                        tracing::debug!(%device, url = %c.url, source = %c.source, "relay dial failed: {e}")
                    }
                }
            }
            if !polling || tokio::time::Instant::now() + RELAY_POLL > deadline {
                return None;
            }
            tokio::time::sleep(RELAY_POLL).await;
            relays = self.fresh_relays(device).await;
        }
    }

    /// The relays discovery knows of `device` now, asked afresh.
    async fn fresh_relays(&self, device: DeviceId) -> Vec<Candidate> {
        self.finder
            .fresh(&device)
            .await
            .into_iter()
            .filter(|c| c.transport == Transport::Relay)
            .collect()
    }

    /// Dials `candidates` (direct ones), each `stagger` after the one
    /// before; the first connection, with its candidate.
    async fn direct(
        &self,
        device: DeviceId,
        candidates: Vec<Candidate>,
        stagger: Duration,
    ) -> Option<(Connection, Candidate)> {
        let mut dials = JoinSet::new();
        for (i, c) in candidates.into_iter().enumerate() {
            let net = self.net.clone();
            dials.spawn(async move {
                tokio::time::sleep(stagger * i as u32).await;
                let r = net.dial(&c.url, device).await;
                (c, r)
            });
        }
        while let Some(done) = dials.join_next().await {
            let Ok((c, r)) = done else { continue };
            match r {
                Ok(conn) => return Some((conn, c)),
                Err(e) => {
                    tracing::debug!(%device, url = %c.url, source = %c.source, "dial failed: {e}")
                }
            }
        }
        None
    }

    /// Dials every direct candidate of a relayed device at once; the first
    /// to connect is handed over (and replaces the relayed session).
    /// `fresh`: ask discovery again rather than trust what it said before.
    async fn upgrade(&self, device: DeviceId, fresh: bool) {
        let candidates = if fresh {
            self.finder.fresh(&device).await
        } else {
            self.finder.candidates(&device).await
        };
        let direct: Vec<Candidate> = candidates
            .into_iter()
            .filter(|c| c.transport != Transport::Relay)
            .collect();
        if let Some(c) = self.direct(device, direct, Duration::ZERO).await {
            // The peer's own upgrade may have won meanwhile: a second
            // direct session would only replace the first.
            if self
                .peers
                .session(&device)
                .is_some_and(|s| s.transport != Transport::Relay.as_str())
            {
                return;
            }
            tracing::info!(%device, url = %c.1.url, "direct connection found for a relayed device");
            self.hand_over(device, c);
        }
    }

    /// Gives a dialled connection to `peer`.
    fn hand_over(&self, device: DeviceId, (conn, c): (Connection, Candidate)) -> bool {
        tracing::debug!(%device, url = %c.url, source = %c.source, "dialled");
        self.sources.set(device, c.url, c.source);
        tokio::spawn(self.peers.clone().run_link(link(conn)));
        true
    }
}
