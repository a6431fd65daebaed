//! Store-level tests of ARC: scenarios, and the policy against a reference model (plain
//! `VecDeque`s, restating libCacheSim's `ARC.c`) under random workloads with deletes, TTLs
//! (the store's and entries' own), a stale window, evictions without a new key (a byte
//! budget's) and `clear`.

use std::collections::VecDeque;

use super::super::*;
use super::{B1, B2, T1, T2};

fn arc(capacity: usize) -> SieveStore {
    SieveStore::new(capacity, None, Policy::Arc)
}

fn ext(s: &SieveStore) -> &Arc {
    match &s.ext {
        Ext::Arc(a) => a,
        _ => unreachable!("not ARC"),
    }
}

/// The keys of T1 and T2, each newest first.
fn lists(s: &SieveStore) -> (Vec<u8>, Vec<u8>) {
    let a = ext(s);
    let (mut t1, mut t2) = (Vec::new(), Vec::new());
    for slot in a.order() {
        let k = s.nodes[slot as usize].key.as_bytes()[0];
        if a.list_of(slot) == T1 {
            t1.push(k);
        } else {
            t2.push(k);
        }
    }
    (t1, t2)
}

/// The keys of B1 and B2, each newest first.
fn ghosts(s: &SieveStore) -> (Vec<u8>, Vec<u8>) {
    let a = ext(s);
    let keys = |list| a.ghost_order(list).into_iter().map(|k| k[0]).collect();
    (keys(B1), keys(B2))
}

fn hit(s: &mut SieveStore, k: u8) -> bool {
    let r = matches!(s.get(&[k], 0.0), Lookup::Hit(_));
    s.validate();
    r
}

fn put(s: &mut SieveStore, k: u8) -> bool {
    let evicted = s.insert(&[k], 0.0).evicted;
    s.validate();
    evicted
}

#[test]
fn new_keys_go_to_t1_and_a_hit_moves_them_to_t2() {
    let mut s = arc(4);
    for k in [1, 2, 3] {
        put(&mut s, k);
    }
    assert_eq!(lists(&s), (vec![3, 2, 1], vec![]));
    assert!(hit(&mut s, 1) && hit(&mut s, 2));
    assert_eq!(lists(&s), (vec![3], vec![2, 1]));
    assert!(hit(&mut s, 1), "a hit in T2 moves it to T2's head");
    assert_eq!(lists(&s), (vec![3], vec![1, 2]));
    put(&mut s, 2); // a set of a present key is not an access
    assert_eq!(lists(&s), (vec![3], vec![1, 2]));
}

#[test]
fn a_key_back_from_b1_raises_p_and_goes_to_t2() {
    let mut s = arc(4);
    for k in [1, 2, 3, 4] {
        put(&mut s, k);
    }
    hit(&mut s, 4); // T1 3 2 1, T2 4
    // |T1| + |B1| = 3 < 4: REPLACE, |T1| = 3 > p = 0: T1's oldest, 1, into B1.
    assert!(put(&mut s, 5));
    assert_eq!(lists(&s), (vec![5, 3, 2], vec![4]));
    assert_eq!(ghosts(&s), (vec![1], vec![]));
    // |T1| + |B1| = 4 >= 4 and B1 holds 1: 1 leaves B1, then REPLACE takes 2 into B1.
    assert!(put(&mut s, 6));
    assert_eq!(lists(&s), (vec![6, 5, 3], vec![4]));
    assert_eq!(ghosts(&s), (vec![2], vec![]));
    assert_eq!(ext(&s).p(), 0.0);
    // 2 comes back: p += max(|B2| / |B1|, 1) = 1; REPLACE: |T1| = 3 > 1, 3 into B1.
    assert!(put(&mut s, 2));
    assert_eq!(ext(&s).p(), 1.0);
    assert_eq!(lists(&s), (vec![6, 5], vec![2, 4]));
    assert_eq!(ghosts(&s), (vec![3], vec![]));
}

#[test]
fn a_key_back_from_b2_lowers_p() {
    let mut s = arc(2);
    put(&mut s, 1);
    put(&mut s, 2);
    hit(&mut s, 1);
    hit(&mut s, 2); // T1 empty, T2 2 1
    // |T1| + |B1| = 0 < 2, 2 entries in all: REPLACE, T1 empty: T2's oldest, 1, into B2.
    put(&mut s, 3);
    assert_eq!(ghosts(&s), (vec![], vec![1]));
    // 3 is alone in T1, |T1| = 1 > p = 0: 3 into B1.
    put(&mut s, 4);
    assert_eq!(ghosts(&s), (vec![3], vec![1]));
    put(&mut s, 3); // back from B1: p = min(0 + max(1 / 1, 1), 2) = 1
    assert_eq!(ext(&s).p(), 1.0);
    // |T1| = 1 == p, from B1 (not B2): T2's oldest, 2, into B2.
    assert_eq!(lists(&s), (vec![4], vec![3]));
    assert_eq!(ghosts(&s), (vec![], vec![2, 1]));
    put(&mut s, 1); // back from B2: p = max(1 - max(0 / 2, 1), 0) = 0
    assert_eq!(ext(&s).p(), 0.0);
    // REPLACE: |T1| = 1 > 0: 4 into B1.
    assert_eq!(lists(&s), (vec![], vec![1, 3]));
    assert_eq!(ghosts(&s), (vec![4], vec![2]));
}

