//! S3-FIFO (Yang, Zhang, Qiu, Yue and Rashmi, "FIFO queues are all you need for cache
//! eviction", SOSP 2023), as libCacheSim's current `S3FIFO`
//! (`libCacheSim/cache/eviction/S3FIFO.c`, read in PyPI `libcachesim` 0.3.5), not the
//! paper's first version (`S3FIFOv0.c`); it gives libCacheSim's miss counts (bench/sim.ts,
//! tests/eviction_quality_test.ts). `src/store/_s3fifo.ts` is its TypeScript port.
//!
//! Three FIFO queues: a small one (libCacheSim's `small-size-ratio` 0.10 of the capacity),
//! a main one (the rest) and a ghost of keys without values (`ghost-size-ratio` 0.90 of the
//! capacity). Each entry has an access count, 0 to 3 (2 bits).
//!
//! - Hit: the count goes up by one (it stops at 3).
//! - New key: to the main queue when the ghost held it (the ghost forgets it), else to the
//!   small queue; except that until the first eviction, a new key goes to the main queue
//!   once the small one is full (what sets `S3FIFO.c` apart from `S3FIFOv0.c`).
//! - Eviction, from the main queue when it is over its share or the small queue is empty:
//!   its oldest entry goes if its count is 0, else it goes back to the head of the main
//!   queue with its count less one (a 2-bit clock), and the next oldest is looked at.
//!   Otherwise from the small queue: its oldest entry moves to the main queue (count 0)
//!   when it was hit at least `move-to-main-threshold` (2) times, else it is evicted and its
//!   key goes to the ghost (the ghost's oldest key makes room); when every small entry
//!   moved, the eviction goes on in the main queue.
//!
//! Where it differs from libCacheSim: a small queue of at least one entry (libCacheSim
//! refuses capacities under 10 and, below 20, keeps nothing, since an object must be
//! smaller than the small queue); a `set` of a present key, a delete or an expiry (which
//! libCacheSim's traces do not have) change no count and put nothing in the ghost.

use super::ghost::Ghost;
use super::lists::SlotLists;

/// The small queue: new entries.
const SMALL: usize = 0;
/// The main queue: entries seen again.
const MAIN: usize = 1;
/// libCacheSim's `small-size-ratio`.
pub const SMALL_RATIO: f64 = 0.1;
/// libCacheSim's `ghost-size-ratio`.
pub const GHOST_RATIO: f64 = 0.9;
/// libCacheSim's `move-to-main-threshold`: hits in the small queue that earn the main.
pub const MOVE_TO_MAIN: u8 = 2;
/// Largest access count kept (2 bits).
const MAX_FREQ: u8 = 3;

/// S3-FIFO over the slots of a [`super::SieveStore`]. Order ([`S3Fifo::order`]): the small
/// queue, then the main queue, each newest first.
#[derive(Debug)]
pub(super) struct S3Fifo {
    lists: SlotLists,
    /// Access count (0 to 3) by slot.
    freq: Vec<u8>,
    small_max: usize,
    main_max: usize,
    ghost: Ghost,
    /// Whether anything was evicted since creation or the last clear.
    has_evicted: bool,
    /// Whether the key that arrived was in the ghost (it goes to the main queue).
    to_main: bool,
    /// Whether the last victim came from the small queue (its key goes to the ghost).
    to_ghost: bool,
}

impl S3Fifo {
    /// For a store of `capacity` entries ([`super::MAX_SLOTS`]: unbounded, where every
    /// entry stays in the small queue and the ghost keeps nothing).
    pub(super) fn new(capacity: usize) -> S3Fifo {
        // The same double arithmetic and truncation as libCacheSim (and the TypeScript port).
        let (small_max, ghost) = if capacity >= super::MAX_SLOTS {
            (capacity, 0)
        } else {
            (
                ((capacity as f64 * SMALL_RATIO) as usize).max(1),
                (capacity as f64 * GHOST_RATIO) as usize,
            )
        };
        S3Fifo {
            lists: SlotLists::new(2),
            freq: Vec::new(),
            small_max,
            main_max: capacity.saturating_sub(small_max),
            ghost: Ghost::new(ghost),
            has_evicted: false,
            to_main: false,
            to_ghost: false,
        }
    }

