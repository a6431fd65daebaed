//! Tests of the shared store: each opens files in its own temporary directory.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use super::layout::{HEADER_SIZE, Params};
use super::test_dir::TempDir;
use super::*;

fn open(path: &Path, cap: u32) -> ShmStore {
    ShmStore::open(path, cap, 64, 256, 0.0).unwrap()
}

/// Byte offset in the file of byte `at` (< 248) of the entry in slot `slot` (its key then
/// value bytes): in the slot's body when the entry lives there, else in its first chunk.
fn entry_offset(s: &ShmStore, slot: u32, at: usize) -> usize {
    let sl = s.table().slot(slot).unwrap();
    let meta = sl.meta();
    if layout::is_inline(layout::meta_key_len(meta) + layout::meta_value_len(meta)) {
        return s.params().slot_offset(slot) + std::mem::offset_of!(layout::SlotHeader, body) + at;
    }
    let first = sl.h.first_chunk().load(Ordering::Relaxed);
    s.params().chunk_offset(first) + layout::CHUNK_HEADER_SIZE + at
}

fn get(s: &ShmStore, key: &[u8]) -> Option<Vec<u8>> {
    get_at(s, key, 0.0)
}

fn get_at(s: &ShmStore, key: &[u8], now: f64) -> Option<Vec<u8>> {
    let mut out = vec![0u8; 256];
    match s.get(key, &mut out, now).unwrap() {
        Get::Hit(n) => Some(out[..n].to_vec()),
        Get::Miss => None,
        Get::TooSmall(n) => panic!("buffer too small: {n}"),
    }
}

fn put(s: &ShmStore, k: u8) {
    assert_eq!(s.set(&[k], &[k, k], 0.0).unwrap(), Set::Stored);
    s.table().validate().unwrap();
}

fn keys(s: &ShmStore) -> Vec<u8> {
    s.table().order().into_iter().map(|(k, _)| k[0]).collect()
}

/// `peek` reads like `get` but counts nothing and leaves the visited bit alone (so SIEVE
/// still evicts the entry first), and an entry expired for the handle is a miss.
#[test]
fn peek_counts_nothing_and_marks_nothing() {
    let d = TempDir::new();
    let p = d.file("c");
    let s = ShmStore::open(&p, 2, 64, 256, 10.0).unwrap();
    s.set(b"a", b"1", 100.0).unwrap();
    s.set(b"b", b"2", 100.0).unwrap();
    let mut out = [0u8; 16];
    assert_eq!(s.peek(b"a", &mut out, 105.0).unwrap(), Get::Hit(1));
    assert_eq!(&out[..1], b"1");
    assert_eq!(s.peek(b"zz", &mut out, 105.0).unwrap(), Get::Miss);
    assert_eq!(
        s.peek(b"a", &mut out, 110.0).unwrap(),
        Get::Miss,
        "expired for this handle"
    );
    let i = s.info();
    assert_eq!((i.hits, i.misses), (0, 0), "peeks are not counted");
    // "a" was peeked, never visited: it is still the first victim.
    s.set(b"c", b"3", 100.0).unwrap();
    assert_eq!(s.peek(b"a", &mut out, 100.0).unwrap(), Get::Miss);
    assert_eq!(s.peek(b"b", &mut out, 100.0).unwrap(), Get::Hit(1));
}

#[test]
fn round_trip_delete_clear_and_info() {
    let d = TempDir::new();
    let s = open(&d.file("c"), 4);
    assert_eq!(get(&s, b"k"), None);
    assert_eq!(s.set(b"k", b"value", 1.0).unwrap(), Set::Stored);
    assert_eq!(get(&s, b"k").as_deref(), Some(&b"value"[..]));
    assert_eq!(s.set(b"k", b"other", 2.0).unwrap(), Set::Stored);
    assert_eq!(get(&s, b"k").as_deref(), Some(&b"other"[..]));
    assert_eq!(
        s.set(b"", b"", 2.0).unwrap(),
        Set::Stored,
        "empty key and value"
    );
    assert_eq!(get(&s, b"").as_deref(), Some(&b""[..]));
    assert_eq!(s.len(), 2);
    let i = s.info();
    assert_eq!((i.hits, i.misses, i.len, i.capacity), (3, 1, 2, 4));
    assert_eq!((i.max_key_size, i.max_value_size), (64, 256));
    assert!(s.delete(b"k").unwrap());
    assert!(!s.delete(b"k").unwrap());
    assert_eq!(get(&s, b"k"), None);
    s.table().validate().unwrap();
    s.count_hit();
    assert_eq!((s.info().hits, s.info().misses), (4, 1));
    s.clear().unwrap();
    assert_eq!(
        s.info(),
        Info {
            capacity: 4,
            max_key_size: 64,
            max_value_size: 256,
            max_bytes: 4 * 2 * 256,
            ..Info::default()
        }
    );
    assert_eq!(get(&s, b""), None);
    s.table().validate().unwrap();
    s.count_hit(); // misses stay at 0
    assert_eq!((s.info().hits, s.info().misses), (1, 0));
}

#[test]
fn buffer_too_small_is_reported_and_not_counted() {
    let d = TempDir::new();
    let s = open(&d.file("c"), 4);
    s.set(b"k", &[7; 100], 0.0).unwrap();
    let mut small = [0u8; 10];
    assert_eq!(s.get(b"k", &mut small, 0.0).unwrap(), Get::TooSmall(100));
    assert_eq!((s.info().hits, s.info().misses), (0, 0));
}

#[test]
fn sieve_evicts_unvisited_oldest_first() {
    let d = TempDir::new();
    let s = open(&d.file("c"), 3);
    for k in [1, 2, 3] {
        put(&s, k);
    }
    put(&s, 4);
    assert_eq!(keys(&s), vec![4, 3, 2]);
    assert_eq!(s.info().evictions, 1);
}

#[test]
fn sieve_visited_entry_gets_a_second_chance() {
    let d = TempDir::new();
    let s = open(&d.file("c"), 3);
    for k in [1, 2, 3] {
        put(&s, k);
    }
    assert!(get(&s, &[1]).is_some());
    put(&s, 4);
    assert_eq!(keys(&s), vec![4, 3, 1]);
    assert_eq!(
        s.table().order()[2],
        (vec![1], false),
        "the bit of 1 was cleared"
    );
}

