//! Two loopback devices sharing one folder: the setting most scenarios
//! start from.

use std::path::PathBuf;
use std::time::Duration;

use crate::daemon::Daemon;
use crate::Device;

/// Two loopback devices sharing folder "f", both running and connected.
pub struct Pair {
    /// The first device (the folder's first sharer).
    pub a: Device,
    /// The second.
    pub b: Device,
    /// A's folder root.
    pub ra: PathBuf,
    /// B's folder root.
    pub rb: PathBuf,
    /// A's device ID.
    pub a_id: String,
}

impl Pair {
    /// Both devices initialised; A shares "f" with B (not started).
    pub fn new() -> Self {
        let (a, a_id) = Device::on_loopback("alpha");
        let (b, b_id) = Device::on_loopback("bravo");
        let (ra, rb) = (a.scratch().join("data"), b.scratch().join("data"));
        a.ok(&["device", "add", &b_id, "--name", "bravo"]);
        a.share_folder("f", &ra, &b_id);
        Self { a, b, ra, rb, a_id }
    }

    /// Starts both (B dialling A, and sharing the folder back), and waits
    /// until they are connected and both folders have had their first scan.
    pub fn start(&self) -> (Daemon<'_>, Daemon<'_>) {
        let mut da = self.a.start();
        da.wait_scanned("f");
        self.b.ok(&[
            "device",
            "add",
            &self.a_id,
            "--name",
            "alpha",
            "--address",
            &da.listen_url("tcp"),
        ]);
        self.b.share_folder("f", &self.rb, &self.a_id);
        let mut db = self.b.start();
        db.wait_scanned("f");
        db.wait_until("connected", Duration::from_secs(30), |s| {
            s["devices"][0]["connected"] == true
        });
        (da, db)
    }
}

impl Default for Pair {
    fn default() -> Self {
        Self::new()
    }
}
