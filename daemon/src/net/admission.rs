//! Which incoming connections may start a handshake. Each one costs a task
//! and memory until it authenticates or times out, and nobody is known
//! before the handshake ends, so the limits are by source address: a few
//! handshakes at once per address, a global cap for everyone, and a
//! reserve that only addresses known to belong to configured devices may
//! use (where one of them authenticated, or an address we dialled). One
//! address, or a flood from many, cannot lock the configured devices out.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Handshakes in progress from anyone.
const OPEN: usize = 64;
/// Further handshakes only known sources may use.
const RESERVED: usize = 16;
/// Handshakes in progress from one unknown source address.
const PER_SOURCE: usize = 4;
/// Known source addresses remembered (the oldest are forgotten first).
const KNOWN_MAX: usize = 1024;

/// The admission state of one `Net`.
pub(super) struct Admission {
    open: Arc<Semaphore>,
    reserved: Arc<Semaphore>,
    per_source: Mutex<HashMap<IpAddr, usize>>,
    known: RwLock<(HashSet<IpAddr>, Vec<IpAddr>)>,
}

/// A handshake's place; freed when dropped.
pub(super) struct Ticket {
    _permit: OwnedSemaphorePermit,
    source: IpAddr,
    counted: bool,
    admission: Arc<Admission>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.counted {
            let mut m = self
                .admission
                .per_source
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(n) = m.get_mut(&self.source) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.source);
                }
            }
        }
    }
}

impl Admission {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            open: Arc::new(Semaphore::new(OPEN)),
            reserved: Arc::new(Semaphore::new(RESERVED)),
            per_source: Mutex::default(),
            known: RwLock::default(),
        })
    }

    /// A place for a handshake from `source`, or `None`: drop the
    /// connection now.
    pub(super) fn admit(self: &Arc<Self>, source: IpAddr) -> Option<Ticket> {
        let known = self.is_known(source);
        let ticket = |permit, counted| Ticket {
            _permit: permit,
            source,
            counted,
            admission: Arc::clone(self),
        };
        if known {
            let permit = self
                .reserved
                .clone()
                .try_acquire_owned()
                .or_else(|_| self.open.clone().try_acquire_owned())
                .ok()?;
            return Some(ticket(permit, false));
        }
        let mut m = self.per_source.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(source).or_default();
        if *n >= PER_SOURCE {
            return None;
        }
        let permit = self.open.clone().try_acquire_owned().ok()?;
        *n += 1;
        drop(m);
        Some(ticket(permit, true))
    }

    /// Remembers `source` as an address of a configured device.
    pub(super) fn trust(&self, source: IpAddr) {
        let mut k = self.known.write().unwrap_or_else(|e| e.into_inner());
        if k.0.insert(source) {
            k.1.push(source);
            if k.1.len() > KNOWN_MAX {
                let oldest = k.1.remove(0);
                k.0.remove(&oldest);
            }
        }
    }

    fn is_known(&self, source: IpAddr) -> bool {
        self.known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .contains(&source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, n])
    }

    #[test]
    fn one_source_gets_a_few_places_and_known_sources_keep_room() {
        let a = Admission::new();
        let held: Vec<_> = (0..PER_SOURCE)
            .map(|_| a.admit(ip(2)).expect("place"))
            .collect();
        assert!(a.admit(ip(2)).is_none(), "per-source limit");
        // Many sources fill the open places...
        let mut flood = Vec::new();
        for n in 3..=255 {
            for _ in 0..PER_SOURCE {
                if let Some(t) = a.admit(ip(n)) {
                    flood.push(t);
                }
            }
        }
        assert_eq!(flood.len() + held.len(), OPEN);
        assert!(a.admit(ip(1)).is_none(), "an unknown source finds no room");
        // ...but a known one still gets in.
        a.trust(ip(1));
        let known: Vec<_> = (0..RESERVED)
            .map(|_| a.admit(ip(1)).expect("reserved"))
            .collect();
        assert!(a.admit(ip(1)).is_none(), "the reserve is bounded too");
        drop((held, known));
        assert!(a.admit(ip(2)).is_some(), "places come back when dropped");
    }
}
