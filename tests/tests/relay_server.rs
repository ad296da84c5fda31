//! The relay server over real sockets: joins, invitations, sessions that
//! pipe bytes, one-use keys, bad input, silent connections, limits,
//! status and metrics.

use std::time::{Duration, Instant};

use ferrosync_relay::testing::{join, protocol, session, session_pair, spawn, spawn_with, Device};
use proto::relay::{code, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(5);

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn status(server: &ferrosync_relay::Server) -> serde_json::Value {
    let url = format!("http://{}/status", server.status_addr().expect("status"));
    let body = ureq::get(&url)
        .call()
        .expect("status")
        .body_mut()
        .read_to_string()
        .expect("body");
    serde_json::from_str(&body).expect("json")
}

fn metrics(server: &ferrosync_relay::Server) -> String {
    let url = format!("http://{}/metrics", server.status_addr().expect("status"));
    ureq::get(&url)
        .call()
        .expect("metrics")
        .body_mut()
        .read_to_string()
        .expect("body")
}

/// A invites B's session through the relay: both get invitations with
/// the other's ID and one key each, join in session mode, and bytes flow
/// both ways, untouched. A key used once is no longer known.
#[test]
fn a_session_pipes_bytes_between_the_two_invited_devices() {
    rt().block_on(async {
        let t = spawn().await;
        let addr = t.server.addr();
        let (a, b) = (Device::generate(), Device::generate());
        let (mut joined, answer) = join(addr, &a, "").await.expect("join");
        assert_eq!(answer, Message::response(code::SUCCESS));

        let mut dialer = protocol(addr, &b).await.expect("tls");
        dialer
            .send(&Message::ConnectRequest {
                id: a.id.as_bytes().to_vec(),
            })
            .await
            .expect("connect");
        let Message::SessionInvitation {
            from,
            key: kb,
            address,
            port,
            server_socket,
        } = dialer.recv(T).await.expect("invitation")
        else {
            panic!("no invitation");
        };
        assert_eq!(
            (from.as_slice(), server_socket, port),
            (a.id.as_bytes().as_slice(), false, addr.port())
        );
        assert_eq!(address.len(), 16, "the relay's address, IPv4-mapped");
        let Message::SessionInvitation {
            from,
            key: ka,
            server_socket,
            ..
        } = joined.recv(T).await.expect("invitation")
        else {
            panic!("no invitation for the joined device");
        };
        assert_eq!(
            (from.as_slice(), server_socket),
            (b.id.as_bytes().as_slice(), true)
        );
        assert_ne!(ka, kb);

        let mut sa = session(addr).await.expect("session");
        sa.send(&Message::JoinSessionRequest { key: ka.clone() })
            .await
            .expect("join");
        assert_eq!(
            sa.recv(T).await.expect("ok"),
            Message::response(code::SUCCESS)
        );
        let mut sb = session(addr).await.expect("session");
        sb.send(&Message::JoinSessionRequest { key: kb.clone() })
            .await
            .expect("join");
        assert_eq!(
            sb.recv(T).await.expect("ok"),
            Message::response(code::SUCCESS)
        );
        let (mut pa, _) = sa.into_inner();
        let (mut pb, _) = sb.into_inner();
        let big: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7) as u8).collect();
        pa.write_all(&big).await.expect("write");
        let mut got = vec![0u8; big.len()];
        tokio::time::timeout(T, pb.read_exact(&mut got))
            .await
            .expect("in time")
            .expect("read");
        assert!(got == big, "bytes changed on the way");
        pb.write_all(b"and back").await.expect("write");
        let mut back = [0u8; 8];
        tokio::time::timeout(T, pa.read_exact(&mut back))
            .await
            .expect("in time")
            .expect("read");
        assert_eq!(&back, b"and back");

        // Each key is good once.
        let mut again = session(addr).await.expect("session");
        again
            .send(&Message::JoinSessionRequest { key: ka })
            .await
            .expect("join");
        assert_eq!(
            again.recv(T).await.expect("answer"),
            Message::response(code::NOT_FOUND)
        );
        let s = status(&t.server);
        assert_eq!(s["numActiveSessions"], 1, "{s}");
        assert_eq!(s["numProxies"], 1, "{s}");
        assert!(s["bytesProxied"].as_u64() >= Some(1_000_008), "{s}");
        let m = metrics(&t.server);
        ferrosync_tests::docs::assert_metrics_documented(&m);
        assert!(m.contains("ferrosync_relay_sessions_total 1\n"), "{m}");
        assert!(
            m.contains("ferrosync_relay_refusals_total{reason=\"unknown_key\"} 1\n"),
            "{m}"
        );
        t.server.shutdown().await;
    });
}

