//! W-TinyLFU (Einziger, Friedman and Manes, "TinyLFU: A Highly Efficient Cache Admission
//! Policy", ACM Transactions on Storage 2017) with the adaptive window of Caffeine (Einziger,
//! Eytan, Friedman and Manes, "Adaptive Software Cache Management", Middleware 2018), as
//! Caffeine v3.2.4's `BoundedLocalCache` does it (Ben Manes, `caffeine/src/main/java/com/
//! github/benmanes/caffeine/cache/BoundedLocalCache.java`). `src/store/_wtinylfu.ts` is its
//! TypeScript port.
//!
//! - An LRU window (1% of the capacity at first) takes every new entry. Its overflow moves
//!   to the main space, made of two LRU segments: probation, and protected (80% of the main
//!   space). A hit in probation promotes the entry to protected; protected's overflow goes
//!   back to probation.
//! - When the store is full, the candidate (the entry the window just gave up, else the
//!   window's LRU entry) meets the victim (probation's LRU entry, else protected's): the
//!   one with the lower estimated frequency is evicted, the candidate on a tie (a candidate
//!   seen at least 6 times wins a tie one time in 128, so that keys colliding with a hot
//!   key in the sketch cannot keep every newcomer out; the draw is a fixed-seed xorshift,
//!   the same in both engines). The estimates come from a [`FrequencySketch`] (a count-min
//!   sketch with TinyLFU's reset and doorkeeper), which counts every hit and every new key
//!   and is made once the store is half full.
//! - A hill climber moves capacity between the window and the protected segment: after
//!   each sample (10 accesses per entry of the capacity) it compares the sample's hit ratio
//!   with the previous one's, keeps the direction when it did not fall, turns otherwise,
//!   and lets the step decay by 2% a sample, back to its first size when the hit ratio moved
//!   by 5 points or more.
//!
//! Where it differs from Caffeine: the doorkeeper (see [`super::sketch`]); a first step of
//! 2% of the capacity, not 6.25% (at 1% of the keys the samples' hit ratios vary by about
//! half a point, and larger steps walk the window away from its best size); maintenance
//! (eviction, promotion, climbing) runs within each call, not batched; a key that is
//! `set` again, deleted or expired changes no count.

use super::NIL;
use super::lists::SlotLists;
use super::sketch::FrequencySketch;

/// The admission window: new entries, LRU.
const WINDOW: usize = 0;
/// The main space's probation segment: entries admitted from the window, LRU.
const PROBATION: usize = 1;
/// The main space's protected segment: entries hit in probation, LRU.
const PROTECTED: usize = 2;

/// Caffeine's `PERCENT_MAIN`: the main space's first share of the capacity.
const PERCENT_MAIN: f64 = 0.99;
/// Caffeine's `PERCENT_MAIN_PROTECTED`: the protected segment's share of the main space.
const PERCENT_MAIN_PROTECTED: f64 = 0.8;
/// Caffeine's `HILL_CLIMBER_RESTART_THRESHOLD`: a hit-ratio change that restarts the step.
const RESTART_THRESHOLD: f64 = 0.05;
/// The first step of the hill climber, a share of the capacity (Caffeine: 6.25%).
const STEP_PERCENT: f64 = 0.02;
/// Caffeine's `HILL_CLIMBER_STEP_DECAY_RATE`.
const STEP_DECAY_RATE: f64 = 0.98;
/// Caffeine's `ADMIT_HASHDOS_THRESHOLD`: a candidate this frequent may win a tie by chance.
const ADMIT_HASHDOS_THRESHOLD: u32 = 6;
/// Caffeine's `QUEUE_TRANSFER_THRESHOLD`: most entries moved between queues at once.
const QUEUE_TRANSFER_THRESHOLD: usize = 1000;
/// Seed of the random admission draw.
const RANDOM_SEED: u32 = 0x9e37_79b9;

/// W-TinyLFU over the slots of a [`super::SieveStore`]. Order ([`WTinyLfu::order`]):
/// window, probation, protected, each most recently used first.
#[derive(Debug)]
pub(super) struct WTinyLfu {
    lists: SlotLists,
    /// The sketch hash ([`super::sketch::key_hash`]) of each slot's key.
    hashes: Vec<u32>,
    maximum: usize,
    /// Whether the store is bounded (else nothing is evicted, counted or adapted).
    bounded: bool,
    pub(super) window_max: usize,
    protected_max: usize,
    pub(super) sketch: Option<FrequencySketch>,
    // The hill climber, with Caffeine's names.
    hits_in_sample: u64,
    misses_in_sample: u64,
    previous_hit_rate: f64,
    step_size: f64,
    adjustment: i64,
    /// xorshift32 state of the random admission.
    random: u32,
    /// The first entry moved from the window to probation for the key that arrived.
    candidate: u32,
}