#[test]
fn sieve_hand_resumes_where_it_stopped_and_wraps() {
    let d = TempDir::new();
    let s = open(&d.file("c"), 4);
    for k in [1, 2, 3, 4] {
        put(&s, k);
    }
    get(&s, &[1]);
    get(&s, &[3]);
    put(&s, 5); // clears 1, evicts 2; hand at 3
    assert_eq!(keys(&s), vec![5, 4, 3, 1]);
    get(&s, &[1]);
    put(&s, 6); // hand at 3: visited -> cleared; 4 evicted
    assert_eq!(keys(&s), vec![6, 5, 3, 1]);
    put(&s, 7); // hand at 5: evicted
    assert_eq!(keys(&s), vec![7, 6, 3, 1]);

    let d2 = TempDir::new();
    let s = open(&d2.file("c"), 2);
    put(&s, 1);
    put(&s, 2);
    get(&s, &[1]);
    get(&s, &[2]);
    put(&s, 3); // both visited: full round, wraps, evicts 1
    assert_eq!(keys(&s), vec![3, 2]);
}

#[test]
fn sieve_matches_the_memory_store_on_a_random_workload() {
    use crate::sieve::{Lookup, Policy, SieveStore};
    for (cap, keyspace) in [(16u32, 40u64), (64, 300), (3, 5)] {
        let d = TempDir::new();
        let s = open(&d.file("c"), cap);
        let mut m = SieveStore::new(cap as usize, None, Policy::Sieve);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ keyspace;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for t in 0..6000u32 {
            let k = ((next() % keyspace) as u16).to_le_bytes();
            match next() % 10 {
                0 => assert_eq!(s.delete(&k).unwrap(), m.remove(&k).is_some()),
                1..=4 => {
                    s.set(&k, &k, 0.0).unwrap();
                    m.insert(&k, 0.0);
                }
                _ => {
                    let hit = matches!(m.get(&k, 0.0), Lookup::Hit(_));
                    assert_eq!(get(&s, &k).is_some(), hit, "step {t}");
                }
            }
            if t % 97 == 0 {
                s.table().validate().unwrap();
                assert_eq!(s.table().order(), m.order(), "order diverged at step {t}");
            }
        }
        s.table().validate().unwrap();
        assert_eq!(s.info().evictions, m.stats().evictions);
        assert_eq!(s.info().hits, m.stats().hits);
    }
}

#[test]
fn ttl_expires_at_the_boundary_hits_do_not_extend_and_set_refreshes() {
    let d = TempDir::new();
    let s = ShmStore::open(&d.file("c"), 4, 16, 16, 100.0).unwrap();
    s.set(b"k", b"v", 1000.0).unwrap();
    assert!(get_at(&s, b"k", 1099.9).is_some());
    assert_eq!(get_at(&s, b"k", 1100.0), None);
    assert_eq!(s.len(), 1, "expired for this handle, but left in the file");
    s.table().validate().unwrap();
    s.set(b"k", b"v", 1000.0).unwrap();
    s.set(b"k", b"w", 1050.0).unwrap();
    assert_eq!(get_at(&s, b"k", 1149.0).as_deref(), Some(&b"w"[..]));
    assert_eq!(get_at(&s, b"k", 1150.0), None);
    let i = s.info();
    assert_eq!((i.hits, i.misses), (2, 2));
    // Another handle on the same file without a TTL sees entries as fresh.
    s.set(b"k", b"v", 0.0).unwrap();
    let no_ttl = ShmStore::open(&d.file("c"), 4, 16, 16, 0.0).unwrap();
    assert!(get_at(&no_ttl, b"k", 1e12).is_some());
}

/// Regression (red team, item 11): a handle with a TTL that read an entry written by a
/// handle without one deleted it, so the other process recomputed. An expired entry is a
/// miss for the handle whose TTL expired it, and stays for the others; a set by that
/// handle replaces it (and eviction removes it, as any entry).
#[test]
fn an_entry_expired_by_one_handles_ttl_stays_for_the_others() {
    let d = TempDir::new();
    let p = d.file("c");
    let short = ShmStore::open(&p, 2, 16, 16, 20.0).unwrap();
    let forever = ShmStore::open(&p, 2, 16, 16, 0.0).unwrap();
    forever.set(b"k", b"v", 1000.0).unwrap();
    for now in [1020.0, 1e6] {
        assert_eq!(get_at(&short, b"k", now), None, "expired for the short TTL");
        assert_eq!(get_at(&forever, b"k", now).as_deref(), Some(&b"v"[..]));
    }
    // The locked path (a reader that falls back to the lock) leaves it too.
    let mut out = [0u8; 16];
    let hash = short.table().hash(b"k");
    assert_eq!(
        short
            .get_locked(b"k", hash, &mut out, 1e6, Mode::Get)
            .unwrap(),
        Get::Miss
    );
    assert_eq!(get_at(&forever, b"k", 1e6).as_deref(), Some(&b"v"[..]));
    assert_eq!(short.len(), 1);
    let i = short.info();
    assert_eq!((i.hits, i.misses), (3, 3));
    // A set by the short handle replaces it.
    short.set(b"k", b"w", 2000.0).unwrap();
    assert_eq!(get_at(&short, b"k", 2010.0).as_deref(), Some(&b"w"[..]));
    assert_eq!(short.len(), 1);
    short.table().validate().unwrap();
}

#[test]
fn oversize_keys_and_values_are_skipped_and_counted() {
    let d = TempDir::new();
    let s = ShmStore::open(&d.file("c"), 4, 8, 16, 0.0).unwrap();
    assert_eq!(s.set(&[1; 9], b"v", 0.0).unwrap(), Set::Skipped);
    assert_eq!(s.set(b"k", &[1; 17], 0.0).unwrap(), Set::Skipped);
    assert_eq!(s.set(&[1; 8], &[1; 16], 0.0).unwrap(), Set::Stored);
    assert_eq!(get(&s, &[1; 9]), None);
    let i = s.info();
    assert_eq!((i.oversize_skips, i.len, i.misses), (2, 1, 1));
    s.clear().unwrap();
    assert_eq!(s.info().oversize_skips, 0);
}

#[test]
fn bad_parameters_are_rejected() {
    let d = TempDir::new();
    for (cap, k, v) in [(0, 1, 1), (1, 0, 1), (1, 1, 0), (u32::MAX, 1, 1)] {
        let e = ShmStore::open(&d.file("c"), cap, k, v, 0.0).err().unwrap();
        assert_eq!(e.status, Status::InvalidArgument, "{e}");
    }
    assert!(
        ShmStore::open(&d.0, 1, 1, 1, 0.0).is_err(),
        "a directory is not a cache file"
    );
}

#[test]
fn two_handles_see_each_others_writes() {
    let d = TempDir::new();
    let a = open(&d.file("c"), 8);
    let b = open(&d.file("c"), 8);
    a.set(b"x", b"1", 0.0).unwrap();
    assert_eq!(get(&b, b"x").as_deref(), Some(&b"1"[..]));
    b.set(b"x", b"2", 0.0).unwrap();
    assert_eq!(get(&a, b"x").as_deref(), Some(&b"2"[..]));
    b.delete(b"x").unwrap();
    assert_eq!(get(&a, b"x"), None);
    assert_eq!(a.info().hits, 2);
    assert_eq!(b.info().misses, 1);
}

