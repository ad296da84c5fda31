//! The local API: every documented operation is served and refuses
//! strangers; cookie sessions need their CSRF token; a GUI beyond
//! loopback needs a password; events, changes and metrics follow a sync;
//! every CLI command has its API operation; schemathesis finds nothing.

use std::collections::BTreeSet;
use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use ferrosync_tests::daemon::{folder, Daemon};
use ferrosync_tests::http::{request, Reply};
use ferrosync_tests::pair::Pair;
use ferrosync_tests::{poll, pytools, Device};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);
const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// One device with folder "f" (a file in it), running.
fn one_device(name: &str) -> (Device, std::path::PathBuf) {
    let (dev, _) = Device::on_loopback(name);
    let root = dev.scratch().join("data");
    fs::create_dir_all(&root).expect("mkdir");
    fs::write(root.join("a.txt"), "alpha").expect("write");
    dev.ok(&["folder", "add", "f", root.to_str().expect("utf-8")]);
    (dev, root)
}

/// The API's base URL and key.
fn base(d: &Daemon) -> (String, String) {
    d.api("")
}

fn get(d: &Daemon, path: &str, headers: &[(&str, &str)]) -> Reply {
    request("GET", &format!("{}{path}", base(d).0), headers, None)
}

fn openapi(d: &Daemon) -> Value {
    let doc = get(d, "/rest/openapi.json", &[]);
    assert_eq!(doc.status, 200, "{doc:?}");
    doc.json()
}

