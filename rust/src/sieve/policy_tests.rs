//! Store-level tests of S3-FIFO and W-TinyLFU: scenarios, and each policy against a
//! reference model (plain `VecDeque`s, restating the rules of `s3fifo.rs` and
//! `wtinylfu.rs`) under a random workload with deletes, TTLs and a stale window.

use std::collections::VecDeque;

use super::sketch::{FrequencySketch, key_hash};
use super::*;

fn s3(capacity: usize) -> SieveStore {
    SieveStore::new(capacity, None, Policy::S3Fifo)
}

fn ext_s3(s: &SieveStore) -> &S3Fifo {
    match &s.ext {
        Ext::S3(s3) => s3,
        _ => unreachable!("not S3-FIFO"),
    }
}

fn ext_tiny(s: &SieveStore) -> &WTinyLfu {
    match &s.ext {
        Ext::Tiny(t) => t,
        _ => unreachable!("not W-TinyLFU"),
    }
}

/// `(key, in main, count)` in the store's order (small queue, then main, newest first).
fn s3_state(s: &SieveStore) -> Vec<(u8, bool, u8)> {
    let ext = ext_s3(s);
    ext.order()
        .into_iter()
        .map(|slot| {
            let (main, freq) = ext.state_of(slot);
            (s.nodes[slot as usize].key.as_bytes()[0], main, freq)
        })
        .collect()
}

fn hit(s: &mut SieveStore, k: u8) -> bool {
    let r = matches!(s.get(&[k], 0.0), Lookup::Hit(_));
    s.validate();
    r
}

fn put(s: &mut SieveStore, k: u8) {
    s.insert(&[k], 0.0);
    s.validate();
}

#[test]
fn s3fifo_new_keys_fill_the_small_queue_then_the_main_one_until_the_first_eviction() {
    // Capacity 20: small 2, main 18, ghost 18.
    let mut s = s3(20);
    for k in 1..=4 {
        put(&mut s, k);
    }
    let st = s3_state(&s);
    assert_eq!(
        st,
        vec![(2, false, 0), (1, false, 0), (4, true, 0), (3, true, 0)],
        "the small queue full, 3 and 4 went to the main one (S3FIFO.c, not S3FIFOv0.c)"
    );
}

#[test]
fn s3fifo_evicts_one_hit_wonders_from_the_small_queue_into_the_ghost() {
    let mut s = s3(20);
    for k in 1..=20 {
        put(&mut s, k);
    }
    assert!(
        hit(&mut s, 1) && hit(&mut s, 1),
        "1 hit twice in the small queue"
    );
    put(&mut s, 21); // small is 2, 1; 1 (count 2) moves to main, 2 (count 0) is evicted
    assert!(!hit(&mut s, 2));
    assert_eq!(ext_s3(&s).ghost_order(), vec![vec![2]]);
    let st = s3_state(&s);
    assert_eq!(st[0], (21, false, 0));
    assert!(st.contains(&(1, true, 0)), "{st:?}");
    assert_eq!(s.stats().evictions, 1);
    // 2 comes back: from the ghost, straight into the main queue.
    put(&mut s, 2);
    assert!(s3_state(&s).contains(&(2, true, 0)));
    assert!(ext_s3(&s).ghost_order().is_empty(), "the ghost forgot it");
}

#[test]
fn s3fifo_main_queue_is_a_two_bit_clock() {
    let mut s = s3(20);
    for k in 1..=20 {
        put(&mut s, k); // 1, 2 in small; 3..=20 in main (no eviction yet)
    }
    for _ in 0..5 {
        hit(&mut s, 3); // count stops at 3
    }
    hit(&mut s, 4);
    // Make the small queue empty of low counts so that the eviction goes to main: hits on
    // 1 and 2 twice each, then a new key: both move to main, main is over its 18.
    for k in [1, 2, 1, 2] {
        hit(&mut s, k);
    }
    put(&mut s, 21);
    // Main held 3..=20 (18) + 1, 2: over its share. Its oldest, 3 (count 3) goes round
    // with 2, then 4 (count 1) with 0, then 5 (count 0) is evicted.
    assert!(!hit(&mut s, 5));
    let st = s3_state(&s);
    assert!(
        st.contains(&(3, true, 2)) && st.contains(&(4, true, 0)),
        "{st:?}"
    );
    assert!(
        ext_s3(&s).ghost_order().is_empty(),
        "main victims skip the ghost"
    );
}

