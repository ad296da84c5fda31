//! Multi-process scenarios: real binaries in temporary homes.
//!
//! - `cli`: every command's happy path, and bad input that must fail with
//!   one clear line and change nothing.
//! - `identity`: device IDs as Syncthing's own binary computes them.
//! - `run`: the daemon starts on a fresh home and stops on a signal.
//! - `scan`: the daemon indexes folders, reports status, survives SIGKILL.
//! - `servers`: the relay and discovery binaries' command lines.
//! - `syncthing_harness`: the harness that runs the real Syncthing binary.

mod cli;
mod identity;
mod run;
mod scan;
mod servers;
mod syncthing_harness;