/// Garbage, oversized frames, unknown keys, a device asking for one that
/// is not there, a wrong token, 500 silent connections and a client that
/// never finishes: each gets its answer or is dropped, and the relay goes
/// on serving others at once.
#[test]
fn bad_clients_get_answers_or_are_dropped_and_others_are_served() {
    rt().block_on(async {
        let t = spawn_with(|c| {
            c.token = "sesame".into();
            c.message_timeout = Duration::from_secs(2);
        })
        .await;
        let addr = t.server.addr();
        // 500 connections that never send a byte.
        let mut silent = Vec::new();
        for _ in 0..500 {
            silent.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
        }
        let a = Device::generate();
        let started = Instant::now();
        let (_refused, answer) = join(addr, &a, "wrong").await.expect("join");
        assert_eq!(answer, Message::response(code::WRONG_TOKEN));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );

        // An oversized frame: the connection is closed.
        let mut c = protocol(addr, &a).await.expect("tls");
        let mut huge = vec![0x9e, 0x79, 0xbc, 0x40, 0, 0, 0, 2, 0, 0, 0x13, 0x88];
        huge.extend(std::iter::repeat_n(0u8, 5000));
        c.send_raw(&huge).await.expect("send");
        assert!(c.recv(T).await.is_err(), "closed");
        // Garbage in session mode: closed.
        let mut g = session(addr).await.expect("connect");
        g.send_raw(b"GET / HTTP/1.1\r\n\r\n").await.expect("send");
        assert!(g.recv(T).await.is_err(), "closed");
        // An unknown key.
        let mut u = session(addr).await.expect("connect");
        u.send(&Message::JoinSessionRequest { key: vec![9; 32] })
            .await
            .expect("send");
        assert_eq!(
            u.recv(T).await.expect("answer"),
            Message::response(code::NOT_FOUND)
        );
        // A device that is not joined.
        let mut c = protocol(addr, &a).await.expect("tls");
        c.send(&Message::ConnectRequest { id: vec![3; 32] })
            .await
            .expect("send");
        assert_eq!(
            c.recv(T).await.expect("answer"),
            Message::response(code::NOT_FOUND)
        );
        // A client that starts TLS and never finishes: dropped after the
        // message timeout.
        let mut stuck = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stuck.write_all(&[0x16, 3, 1]).await.expect("write");
        let mut one = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_secs(10), stuck.read(&mut one)).await;
        assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "not dropped: {r:?}");
        // Still serving: the right token joins.
        let (_joined, answer) = join(addr, &a, "sesame").await.expect("join");
        assert_eq!(answer, Message::response(code::SUCCESS));
        let m = metrics(&t.server);
        for line in [
            "ferrosync_relay_refusals_total{reason=\"wrong_token\"} 1",
            "ferrosync_relay_refusals_total{reason=\"unknown_key\"} 1",
            "ferrosync_relay_refusals_total{reason=\"not_found\"} 1",
            "ferrosync_relay_joined_clients 1",
        ] {
            assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
        }
        drop(silent);
        t.server.shutdown().await;
    });
}

/// Past its session limit the relay answers RelayFull, and a second join
/// of the same device is "already connected".
#[test]
fn limits_are_enforced_and_reported() {
    rt().block_on(async {
        let t = spawn_with(|c| {
            c.max_sessions = 1;
            c.max_clients = 1;
        })
        .await;
        let addr = t.server.addr();
        let (a, b, x) = (Device::generate(), Device::generate(), Device::generate());
        let (_joined, answer) = join(addr, &a, "").await.expect("join");
        assert_eq!(answer, Message::response(code::SUCCESS));
        let (_twice, answer) = join(addr, &a, "").await.expect("join");
        assert_eq!(answer, Message::response(code::ALREADY_CONNECTED));
        let (_other, answer) = join(addr, &x, "").await.expect("join");
        assert_eq!(answer, Message::RelayFull, "client limit");
        let mut first = protocol(addr, &b).await.expect("tls");
        first
            .send(&Message::ConnectRequest {
                id: a.id.as_bytes().to_vec(),
            })
            .await
            .expect("send");
        assert!(matches!(
            first.recv(T).await.expect("answer"),
            Message::SessionInvitation { .. }
        ));
        let mut second = protocol(addr, &b).await.expect("tls");
        second
            .send(&Message::ConnectRequest {
                id: a.id.as_bytes().to_vec(),
            })
            .await
            .expect("send");
        assert_eq!(
            second.recv(T).await.expect("answer"),
            Message::RelayFull,
            "session limit"
        );
        let s = status(&t.server);
        assert_eq!(s["options"]["max-sessions"], 1, "{s}");
        assert!(metrics(&t.server).contains("ferrosync_relay_refusals_total{reason=\"full\"} 2\n"));
        t.server.shutdown().await;
    });
}

