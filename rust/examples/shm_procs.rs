//! Shared hits from 1 and 2 processes, without FFI: whether processes that read one file
//! slow each other down (a cache line written on every hit, in one of them and read or
//! written by the other), told apart from what the machine allows by the same runs on
//! two files of the same content, one per process (nothing shared).
//!
//! `cargo run --release --example shm_procs [ms] [rounds]` (in `rust/`): each round runs,
//! interleaved, 1 process, 2 processes on one file, and 2 processes on two files, each
//! process hitting the same 1,024 keys in a loop for `ms` (300) ms after a common start;
//! prints the median over `rounds` (7) of each configuration's calls per second and the
//! ratios 2/1 (one file) and 2/1 (two files). Contention shows as the first ratio below
//! the second.
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use warp_cache::shm::{Get, ShmStore};

const KEYS: u64 = 1024;

fn key(i: u64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&i.to_le_bytes());
    k
}

fn open(path: &str) -> ShmStore {
    let s = ShmStore::open(std::path::Path::new(path), 4096, 16, 16, 0.0).expect("open");
    for i in 0..KEYS {
        s.set(&key(i), &[7u8; 12], 1.0).expect("set");
    }
    s
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A child: hits in a loop from `start` (Unix ms) for `ms`; prints its calls per second.
fn child(path: &str, start: u64, ms: u64) {
    let s = open(path);
    let mut out = [0u8; 16];
    for i in 0..KEYS * 20 {
        s.get(&key(i % KEYS), &mut out, f64::NAN).expect("get");
    }
    while now_ms() < start {
        std::hint::spin_loop();
    }
    let t = Instant::now();
    let end = t + Duration::from_millis(ms);
    let mut n = 0u64;
    let mut i = 0u64;
    while Instant::now() < end {
        for _ in 0..1000 {
            let r = s.get(&key(i), &mut out, f64::NAN).expect("get");
            assert!(matches!(r, Get::Hit(_)));
            i = (i + 1) % KEYS;
        }
        n += 1000;
    }
    println!("{}", n as f64 / t.elapsed().as_secs_f64());
}

fn run_parallel(paths: &[String], ms: u64) -> f64 {
    let exe = std::env::current_exe().expect("exe");
    let start = now_ms() + 300;
    let kids: Vec<_> = paths
        .iter()
        .map(|p| {
            Command::new(&exe)
                .args(["--child", p, &start.to_string(), &ms.to_string()])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    kids.into_iter()
        .map(|k| {
            let o = k.wait_with_output().expect("child");
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .expect("calls per second")
        })
        .sum()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child(&args[2], args[3].parse().unwrap(), args[4].parse().unwrap());
        return;
    }
    let ms: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(300);
    let rounds: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(7);
    let dir = std::env::temp_dir().join(format!("warp-shm-procs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let a = dir.join("a.warp").display().to_string();
    let b = dir.join("b.warp").display().to_string();
    let (mut one, mut same, mut apart) = (vec![], vec![], vec![]);
    for _ in 0..rounds {
        one.push(run_parallel(std::slice::from_ref(&a), ms));
        same.push(run_parallel(&[a.clone(), a.clone()], ms));
        apart.push(run_parallel(&[a.clone(), b.clone()], ms));
    }
    let (one, same, apart) = (median(one), median(same), median(apart));
    println!(
        "1 process {:.2} M/s; 2 on one file {:.2} M/s ({:.2}x); 2 on two files {:.2} M/s ({:.2}x)",
        one / 1e6,
        same / 1e6,
        same / one,
        apart / 1e6,
        apart / one
    );
    let _ = std::fs::remove_dir_all(&dir);
}
