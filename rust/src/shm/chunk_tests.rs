//! Tests of variable-size entries (format 5): the byte budget, the chunk allocator, and the
//! check and rebuild of chunk chains.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;

use super::layout::{CHUNK_SIZE, NIL, entry_chunks};
use super::test_dir::TempDir;
use super::*;

/// A value for `key` of `len` bytes that tells a wrong or torn value apart: the key's first
/// byte and the length, repeated.
fn value(key: &[u8], len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| key[0] ^ (len as u8) ^ (i as u8).wrapping_mul(31))
        .collect()
}

fn get(s: &ShmStore, key: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![0u8; 1 << 16];
    match s.get(key, &mut out, 0.0).unwrap() {
        Get::Hit(n) => Some(out[..n].to_vec()),
        Get::Miss => None,
        Get::TooSmall(n) => panic!("buffer too small: {n}"),
    }
}

/// xorshift64.
fn next(rng: &mut u64) -> u64 {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    *rng
}

/// A log-uniform length between `lo` and `hi`.
fn log_uniform(rng: &mut u64, lo: f64, hi: f64) -> usize {
    let u = (next(rng) % 1_000_000) as f64 / 1_000_000.0;
    (lo * (hi / lo).powf(u)) as usize
}

/// Checks every key of `model` (a hit must be its value), and that the bytes reported are
/// the chunks of the entries found. Returns the number of hits.
fn check_all(s: &ShmStore, model: &std::collections::HashMap<Vec<u8>, Vec<u8>>) -> usize {
    let mut hits = 0;
    let mut chunk_bytes = 0u64;
    for (k, v) in model {
        if let Some(got) = get(s, k) {
            assert_eq!(&got, v, "wrong value for {k:?}");
            hits += 1;
            chunk_bytes += entry_chunks((k.len() + v.len()) as u64) * CHUNK_SIZE as u64;
        }
    }
    let info = s.info();
    assert_eq!(
        info.len as usize, hits,
        "every entry of the file is a key of the model"
    );
    assert_eq!(info.bytes, chunk_bytes);
    assert!(info.bytes <= info.max_bytes);
    hits
}

#[test]
fn entries_of_any_size_share_the_byte_budget() {
    let d = TempDir::new();
    let budget = 256 * CHUNK_SIZE as u64; // 64 KiB
    let s = ShmStore::open_sized(&d.file("c"), 64, 16, 1 << 16, budget, 0.0).unwrap();
    assert_eq!((s.params().max_bytes, s.info().max_bytes), (budget, budget));
    let mut model = std::collections::HashMap::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut fewer_than_max_size = 0;
    for i in 0..400u32 {
        let key = i.to_le_bytes().to_vec();
        let v = value(&key, log_uniform(&mut rng, 10.0, 60_000.0));
        assert_eq!(s.set(&key, &v, 0.0).unwrap(), Set::Stored);
        model.insert(key.clone(), v.clone());
        assert_eq!(get(&s, &key), Some(v), "the entry just stored is there");
        s.table().validate().unwrap();
        let info = s.info();
        assert!(info.bytes <= budget && info.len <= 64, "{info:?}");
        if info.len < 64 && i >= 64 {
            fewer_than_max_size += 1; // evicted for bytes, not for the count
        }
    }
    assert!(fewer_than_max_size > 100, "{fewer_than_max_size}");
    let hits = check_all(&s, &model);
    assert!(hits > 2, "{hits}");
    // Entries of 40 B alone: the count binds, and each takes one chunk.
    s.clear().unwrap();
    model.clear();
    for i in 0..100u32 {
        let key = i.to_le_bytes().to_vec();
        s.set(&key, &value(&key, 40), 0.0).unwrap();
        model.insert(key.clone(), value(&key, 40));
    }
    assert_eq!(check_all(&s, &model), 64);
    assert_eq!(s.info().bytes, 64 * CHUNK_SIZE as u64);
    // Entries of 10 B (14 with their key) live in their slots: no chunk at all.
    s.clear().unwrap();
    model.clear();
    for i in 0..100u32 {
        let key = i.to_le_bytes().to_vec();
        s.set(&key, &value(&key, 10), 0.0).unwrap();
        model.insert(key.clone(), value(&key, 10));
    }
    assert_eq!(check_all(&s, &model), 64);
    assert_eq!(s.info().bytes, 0);
}