/// A file of other parameters that no one has open is recreated with the new ones
/// (while a handle has it open, it is adopted instead: see `open_tests.rs`).
#[test]
fn parameter_mismatch_recreates_the_file_when_no_one_has_it_open() {
    let d = TempDir::new();
    let p = d.file("c");
    let a = open(&p, 4);
    a.set(b"x", b"1", 0.0).unwrap();
    drop(a);
    let b = open(&p, 8);
    assert_eq!(get(&b, b"x"), None, "a new, empty file");
    assert_eq!(b.info().capacity, 8);
    assert_eq!(
        std::fs::metadata(&p).unwrap().len(),
        Params::new(8, 64, 256).unwrap().file_size
    );
    drop(b);
    let c = ShmStore::open(&p, 8, 64, 128, 0.0).unwrap();
    assert_eq!(c.info().max_value_size, 128);
}

#[test]
fn other_version_or_hash_check_recreates_the_file() {
    let d = TempDir::new();
    let p = d.file("c");
    // 4: the format before chunks (its file would be misread as chunks), 99: any other.
    for version in [4u8, 99] {
        open(&p, 4).set(b"x", b"1", 0.0).unwrap();
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[8] = version;
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(get(&open(&p, 4), b"x"), None, "version {version}");
    }
    let s = open(&p, 4);
    s.set(b"x", b"1", 0.0).unwrap();
    drop(s);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[48] ^= 1; // hash check
    std::fs::write(&p, &bytes).unwrap();
    assert_eq!(get(&open(&p, 4), b"x"), None);
}

#[test]
fn garbage_and_truncated_files_are_recreated_without_crashing() {
    let d = TempDir::new();
    let p = d.file("c");
    let size = Params::new(8, 64, 256).unwrap().file_size as usize;
    let mut x: u64 = 12345;
    let garbage: Vec<u8> = (0..size)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect();
    for content in [
        vec![],
        vec![0u8; 3],
        garbage[..size / 2].to_vec(),
        garbage.clone(),
        vec![0; size],
    ] {
        std::fs::write(&p, &content).unwrap();
        let s = open(&p, 8);
        assert_eq!(get(&s, b"k"), None);
        s.set(b"k", b"v", 0.0).unwrap();
        assert_eq!(get(&s, b"k").as_deref(), Some(&b"v"[..]));
        s.table().validate().unwrap();
    }
    // A valid file truncated: recreated.
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(size as u64 - 100).unwrap();
    drop(f);
    let s = open(&p, 8);
    assert_eq!(get(&s, b"k"), None);
    assert_eq!(std::fs::metadata(&p).unwrap().len(), size as u64);
}

#[test]
fn a_valid_header_over_garbage_slots_is_repaired_not_trusted() {
    let d = TempDir::new();
    let p = d.file("c");
    let s = open(&p, 8);
    for k in 0..8u8 {
        s.set(&[k], &[k; 10], 0.0).unwrap();
    }
    // Scribble over the queue fields, the table and the slots (not the identity line).
    let mut bytes = std::fs::read(&p).unwrap();
    let mut x: u64 = 99;
    for b in bytes[256..].iter_mut() {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        if x >> 60 == 0 {
            *b = (x >> 33) as u8;
        }
    }
    // Keep seq even and the lock free so that nothing but the content is wrong.
    bytes[64..72].fill(0);
    bytes[128..136].fill(0);
    std::fs::write(&p, &bytes).unwrap();
    // The file keeps its inode (written in place): the old handle sees the scribbles.
    for k in 0..8u8 {
        if let Some(v) = get(&s, &[k]) {
            assert_eq!(v, vec![k; 10], "never a wrong value");
        }
    }
    for k in 10..30u8 {
        s.set(&[k], &[k; 10], 0.0).unwrap();
    }
    s.table().validate().unwrap();
    for k in 10..30u8 {
        if let Some(v) = get(&s, &[k]) {
            assert_eq!(v, vec![k; 10]);
        }
    }
}

#[test]
fn a_corrupt_value_is_a_miss_and_is_dropped() {
    let d = TempDir::new();
    let p = d.file("c");
    let s = open(&p, 4);
    s.set(b"k", b"value", 0.0).unwrap();
    let at = entry_offset(&s, 0, 1);
    let mut bytes = std::fs::read(&p).unwrap();
    assert_eq!(&bytes[at..at + 5], b"value");
    bytes[at] = b'X';
    std::fs::write(&p, &bytes).unwrap();
    assert_eq!(get(&s, b"k"), None);
    assert_eq!(s.len(), 0);
    s.table().validate().unwrap();
    assert_eq!(s.info().misses, 1);
}

#[test]
fn a_symlink_is_refused_and_its_target_never_written() {
    let d = TempDir::new();
    let target = d.file("target");
    std::fs::write(&target, b"precious").unwrap();
    let link = d.file("c");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let e = ShmStore::open(&link, 4, 16, 16, 0.0).err().unwrap();
    assert!(e.message.contains("symbolic link"), "{e}");
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    // A dangling link: its target is never created.
    let dangling = d.file("d");
    let nowhere = d.file("nowhere");
    std::os::unix::fs::symlink(&nowhere, &dangling).unwrap();
    assert!(ShmStore::open(&dangling, 4, 16, 16, 0.0).is_err());
    assert!(!nowhere.exists());
    assert!(
        std::fs::symlink_metadata(&dangling)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn file_mode_is_0600_and_a_created_directory_0700() {
    let d = TempDir::new();
    let p = d.0.join("sub").join("c");
    let _s = open(&p, 4);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&p), 0o600);
    assert_eq!(mode(&d.0.join("sub")), 0o700);
    // Only the last component is created.
    assert!(ShmStore::open(&d.0.join("a").join("b").join("c"), 4, 16, 16, 0.0).is_err());
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(d.0.join("sub"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("c")]);
    // A world-writable directory without the sticky bit is refused.
    let open_dir = d.0.join("open");
    std::fs::create_dir(&open_dir).unwrap();
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert!(ShmStore::open(&open_dir.join("c"), 4, 16, 16, 0.0).is_err());
}

