//! The global discovery client (Syncthing's global discovery v3): announces
//! our listen addresses to every server in `discovery.global` and looks up
//! devices whose address is `dynamic`.
//!
//! ```text
//! Global::spawn ── supervisor (follows the live config)
//!                    └─ one announce loop per server that takes announcements
//! Finder::candidates ── Global::lookup (cached: found 5 min, not found per Retry-After, 10–60 s)
//! ```
//!
//! Server URLs carry options in their query, removed before any request
//! (as Syncthing does): `id=DEVICE-ID` pins the server's certificate,
//! `insecure` trusts any, `noannounce` and `nolookup` restrict its use.
//! Without either, the server must have a certificate from a public CA.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::DeviceId;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};

use super::SourceStatus;
use crate::config::live::Live;
use crate::net::https::{Https, Reply, Trust};

/// A request's time limit (Syncthing's since 1.20).
const TIMEOUT: Duration = Duration::from_secs(30);
/// Re-announce after a success when the server names no time.
const REANNOUNCE: Duration = Duration::from_secs(30 * 60);
/// Retry after a refusal that names no time.
const RETRY: Duration = Duration::from_secs(5 * 60);
/// First retry after a server could not be reached; doubles to [`RETRY`].
const UNREACHABLE_FIRST: Duration = Duration::from_secs(10);
/// Announce this long after our addresses change (they come in bursts:
/// a relay joined, a STUN answer and a port mapping within moments of the
/// start). Syncthing waits 2 s; a peer waiting to reach us through the
/// relay we just joined waits with it, so we wait less.
const SETTLE: Duration = Duration::from_millis(500);
/// How long a lookup's answer is kept.
const FOUND_FOR: Duration = Duration::from_secs(5 * 60);
/// Bounds on how long "not found" is kept: at least a server's
/// `Retry-After` up to the cap, since a device that just started is
/// announcing now.
const NOT_FOUND_MIN: Duration = Duration::from_secs(10);
const NOT_FOUND_MAX: Duration = Duration::from_secs(60);

/// A server URL with its options taken out.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerUrl {
    /// The URL as configured (what status shows).
    pub configured: String,
    /// The URL requests go to (no query).
    pub base: String,
    /// How its certificate is checked.
    pub trust: Trust,
    /// Whether we announce to it.
    pub announce: bool,
    /// Whether we look devices up on it.
    pub lookup: bool,
}

/// Parses a `discovery.global` entry.
pub fn parse_server(configured: &str) -> Result<ServerUrl, String> {
    let mut url = url::Url::parse(configured).map_err(|e| format!("{configured:?}: {e}"))?;
    if url.scheme() != "https" {
        return Err(format!(
            "{configured:?}: only https:// servers are supported"
        ));
    }
    let (mut id, mut insecure, mut announce, mut lookup) = (None, false, true, true);
    for (k, v) in url.query_pairs() {
        let on = v != "false";
        match k.as_ref() {
            "id" => {
                id = Some(
                    v.parse::<DeviceId>()
                        .map_err(|e| format!("{configured:?}: id={v}: {e}"))?,
                )
            }
            "insecure" => insecure = on,
            "noannounce" => announce = !on,
            "nolookup" => lookup = !on,
            _ => {}
        }
    }
    url.set_query(None);
    let trust = match (id, insecure) {
        (Some(id), _) => Trust::Pinned(id),
        (None, true) => Trust::Anything,
        (None, false) => Trust::Public,
    };
    Ok(ServerUrl {
        configured: configured.to_string(),
        base: url.to_string(),
        trust,
        announce,
        lookup,
    })
}

struct Cached {
    addresses: Vec<String>,
    until: Instant,
}

/// The client.
pub struct Global {
    https: Https,
    config: Live,
    own: watch::Receiver<Vec<String>>,
    cache: Mutex<HashMap<DeviceId, Cached>>,
    status: Mutex<BTreeMap<String, SourceStatus>>,
}

