//! Tests of small entries in their slots (format 8): packing, entries that move between
//! a slot's body and a chunk chain, the byte budget with both kinds, a writer killed while
//! it moves entries between them, and corruption of the new slot fields.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::layout::{
    CHUNK_SIZE, INLINE_BYTES, META_LIVE, META_RESERVED, META_VISITED, SlotHeader, entry_chunks,
    is_inline, meta_key_len, meta_of, meta_value_len,
};
use super::test_dir::TempDir;
use super::*;

/// A value for key `k` of `len` (at least 2) bytes, generation `generation`, whose every
/// byte depends on the key, the generation and its position: a torn or foreign value
/// does not pass [`check`].
fn value(k: u8, generation: u8, len: usize) -> Vec<u8> {
    let mut v = vec![k, generation];
    v.extend((2..len).map(|i| k ^ generation ^ (i as u8).wrapping_mul(31)));
    v
}

/// Panics unless `v` is a value that [`value`] makes for key `k`; returns its generation.
fn check(k: u8, v: &[u8]) -> u8 {
    assert!(v.len() >= 2, "short value for key {k}: {v:?}");
    assert_eq!(v[0], k, "value of another key for key {k}");
    let generation = v[1];
    for (i, &b) in v.iter().enumerate().skip(2) {
        assert_eq!(
            b,
            k ^ generation ^ (i as u8).wrapping_mul(31),
            "torn value for key {k}"
        );
    }
    generation
}

fn get(s: &ShmStore, key: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![0u8; 4096];
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

/// The slot of `key` and its header.
fn slot_of<'a>(s: &'a ShmStore, key: &[u8]) -> (u32, &'a SlotHeader) {
    let t = s.table();
    let (_, slot, _) = t.find(key, t.hash(key)).unwrap().unwrap();
    (slot, t.slot(slot).unwrap().h)
}

/// Byte offset of field `at` of slot `slot` in the file.
fn slot_field(s: &ShmStore, slot: u32, at: usize) -> usize {
    s.params().slot_offset(slot) + at
}

fn poke(path: &Path, at: usize, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, at as u64).unwrap();
}

/// Entries of a 16-byte key and value live in their slots: 10,000 of them fill the cache
/// with no chunk held, in a file of the README's size (72 bytes a slot), and each one is
/// read back exactly.
#[test]
fn small_entries_are_packed_in_their_slots() {
    let d = TempDir::new();
    let p = d.file("c");
    let n = 10_000u32;
    let s = ShmStore::open(&p, n, 16, 16, 0.0).unwrap();
    let size = std::fs::metadata(&p).unwrap().len();
    assert_eq!(
        size,
        512 + 8 * 32_768 + 72 * (u64::from(n) + 1) + 256 + layout::FLIGHTS_SIZE as u64
    );
    let key = |i: u32| {
        let mut k = [0u8; 16];
        k[..4].copy_from_slice(&i.to_le_bytes());
        k[15] = 0xa5;
        k
    };
    let val = |i: u32| {
        let mut v = [0u8; 16];
        v[..4].copy_from_slice(&(i ^ 0x5a5a_5a5a).to_le_bytes());
        v[8..12].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_le_bytes());
        v
    };
    for i in 0..n {
        assert_eq!(s.set(&key(i), &val(i), 0.0).unwrap(), Set::Stored);
    }
    s.table().validate().unwrap();
    let info = s.info();
    assert_eq!((info.len, info.bytes, info.evictions), (u64::from(n), 0, 0));
    assert_eq!(
        s.table().header().chunk_next_unused.load(Relaxed),
        0,
        "no chunk was ever used"
    );
    for i in 0..n {
        assert_eq!(get(&s, &key(i)).as_deref(), Some(&val(i)[..]), "entry {i}");
    }
    // One more evicts one: the count binds, not bytes.
    assert_eq!(s.set(&key(n), &val(n), 0.0).unwrap(), Set::Stored);
    assert_eq!((s.info().len, s.info().evictions), (u64::from(n), 1));
}

