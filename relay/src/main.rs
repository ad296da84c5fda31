//! The `ferrosync-relay` binary: parses arguments and calls the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = ferrosync_relay::Args::parse();
    match ferrosync_relay::run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