#[test]
fn a_dead_lock_holder_is_recovered_within_a_second() {
    let d = TempDir::new();
    let p = d.file("c");
    let s = open(&p, 8);
    for k in 0..8u8 {
        s.set(&[k], &[k; 3], 0.0).unwrap();
    }
    let h = s.table().header();
    // A writer that died mid-write: lock held by a dead pid, seq odd, and half of an
    // update done (a value byte changed, and the queue head pointing nowhere useful).
    h.lock.store(lock::dead_word(), Ordering::Relaxed);
    h.seq.fetch_add(1, Ordering::Relaxed);
    let at = entry_offset(&s, 3, 1);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[at] ^= 0xff;
    bytes[256..260].copy_from_slice(&5u32.to_le_bytes());
    std::fs::write(&p, &bytes).unwrap();

    let t = Instant::now();
    let other = open(&p, 8);
    // A reader first: it sees the odd counter, falls back to the lock, takes it over.
    let v = get(&other, &[0]);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(v.as_deref(), Some(&[0u8; 3][..]));
    assert_eq!(
        get(&other, &[3]),
        None,
        "the half-written entry was dropped"
    );
    other.set(&[9], b"new", 0.0).unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    s.table().validate().unwrap();
    assert_eq!(h.seq.load(Ordering::Relaxed) & 1, 0);
    assert_eq!(h.lock.load(Ordering::Relaxed), 0);
    for k in [0u8, 1, 2, 4, 5, 6, 7] {
        if let Some(v) = get(&s, &[k]) {
            assert_eq!(v, vec![k; 3]);
        }
    }
    assert_eq!(get(&s, &[9]).as_deref(), Some(&b"new"[..]));
}

#[test]
fn a_writer_waits_for_a_live_holder() {
    let d = TempDir::new();
    let p = d.file("c");
    let s = open(&p, 8);
    let h = s.table().header();
    // Held by this (live) process: the other handle must wait, not take over.
    let held = s.hold_lock();
    let p2 = p.clone();
    let waiter = std::thread::spawn(move || {
        let t = Instant::now();
        let o = open(&p2, 8); // the open check takes no lock; the set below waits
        o.set(b"k", b"v", 0.0).unwrap();
        t.elapsed()
    });
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(h.lock.load(Ordering::Relaxed), held.as_ref().unwrap().word);
    drop(held);
    let waited = waiter.join().unwrap();
    assert!(waited >= Duration::from_millis(40), "{waited:?}");
    assert_eq!(get(&s, b"k").as_deref(), Some(&b"v"[..]));
}

/// A value that encodes its key: 8 bytes of the key's hash, then a filler of a length
/// that depends on the round.
fn value_for(key: &[u8], round: u64) -> Vec<u8> {
    let h = crate::hash::hash_bytes(&crate::hash::fixed_state(), key);
    let mut v = h.to_le_bytes().to_vec();
    v.extend(std::iter::repeat_n(key[0], (round % 200) as usize));
    v
}

fn check_value(key: &[u8], v: &[u8]) {
    let h = crate::hash::hash_bytes(&crate::hash::fixed_state(), key);
    assert!(v.len() >= 8, "short value for {key:?}");
    assert_eq!(
        &v[..8],
        &h.to_le_bytes(),
        "value of another key for {key:?}"
    );
    assert!(
        v[8..].iter().all(|&b| b == key[0]),
        "torn value for {key:?}"
    );
}

#[test]
fn threads_with_their_own_handles_never_read_a_wrong_value() {
    let d = TempDir::new();
    let p = d.file("c");
    drop(open(&p, 8));
    let threads = 6;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let p = p.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let s = open(&p, 8);
                let mut out = vec![0u8; 256];
                let mut x: u64 = 0x1234_5678 + t as u64;
                let (mut hits, mut gets) = (0u64, 0u64);
                barrier.wait();
                for round in 0..20_000u64 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let key = [(x % 24) as u8, 7];
                    match x % 16 {
                        0..=5 => {
                            s.set(&key, &value_for(&key, round), 0.0).unwrap();
                        }
                        6 => {
                            s.delete(&key).unwrap();
                        }
                        _ => {
                            gets += 1;
                            if let Get::Hit(n) = s.get(&key, &mut out, 0.0).unwrap() {
                                check_value(&key, &out[..n]);
                                hits += 1;
                            }
                        }
                    }
                }
                (hits, gets)
            })
        })
        .collect();
    let (mut hits, mut gets) = (0, 0);
    for h in handles {
        let (a, b) = h.join().unwrap();
        hits += a;
        gets += b;
    }
    let s = open(&p, 8);
    s.table().validate().unwrap();
    let i = s.info();
    assert_eq!(i.hits, hits, "exact hit total");
    assert_eq!(i.hits + i.misses, gets, "exact lookup total");
    assert!(i.len <= 8);
}

/// Eight threads open `p` at once (after a barrier), each sets its own key; returns the
/// handles after checking that every handle sees every key.
fn open_from_eight_threads_at_once(p: &Path) -> Vec<ShmStore> {
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8u8)
        .map(|t| {
            let p = p.to_path_buf();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let s = open(&p, 16);
                s.set(&[t], &[t], 0.0).unwrap();
                s
            })
        })
        .collect();
    let stores: Vec<ShmStore> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for s in &stores {
        for t in 0..8u8 {
            assert_eq!(
                get(s, &[t]).as_deref(),
                Some(&[t][..]),
                "all handles share one file"
            );
        }
    }
    stores
}

#[test]
fn eight_threads_opening_a_fresh_file_at_once_share_it() {
    let d = TempDir::new();
    let p = d.0.join("fresh").join("c");
    let stores = open_from_eight_threads_at_once(&p);
    stores[0].table().validate().unwrap();
    let names: Vec<_> = std::fs::read_dir(d.0.join("fresh")).unwrap().collect();
    assert_eq!(names.len(), 1, "no temporary file left");
}

#[test]
fn eight_threads_replacing_a_bad_file_at_once_agree() {
    let d = TempDir::new();
    let p = d.file("c");
    std::fs::write(&p, vec![0xAB; HEADER_SIZE * 3]).unwrap();
    open_from_eight_threads_at_once(&p);
}

/// Runs in a child process (see the test below): opens the file named by the
/// environment, fills it, then dies holding the lock in the middle of an update.
#[test]
fn child_process_helper() {
    let Ok(path) = std::env::var("WARP_SHM_TEST_CHILD") else {
        return;
    };
    let s = open(Path::new(&path), 8);
    for k in 0..8u8 {
        s.set(&[k], &[k; 3], 0.0).unwrap();
    }
    let h = s.table().header();
    let _held = s.hold_lock().unwrap();
    h.seq.fetch_add(1, Ordering::Relaxed);
    // Half of an update: a new value length without the new bytes and checksum.
    let slot = s
        .table()
        .find(&[3], s.table().hash(&[3]))
        .unwrap()
        .unwrap()
        .1;
    s.table()
        .slot(slot)
        .unwrap()
        .h
        .meta
        .store(layout::meta_of(1, 1), Ordering::Relaxed);
    // SAFETY: _exit ends the process at once, as a crash would; nothing runs after it.
    unsafe { libc::_exit(0) };
}