#[test]
fn an_entry_larger_than_the_budget_is_skipped_and_counted() {
    let d = TempDir::new();
    let s = ShmStore::open_sized(&d.file("c"), 8, 16, 4096, 1024, 0.0).unwrap();
    // 4 chunks of budget hold 4 * 248 = 992 bytes of key and value.
    assert_eq!(s.set(b"k", &[1; 991], 0.0).unwrap(), Set::Stored);
    assert_eq!(s.set(b"k", &[2; 992], 0.0).unwrap(), Set::Skipped);
    assert_eq!(s.info().oversize_skips, 1);
    // The old value goes (as in the memory stores): readers must not keep the value that
    // the skipped one replaced.
    assert_eq!(get(&s, b"k"), None, "the old value goes");
    assert_eq!(s.info().bytes, 0);
}

#[test]
fn an_update_that_grows_evicts_others_never_itself() {
    let d = TempDir::new();
    let s = ShmStore::open_sized(&d.file("c"), 64, 16, 1 << 16, 64 << 10, 0.0).unwrap();
    for k in 0..16u8 {
        s.set(&[k], &value(&[k], 3000), 0.0).unwrap(); // 13 chunks each: 208 of 256
    }
    assert_eq!(s.len(), 16);
    // 242 chunks needed, of 256: one other entry of 13 chunks stays, 14 go, never key 5
    // (the oldest, and the hand's first pick).
    let big = value(&[5], 60_000);
    assert_eq!(s.set(&[5], &big, 1.0).unwrap(), Set::Stored);
    assert_eq!(get(&s, &[5]), Some(big));
    assert_eq!(s.len(), 2);
    assert_eq!(s.info().evictions, 14);
    assert_eq!(s.info().bytes, (242 + 13) * 256);
    s.table().validate().unwrap();
    // And shrinks back: the freed chunks serve new entries.
    s.set(&[5], &value(&[5], 10), 2.0).unwrap();
    for k in 16..40u8 {
        s.set(&[k], &value(&[k], 2000), 0.0).unwrap(); // 9 chunks each
    }
    assert_eq!(s.len(), 26);
    s.table().validate().unwrap();
}

#[test]
fn freed_chunks_are_reused_and_none_leak() {
    let d = TempDir::new();
    let s = ShmStore::open_sized(&d.file("c"), 16, 8, 4096, 16 * 5 * 256, 0.0).unwrap();
    let h = s.table().header();
    let touched = || h.chunk_next_unused.load(Relaxed);
    for k in 0..16u8 {
        s.set(&[k], &value(&[k], 1000), 0.0).unwrap(); // 5 chunks
    }
    assert_eq!((touched(), h.chunks_used.load(Relaxed)), (80, 80));
    for k in 0..16u8 {
        assert!(s.delete(&[k]).unwrap());
    }
    assert_eq!(
        (touched(), h.chunks_used.load(Relaxed), s.info().bytes),
        (80, 0, 0)
    );
    s.table().validate().unwrap();
    let mut rng = 7u64;
    for round in 0..2000u32 {
        let k = (next(&mut rng) % 40) as u8;
        let len = log_uniform(&mut rng, 1.0, 4000.0);
        s.set(&[k], &value(&[k], len), f64::from(round)).unwrap();
        // Never more chunks touched than the budget and the spare (17 chunks).
        assert!(touched() <= 80 + 17, "{}", touched());
        if round % 97 == 0 {
            s.table().validate().unwrap();
        }
    }
    s.table().validate().unwrap();
    s.clear().unwrap();
    assert_eq!((touched(), h.chunks_used.load(Relaxed)), (0, 0));
    s.table().validate().unwrap();
}