/// Every (method, path) the document lists.
fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if item.get(m).is_some() {
                ops.push((m.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

/// `Cookie: COOKIE` and `extra`.
fn with_cookie<'a>(
    cookie: &'a str,
    extra: &[(&'static str, &'a str)],
) -> Vec<(&'static str, &'a str)> {
    let mut h = vec![("Cookie", cookie)];
    h.extend_from_slice(extra);
    h
}

/// A route the router does not know answers a bare 404 (no JSON error):
/// what tells "not served" apart from a handler's own 404.
fn not_served(r: &Reply) -> bool {
    r.status == 405 || (r.status == 404 && r.json()["error"].is_null())
}

/// The document lists every route, each is served, and every one but the
/// GUI's login calls and the document itself answers 401 without the key
/// or with a wrong one; what it answers with the key is documented and
/// never a server error.
#[test]
fn every_documented_operation_is_served_and_refuses_strangers() {
    let (dev, _) = one_device("api");
    let mut d = dev.start();
    d.wait_scanned("f");
    let (url, key) = base(&d);
    let doc = openapi(&d);
    let ops = operations(&doc);
    assert!(ops.len() >= 40, "{} operations documented", ops.len());

    let unknown = get(&d, "/rest/no-such-thing", &[("X-API-Key", &key)]);
    assert!(not_served(&unknown), "{unknown:?}");

    for (method, path) in &ops {
        let op = &doc["paths"][path][method.to_lowercase()];
        let public = op["security"] == serde_json::json!([{}]);
        // Unknown names everywhere, so that nothing changes.
        let concrete = path
            .replace("{id}", "no-such")
            .replace("{n}", "1")
            .replace("{key}", "no.such");
        let target = format!("{url}{concrete}");
        let strangers: [&[(&str, &str)]; 3] = [
            &[],
            &[("X-API-Key", "wrong")],
            &[("Authorization", "Bearer wrong")],
        ];
        for headers in strangers {
            let r = request(method, &target, headers, None);
            if public {
                assert_ne!(r.status, 401, "{method} {path} is public: {r:?}");
            } else {
                assert_eq!(r.status, 401, "{method} {path} {headers:?}: {r:?}");
                assert!(r.json()["error"].is_string(), "{method} {path}: {r:?}");
            }
        }
        let r = request(method, &target, &[("X-API-Key", &key)], None);
        assert!(
            !not_served(&r),
            "{method} {path} documented, not served: {r:?}"
        );
        assert!(r.status < 500, "{method} {path}: {r:?}\nlog:\n{}", d.log());
        assert!(
            op["responses"].get(r.status.to_string()).is_some(),
            "{method} {path} answered an undocumented {}: {}",
            r.status,
            r.body
        );
    }

    // What a Prometheus scrape config can send.
    let bearer = format!("Bearer {key}");
    let scrape = get(&d, "/metrics", &[("Authorization", &bearer)]);
    assert_eq!(scrape.status, 200, "{scrape:?}");

    let foreign = get(
        &d,
        "/rest/status",
        &[("X-API-Key", &key), ("Host", "evil.example")],
    );
    assert_eq!(
        foreign.status, 403,
        "a foreign Host (DNS rebinding): {foreign:?}"
    );
}

/// A cookie session works for reading, but nothing changes without its
/// CSRF token; logging out ends it; a GUI password, once set, is needed.
#[test]
fn cookie_sessions_need_their_csrf_token_and_the_password() {
    let (dev, _) = one_device("cookie");
    let mut d = dev.start();
    d.wait_scanned("f");
    let (url, key) = base(&d);
    let login = |password: &str| {
        let body = serde_json::json!({ "password": password }).to_string();
        request("POST", &format!("{url}/rest/login"), &[], Some(&body))
    };
    let r = login("");
    assert_eq!(r.status, 200, "{r:?}");
    let cookie = r.set_cookie.clone().expect("a session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().expect("cookie").to_string();
    let csrf = r.json()["csrf"].as_str().expect("csrf").to_string();

    assert_eq!(
        get(&d, "/rest/status", &with_cookie(&cookie, &[])).status,
        200
    );
    let auth = get(&d, "/rest/auth", &with_cookie(&cookie, &[])).json();
    assert_eq!(
        (auth["logged_in"].clone(), auth["csrf"].clone()),
        (true.into(), csrf.clone().into())
    );

    let rescan = format!("{url}/rest/folders/f/rescan");
    for bad in [
        &with_cookie(&cookie, &[])[..],
        &with_cookie(&cookie, &[("X-CSRF-Token", "0000")])[..],
    ] {
        let r = request("POST", &rescan, bad, None);
        assert_eq!(r.status, 403, "no or a wrong CSRF token: {r:?}");
        assert!(r.body.contains("CSRF"), "{r:?}");
    }
    let r = request(
        "POST",
        &rescan,
        &with_cookie(&cookie, &[("X-CSRF-Token", &csrf)]),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.json()["scan"].is_u64(), "{r:?}");
    let r = request("POST", &rescan, &[("X-API-Key", &key)], None);
    assert_eq!(r.status, 200, "the key needs no CSRF token: {r:?}");

    let r = request(
        "POST",
        &format!("{url}/rest/logout"),
        &with_cookie(&cookie, &[("X-CSRF-Token", &csrf)]),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        get(&d, "/rest/status", &with_cookie(&cookie, &[])).status,
        401,
        "logged out"
    );

    dev.set_gui_password("correct horse");
    let auth = get(&d, "/rest/auth", &[]).json();
    assert_eq!(auth["password_required"], true, "{auth}");
    assert_eq!(login("").status, 401);
    assert_eq!(login("wrong").status, 401);
    let r = login("correct horse");
    assert_eq!(r.status, 200, "{r:?}");
    let cookie = r.set_cookie.expect("cookie");
    let cookie = cookie.split(';').next().expect("cookie");
    assert_eq!(get(&d, "/rest/status", &[("Cookie", cookie)]).status, 200);
    assert!(
        fs::read_to_string(dev.home().join("config.toml"))
            .expect("config")
            .contains("$argon2"),
        "the password is stored as an argon2 hash"
    );
}

/// A daemon asked to serve its API beyond loopback without a GUI
/// password refuses to start, saying what to do; with one it starts.
#[test]
fn an_api_beyond_loopback_needs_a_gui_password() {
    let (dev, _) = Device::on_loopback("exposed");
    dev.ok(&["config", "set", "api.address", "0.0.0.0:0"]);
    let mut child = dev
        .command()
        .arg("run")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let exited = poll(LIMIT, || child.try_wait().expect("wait"));
    let Some(status) = exited else {
        let _ = child.kill();
        panic!("the daemon started on 0.0.0.0 without a GUI password");
    };
    let out = child.wait_with_output().expect("output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!status.success(), "{err}");
    assert!(err.contains("ferrosync gui password"), "{err}");
    assert!(!dev.home().join("api-address").exists());

    let out = dev
        .command()
        .args(["gui", "password"])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(!out.status.success(), "an empty password is refused");

    dev.set_gui_password("hunter2 but longer");
    let d = dev.start();
    let (url, key) = base(&d);
    let r = request(
        "GET",
        &format!("{url}/rest/status"),
        &[("X-API-Key", &key)],
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(get(&d, "/rest/auth", &[]).json()["password_required"], true);
}

/// Reads B's events after `since` until `found` holds of the list read so
/// far (long polls of 5 s, never a sleep).
fn events_until(
    d: &Daemon,
    mut since: u64,
    what: &str,
    found: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let (_, key) = base(d);
    let mut seen = Vec::new();
    let got = poll(LIMIT, || {
        let r = get(
            d,
            &format!("/rest/events?since={since}&timeout=5"),
            &[("X-API-Key", &key)],
        );
        assert_eq!(r.status, 200, "{r:?}");
        for e in r.json().as_array().cloned().unwrap_or_default() {
            since = since.max(e["id"].as_u64().expect("id"));
            seen.push(e);
        }
        found(&seen).then_some(())
    });
    assert!(
        got.is_some(),
        "no {what} in events {seen:#?}\nlog:\n{}",
        d.log()
    );
    seen
}

fn has_event(events: &[Value], kind: &str, key: &str, value: &str) -> bool {
    events
        .iter()
        .any(|e| e["type"] == kind && e["data"][key] == value)
}

/// A file synced from A to B shows in B's event stream (device connected,
/// item started and finished, remote change applied), in both devices'
/// recent changes, and moves B's counters in `/metrics`, which parses
/// with Prometheus' own text parser.
#[test]
fn events_changes_and_metrics_follow_a_sync() {
    let p = Pair::new();
    fs::create_dir_all(&p.ra).expect("mkdir");
    let (da, db) = p.start();
    let (_, kb) = base(&db);
    let auth = [("X-API-Key", kb.as_str())];
    let early = events_until(&db, 0, "DeviceConnected", |e| {
        has_event(e, "DeviceConnected", "device", &p.a_id)
    });
    let since = early
        .iter()
        .filter_map(|e| e["id"].as_u64())
        .max()
        .unwrap_or(0);
    let metrics = pytools::has_module("prometheus_client", "prometheus_client");
    let before = metrics.then(|| pytools::parse_metrics(&get(&db, "/metrics", &auth).body));

    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(p.ra.join("m.bin"), &data).expect("write");
    da.api_post("/rest/folders/f/rescan");
    let events = events_until(&db, since, "ItemFinished and RemoteChangeApplied", |e| {
        has_event(e, "ItemFinished", "name", "m.bin")
            && has_event(e, "RemoteChangeApplied", "name", "m.bin")
    });
    assert!(
        has_event(&events, "ItemStarted", "name", "m.bin"),
        "{events:#?}"
    );
    assert_eq!(fs::read(p.rb.join("m.bin")).expect("synced"), data);

    let changes = db.api_get("/rest/changes");
    let change = changes
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "m.bin"))
        .unwrap_or_else(|| panic!("m.bin not in B's changes: {changes}"));
    assert_eq!(
        (change["origin"].as_str(), change["action"].as_str()),
        (Some(p.a_id.as_str()), Some("modified"))
    );
    let local = da.api_get("/rest/changes");
    assert!(
        local.as_array().is_some_and(|c| c
            .iter()
            .any(|c| c["name"] == "m.bin" && c["origin"] == "local")),
        "A's changes: {local}"
    );

    let anon = get(&db, "/metrics", &[]);
    assert_eq!(anon.status, 401, "{anon:?}");
    let Some(before) = before else { return };
    let text = get(&db, "/metrics", &auth).body;
    ferrosync_tests::docs::assert_metrics_documented(&text);
    let after = pytools::parse_metrics(&text);
    let value = |s: &[Value], name: &str, labels: &[(&str, &str)]| {
        pytools::sample(s, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in {s:#?}"))
    };
    let f = [("folder", "f")];
    let a = [("device", p.a_id.as_str())];
    let grew = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    assert!(grew("ferrosync_folder_pulled_bytes_total", &f) >= data.len() as f64);
    assert!(grew("ferrosync_device_received_bytes_total", &a) >= data.len() as f64);
    assert!(grew("ferrosync_device_sent_messages_total", &a) >= 1.0);
    assert_eq!(value(&after, "ferrosync_device_connected", &a), 1.0);
    assert_eq!(
        value(&after, "ferrosync_connections", &[("transport", "tcp")]),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "ferrosync_folder_files",
            &[("folder", "f"), ("scope", "local")]
        ),
        1.0
    );
    assert!(value(&after, "ferrosync_index_size_bytes", &[]) > 0.0);

    p.b.ok(&["config", "set", "api.metrics_without_auth", "true"]);
    assert_eq!(
        get(&db, "/metrics", &[]).status,
        200,
        "metrics opened to scrapers"
    );
}

/// What each CLI command does, as an API operation. `init` and `run` have
/// none: they make and start the daemon that serves the API.
const CLI_TO_API: &[(&str, &str)] = &[
    ("id", "GET /rest/id"),
    ("config get", "GET /rest/config"),
    ("config set", "PUT /rest/config/{key}"),
    ("device add", "POST /rest/devices"),
    ("device list", "GET /rest/devices"),
    ("device remove", "DELETE /rest/devices/{id}"),
    ("folder add", "POST /rest/folders"),
    ("folder set", "PATCH /rest/folders/{id}"),
    ("folder share", "POST /rest/folders/{id}/share"),
    ("folder remove", "DELETE /rest/folders/{id}"),
    ("folder list", "GET /rest/folders"),
    ("folder rescan", "POST /rest/folders/{id}/rescan"),
    ("folder verify", "GET /rest/folders/{id}/verify"),
    ("folder override", "POST /rest/folders/{id}/override"),
    ("folder revert", "POST /rest/folders/{id}/revert"),
    ("folder pause", "POST /rest/folders/{id}/pause"),
    ("folder resume", "POST /rest/folders/{id}/resume"),
    ("pending", "GET /rest/pending"),
    ("versions", "GET /rest/folders/{id}/versions"),
    ("restore", "POST /rest/folders/{id}/restore"),
    ("doctor", "GET /rest/doctor"),
    ("gui password", "PUT /rest/gui/password"),
    ("status", "GET /rest/status"),
];
const NO_API: &[&str] = &["init", "run"];

/// The leaf commands of `ferrosync --help`, walked down every level.
fn cli_leaves(dev: &Device, prefix: &[&str], out: &mut Vec<String>) {
    let mut args = prefix.to_vec();
    args.push("--help");
    let help = dev.ok(&args);
    let subs: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    if subs.is_empty() {
        out.push(prefix.join(" "));
    }
    for s in &subs {
        let mut p = prefix.to_vec();
        p.push(s);
        cli_leaves(dev, &p, out);
    }
}

/// Every command the CLI lists has an operation in the API's document,
/// and the operations do what the commands do: the CLI reads back what
/// the API changed.
#[test]
fn every_cli_command_is_reachable_through_the_api() {
    let (dev, _) = one_device("walk");
    let mut d = dev.start();
    d.wait_scanned("f");
    let mut leaves = Vec::new();
    cli_leaves(&dev, &[], &mut leaves);
    assert!(leaves.len() >= 20, "{leaves:?}");
    let documented: BTreeSet<String> = operations(&openapi(&d))
        .into_iter()
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    for leaf in &leaves {
        if NO_API.contains(&leaf.as_str()) {
            continue;
        }
        let (_, op) = CLI_TO_API
            .iter()
            .find(|(c, _)| c == leaf)
            .unwrap_or_else(|| panic!("CLI command {leaf:?} has no API operation in CLI_TO_API"));
        assert!(
            documented.contains(*op),
            "{leaf:?} -> {op} is not in the API document"
        );
    }
    for (c, _) in CLI_TO_API {
        assert!(
            leaves.iter().any(|l| l == c),
            "CLI_TO_API lists {c:?}, which the CLI lacks"
        );
    }

    // The effects, made through the API and read back through the CLI.
    let (url, key) = base(&d);
    let call = |method: &str, path: &str, body: Value| {
        let body = (!body.is_null()).then(|| body.to_string());
        let r = request(
            method,
            &format!("{url}{path}"),
            &[("X-API-Key", &key)],
            body.as_deref(),
        );
        assert!((200..300).contains(&r.status), "{method} {path}: {r:?}");
        r.json()
    };
    let (_, peer) = Device::init("peer");
    call(
        "POST",
        "/rest/devices",
        serde_json::json!({"id": peer, "name": "peer"}),
    );
    assert!(dev.ok(&["device", "list"]).contains(&peer));
    let g = dev.scratch().join("g");
    call(
        "POST",
        "/rest/folders",
        serde_json::json!({"id": "g", "path": g, "create": true}),
    );
    assert!(g.is_dir());
    call(
        "PATCH",
        "/rest/folders/g",
        serde_json::json!({"versioning": "simple:3", "type": "sendonly"}),
    );
    call(
        "POST",
        "/rest/folders/g/share",
        serde_json::json!({"device": peer}),
    );
    let listed: Value = serde_json::from_str(&dev.ok(&["folder", "list", "--json"])).expect("json");
    let g_listed = listed
        .as_array()
        .and_then(|l| l.iter().find(|f| f["id"] == "g"))
        .cloned();
    let g_listed = g_listed.unwrap_or_else(|| panic!("g not listed: {listed}"));
    assert!(g_listed.to_string().contains("simple"), "{g_listed}");
    assert!(g_listed.to_string().contains(&peer), "{g_listed}");
    assert!(
        g_listed.to_string().to_lowercase().contains("sendonly")
            || g_listed.to_string().contains("send-only"),
        "{g_listed}"
    );
    call("POST", "/rest/folders/g/pause", Value::Null);
    d.wait_until("g paused", LIMIT, |s| {
        folder(s, "g").is_some_and(|f| f["state"] == "paused")
    });
    call("POST", "/rest/folders/g/resume", Value::Null);
    d.wait_until("g resumed", LIMIT, |s| {
        folder(s, "g").is_some_and(|f| f["state"] != "paused")
    });
    call(
        "PUT",
        "/rest/config/name",
        serde_json::json!({"value": "renamed"}),
    );
    assert_eq!(dev.ok(&["config", "get", "name"]).trim(), "renamed");
    call(
        "PUT",
        "/rest/gui/password",
        serde_json::json!({"password": "from the api"}),
    );
    let config = fs::read_to_string(dev.home().join("config.toml")).expect("config");
    assert!(config.contains("$argon2"), "{config}");
    call("DELETE", "/rest/folders/g", Value::Null);
    assert!(!dev.ok(&["folder", "list", "--json"]).contains("\"g\""));
    call("DELETE", &format!("/rest/devices/{peer}"), Value::Null);
    assert!(!dev.ok(&["device", "list"]).contains(&peer));
    assert_eq!(
        call("GET", "/rest/id", Value::Null)["id"],
        dev.ok(&["id"]).trim()
    );
}

/// schemathesis generates requests from the document (valid and not) for
/// every operation, first with made-up names, then on a real folder; no
/// server error, and every answer matches the document. Not run: what
/// creates folders where a generated path says (`POST /rest/folders`, a
/// pending folder's accept) and removing the folder under test; other
/// tests cover those.
#[test]
fn schemathesis_finds_no_failure() {
    if !pytools::has_module("schemathesis", "schemathesis") {
        return;
    }
    let (dev, root) = one_device("fuzzed");
    dev.ok(&["folder", "set", "f", "--versioning", "simple:3"]);
    let mut d = dev.start();
    d.wait_scanned("f");
    let (url, key) = base(&d);
    let config = dev.scratch().join("schemathesis.toml");
    fs::write(
        &config,
        "[[operations]]\n\
         include-path-regex = '^/rest/folders/\\{id\\}'\n\
         parameters = { \"path.id\" = \"f\", \"query.path\" = \"a.txt\" }\n",
    )
    .expect("config");
    let run = |fixed: bool| {
        let mut c = Command::new("python3");
        c.args(["-m", "schemathesis.cli"]);
        if fixed {
            c.arg("--config-file").arg(&config);
        }
        c.args(["run", &format!("{url}/rest/openapi.json")])
            .args(["-H", &format!("X-API-Key: {key}")])
            .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"])
            .args(["--exclude-path", "/rest/folders", "--exclude-path", "/rest/pending/folders/{id}/accept"])
            .args(["--max-examples", "25", "-w", "1", "--request-timeout", "70", "--seed", "1"])
            .args(["--phases", "examples,coverage,fuzzing"])
            .env("NO_COLOR", "1")
            .current_dir(dev.scratch());
        if fixed {
            c.args([
                "--exclude-method",
                "DELETE",
                "--exclude-path-regex",
                "^/rest/(devices|pending|gui|config)",
            ]);
        }
        let out = c.output().expect("run schemathesis");
        assert!(
            out.status.success(),
            "schemathesis ({}) found failures:\n{}\n{}\ndaemon log:\n{}",
            if fixed { "folder f" } else { "made-up names" },
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            d.log()
        );
    };
    run(false);
    run(true);
    assert!(root.is_dir(), "the folder survived");
    assert!(d.status().is_some(), "the daemon survived");
}
