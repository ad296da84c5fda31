//! The ferrosync relay server: speaks the Syncthing relay protocol v1 so that both
//! ferrosync and Syncthing devices can use it.
//!
//! Only the command line exists so far; the server itself is a later issue.
#![deny(missing_docs)]

use std::net::SocketAddr;

use clap::Parser;

/// Command-line options of `ferrosync-relay`.
#[derive(Debug, Parser)]
#[command(
    name = "ferrosync-relay",
    version,
    about = "The ferrosync relay server (Syncthing relay protocol v1)"
)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:22067")]
    pub listen: SocketAddr,
    /// Directory for the server's certificate and key.
    #[arg(long, default_value = ".")]
    pub keys: std::path::PathBuf,
}

/// Runs the server with the given options.
pub fn run(args: &Args) -> anyhow::Result<()> {
    anyhow::bail!(
        "the relay server is not built yet (would listen on {})",
        args.listen
    )
}