#[test]
fn a_process_that_dies_holding_the_lock_is_recovered_within_a_second() {
    let d = TempDir::new();
    let p = d.file("c");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "shm::tests::child_process_helper", "--quiet"])
        .env("WARP_SHM_TEST_CHILD", &p)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let (seq, lock) = seq_and_lock(&p);
    assert_ne!(lock, 0, "the child died holding the lock");
    assert_eq!(seq & 1, 1);
    let t = Instant::now();
    let s = open(&p, 8); // open takes the lock over and repairs
    let h = s.table().header();
    assert_eq!(get(&s, &[0]).as_deref(), Some(&[0u8; 3][..]));
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(get(&s, &[3]), None, "the half-updated entry was dropped");
    for k in [1u8, 2, 4, 5, 6, 7] {
        assert_eq!(
            get(&s, &[k]).as_deref(),
            Some(&[k; 3][..]),
            "intact entries survive"
        );
    }
    assert_eq!(h.lock.load(Ordering::Relaxed), 0);
    s.table().validate().unwrap();
    assert_eq!(s.len(), 7);
}

#[test]
fn stale_temporary_files_of_dead_creators_are_swept() {
    let d = TempDir::new();
    let stale = d.file(".c.1073741824.0.0.tmp"); // pid 2^30: never alive
    let live = d.file(format!(".c.{}.99.0.tmp", std::process::id()).as_str());
    let other = d.file(".other.1073741824.0.0.tmp");
    for f in [&stale, &live, &other] {
        std::fs::write(f, b"x").unwrap();
    }
    let _s = open(&d.file("c"), 4);
    assert!(!stale.exists());
    assert!(live.exists() && other.exists());
}

#[test]
fn a_file_of_another_user_is_refused() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test gives a file to another user, which needs root (as in CI)"
    );
    let d = TempDir::new();
    let p = d.file("c");
    drop(open(&p, 4));
    std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
    let e = ShmStore::open(&p, 4, 64, 256, 0.0).err().unwrap();
    assert!(e.message.contains("another user"), "{e}");
    assert_eq!(
        std::fs::metadata(&p).unwrap().len(),
        Params::new(4, 64, 256).unwrap().file_size
    );
}

/// Runs in a child process (see the test below): updates keys 0..16 with large values in a
/// loop until it is killed.
#[test]
fn kill_target_helper() {
    let Ok(path) = std::env::var("WARP_SHM_TEST_KILL") else {
        return;
    };
    let s = ShmStore::open(Path::new(&path), 16, 8, 1 << 16, 0.0).unwrap();
    for k in 0..16u8 {
        if big_get(&s, &[k]).is_none() {
            s.set(&[k], &big_value(&[k], 0), 0.0).unwrap();
        }
    }
    // Values made beforehand, so that the loop spends most of its time in `set`.
    let values: Vec<Vec<Vec<u8>>> = (0..16u8)
        .map(|k| (0..4).map(|r| big_value(&[k], 1000 + r * 250)).collect())
        .collect();
    println!("ready");
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    for round in 1u64.. {
        for k in 0..16u8 {
            let v = &values[k as usize][(round % 4) as usize];
            s.set(&[k], v, round as f64).unwrap();
        }
    }
}

/// The key's hash, then a filler byte that depends on the round, repeated: an update
/// changes every byte, so a torn update cannot pass for the old value.
fn big_value(key: &[u8], round: u64) -> Vec<u8> {
    let mut v = value_for(key, 0);
    v.resize(20_000 + (round % 1500) as usize * 30, (round % 251) as u8);
    v
}

fn big_check(key: &[u8], v: &[u8]) {
    let h = crate::hash::hash_bytes(&crate::hash::fixed_state(), key);
    assert!(v.len() > 8, "short value for {key:?}");
    assert_eq!(
        &v[..8],
        &h.to_le_bytes(),
        "value of another key for {key:?}"
    );
    assert!(v[8..].iter().all(|&b| b == v[8]), "torn value for {key:?}");
}

fn big_get(s: &ShmStore, key: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![0u8; 1 << 16];
    match s.get(key, &mut out, 0.0).unwrap() {
        Get::Hit(n) => Some(out[..n].to_vec()),
        Get::Miss => None,
        Get::TooSmall(n) => panic!("buffer too small: {n}"),
    }
}

/// Regression (format v1 updated values in place: a writer killed mid-update lost the
/// key): a process that keeps updating every key is SIGKILLed at random instants, most
/// of them while it holds the lock; after each kill every key is still there, with an
/// intact value.
#[test]
fn a_writer_killed_mid_update_loses_no_key() {
    use std::io::BufRead;
    let d = TempDir::new();
    let p = d.file("c");
    let mut rng = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let (mut kills, mut held) = (0, 0);
    for _ in 0..150 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "shm::tests::kill_target_helper",
                "--quiet",
                "--nocapture",
            ])
            .env("WARP_SHM_TEST_KILL", &p)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("ready") {
            line.clear();
            assert_ne!(out.read_line(&mut line).unwrap(), 0, "the child exited");
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_micros(rng % 3000));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        if seq_and_lock(&p).1 != 0 {
            held += 1;
        }
        let t = Instant::now();
        let s = ShmStore::open(&p, 16, 8, 1 << 16, 0.0).unwrap();
        for k in 0..16u8 {
            let v = big_get(&s, &[k]).unwrap_or_else(|| panic!("key {k} lost after kill {kills}"));
            big_check(&[k], &v);
        }
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        s.table().validate().unwrap();
    }
    println!("{kills} kills, {held} while holding the lock");
    assert!(held > 0, "no kill landed while the lock was held");
}

/// The sequence counter and lock word of the file at `path`, read without mapping it.
fn seq_and_lock(path: &Path) -> (u64, u64) {
    let b = std::fs::read(path).unwrap();
    let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    (word(64), word(128))
}

