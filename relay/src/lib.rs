//! The ferrosync relay server: Syncthing's relay protocol v1, so devices
//! that cannot reach each other (both behind NAT) meet through it, and
//! Syncthing devices can use it too. It only pipes bytes: TLS runs end to
//! end between the devices. It never joins a public pool.
//!
//! - [`server`]: identity, the listener (protocol and session mode on one
//!   port), joins, invitations, sessions, limits; [`Server::bind`]
//! - [`status`]: `/status` and `/metrics`
//!
//! `main.rs` only parses the command line and calls [`run`].
#![deny(missing_docs)]

pub mod server;
pub mod status;
#[cfg(feature = "test-utils")]
pub mod testing;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

pub use server::{RelayConfig, Server};

/// Command-line options of `ferrosync-relay`.
#[derive(Debug, Parser)]
#[command(
    name = "ferrosync-relay",
    version,
    about = "The ferrosync relay server (Syncthing relay protocol v1)"
)]
pub struct Args {
    /// Directory for the relay's certificate and key; created if missing.
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
    /// Prints the relay's device ID (from its certificate, made on first use).
    Id,
    /// Serves until SIGINT or SIGTERM.
    Run {
        /// Where to listen (both protocol and session mode).
        #[arg(long, default_value = "0.0.0.0:22067")]
        listen: SocketAddr,
        /// Where to serve /status and /metrics (plain HTTP).
        #[arg(long, value_name = "ADDR")]
        status: Option<SocketAddr>,
        /// A token devices must present to join (empty: none).
        #[arg(long, default_value = "")]
        token: String,
        /// Sessions at once at most; more are refused with RelayFull.
        #[arg(long, default_value_t = 10_000)]
        max_sessions: usize,
        /// Joined devices at once at most.
        #[arg(long, default_value_t = 10_000)]
        max_clients: usize,
        /// Bytes per second per session (0: no limit).
        #[arg(long, default_value_t = 0)]
        per_session_rate: u64,
        /// Bytes per second over all sessions (0: no limit).
        #[arg(long, default_value_t = 0)]
        global_rate: u64,
    },
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    init_logging(args.verbose);
    match args.command {
        Command::Id => {
            println!("{}", server::id(&args.data)?);
            Ok(())
        }
        Command::Run {
            listen,
            status,
            token,
            max_sessions,
            max_clients,
            per_session_rate,
            global_rate,
        } => {
            let config = RelayConfig {
                status,
                token,
                max_sessions,
                max_clients,
                per_session_rate,
                global_rate,
                ..RelayConfig::new(listen, args.data)
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(serve(config))
        }
    }
}

async fn serve(config: RelayConfig) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let ping = config.ping_interval;
    let timeout = config.network_timeout;
    let server = Server::bind(config).await?;
    println!(
        "{}&pingInterval={}&networkTimeout={}",
        server.uri(),
        fmt_secs(ping),
        fmt_secs(timeout)
    );
    if let Some(s) = server.status_addr() {
        eprintln!("status on http://{s}/status, metrics on http://{s}/metrics");
    }
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    server.shutdown().await;
    Ok(())
}

/// Go's duration form, as strelaysrv prints it (`1m0s`).
fn fmt_secs(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}m{}s", s / 60, s % 60)
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
