//! Relay pools (`dynamic+https://…`, as `relays.syncthing.net/endpoint`
//! serves: `{"relays":[{"url":"relay://…"},…]}`): the list is fetched and
//! every relay's TCP connect time measured **at once** (Syncthing probes
//! them one after another, a second each at worst); the relays are
//! offered best first, those within 50 ms of each other in random order
//! so that a pool's users spread over its near relays.

use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use serde::Deserialize;
use tokio::task::JoinSet;

use super::RelayUri;
use crate::net::https::{Https, Trust};
use crate::net::NetError;

/// How long a relay may take to accept a TCP connection to count.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the pool may take to answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Relays closer than this in connect time are as good as each other.
const BUCKET: Duration = Duration::from_millis(50);
/// Relays probed from one pool answer, at most.
const MAX_RELAYS: usize = 256;

#[derive(Deserialize)]
struct PoolAnswer {
    #[serde(default)]
    relays: Vec<PoolRelay>,
}

#[derive(Deserialize)]
struct PoolRelay {
    url: String,
}

/// The pool's relays that answered a probe, best first, with their
/// connect times.
pub(super) async fn choose(
    entry: &str,
    https: &Https,
) -> Result<Vec<(RelayUri, Option<Duration>)>, NetError> {
    let url = entry.strip_prefix("dynamic+").unwrap_or(entry);
    let reply = https
        .request("GET", url, Trust::Public, None, FETCH_TIMEOUT)
        .await?;
    let bad = |reason: String| NetError::BadUrl {
        url: entry.to_string(),
        reason,
    };
    if reply.status != 200 {
        return Err(bad(format!("the pool answered HTTP {}", reply.status)));
    }
    let answer: PoolAnswer = serde_json::from_slice(&reply.body)
        .map_err(|e| bad(format!("the pool's answer is not a relay list: {e}")))?;
    let uris: Vec<RelayUri> = answer
        .relays
        .into_iter()
        .take(MAX_RELAYS)
        .filter_map(|r| match RelayUri::parse(&r.url) {
            Ok(u) => Some(u),
            Err(e) => {
                tracing::debug!(pool = %entry, "skipping a pool relay: {e}");
                None
            }
        })
        .collect();
    let mut ranked = probe(uris).await;
    order(&mut ranked, &mut rand::rng());
    Ok(ranked.into_iter().map(|(u, d)| (u, Some(d))).collect())
}

/// Connect times of the relays that answered within [`PROBE_TIMEOUT`],
/// all probed at once.
async fn probe(uris: Vec<RelayUri>) -> Vec<(RelayUri, Duration)> {
    let mut probes = JoinSet::new();
    for uri in uris {
        probes.spawn(async move {
            let addr = uri.resolve().await.ok()?.into_iter().next()?;
            let t = Instant::now();
            match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(_)) => Some((uri, t.elapsed())),
                _ => None,
            }
        });
    }
    let mut out = Vec::new();
    while let Some(r) = probes.join_next().await {
        if let Ok(Some(found)) = r {
            out.push(found);
        }
    }
    out
}

/// Best first by 50 ms bucket, shuffled within each bucket.
fn order(ranked: &mut [(RelayUri, Duration)], rng: &mut impl rand::Rng) {
    ranked.shuffle(rng);
    let bucket = |d: &Duration| d.as_millis() / BUCKET.as_millis();
    ranked.sort_by_key(|(_, d)| bucket(d));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relays_are_ordered_by_latency_bucket() {
        let uri = |n: u8| RelayUri::parse(&format!("relay://10.0.0.{n}:22067")).expect("uri");
        let ms = Duration::from_millis;
        let mut ranked = vec![
            (uri(1), ms(130)),
            (uri(2), ms(10)),
            (uri(3), ms(60)),
            (uri(4), ms(40)),
        ];
        order(&mut ranked, &mut rand::rng());
        let hosts: Vec<u128> = ranked.iter().map(|(_, d)| d.as_millis() / 50).collect();
        assert_eq!(hosts, [0, 0, 1, 2]);
    }

    #[tokio::test]
    async fn probes_run_at_once_and_drop_the_silent() {
        let listeners: Vec<_> = futures_util::future::join_all(
            (0..3).map(|_| tokio::net::TcpListener::bind("127.0.0.1:0")),
        )
        .await
        .into_iter()
        .map(|l| l.expect("bind"))
        .collect();
        let mut uris: Vec<RelayUri> = listeners
            .iter()
            .map(|l| {
                RelayUri::parse(&format!("relay://{}", l.local_addr().expect("addr"))).expect("uri")
            })
            .collect();
        // A port nobody listens on: refused, so not offered.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let closed_addr = closed.local_addr().expect("addr");
        drop(closed);
        uris.push(RelayUri::parse(&format!("relay://{closed_addr}")).expect("uri"));
        let found = probe(uris).await;
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found
            .iter()
            .all(|(u, _)| !u.url.contains(&closed_addr.to_string())));
    }
}