    /// A new key is about to be added: was it in the ghost?
    pub(super) fn arrive(&mut self, state: &ahash::RandomState, key: &[u8]) {
        self.to_main = self.ghost.remove(state, key);
    }

    /// Links the new entry at `slot`.
    pub(super) fn add(&mut self, slot: u32) {
        let main = self.to_main || (!self.has_evicted && self.lists.len(SMALL) >= self.small_max);
        self.to_main = false;
        self.lists.push_head(if main { MAIN } else { SMALL }, slot);
        let i = slot as usize;
        if i >= self.freq.len() {
            self.freq.resize(i + 1, 0);
        }
        self.freq[i] = 0;
    }

    #[inline]
    pub(super) fn hit(&mut self, slot: u32) {
        let f = &mut self.freq[slot as usize];
        if *f < MAX_FREQ {
            *f += 1;
        }
    }

    /// Chooses the entry to evict (still linked): see the module docs.
    pub(super) fn victim(&mut self) -> u32 {
        self.has_evicted = true;
        loop {
            if self.lists.len(MAIN) > self.main_max || self.lists.len(SMALL) == 0 {
                loop {
                    let t = self.lists.tail(MAIN);
                    let f = self.freq[t as usize];
                    if f == 0 {
                        self.to_ghost = false;
                        return t;
                    }
                    self.lists.move_to_head(MAIN, t);
                    self.freq[t as usize] = f - 1;
                }
            }
            while self.lists.len(SMALL) > 0 {
                let t = self.lists.tail(SMALL);
                if self.freq[t as usize] < MOVE_TO_MAIN {
                    self.to_ghost = true;
                    return t;
                }
                self.lists.unlink(t);
                self.lists.push_head(MAIN, t);
                self.freq[t as usize] = 0;
            }
        }
    }

    /// The key of the victim just chosen: to the ghost if it came from the small queue.
    pub(super) fn evicted(&mut self, state: &ahash::RandomState, key: &[u8]) {
        if self.to_ghost {
            self.ghost.add(state, key);
        }
        self.to_ghost = false;
    }

    pub(super) fn remove(&mut self, slot: u32) {
        self.lists.unlink(slot);
    }

    pub(super) fn clear(&mut self) {
        self.lists.clear();
        self.freq = Vec::new();
        self.ghost.clear();
        self.has_evicted = false;
        self.to_main = false;
        self.to_ghost = false;
    }

    /// Live slots: the small queue then the main one, each newest first.
    pub(super) fn order(&self) -> Vec<u32> {
        let mut out = self.lists.order(SMALL);
        out.extend(self.lists.order(MAIN));
        out
    }

    /// Whether `slot` is in the main queue, and its count (tests).
    #[cfg(test)]
    pub(super) fn state_of(&self, slot: u32) -> (bool, u8) {
        (self.lists.list_of(slot) == MAIN, self.freq[slot as usize])
    }

    /// The ghost's keys, newest first (tests).
    #[cfg(test)]
    pub(super) fn ghost_order(&self) -> Vec<Vec<u8>> {
        self.ghost.order()
    }

    /// Checks the queues and counts; returns the linked slots.
    pub(super) fn validate(&self) -> Vec<u32> {
        let live = self.lists.validate();
        for &s in &live {
            assert!(self.freq[s as usize] <= MAX_FREQ, "slot {s} count");
        }
        assert!(
            self.ghost.len() <= self.ghost.capacity(),
            "ghost over capacity"
        );
        live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_shares_truncate_as_libcachesim() {
        for (capacity, small, main, ghost) in [
            (1, 1, 0, 0),
            (9, 1, 8, 8),
            (20, 2, 18, 18),
            (30, 3, 27, 27),
            (1000, 100, 900, 900),
            (808, 80, 728, 727),
        ] {
            let s = S3Fifo::new(capacity);
            assert_eq!(
                (s.small_max, s.main_max, s.ghost.capacity()),
                (small, main, ghost),
                "capacity {capacity}"
            );
        }
    }
}
