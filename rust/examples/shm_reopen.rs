//! Times filling a shared cache file of N small entries against reopening it (the open
//! check of the whole structure): `cargo run --release --example shm_reopen [N...]`
//! (default 10000 100000 200000). Entries are 16-byte keys and 16-byte values.
use std::time::Instant;
use warp_cache::shm::ShmStore;

fn main() {
    let sizes: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000, 200_000]
    } else {
        sizes
    };
    let dir = std::env::temp_dir().join(format!("warp-shm-reopen-{}", std::process::id()));
    for n in sizes {
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("c");
        let s = ShmStore::open(&path, n, 16, 16, 0.0).expect("open");
        let t = Instant::now();
        for i in 0..u64::from(n) {
            let k = i.to_le_bytes();
            s.set(&[k, k].concat(), &[k, k].concat(), 0.0).expect("set");
        }
        let fill = t.elapsed();
        drop(s);
        let t = Instant::now();
        let s = ShmStore::open(&path, n, 16, 16, 0.0).expect("reopen");
        let reopen = t.elapsed();
        assert_eq!(s.len(), n as usize);
        println!(
            "{n} entries: fill {:.1} ms, reopen {:.1} ms (ratio {:.2})",
            fill.as_secs_f64() * 1e3,
            reopen.as_secs_f64() * 1e3,
            reopen.as_secs_f64() / fill.as_secs_f64()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
