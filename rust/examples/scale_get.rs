//! Hits on a full store of `n` entries, keys drawn uniformly, without FFI, for the scale
//! section of `bench/RESULTS.md`: how the Rust side of a hit grows with the store.
//!
//! `cargo run --release --example scale_get -- <mem|shm> <entries> [gets]` (in `rust/`)
//! prints ns per hit. Under callgrind, only [`gets`] is collected, so the cache
//! simulation counts the misses of the hits alone (not of the fill):
//!
//! ```sh
//! valgrind --tool=callgrind --cache-sim=yes --collect-atstart=no \
//!   --toggle-collect='scale_get::gets*' target/release/examples/scale_get mem 4000000 100000
//! callgrind_annotate callgrind.out.<pid>   # D1mr and DLmr: L1 and last-level read misses
//! ```
use std::hint::black_box;
use std::time::Instant;

use warp_cache::shm::{Get, ShmStore};
use warp_cache::sieve::{Lookup, Policy, SieveStore};

/// The key of int `i`, 9 bytes like the key codec's (a tag, then the f64).
fn key(i: u32) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = 3;
    k[1..].copy_from_slice(&f64::from(i).to_le_bytes());
    k
}

/// Uniform draws in `0..n` (xorshift64*), the same on every run.
fn sample(n: u32, len: usize) -> Vec<u32> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            ((x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) % u64::from(n)) as u32
        })
        .collect()
}

#[inline(never)]
fn gets(lookup: &mut dyn FnMut(&[u8]) -> bool, keys: &[u32]) -> usize {
    keys.iter().filter(|&&i| lookup(black_box(&key(i)))).count()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kind = args.get(1).map_or("mem", String::as_str);
    let n: u32 = args.get(2).map_or(1000, |a| a.parse().expect("entries"));
    let len: usize = args.get(3).map_or(2_000_000, |a| a.parse().expect("gets"));
    let keys = sample(n, len);
    let (hits, elapsed) = match kind {
        "mem" => {
            let mut s = SieveStore::new(n as usize, None, Policy::Sieve);
            for i in 0..n {
                s.insert(&key(i), 0.0);
            }
            let t = Instant::now();
            let hits = gets(&mut |k| matches!(s.get(k, 0.0), Lookup::Hit(_)), &keys);
            (hits, t.elapsed())
        }
        "shm" => {
            let dir = std::env::temp_dir().join(format!("warp-scale-get-{}", std::process::id()));
            let s = ShmStore::open(&dir.join("scale.warp"), n, 16, 16, 0.0).expect("open");
            for i in 0..n {
                s.set(&key(i), &i.to_le_bytes(), 0.0).expect("set");
            }
            let mut out = [0u8; 16];
            let t = Instant::now();
            let hits = gets(
                &mut |k| matches!(s.get(k, &mut out, 0.0), Ok(Get::Hit(_))),
                &keys,
            );
            let elapsed = t.elapsed();
            drop(s);
            let _ = std::fs::remove_dir_all(&dir);
            (hits, elapsed)
        }
        other => panic!("unknown store {other}: mem or shm"),
    };
    assert_eq!(hits, keys.len(), "every get must hit");
    println!(
        "{kind} {n} entries: {:.1} ns per hit",
        elapsed.as_nanos() as f64 / keys.len() as f64
    );
}
