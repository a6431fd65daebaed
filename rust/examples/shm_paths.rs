//! The shared store's hot paths without FFI, for instruction counts under callgrind:
//! `cargo build --release --example shm_paths`, then
//! `valgrind --tool=callgrind target/release/examples/shm_paths <op> <n> [capacity]` with
//! `<op>` one of `hit`, `miss` (a lookup of an absent key), `miss_insert` (the miss path of
//! `cache()`: a lookup that misses, the flight claim, the insert that evicts, the release)
//! `miss_claim` (the same miss path in two calls: `get_or_claim`, `set_owned`), and `<n>`
//! the operations timed; the difference of two runs (`n` and 0) divided by `n`
//! is the cost of one. Without valgrind it prints ns per operation.
use std::time::Instant;

use warp_cache::shm::flight::Claim;
use warp_cache::shm::{Fetch, Get, Set, ShmStore};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let op = args.get(1).map_or("hit", String::as_str).to_string();
    let n: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let capacity: u32 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let dir = std::env::temp_dir().join(format!("warp-shm-paths-{}", std::process::id()));
    let path = dir.join("paths.warp");
    let s = ShmStore::open(&path, capacity, 16, 16, 0.0).expect("open the cache");
    let mut out = [0u8; 16];
    let value = [7u8; 12];
    // Full: `capacity` keys of 12 bytes.
    let key = |i: u64| {
        let mut k = [0u8; 12];
        k[..8].copy_from_slice(&i.to_le_bytes());
        k
    };
    for i in 0..u64::from(capacity) {
        s.set(&key(i), &value, 1.0).expect("set");
    }
    let hot = u64::from(capacity.min(1024));
    for i in 0..hot {
        s.get(&key(i), &mut out, 1.0).expect("get");
    }
    let t = Instant::now();
    let mut next = u64::from(capacity);
    for i in 0..n {
        match op.as_str() {
            "hit" => {
                let r = s.get(&key(i % hot), &mut out, f64::NAN).expect("get");
                assert!(matches!(r, Get::Hit(_)));
            }
            "miss" => {
                let r = s.get(&key(next + i), &mut out, f64::NAN).expect("get");
                assert!(matches!(r, Get::Miss));
            }
            "miss_insert" => {
                let k = key(next);
                next += 1;
                let r = s.get(&k, &mut out, f64::NAN).expect("get");
                assert!(matches!(r, Get::Miss));
                let _ = s.claim(&k, false);
                let _ = s.peek(&k, &mut out, f64::NAN);
                assert!(s.owns(&k));
                s.set(&k, &value, warp_cache::clock::wall_ms())
                    .expect("set");
                s.release(&k);
            }
            "miss_claim" => {
                // The same in two calls: a lookup that claims, a set that releases.
                let k = key(next);
                next += 1;
                let r = s.get_or_claim(&k, &mut out, f64::NAN).expect("get");
                assert!(matches!(r, Fetch::Miss(Claim::Owner)), "{r:?}");
                let r = s.set_owned(&k, &value, warp_cache::clock::wall_ms(), 0.0);
                assert_eq!(r.expect("set"), Set::Stored);
            }
            other => panic!("unknown op {other}"),
        }
    }
    let dt = t.elapsed();
    if n > 0 {
        println!(
            "{op}: {:.1} ns per operation",
            dt.as_nanos() as f64 / n as f64
        );
    }
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}