/// An entry that grows out of its slot and shrinks back into it (and across the exact
/// boundary, 32 and 33 bytes) keeps its queue place and visited bit, holds chunks only
/// while it needs them, and frees them when it shrinks.
#[test]
fn an_entry_moves_between_its_slot_and_a_chain() {
    let d = TempDir::new();
    let s = ShmStore::open_sized(&d.file("c"), 4, 8, 1000, 16 * CHUNK_SIZE as u64, 0.0).unwrap();
    for k in 1..=3u8 {
        s.set(&[k], &value(k, 0, 10), 0.0).unwrap();
    }
    assert!(get(&s, &[2]).is_some(), "key 2 is visited");
    let order = || {
        s.table()
            .order()
            .into_iter()
            .map(|(k, v)| (k[0], v))
            .collect::<Vec<_>>()
    };
    let before = order();
    assert_eq!(before, [(3, false), (2, true), (1, false)]);
    let used = || s.table().header().chunks_used.load(Relaxed);
    // key 2: a 1-byte key and values of these lengths.
    for (generation, len, chunks) in [
        (1u8, 31usize, 0u32), // 32 bytes: the largest that fits in a slot
        (2, 32, 1),           // 33 bytes: one chunk
        (3, 600, 3),          // 601 bytes: 3 chunks of 248
        (4, 2, 0),            // back into the slot: its chunks are free again
        (5, 247, 1),
        (6, 31, 0),
    ] {
        assert_eq!(
            s.set(&[2], &value(2, generation, len), f64::from(generation))
                .unwrap(),
            Set::Stored
        );
        let v = get(&s, &[2]).unwrap();
        assert_eq!((check(2, &v), v.len()), (generation, len));
        assert_eq!(used(), chunks, "key 2 at {len} bytes");
        assert_eq!(u64::from(used()) * CHUNK_SIZE as u64, s.info().bytes);
        let (_, h) = slot_of(&s, &[2]);
        let meta = h.meta.load(Relaxed);
        assert_eq!((meta_key_len(meta), meta_value_len(meta)), (1, len));
        assert_eq!(entry_chunks(1 + len as u64) as u32, chunks);
        s.table().validate().unwrap();
        assert_eq!(
            order(),
            before,
            "the queue place and the visited bit are kept"
        );
    }
    // The freed chunks serve others: 16 chunks of budget, entries of 3 chunks (the
    // capacity of 4 binds first; key 2, visited, stays in its slot).
    for k in 10..15u8 {
        s.set(&[k], &value(k, 0, 600), 0.0).unwrap();
    }
    let big = (10..15u8).filter(|&k| get(&s, &[k]).is_some()).count() as u32;
    assert!(big >= 3, "{big}");
    assert_eq!(used(), 3 * big);
    assert_eq!(get(&s, &[2]).map(|v| v.len()), Some(31));
    s.table().validate().unwrap();
}

/// Entries of random sizes on both sides of the slot's room, replaced, grown, shrunk and
/// deleted at random: after every step the structure validates, every key of the model
/// reads back exactly or was evicted, and the bytes held are those of the chained entries.
/// At the end, once the chained entries are gone, the largest entry fits: free chunks do
/// not fragment (any chunk serves any entry).
#[test]
fn mixed_sizes_neither_leak_nor_fragment() {
    let d = TempDir::new();
    let budget = 64 * CHUNK_SIZE as u64;
    let s = ShmStore::open_sized(&d.file("c"), 48, 8, 2000, budget, 0.0).unwrap();
    let mut model: std::collections::HashMap<u8, Vec<u8>> = std::collections::HashMap::new();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut moved = 0;
    for step in 0..4000u32 {
        let k = (next(&mut rng) % 64) as u8;
        let r = next(&mut rng);
        if r.is_multiple_of(10) {
            s.delete(&[k]).unwrap();
            model.remove(&k);
        } else {
            // Half inline (2..=31 bytes of value), half chained (32..=2000).
            let len = if r.is_multiple_of(2) {
                2 + (r >> 8) as usize % 30
            } else {
                32 + (r >> 8) as usize % 1969
            };
            let was_inline = model.get(&k).map(|v| is_inline(1 + v.len()));
            let v = value(k, (step % 251) as u8, len);
            assert_eq!(s.set(&[k], &v, f64::from(step)).unwrap(), Set::Stored);
            if was_inline.is_some_and(|w| w != is_inline(1 + len)) {
                moved += 1;
            }
            model.insert(k, v);
        }
        s.table()
            .validate()
            .unwrap_or_else(|e| panic!("step {step}: {e}"));
        if step % 50 == 0 {
            let mut chained = 0u64;
            model.retain(|k, v| match get(&s, &[*k]) {
                Some(got) => {
                    assert_eq!(&got, v, "key {k} at step {step}");
                    chained += entry_chunks(1 + v.len() as u64);
                    true
                }
                None => false, // evicted
            });
            assert_eq!(s.info().len as usize, model.len(), "step {step}");
            assert_eq!(s.info().bytes, chained * CHUNK_SIZE as u64, "step {step}");
            assert!(s.info().bytes <= budget);
        }
    }
    assert!(
        moved > 500,
        "{moved} updates moved between a slot and a chain"
    );
    for k in 0..64u8 {
        if get(&s, &[k]).is_some_and(|v| v.len() + 1 > INLINE_BYTES) {
            s.delete(&[k]).unwrap();
        }
    }
    assert_eq!(s.info().bytes, 0);
    let len = s.info().len;
    // 2,001 bytes: 9 chunks, from the free list of chunks freed in any order.
    assert_eq!(
        s.set(&[200], &value(200, 1, 2000), 0.0).unwrap(),
        Set::Stored
    );
    assert_eq!(s.info().len, len + 1, "no small entry was evicted for it");
    assert_eq!(s.info().bytes, 9 * CHUNK_SIZE as u64);
    s.table().validate().unwrap();
}

