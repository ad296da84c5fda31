use std::process::Command;

use ferrosync_tests::{describe, require, Device};

/// Syncthing computes the same device ID from our certificate and key: the
/// ID format, the certificate (Ed25519, CN/SAN syncthing) and the key
/// encoding are all what Syncthing reads.
#[test]
fn syncthing_derives_the_same_device_id() {
    let Some(syncthing) = require("syncthing", "syncthing") else {
        return;
    };
    let (d, id) = Device::init("interop");
    let st_home = d.scratch().join("syncthing-home");
    std::fs::create_dir(&st_home).expect("mkdir");
    for f in ["cert.pem", "key.pem"] {
        std::fs::copy(d.home().join(f), st_home.join(f)).expect("copy");
    }
    let out = Command::new(syncthing)
        .arg("serve")
        .arg(format!("--home={}", st_home.display()))
        .arg("--device-id")
        .output()
        .expect("spawn syncthing");
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), id);
}