impl Global {
    /// A client announcing the addresses `own` holds.
    pub fn new(https: Https, config: Live, own: watch::Receiver<Vec<String>>) -> Arc<Self> {
        Arc::new(Self {
            https,
            config,
            own,
            cache: Mutex::default(),
            status: Mutex::default(),
        })
    }

    /// Starts announcing; the task ends when aborted.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.clone().supervise())
    }

    /// Each configured server's status, by its configured URL.
    pub fn status(&self) -> BTreeMap<String, SourceStatus> {
        let servers = self.servers();
        let st = self.status.lock().unwrap_or_else(|e| e.into_inner());
        servers
            .into_iter()
            .map(|s| {
                let v = st.get(&s.configured).cloned().unwrap_or_default();
                (s.configured, v)
            })
            .collect()
    }

    fn servers(&self) -> Vec<ServerUrl> {
        self.config
            .get()
            .discovery
            .global
            .iter()
            .filter_map(|u| match parse_server(u) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!("discovery.global: {e}");
                    None
                }
            })
            .collect()
    }

    fn record(&self, server: &str, result: Result<(), String>) {
        let mut st = self.status.lock().unwrap_or_else(|e| e.into_inner());
        st.insert(
            server.to_string(),
            SourceStatus {
                ok: result.is_ok(),
                error: result.err(),
            },
        );
    }

    /// Where `device` announced itself, from the lookup servers (cached).
    pub async fn lookup(&self, device: &DeviceId) -> Vec<String> {
        let now = Instant::now();
        if let Some(c) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(device)
            .filter(|c| c.until > now)
        {
            return c.addresses.clone();
        }
        let servers: Vec<ServerUrl> = self.servers().into_iter().filter(|s| s.lookup).collect();
        if servers.is_empty() {
            // Nothing to ask: no request, and nothing cached that would
            // hold off a server added later.
            return Vec::new();
        }
        let mut found = Vec::new();
        let mut retry = NOT_FOUND_MAX;
        for s in servers {
            let url = format!("{}?device={device}", s.base);
            match self
                .https
                .request("GET", &url, s.trust, None, TIMEOUT)
                .await
            {
                Ok(r) if r.status == 200 => match addresses(&r) {
                    Some(a) => {
                        self.record_lookup(&s, Ok(()));
                        found.extend(a);
                    }
                    None => self.record_lookup(&s, Err("the answer is not a lookup result".into())),
                },
                Ok(r) => {
                    if r.status == 404 {
                        self.record_lookup(&s, Ok(()));
                    } else {
                        self.record_lookup(&s, Err(format!("lookup answered {}", r.status)));
                    }
                    if let Some(secs) = r.seconds("retry-after") {
                        retry = retry.min(Duration::from_secs(secs));
                    }
                }
                Err(e) => self.record_lookup(&s, Err(e.to_string())),
            }
        }
        found.sort();
        found.dedup();
        let keep = if found.is_empty() {
            retry.clamp(NOT_FOUND_MIN, NOT_FOUND_MAX)
        } else {
            FOUND_FOR
        };
        tracing::debug!(%device, ?found, ?keep, "global lookup");
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(
            *device,
            Cached {
                addresses: found.clone(),
                until: Instant::now() + keep,
            },
        );
        found
    }

    /// Drops what a lookup said of `device` (none of it could be dialled).
    pub fn forget(&self, device: &DeviceId) {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(device);
    }

    /// Lookup-only servers show their lookups; the others their announces.
    fn record_lookup(&self, s: &ServerUrl, result: Result<(), String>) {
        if !s.announce {
            self.record(&s.configured, result);
        }
    }

    /// Keeps one announce loop per announcing server in the config.
    async fn supervise(self: Arc<Self>) {
        let mut rx = self.config.subscribe();
        let mut loops = JoinSet::new();
        let mut running: HashMap<ServerUrl, AbortHandle> = HashMap::new();
        loop {
            rx.borrow_and_update();
            let wanted: Vec<ServerUrl> =
                self.servers().into_iter().filter(|s| s.announce).collect();
            running.retain(|s, task| {
                let keep = wanted.contains(s);
                if !keep {
                    task.abort();
                }
                keep
            });
            for s in wanted {
                let task = self.clone().announce_loop(s.clone());
                running.entry(s).or_insert_with(|| loops.spawn(task));
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                Some(_) = loops.join_next(), if !loops.is_empty() => {}
            }
        }
    }

    /// Announces to `s` at once, then as it asks, and soon after our
    /// addresses change.
    async fn announce_loop(self: Arc<Self>, s: ServerUrl) {
        let mut own = self.own.clone();
        let mut unreachable = UNREACHABLE_FIRST;
        loop {
            let addresses = own.borrow_and_update().clone();
            let wait = if addresses.is_empty() {
                None
            } else {
                let body = serde_json::json!({ "addresses": addresses }).to_string();
                let r = self
                    .https
                    .request("POST", &s.base, s.trust, Some(body.into_bytes()), TIMEOUT)
                    .await;
                Some(match r {
                    Ok(r) if (200..300).contains(&r.status) => {
                        tracing::debug!(server = %s.configured, ?addresses, "announced");
                        self.record(&s.configured, Ok(()));
                        unreachable = UNREACHABLE_FIRST;
                        r.seconds("reannounce-after")
                            .filter(|&n| n > 0)
                            .map_or(REANNOUNCE, Duration::from_secs)
                    }
                    Ok(r) => {
                        let why = format!("announce answered {}", r.status);
                        tracing::info!(server = %s.configured, "{why}");
                        self.record(&s.configured, Err(why));
                        r.seconds("retry-after")
                            .filter(|&n| n > 0)
                            .map_or(RETRY, Duration::from_secs)
                    }
                    Err(e) => {
                        tracing::info!(server = %s.configured, "announce failed: {e}");
                        self.record(&s.configured, Err(e.to_string()));
                        let w = unreachable;
                        unreachable = (unreachable * 2).min(RETRY);
                        w
                    }
                })
            };
            let sleep = async {
                match wait {
                    Some(w) => tokio::time::sleep(w).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {}
                r = own.changed() => {
                    if r.is_err() {
                        return;
                    }
                    tokio::time::sleep(SETTLE).await;
                }
            }
        }
    }
}

