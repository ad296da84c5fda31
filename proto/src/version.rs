//! Version vectors: one counter per device that changed a file, compared
//! exactly as Syncthing compares them so that both sides pick the same
//! winner.

use crate::ShortId;

/// How one vector relates to another.
///
/// Concurrent vectors have no causal order; the `Greater`/`Lesser` flavour
/// is Syncthing's deterministic tie-break (which side showed the first
/// difference) used when ranking conflicting versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ordering {
    /// Identical histories.
    Equal,
    /// Strictly newer: it has seen everything the other has, and more.
    Greater,
    /// Strictly older.
    Lesser,
    /// Concurrent; ranks above the other in a conflict.
    ConcurrentGreater,
    /// Concurrent; ranks below the other in a conflict.
    ConcurrentLesser,
}

impl Ordering {
    /// Neither side has seen the other's change.
    pub fn is_concurrent(self) -> bool {
        matches!(self, Self::ConcurrentGreater | Self::ConcurrentLesser)
    }
}

/// One device's counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    /// The device that made the changes.
    pub id: ShortId,
    /// Its latest change: for us, Unix seconds or one more than before.
    pub value: u64,
}

/// A version vector with counters sorted by device, at most one each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vector {
    counters: Vec<Counter>,
}

impl Vector {
    /// The empty vector (no changes seen).
    pub const fn new() -> Self {
        Self {
            counters: Vec::new(),
        }
    }

    /// Builds a vector from counters in any order; duplicates keep the
    /// highest value, so a peer's malformed vector still compares sanely.
    pub fn from_counters(mut counters: Vec<Counter>) -> Self {
        counters.sort_by(|a, b| a.id.cmp(&b.id).then(b.value.cmp(&a.value)));
        counters.dedup_by_key(|c| c.id);
        Self { counters }
    }

    /// The counters, sorted by device.
    pub fn counters(&self) -> &[Counter] {
        &self.counters
    }

    /// The counter for `id` (0 if absent).
    pub fn counter(&self, id: ShortId) -> u64 {
        self.counters
            .binary_search_by(|c| c.id.cmp(&id))
            .map(|i| self.counters[i].value)
            .unwrap_or(0)
    }

    /// Records a local change by `id` at `now_secs` (Unix time): the counter
    /// becomes max(old + 1, now), so versions also order roughly by time
    /// across devices whose counters were reset.
    pub fn updated(&self, id: ShortId, now_secs: u64) -> Self {
        let mut v = self.clone();
        match v.counters.binary_search_by(|c| c.id.cmp(&id)) {
            Ok(i) => {
                let c = &mut v.counters[i];
                c.value = (c.value.saturating_add(1)).max(now_secs);
            }
            Err(i) => v.counters.insert(
                i,
                Counter {
                    id,
                    value: now_secs.max(1),
                },
            ),
        }
        v
    }

    /// The smallest vector that has seen everything either one has.
    pub fn merged(&self, other: &Self) -> Self {
        let mut all = self.counters.clone();
        all.extend_from_slice(&other.counters);
        Self::from_counters(all)
    }