impl WTinyLfu {
    /// For a store of `capacity` entries ([`super::MAX_SLOTS`]: unbounded).
    pub(super) fn new(capacity: usize) -> WTinyLfu {
        let mut w = WTinyLfu {
            lists: SlotLists::new(3),
            hashes: Vec::new(),
            maximum: capacity,
            bounded: capacity < super::MAX_SLOTS,
            window_max: 0,
            protected_max: 0,
            sketch: None,
            hits_in_sample: 0,
            misses_in_sample: 0,
            previous_hit_rate: 0.0,
            step_size: 0.0,
            adjustment: 0,
            random: RANDOM_SEED,
            candidate: NIL,
        };
        w.clear();
        w
    }

    fn size(&self) -> usize {
        self.lists.len(WINDOW) + self.lists.len(PROBATION) + self.lists.len(PROTECTED)
    }

    /// A new key of sketch hash `hash` is about to be added: counted in the sketch (made
    /// when the store gets half full) and the climber's sample, and the window's overflow,
    /// the newcomer counted, moves to probation (Caffeine's `evictFromWindow`).
    pub(super) fn arrive(&mut self, hash: u32) {
        if !self.bounded {
            return;
        }
        if self.sketch.is_none() && self.size() + 1 >= self.maximum / 2 {
            self.sketch = Some(FrequencySketch::new(self.maximum));
        }
        if let Some(sketch) = &mut self.sketch {
            sketch.increment(hash);
        }
        self.misses_in_sample += 1;
        let mut window = self.lists.len(WINDOW) + 1;
        let mut candidate = NIL;
        while window > self.window_max {
            let t = self.lists.tail(WINDOW);
            if t == NIL {
                break;
            }
            self.lists.move_to_head(PROBATION, t);
            if candidate == NIL {
                candidate = t;
            }
            window -= 1;
        }
        self.candidate = candidate;
    }

    /// Links the new entry at `slot` at the head of the window.
    pub(super) fn add(&mut self, slot: u32, hash: u32) {
        // The candidate serves the eviction made for this key, if any: never a later one
        // (it may be deleted or evicted by then).
        self.candidate = NIL;
        let i = slot as usize;
        if i >= self.hashes.len() {
            self.hashes.resize(i + 1, 0);
        }
        self.hashes[i] = hash;
        self.lists.push_head(WINDOW, slot);
        if self.bounded {
            self.climb();
        }
    }

    /// Records a hit on `slot`.
    pub(super) fn hit(&mut self, slot: u32) {
        if !self.bounded {
            self.lists.move_to_head(WINDOW, slot);
            return;
        }
        if let Some(sketch) = &mut self.sketch {
            sketch.increment(self.hashes[slot as usize]);
        }
        let list = self.lists.list_of(slot);
        if list == PROBATION && self.protected_max >= 1 {
            self.lists.move_to_head(PROTECTED, slot);
        } else {
            self.lists.move_to_head(list, slot);
        }
        self.hits_in_sample += 1;
        self.climb();
    }

    /// Caffeine's `evictFromMain` for one eviction: the candidate against the victim (see
    /// the module docs). The entry chosen is still linked.
    pub(super) fn victim(&mut self) -> u32 {
        let mut candidate = std::mem::replace(&mut self.candidate, NIL);
        if candidate == NIL {
            candidate = self.lists.tail(WINDOW);
        }
        let mut victim = self.lists.tail(PROBATION);
        if victim == NIL {
            if candidate != NIL {
                return candidate;
            }
            victim = self.lists.tail(PROTECTED);
        }
        if candidate == NIL || candidate == victim {
            return victim;
        }
        let (c, v) = (
            self.hashes[candidate as usize],
            self.hashes[victim as usize],
        );
        if self.admit(c, v) { victim } else { candidate }
    }

    pub(super) fn remove(&mut self, slot: u32) {
        self.lists.unlink(slot);
    }

    /// Forgets every entry and all history: the first window, no sketch, a new climber.
    pub(super) fn clear(&mut self) {
        self.lists.clear();
        self.hashes = Vec::new();
        let max = self.maximum;
        if self.bounded {
            self.window_max = max - (PERCENT_MAIN * max as f64) as usize;
            self.protected_max = (PERCENT_MAIN_PROTECTED * (max - self.window_max) as f64) as usize;
            self.step_size = -STEP_PERCENT * max as f64;
        } else {
            self.window_max = max;
            self.protected_max = 0;
            self.step_size = 0.0;
        }
        self.sketch = None;
        self.hits_in_sample = 0;
        self.misses_in_sample = 0;
        self.previous_hit_rate = 0.0;
        self.adjustment = 0;
        self.random = RANDOM_SEED;
        self.candidate = NIL;
    }