/// The addresses of a lookup answer, if it is one.
fn addresses(r: &Reply) -> Option<Vec<String>> {
    lookup_addresses(&r.body)
}

/// The addresses a discovery server's lookup answer body lists, if it is
/// one (what a server sends is not trusted further than this).
pub fn lookup_addresses(body: &[u8]) -> Option<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Found {
        addresses: Vec<String>,
    }
    serde_json::from_slice::<Found>(body)
        .ok()
        .map(|f| f.addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_come_out_of_the_url() {
        let id = "LYXKCHX-VI3NYZR-ALCJBHF-WMZYSPK-QG6QJA3-MPFYMSO-U56GTUK-NA2MIAW";
        let s = parse_server(&format!(
            "https://discovery.syncthing.net/v2/?noannounce&id={id}"
        ))
        .expect("parse");
        assert_eq!(s.base, "https://discovery.syncthing.net/v2/");
        assert_eq!(s.trust, Trust::Pinned(id.parse().expect("id")));
        assert!(!s.announce && s.lookup);
        let s = parse_server("https://198.51.100.1:8443/?insecure&nolookup").expect("parse");
        assert_eq!(s.base, "https://198.51.100.1:8443/");
        assert_eq!(s.trust, Trust::Anything);
        assert!(s.announce && !s.lookup);
        let s = parse_server("https://d.example.org/v2/").expect("parse");
        assert_eq!(s.trust, Trust::Public);
        assert!(parse_server("http://d.example.org/").is_err());
        assert!(parse_server("https://d.example.org/?id=nonsense").is_err());
    }
}
