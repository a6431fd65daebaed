//! ARC (Megiddo and Modha, "ARC: A Self-Tuning, Low Overhead Replacement Cache", FAST 2003),
//! as libCacheSim's `ARC` (`libCacheSim/cache/eviction/ARC.c`, read in PyPI `libcachesim`
//! 0.3.5); it gives libCacheSim's miss counts (bench/sim.ts, tests/eviction_quality_test.ts).
//! `src/store/_arc.ts` is its TypeScript port.
//!
//! Two LRU lists of entries, T1 (seen once lately: recency) and T2 (seen at least twice:
//! frequency), and two LRU lists of keys without values, the ghosts B1 and B2 (keys lately
//! evicted from T1 and T2). `p`, the target size of T1 (0 to the capacity `c`, a float as in
//! libCacheSim), adapts: a new key found in B1 (T1 was too small) raises it by
//! `max(|B2| / |B1|, 1)`, one found in B2 lowers it by `max(|B1| / |B2|, 1)`.
//!
//! - Hit (case I of the paper): the entry goes to the head of T2.
//! - New key: to the head of T2 when a ghost held it (cases II and III; the ghost forgets
//!   it), else to the head of T1 (case IV).
//! - Eviction (only when the store is full, as in libCacheSim): for a key from a ghost,
//!   REPLACE; for another new key, when `|T1| + |B1| >= c` the oldest key of B1 goes first
//!   and then REPLACE, or, B1 being empty, the oldest entry of T1 goes without a ghost;
//!   else the oldest key of B2 goes first when `|T1| + |T2| + |B1| + |B2| >= 2c` (and B2
//!   holds one), and then REPLACE. REPLACE evicts the oldest entry of T1 into B1 when T1 is
//!   not empty and `|T1| > p`, or `|T1| == p` for a key from B2, or T2 is empty; else the
//!   oldest entry of T2 into B2.
//!
//! Where libCacheSim departs from the paper, this follows libCacheSim: `p` is a float (the
//! paper leaves it open); REPLACE also takes T1 when T2 is empty; case IV tests whether B1
//! holds a key (not `|T1| < c`) and trims the ghosts only when the store is full. Where
//! libCacheSim's traces cannot go, this decides: a `set` of a present key, a delete or an
//! expiry change nothing but the entry's own list (no ghost, no `p`), as libCacheSim's
//! `ARC_remove`; ghosts have no TTL. Evictions made for a byte budget (before the new key
//! arrives) follow case IV. Unbounded (`maxSize: Infinity`), there are no ghosts and `p`
//! stays 0: a byte budget then evicts T1's oldest entry, else T2's.

use hashbrown::HashTable;

use super::lists::SlotLists;
use super::{NIL, StoredKey};

#[cfg(test)]
mod tests;

/// Entries seen once lately (recency).
pub(super) const T1: usize = 0;
/// Entries seen at least twice lately (frequency).
pub(super) const T2: usize = 1;
/// Keys lately evicted from T1.
pub(super) const B1: usize = 0;
/// Keys lately evicted from T2.
pub(super) const B2: usize = 1;

/// ARC over the slots of a [`super::SieveStore`]. Order ([`Arc::order`]): T1, then T2,
/// each newest first.
#[derive(Debug)]
pub(super) struct Arc {
    lists: SlotLists,
    ghosts: Ghosts,
    /// `c`, as a float for the arithmetic of `p`.
    capacity: f64,
    /// Whether the capacity is bounded (else: no ghosts).
    bounded: bool,
    /// Target size of T1, 0 to `c`.
    p: f64,
    /// The ghost list (B1 or B2) that held the key that arrived, or NIL.
    arrived_from: u32,
    /// The ghost list (B1 or B2) where the victim just chosen goes, or NIL.
    to_ghost: u32,
}

impl Arc {
    /// For a store of `capacity` entries ([`super::MAX_SLOTS`]: unbounded).
    pub(super) fn new(capacity: usize) -> Arc {
        Arc {
            lists: SlotLists::new(2),
            ghosts: Ghosts::new(),
            capacity: capacity as f64,
            bounded: capacity < super::MAX_SLOTS,
            p: 0.0,
            arrived_from: NIL,
            to_ghost: NIL,
        }
    }

    /// A new key (of index hash `hash`) is about to be added: when a ghost holds it, adapt
    /// `p` (cases II and III) and forget it.
    pub(super) fn arrive(&mut self, hash: u64, key: &[u8]) {
        self.arrived_from = NIL;
        if self.ghosts.is_empty() {
            return;
        }
        let Some(list) = self.ghosts.take(hash, key) else {
            return;
        };
        // The lengths before the key left its list, as libCacheSim computes them.
        let (b1, b2) = (self.ghosts.len(B1) as f64, self.ghosts.len(B2) as f64);
        if list == B1 {
            let delta = (b2 / (b1 + 1.0)).max(1.0);
            self.p = (self.p + delta).min(self.capacity);
        } else {
            let delta = (b1 / (b2 + 1.0)).max(1.0);
            self.p = (self.p - delta).max(0.0);
        }
        self.arrived_from = list as u32;
    }