    /// How `self` relates to `other`. A missing counter counts as 0.
    pub fn compare(&self, other: &Self) -> Ordering {
        let (a, b) = (&self.counters, &other.counters);
        let (mut i, mut j) = (0, 0);
        let mut result = Ordering::Equal;
        // Walk both sorted lists; the first difference in each direction
        // decides, and seeing both directions makes the vectors concurrent
        // (flavoured by which direction came first, as Syncthing does).
        while i < a.len() || j < b.len() {
            let (av, bv) = match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) if x.id == y.id => {
                    i += 1;
                    j += 1;
                    (x.value, y.value)
                }
                (Some(x), Some(y)) if x.id < y.id => {
                    i += 1;
                    (x.value, 0)
                }
                (Some(x), None) => {
                    i += 1;
                    (x.value, 0)
                }
                (_, Some(y)) => {
                    j += 1;
                    (0, y.value)
                }
                (None, None) => break,
            };
            if av > bv {
                if result == Ordering::Lesser {
                    return Ordering::ConcurrentLesser;
                }
                result = Ordering::Greater;
            } else if av < bv {
                if result == Ordering::Greater {
                    return Ordering::ConcurrentGreater;
                }
                result = Ordering::Lesser;
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(pairs: &[(u64, u64)]) -> Vector {
        Vector::from_counters(
            pairs
                .iter()
                .map(|&(id, value)| Counter {
                    id: ShortId(id),
                    value,
                })
                .collect(),
        )
    }

    #[test]
    fn orderings() {
        use Ordering::*;
        let cases = [
            (v(&[]), v(&[]), Equal),
            (v(&[(1, 1)]), v(&[]), Greater),
            (v(&[]), v(&[(1, 1)]), Lesser),
            (v(&[(1, 0)]), v(&[]), Equal),
            (v(&[(1, 2)]), v(&[(1, 1)]), Greater),
            (v(&[(1, 1), (2, 1)]), v(&[(1, 1)]), Greater),
            (v(&[(1, 1)]), v(&[(1, 1), (2, 1)]), Lesser),
            // Concurrent: the direction of the first difference (by device
            // order) decides the flavour, as in Syncthing.
            (
                v(&[(1, 2), (2, 1)]),
                v(&[(1, 1), (2, 2)]),
                ConcurrentGreater,
            ),
            (v(&[(1, 1), (2, 2)]), v(&[(1, 2), (2, 1)]), ConcurrentLesser),
            (v(&[(1, 1)]), v(&[(2, 1)]), ConcurrentGreater),
            (v(&[(2, 1)]), v(&[(1, 1)]), ConcurrentLesser),
            (v(&[(1, 1), (3, 1)]), v(&[(2, 1)]), ConcurrentGreater),
        ];
        for (a, b, want) in cases {
            assert_eq!(a.compare(&b), want, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn concurrency_is_symmetric() {
        let a = v(&[(1, 5), (2, 1)]);
        let b = v(&[(1, 4), (2, 2), (3, 9)]);
        assert!(a.compare(&b).is_concurrent());
        assert!(b.compare(&a).is_concurrent());
        assert_ne!(a.compare(&b), b.compare(&a));
    }

    #[test]
    fn update_takes_max_of_increment_and_clock() {
        let me = ShortId(7);
        let a = Vector::new().updated(me, 1_700_000_000);
        assert_eq!(a.counter(me), 1_700_000_000);
        // Same second again: still strictly increases.
        let b = a.updated(me, 1_700_000_000);
        assert_eq!(b.counter(me), 1_700_000_001);
        // Clock went backwards: increment wins.
        let c = b.updated(me, 5);
        assert_eq!(c.counter(me), 1_700_000_002);
        assert_eq!(c.compare(&a), Ordering::Greater);
        // A clock of 0 still yields a positive first counter.
        assert_eq!(Vector::new().updated(me, 0).counter(me), 1);
    }

    #[test]
    fn update_keeps_counters_sorted_and_merge_dominates() {
        let a = v(&[(5, 1)]).updated(ShortId(2), 10).updated(ShortId(9), 10);
        let ids: Vec<u64> = a.counters().iter().map(|c| c.id.0).collect();
        assert_eq!(ids, [2, 5, 9]);
        let b = v(&[(5, 4), (7, 1)]);
        let m = a.merged(&b);
        assert_eq!(m.compare(&a), Ordering::Greater);
        assert_eq!(m.compare(&b), Ordering::Greater);
        assert_eq!(m.counter(ShortId(5)), 4);
    }

    #[test]
    fn duplicate_counters_keep_the_highest() {
        let a = v(&[(1, 3), (1, 9), (1, 4)]);
        assert_eq!(a.counters().len(), 1);
        assert_eq!(a.counter(ShortId(1)), 9);
    }
}
