//! The Python tools some tests check with (installed by `scripts/test`
//! from PyPI): `prometheus_client`'s text-format parser and `schemathesis`.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::in_ci;

/// Whether `python3` can import `module`. Missing: `false` with a note
/// locally; a panic in CI, where `scripts/test` installs it.
pub fn has_module(module: &str, package: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !in_ci(),
            "python3 module {module} is required in CI: scripts/test must pip-install {package}"
        );
        eprintln!("SKIPPED: python3 cannot import {module} (pip install {package})");
    }
    ok
}

/// Parses Prometheus text with `prometheus_client`'s parser. Returns
/// every sample as `{"name", "labels": {..}, "value"}`; panics with the
/// parser's complaint when the text does not parse.
pub fn parse_metrics(text: &str) -> Vec<Value> {
    const PARSE: &str = "import sys, json\n\
from prometheus_client.parser import text_string_to_metric_families as fams\n\
out = [dict(name=s.name, labels=s.labels, value=s.value, type=f.type)\n\
       for f in fams(sys.stdin.read()) for s in f.samples]\n\
print(json.dumps(out))\n";
    let out = with_stdin(Command::new("python3").args(["-c", PARSE]), text);
    assert!(
        out.status.success(),
        "prometheus_client rejects the metrics: {}\n--- text:\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("parser output")
}

/// The value of the sample `name` whose labels include `labels`.
pub fn sample(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .and_then(|s| s["value"].as_f64())
}

fn with_stdin(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("python3")
}
