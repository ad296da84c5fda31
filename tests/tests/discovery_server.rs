//! The global discovery server over real sockets: announce and lookup as
//! Syncthing's clients do them, every kind of bad request, the rate limit,
//! metrics, restarts (sled) and two front ends on one real Redis.

use std::process::Command;
use std::time::Duration;

use ferrosync_discovery::limit::RateLimit;
use ferrosync_discovery::store::StoreConfig;
use ferrosync_discovery::testing::{announce, lookup, request, spawn, spawn_with, ClientCert};
use ferrosync_tests::servers::{DiscoveryProcess, Redis};
use ferrosync_tests::{bin, describe, poll, require};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn retry_after(r: &ferrosync_discovery::testing::Reply) -> u64 {
    r.header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After: {r:?}"))
}

/// A device announces (addresses fixed up: unusable ones dropped) and is
/// found by its ID; its next announcement replaces the addresses, and the
/// server's certificate is the ID it reports.
#[test]
fn an_announcement_is_found_and_replaced_by_the_next() {
    rt().block_on(async {
        let t = spawn().await;
        let addr = t.server.addr();
        let dev = ClientCert::generate();
        let r = announce(
            addr,
            &dev,
            &[
                "tcp://198.51.100.2:22000",
                "quic://192.0.2.1:22000",
                "tcp://0.0.0.0:22001",
                "tcp://127.0.0.1:22000",
            ],
        )
        .await
        .expect("announce");
        assert_eq!(r.status, 204, "{r:?}");
        let again: u64 = r
            .header("reannounce-after")
            .and_then(|v| v.parse().ok())
            .expect("Reannounce-After");
        assert!((3300..3600).contains(&again), "{again}");
        assert_eq!(r.server_id, t.server.id());

        let r = lookup(addr, &dev.id).await.expect("lookup");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        let j = r.json();
        assert_eq!(
            j["addresses"],
            serde_json::json!(["quic://192.0.2.1:22000", "tcp://198.51.100.2:22000"])
        );
        assert!(j["seen"].as_str().is_some_and(|s| s.ends_with('Z')), "{j}");

        let r = announce(addr, &dev, &["tcp://203.0.113.5:22000"])
            .await
            .expect("announce");
        assert_eq!(r.status, 204);
        let j = lookup(addr, &dev.id).await.expect("lookup").json();
        assert_eq!(
            j["addresses"],
            serde_json::json!(["tcp://203.0.113.5:22000"]),
            "replaced, no stale address left"
        );
        t.server.shutdown().await;
    });
}

