//! ferrosync's `net` layer against the real Syncthing 1.19.2, over TCP and
//! QUIC, in both directions: the handshakes complete, each side learns the
//! other's device ID, and BEP Hellos cross the resulting stream.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use ferrosync::identity::Identity;
use ferrosync::net::{Connection, Net, Transport};
use ferrosync_tests::require;
use ferrosync_tests::syncthing::{Listen, Options, Syncthing};
use proto::message::Hello;
use proto::DeviceId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Syncthing's own limits are 10 s (handshake) and 20 s (Hello); this
/// leaves room for a slow start on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(30);

/// Our side runs on its own threads, so it keeps answering (QUIC acks,
/// keep-alives) while the test blocks polling Syncthing's REST API.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn identity() -> (tempfile::TempDir, Identity) {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = ferrosync::home::Home::new(dir.path().join("home"));
    let (id, _) = ferrosync::identity::load_or_create(&home).expect("identity");
    (dir, id)
}

fn start_syncthing(listen: Listen) -> Option<Syncthing> {
    let binary = require("syncthing", "syncthing")?;
    Some(Syncthing::start(Options {
        binary,
        listen,
        sttrace: Some("connections".into()),
        ..Options::default()
    }))
}

fn syncthing_id(st: &Syncthing) -> DeviceId {
    st.device_id()
        .parse()
        .unwrap_or_else(|e| st.fail(&format!("its device ID does not parse: {e}")))
}

fn our_hello() -> Vec<u8> {
    proto::frame::encode_hello(&Hello {
        device_name: "ferrosync-test".into(),
        client_name: "ferrosync".into(),
        client_version: "0.1.0".into(),
        ..Default::default()
    })
}

async fn send(st: &Syncthing, conn: &mut Connection, bytes: &[u8]) {
    let sent = async {
        conn.writer.write_all(bytes).await?;
        conn.writer.flush().await
    };
    match tokio::time::timeout(DEADLINE, sent).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => st.fail(&format!("writing our Hello: {e}")),
        Err(_) => st.fail("writing our Hello timed out"),
    }
}