/// Regression (fuzzing, rust/fuzz/regressions/shm_file/queue-links-*): a file with a valid
/// identity whose queue links were plausible garbage was trusted; later operations spread
/// the damage and the structure never validated again. Open now checks the structure, and
/// unlink / push checks that neighbours link back.
#[test]
fn plausible_garbage_queue_links_are_repaired() {
    let d = TempDir::new();
    let p = d.file("c");
    let params = Params::new(8, 64, 256).unwrap();
    let link = |slot: u32, field: usize| params.slot_offset(slot) + field;
    for (at, v) in [
        (link(0, 32), 5u32), // newer of slot 0 -> a free slot
        (link(2, 36), 0),    // older of slot 2 -> slot 0 (a cycle)
        (256, 3),            // head -> slot 3, not the newest
        (268, 2),            // len 2 instead of 4
    ] {
        let s = open(&p, 8);
        s.clear().unwrap();
        for k in 0..4u8 {
            put(&s, k);
        }
        drop(s);
        let mut b = std::fs::read(&p).unwrap();
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        std::fs::write(&p, &b).unwrap();
        let s = open(&p, 8);
        s.table().validate().unwrap();
        for k in 0..4u8 {
            if let Some(v) = get(&s, &[k]) {
                assert_eq!(v, vec![k, k]);
            }
        }
        for k in 4..20u8 {
            put(&s, k);
        }
        // Corrupted while mapped: the next unlink notices and rebuilds.
        let slot = s
            .table()
            .find(&[19], s.table().hash(&[19]))
            .unwrap()
            .unwrap()
            .1;
        s.table()
            .slot(slot)
            .unwrap()
            .h
            .newer
            .store(slot, Ordering::Relaxed);
        s.delete(&[19]).unwrap();
        for k in 20..30u8 {
            put(&s, k);
        }
    }
}

/// Regression (issue: 2 processes read no faster than 1): hits, misses and oversize skips
/// are striped per handle. Handles opened on one file get distinct stripes round robin,
/// and the totals stay exact whatever stripe counted what, `count_hit` included.
#[test]
fn counters_are_exact_across_handles_on_different_stripes() {
    let d = TempDir::new();
    let p = d.file("c");
    let first = open(&p, 16);
    first.set(b"hot", b"v", 0.0).unwrap();
    let threads = layout::STRIPES + 2; // more handles than stripes: some share one
    let barrier = Arc::new(Barrier::new(threads));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let p = p.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let s = open(&p, 16);
                let stripe = s.stripe_index();
                let mut out = [0u8; 16];
                let (mut hits, mut misses, mut skips) = (0u64, 0u64, 0u64);
                barrier.wait();
                for i in 0..50_000u64 {
                    match (i + t as u64) % 10 {
                        0 => {
                            assert_eq!(s.get(b"absent", &mut out, 0.0).unwrap(), Get::Miss);
                            misses += 1;
                        }
                        1 if i % 3 == 0 => {
                            // A caller that missed, then joined another's computation:
                            // its miss becomes a hit.
                            assert_eq!(s.get(b"absent", &mut out, 0.0).unwrap(), Get::Miss);
                            s.count_hit();
                            hits += 1;
                        }
                        2 if i % 7 == 0 => {
                            assert_eq!(s.set(&[0; 65], b"v", 0.0).unwrap(), Set::Skipped);
                            skips += 1;
                        }
                        _ => {
                            assert_eq!(s.get(b"hot", &mut out, 0.0).unwrap(), Get::Hit(1));
                            hits += 1;
                        }
                    }
                }
                (stripe, hits, misses, skips)
            })
        })
        .collect();
    let (mut hits, mut misses, mut skips) = (0, 0, 0);
    let mut stripes = vec![first.stripe_index()];
    for w in workers {
        let (stripe, h, m, k) = w.join().unwrap();
        stripes.push(stripe);
        hits += h;
        misses += m;
        skips += k;
    }
    // Round robin: the first STRIPES handles of the file have distinct stripes.
    let mut sorted = stripes.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), layout::STRIPES, "stripes used: {stripes:?}");
    let i = first.info();
    assert_eq!(
        (i.hits, i.misses, i.oversize_skips),
        (hits, misses, skips),
        "exact totals"
    );
    // Every stripe got its share: the totals really are sums over several lines.
    let h = first.table().header();
    assert!(h.all_stripes().all(|s| s.hits.load(Ordering::Relaxed) > 0));
    // Another handle (another stripe) sees the same totals; clear zeroes every stripe.
    let other = open(&p, 16);
    assert_eq!(other.info(), i);
    other.clear().unwrap();
    assert_eq!(
        (
            first.info().hits,
            first.info().misses,
            first.info().oversize_skips
        ),
        (0, 0, 0)
    );
    assert!(h.all_stripes().all(|s| s.hits.load(Ordering::Relaxed) == 0));
}

/// `count_hit` takes the miss from another stripe when its own has none, and never takes
/// one that is not there.
#[test]
fn count_hit_moves_a_miss_counted_on_another_stripe() {
    let d = TempDir::new();
    let p = d.file("c");
    let a = open(&p, 4);
    let b = open(&p, 4);
    assert_ne!(a.stripe_index(), b.stripe_index());
    assert_eq!(get(&a, b"x"), None); // a miss on a's stripe
    b.count_hit();
    let i = a.info();
    assert_eq!((i.hits, i.misses), (1, 0));
    b.count_hit(); // no miss anywhere: misses stay at 0
    assert_eq!((a.info().hits, a.info().misses), (2, 0));
}

/// Fills the counter lines of a v3 header (192..256 and 320..512) with `byte`.
fn scribble_counters(bytes: &mut [u8], byte: u8) {
    bytes[192..256].fill(byte);
    bytes[320..512].fill(byte);
    bytes[280..288].fill(byte); // evictions
}

/// Regression (issue: `cacheInfo()` reported hits: 16845846506817149000 until
/// `cacheClear()`): a file whose identity line is valid but whose other header lines are
/// garbage is repaired, and the repair resets the counters and recomputes `len`.
#[test]
fn garbage_counters_are_reset_by_the_repair() {
    let d = TempDir::new();
    let p = d.file("c");
    let s = open(&p, 8);
    for k in 0..5u8 {
        put(&s, k);
        assert!(get(&s, &[k]).is_some());
    }
    drop(s);
    // Garbage over every header line but the identity: seq, lock, counters, len, queue.
    let mut bytes = std::fs::read(&p).unwrap();
    let mut x: u64 = 7;
    for b in bytes[64..HEADER_SIZE].iter_mut() {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *b = (x >> 33) as u8 | 0x80; // every u64 above 2^53
    }
    std::fs::write(&p, &bytes).unwrap();
    let s = open(&p, 8);
    s.table().validate().unwrap();
    let i = s.info();
    assert_eq!(
        (i.hits, i.misses, i.oversize_skips, i.evictions),
        (0, 0, 0, 0)
    );
    assert_eq!(
        i.len as usize,
        keys(&s).len(),
        "len recomputed by the rebuild"
    );
    assert_eq!(i.len, 5, "the entries survive a garbage header");
    for k in 0..5u8 {
        assert_eq!(get(&s, &[k]), Some(vec![k, k]));
    }
    assert_eq!(s.info().hits, 5, "counting goes on from 0");
}

