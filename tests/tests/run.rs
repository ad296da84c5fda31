use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ferrosync_tests::Device;

fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    ferrosync_tests::poll(limit, || cond().then_some(())).is_some()
}

fn stop(child: &mut Child, signal: &str) -> std::process::ExitStatus {
    let ok = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(ok.success());
    let mut status = None;
    wait_for(Duration::from_secs(10), || {
        status = child.try_wait().expect("wait");
        status.is_some()
    });
    status.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("daemon did not stop within 10 s of SIG{signal}")
    })
}

#[test]
fn run_initialises_a_fresh_home_and_stops_on_signals() {
    for signal in ["TERM", "INT"] {
        let d = Device::new();
        let log = d.scratch().join("daemon.log");
        let mut child = d
            .command()
            .arg("run")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn");
        let started = wait_for(Duration::from_secs(20), || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("running as"))
        });
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if !started {
            let _ = child.kill();
            panic!("daemon did not start; its log:\n{text}");
        }
        // The home it made is complete: `id` prints the ID it runs as.
        let id = d.ok(&["id"]);
        assert!(text.contains(id.trim()), "log names the device: {text}");
        let status = stop(&mut child, signal);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            status.success(),
            "exit {status} on SIG{signal}; log:\n{text}"
        );
        assert!(text.contains("stopped"), "{text}");
    }
}
