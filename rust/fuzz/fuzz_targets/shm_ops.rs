//! Arbitrary sequences of set / get / delete / clear on a small shared store, checked
//! against a model (a map of the last value set per key). The store may evict (it is
//! SIEVE-bounded), so a miss is allowed for a key the model holds, but a hit must return
//! exactly the model's value, the length never exceeds the capacity, and the structure
//! validates after every write.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use warp_cache::shm::{Get, Set, ShmStore};

const CAP: u32 = 4;

fuzz_target!(|data: &[u8]| {
    let dir = std::path::PathBuf::from(format!("/dev/shm/warp-fuzz-ops-{}", std::process::id()));
    let _ = std::fs::create_dir(&dir);
    let path = dir.join("f");
    let _ = std::fs::remove_file(&path);
    let store = ShmStore::open(&path, CAP, 4, 16, 0.0).unwrap();
    let mut model: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut out = [0u8; 16];
    let mut it = data.chunks(3);
    while let Some(op) = it.next() {
        let &[code, k, v] = op else { break };
        let key = vec![k % 8; 1 + (k as usize >> 6)];
        match code % 8 {
            0..=3 => {
                let value = vec![v; (code as usize >> 3) % 20];
                match store.set(&key, &value, 0.0).unwrap() {
                    Set::Stored => {
                        model.insert(key, value);
                    }
                    Set::Skipped => assert!(value.len() > 16),
                    Set::Busy | Set::Lost => {
                        unreachable!("one process, no writer that keeps the lock, no flight")
                    }
                }
                store.table().validate().unwrap();
            }
            4..=5 => match store.get(&key, &mut out, 0.0).unwrap() {
                Get::Hit(n) => assert_eq!(Some(&out[..n].to_vec()), model.get(&key)),
                Get::Miss => {}
                Get::TooSmall(_) => unreachable!("values are at most 16 bytes"),
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
        assert!(store.len() <= CAP as usize);
    }
});
