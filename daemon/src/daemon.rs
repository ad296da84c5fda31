//! `ferrosync run`: the one place that builds the daemon's subsystems, runs
//! them, and shuts them down in order on SIGINT or SIGTERM.
//!
//! ```text
//! run ─┬─ loads (or creates) identity and config
//!      └─ waits for a shutdown signal, then stops subsystems in reverse order
//! ```
//! Subsystems (index, scanner, network, API) join here as they are built.

use anyhow::{Context, Result};
use tokio::signal::unix::{signal, SignalKind};

use crate::config::Config;
use crate::home::Home;
use crate::identity;

/// Runs the daemon in the foreground until SIGINT or SIGTERM.
pub fn run(home: &Home) -> Result<()> {
    let (id, created) = identity::load_or_create(home)?;
    let path = home.config_path();
    let config = if path.exists() {
        Config::load(&path)?
    } else {
        let c = Config::new_for(&crate::config::host_name());
        c.save(&path)?;
        c
    };
    if created {
        tracing::info!(home = %home.dir().display(), "created a new identity");
    }
    eprintln!(
        "ferrosync {} running as {} ({:?}); home {}",
        env!("CARGO_PKG_VERSION"),
        id.device_id,
        config.name,
        home.dir().display()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        anyhow::Ok(())
    })?;
    eprintln!("ferrosync stopped");
    Ok(())
}
