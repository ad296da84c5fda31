//! The configuration in force, as a watch channel: the daemon replaces it
//! on reload, and any subsystem reads it or waits for the next one without
//! knowing who else does (discovery and the dialler never import `peer`).

use std::sync::Arc;

use tokio::sync::watch;

use super::Config;

/// A handle on the live configuration; clones share it.
#[derive(Clone)]
pub struct Live(Arc<watch::Sender<Arc<Config>>>);

impl Live {
    /// Starts with `config` in force.
    pub fn new(config: Config) -> Self {
        Self(Arc::new(watch::channel(Arc::new(config)).0))
    }

    /// The configuration now in force.
    pub fn get(&self) -> Arc<Config> {
        self.0.borrow().clone()
    }

    /// A receiver that sees every later configuration.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Config>> {
        self.0.subscribe()
    }

    /// Puts `new` in force; returns the one it replaced.
    pub fn replace(&self, new: Config) -> Arc<Config> {
        self.0.send_replace(Arc::new(new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_see_the_replacement() {
        let live = Live::new(Config::new_for("a"));
        let mut rx = live.subscribe();
        assert!(!rx.has_changed().expect("open"));
        let old = live.replace(Config::new_for("b"));
        assert_eq!(old.name, "a");
        assert!(rx.has_changed().expect("open"));
        assert_eq!(rx.borrow_and_update().name, "b");
        assert_eq!(live.get().name, "b");
    }
}