    /// Links the new entry at `slot` (whose key last arrived).
    pub(super) fn add(&mut self, slot: u32) {
        let list = if self.arrived_from == NIL { T1 } else { T2 };
        self.arrived_from = NIL;
        self.lists.push_head(list, slot);
    }

    #[inline]
    pub(super) fn hit(&mut self, slot: u32) {
        self.lists.move_to_head(T2, slot);
    }

    /// Chooses the entry to evict (still linked): see the module docs.
    pub(super) fn victim(&mut self) -> u32 {
        if !self.bounded {
            self.to_ghost = NIL;
            return self.replace();
        }
        if self.arrived_from == NIL {
            let (t1, b1) = (self.lists.len(T1), self.ghosts.len(B1));
            if (t1 + b1) as f64 >= self.capacity {
                if b1 == 0 {
                    self.to_ghost = NIL;
                    return self.lists.tail(T1);
                }
                self.ghosts.pop_oldest(B1);
            } else {
                let total = t1 + b1 + self.lists.len(T2) + self.ghosts.len(B2);
                if total as f64 >= 2.0 * self.capacity && self.ghosts.len(B2) > 0 {
                    self.ghosts.pop_oldest(B2);
                }
            }
        }
        let victim = self.replace();
        self.to_ghost = self.lists.list_of(victim) as u32;
        victim
    }

    /// REPLACE: T1's oldest entry or T2's, by `p`.
    fn replace(&self) -> u32 {
        let t1 = self.lists.len(T1);
        let t1f = t1 as f64;
        let from_b2 = self.arrived_from == B2 as u32;
        if (t1 > 0 && (t1f > self.p || (t1f == self.p && from_b2))) || self.lists.len(T2) == 0 {
            self.lists.tail(T1)
        } else {
            self.lists.tail(T2)
        }
    }

    /// The key (of index hash `hash`) of the victim just chosen: into B1 when it left T1,
    /// into B2 when it left T2, unless the choice was to keep no ghost.
    pub(super) fn evicted(&mut self, hash: u64, key: &[u8]) {
        if self.to_ghost != NIL {
            self.ghosts.push(self.to_ghost as usize, hash, key);
        }
        self.to_ghost = NIL;
    }

    pub(super) fn remove(&mut self, slot: u32) {
        self.lists.unlink(slot);
    }

    /// Forgets every entry, every ghost and `p`.
    pub(super) fn clear(&mut self) {
        self.lists.clear();
        self.ghosts.clear();
        self.p = 0.0;
        self.arrived_from = NIL;
        self.to_ghost = NIL;
    }

    /// Live slots: T1 then T2, each newest first.
    pub(super) fn order(&self) -> Vec<u32> {
        let mut out = self.lists.order(T1);
        out.extend(self.lists.order(T2));
        out
    }

    /// The list (T1 or T2) of the live `slot` (tests).
    #[cfg(test)]
    pub(super) fn list_of(&self, slot: u32) -> usize {
        self.lists.list_of(slot)
    }

    /// The keys of the ghost list `list` (B1 or B2), newest first (tests).
    #[cfg(test)]
    pub(super) fn ghost_order(&self, list: usize) -> Vec<Vec<u8>> {
        self.ghosts.order(list)
    }

    /// The target size of T1 (tests).
    #[cfg(test)]
    pub(super) fn p(&self) -> f64 {
        self.p
    }

    /// Checks the lists, the ghosts and `p`; returns the linked slots.
    pub(super) fn validate(&self) -> Vec<u32> {
        let live = self.lists.validate();
        self.ghosts.validate();
        assert!(
            (0.0..=self.capacity).contains(&self.p),
            "p {} outside 0..={}",
            self.p,
            self.capacity
        );
        let ghosts = self.ghosts.len(B1) + self.ghosts.len(B2);
        if self.bounded {
            // |T1| + |T2| + |B1| + |B2| <= 2c in the paper; under a byte budget the store
            // may hold fewer entries than c while its ghosts still number up to 2c - 1.
            assert!(
                (ghosts as f64) < 2.0 * self.capacity,
                "{ghosts} ghosts for a capacity of {}",
                self.capacity
            );
        } else {
            assert_eq!(ghosts, 0, "ghosts in an unbounded store");
        }
        assert_eq!(self.arrived_from, NIL, "an arrival left pending");
        assert_eq!(self.to_ghost, NIL, "a victim's ghost left pending");
        live
    }
}

#[derive(Debug)]
struct GhostNode {
    key: StoredKey,
    hash: u64,
    newer: u32,
    older: u32,
    list: u8,
}

// 48 bytes a ghost, plus the index (5 bytes a bucket, at most 7/8 full).
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<GhostNode>() == 48);

