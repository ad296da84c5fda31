use ferrosync_tests::Device;
use serde_json::Value;

const DOC_ID: &str = "MFZWI3D-BONSGYC-YLTMRWG-C43ENR5-QXGZDMM-FZWI3DP-BONSGYY-LTMRWAD";

#[test]
fn init_prints_one_id_and_never_overwrites_it() {
    let (d, id) = Device::init("alpha");
    assert_eq!(id.len(), 63, "{id}");
    assert_eq!(d.ok(&["id"]).trim(), id);
    let cert = std::fs::read(d.home().join("cert.pem")).expect("cert");
    let key = std::fs::read(d.home().join("key.pem")).expect("key");

    let out = d.run(&["init", "--name", "beta"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), id);
    assert!(String::from_utf8_lossy(&out.stderr).contains("keeping it"));
    assert_eq!(
        std::fs::read(d.home().join("cert.pem")).expect("cert"),
        cert
    );
    assert_eq!(std::fs::read(d.home().join("key.pem")).expect("key"), key);
    assert_eq!(d.ok(&["config", "get", "name"]).trim(), "beta");

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(d.home().join("key.pem"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn home_comes_from_the_environment_too() {
    let (d, id) = Device::init("env");
    let out = std::process::Command::new(ferrosync_tests::bin("ferrosync"))
        .arg("id")
        .env("FERROSYNC_HOME", d.home())
        .output()
        .expect("spawn");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), id);
}

#[test]
fn commands_before_init_say_what_to_do() {
    let d = Device::new();
    for args in [
        &["id"][..],
        &["config", "get", "name"],
        &["device", "list"],
        &["folder", "list"],
    ] {
        let line = d.fails(args);
        assert!(line.contains("init"), "{args:?}: {line}");
    }
}

#[test]
fn config_keys_set_and_get() {
    let (d, _) = Device::init("c");
    for (k, v) in [
        ("listen", "tcp://127.0.0.1:22001,quic://127.0.0.1:22001"),
        ("api.address", "127.0.0.1:18384"),
        ("discovery.local", "false"),
        ("discovery.global", ""),
        ("relays", ""),
        ("nat", "false"),
        ("name", "renamed"),
    ] {
        d.ok(&["config", "set", k, v]);
        assert_eq!(d.ok(&["config", "get", k]).trim_end_matches('\n'), v, "{k}");
    }
}

#[test]
fn devices_and_folders() {
    let (d, own) = Device::init("a");
    let (_, other) = Device::init("b");
    d.ok(&[
        "device",
        "add",
        &other,
        "--name",
        "bee",
        "--address",
        "tcp://127.0.0.1:22002",
    ]);
    // Syncthing's spellings of an ID are accepted and stored canonically.
    d.ok(&["device", "add", &DOC_ID.to_lowercase().replace('-', "")]);
    let list: Value = serde_json::from_str(&d.ok(&["device", "list", "--json"])).expect("json");
    assert_eq!(list[0]["id"], other.as_str());
    assert_eq!(list[0]["name"], "bee");
    assert_eq!(list[0]["addresses"][0], "tcp://127.0.0.1:22002");
    assert_eq!(list[1]["id"], DOC_ID);
    assert_eq!(list[1]["addresses"][0], "dynamic");
    assert!(d.ok(&["device", "list"]).contains("bee"));

    let root = d.scratch().join("photos");
    std::fs::create_dir(&root).expect("mkdir");
    let root_s = root.to_str().expect("utf-8");
    d.ok(&[
        "folder",
        "add",
        "photos",
        root_s,
        "--type",
        "send-only",
        "--share",
        &other,
    ]);
    assert!(d
        .ok(&["folder", "share", "photos", DOC_ID])
        .contains("shared"));
    assert!(d
        .ok(&["folder", "share", "photos", DOC_ID])
        .contains("already"));
    let folders: Value = serde_json::from_str(&d.ok(&["folder", "list", "--json"])).expect("json");
    assert_eq!(folders[0]["id"], "photos");
    assert_eq!(folders[0]["type"], "send-only");
    assert_eq!(
        folders[0]["path"],
        root.canonicalize().expect("canon").to_str().expect("utf-8")
    );
    assert_eq!(folders[0]["devices"].as_array().expect("array").len(), 2);

    let out = d.ok(&["device", "remove", &other]);
    assert!(out.contains("unshared folder \"photos\""), "{out}");
    let folders: Value = serde_json::from_str(&d.ok(&["folder", "list", "--json"])).expect("json");
    assert_eq!(folders[0]["devices"], serde_json::json!([DOC_ID]));
    assert!(!d.ok(&["device", "list"]).contains(&own));
}

#[test]
fn bad_input_fails_with_one_line_and_changes_nothing() {
    let (d, own) = Device::init("a");
    let (_, other) = Device::init("b");
    d.ok(&["device", "add", &other]);
    let root = d.scratch().join("docs");
    std::fs::create_dir(&root).expect("mkdir");
    let root_s = root.to_str().expect("utf-8");
    d.ok(&["folder", "add", "docs", root_s]);
    let file = d.scratch().join("file.txt");
    std::fs::write(&file, "x").expect("write");
    let wrong_check = DOC_ID.replace("LTMRWAD", "LTMRWAE");
    let spare = d.scratch().join("spare");
    std::fs::create_dir(&spare).expect("mkdir");
    let spare = spare.to_str().expect("utf-8");

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["device", "add", "NOT-AN-ID"], "56 base32 characters"),
        (vec!["device", "add", &wrong_check], "check character 4"),
        (vec!["device", "add", &other], "already configured"),
        (vec!["device", "add", &own], "own ID"),
        (
            vec!["device", "add", DOC_ID, "--address", "http://x:1"],
            "scheme",
        ),
        (vec!["device", "remove", DOC_ID], "not configured"),
        (
            vec!["config", "set", "colour", "blue"],
            "unknown key \"colour\"",
        ),
        (vec!["config", "get", "colour"], "unknown key"),
        (
            vec!["config", "set", "listen", "tcp://127.0.0.1"],
            "no port",
        ),
        (vec!["config", "set", "nat", "perhaps"], "not true or false"),
        (
            vec!["config", "set", "api.address", "localhost"],
            "IP address",
        ),
        (
            vec!["folder", "add", "other", file.to_str().expect("utf-8")],
            "not a directory",
        ),
        (
            vec!["folder", "add", "other", "/no/such/dir"],
            "No such file",
        ),
        (vec!["folder", "add", "docs", spare], "already configured"),
        (vec!["folder", "add", "inner", root_s], "overlaps"),
        (
            vec!["folder", "add", "x", spare, "--share", DOC_ID],
            "not configured",
        ),
        (
            vec!["folder", "add", "x", spare, "--type", "sideways"],
            "invalid value",
        ),
        (vec!["folder", "share", "nope", &other], "not configured"),
        (vec!["bogus-command"], "unrecognized subcommand"),
    ];
    for (args, want) in cases {
        let line = d.fails(&args);
        assert!(line.contains(want), "{args:?}: want {want:?} in {line:?}");
    }
}
