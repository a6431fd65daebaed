//! A writer that takes a shared cache's write lock and keeps it, for the tests of
//! `tests/shared_lock_test.ts` that stop (`SIGSTOP`) or kill it while it holds the lock:
//! `shm_hold <path> <capacity> <max_key_size> <max_value_size>` opens the file with these
//! parameters (those of the Deno cache under test, so that the file is not recreated),
//! takes the lock, makes the sequence counter odd as a writer in the middle of an update
//! does, prints `held` and waits until it is killed.
use std::io::Write;
use std::sync::atomic::Ordering;

use warp_cache::shm::ShmStore;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, path, capacity, max_key_size, max_value_size] = &args[..] else {
        eprintln!("usage: shm_hold <path> <capacity> <max_key_size> <max_value_size>");
        std::process::exit(2);
    };
    let number = |s: &str| -> u32 { s.parse().expect("a size is a positive integer") };
    let store = ShmStore::open(
        std::path::Path::new(path),
        number(capacity),
        number(max_key_size),
        number(max_value_size),
        0.0,
    )
    .expect("open the shared cache");
    let _held = store.hold_lock().expect("take the write lock");
    store.table().header().seq.fetch_add(1, Ordering::Relaxed);
    println!("held");
    std::io::stdout().flush().expect("write to stdout");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