#[test]
fn s3fifo_tiny_capacities_still_keep_entries() {
    for capacity in 1..=20 {
        let mut s = s3(capacity);
        for k in 0..50 {
            put(&mut s, k);
            assert!(hit(&mut s, k), "capacity {capacity}: {k} kept");
        }
        assert_eq!(s.len(), capacity);
    }
}

#[test]
fn s3fifo_delete_expiry_and_clear() {
    let mut s = SieveStore::with_stale(20, Some(10.0), Policy::S3Fifo, 5.0);
    for k in 1..=20 {
        s.insert(&[k], 0.0);
    }
    s.insert(&[21], 1.0); // evicts 1 into the ghost
    assert_eq!(ext_s3(&s).ghost_order(), vec![vec![1]]);
    assert!(s.remove(&[2]).is_some());
    assert!(matches!(s.get(&[3], 12.0), Lookup::Stale(_)));
    assert!(matches!(s.get(&[3], 15.0), Lookup::Expired(_)));
    s.validate();
    assert_eq!(s.len(), 18);
    assert_eq!(
        ext_s3(&s).ghost_order(),
        vec![vec![1]],
        "deletes skip the ghost"
    );
    s.clear();
    s.validate();
    assert!(ext_s3(&s).ghost_order().is_empty());
    for k in 1..=4 {
        s.insert(&[k], 20.0);
    }
    let st = s3_state(&s);
    assert!(
        st.contains(&(3, true, 0)),
        "clear restarts the fill: {st:?}"
    );
}

/// libCacheSim's S3FIFO on `VecDeque`s (front: newest), with the store's TTL rules.
struct S3Model {
    cap: usize,
    small_max: usize,
    main_max: usize,
    ghost_cap: usize,
    /// `(key, count, inserted at, ttl)`.
    small: VecDeque<(u8, u8, f64, f64)>,
    main: VecDeque<(u8, u8, f64, f64)>,
    ghost: VecDeque<u8>,
    has_evicted: bool,
    evictions: u64,
}

impl S3Model {
    fn new(cap: usize) -> S3Model {
        let small_max = ((cap as f64 * 0.1) as usize).max(1);
        S3Model {
            cap,
            small_max,
            main_max: cap - small_max,
            ghost_cap: (cap as f64 * 0.9) as usize,
            small: VecDeque::new(),
            main: VecDeque::new(),
            ghost: VecDeque::new(),
            has_evicted: false,
            evictions: 0,
        }
    }

    fn find(&mut self, k: u8) -> Option<&mut (u8, u8, f64, f64)> {
        if let Some(i) = self.small.iter().position(|e| e.0 == k) {
            return self.small.get_mut(i);
        }
        let i = self.main.iter().position(|e| e.0 == k)?;
        self.main.get_mut(i)
    }

    fn remove(&mut self, k: u8) -> bool {
        let before = self.small.len() + self.main.len();
        self.small.retain(|e| e.0 != k);
        self.main.retain(|e| e.0 != k);
        before != self.small.len() + self.main.len()
    }

    fn evict(&mut self) {
        self.has_evicted = true;
        self.evictions += 1;
        loop {
            if self.main.len() > self.main_max || self.small.is_empty() {
                loop {
                    let e = self.main.pop_back().unwrap();
                    if e.1 == 0 {
                        return;
                    }
                    self.main.push_front((e.0, e.1 - 1, e.2, e.3));
                }
            }
            while let Some(e) = self.small.pop_back() {
                if e.1 >= 2 {
                    self.main.push_front((e.0, 0, e.2, e.3));
                } else {
                    if self.ghost_cap > 0 && !self.ghost.contains(&e.0) {
                        if self.ghost.len() >= self.ghost_cap {
                            self.ghost.pop_back();
                        }
                        self.ghost.push_front(e.0);
                    }
                    return;
                }
            }
        }
    }