/// Garbage over the counter lines only (the structure validates) is reset at open; written
/// while mapped, it is reset by `info`. A dead writer's rebuild keeps plausible counters.
#[test]
fn implausible_counters_are_reset_and_plausible_ones_kept() {
    let d = TempDir::new();
    let p = d.file("c");
    let s = open(&p, 8);
    put(&s, 1);
    assert!(get(&s, &[1]).is_some());
    assert_eq!(get(&s, &[2]), None);
    drop(s);
    let mut bytes = std::fs::read(&p).unwrap();
    scribble_counters(&mut bytes, 0xE9);
    std::fs::write(&p, &bytes).unwrap();
    let s = open(&p, 8);
    s.table().validate().unwrap();
    let i = s.info();
    assert_eq!(
        (i.hits, i.misses, i.oversize_skips, i.evictions, i.len),
        (0, 0, 0, 0, 1)
    );

    // While mapped: one stripe's hits become garbage; info notices and resets.
    assert!(get(&s, &[1]).is_some());
    let h = s.table().header();
    h.stripe(3)
        .hits
        .store(16_845_846_506_817_149_000, Ordering::Relaxed);
    assert_eq!(s.info().hits, 0);

    // A writer that died mid-write (odd seq) is not corruption: counters are kept.
    assert!(get(&s, &[1]).is_some());
    assert_eq!(get(&s, &[3]), None);
    h.seq.fetch_add(1, Ordering::Relaxed);
    put(&s, 4);
    let i = s.info();
    assert_eq!((i.hits, i.misses, i.len), (1, 1, 2));
    // The largest plausible value is kept, one more is not.
    h.stripe(0).misses.store(0, Ordering::Relaxed);
    h.stripe(1)
        .misses
        .store(layout::COUNTER_LIMIT, Ordering::Relaxed);
    assert_eq!(s.info().misses, layout::COUNTER_LIMIT);
    h.stripe(2).misses.store(1, Ordering::Relaxed);
    assert_eq!(s.info().misses, 0);
}

/// Runs `helper` (a test of this binary that does nothing unless `var` is set) in a child
/// process with `var=value`, wrapped by `wrap` (a command and its arguments, e.g.
/// `unshare`), with stdout piped.
fn spawn_helper(wrap: &[&str], helper: &str, var: &str, value: &str) -> std::process::Child {
    let exe = std::env::current_exe().unwrap();
    let test = format!("shm::tests::{helper}");
    let args = ["--exact", test.as_str(), "--quiet", "--nocapture"];
    let mut cmd = match wrap.split_first() {
        Some((program, rest)) => {
            let mut c = std::process::Command::new(program);
            c.args(rest).arg(&exe).args(args);
            c
        }
        None => {
            let mut c = std::process::Command::new(&exe);
            c.args(args);
            c
        }
    };
    cmd.env(var, value)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads the child's stdout until a line starting with `prefix`; returns that line.
fn line_starting(out: &mut impl std::io::BufRead, prefix: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        assert_ne!(out.read_line(&mut line).unwrap(), 0, "the child exited");
        if line.starts_with(prefix) {
            return line.trim().to_owned();
        }
    }
}

/// A value for key `[writer, i]` at generation `generation`: the key's hash, the generation,
/// and a filler of a length and byte that depend on the generation.
fn gen_value(key: &[u8], generation: u64) -> Vec<u8> {
    let mut v = value_for(key, 0);
    v.extend_from_slice(&generation.to_le_bytes());
    v.resize(
        16 + 1000 + (generation % 7) as usize * 500,
        (generation % 251) as u8,
    );
    v
}

/// The generation of a value made by [`gen_value`] for `key`; panics on any other value.
fn gen_of(key: &[u8], v: &[u8]) -> u64 {
    assert!(v.len() >= 16, "short value for {key:?}");
    assert_eq!(
        &v[..8],
        &value_for(key, 0)[..8],
        "value of another key for {key:?}"
    );
    let generation = u64::from_le_bytes(v[8..16].try_into().unwrap());
    assert_eq!(v, gen_value(key, generation), "torn value for {key:?}");
    generation
}

const HAMMER_KEYS: u8 = 32;

/// Runs in a child process (see the test below), in a PID namespace of its own: writer
/// `w` sets its keys `[w, i]` with growing generations for the given seconds, reading
/// each back, and reads the other writer's keys; every operation must succeed and every
/// value read must be a whole value of its key, of the last generation stored for this
/// writer's own keys. Prints `done <ops> <busy> <generation of each key>`.
#[test]
fn pid_namespace_writer_helper() {
    let Ok(arg) = std::env::var("WARP_SHM_TEST_HAMMER") else {
        return;
    };
    let mut parts = arg.split(',');
    let path = PathBuf::from(parts.next().unwrap());
    let w: u8 = parts.next().unwrap().parse().unwrap();
    let seconds: u64 = parts.next().unwrap().parse().unwrap();
    let s = ShmStore::open(&path, 4 * u32::from(HAMMER_KEYS), 8, 4096, 0.0).unwrap();
    // A word shared by both writers beside the cache file: how many hold the lock.
    let side = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path.with_extension("inside"))
        .unwrap();
    let map = memmap2::MmapOptions::new().len(8).map_raw(&side).unwrap();
    // SAFETY: the mapping is 8 bytes, page-aligned, alive until the end of this function,
    // and only accessed atomically (by both writers).
    let inside = unsafe { &*map.as_mut_ptr().cast::<AtomicU64>() };
    let mut out = vec![0u8; 4096];
    let mut gens = vec![0u64; HAMMER_KEYS as usize];
    let (mut ops, mut busy) = (0u64, 0u64);
    println!("ready");
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut x = 0x9e37_79b9u64 + u64::from(w);
    while Instant::now() < end {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = (x % u64::from(HAMMER_KEYS)) as usize;
        let key = [w, i as u8];
        let generation = gens[i] + 1;
        match s.set(&key, &gen_value(&key, generation), 0.0).unwrap() {
            Set::Stored => gens[i] = generation,
            Set::Busy => busy += 1, // the lock was held for SET_WAIT: not stored
            Set::Skipped | Set::Lost => panic!("skipped"),
        }
        if let Get::Hit(n) = s.get(&key, &mut out, 0.0).unwrap() {
            assert_eq!(gen_of(&key, &out[..n]), gens[i], "lost update of {key:?}");
        }
        let other = [1 - w, (x >> 20) as u8 % HAMMER_KEYS];
        if x.is_multiple_of(8)
            && let Get::Hit(n) = s.get(&other, &mut out, 0.0).unwrap()
        {
            gen_of(&other, &out[..n]);
        }
        if x.is_multiple_of(64) {
            assert!(!s.delete(&[9, 9]).unwrap());
        }
        if x.is_multiple_of(4) {
            // Hold the lock as a writer does, for 50 us, and check that nobody else does.
            let held = s.hold_lock().unwrap();
            assert_eq!(
                inside.fetch_add(1, Ordering::SeqCst),
                0,
                "two holders at once"
            );
            let t = Instant::now();
            while t.elapsed() < Duration::from_micros(50) {
                std::hint::spin_loop();
            }
            inside.fetch_sub(1, Ordering::SeqCst);
            drop(held);
        }
        ops += 1;
    }
    let gens: Vec<String> = gens.iter().map(u64::to_string).collect();
    println!("done {ops} {busy} {}", gens.join(" "));
}