/// Runs in a child process (see the test below): moves keys 0..16 between their slots
/// and chains, in a loop, until it is killed.
#[test]
fn inline_kill_target_helper() {
    let Ok(path) = std::env::var("WARP_SHM_TEST_INLINE_KILL") else {
        return;
    };
    let s = ShmStore::open(Path::new(&path), 16, 8, 1024, 0.0).unwrap();
    for k in 0..16u8 {
        if get(&s, &[k]).is_none() {
            s.set(&[k], &value(k, 0, 10), 0.0).unwrap();
        }
    }
    // Lengths on both sides of the slot's room (1 + 31 = 32 bytes fits, 33 does not).
    let lens = [2usize, 31, 32, 200, 20, 700, 30, 33];
    let values: Vec<Vec<Vec<u8>>> = (0..16u8)
        .map(|k| {
            lens.iter()
                .enumerate()
                .map(|(g, &l)| value(k, g as u8 + 1, l))
                .collect()
        })
        .collect();
    println!("ready");
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    for round in 1u64.. {
        for k in 0..16u8 {
            let v = &values[k as usize][(round as usize + k as usize) % lens.len()];
            s.set(&[k], v, round as f64).unwrap();
        }
    }
}

/// A writer killed (SIGKILL) at random instants while it moves entries between their
/// slots and chunk chains, most kills while it holds the lock: after each kill, the next
/// handle repairs the file, every key is still there with an intact value of its own, and
/// the structure validates.
#[test]
fn a_writer_killed_while_moving_entries_between_slot_and_chain_loses_no_key() {
    use std::io::BufRead;
    let d = TempDir::new();
    let p = d.file("c");
    let mut rng = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let (mut kills, mut held) = (0, 0);
    for _ in 0..100 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "shm::inline_tests::inline_kill_target_helper",
                "--quiet",
                "--nocapture",
            ])
            .env("WARP_SHM_TEST_INLINE_KILL", &p)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("ready") {
            line.clear();
            assert_ne!(out.read_line(&mut line).unwrap(), 0, "the child exited");
        }
        std::thread::sleep(Duration::from_micros(next(&mut rng) % 3000));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        let b = std::fs::read(&p).unwrap();
        if u64::from_le_bytes(b[128..136].try_into().unwrap()) != 0 {
            held += 1;
        }
        let t = Instant::now();
        let s = ShmStore::open(&p, 16, 8, 1024, 0.0).unwrap();
        for k in 0..16u8 {
            let v = get(&s, &[k]).unwrap_or_else(|| panic!("key {k} lost after kill {kills}"));
            check(k, &v);
        }
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        s.table().validate().unwrap();
    }
    println!("{kills} kills, {held} while holding the lock");
    assert!(held > 0, "no kill landed while the lock was held");
}

/// A store of 8 entries, half in their slots and half in chains, for the corruption
/// cases below.
fn filled(p: &Path) -> ShmStore {
    let s = ShmStore::open(p, 16, 8, 1000, 0.0).unwrap();
    for k in 0..8u8 {
        let len = if k % 2 == 0 { 20 } else { 300 };
        s.set(&[k], &value(k, 0, len), f64::from(k)).unwrap();
    }
    s.table().validate().unwrap();
    s
}