/// Writes `v` at byte `at` of the file (a mapped handle sees it at once).
fn poke(path: &Path, at: usize, v: u32) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&v.to_le_bytes(), at as u64).unwrap();
}

/// The chunks of the entry of `key`, and its slot.
fn chain(s: &ShmStore, key: &[u8]) -> (u32, Vec<u32>) {
    let t = s.table();
    let (_, slot, _) = t.find(key, t.hash(key)).unwrap().unwrap();
    let sh = t.slot(slot).unwrap().h;
    let mut out = vec![];
    let mut c = sh.first_chunk().load(Relaxed);
    let base = t.header() as *const _ as *const u8;
    for _ in 0..sh.chunk_count().load(Relaxed) {
        out.push(c);
        // SAFETY: `c` is a chunk number of a valid file (checked below by the caller's
        // validate), its header lies within the mapping; a plain read of a u32 of it.
        c = unsafe {
            base.add(s.params().chunk_offset(c))
                .cast::<u32>()
                .read_volatile()
        };
    }
    (slot, out)
}

/// Corrupts a fresh store with `corrupt`, checks that `validate` names the violation, then
/// that a new handle repairs the file (dropping only bad entries: every read is right or a
/// miss, and `keep` keys are still there), and that the handle that saw the damage goes on.
fn corruption_case(label: &str, expect: &str, keep: &[u8], corrupt: impl Fn(&ShmStore, &Path)) {
    let d = TempDir::new();
    let p = d.file("c");
    let s = ShmStore::open_sized(&p, 16, 8, 4096, 16 * 5 * 256, 0.0).unwrap();
    let mut model = std::collections::HashMap::new();
    for k in 0..8u8 {
        let v = value(&[k], 100 + 250 * usize::from(k % 4)); // 1 to 4 chunks
        s.set(&[k], &v, f64::from(k)).unwrap();
        model.insert(vec![k], v);
    }
    s.delete(&[7]).unwrap(); // some free chunks on the free list
    model.remove(&vec![7]);
    s.table().validate().unwrap();
    corrupt(&s, &p);
    let e = s.table().validate().expect_err(label);
    assert!(e.contains(expect), "{label}: {e}");
    let other = ShmStore::open_sized(&p, 16, 8, 4096, 16 * 5 * 256, 0.0).unwrap();
    other
        .table()
        .validate()
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    check_all(&other, &model);
    for k in keep {
        assert!(get(&other, &[*k]).is_some(), "{label}: key {k} kept");
    }
    for k in 10..40u8 {
        s.set(&[k], &value(&[k], 600), 9.0).unwrap();
        model.insert(vec![k], value(&[k], 600));
    }
    s.table().validate().unwrap();
    check_all(&s, &model);
}

