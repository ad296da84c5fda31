//! `ferrosync run`: the one place that builds the daemon's subsystems, runs
//! them, and shuts them down in order on SIGINT or SIGTERM.
//!
//! ```text
//! run ─┬─ identity, config, index (sled)
//!      ├─ net: listeners and the relay client ──▶ accept loop ──▶ peer sessions (Peers::run_link)
//!      ├─ our addresses (listeners, router mappings, STUN, joined relays) ──▶ LAN and global discovery announce them
//!      ├─ connect: the dialler (a dial loop per configured device, addresses from discovery's Finder)
//!      ├─ one runner per folder (model::folder): scans and pulls
//!      ├─ local API (api) on the configured address
//!      └─ on a signal: close sessions, stop scans and runners, stop the API
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::signal::unix::{signal, SignalKind};

use crate::api::{self, ApiState};
use crate::config::live::Live;
use crate::config::{Config, FolderConfig};
use crate::connect;
use crate::discovery::global::Global;
use crate::discovery::lan::Lan;
use crate::discovery::Finder;
use crate::home::Home;
use crate::identity;
use crate::index::Index;
use crate::model::folder;
use crate::net::Net;
use crate::peer::Peers;

/// Threads for blocking work (fsyncs, index batches, block reads). Each
/// thread grows its own malloc arena: tokio's default of up to 512 cost
/// ~40 MiB on a 20,000-file sync; with 2 (and 8) throughput was the same
/// within this VM's noise.
const BLOCKING_THREADS: usize = 2;

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
    let index =
        Index::open(&home.index_path(), config.index_cache_mib << 20).with_context(|| {
            format!(
                "opening the index in {} (is another ferrosync running with this home?)",
                home.index_path().display()
            )
        })?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve(home, &id, config, index))?;
    eprintln!("ferrosync stopped");
    Ok(())
}

async fn serve(
    home: &Home,
    identity: &identity::Identity,
    config: Config,
    index: Index,
) -> Result<()> {
    let device_id = identity.device_id;
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;

    if !api::auth::is_loopback(&config.api.address) && config.api.password_hash.is_empty() {
        anyhow::bail!(
            "the API and GUI address {} is reachable from other machines, and no GUI password is set: \
             set one with `ferrosync gui password`, or listen on loopback (`ferrosync config set api.address 127.0.0.1:8384`)",
            config.api.address
        );
    }
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

    let (net, mut incoming) = Net::start(identity, &config.listen)
        .await
        .context("starting the listeners")?;
    let live = Live::new(config.clone());
    let peers = Peers::new(device_id, live.clone(), index.clone());
    let accept = {
        let (peers, net) = (peers.clone(), net.clone());
        tokio::spawn(async move {
            while let Some(conn) = incoming.recv().await {
                // Its address keeps room among incoming handshakes.
                if peers.config().device(&conn.device_id).is_some() {
                    net.trust(conn.remote_addr.ip());
                }
                tokio::spawn(peers.clone().run_link(connect::link(conn)));
            }
        })
    };
    let folders = Arc::new(RwLock::new(HashMap::new()));
    let https = crate::net::https::Https::new(identity).context("the HTTPS client")?;
    let relays = net.relays(live.clone(), https.clone());
    let nat = crate::net::nat::spawn(&net.listen_urls(), live.clone());
    let stun = net.stun(live.clone());
    let mut sources = vec![nat.external()];
    sources.extend(stun.as_ref().map(|s| s.external()));
    sources.push(relays.joined());
    let (own_rx, mut own_tasks) = own_addresses(net.listen_urls(), sources);
    let lan = Lan::new(device_id, live.clone(), own_rx.clone());
    let lan_task = lan.spawn();
    let global = Global::new(https, live.clone(), own_rx);
    let global_task = global.spawn();
    let dialler = connect::spawn(
        net.clone(),
        peers.clone(),
        Finder::new(live.clone())
            .with_lan(lan.clone())
            .with_global(global.clone()),
        live.clone(),
    );
    let mut sup = Supervisor {
        device_id,
        index: index.clone(),
        peers: peers.clone(),
        runners: HashMap::new(),
        max_watches: config.max_watches,
        folders: folders.clone(),
    };
    sup.apply(&config)?;
    let listening = net.listen_urls();
    crate::fs::write_atomic(
        &home.listen_urls_path(),
        listening.join("\n").as_bytes(),
        0o644,
    )
    .context("writing listen-addresses")?;
    eprintln!(
        "ferrosync {} running as {} ({:?}); home {}; API on {}; listening on {}",
        env!("CARGO_PKG_VERSION"),
        device_id,
        config.name,
        home.dir().display(),
        api_addr,
        if listening.is_empty() {
            "nothing".to_string()
        } else {
            listening.join(", ")
        }
    );

    let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel::<api::Reload>(4);
    let state = Arc::new(ApiState {
        device_id,
        api_key: config.api.key.clone(),
        loopback: api::auth::is_loopback(&api_addr.to_string()),
        sessions: api::auth::Sessions::default(),
        home: home.clone(),
        listening: listening.clone(),
        folders,
        peers: peers.clone(),
        reload: reload_tx,
        sources: dialler.sources.clone(),
        global: global.clone(),
        lan: lan.clone(),
        relays: relays.clone(),
        nat: nat.clone(),
        stun: stun.clone(),
    });
    let (api_stop_tx, api_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let api = tokio::spawn(api::serve(listener, state.clone(), async {
        let _ = api_stop_rx.await;
    }));

    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break }
            Some(r) = reload_rx.recv() => {
                let _ = r.reply.send(reload(home, &mut sup, &config, r.edit));
            }
        }
    }

    // Stop in reverse order of dependence: connections, then scans and
    // pulls (they write the index), then the API that reads them.
    dialler.stop();
    relays.stop();
    if let Some(s) = &stun {
        s.stop();
    }
    own_tasks.abort_all();
    global_task.abort();
    lan_task.abort();
    net.shutdown();
    accept.abort();
    peers.close_all("shutting down");
    drop(state);
    sup.stop_all().await;
    let _ = api_stop_tx.send(());
    if tokio::time::timeout(Duration::from_secs(5), api)
        .await
        .is_err()
    {
        tracing::warn!("the API did not stop within 5 s");
    }
    // After the sessions: a mapping removed first would cut them off.
    nat.stop().await;
    let _ = std::fs::remove_file(home.api_address_path());
    let _ = std::fs::remove_file(home.listen_urls_path());
    Ok(())
}