/// Every kind of bad request gets its status code and changes nothing,
/// and the server goes on serving. Proxy headers are never believed: a
/// client without a certificate cannot announce by sending one in a
/// header, and one with a certificate announces only for itself.
#[test]
fn bad_requests_get_their_status_and_change_nothing() {
    rt().block_on(async {
        let t = spawn().await;
        let addr = t.server.addr();
        let dev = ClientCert::generate();
        let victim = ClientCert::generate();
        let json = |s: &str| s.as_bytes().to_vec();
        let post = |cert: Option<&'static ClientCert>,
                    headers: Vec<(&'static str, String)>,
                    body: Vec<u8>| async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            request(addr, cert, "POST", "/v2/", &h, body)
                .await
                .expect("request")
        };
        let dev: &'static ClientCert = Box::leak(Box::new(dev));
        let victim_pem = victim.cert_pem.replace('\n', " ");
        let ok_body = json(r#"{"addresses":["tcp://198.51.100.7:22000"]}"#);

        // No client certificate, with or without spoofing headers.
        for headers in [
            vec![],
            vec![("x-ssl-cert", victim_pem.clone())],
            vec![("x-forwarded-tls-client-cert", "AAAA".to_string())],
            vec![("x-tls-client-cert-der-base64", "AAAA".to_string())],
        ] {
            let r = post(None, headers, ok_body.clone()).await;
            assert_eq!(r.status, 403, "{r:?}");
            retry_after(&r);
        }
        // A certificate plus headers naming another device: only the
        // certificate counts.
        let r = post(
            Some(dev),
            vec![
                ("x-ssl-cert", victim_pem.clone()),
                ("x-forwarded-for", "203.0.113.99".to_string()),
            ],
            json(r#"{"addresses":["tcp://0.0.0.0:22000","tcp://198.51.100.8:1"]}"#),
        )
        .await;
        assert_eq!(r.status, 204, "{r:?}");
        assert_eq!(lookup(addr, &victim.id).await.expect("lookup").status, 404);
        let j = lookup(addr, &dev.id).await.expect("lookup").json();
        assert_eq!(
            j["addresses"],
            serde_json::json!(["tcp://198.51.100.8:1"]),
            "X-Forwarded-For is not the source: the unspecified host (from loopback) is dropped"
        );

        // Bodies: garbage, wrong shapes, nothing usable, too large.
        for body in [
            json("{not json"),
            json("[1,2,3]"),
            json(r#"{"addresses":"tcp://198.51.100.9:1"}"#),
            json(r#"{"addresses":[]}"#),
            json(r#"{"addresses":["tcp://127.0.0.1:22000","nonsense"]}"#),
            json(""),
        ] {
            let r = post(Some(dev), vec![], body.clone()).await;
            assert_eq!(r.status, 400, "{:?}: {r:?}", String::from_utf8_lossy(&body));
            retry_after(&r);
        }
        let huge = format!(r#"{{"addresses":["{}"]}}"#, "x".repeat(200 << 10));
        let r = post(Some(dev), vec![], huge.into_bytes()).await;
        assert_eq!(r.status, 413, "{r:?}");

        // Lookups: malformed or missing IDs, an unknown one.
        for path in [
            "/v2/?device=NOT-A-DEVICE-ID",
            "/v2/?device=",
            "/v2/",
            "/v2/?device=%ZZ",
        ] {
            let r = request(addr, None, "GET", path, &[], Vec::new())
                .await
                .expect("get");
            assert_eq!(r.status, 400, "{path}: {r:?}");
            retry_after(&r);
        }
        let r = lookup(addr, &ClientCert::generate().id)
            .await
            .expect("lookup");
        assert_eq!(r.status, 404);
        assert!((60..120).contains(&retry_after(&r)));
        let r = request(addr, Some(dev), "PUT", "/v2/", &[], ok_body.clone())
            .await
            .expect("put");
        assert_eq!(r.status, 405);
        let r = request(addr, None, "GET", "/ping", &[], Vec::new())
            .await
            .expect("ping");
        assert_eq!(r.status, 204);

        // Nothing above changed the one good record, and it still serves.
        let j = lookup(addr, &dev.id).await.expect("lookup").json();
        assert_eq!(j["addresses"], serde_json::json!(["tcp://198.51.100.8:1"]));

        let m = metrics(&t.server);
        ferrosync_tests::docs::assert_metrics_documented(&m);
        for line in [
            "ferrosync_discovery_announces_total{result=\"success\"} 1",
            "ferrosync_discovery_announces_total{result=\"no_certificate\"} 4",
            "ferrosync_discovery_announces_total{result=\"bad_request\"} 6",
            "ferrosync_discovery_refusals_total{reason=\"too_large\"} 1",
            "ferrosync_discovery_lookups_total{result=\"bad_request\"} 4",
        ] {
            assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
        }
        t.server.shutdown().await;
    });
}

fn metrics(server: &ferrosync_discovery::Server) -> String {
    let url = format!("http://{}/metrics", server.metrics_addr().expect("metrics"));
    ureq::get(&url)
        .call()
        .expect("metrics")
        .body_mut()
        .read_to_string()
        .expect("body")
}

/// A source over its rate gets 429 with a Retry-After, counted in the
/// metrics, and the server keeps answering others.
#[test]
fn a_client_over_the_rate_limit_gets_429() {
    rt().block_on(async {
        let t = spawn_with(|c| c.rate_limit = Some(RateLimit::per_second(1.0))).await;
        let addr = t.server.addr();
        let id = ClientCert::generate().id;
        let mut codes = Vec::new();
        for _ in 0..15 {
            codes.push(lookup(addr, &id).await.expect("lookup").status);
        }
        assert_eq!(codes.iter().filter(|&&c| c == 404).count(), 10, "{codes:?}");
        let r = lookup(addr, &id).await.expect("lookup");
        assert_eq!(r.status, 429);
        assert!(retry_after(&r) >= 1);
        let m = metrics(&t.server);
        assert!(
            m.contains("ferrosync_discovery_refusals_total{reason=\"rate_limited\"} 6\n"),
            "{m}"
        );
        t.server.shutdown().await;
    });
}

/// The binary prints the URL to paste into `discovery.global` (its ID is
/// what `id` prints and the certificate it presents), and a restart loses
/// no announcement.
#[test]
fn the_binary_prints_its_url_and_keeps_announcements_across_restarts() {
    let data = tempfile::tempdir().expect("tempdir");
    let out = Command::new(bin("ferrosync-discovery"))
        .arg("--data")
        .arg(data.path())
        .arg("id")
        .output()
        .expect("id");
    assert!(out.status.success(), "{}", describe(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let server = DiscoveryProcess::start(data.path(), "127.0.0.1:0", None, &[]);
    assert!(
        server.url.ends_with(&format!("/?id={id}")),
        "{} vs {id}",
        server.url
    );
    let dev = ClientCert::generate();
    let rt = rt();
    let r = rt
        .block_on(announce(server.addr(), &dev, &["tcp://198.51.100.3:22000"]))
        .expect("announce");
    assert_eq!(r.status, 204);
    assert_eq!(r.server_id.to_string(), id);
    server.stop();

    let server = DiscoveryProcess::start(data.path(), "127.0.0.1:0", None, &[]);
    let r = rt.block_on(lookup(server.addr(), &dev.id)).expect("lookup");
    assert_eq!(r.status, 200, "lost across a restart: {r:?}");
    assert_eq!(
        r.json()["addresses"],
        serde_json::json!(["tcp://198.51.100.3:22000"])
    );
    server.stop();
}

/// Two front ends on one Redis: what one stores the other finds, and a
/// third started later too (the front ends keep no state).
#[test]
fn two_front_ends_on_one_redis_share_announcements() {
    let Some(redis) = Redis::start() else { return };
    let store = StoreConfig::Redis(redis.url());
    rt().block_on(async {
        let a = spawn_with(|c| c.store = store.clone()).await;
        let b = spawn_with(|c| c.store = store.clone()).await;
        let dev = ClientCert::generate();
        let r = announce(a.server.addr(), &dev, &["tcp://198.51.100.4:22000"])
            .await
            .expect("announce");
        assert_eq!(r.status, 204, "{r:?}");
        let r = lookup(b.server.addr(), &dev.id).await.expect("lookup");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.json()["addresses"],
            serde_json::json!(["tcp://198.51.100.4:22000"])
        );
        a.server.shutdown().await;
        let c = spawn_with(|c| c.store = store.clone()).await;
        assert_eq!(
            lookup(c.server.addr(), &dev.id)
                .await
                .expect("lookup")
                .status,
            200
        );
        b.server.shutdown().await;
        c.server.shutdown().await;
    });
}

/// A real Syncthing (in a network namespace, so its source address is not
/// loopback) announces to our server with the `?id=` pin, and a lookup
/// finds the address it listens on.
#[test]
fn a_syncthing_device_announces_to_our_server_and_is_found() {
    use ferrosync_tests::netns::Lab;
    use ferrosync_tests::syncthing::{Listen, Options, Syncthing};
    let Some(binary) = require("syncthing", "syncthing") else {
        return;
    };
    let Some(mut lab) = Lab::new() else { return };
    let mut seg = lab.segment();
    let host = lab.host(&mut seg, "st");
    let rt = rt();
    let t = rt.block_on(spawn_with(|c| {
        c.listen = std::net::SocketAddr::from((seg.root_ip(), 0));
    }));
    let st = Syncthing::start(Options {
        binary,
        listen: Listen::Tcp,
        netns: Some(host),
        global_discovery: Some(format!(
            "https://{}/v2/?id={}",
            t.server.addr(),
            t.server.id()
        )),
        ..Options::default()
    });
    let id: proto::DeviceId = st.device_id().parse().expect("Syncthing's ID");
    let found = poll(Duration::from_secs(30), || {
        let r = rt.block_on(lookup(t.server.addr(), &id)).ok()?;
        (r.status == 200).then(|| r.json())
    });
    let Some(found) = found else {
        panic!("Syncthing never announced; its log:\n{}", st.log_tail(60));
    };
    let want = st.tcp_address().expect("tcp listener");
    assert_eq!(found["addresses"], serde_json::json!([want]), "{found}");
    assert!(st.stop().success(), "{}", st.log_tail(40));
    rt.block_on(t.server.shutdown());
}

/// Behind a reverse proxy (`--behind-proxy`), the proxy and only the proxy
/// says who the client is: the last `X-Forwarded-For` entry (the one it
/// added) and its client-certificate header. A server whose proxy is
/// elsewhere refuses whatever does not come through it.
#[test]
fn behind_a_proxy_only_the_proxy_speaks_for_clients() {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    );
    let rt = rt();
    let t = rt.block_on(spawn_with(|c| c.behind_proxy = Some([127, 0, 0, 1].into())));
    let url = format!("http://{}/v2/", t.server.addr());
    let dev = ClientCert::generate();
    // nginx's $ssl_client_escaped_cert: the PEM, URL-escaped.
    let escaped = dev.cert_pem.trim().replace('\n', "%0A");
    let body = r#"{"addresses":["tcp://0.0.0.0:22000"]}"#;
    let post = |headers: &[(&str, &str)]| {
        let mut req = agent.post(&url).header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send(body).expect("post").status().as_u16()
    };
    let spoofed_then_real = "203.0.113.66, 198.51.100.5";
    assert_eq!(
        post(&[
            ("x-forwarded-for", spoofed_then_real),
            ("x-client-port", "4000"),
            ("x-ssl-cert", &escaped)
        ]),
        204
    );
    let mut r = agent
        .get(&format!("{url}?device={}", dev.id))
        .header("x-forwarded-for", "198.51.100.9")
        .call()
        .expect("get");
    assert_eq!(r.status().as_u16(), 200);
    let j: serde_json::Value =
        serde_json::from_str(&r.body_mut().read_to_string().expect("body")).expect("json");
    assert_eq!(
        j["addresses"],
        serde_json::json!(["tcp://198.51.100.5:22000"]),
        "the proxy's entry is the source"
    );
    assert_eq!(
        post(&[("x-forwarded-for", "198.51.100.5")]),
        403,
        "no certificate header"
    );
    assert_eq!(post(&[("x-ssl-cert", &escaped)]), 400, "no client address");
    rt.block_on(t.server.shutdown());

    let t = rt.block_on(spawn_with(|c| {
        c.behind_proxy = Some([192, 0, 2, 99].into())
    }));
    let url = format!("http://{}/v2/", t.server.addr());
    let status = agent
        .post(&url)
        .header("x-forwarded-for", "198.51.100.5")
        .header("x-ssl-cert", &escaped)
        .send(body)
        .expect("post")
        .status()
        .as_u16();
    assert_eq!(status, 403, "not from the proxy");
    rt.block_on(t.server.shutdown());
}

/// The STUN responder answers a Binding request with the address it came
/// from (what a NAT maps a QUIC port to), ignores anything else, stops
/// answering a source over the rate limit, and counts both.
#[test]
fn stun_tells_a_client_where_it_is_seen_from() {
    rt().block_on(async {
        let t = spawn_with(|c| {
            c.stun = Some("127.0.0.1:0".parse().expect("addr"));
            c.metrics = Some("127.0.0.1:0".parse().expect("addr"));
            c.rate_limit = Some(RateLimit::per_second(1.0));
        })
        .await;
        let server = t.server.stun_addr().expect("STUN listening");
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let me = client.local_addr().expect("addr");
        let mut buf = [0u8; 1500];
        // Garbage and a QUIC-looking packet first: no answer to either, so
        // the first answer is the Binding request's.
        client.send_to(b"hello", server).await.expect("send");
        let mut quic = proto::stun::binding_request(&[9; 12]);
        quic[0] = 0xC0;
        client.send_to(&quic, server).await.expect("send");
        let mut answered = 0;
        for i in 0..12u8 {
            let tx = [i; 12];
            client
                .send_to(&proto::stun::binding_request(&tx), server)
                .await
                .expect("send");
            let got = tokio::time::timeout(Duration::from_millis(500), client.recv(&mut buf)).await;
            match got {
                Ok(Ok(n)) => {
                    assert_eq!(proto::stun::parse_binding_response(&buf[..n], &tx), Ok(me));
                    answered += 1;
                }
                // Over the limit (a burst of 10): no answer.
                _ => break,
            }
        }
        assert_eq!(answered, 10);
        let m = metrics(&t.server);
        assert!(
            m.contains("ferrosync_discovery_stun_requests_total{result=\"answered\"} 10\n"),
            "{m}"
        );
        assert!(
            m.contains("ferrosync_discovery_stun_requests_total{result=\"rate_limited\"} 1\n"),
            "{m}"
        );
        t.server.shutdown().await;
    });
}
