//! What `docs/` promises, checked against what the binaries serve: every
//! metric family a server exposes is named in `docs/operations.md`.

use std::path::Path;

/// `docs/operations.md` of this checkout.
pub fn operations_md() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Panics naming each metric family in `metrics` (Prometheus text: its
/// `# TYPE` lines) that `docs/operations.md` does not name in backticks.
pub fn assert_metrics_documented(metrics: &str) {
    let doc = operations_md();
    let missing: Vec<&str> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| !doc.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics not documented in docs/operations.md: {missing:?}"
    );
}
