//! The config file (hand-edited by users, so anything may be in it).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ferrosync::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = Config::from_toml(text, "fuzz.toml") {
        // What loads must save and load back the same.
        let saved = toml_text(&c);
        let back = Config::from_toml(&saved, "saved.toml").expect("re-load");
        assert_eq!(back, c);
    }
});

fn toml_text(c: &Config) -> String {
    let dir = std::env::temp_dir().join(format!("ferrosync-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("config.toml");
    c.save(&path).expect("save");
    std::fs::read_to_string(&path).expect("read back")
}
