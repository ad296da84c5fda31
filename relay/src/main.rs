//! The `ferrosync-relay` binary: parses arguments and calls the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    match ferrosync_relay::run(ferrosync_relay::Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