/// Regression (red team, item 4): two writers in different PID namespaces (containers
/// sharing /dev/shm) took the lock from each other, since the lock word named its owner by
/// pid and start time, which mean nothing across namespaces: calls failed with "inconsistent
/// even after a rebuild". Both writers here are pid 1 of their own namespace. Needs root
/// (`unshare --pid`), as CI runs; fails, rather than skips, without it.
#[test]
fn writers_in_two_pid_namespaces_never_take_the_lock_from_each_other() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root: it runs writers in new PID namespaces with `unshare --pid --fork --mount-proc`"
    );
    let d = TempDir::new();
    let p = d.file("c");
    drop(ShmStore::open(&p, 4 * u32::from(HAMMER_KEYS), 8, 4096, 0.0).unwrap());
    std::fs::write(p.with_extension("inside"), [0u8; 8]).unwrap();
    let seconds = 4;
    let children: Vec<_> = (0..2)
        .map(|w| {
            let arg = format!("{},{w},{seconds}", p.display());
            let wrap = ["unshare", "--pid", "--fork", "--mount-proc"];
            let mut c = spawn_helper(
                &wrap,
                "pid_namespace_writer_helper",
                "WARP_SHM_TEST_HAMMER",
                &arg,
            );
            let out = std::io::BufReader::new(c.stdout.take().unwrap());
            (c, out)
        })
        .collect();
    let mut finals = Vec::new();
    for (mut c, mut out) in children {
        let done = line_starting(&mut out, "done");
        let status = c.wait().unwrap();
        assert!(
            status.success(),
            "a writer failed ({status}); see its output above"
        );
        finals.push(done);
    }
    let s = ShmStore::open(&p, 4 * u32::from(HAMMER_KEYS), 8, 4096, 0.0).unwrap();
    s.table().validate().unwrap();
    let mut out = vec![0u8; 4096];
    for (w, done) in finals.iter().enumerate() {
        let fields: Vec<u64> = done
            .split(' ')
            .skip(1)
            .map(|f| f.parse().unwrap())
            .collect();
        let (ops, busy) = (fields[0], fields[1]);
        println!("writer {w}: {ops} operations, {busy} sets not stored (lock busy)");
        assert!(ops > 100, "writer {w} made only {ops} operations");
        for (i, &generation) in fields[2..].iter().enumerate() {
            let key = [w as u8, i as u8];
            match s.get(&key, &mut out, 0.0).unwrap() {
                Get::Hit(n) => assert_eq!(
                    gen_of(&key, &out[..n]),
                    generation,
                    "final value of {key:?}"
                ),
                _ => assert_eq!(
                    generation, 0,
                    "acknowledged key {key:?} (generation {generation}) lost"
                ),
            }
        }
    }
}

/// Runs in a child process (see the test below): fills keys 0..4, then takes the write
/// lock as a writer in the middle of an update (sequence counter odd), prints `held`, and
/// keeps it until killed.
#[test]
fn lock_holder_helper() {
    let Ok(path) = std::env::var("WARP_SHM_TEST_HOLD") else {
        return;
    };
    let s = open(Path::new(&path), 8);
    for k in 0..4u8 {
        s.set(&[k], &value_for(&[k], 5), 0.0).unwrap();
    }
    let _held = s.hold_lock().unwrap();
    s.table().header().seq.fetch_add(1, Ordering::Relaxed);
    println!("held");
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Regression (red team, item 5): a process stopped (SIGSTOP) while it held the write lock
/// froze every other process's reads for the whole stop, and writes forever. Now reads of
/// intact entries go on (> 1000 hits in 1 s), a set gives up after its bound and does not
/// store, later sets give up at once, a delete fails with `Busy`; once the holder dies the
/// next writer takes over and repairs.
#[test]
fn a_stopped_lock_holder_blocks_no_reader_and_no_writer_for_long() {
    use std::sync::mpsc;
    let d = TempDir::new();
    let p = d.file("c");
    let s = Arc::new(open(&p, 8));
    let mut child = spawn_helper(
        &[],
        "lock_holder_helper",
        "WARP_SHM_TEST_HOLD",
        p.to_str().unwrap(),
    );
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    line_starting(&mut out, "held");
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill sends a signal to our own child, which we wait for below.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let (tx, rx) = mpsc::channel();
    let reader = {
        let s = s.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 256];
            let (mut hits, mut misses) = (0u64, 0u64);
            let end = Instant::now() + Duration::from_secs(1);
            while Instant::now() < end {
                for k in 0..4u8 {
                    match s.get(&[k], &mut buf, 0.0).unwrap() {
                        Get::Hit(n) => {
                            check_value(&[k], &buf[..n]);
                            hits += 1;
                        }
                        _ => misses += 1,
                    }
                }
            }
            let set = s.set(b"new", b"value", 0.0).unwrap();
            let again = s.set(b"new", b"value", 0.0).unwrap();
            let _ = tx.send((hits, misses, set, again));
        })
    };
    let report = rx.recv_timeout(Duration::from_secs(60));
    if report.is_err() {
        // SAFETY: as above; the kill frees the reader on the old design.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let (hits, misses, set, again) = report.expect("reads or a set blocked by a stopped writer");
    reader.join().unwrap();
    println!("during the stop: {hits} hits, {misses} misses");
    assert!(hits > 1000, "{hits} hits, {misses} misses");
    assert_eq!((set, again), (Set::Busy, Set::Busy));
    let e = s.delete(&[0]).unwrap_err();
    assert_eq!(e.status, Status::Busy);
    assert!(
        e.message.contains("held by a live process"),
        "{}",
        e.message
    );
    assert_eq!(get(&s, b"new"), None, "not stored");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(s.set(b"new", b"value", 0.0).unwrap(), Set::Stored);
    assert_eq!(get(&s, b"new").as_deref(), Some(&b"value"[..]));
    assert!(s.delete(&[0]).unwrap());
    s.table().validate().unwrap();
    for k in 1..4u8 {
        check_value(&[k], &get(&s, &[k]).unwrap());
    }
}
