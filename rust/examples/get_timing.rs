//! Times the in-process store's hit path without FFI: `cargo run --release --example get_timing`.
use std::time::Instant;
use warp_cache::abi::NO_TTL;
use warp_cache::ffi::mem::{warp_mem_get, warp_mem_new, warp_mem_set};
use warp_cache::sieve::{Policy, SieveStore};

fn main() {
    let key = [17u8, 2, 5, 5, 0, 0, 0, 5, 7, 0, 0, 0];
    let n = 20_000_000u32;
    let mut s = SieveStore::new(1024, None, Policy::Sieve);
    s.insert(&key, 0.0);
    let t = Instant::now();
    let mut acc = 0u64;
    for _ in 0..n {
        if let warp_cache::sieve::Lookup::Hit(x) = s.get(std::hint::black_box(&key), 0.0) {
            acc += u64::from(x);
        }
    }
    println!(
        "SieveStore::get hit: {:.1} ns",
        t.elapsed().as_nanos() as f64 / f64::from(n)
    );
    let h = warp_mem_new(1024, NO_TTL, 0, 0.0);
    // SAFETY: `h` is live and `key` is valid for its length.
    unsafe {
        warp_mem_set(h, key.as_ptr(), key.len() as u32, 0.0, NO_TTL);
        let t = Instant::now();
        for _ in 0..n {
            acc +=
                warp_mem_get(h, std::hint::black_box(key.as_ptr()), key.len() as u32, 0.0) as u64;
        }
        println!(
            "warp_mem_get hit (catch_unwind, no lock): {:.1} ns",
            t.elapsed().as_nanos() as f64 / f64::from(n)
        );
        let t = Instant::now();
        for _ in 0..n {
            acc += warp_mem_get(
                h,
                std::hint::black_box(key.as_ptr()),
                key.len() as u32,
                f64::NAN,
            ) as u64;
        }
        println!(
            "warp_mem_get hit, NaN clock: {:.1} ns",
            t.elapsed().as_nanos() as f64 / f64::from(n)
        );
    }
    // Miss + insert into a full store of 10,000 entries (each insert evicts), keys as the
    // key codec writes two int32 arguments.
    let m = 2_000_000u32;
    let h = warp_mem_new(10_000, NO_TTL, 0, 0.0);
    let mut k = [17u8, 2, 5, 0, 0, 0, 0, 5, 0, 0, 0, 0];
    // SAFETY: `h` is live and `k` is valid for its length.
    unsafe {
        for i in 0..10_000u32 {
            k[3..7].copy_from_slice(&i.to_le_bytes());
            warp_mem_set(h, k.as_ptr(), k.len() as u32, 0.0, NO_TTL);
        }
        let t = Instant::now();
        for i in 0..m {
            k[3..7].copy_from_slice(&i.to_le_bytes());
            k[8..12].copy_from_slice(&1u32.to_le_bytes());
            acc += warp_mem_get(h, k.as_ptr(), k.len() as u32, 0.0) as u64;
            acc += warp_mem_set(h, k.as_ptr(), k.len() as u32, 0.0, NO_TTL) as u64;
        }
        println!(
            "warp_mem_get miss + warp_mem_set (evicting), 10,000 entries: {:.1} ns",
            t.elapsed().as_nanos() as f64 / f64::from(m)
        );
    }
    std::hint::black_box(acc);
}
