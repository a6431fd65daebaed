//! Rough timings of the shared store without FFI:
//! `cargo run --release --example shm_timing` (in `rust/`).
use std::time::Instant;

use warp_cache::shm::{Get, ShmStore};

fn main() {
    let dir = std::env::temp_dir().join(format!("warp-shm-timing-{}", std::process::id()));
    let path = dir.join("timing.warp");
    let s = ShmStore::open(&path, 1024, 64, 4096, 0.0).expect("open the timing cache");
    let mut out = vec![0u8; 4096];
    for size in [16usize, 100, 4096] {
        let v = vec![7u8; size];
        for k in 0..512u32 {
            s.set(&k.to_le_bytes(), &v, 0.0).expect("set");
        }
        let n = 200_000u32;
        let t = Instant::now();
        for i in 0..n {
            let k = (i % 512).to_le_bytes();
            assert!(matches!(
                s.get(&k, &mut out, 0.0).expect("get"),
                Get::Hit(_)
            ));
        }
        let hit = t.elapsed() / n;
        let t = Instant::now();
        for i in 0..n {
            s.set(&(i % 512).to_le_bytes(), &v, 0.0).expect("set");
        }
        let set = t.elapsed() / n;
        let t = Instant::now();
        for i in 0..n {
            s.get(&(i + 1000).to_le_bytes(), &mut out, 0.0)
                .expect("get");
        }
        let miss = t.elapsed() / n;
        println!("value {size:>5} B: get hit {hit:?}, get miss {miss:?}, set (replace) {set:?}");
    }
    // Inserts of new keys without eviction: rounds of 1000 into a cleared store (the
    // clear, one per round, is included).
    let t = Instant::now();
    for _ in 0..100 {
        s.clear().expect("clear");
        for i in 0..1000u32 {
            s.set(&(i + 10_000).to_le_bytes(), b"v", 0.0).expect("set");
        }
    }
    println!("set (insert): {:?}", t.elapsed() / 100_000);
    let t = Instant::now();
    for i in 0..100_000u32 {
        s.set(&(i + 10_000).to_le_bytes(), b"v", 0.0).expect("set");
    }
    println!("set with eviction: {:?}", t.elapsed() / 100_000);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}