/// Two real Syncthing devices join our relay and, knowing each other
/// only at its URI, connect through it and sync a folder: the relay pipes
/// their end-to-end TLS untouched.
#[test]
fn two_syncthing_devices_sync_through_our_relay() {
    use ferrosync_tests::syncthing::{write_files, FolderType, Listen, Options, Syncthing};
    let Some(binary) = ferrosync_tests::require("syncthing", "syncthing") else {
        return;
    };
    let rt = rt();
    let t = rt.block_on(spawn());
    let uri = t.server.uri();
    let start = || {
        Syncthing::start(Options {
            binary: binary.clone(),
            listen: Listen::Tcp,
            relay: Some(uri.clone()),
            ..Options::default()
        })
    };
    let (a, mut b) = (start(), start());
    let joined = ferrosync_tests::poll(Duration::from_secs(60), || {
        (status(&t.server)["numProxies"] == 2).then_some(())
    });
    assert!(
        joined.is_some(),
        "Syncthing did not join: {}",
        a.log_tail(40)
    );
    let (ra, rb) = (a.scratch().join("f"), b.scratch().join("f"));
    std::fs::create_dir_all(&ra).expect("mkdir");
    write_files(&ra, &[("through-the-relay.txt", b"relayed")]);
    a.add_device(b.device_id(), "b", &[&uri]);
    b.add_device(a.device_id(), "a", &[&uri]);
    a.add_folder("f", &ra, &[b.device_id()], FolderType::SendReceive);
    b.add_folder("f", &rb, &[a.device_id()], FolderType::SendReceive);
    // Syncthing dials at start; a relay dial that failed waits minutes.
    b.restart();
    let c = b.wait_connected(a.device_id(), Instant::now() + Duration::from_secs(90));
    assert!(
        c["type"].as_str().is_some_and(|t| t.starts_with("relay")),
        "not through the relay: {c}"
    );
    let synced = ferrosync_tests::poll(Duration::from_secs(60), || {
        (std::fs::read(rb.join("through-the-relay.txt")).ok()? == b"relayed").then_some(())
    });
    assert!(synced.is_some(), "not synced: {}", b.log_tail(40));
    assert!(status(&t.server)["bytesProxied"].as_u64() > Some(1000));
    a.stop();
    b.stop();
    rt.block_on(t.server.shutdown());
}

/// The per-session rate limit holds a session to its rate (after a burst
/// of one second's worth), and 200 sessions at once all carry their bytes.
#[test]
fn the_rate_limit_holds_and_200_sessions_run_at_once() {
    rt().block_on(async {
        const RATE: u64 = 2 << 20;
        let t = spawn_with(|c| c.per_session_rate = RATE).await;
        let addr = t.server.addr();
        let p = session_pair(addr).await.expect("session");
        let (mut a, mut b) = (p.joined, p.dialer);
        let data = vec![1u8; 6 << 20];
        let started = Instant::now();
        let w = tokio::spawn(async move { a.write_all(&data).await.map(|_| a) });
        let mut got = vec![0u8; 6 << 20];
        tokio::time::timeout(Duration::from_secs(30), b.read_exact(&mut got))
            .await
            .expect("in time")
            .expect("read");
        let took = started.elapsed();
        let _ = w.await;
        let rate = (6u64 << 20) as f64 / took.as_secs_f64() / (1 << 20) as f64;
        eprintln!("6 MiB through a 2 MiB/s session: {took:?} ({rate:.2} MiB/s)");
        // 2 MiB of burst, then 4 MiB at 2 MiB/s: at least 2 s.
        assert!(
            took >= Duration::from_millis(1900),
            "limit not enforced: {took:?}"
        );
        t.server.shutdown().await;

        let t = spawn().await;
        let addr = t.server.addr();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..200u32 {
            tasks.spawn(async move {
                let p = session_pair(addr).await.expect("session");
                let (mut a, mut b, control) = (p.joined, p.dialer, p.control);
                let msg = format!("session {i}").into_bytes();
                a.write_all(&msg).await.expect("write");
                let mut got = vec![0u8; msg.len()];
                b.read_exact(&mut got).await.expect("read");
                assert_eq!(got, msg);
                (a, b, control)
            });
        }
        let mut open = Vec::new();
        while let Some(r) = tasks.join_next().await {
            open.push(r.expect("session"));
        }
        assert_eq!(status(&t.server)["numActiveSessions"], 200);
        drop(open);
        t.server.shutdown().await;
    });
}

/// The global rate limit holds two sessions together to its rate.
#[test]
fn the_global_rate_limit_holds_all_sessions_together() {
    rt().block_on(async {
        const RATE: u64 = 2 << 20;
        let t = spawn_with(|c| c.global_rate = RATE).await;
        let addr = t.server.addr();
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..2 {
            tasks.spawn(async move {
                let p = session_pair(addr).await.expect("session");
                let (mut a, mut b, _control) = (p.joined, p.dialer, p.control);
                let data = vec![2u8; 3 << 20];
                let w = tokio::spawn(async move { a.write_all(&data).await.map(|_| a) });
                let mut got = vec![0u8; 3 << 20];
                tokio::time::timeout(Duration::from_secs(30), b.read_exact(&mut got))
                    .await
                    .expect("in time")
                    .expect("read");
                let _ = w.await;
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("session");
        }
        let took = started.elapsed();
        eprintln!("2 x 3 MiB through a 2 MiB/s relay: {took:?}");
        // 2 MiB of burst, then 4 MiB at 2 MiB/s over both: at least 2 s.
        assert!(
            took >= Duration::from_millis(1900),
            "limit not enforced: {took:?}"
        );
        t.server.shutdown().await;
    });
}