    /// Live slots: window, probation, protected, each most recently used first.
    pub(super) fn order(&self) -> Vec<u32> {
        let mut out = self.lists.order(WINDOW);
        out.extend(self.lists.order(PROBATION));
        out.extend(self.lists.order(PROTECTED));
        out
    }

    /// The queue of `slot` (0 window, 1 probation, 2 protected) and the window's and
    /// protected segment's maximums (tests).
    #[cfg(test)]
    pub(super) fn state_of(&self, slot: u32) -> (usize, usize, usize) {
        (
            self.lists.list_of(slot),
            self.window_max,
            self.protected_max,
        )
    }

    /// Checks the queues and the maximums; returns the linked slots.
    pub(super) fn validate(&self) -> Vec<u32> {
        let live = self.lists.validate();
        if self.bounded {
            assert!(self.window_max >= 1, "window maximum {}", self.window_max);
            assert!(
                self.window_max + self.protected_max <= self.maximum,
                "window and protected maximums over the capacity"
            );
        }
        live
    }

    /// Caffeine's `admit`: whether the candidate replaces the victim.
    fn admit(&mut self, candidate: u32, victim: u32) -> bool {
        let Some(sketch) = &self.sketch else {
            return false;
        };
        let candidate_freq = sketch.frequency(candidate);
        let victim_freq = sketch.frequency(victim);
        if candidate_freq > victim_freq {
            return true;
        }
        if candidate_freq < ADMIT_HASHDOS_THRESHOLD {
            return false;
        }
        let mut x = self.random;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.random = x;
        x & 127 == 0
    }

    /// Caffeine's `climb`, after every access (Caffeine: after every maintenance cycle).
    fn climb(&mut self) {
        self.determine_adjustment();
        self.demote_from_protected();
        if self.adjustment > 0 {
            self.increase_window();
        } else if self.adjustment < 0 {
            self.decrease_window();
        }
    }

    fn determine_adjustment(&mut self) {
        let Some(sketch) = &self.sketch else {
            self.previous_hit_rate = 0.0;
            self.misses_in_sample = 0;
            self.hits_in_sample = 0;
            return;
        };
        let requests = self.hits_in_sample + self.misses_in_sample;
        if requests < sketch.sample_size() as u64 {
            return;
        }
        let hit_rate = self.hits_in_sample as f64 / requests as f64;
        let change = hit_rate - self.previous_hit_rate;
        let amount = if change >= 0.0 {
            self.step_size
        } else {
            -self.step_size
        };
        self.step_size = if change.abs() >= RESTART_THRESHOLD {
            let sign = if amount >= 0.0 { 1.0 } else { -1.0 };
            STEP_PERCENT * self.maximum as f64 * sign
        } else {
            STEP_DECAY_RATE * amount
        };
        self.previous_hit_rate = hit_rate;
        self.adjustment = amount as i64;
        self.misses_in_sample = 0;
        self.hits_in_sample = 0;
    }

    /// Moves protected's LRU entries to probation while protected is over its maximum.
    fn demote_from_protected(&mut self) {
        for _ in 0..QUEUE_TRANSFER_THRESHOLD {
            if self.lists.len(PROTECTED) <= self.protected_max {
                break;
            }
            let t = self.lists.tail(PROTECTED);
            self.lists.move_to_head(PROBATION, t);
        }
    }

    /// Grows the window by the adjustment, taken from the protected segment's maximum.
    fn increase_window(&mut self) {
        if self.protected_max == 0 {
            return;
        }
        let mut quota = (self.adjustment as usize).min(self.protected_max);
        self.protected_max -= quota;
        self.window_max += quota;
        self.demote_from_protected();
        for _ in 0..QUEUE_TRANSFER_THRESHOLD {
            if quota == 0 {
                break;
            }
            let mut candidate = self.lists.tail(PROBATION);
            if candidate == NIL {
                candidate = self.lists.tail(PROTECTED);
            }
            if candidate == NIL {
                break;
            }
            quota -= 1;
            self.lists.move_to_head(WINDOW, candidate);
        }
        self.protected_max += quota;
        self.window_max -= quota;
        self.adjustment = quota as i64;
    }

    /// Shrinks the window by the adjustment (to 1 at least), growing protected's maximum.
    fn decrease_window(&mut self) {
        if self.window_max <= 1 {
            return;
        }
        let mut quota = (self.adjustment.unsigned_abs() as usize).min(self.window_max - 1);
        self.protected_max += quota;
        self.window_max -= quota;
        for _ in 0..QUEUE_TRANSFER_THRESHOLD {
            if quota == 0 {
                break;
            }
            let t = self.lists.tail(WINDOW);
            if t == NIL {
                break;
            }
            quota -= 1;
            self.lists.move_to_head(PROBATION, t);
        }
        self.protected_max -= quota;
        self.window_max += quota;
        self.adjustment = -(quota as i64);
    }
}
