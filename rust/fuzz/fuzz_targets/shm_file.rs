//! Arbitrary file bytes under the shared store's open and get paths.
//!
//! The first input byte picks how the file is made: raw bytes (any size), or a valid
//! identity header for the target's parameters followed by the fuzz bytes (so that
//! the table, slots, chunks, lock, sequence counter and queue fields are what the fuzzer
//! chose). Then the store is opened (recreating a bad file is fine), every key is
//! looked up (a hit must carry the value that the key's entry was written with, which
//! the target knows because it writes values derived from the key), a few sets run,
//! and the structure must validate. Never a panic, a hang or an out-of-bounds access.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use warp_cache::shm::layout::{HEADER_SIZE, MAGIC, Params, VERSION, hash_check};
use warp_cache::shm::{Get, ShmStore};

const CAP: u32 = 8;
const KEY: u32 = 8;
const VALUE: u32 = 32;

fn dir() -> PathBuf {
    let d = PathBuf::from(format!("/dev/shm/warp-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir(&d);
    d
}

/// The value that this target stores under `key` (readers check it).
fn value_of(key: &[u8]) -> Vec<u8> {
    key.iter()
        .map(|b| b.wrapping_mul(31) ^ 0x5a)
        .chain([key.len() as u8])
        .collect()
}

fn header(p: Params) -> Vec<u8> {
    let mut h = vec![0u8; HEADER_SIZE];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
    h[16..20].copy_from_slice(&p.capacity.to_le_bytes());
    h[20..24].copy_from_slice(&p.max_key_size.to_le_bytes());
    h[24..28].copy_from_slice(&p.max_value_size.to_le_bytes());
    h[28..32].copy_from_slice(&p.slot_size.to_le_bytes());
    h[32..36].copy_from_slice(&p.table_size.to_le_bytes());
    h[36..40].copy_from_slice(&p.chunks.to_le_bytes());
    h[40..48].copy_from_slice(&p.file_size.to_le_bytes());
    h[48..56].copy_from_slice(&hash_check().to_le_bytes());
    h[56..64].copy_from_slice(&p.max_bytes.to_le_bytes());
    h
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let p = Params::new(CAP, KEY, VALUE).unwrap();
    let mut file = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let mut f = header(p);
        // Fuzz bytes from offset 64 on (seq, lock, counters, queue, table, slots).
        f.truncate(64);
        f.extend_from_slice(rest);
        f.resize(p.file_size as usize, 0);
        f
    };
    if mode & 2 != 0 {
        // Lock word free, so that the fuzzer explores the data rather than takeovers.
        if file.len() >= 136 {
            file[128..136].fill(0);
        }
    }
    let path = dir().join("f");
    std::fs::write(&path, &file).unwrap();
    let store = match ShmStore::open(&path, CAP, KEY, VALUE, 0.0) {
        Ok(s) => s,
        Err(e) => panic!("open failed on a regular file of ours: {e}"),
    };
    let mut out = [0u8; VALUE as usize];
    // Keys 0..8 of length 1 and a few longer ones: lock-free reads over fuzzed data.
    for k in 0u8..12 {
        let key = vec![k; 1 + (k as usize % 4)];
        match store.get(&key, &mut out, 0.0) {
            Ok(Get::Hit(n)) => {
                // Only entries whose checksum verifies are returned; this target never
                // wrote one, so a hit needs a checksum forged by the fuzzer (ahash at
                // fixed seeds): possible in principle, never a torn or foreign value.
                assert!(n <= VALUE as usize);
            }
            Ok(Get::Miss) | Ok(Get::TooSmall(_)) => {}
            Err(e) => panic!("get failed: {e}"),
        }
    }
    // Writes repair whatever the reads left, then everything written reads back.
    for k in 0u8..10 {
        let key = [k, 0xee];
        store.set(&key, &value_of(&key), 1.0).unwrap();
    }
    store.table().validate().unwrap();
    let mut found = 0;
    for k in 0u8..10 {
        let key = [k, 0xee];
        if let Get::Hit(n) = store.get(&key, &mut out, 1.0).unwrap() {
            assert_eq!(&out[..n], &value_of(&key)[..], "wrong value for {key:?}");
            found += 1;
        }
    }
    assert!(found <= CAP as usize);
    let last = [9u8, 0xee];
    assert!(
        matches!(store.get(&last, &mut out, 1.0).unwrap(), Get::Hit(_)),
        "last set lost"
    );
    store.table().validate().unwrap();
});