/// Corrupts a fresh store with `corrupt` (given the store and the offset of the slot of
/// key 2, an inline entry, and of key 3, a chained one), checks that `validate` reports a
/// violation when `expect` is given, then that every read through the damaged handle is
/// right or a miss, that a new handle repairs the file (validates, every read right or a
/// miss, the keys of `keep` still there), and that the damaged handle goes on.
fn corruption_case(
    label: &str,
    expect: Option<&str>,
    keep: &[u8],
    corrupt: impl Fn(&Path, usize, usize),
) {
    let d = TempDir::new();
    let p = d.file("c");
    let s = filled(&p);
    let inline_slot = slot_field(&s, slot_of(&s, &[2]).0, 0);
    let chained_slot = slot_field(&s, slot_of(&s, &[3]).0, 0);
    corrupt(&p, inline_slot, chained_slot);
    if let Some(expect) = expect {
        let e = s.table().validate().expect_err(label);
        assert!(e.contains(expect), "{label}: {e}");
    }
    for k in 0..8u8 {
        if let Some(v) = get(&s, &[k]) {
            check(k, &v);
        }
    }
    let other = ShmStore::open(&p, 16, 8, 1000, 0.0).unwrap();
    other
        .table()
        .validate()
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    for k in 0..8u8 {
        match get(&other, &[k]) {
            Some(v) => {
                check(k, &v);
            }
            None => assert!(!keep.contains(&k), "{label}: key {k} lost"),
        }
    }
    for k in 20..40u8 {
        s.set(&[k], &value(k, 1, if k % 2 == 0 { 10 } else { 400 }), 9.0)
            .unwrap();
    }
    s.table().validate().unwrap();
    for k in 20..40u8 {
        if let Some(v) = get(&s, &[k]) {
            check(k, &v);
        }
    }
}

const META: usize = std::mem::offset_of!(SlotHeader, meta);
const BODY: usize = std::mem::offset_of!(SlotHeader, body);

#[test]
fn corrupt_slot_fields_of_the_new_layout_are_detected_and_repaired() {
    let others = [0u8, 1, 4, 5, 6, 7];
    // An inline entry's bytes changed: its checksum fails; it is dropped, never read.
    corruption_case(
        "inline bytes flipped",
        Some("checksum"),
        &others,
        |p, i, _| {
            poke(p, i + BODY + 5, &[0xff]);
        },
    );
    // Garbage in the bits of the meta word that are always 0: repaired, the entry kept.
    corruption_case(
        "reserved meta bits",
        Some("garbage in its meta word"),
        &[0, 1, 2, 3, 4, 5, 6, 7],
        |p, i, _| {
            let m = meta_of(1, 20) | (1 << 55);
            assert_ne!(m & META_RESERVED, 0);
            poke(p, i + META, &m.to_le_bytes());
        },
    );
    // An inline entry whose lengths now claim a chain (its body read as a chunk link).
    corruption_case(
        "inline entry claims a chain",
        Some("slot"),
        &others,
        |p, i, _| {
            poke(p, i + META, &meta_of(1, 300).to_le_bytes());
        },
    );
    // A chained entry whose lengths now claim the slot (its chain link read as bytes).
    corruption_case(
        "chained entry claims the slot",
        Some("slot"),
        &others,
        |p, _, c| {
            poke(p, c + META, &meta_of(1, 20).to_le_bytes());
        },
    );
    // A chained entry's first chunk (word 0 of the body) pointing at another's chain.
    corruption_case(
        "chain link in the body",
        Some("not owned"),
        &others,
        |p, _, c| {
            poke(p, c + BODY, &1u32.to_le_bytes());
        },
    );
    // A chained entry's chain length (word 1 of the body) wrong.
    corruption_case(
        "chain length in the body",
        Some("wrong length"),
        &others,
        |p, _, c| {
            poke(p, c + BODY + 4, &7u32.to_le_bytes());
        },
    );
    // The live bit of a queued entry cleared.
    corruption_case("live bit cleared", Some("not live"), &others, |p, i, _| {
        poke(p, i + META, &(meta_of(1, 20) & !META_LIVE).to_le_bytes());
    });
    // The visited bit set by garbage: harmless, nothing to repair.
    corruption_case(
        "visited bit set",
        None,
        &[0, 1, 2, 3, 4, 5, 6, 7],
        |p, i, _| {
            poke(p, i + META, &(meta_of(1, 20) | META_VISITED).to_le_bytes());
        },
    );
    // Random bytes over whole slots, inline and chained.
    corruption_case("random slots", None, &[0, 1, 4, 5, 6, 7], |p, i, c| {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for at in [i, c] {
            let junk: Vec<u8> = (0..72).map(|_| next(&mut rng) as u8).collect();
            poke(p, at, &junk);
        }
    });
}
