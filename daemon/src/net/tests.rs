//! Two `Net`s on loopback talking to each other over TCP and QUIC, plus
//! URL parsing and the ways a connection must be refused.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::home::Home;

/// Generous: a loaded 2-core CI box, debug build.
const WAIT: Duration = Duration::from_secs(20);

fn identity() -> Identity {
    let dir = tempfile::tempdir().expect("tempdir");
    crate::identity::load_or_create(&Home::new(dir.path()))
        .expect("identity")
        .0
}

async fn node(scheme: &str) -> (Net, mpsc::Receiver<Connection>, DeviceId) {
    let id = identity();
    let (net, rx) = Net::start(&id, &[format!("{scheme}://127.0.0.1:0")])
        .await
        .expect("start");
    (net, rx, id.device_id)
}

async fn next(rx: &mut mpsc::Receiver<Connection>) -> Connection {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("an incoming connection in time")
        .expect("channel open")
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn send(conn: &mut Connection, data: &[u8]) {
    conn.writer.write_all(data).await.expect("write");
    conn.writer.flush().await.expect("flush");
}

async fn receive(conn: &mut Connection, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    tokio::time::timeout(WAIT, conn.reader.read_exact(&mut buf))
        .await
        .expect("data in time")
        .expect("read");
    buf
}

async fn round_trip(scheme: &str, transport: Transport) {
    let (a, _a_rx, a_id) = node(scheme).await;
    let (b, mut b_rx, b_id) = node(scheme).await;
    let url = b.listen_urls()[0].clone();
    assert!(url.starts_with(&format!("{scheme}://127.0.0.1:")), "{url}");
    assert!(!url.ends_with(":0"), "{url}");

    let mut at_a = tokio::time::timeout(WAIT, a.dial(&url, b_id))
        .await
        .expect("dial in time")
        .expect("dial");
    // The dialer writes first, as BEP's Hello does: on QUIC the listener
    // only sees the stream once these bytes arrive.
    let hello = pattern(3000, 1);
    send(&mut at_a, &hello).await;
    let mut at_b = next(&mut b_rx).await;

    assert_eq!(at_a.device_id, b_id);
    assert_eq!(at_b.device_id, a_id);
    assert_eq!((at_a.transport, at_b.transport), (transport, transport));
    assert!(at_a.outgoing && !at_b.outgoing);
    assert!(
        at_a.remote_addr.ip().is_loopback(),
        "{:?}",
        at_a.remote_addr
    );
    assert!(
        at_b.remote_addr.ip().is_loopback(),
        "{:?}",
        at_b.remote_addr
    );

    assert_eq!(receive(&mut at_b, hello.len()).await, hello);
    let reply = pattern(5000, 2);
    send(&mut at_b, &reply).await;
    assert_eq!(receive(&mut at_a, reply.len()).await, reply);
    let more = pattern(4096, 3);
    send(&mut at_a, &more).await;
    assert_eq!(receive(&mut at_b, more.len()).await, more);

    // A shutdown writer is the end of the stream for the peer.
    tokio::time::timeout(WAIT, at_a.writer.shutdown())
        .await
        .expect("shutdown in time")
        .expect("shutdown");
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, at_b.reader.read_to_end(&mut rest))
        .await
        .expect("EOF in time")
        .expect("read to end");
    assert!(rest.is_empty());
}

#[tokio::test]
async fn tcp_connects_both_ways_and_carries_bytes() {
    round_trip("tcp", Transport::Tcp).await;
}

#[tokio::test]
async fn quic_connects_both_ways_and_carries_bytes() {
    round_trip("quic", Transport::Quic).await;
}

async fn wrong_device_is_refused(scheme: &str) {
    let (a, _a_rx, _) = node(scheme).await;
    let (b, _b_rx, b_id) = node(scheme).await;
    let other = identity().device_id;
    let err = a
        .dial(&b.listen_urls()[0], other)
        .await
        .expect_err("must refuse a device we did not ask for");
    match err {
        NetError::WrongDevice { expected, got } => {
            assert_eq!(expected, other);
            assert_eq!(got, b_id);
        }
        e => panic!("expected WrongDevice, got {e}"),
    }
}

#[tokio::test]
async fn tcp_wrong_device_is_refused() {
    wrong_device_is_refused("tcp").await;
}

#[tokio::test]
async fn quic_wrong_device_is_refused() {
    wrong_device_is_refused("quic").await;
}

async fn self_connection_is_refused(scheme: &str) {
    let (a, mut a_rx, a_id) = node(scheme).await;
    let err = a
        .dial(&a.listen_urls()[0], a_id)
        .await
        .expect_err("must refuse ourselves");
    assert!(matches!(err, NetError::SelfConnection { .. }), "{err}");
    // Nor does the listening side hand it out.
    a.shutdown();
    let leftover = tokio::time::timeout(WAIT, a_rx.recv())
        .await
        .expect("channel closes once listening stopped");
    assert!(leftover.is_none(), "{leftover:?}");
}

#[tokio::test]
async fn tcp_self_connection_is_refused() {
    self_connection_is_refused("tcp").await;
}

#[tokio::test]
async fn quic_self_connection_is_refused() {
    self_connection_is_refused("quic").await;
}