    fn insert(&mut self, k: u8, now: f64, ttl: f64) {
        if let Some(e) = self.find(k) {
            (e.2, e.3) = (now, ttl);
            return;
        }
        let from_ghost = self.ghost.iter().position(|&g| g == k);
        if let Some(i) = from_ghost {
            self.ghost.remove(i);
        }
        if self.small.len() + self.main.len() >= self.cap {
            self.evict();
        }
        let e = (k, 0, now, ttl);
        if from_ghost.is_some() || (!self.has_evicted && self.small.len() >= self.small_max) {
            self.main.push_front(e);
        } else {
            self.small.push_front(e);
        }
    }

    fn state(&self) -> Vec<(u8, bool, u8)> {
        let small = self.small.iter().map(|e| (e.0, false, e.1));
        small
            .chain(self.main.iter().map(|e| (e.0, true, e.1)))
            .collect()
    }
}

#[test]
fn s3fifo_matches_a_reference_model_under_a_random_workload() {
    for cap in [20usize, 37] {
        let mut next = xorshift(0x2545_f491_4f6c_dd1d ^ cap as u64);
        let mut s = SieveStore::with_stale(cap, Some(400.0), Policy::S3Fifo, 100.0);
        let mut m = S3Model::new(cap);
        let (mut hits, mut stale, mut expired) = (0u64, 0, 0);
        for t in 0..30_000u32 {
            let k = (next() % 90).min(next() % 90) as u8;
            let now = f64::from(t);
            match next() % 12 {
                0 => assert_eq!(s.remove(&[k]).is_some(), m.remove(k), "step {t}"),
                1..=4 => {
                    let own = next()
                        .is_multiple_of(5)
                        .then(|| f64::from((next() % 800) as u32 + 1));
                    s.insert_with_ttl(&[k], now, own);
                    m.insert(k, now, own.unwrap_or(400.0));
                }
                _ => {
                    let r = s.get(&[k], now);
                    match m.find(k).map(|e| (now - e.2, e.3)) {
                        None => assert_eq!(r, Lookup::Miss, "step {t}"),
                        Some((age, ttl)) if age >= ttl + 100.0 => {
                            assert!(matches!(r, Lookup::Expired(_)), "step {t}");
                            m.remove(k);
                            expired += 1;
                        }
                        Some((age, ttl)) if age >= ttl => {
                            assert!(matches!(r, Lookup::Stale(_)), "step {t}");
                            stale += 1;
                        }
                        Some(_) => {
                            assert!(matches!(r, Lookup::Hit(_)), "step {t}");
                            let e = m.find(k).unwrap();
                            e.1 = (e.1 + 1).min(3);
                            hits += 1;
                        }
                    }
                }
            }
            assert_eq!(s3_state(&s), m.state(), "step {t}");
            let ghost: Vec<Vec<u8>> = m.ghost.iter().map(|&g| vec![g]).collect();
            assert_eq!(ext_s3(&s).ghost_order(), ghost, "step {t}");
            if t % 61 == 0 {
                s.validate();
            }
        }
        s.validate();
        assert_eq!(s.stats().evictions, m.evictions);
        assert_eq!(s.stats().hits, hits);
        assert!(
            m.evictions > 1000 && stale > 50 && expired > 20,
            "{} evictions, {stale} stale, {expired} expired",
            m.evictions
        );
    }
}

// --------------------------------------------------------------------------- W-TinyLFU

fn tiny(capacity: usize) -> SieveStore {
    SieveStore::new(capacity, None, Policy::WTinyLfu)
}

/// `(key, queue)` in the store's order (window, probation, protected; MRU first).
fn tiny_state(s: &SieveStore) -> Vec<(u8, usize)> {
    let ext = ext_tiny(s);
    ext.order()
        .into_iter()
        .map(|slot| {
            (
                s.nodes[slot as usize].key.as_bytes()[0],
                ext.state_of(slot).0,
            )
        })
        .collect()
}

#[test]
fn wtinylfu_window_overflows_into_probation_and_hits_promote_to_protected() {
    // Capacity 10: window 1 (10 - trunc(9.9)), protected maximum trunc(0.8 * 9) = 7.
    let mut s = tiny(10);
    for k in 1..=3 {
        put(&mut s, k);
    }
    assert_eq!(tiny_state(&s), vec![(3, 0), (2, 1), (1, 1)]);
    assert!(hit(&mut s, 1));
    assert_eq!(tiny_state(&s), vec![(3, 0), (2, 1), (1, 2)]);
    assert!(hit(&mut s, 3), "a window hit stays in the window");
    assert_eq!(tiny_state(&s)[0], (3, 0));
    let (_, window_max, protected_max) = ext_tiny(&s).state_of(0);
    assert_eq!((window_max, protected_max), (1, 7));
}

