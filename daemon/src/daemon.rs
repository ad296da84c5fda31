//! `ferrosync run`: the one place that builds the daemon's subsystems, runs
//! them, and shuts them down in order on SIGINT or SIGTERM.
//!
//! ```text
//! run ─┬─ identity, config, index (sled)
//!      ├─ one runner per folder (model::folder) ── scans on its own threads
//!      ├─ local API (api) on the configured address
//!      └─ on a signal: stop scans, stop runners, stop the API, flush
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::signal::unix::{signal, SignalKind};

use crate::api::{self, ApiState};
use crate::config::Config;
use crate::home::Home;
use crate::identity;
use crate::index::Index;
use crate::model::folder;

/// sled's page cache: enough for the hot part of large indexes, small
/// enough to keep the daemon lean.
const INDEX_CACHE_BYTES: u64 = 16 << 20;

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
    let index = Index::open(&home.index_path(), INDEX_CACHE_BYTES).with_context(|| {
        format!(
            "opening the index in {} (is another ferrosync running with this home?)",
            home.index_path().display()
        )
    })?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve(home, id.device_id, config, index))?;
    eprintln!("ferrosync stopped");
    Ok(())
}

async fn serve(
    home: &Home,
    device_id: proto::DeviceId,
    config: Config,
    index: Index,
) -> Result<()> {
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;

    let listener = tokio::net::TcpListener::bind(&config.api.address)
        .await
        .with_context(|| format!("binding the API to {}", config.api.address))?;
    let api_addr = listener.local_addr()?;
    crate::fs::write_atomic(
        &home.api_address_path(),
        api_addr.to_string().as_bytes(),
        0o600,
    )
    .context("writing api-address")?;

    let stop = Arc::new(AtomicBool::new(false));
    let mut folders = HashMap::new();
    let mut runners = Vec::new();
    for fc in &config.folders {
        let fi = index.folder(&fc.id)?;
        let (handle, task) = folder::spawn(fc.clone(), fi, device_id.short(), None, stop.clone());
        folders.insert(fc.id.clone(), handle);
        runners.push(task);
    }
    eprintln!(
        "ferrosync {} running as {} ({:?}); home {}; API on {}",
        env!("CARGO_PKG_VERSION"),
        device_id,
        config.name,
        home.dir().display(),
        api_addr
    );

    let state = Arc::new(ApiState {
        device_id,
        config,
        folders,
    });
    let (api_stop_tx, api_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let api = tokio::spawn(api::serve(listener, state.clone(), async {
        let _ = api_stop_rx.await;
    }));

    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }

    // Stop in reverse order of dependence: scans first (they write the
    // index), then the API that reads them.
    stop.store(true, Ordering::Relaxed);
    drop(state);
    for r in runners {
        r.abort();
        let _ = r.await;
    }
    let _ = api_stop_tx.send(());
    if tokio::time::timeout(Duration::from_secs(5), api)
        .await
        .is_err()
    {
        tracing::warn!("the API did not stop within 5 s");
    }
    let _ = std::fs::remove_file(home.api_address_path());
    Ok(())
}