/// What we announce: the listen URLs, then what each of `sources` knows
/// now (the router's mappings, the STUN mapping, the relays joined), in
/// that order, each address once. The watch changes with any source.
fn own_addresses(
    listen: Vec<String>,
    sources: Vec<tokio::sync::watch::Receiver<Vec<String>>>,
) -> (
    tokio::sync::watch::Receiver<Vec<String>>,
    tokio::task::JoinSet<()>,
) {
    let parts: Arc<std::sync::Mutex<Vec<Vec<String>>>> = Arc::new(std::sync::Mutex::new(
        sources.iter().map(|s| s.borrow().clone()).collect(),
    ));
    let all = move |parts: &[Vec<String>]| {
        let mut out = listen.clone();
        for a in parts.iter().flatten() {
            if !out.contains(a) {
                out.push(a.clone());
            }
        }
        out
    };
    let (tx, rx) =
        tokio::sync::watch::channel(all(&parts.lock().unwrap_or_else(|e| e.into_inner())));
    let tx = Arc::new(tx);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut source) in sources.into_iter().enumerate() {
        let (parts, tx, all) = (parts.clone(), tx.clone(), all.clone());
        tasks.spawn(async move {
            while source.changed().await.is_ok() {
                let now = {
                    let mut p = parts.lock().unwrap_or_else(|e| e.into_inner());
                    p[i] = source.borrow_and_update().clone();
                    all(&p)
                };
                crate::net::publish(&tx, now);
            }
        });
    }
    (rx, tasks)
}

/// Re-reads the config file (changed by `edit` and saved, if given) and
/// applies it; returns notes for the user. `started` is the config the
/// daemon started with (listeners and the API follow it until restart).
fn reload(
    home: &Home,
    sup: &mut Supervisor,
    started: &Config,
    edit: Option<crate::api::ConfigEdit>,
) -> Result<Vec<String>, String> {
    let mut new = Config::load(&home.config_path()).map_err(|e| e.to_string())?;
    if let Some(edit) = edit {
        edit(&mut new).map_err(|e| e.to_string())?;
        new.save(&home.config_path()).map_err(|e| e.to_string())?;
    }
    let mut notes = Vec::new();
    // The password and the metrics switch are read per request.
    let restart = |c: &Config| (c.listen.clone(), c.api.address.clone(), c.api.key.clone());
    if restart(&new) != restart(started) {
        notes.push(
            "listen, api.address and api.key changes apply when the daemon restarts".to_string(),
        );
    }
    sup.peers.set_config(new.clone());
    sup.apply(&new).map_err(|e| e.to_string())?;
    tracing::info!("configuration reloaded");
    Ok(notes)
}

/// The running folder runners, kept in line with the config.
struct Supervisor {
    device_id: proto::DeviceId,
    index: Index,
    peers: Arc<Peers>,
    runners: HashMap<String, (FolderConfig, Arc<AtomicBool>, tokio::task::JoinHandle<()>)>,
    /// The watch cap the runners were started with.
    max_watches: u64,
    /// Shared with the API.
    folders: Arc<RwLock<HashMap<String, folder::FolderHandle>>>,
}

impl Supervisor {
    /// Starts, stops or restarts runners to match `config`.
    fn apply(&mut self, config: &Config) -> Result<()> {
        let mut folders = self.folders.write().unwrap_or_else(|e| e.into_inner());
        self.runners.retain(|id, (fc, stop, task)| {
            // A runner only depends on the folder's own settings; sharing
            // changes are the sessions' business.
            let keep = config.folder(id).is_some_and(|n| {
                let mut n = n.clone();
                n.devices.clone_from(&fc.devices);
                n == *fc
            }) && config.max_watches == self.max_watches;
            if !keep {
                stop.store(true, Ordering::Relaxed);
                task.abort();
                folders.remove(id);
            }
            keep
        });
        self.max_watches = config.max_watches;
        for fc in &config.folders {
            if self.runners.contains_key(&fc.id) {
                continue;
            }
            let stop = Arc::new(AtomicBool::new(false));
            let fi = self.index.folder(&fc.id)?;
            let (handle, task) = folder::spawn(
                fc.clone(),
                fi,
                self.device_id.short(),
                Some(self.peers.clone()),
                stop.clone(),
                config.max_watches,
            );
            folders.insert(fc.id.clone(), handle);
            self.runners.insert(fc.id.clone(), (fc.clone(), stop, task));
        }
        Ok(())
    }

    async fn stop_all(&mut self) {
        for (_, (_, stop, task)) in self.runners.drain() {
            stop.store(true, Ordering::Relaxed);
            task.abort();
            let _ = task.await;
        }
    }
}
