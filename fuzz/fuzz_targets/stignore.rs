//! `.stignore` text (it syncs in from peers' folders' users, and the API
//! takes it) and matching names against it. The first line is the name
//! to match; the rest is the pattern file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ferrosync::scanner::ignore::Ignores;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (name, patterns) = text.split_once('\n').unwrap_or((text, ""));
    // A root that does not exist: #include lines find nothing, and
    // nothing outside is ever read.
    let root = std::path::Path::new("/nonexistent/ferrosync-fuzz-root");
    if let Ok(ig) = Ignores::parse(patterns, root) {
        let _ = ig.matches(name);
        let _ = ig.matches(&format!("{name}/x"));
        let _ = ig.can_skip_ignored_dirs();
    }
});
