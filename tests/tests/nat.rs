//! Port mapping on a real home router: `miniupnpd` in a NAT router's
//! namespace, a ferrosync device behind it with `nat` on.

use std::time::Duration;

use ferrosync_tests::servers::MiniUpnpd;
use ferrosync_tests::wan::Wan;
use ferrosync_tests::Device;

/// A device behind a UPnP router maps its TCP and QUIC ports there and
/// announces the router's address: a device on the WAN that knows only its
/// ID (and listens nowhere, so the first cannot dial out to it) connects
/// to the mapped port directly. After the device stops, the mappings are
/// gone from the router.
#[test]
fn a_device_behind_a_upnp_router_is_dialled_through_its_mapping() {
    dialled_through_the_mapping(true);
}

/// The same with a router that speaks NAT-PMP only (UPnP off).
#[test]
fn a_device_behind_a_nat_pmp_router_is_dialled_through_its_mapping() {
    dialled_through_the_mapping(false);
}

fn dialled_through_the_mapping(upnp_on: bool) {
    let Some(program) = ferrosync_tests::require("miniupnpd", "miniupnpd-iptables") else {
        return;
    };
    let Some(mut wan) = Wan::new() else { return };
    let hb = wan.host("b");
    let (router, lan, ha) = wan.behind_upnp("a");
    let upnp = MiniUpnpd::start(&program, &router, lan, wan.stun, upnp_on);
    let disco = &wan.disco;
    assert!(upnp.mappings().is_empty(), "{:?}", upnp.mappings());

    let (a, a_id) = Device::in_netns("behind", &ha);
    let (b, b_id) = Device::in_netns("outside", &hb);
    a.ok(&["config", "set", "nat", "true"]);
    b.ok(&["config", "set", "listen", ""]);
    for (d, other) in [(&a, &b_id), (&b, &a_id)] {
        d.ok(&["config", "set", "discovery.global", &disco.url]);
        d.ok(&["device", "add", other, "--name", "peer"]);
    }
    let mut da = a.start();
    let s = da.wait_until("ports mapped", Duration::from_secs(30), |s| {
        s["nat"]["external"]
            .as_array()
            .is_some_and(|e| e.len() == 2)
    });
    let tcp_port = da
        .listen_url("tcp")
        .rsplit(':')
        .next()
        .unwrap_or("")
        .to_string();
    let mapped = format!("tcp://{}:{tcp_port}", router.ip);
    assert!(
        s["nat"]["external"]
            .as_array()
            .is_some_and(|e| e.iter().any(|x| x == mapped.as_str())),
        "{:#}",
        s["nat"]
    );
    assert_eq!(upnp.mappings().len(), 2, "{:?}", upnp.mappings());
    let how = if upnp_on {
        "UPnP IGD at "
    } else {
        "NAT-PMP at "
    };
    assert!(
        s["nat"]["gateway"]
            .as_str()
            .is_some_and(|g| g.starts_with(how)),
        "{:#}",
        s["nat"]
    );
    let mut db = b.start();
    let sb = db.wait_until(
        "connected to the device behind the router",
        Duration::from_secs(60),
        |s| s["devices"][0]["connected"] == true,
    );
    let dev = &sb["devices"][0];
    assert_eq!(dev["transport"], "tcp", "{dev:#}");
    assert_eq!(dev["source"], "global", "{dev:#}");
    assert_eq!(
        dev["address"],
        format!("{}:{tcp_port}", router.ip).as_str(),
        "{dev:#}"
    );
    db.stop();
    da.stop();
    assert!(
        upnp.mappings().is_empty(),
        "mappings left after shutdown: {:?}\n{}",
        upnp.mappings(),
        upnp.log()
    );
}