/// ARC's ghost lists B1 and B2: keys without values, each list from its newest key (head)
/// to its oldest (tail), with one index over both (a new key costs one lookup). A key is in
/// one list at most. Hashes are the store's index hashes.
#[derive(Debug)]
struct Ghosts {
    table: HashTable<u32>,
    nodes: Vec<GhostNode>,
    free: Vec<u32>,
    head: [u32; 2],
    tail: [u32; 2],
    len: [usize; 2],
}

impl Ghosts {
    fn new() -> Ghosts {
        Ghosts {
            table: HashTable::new(),
            nodes: Vec::new(),
            free: Vec::new(),
            head: [NIL; 2],
            tail: [NIL; 2],
            len: [0; 2],
        }
    }

    fn len(&self, list: usize) -> usize {
        self.len[list]
    }

    fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Removes `key`; returns the list that held it.
    fn take(&mut self, hash: u64, key: &[u8]) -> Option<usize> {
        let nodes = &self.nodes;
        let entry = self
            .table
            .find_entry(hash, |&n| nodes[n as usize].key.as_bytes() == key)
            .ok()?;
        let (node, _) = entry.remove();
        let list = self.nodes[node as usize].list as usize;
        self.unlink(node);
        Some(list)
    }

    /// Adds `key`, which no list holds, as the newest of `list`.
    fn push(&mut self, list: usize, hash: u64, key: &[u8]) {
        debug_assert!(
            self.table
                .find(hash, |&n| self.nodes[n as usize].key.as_bytes() == key)
                .is_none(),
            "a ghost key twice"
        );
        let node = GhostNode {
            key: StoredKey::new(key),
            hash,
            newer: NIL,
            older: self.head[list],
            list: list as u8,
        };
        let n = match self.free.pop() {
            Some(n) => {
                self.nodes[n as usize] = node;
                n
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        let old = self.head[list];
        if old == NIL {
            self.tail[list] = n;
        } else {
            self.nodes[old as usize].newer = n;
        }
        self.head[list] = n;
        self.len[list] += 1;
        let nodes = &self.nodes;
        self.table
            .insert_unique(hash, n, |&m| nodes[m as usize].hash);
    }

    /// Forgets the oldest key of `list` (not empty).
    fn pop_oldest(&mut self, list: usize) {
        let oldest = self.tail[list];
        let hash = self.nodes[oldest as usize].hash;
        if let Ok(entry) = self.table.find_entry(hash, |&n| n == oldest) {
            entry.remove();
        }
        self.unlink(oldest);
    }

    /// Forgets every key.
    fn clear(&mut self) {
        *self = Ghosts::new();
    }

    /// Takes the unindexed `node` off its list and frees it.
    fn unlink(&mut self, node: u32) {
        let (newer, older, list) = {
            let g = &self.nodes[node as usize];
            (g.newer, g.older, g.list as usize)
        };
        if newer == NIL {
            self.head[list] = older;
        } else {
            self.nodes[newer as usize].older = older;
        }
        if older == NIL {
            self.tail[list] = newer;
        } else {
            self.nodes[older as usize].newer = newer;
        }
        self.len[list] -= 1;
        self.nodes[node as usize].key = StoredKey::EMPTY;
        self.free.push(node);
    }

    /// Keys of `list` from the newest to the oldest (tests).
    #[cfg(test)]
    fn order(&self, list: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut n = self.head[list];
        while n != NIL {
            out.push(self.nodes[n as usize].key.as_bytes().to_vec());
            n = self.nodes[n as usize].older;
        }
        out
    }

    /// Checks that each list links both ways, has its length and is indexed, and that the
    /// index holds nothing else. Panics on the first violation.
    fn validate(&self) {
        let mut seen = 0usize;
        for list in [B1, B2] {
            let mut prev = NIL;
            let mut n = 0usize;
            let mut node = self.head[list];
            while node != NIL {
                let g = &self.nodes[node as usize];
                assert_eq!(g.newer, prev, "ghost {node}: broken newer link");
                assert_eq!(g.list as usize, list, "ghost {node} marked on another list");
                assert_eq!(
                    self.table
                        .find(g.hash, |&m| self.nodes[m as usize].key.as_bytes()
                            == g.key.as_bytes())
                        .copied(),
                    Some(node),
                    "ghost {node} not indexed"
                );
                prev = node;
                n += 1;
                assert!(
                    n <= self.len[list],
                    "ghost list {list} longer than its length"
                );
                node = g.older;
            }
            assert_eq!(
                self.tail[list], prev,
                "ghost list {list}: tail is not the last"
            );
            assert_eq!(n, self.len[list], "ghost list {list} length");
            seen += n;
        }
        assert_eq!(self.table.len(), seen, "ghost index size");
        assert_eq!(seen + self.free.len(), self.nodes.len(), "ghost slab leak");
    }
}
