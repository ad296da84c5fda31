//! The ferrosync global discovery server: Syncthing's global discovery v3
//! over HTTPS, so ferrosync and Syncthing devices alike announce their
//! addresses to it and look each other up by device ID.
//!
//! - [`server`]: identity, listeners, [`Server::bind`]
//! - [`http`]: the API (announce, lookup, ping)
//! - [`fixup`]: what announced addresses become
//! - [`store`]: sled or Redis (the only module that knows either)
//! - [`limit`]: the per-IP request limit
//! - [`proxy`]: who the client is, behind a reverse proxy
//! - [`metrics`]: counters and their Prometheus text
//! - [`stun`]: the STUN responder (what a NAT maps a QUIC port to)
//!
//! `main.rs` only parses the command line and calls [`run`].
#![deny(missing_docs)]

pub mod fixup;
pub mod http;
pub mod limit;
pub mod metrics;
pub mod proxy;
pub mod server;
pub mod store;
pub mod stun;
#[cfg(feature = "test-utils")]
pub mod testing;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

pub use server::{Server, ServerConfig};

/// Command-line options of `ferrosync-discovery`.
#[derive(Debug, Parser)]
#[command(
    name = "ferrosync-discovery",
    version,
    about = "The ferrosync global discovery server (Syncthing global discovery v3)"
)]
pub struct Args {
    /// Directory for the server's certificate, key and (with sled) its
    /// announcements; created if missing.
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Prints the server's device ID (from its certificate, made on first use).
    Id,
    /// Serves until SIGINT or SIGTERM.
    Run {
        /// Where to listen for HTTPS.
        #[arg(long, default_value = "0.0.0.0:8443")]
        listen: SocketAddr,
        /// Where to serve Prometheus metrics (plain HTTP, /metrics).
        #[arg(long, value_name = "ADDR")]
        metrics: Option<SocketAddr>,
        /// `sled` (in the data directory) or `redis://HOST:PORT[/DB]`.
        #[arg(long, default_value = "sled")]
        store: store::StoreConfig,
        /// Requests per second allowed per source IP (0: no limit); a
        /// burst of ten seconds' worth is allowed.
        #[arg(long, default_value_t = 10.0, value_name = "N")]
        rate_limit: f64,
        /// Serve plain HTTP to a TLS-terminating reverse proxy at this IP
        /// address: only it may connect, and its X-Forwarded-For and
        /// client-certificate headers say who the client is.
        #[arg(long, value_name = "ADDR")]
        behind_proxy: Option<std::net::IpAddr>,
        /// Also answer STUN Binding requests on this UDP address (e.g.
        /// 0.0.0.0:3478), so devices learn what their NAT maps their QUIC
        /// port to; put it in their `stun` setting.
        #[arg(long, value_name = "ADDR")]
        stun: Option<SocketAddr>,
    },
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    init_logging(args.verbose);
    match args.command {
        Command::Id => {
            let id = server::Identity::load_or_create(&args.data)?.id;
            println!("{id}");
            Ok(())
        }
        Command::Run {
            listen,
            metrics,
            store,
            rate_limit,
            behind_proxy,
            stun,
        } => {
            if !(rate_limit >= 0.0 && rate_limit.is_finite()) {
                anyhow::bail!("--rate-limit must be a number of requests per second, 0 or more");
            }
            let config = ServerConfig {
                listen,
                data: args.data,
                store,
                metrics,
                rate_limit: (rate_limit > 0.0).then(|| limit::RateLimit::per_second(rate_limit)),
                behind_proxy,
                stun,
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(serve(config))
        }
    }
}

async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let proxied = config.behind_proxy.is_some();
    let server = Server::bind(config).await?;
    println!("{}", server.url());
    if proxied {
        eprintln!(
            "serving plain HTTP to the proxy; clients use the proxy's https:// URL \
             (with ?id= of the proxy's certificate, or a CA-signed one)"
        );
    }
    if let Some(m) = server.metrics_addr() {
        eprintln!("metrics on http://{m}/metrics");
    }
    if let Some(s) = server.stun_addr() {
        eprintln!("STUN on udp {s}");
    }
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    server.shutdown().await;
    Ok(())
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
