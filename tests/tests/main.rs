//! Multi-process scenarios: real binaries in temporary homes.
//!
//! - `abuse`: a malicious configured peer sends what the protocol lets it (out-of-order and
//!   unshared indexes, lying sizes and block lists, huge version vectors, requests out of the
//!   folder, through symlinks, past the end; abandoned handshakes): the daemon survives each with
//!   bounded memory, nothing changes, and a friend still syncs.
//! - `api`: the local API: documented operations served and guarded (key, cookie and CSRF,
//!   Host, a password beyond loopback), events, changes and metrics, the CLI walk, schemathesis.
//! - `bounds`: floods, unbacked claims, vanished peers and long scans cost a bounded amount.
//! - `cli`: every command's happy path, and bad input that must fail with
//!   one clear line and change nothing.
//! - `clocks`: a device a year ahead or behind (faketime): changes ordered by version vectors,
//!   conflicts as with correct clocks.
//! - `crashes`: a three-device mesh under constant edits, a random device killed again and
//!   again: every last edit on every disk, no conflict copy, every index matching its disk.
//! - `discovery`: daemons known by ID alone find each other (network namespaces).
//! - `discovery_server`: the global discovery server: announce, lookup, bad
//!   requests, rate limit, metrics, restarts, two front ends on one Redis.
//! - `doctor`: why a folder or a file is not in sync.
//! - `guards`: a missing root deletes nothing anywhere; mass deletes held both ways until
//!   accepted; a paused folder neither scans nor pulls.
//! - `gui`: the web GUI in headless Chromium (Playwright): pair, share, sync, resolve a
//!   conflict, restore a version, edit ignores; screenshots of each view.
//! - `identity`: device IDs as Syncthing's own binary computes them.
//! - `ignores`: ignore patterns on pull and on serve.
//! - `hostile`: a hand-built peer: escaping and internal names, bad block lists, ignored or
//!   unannounced files, names too long; nothing leaves the folder.
//! - `interop_sync`: a folder shared with the real Syncthing converges both ways.
//! - `mesh`: three devices (TCP and QUIC), edits, a conflict; resume after SIGKILL.
//! - `nat`: port mapping on a real `miniupnpd` router (UPnP IGD, NAT-PMP); dialled through the mapping.
//! - `netem`: a file crosses long, lossy and reordering links (TCP and QUIC) whole without a
//!   stall, and a flapping link costs at most 10 % of its bytes twice.
//! - `net_interop`: our TLS/TCP and QUIC connections to and from Syncthing.
//! - `one_way`: `folder revert` (receive-only) and `folder override` (send-only).
//! - `relay_server`: the relay: sessions, one-use keys, bad clients, limits, status.
//! - `relayed`: devices that meet through a relay (loopback; behind two NATs, then punched through).
//! - `run`: the daemon starts on a fresh home and stops on a signal.
//! - `scan`: the daemon indexes folders, reports status, survives SIGKILL.
//! - `sync`: two daemons converge over TCP and over QUIC; unknown devices are pending.
//! - `servers`: the relay and discovery binaries' command lines.
//! - `units`: the systemd units in `docs/systemd/` pass `systemd-analyze verify` and start the
//!   real servers.
//! - `versions`: the trash can keeps what a peer replaced; versions listed, restored and
//!   cleaned out; a file put back is filled from the copy.
//! - `syncthing_harness`: the harness that runs the real Syncthing binary.

mod abuse;
mod api;
mod bounds;
mod cli;
mod clocks;
mod crashes;
mod discovery;
mod discovery_server;
mod doctor;
mod guards;
mod gui;
mod hostile;
mod identity;
mod ignores;
mod interop_sync;
mod live;
mod mesh;
mod nat;
mod net_interop;
mod netem;
mod one_way;
mod relay_server;
mod relayed;
mod run;
mod scan;
mod servers;
mod sync;
mod syncthing_harness;
mod units;
mod versions;