#[test]
fn with_t1_full_and_b1_empty_the_oldest_of_t1_leaves_without_a_ghost() {
    let mut s = arc(3);
    for k in 1..=3 {
        put(&mut s, k);
    }
    for k in 4..=9 {
        assert!(put(&mut s, k));
        assert_eq!(ghosts(&s), (vec![], vec![]), "a scan leaves no ghost");
    }
    assert_eq!(lists(&s), (vec![9, 8, 7], vec![]));
    assert_eq!(s.stats().evictions, 6);
}

#[test]
fn b2_loses_its_oldest_key_when_the_lists_hold_2c() {
    let mut s = arc(2);
    for k in [1, 2] {
        put(&mut s, k);
        hit(&mut s, k);
    }
    put(&mut s, 3); // 1 into B2
    hit(&mut s, 3); // T2 3 2
    put(&mut s, 4); // 2 into B2: T1 4, T2 3, B2 2 1 (4 = 2c)
    assert_eq!(lists(&s), (vec![4], vec![3]));
    assert_eq!(ghosts(&s), (vec![], vec![2, 1]));
    // |T1| + |B1| = 1 < 2, the lists hold 4 >= 2c: B2's oldest, 1, goes; REPLACE: 4 to B1.
    put(&mut s, 5);
    assert_eq!(lists(&s), (vec![5], vec![3]));
    assert_eq!(ghosts(&s), (vec![4], vec![2]));
    assert!(!hit(&mut s, 1));
}

#[test]
fn deletes_and_expiry_leave_no_ghost_and_clear_forgets_p() {
    let mut s = SieveStore::with_stale(2, Some(10.0), Policy::Arc, 5.0);
    s.insert(&[1], 0.0);
    s.get(&[1], 0.0); // T2 1
    s.insert(&[2], 0.0);
    s.insert(&[3], 0.0); // REPLACE: |T1| = 1 > p = 0: 2 into B1
    assert_eq!(ghosts(&s), (vec![2], vec![]));
    s.insert(&[2], 1.0); // back: p = 1; |T1| = 1 == p, from B1: 1 into B2
    assert_eq!(ext(&s).p(), 1.0);
    assert_eq!(lists(&s), (vec![3], vec![2]));
    assert_eq!(ghosts(&s), (vec![], vec![1]));
    assert!(s.remove(&[3]).is_some());
    assert!(matches!(s.get(&[2], 12.0), Lookup::Stale(_)));
    assert_eq!(lists(&s), (vec![], vec![2]), "a stale lookup moves nothing");
    assert!(matches!(s.get(&[2], 16.0), Lookup::Expired(_)));
    assert_eq!(
        ghosts(&s),
        (vec![], vec![1]),
        "neither a delete nor an expiry"
    );
    s.validate();
    s.clear();
    s.validate();
    assert_eq!(ext(&s).p(), 0.0);
    assert_eq!(ghosts(&s), (vec![], vec![]));
    s.insert(&[1], 30.0);
    assert_eq!(lists(&s), (vec![1], vec![]), "the ghost was forgotten");
}

#[test]
fn a_key_back_from_a_ghost_into_a_store_not_full_evicts_nothing() {
    let mut s = arc(2);
    put(&mut s, 1);
    put(&mut s, 2);
    hit(&mut s, 2);
    put(&mut s, 3); // 1 into B1
    assert!(s.remove(&[3]).is_some());
    assert!(!put(&mut s, 1), "not full: no eviction");
    assert_eq!(lists(&s), (vec![], vec![1, 2]));
    assert_eq!(ext(&s).p(), 1.0);
}