#[test]
fn chain_corruption_is_detected_and_repaired() {
    let p_of = |s: &ShmStore| s.params();
    let link = |s: &ShmStore, c: u32| p_of(s).chunk_offset(c); // next; owner at +4
    corruption_case(
        "a chunk used by two entries",
        "not owned",
        &[0, 1, 2, 4, 5, 6],
        |s, _| {
            let (slot3, _) = chain(s, &[3]);
            let (_, c2) = chain(s, &[2]);
            // Entry 3's chain now starts in entry 2's chain (owned by entry 2).
            s.table()
                .slot(slot3)
                .unwrap()
                .h
                .first_chunk()
                .store(c2[1], Relaxed);
        },
    );
    corruption_case(
        "a chunk owned by another entry",
        "not owned",
        &[0, 1, 4, 5, 6],
        |s, p| {
            let (slot3, _) = chain(s, &[3]);
            let (_, c2) = chain(s, &[2]);
            poke(p, link(s, c2[0]) + 4, slot3);
        },
    );
    corruption_case("a cycle", "wrong length", &[0, 1, 2, 4, 5, 6], |s, p| {
        let (_, c3) = chain(s, &[3]); // 4 chunks
        assert_eq!(c3.len(), 4);
        poke(p, link(s, c3[3]), c3[1]);
    });
    corruption_case(
        "a chain cut short",
        "wrong length",
        &[0, 1, 2, 4, 5, 6],
        |s, p| {
            let (_, c3) = chain(s, &[3]);
            poke(p, link(s, c3[2]), NIL);
        },
    );
    corruption_case(
        "a wrong chunk count",
        "wrong length",
        &[0, 1, 2, 4, 5, 6],
        |s, _| {
            let (slot3, _) = chain(s, &[3]);
            s.table()
                .slot(slot3)
                .unwrap()
                .h
                .chunk_count()
                .store(3, Relaxed);
        },
    );
    corruption_case(
        "a leaked chunk",
        "chunk leak",
        &[0, 1, 2, 3, 4, 5, 6],
        |s, _| {
            let h = s.table().header();
            assert_ne!(h.chunk_free_head.load(Relaxed), NIL);
            h.chunk_free_head.store(NIL, Relaxed);
        },
    );
    corruption_case(
        "a free chunk with an owner",
        "has an owner",
        &[0, 1, 2, 3, 4, 5, 6],
        |s, p| {
            let free = s.table().header().chunk_free_head.load(Relaxed);
            poke(p, link(s, free) + 4, 0);
        },
    );
    corruption_case(
        "a free chunk in a chain",
        "not owned",
        &[0, 1, 2, 4, 5, 6],
        |s, p| {
            let free = s.table().header().chunk_free_head.load(Relaxed);
            let (_, c3) = chain(s, &[3]);
            poke(p, link(s, c3[0]), free);
        },
    );
    corruption_case(
        "chunks miscounted",
        "counted",
        &[0, 1, 2, 3, 4, 5, 6],
        |s, _| {
            s.table().header().chunks_used.fetch_add(1, Relaxed);
        },
    );
    corruption_case(
        "a chunk link out of range",
        "not a used chunk",
        &[0, 1, 2, 4, 5, 6],
        |s, p| {
            let (_, c3) = chain(s, &[3]);
            poke(p, link(s, c3[0]), 1 << 30);
        },
    );
}

/// A live handle that meets a broken chain in a write (delete, update, eviction) rebuilds
/// and goes on, and a lock-free read of a broken chain is a miss, never a wrong value.
#[test]
fn writes_over_a_broken_chain_rebuild_and_reads_miss() {
    let d = TempDir::new();
    let p = d.file("c");
    let s = ShmStore::open_sized(&p, 16, 8, 4096, 16 * 5 * 256, 0.0).unwrap();
    for k in 0..8u8 {
        s.set(&[k], &value(&[k], 700), 0.0).unwrap(); // 3 chunks
    }
    let (_, c3) = chain(&s, &[3]);
    let (_, c4) = chain(&s, &[4]);
    // Entry 3's second link into entry 4's chain: the read walks into a chunk owned by 4.
    poke(&p, s.params().chunk_offset(c3[0]), c4[1]);
    assert_eq!(get(&s, &[3]), None);
    assert_eq!(get(&s, &[4]), Some(value(&[4], 700)));
    // Replacing 4 frees its chain: 3's damage is found (it was dropped by the read's repair,
    // or the rebuild drops it now) and nothing else is lost.
    s.set(&[4], &value(&[4], 100), 1.0).unwrap();
    s.table().validate().unwrap();
    for k in [0u8, 1, 2, 5, 6, 7] {
        assert_eq!(get(&s, &[k]), Some(value(&[k], 700)), "key {k}");
    }
    assert_eq!(get(&s, &[4]), Some(value(&[4], 100)));
    assert_eq!(get(&s, &[3]), None);
    // A payload byte changed: a miss, dropped.
    let (_, c5) = chain(&s, &[5]);
    // (its last chunk holds 701 - 2 * 248 = 205 bytes: byte 100 is one of them)
    poke(&p, s.params().chunk_offset(c5[2]) + 8 + 100, 0xdead_beef);
    assert_eq!(get(&s, &[5]), None);
    s.delete(&[6]).unwrap();
    s.table().validate().unwrap();
    assert_eq!(s.len(), 5);
}