#[tokio::test]
async fn garbage_and_silence_do_not_block_the_tcp_listener() {
    let (a, _a_rx, _) = node("tcp").await;
    let (b, mut b_rx, b_id) = node("tcp").await;
    let url = b.listen_urls()[0].clone();
    let addr = url.trim_start_matches("tcp://").to_string();

    // One peer that never speaks (holds a handshake slot) and one that
    // sends an HTTP request instead of a ClientHello.
    let _silent = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let mut garbage = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut sink = Vec::new();
    // The listener answers with an alert (or nothing) and hangs up.
    let _ = tokio::time::timeout(WAIT, garbage.read_to_end(&mut sink))
        .await
        .expect("the listener hangs up on garbage");

    let mut conn = a.dial(&url, b_id).await.expect("a good dial still works");
    send(&mut conn, b"hi").await;
    let mut at_b = next(&mut b_rx).await;
    assert_eq!(receive(&mut at_b, 2).await, b"hi");
}

#[tokio::test]
async fn garbage_datagrams_do_not_block_the_quic_listener() {
    let (a, _a_rx, _) = node("quic").await;
    let (b, mut b_rx, b_id) = node("quic").await;
    let url = b.listen_urls()[0].clone();
    let addr = url.trim_start_matches("quic://").to_string();
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    for len in [1, 20, 1200, 1500] {
        udp.send_to(&pattern(len, 9), &addr).await.expect("send");
    }
    let mut conn = a.dial(&url, b_id).await.expect("a good dial still works");
    send(&mut conn, b"hi").await;
    let mut at_b = next(&mut b_rx).await;
    assert_eq!(receive(&mut at_b, 2).await, b"hi");
}

#[tokio::test]
async fn quic_dials_without_a_quic_listener() {
    let a_id = identity();
    let (a, _a_rx) = Net::start(&a_id, &["tcp://127.0.0.1:0".into()])
        .await
        .expect("start");
    let (b, mut b_rx, b_id) = node("quic").await;
    let mut conn = a.dial(&b.listen_urls()[0], b_id).await.expect("dial");
    send(&mut conn, b"hello").await;
    let mut at_b = next(&mut b_rx).await;
    assert_eq!(at_b.device_id, a_id.device_id);
    assert_eq!(receive(&mut at_b, 5).await, b"hello");
}

#[tokio::test]
async fn shutdown_stops_listening() {
    for scheme in ["tcp", "quic"] {
        let (a, _a_rx, _) = node(scheme).await;
        let (b, mut b_rx, b_id) = node(scheme).await;
        let url = b.listen_urls()[0].clone();
        let mut before = a.dial(&url, b_id).await.expect("dial");
        send(&mut before, b"x").await;
        let mut at_b = next(&mut b_rx).await;

        b.shutdown();
        let err = tokio::time::timeout(WAIT, a.dial(&url, b_id))
            .await
            .expect("refused in time")
            .expect_err("no longer listening");
        eprintln!("{scheme} after shutdown: {err}");
        // The connection made before carries on.
        assert_eq!(receive(&mut at_b, 1).await, b"x");
        send(&mut at_b, b"y").await;
        assert_eq!(receive(&mut before, 1).await, b"y");
    }
}

#[tokio::test]
async fn dial_errors_say_what_is_wrong() {
    let (a, _rx, _) = node("tcp").await;
    let some = identity().device_id;
    for (url, want) in [
        ("http://127.0.0.1:80", "scheme \"http\" is not one of"),
        ("relay://127.0.0.1:1", "connecting to relay 127.0.0.1:1"),
        ("relay://127.0.0.1:1/?id=NOPE", "is not a device ID"),
        ("127.0.0.1:22000", "expected scheme://host:port"),
        ("tcp://127.0.0.1:http", "not a port number"),
        ("tcp://127.0.0.1:99999", "not a port number"),
        ("tcp://", "no host"),
        ("tcp://::1:22000", "brackets"),
        ("tcp4://[::1]:22000", "family"),
        ("tcp6://127.0.0.1:22000", "family"),
        ("quic://[::1:22000", "unclosed"),
        ("tcp://host/path", "only host and port"),
    ] {
        let err = a.dial(url, some).await.expect_err(url).to_string();
        assert!(err.contains(want), "{url}: {err}");
    }
    let err = Net::start(&identity(), &["udp://127.0.0.1:0".into()])
        .await
        .expect_err("bad listen URL");
    assert!(
        err.to_string().contains("scheme \"udp\" is not one of"),
        "{err}"
    );
}

/// The grammar is `proto::addr`'s (tested there); what the net layer adds
/// is Syncthing's default port and that a relay address is not its own.
#[test]
fn addresses_get_the_default_port_and_relays_are_not_dialled_here() {
    let t = parse_url("tcp://1.2.3.4").expect("parse");
    assert_eq!(
        (t.transport, t.port, t.host.as_str()),
        (Transport::Tcp, DEFAULT_PORT, "1.2.3.4")
    );
    let t = parse_url("quic4://example.org:22001").expect("parse");
    assert_eq!(
        (t.family, t.host.as_str(), t.port),
        (Family::V4, "example.org", 22001)
    );
    let err = parse_url("relay://10.0.0.1:22067/?id=X").expect_err("relay");
    assert!(err.to_string().contains("relay address"), "{err}");
}

#[tokio::test]
async fn listening_on_every_address_reports_the_real_port() {
    let id = identity();
    let (net, _rx) = Net::start(&id, &["tcp4://:0".into(), "quic4://0.0.0.0:0".into()])
        .await
        .expect("start");
    let urls = net.listen_urls();
    assert_eq!(urls.len(), 2);
    assert!(urls[0].starts_with("tcp4://0.0.0.0:"), "{urls:?}");
    assert!(urls[1].starts_with("quic4://0.0.0.0:"), "{urls:?}");
    assert!(urls.iter().all(|u| !u.ends_with(":0")), "{urls:?}");
}