#[test]
fn unbounded_keeps_no_ghost_and_evicts_t1_first() {
    let mut s = SieveStore::new(usize::MAX, None, Policy::Arc);
    for k in 0..=200u8 {
        put(&mut s, k);
    }
    for k in 0..10u8 {
        hit(&mut s, k);
    }
    assert_eq!(s.len(), 201);
    assert!(s.evict().is_some()); // a byte budget's eviction
    assert!(!hit(&mut s, 10), "T1's oldest");
    for _ in 0..190 {
        s.evict();
    }
    s.validate();
    assert_eq!(lists(&s), (vec![], (0..10).rev().collect()));
    s.evict();
    assert!(!hit(&mut s, 0), "then T2's oldest");
    assert_eq!(ghosts(&s), (vec![], vec![]));
}

#[test]
fn tiny_capacities_keep_entries() {
    for capacity in 1..=4 {
        let mut s = arc(capacity);
        for k in 0..60u8 {
            put(&mut s, k % 7);
            assert!(hit(&mut s, k % 7), "capacity {capacity}: {k} kept");
        }
        assert_eq!(s.len(), capacity);
    }
}

/// An entry of the model: key, insertion time, TTL.
type Entry = (u8, f64, f64);

/// ARC restated from libCacheSim's `ARC.c` over plain lists (front = newest).
struct Model {
    c: usize,
    p: f64,
    t1: VecDeque<Entry>,
    t2: VecDeque<Entry>,
    b1: VecDeque<u8>,
    b2: VecDeque<u8>,
    evictions: u64,
}

impl Model {
    fn new(c: usize) -> Model {
        Model {
            c,
            p: 0.0,
            t1: VecDeque::new(),
            t2: VecDeque::new(),
            b1: VecDeque::new(),
            b2: VecDeque::new(),
            evictions: 0,
        }
    }

    fn find(&self, k: u8) -> Option<(usize, usize)> {
        let at = |l: &VecDeque<Entry>| l.iter().position(|e| e.0 == k);
        at(&self.t1)
            .map(|i| (T1, i))
            .or_else(|| at(&self.t2).map(|i| (T2, i)))
    }

    fn list(&mut self, list: usize) -> &mut VecDeque<Entry> {
        if list == T1 {
            &mut self.t1
        } else {
            &mut self.t2
        }
    }

    fn take(&mut self, k: u8) -> Option<Entry> {
        let (list, i) = self.find(k)?;
        self.list(list).remove(i)
    }

    fn hit(&mut self, k: u8) {
        let e = self.take(k).unwrap();
        self.t2.push_front(e);
    }

    /// `from`: the ghost list the new key came from (`None`: a miss on every list).
    fn replace(&mut self, from: Option<usize>) {
        let t1 = self.t1.len() as f64;
        if (t1 > 0.0 && (t1 > self.p || (t1 == self.p && from == Some(B2)))) || self.t2.is_empty() {
            let e = self.t1.pop_back().unwrap();
            self.b1.push_front(e.0);
        } else {
            let e = self.t2.pop_back().unwrap();
            self.b2.push_front(e.0);
        }
    }

    fn insert(&mut self, k: u8, now: f64, ttl: f64) {
        if let Some((list, i)) = self.find(k) {
            let e = &mut self.list(list)[i];
            (e.1, e.2) = (now, ttl);
            return;
        }
        let (b1, b2) = (self.b1.len() as f64, self.b2.len() as f64);
        let from = if let Some(i) = self.b1.iter().position(|&g| g == k) {
            self.b1.remove(i);
            self.p = (self.p + (b2 / b1).max(1.0)).min(self.c as f64);
            Some(B1)
        } else if let Some(i) = self.b2.iter().position(|&g| g == k) {
            self.b2.remove(i);
            self.p = (self.p - (b1 / b2).max(1.0)).max(0.0);
            Some(B2)
        } else {
            None
        };
        if self.t1.len() + self.t2.len() >= self.c {
            self.evict(from);
        }
        let e = (k, now, ttl);
        if from.is_some() {
            self.t2.push_front(e);
        } else {
            self.t1.push_front(e);
        }
    }

    /// One eviction (the store is not empty); `from` as for [`Model::replace`].
    fn evict(&mut self, from: Option<usize>) {
        self.evictions += 1;
        match from {
            Some(_) => self.replace(from),
            None if self.t1.len() + self.b1.len() >= self.c => {
                if self.b1.pop_back().is_some() {
                    self.replace(None);
                } else {
                    self.t1.pop_back();
                }
            }
            None => {
                let all = self.t1.len() + self.t2.len() + self.b1.len() + self.b2.len();
                if all >= 2 * self.c {
                    self.b2.pop_back();
                }
                self.replace(None);
            }
        }
    }

    fn state(&self) -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
        (
            self.t1.iter().map(|e| e.0).collect(),
            self.t2.iter().map(|e| e.0).collect(),
            self.b1.iter().copied().collect(),
            self.b2.iter().copied().collect(),
        )
    }
}

