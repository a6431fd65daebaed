//! Arbitrary sequences of set / get / delete / clear with values of mixed sizes (0 B to
//! 3 KB: in the slot up to 32 bytes of key and value, else chains of 1 to 13 chunks) on a
//! store whose byte budget (16 chunks) binds before its entry count, checked against a
//! model (a map of the last value set per key): a hit returns exactly the model's value,
//! the bytes held never exceed the budget, an entry larger than the budget is skipped, and
//! the structure (chains, free chunk list, counts) validates after every write.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use warp_cache::shm::layout::{CHUNK_PAYLOAD, CHUNK_SIZE, INLINE_BYTES, entry_chunks};
use warp_cache::shm::{Get, Set, ShmStore};

const CAP: u32 = 8;
const MAX_BYTES: u64 = 16 * CHUNK_SIZE as u64;
const MAX_VALUE: u32 = 4096;

fuzz_target!(|data: &[u8]| {
    let dir = std::path::PathBuf::from(format!("/dev/shm/warp-fuzz-sizes-{}", std::process::id()));
    let _ = std::fs::create_dir(&dir);
    let path = dir.join("f");
    let _ = std::fs::remove_file(&path);
    let store = ShmStore::open_sized(&path, CAP, 4, MAX_VALUE, MAX_BYTES, 0.0).unwrap();
    let mut model: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut out = vec![0u8; MAX_VALUE as usize];
    let mut it = data.chunks(4);
    while let Some(op) = it.next() {
        let &[code, k, v, size] = op else { break };
        let key = vec![k % 12; 1 + (k as usize >> 6)];
        match code % 8 {
            0..=3 => {
                // Sizes around chunk boundaries and the slot's room as often as anywhere else.
                let len = match code >> 6 {
                    0 => size as usize,
                    1 => (size as usize % 14) * CHUNK_PAYLOAD + (v as usize % 3),
                    2 => INLINE_BYTES + 2 - (size as usize % 5),
                    _ => (size as usize) * 12,
                }
                .saturating_sub(key.len() * usize::from(code & 8 != 0));
                let value = vec![v; len];
                let fits = entry_chunks((key.len() + len) as u64) * CHUNK_SIZE as u64 <= MAX_BYTES;
                match store.set(&key, &value, 0.0).unwrap() {
                    Set::Stored => {
                        assert!(fits);
                        model.insert(key, value);
                    }
                    Set::Skipped => assert!(!fits),
                    Set::Busy | Set::Lost => {
                        unreachable!("one process, no writer that keeps the lock, no flight")
                    }
                }
                store.table().validate().unwrap();
            }
            4..=5 => match store.get(&key, &mut out, 0.0).unwrap() {
                Get::Hit(n) => assert_eq!(Some(&out[..n].to_vec()), model.get(&key)),
                Get::Miss => {}
                Get::TooSmall(_) => unreachable!("the buffer holds the largest value"),
            },
            6 => {
                let was = store.delete(&key).unwrap();
                assert!(!was || model.contains_key(&key));
                model.remove(&key);
                store.table().validate().unwrap();
            }
            _ => {
                store.clear().unwrap();
                model.clear();
            }
        }
        let info = store.info();
        assert!(info.len <= u64::from(CAP));
        assert!(info.bytes <= MAX_BYTES);
    }
});