#[test]
fn wtinylfu_admits_the_more_frequent_of_candidate_and_victim() {
    let mut s = tiny(10);
    for k in 1..=10 {
        put(&mut s, k); // the sketch starts at the 5th key: 5..=10 are counted once
    }
    // Each new key pushes the window's entry out as the candidate, against probation's
    // LRU entry: 10 (seen once) beats 1 (never counted), and so on up to 4.
    for k in 11..=14 {
        put(&mut s, k);
    }
    let keys = |s: &SieveStore| {
        let mut k: Vec<u8> = tiny_state(s).into_iter().map(|(k, _)| k).collect();
        k.sort_unstable();
        k
    };
    assert_eq!(keys(&s), vec![5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
    // 15 arrives: 14 meets 5, both seen once: on a tie the candidate goes.
    put(&mut s, 15);
    assert_eq!(keys(&s), vec![5, 6, 7, 8, 9, 10, 11, 12, 13, 15]);
    // 15, hit three times in the window, then pushed out by 16: it beats 5.
    for _ in 0..3 {
        assert!(hit(&mut s, 15));
    }
    put(&mut s, 16);
    assert_eq!(keys(&s), vec![6, 7, 8, 9, 10, 11, 12, 13, 15, 16]);
    assert_eq!(tiny_state(&s)[..2], [(16, 0), (15, 1)]);
    assert_eq!(s.stats().evictions, 6);
}

#[test]
fn wtinylfu_sketch_starts_when_half_full_and_counts_hits_and_new_keys() {
    let mut s = tiny(100);
    for k in 0..48 {
        put(&mut s, k);
    }
    assert!(ext_tiny(&s).sketch.is_none());
    put(&mut s, 48);
    put(&mut s, 49); // the 50th entry: half full
    let sketch = ext_tiny(&s).sketch.as_ref().expect("made at half full");
    assert_eq!(sketch.frequency(key_hash(&[49])), 1, "the doorkeeper's one");
    assert_eq!(
        sketch.frequency(key_hash(&[1])),
        0,
        "earlier keys were not counted"
    );
    hit(&mut s, 49);
    hit(&mut s, 49);
    let sketch = ext_tiny(&s).sketch.as_ref().unwrap();
    assert_eq!(sketch.frequency(key_hash(&[49])), 3);
}

#[test]
fn wtinylfu_climber_grows_the_window_on_a_recency_workload() {
    // Keys drawn from a range of 300 that slides by one key every two requests: each key is
    // asked about twice, then never again. Frequency says little and recency (the window)
    // everything: the climber grows the window from its first 1% towards the 300 keys.
    let mut s = tiny(1000);
    assert_eq!(ext_tiny(&s).window_max, 10);
    let mut next = xorshift(7);
    let mut windows = Vec::new();
    for i in 0..400_000u64 {
        let k = (i / 2 + next() % 300).to_le_bytes();
        if !matches!(s.get(&k, 0.0), Lookup::Hit(_)) {
            s.insert(&k, 0.0);
        }
        if i % 100_000 == 99_999 {
            windows.push(ext_tiny(&s).window_max);
        }
    }
    s.validate();
    assert!(
        windows[0] > 100 && windows[1..].iter().all(|&w| w >= 250),
        "window maximums: {windows:?}"
    );
}

/// W-TinyLFU on `VecDeque`s (front: most recent), with its own climber and the real
/// sketch (tested on its own in `sketch.rs`), and the store's TTL rules.
struct TinyModel {
    max: usize,
    /// Queues: window, probation, protected; `(key, inserted at, ttl)`.
    q: [VecDeque<(u8, f64, f64)>; 3],
    window_max: usize,
    protected_max: usize,
    sketch: Option<FrequencySketch>,
    hits: u64,
    misses: u64,
    prev: f64,
    step: f64,
    adjustment: i64,
    random: u32,
    evictions: u64,
}

impl TinyModel {
    fn new(max: usize) -> TinyModel {
        let window_max = max - (0.99 * max as f64) as usize;
        TinyModel {
            max,
            q: [VecDeque::new(), VecDeque::new(), VecDeque::new()],
            window_max,
            protected_max: (0.8 * (max - window_max) as f64) as usize,
            sketch: None,
            hits: 0,
            misses: 0,
            prev: 0.0,
            step: -0.02 * max as f64,
            adjustment: 0,
            random: 0x9e37_79b9,
            evictions: 0,
        }
    }

    fn len(&self) -> usize {
        self.q.iter().map(VecDeque::len).sum()
    }

    fn find(&self, k: u8) -> Option<(usize, usize)> {
        (0..3).find_map(|q| self.q[q].iter().position(|e| e.0 == k).map(|i| (q, i)))
    }

    fn take(&mut self, q: usize, i: usize) -> (u8, f64, f64) {
        self.q[q].remove(i).unwrap()
    }

    fn remove(&mut self, k: u8) -> bool {
        self.find(k).map(|(q, i)| self.take(q, i)).is_some()
    }

    fn freq(&self, k: u8) -> u32 {
        self.sketch
            .as_ref()
            .map_or(0, |s| s.frequency(key_hash(&[k])))
    }

    fn count(&mut self, k: u8) {
        if let Some(s) = &mut self.sketch {
            s.increment(key_hash(&[k]));
        }
    }

    fn hit(&mut self, k: u8) {
        self.count(k);
        let (q, i) = self.find(k).unwrap();
        let e = self.take(q, i);
        let to = if q == 1 && self.protected_max >= 1 {
            2
        } else {
            q
        };
        self.q[to].push_front(e);
        self.hits += 1;
        self.climb();
    }

    fn insert(&mut self, k: u8, now: f64, ttl: f64) {
        if let Some((q, i)) = self.find(k) {
            (self.q[q][i].1, self.q[q][i].2) = (now, ttl);
            return;
        }
        if self.sketch.is_none() && self.len() + 1 >= self.max / 2 {
            self.sketch = Some(FrequencySketch::new(self.max));
        }
        self.count(k);
        self.misses += 1;
        let mut candidate = None;
        while self.q[0].len() + 1 > self.window_max {
            let Some(e) = self.q[0].pop_back() else { break };
            candidate.get_or_insert(e.0);
            self.q[1].push_front(e);
        }
        if self.len() >= self.max {
            self.evict(candidate);
        }
        self.q[0].push_front((k, now, ttl));
        self.climb();
    }

    fn evict(&mut self, candidate: Option<u8>) {
        self.evictions += 1;
        let candidate = candidate.or_else(|| self.q[0].back().map(|e| e.0));
        let victim = self.q[1].back().map(|e| e.0);
        let out = match (candidate, victim) {
            (Some(c), None) => c,
            (None, None) => self.q[2].back().unwrap().0,
            (None, Some(v)) => v,
            (Some(c), Some(v)) if c == v => v,
            (Some(c), Some(v)) => {
                let (cf, vf) = (self.freq(c), self.freq(v));
                let admit = cf > vf
                    || (cf >= 6 && {
                        let mut x = self.random;
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        self.random = x;
                        x & 127 == 0
                    });
                if admit { v } else { c }
            }
        };
        self.remove(out);
    }

    fn climb(&mut self) {
        if let Some(sketch) = &self.sketch {
            let requests = self.hits + self.misses;
            if requests >= sketch.sample_size() as u64 {
                let rate = self.hits as f64 / requests as f64;
                let change = rate - self.prev;
                let amount = if change >= 0.0 { self.step } else { -self.step };
                self.step = if change.abs() >= 0.05 {
                    0.02 * self.max as f64 * if amount >= 0.0 { 1.0 } else { -1.0 }
                } else {
                    0.98 * amount
                };
                self.prev = rate;
                self.adjustment = amount as i64;
                (self.hits, self.misses) = (0, 0);
            }
        } else {
            (self.hits, self.misses, self.prev) = (0, 0, 0.0);
        }
        self.demote();
        if self.adjustment > 0 && self.protected_max > 0 {
            let mut quota = (self.adjustment as usize).min(self.protected_max);
            self.protected_max -= quota;
            self.window_max += quota;
            self.demote();
            while quota > 0 {
                let Some(e) = self.q[1].pop_back().or_else(|| self.q[2].pop_back()) else {
                    break;
                };
                self.q[0].push_front(e);
                quota -= 1;
            }
            self.protected_max += quota;
            self.window_max -= quota;
            self.adjustment = quota as i64;
        } else if self.adjustment < 0 && self.window_max > 1 {
            let mut quota = (self.adjustment.unsigned_abs() as usize).min(self.window_max - 1);
            self.protected_max += quota;
            self.window_max -= quota;
            while quota > 0 {
                let Some(e) = self.q[0].pop_back() else { break };
                self.q[1].push_front(e);
                quota -= 1;
            }
            self.protected_max -= quota;
            self.window_max += quota;
            self.adjustment = -(quota as i64);
        }
    }

    fn demote(&mut self) {
        while self.q[2].len() > self.protected_max {
            let e = self.q[2].pop_back().unwrap();
            self.q[1].push_front(e);
        }
    }

    fn state(&self) -> Vec<(u8, usize)> {
        (0..3)
            .flat_map(|q| self.q[q].iter().map(move |e| (e.0, q)))
            .collect()
    }
}

#[test]
fn wtinylfu_matches_a_reference_model_under_a_random_workload() {
    // Capacity 150: climber steps of 3 entries; keys skewed, so that frequencies differ.
    let cap = 150;
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    let mut s = SieveStore::with_stale(cap, Some(3000.0), Policy::WTinyLfu, 500.0);
    let mut m = TinyModel::new(cap);
    let first_window = m.window_max;
    let (mut windows, mut stale, mut expired) = (vec![m.window_max], 0, 0);
    for t in 0..60_000u32 {
        let k = (next() % 250).min(next() % 250) as u8;
        let now = f64::from(t);
        match next() % 16 {
            0 => assert_eq!(s.remove(&[k]).is_some(), m.remove(k), "step {t}"),
            1..=5 => {
                let own = next()
                    .is_multiple_of(5)
                    .then(|| f64::from((next() % 6000) as u32 + 1));
                s.insert_with_ttl(&[k], now, own);
                m.insert(k, now, own.unwrap_or(3000.0));
            }
            _ => {
                let r = s.get(&[k], now);
                match m.find(k).map(|(q, i)| (now - m.q[q][i].1, m.q[q][i].2)) {
                    None => assert_eq!(r, Lookup::Miss, "step {t}"),
                    Some((age, ttl)) if age >= ttl + 500.0 => {
                        assert!(matches!(r, Lookup::Expired(_)), "step {t}");
                        m.remove(k);
                        expired += 1;
                    }
                    Some((age, ttl)) if age >= ttl => {
                        assert!(matches!(r, Lookup::Stale(_)), "step {t}");
                        stale += 1;
                    }
                    Some(_) => {
                        assert!(matches!(r, Lookup::Hit(_)), "step {t}");
                        m.hit(k);
                    }
                }
            }
        }
        assert_eq!(tiny_state(&s), m.state(), "step {t}");
        if windows.last() != Some(&m.window_max) {
            windows.push(m.window_max);
        }
        if t % 97 == 0 {
            s.validate();
        }
    }
    s.validate();
    assert_eq!(s.stats().evictions, m.evictions);
    assert!(
        m.evictions > 1000 && stale > 50 && expired > 20,
        "{} evictions, {stale} stale, {expired} expired",
        m.evictions
    );
    assert!(
        windows.len() > 3 && windows.iter().any(|&w| w > first_window),
        "the climber moved: {windows:?}"
    );
}

#[test]
fn wtinylfu_evict_after_an_insert_that_evicted_nothing_picks_a_live_entry() {
    // Capacity 10, window 1: the second key pushes the first to probation (the candidate of
    // that insert), with room to spare, so nothing is evicted and the candidate stays
    // unused. Deleting it, then evicting, must not pick it.
    let mut s = tiny(10);
    put(&mut s, 1);
    put(&mut s, 2);
    assert!(s.remove(&[1]).is_some());
    s.validate();
    let victim = s.evict().expect("one entry left");
    s.validate();
    assert_eq!(s.len(), 0);
    assert_eq!(
        s.get(&[2], 0.0),
        Lookup::Miss,
        "the victim was 2, the only entry: {victim}"
    );
}
