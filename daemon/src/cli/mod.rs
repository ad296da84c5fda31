//! The `ferrosync` command line: argument parsing and one small function per
//! command that calls into the library and prints the outcome.
//!
//! Errors print as one `error: ...` line on stderr with a non-zero exit;
//! clap handles malformed arguments (exit 2) the same way.

mod client;
mod commands;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use proto::DeviceId;

use crate::config::{FolderType, Versioning};

/// Peer-to-peer file synchronisation, compatible with Syncthing.
#[derive(Debug, Parser)]
#[command(name = "ferrosync", version, about, max_term_width = 100)]
pub struct Cli {
    /// Directory holding this device's identity and config
    /// [default: the platform config dir, e.g. ~/.config/ferrosync]
    #[arg(long, env = "FERROSYNC_HOME", global = true, value_name = "DIR")]
    home: Option<PathBuf>,
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create this device's identity and config, and print its device ID.
    Init {
        /// This device's name, shown to peers [default: the host name].
        #[arg(long)]
        name: Option<String>,
    },
    /// Print this device's ID.
    Id,
    /// Run the daemon in the foreground (initialising the home if needed).
    Run,
    /// Read or change a setting.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Manage the devices this one syncs with.
    Device {
        #[command(subcommand)]
        action: DeviceAction,
    },
    /// Manage shared folders.
    Folder {
        #[command(subcommand)]
        action: FolderAction,
    },
    /// Devices that tried to connect but are not configured.
    Pending {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the versions kept of a folder's files (or of one file or
    /// directory).
    Versions {
        /// The folder.
        folder_id: String,
        /// A file or directory in it [default: all].
        path: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Bring back a kept version of a file (the current one is kept as a
    /// version first); the other devices get it like any local change.
    Restore {
        /// The folder.
        folder_id: String,
        /// The file, relative to the folder.
        path: String,
        /// The newest version kept at or before this local time
        /// (`2026-12-02 10:15:00`, `2026-12-02T10:15`, `20261202-101500`)
        /// [default: the newest].
        #[arg(long)]
        at: Option<String>,
    },
    /// Say why a folder (every folder, or one file) is not in sync.
    Doctor {
        /// The folder [default: every folder].
        folder_id: Option<String>,
        /// A file or directory in it.
        path: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The web GUI's settings.
    Gui {
        #[command(subcommand)]
        action: GuiAction,
    },
    /// Show what the running daemon is doing: folders and devices.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Keep showing progress until every folder is idle.
        #[arg(long, conflicts_with = "json")]
        watch: bool,
    },
}

#[derive(Debug, Subcommand)]
enum GuiAction {
    /// Set the password the web GUI asks for (needed before the GUI may
    /// listen beyond loopback); asked for twice on a terminal, else read
    /// as one line from standard input.
    Password,
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Print a setting's value (lists are comma-separated).
    Get {
        /// One of: name, listen, relays, nat, stun, max_watches, index_cache_mib, api.address, api.key,
        /// discovery.local, discovery.global, transport.prefer.
        key: String,
    },
    /// Change a setting (lists are comma-separated; empty means none).
    Set {
        /// The setting (see `config get --help`).
        key: String,
        /// The new value.
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
}

#[derive(Debug, Subcommand)]
enum DeviceAction {
    /// Add a device by its ID.
    Add {
        /// The device's ID (as `ferrosync id` or Syncthing shows it).
        id: DeviceId,
        /// A name for it.
        #[arg(long)]
        name: Option<String>,
        /// Where to reach it, e.g. tcp://192.0.2.7:22000 (repeatable)
        /// [default: dynamic, i.e. found by discovery].
        #[arg(long = "address", value_name = "URL")]
        addresses: Vec<String>,
    },
    /// List configured devices.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a device (and unshare every folder from it).
    Remove {
        /// The device's ID.
        id: DeviceId,
    },
}

#[derive(Debug, Subcommand)]
enum FolderAction {
    /// Share a directory as a folder (and mark its root with `.stfolder`).
    Add {
        /// The ID peers know the folder by (the same on every device).
        folder_id: String,
        /// The folder's root: an existing directory (see --create).
        path: PathBuf,
        /// Create the directory if it does not exist.
        #[arg(long)]
        create: bool,
        /// Which directions changes flow.
        #[arg(long = "type", value_enum, default_value_t = FolderType::SendReceive)]
        kind: FolderType,
        /// A configured device to share it with (repeatable).
        #[arg(long = "share", value_name = "DEVICE-ID")]
        share: Vec<DeviceId>,
        /// What to keep of files replaced or deleted by other devices:
        /// none, trashcan[:DAYS], simple[:KEEP] or staggered[:MAXAGE].
        #[arg(long, default_value = "trashcan:30")]
        versioning: Versioning,
    },
    /// Change a folder's settings.
    Set {
        /// The folder.
        folder_id: String,
        /// none, trashcan[:DAYS], simple[:KEEP] or staggered[:MAXAGE].
        #[arg(long)]
        versioning: Option<Versioning>,
        /// Which directions changes flow.
        #[arg(long = "type", value_enum)]
        kind: Option<FolderType>,
    },
    /// Share a folder with one more configured device.
    Share {
        /// The folder.
        folder_id: String,
        /// The device.
        device_id: DeviceId,
    },
    /// Stop sharing a folder (its files stay where they are).
    Remove {
        /// The folder.
        folder_id: String,
    },
    /// List configured folders.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rescan a folder now (through the running daemon) and wait for it.
    Rescan {
        /// The folder.
        folder_id: String,
    },
    /// Rehash a folder and compare it with the index (through the running
    /// daemon); exits non-zero on any difference.
    Verify {
        /// The folder.
        folder_id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send-only folder: make the other devices take our version of
    /// everything they changed.
    Override {
        /// The folder.
        folder_id: String,
    },
    /// Receive-only folder: drop local changes and take the other
    /// devices' version (what is dropped is kept as a version).
    Revert {
        /// The folder.
        folder_id: String,
    },
    /// Stop scanning and pulling a folder (until `folder resume`).
    Pause {
        /// The folder.
        folder_id: String,
    },
    /// Resume a paused folder.
    Resume {
        /// The folder.
        folder_id: String,
        /// Let the deletions the delete guard holds go on (ours, or a
        /// peer's), and wait until they have been announced.
        #[arg(long)]
        accept_deletes: bool,
    },
}

/// Parses the command line, runs the command and returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}