async fn read_hello(st: &Syncthing, conn: &mut Connection) -> Hello {
    let mut buf = BytesMut::with_capacity(1024);
    let read = async {
        loop {
            match proto::frame::decode_hello(&mut buf) {
                Ok(Some(hello)) => return hello,
                Ok(None) => {}
                Err(e) => st.fail(&format!("Syncthing's Hello does not decode: {e}")),
            }
            match conn.reader.read_buf(&mut buf).await {
                Ok(0) => st.fail("Syncthing closed the stream before its Hello"),
                Ok(_) => {}
                Err(e) => st.fail(&format!("reading Syncthing's Hello: {e}")),
            }
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .unwrap_or_else(|_| st.fail("no Hello from Syncthing in time"))
}

/// We dial Syncthing, which does not know us: TLS completes with the right
/// ID, Hellos cross, and Syncthing records us as a pending device.
fn we_dial(listen: Listen, transport: Transport) {
    let Some(st) = start_syncthing(listen) else {
        return;
    };
    let st_id = syncthing_id(&st);
    let (_dir, me) = identity();
    let url = match transport {
        Transport::Tcp => st.tcp_address(),
        Transport::Quic => st.quic_address(),
        Transport::Relay => unreachable!("relays are not a direct transport"),
    }
    .expect("Syncthing listens on this transport");
    // Over QUIC we dial from our listening socket, as in production.
    let listen_urls = match transport {
        Transport::Tcp => vec![],
        Transport::Quic => vec!["quic://127.0.0.1:0".to_string()],
        Transport::Relay => unreachable!("relays are not a direct transport"),
    };
    let rt = runtime();
    let (net, _incoming) = rt
        .block_on(Net::start(&me, &listen_urls))
        .expect("start our net");

    let (conn, hello) = rt.block_on(async {
        let mut conn = match tokio::time::timeout(DEADLINE, net.dial(&url, st_id)).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => st.fail(&format!("dialing {url}: {e}")),
            Err(_) => st.fail(&format!("dialing {url} timed out")),
        };
        assert_eq!(conn.device_id, st_id);
        assert_eq!(conn.transport, transport);
        assert!(conn.outgoing);
        let ours = our_hello();
        let hello = match transport {
            // As BEP runs: our whole Hello first, then theirs.
            Transport::Tcp => {
                send(&st, &mut conn, &ours).await;
                read_hello(&st, &mut conn).await
            }
            // On QUIC our first bytes are what make the stream visible to
            // Syncthing at all. But if our whole Hello is already there
            // when Syncthing has queued its own, it rejects the unknown
            // device and closes the connection at once, and quic-go drops
            // its still-unsent Hello. So: the magic first, which makes
            // Syncthing send its Hello and wait for the rest of ours.
            Transport::Quic => {
                send(&st, &mut conn, &ours[..4]).await;
                let hello = read_hello(&st, &mut conn).await;
                send(&st, &mut conn, &ours[4..]).await;
                hello
            }
            Transport::Relay => unreachable!("relays are not a direct transport"),
        };
        (conn, hello)
    });
    assert_eq!(hello.client_name, "syncthing", "{hello:?}");
    assert!(
        hello.client_version.starts_with("v1."),
        "{}",
        hello.client_version
    );

    let ours = me.device_id.to_string();
    let pending = st.wait_for(
        Instant::now() + DEADLINE,
        "our device to be listed as pending",
        |st| st.pending_devices().get(&ours).cloned(),
    );
    assert_eq!(pending["name"], "ferrosync-test", "{pending:#}");
    drop(conn);
}

/// Syncthing, told our device and address, dials us: our listener
/// authenticates it, Hellos cross, and Syncthing reports us connected over
/// the right transport.
fn syncthing_dials(listen: Listen, transport: Transport) {
    let Some(st) = start_syncthing(listen) else {
        return;
    };
    let st_id = syncthing_id(&st);
    let (_dir, me) = identity();
    let rt = runtime();
    let scheme = transport.as_str();
    let (net, mut incoming) = rt
        .block_on(Net::start(&me, &[format!("{scheme}://127.0.0.1:0")]))
        .expect("start our net");
    let our_url = net.listen_urls()[0].clone();
    let ours = me.device_id.to_string();
    st.add_device(&ours, "ferrosync", &[&our_url]);

    let (conn, hello) = rt.block_on(async {
        let mut conn = match tokio::time::timeout(DEADLINE, incoming.recv()).await {
            Ok(Some(conn)) => conn,
            Ok(None) => st.fail("our accept channel closed"),
            Err(_) => st.fail(&format!("Syncthing did not dial {our_url} in time")),
        };
        assert_eq!(conn.device_id, st_id);
        assert_eq!(conn.transport, transport);
        assert!(!conn.outgoing);
        let hello = read_hello(&st, &mut conn).await;
        send(&st, &mut conn, &our_hello()).await;
        (conn, hello)
    });
    assert_eq!(hello.client_name, "syncthing", "{hello:?}");

    let entry = st.wait_connected(&ours, Instant::now() + DEADLINE);
    assert_eq!(
        entry["type"],
        format!("{scheme}-client"),
        "Syncthing's view of the connection: {entry:#}"
    );
    drop(conn);
}

#[test]
fn we_dial_syncthing_over_tcp() {
    we_dial(Listen::Tcp, Transport::Tcp);
}

#[test]
fn we_dial_syncthing_over_quic() {
    we_dial(Listen::Quic, Transport::Quic);
}

#[test]
fn syncthing_dials_us_over_tcp() {
    syncthing_dials(Listen::Tcp, Transport::Tcp);
}

#[test]
fn syncthing_dials_us_over_quic() {
    syncthing_dials(Listen::Quic, Transport::Quic);
}