fn store_state(s: &SieveStore) -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
    let (t1, t2) = lists(s);
    let (b1, b2) = ghosts(s);
    (t1, t2, b1, b2)
}

/// One random workload: `keys` keys over a store of `c` entries with a TTL of 400 ms and a
/// stale window of 20 ms; a fifth of the inserts carry a TTL of their own; a `clear` every
/// 7,000 steps.
/// Returns the hits, stale lookups, expiries, keys back from a ghost and evictions.
fn run_against_the_model(seed: u64, c: usize, keys: u64, steps: u32) -> [u64; 5] {
    let mut next = xorshift(seed);
    let mut s = SieveStore::with_stale(c, Some(400.0), Policy::Arc, 20.0);
    let mut m = Model::new(c);
    let (mut hits, mut stale, mut expired, mut from_ghosts) = (0, 0, 0, 0);
    let mut evictions = 0u64;
    for t in 0..steps {
        if t % 7000 == 6999 {
            s.clear();
            evictions += m.evictions;
            m = Model::new(c);
        }
        // Skewed keys: the smaller of two draws.
        let k = (next() % keys).min(next() % keys) as u8;
        let now = f64::from(t);
        match next() % 20 {
            0 => {
                assert_eq!(s.remove(&[k]).is_some(), m.take(k).is_some(), "step {t}");
            }
            1 => {
                // An eviction without a new key (a byte budget's): case IV.
                let empty = m.t1.is_empty() && m.t2.is_empty();
                assert_eq!(s.evict().is_none(), empty, "step {t}");
                if !empty {
                    m.evict(None);
                }
            }
            2..=7 => {
                let own = next()
                    .is_multiple_of(5)
                    .then(|| f64::from((next() % 100) as u32 + 1));
                let ghost = m.b1.contains(&k) || m.b2.contains(&k);
                if ghost && m.find(k).is_none() {
                    from_ghosts += 1;
                }
                s.insert_with_ttl(&[k], now, own);
                m.insert(k, now, own.unwrap_or(400.0));
            }
            _ => {
                let r = s.get(&[k], now);
                match m.find(k) {
                    None => assert_eq!(r, Lookup::Miss, "step {t}"),
                    Some((list, i)) => {
                        let (_, at, ttl) = m.list(list)[i];
                        if now - at >= ttl + 20.0 {
                            assert!(matches!(r, Lookup::Expired(_)), "step {t}");
                            m.take(k);
                            expired += 1;
                        } else if now - at >= ttl {
                            assert!(matches!(r, Lookup::Stale(_)), "step {t}");
                            stale += 1;
                        } else {
                            assert!(matches!(r, Lookup::Hit(_)), "step {t}");
                            m.hit(k);
                            hits += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(store_state(&s), m.state(), "step {t}");
        assert_eq!(ext(&s).p(), m.p, "step {t}");
        if t % 61 == 0 {
            s.validate();
        }
    }
    s.validate();
    [hits, stale, expired, from_ghosts, evictions + m.evictions]
}

#[test]
fn arc_matches_a_reference_model_under_random_workloads() {
    for (seed, c, keys) in [
        (0x2545_f491_4f6c_dd1d, 12, 40),
        (0x9e37_79b9_7f4a_7c15, 5, 16),
        (0x1234_5678_9abc_def1, 30, 120),
        (0x0bad_cafe_f00d_0001, 1, 6),
    ] {
        let [hits, stale, expired, from_ghosts, evictions] =
            run_against_the_model(seed, c, keys, 30_000);
        assert!(
            hits > 3000 && stale > 10 && from_ghosts > 1000 && evictions > 4000,
            "capacity {c}: {hits} hits, {stale} stale, {from_ghosts} from ghosts, \
             {evictions} evictions"
        );
        assert!(c == 1 || expired > 10, "capacity {c}: {expired} expired");
    }
}

#[test]
fn p_moves_both_ways_on_a_shifting_workload() {
    // Phases of a hot set and a scan: p must rise (B1 hits) and fall (B2 hits).
    let mut s = arc(50);
    let mut next = xorshift(7);
    let (mut rose, mut fell) = (false, false);
    let mut last = 0.0;
    for t in 0..40_000u32 {
        let phase = t / 5000;
        let k = if next().is_multiple_of(3) {
            (phase * 20 + (next() % 60) as u32) as u8
        } else {
            (100 + (next() % 40) as u32) as u8
        };
        if !matches!(s.get(&[k], 0.0), Lookup::Hit(_)) {
            s.insert(&[k], 0.0);
        }
        let p = ext(&s).p();
        rose |= p > last;
        fell |= p < last;
        last = p;
    }
    s.validate();
    assert!(rose && fell, "p rose: {rose}, fell: {fell}");
}
