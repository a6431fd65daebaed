//! Tests of format 6: per-entry TTL, the stale window, the stale-hit and refresh counters,
//! and the flight table (see `flight.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::flight::{self, Claim, End};
use super::layout::{FLIGHT_PROBES, FLIGHT_RECORDS};
use super::test_dir::TempDir;
use super::*;

fn read(s: &ShmStore, key: &[u8], now: f64, mode: Mode) -> Option<Vec<u8>> {
    let mut out = vec![0u8; 64];
    let r = match mode {
        Mode::Get => s.get(key, &mut out, now),
        Mode::Peek => s.peek(key, &mut out, now),
        Mode::PeekStale => s.peek_stale(key, &mut out, now),
    };
    match r.unwrap() {
        Get::Hit(n) => Some(out[..n].to_vec()),
        Get::Miss => None,
        Get::TooSmall(n) => panic!("buffer too small: {n}"),
    }
}

fn get(s: &ShmStore, key: &[u8], now: f64) -> Option<Vec<u8>> {
    read(s, key, now, Mode::Get)
}

/// The answer of the locked path (a reader that falls back to the lock).
fn get_locked(s: &ShmStore, key: &[u8], now: f64, mode: Mode) -> Get {
    let mut out = [0u8; 64];
    let hash = s.table().hash(key);
    s.get_locked(key, hash, &mut out, now, mode).unwrap()
}

fn hits_misses(s: &ShmStore) -> (u64, u64) {
    let i = s.info();
    (i.hits, i.misses)
}

#[test]
fn an_entrys_own_ttl_is_honoured_by_every_handle_even_one_without_ttl() {
    let d = TempDir::new();
    let p = d.file("c");
    let none = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    let long = ShmStore::open(&p, 8, 16, 16, 1e9).unwrap();
    none.set_with_ttl(b"k", b"v", 1000.0, 50.0).unwrap();
    for s in [&none, &long] {
        assert_eq!(get(s, b"k", 1049.0).as_deref(), Some(&b"v"[..]));
        assert_eq!(get(s, b"k", 1050.0), None, "expired at its own TTL");
        assert_eq!(read(s, b"k", 1050.0, Mode::Peek), None);
        assert_eq!(get_locked(s, b"k", 1050.0, Mode::Get), Get::Miss);
    }
    assert_eq!(
        none.len(),
        1,
        "left in the file, like an entry expired by a handle's TTL"
    );
    // Infinity: never expires, whatever the handle's TTL; hits do not extend a TTL.
    let short = ShmStore::open(&p, 8, 16, 16, 10.0).unwrap();
    short.set_with_ttl(b"f", b"w", 0.0, f64::INFINITY).unwrap();
    assert_eq!(get(&short, b"f", 1e15).as_deref(), Some(&b"w"[..]));
    short.set_with_ttl(b"h", b"x", 0.0, 100.0).unwrap();
    assert!(get(&short, b"h", 99.0).is_some());
    assert_eq!(
        get(&short, b"h", 100.0),
        None,
        "the hit at 99 did not extend it"
    );
    // A set without a TTL of its own replaces the own TTL: the handle's applies again.
    short.set(b"f", b"w", 0.0).unwrap();
    assert_eq!(get(&short, b"f", 10.0), None);
    assert!(get(&none, b"f", 1e15).is_some());
}

#[test]
fn the_own_ttl_is_covered_by_the_checksum() {
    let d = TempDir::new();
    let s = ShmStore::open(&d.file("c"), 8, 16, 16, 0.0).unwrap();
    s.set_with_ttl(b"k", b"v", 0.0, 50.0).unwrap();
    let slot = s
        .table()
        .find(b"k", s.table().hash(b"k"))
        .unwrap()
        .unwrap()
        .1;
    let h = s.table().slot(slot).unwrap().h;
    h.own_ttl.store(f64::INFINITY.to_bits(), Ordering::Relaxed);
    assert_eq!(get(&s, b"k", 1e9), None, "a changed TTL fails the checksum");
    assert_eq!(s.len(), 0, "and the entry is dropped");
}

#[test]
fn the_stale_window_keeps_entries_for_peek_stale_and_misses_for_get() {
    let d = TempDir::new();
    let p = d.file("c");
    let mut s = ShmStore::open(&p, 8, 16, 16, 100.0).unwrap();
    s.set_stale(50.0);
    s.set(b"k", b"v", 1000.0).unwrap();
    // Fresh while age < 100.
    assert!(get(&s, b"k", 1099.0).is_some());
    assert_eq!(hits_misses(&s), (1, 0));
    // Stale while 100 <= age < 150: get misses (counted) and keeps it; peek misses;
    // peek_stale returns it and counts nothing.
    for now in [1100.0, 1149.0] {
        assert_eq!(get(&s, b"k", now), None, "{now}");
        assert_eq!(read(&s, b"k", now, Mode::Peek), None, "{now}");
        assert_eq!(
            read(&s, b"k", now, Mode::PeekStale).as_deref(),
            Some(&b"v"[..])
        );
        assert_eq!(get_locked(&s, b"k", now, Mode::PeekStale), Get::Hit(1));
        assert_eq!(get_locked(&s, b"k", now, Mode::Get), Get::Miss);
    }
    assert_eq!(s.len(), 1);
    // Gone at age 150.
    assert_eq!(read(&s, b"k", 1150.0, Mode::PeekStale), None);
    assert_eq!(get_locked(&s, b"k", 1150.0, Mode::PeekStale), Get::Miss);
    assert_eq!(get(&s, b"k", 1150.0), None);
    // Counted: 1 hit; 2 + 2 misses (lock-free and locked gets) + 1.
    assert_eq!(hits_misses(&s), (1, 5));
    // The window applies to an own TTL too, and is this handle's: another has none.
    s.set_with_ttl(b"o", b"w", 0.0, 10.0).unwrap();
    assert!(read(&s, b"o", 59.0, Mode::PeekStale).is_some());
    assert!(read(&s, b"o", 60.0, Mode::PeekStale).is_none());
    let other = ShmStore::open(&p, 8, 16, 16, 100.0).unwrap();
    assert!(read(&other, b"o", 10.0, Mode::PeekStale).is_none());
    // No TTL at all: always fresh.
    let mut never = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    never.set_stale(50.0);
    assert!(get(&never, b"k", 1e12).is_some());
}

#[test]
fn stale_hits_and_refreshes_are_exact_totals_over_handles_and_reset_by_clear() {
    let d = TempDir::new();
    let p = d.file("c");
    let a = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    let b = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    assert_ne!(a.stripe_index(), b.stripe_index(), "two stripes");
    assert_eq!(get(&a, b"x", 0.0), None);
    assert_eq!(get(&b, b"x", 0.0), None);
    a.count_stale_hit(false);
    b.count_stale_hit(false);
    // A joined call already counted as a hit: a stale hit only.
    b.count_stale_hit(true);
    b.count_refresh();
    a.count_refresh();
    a.count_refresh();
    let i = b.info();
    assert_eq!((i.hits, i.misses, i.stale_hits, i.refreshes), (2, 0, 3, 3));
    a.clear().unwrap();
    let i = a.info();
    assert_eq!((i.hits, i.misses, i.stale_hits, i.refreshes), (0, 0, 0, 0));
    // Garbage in the new counters is reset like the others.
    a.table()
        .header()
        .stripe(1)
        .refreshes
        .store(u64::MAX, Ordering::Relaxed);
    assert!(!a.table().counters_plausible());
    assert_eq!(a.info().refreshes, 0);
}

#[test]
fn a_claim_makes_one_owner_others_wait_and_a_release_ends_the_wait() {
    let d = TempDir::new();
    let p = d.file("c");
    let a = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    let b = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    assert_eq!(a.claim(b"k"), Claim::Owner);
    assert!(a.owns(b"k") && !b.owns(b"k"));
    assert_eq!(b.claim(b"k"), Claim::Wait);
    assert_eq!(a.claim(b"k"), Claim::Wait, "its own flight: wait too");
    assert_eq!(b.claim(b"other"), Claim::Owner, "another key");
    assert_eq!(b.wait(b"k", 0.0), End::Timeout);
    assert_eq!(b.wait(b"none", 0.0), End::Done, "no flight: done at once");
    b.release(b"k");
    assert!(a.owns(b"k"), "only the owner releases");
    // A waiter on another thread sleeps until the release wakes it.
    let w = b.waiter(b"k");
    let t = std::thread::spawn(move || w.wait(None));
    std::thread::sleep(Duration::from_millis(30));
    a.release(b"k");
    a.release(b"k"); // idempotent
    assert_eq!(t.join().unwrap(), End::Done);
    assert!(!a.owns(b"k"));
    assert_eq!(b.claim(b"k"), Claim::Owner, "free again");
    assert_eq!(a.flights().count(), 2);
}

#[test]
fn a_dead_owners_flight_is_taken_over_by_a_waiter_or_a_claimer() {
    let d = TempDir::new();
    let s = ShmStore::open(&d.file("c"), 8, 16, 16, 0.0).unwrap();
    let hash = s.table().hash(b"k");
    let home = (hash >> 40) as usize % FLIGHT_RECORDS;
    let rec = &s.table().flights()[home];
    flight::set_owner(rec, hash, lock::dead_word());
    assert!(!s.owns(b"k"));
    assert_eq!(s.wait(b"k", f64::INFINITY), End::Owner, "taken over");
    assert!(s.owns(b"k"));
    s.release(b"k");
    assert_eq!(s.flights().count(), 0);
    // Garbage owner words name nobody: taken over by a claim.
    flight::set_owner(rec, hash, 0x1234);
    assert_eq!(s.claim(b"k"), Claim::Owner);
    assert!(s.owns(b"k"));
    // A closed handle's flight: its liveness id is gone, and closing ended it anyway.
    let other = ShmStore::open(&d.file("c"), 8, 16, 16, 0.0).unwrap();
    assert_eq!(other.claim(b"j"), Claim::Owner);
    let w = s.waiter(b"j");
    let t = std::thread::spawn(move || w.wait(None));
    std::thread::sleep(Duration::from_millis(30));
    drop(other);
    assert_eq!(t.join().unwrap(), End::Done, "closing released it");
}

#[test]
fn a_killed_owner_is_taken_over_within_the_liveness_period() {
    // The owner's liveness id is released without the flight being ended: what a SIGKILL
    // does (a handle's drop would end its flights).
    let d = TempDir::new();
    let p = d.file("c");
    let s = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    let f = std::fs::File::options()
        .read(true)
        .write(true)
        .open(&p)
        .unwrap();
    let ghost = lock::Owner::open(f, Arc::default()).unwrap();
    let hash = s.table().hash(b"k");
    assert_eq!(s.flights().claim(hash, &ghost), Claim::Owner);
    assert_eq!(s.claim(b"k"), Claim::Wait, "alive");
    let w = s.waiter(b"k");
    let t = std::thread::spawn(move || {
        let start = Instant::now();
        (w.wait(None), start.elapsed())
    });
    std::thread::sleep(Duration::from_millis(20));
    drop(ghost);
    let (end, took) = t.join().unwrap();
    assert_eq!(end, End::Owner);
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert!(s.owns(b"k"));
}

#[test]
fn delete_and_clear_end_the_flights_they_concern() {
    let d = TempDir::new();
    let p = d.file("c");
    let a = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    let b = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    for k in [&b"k1"[..], b"k2", b"k3"] {
        assert_eq!(a.claim(k), Claim::Owner);
    }
    let w = b.waiter(b"k1");
    let t = std::thread::spawn(move || w.wait(None));
    std::thread::sleep(Duration::from_millis(20));
    assert!(!b.delete(b"k1").unwrap(), "no entry, but its flight ends");
    assert_eq!(t.join().unwrap(), End::Done);
    assert!(!a.owns(b"k1") && a.owns(b"k2") && a.owns(b"k3"));
    let w = b.waiter(b"k2");
    let t = std::thread::spawn(move || w.wait(Some(Instant::now() + Duration::from_secs(60))));
    std::thread::sleep(Duration::from_millis(20));
    b.clear().unwrap();
    assert_eq!(t.join().unwrap(), End::Done);
    assert!(!a.owns(b"k2") && !a.owns(b"k3"));
    assert_eq!(a.flights().count(), 0);
}

#[test]
fn a_full_probe_window_gives_none() {
    let d = TempDir::new();
    let s = ShmStore::open(&d.file("c"), 8, 16, 16, 0.0).unwrap();
    // FLIGHT_PROBES + 1 keys with one home record.
    let home = |k: &[u8]| (s.table().hash(k) >> 40) as usize % FLIGHT_RECORDS;
    let target = home(b"0");
    let keys: Vec<Vec<u8>> = (0u32..)
        .map(|i| i.to_string().into_bytes())
        .filter(|k| home(k) == target)
        .take(FLIGHT_PROBES + 1)
        .collect();
    for k in &keys[..FLIGHT_PROBES] {
        assert_eq!(s.claim(k), Claim::Owner);
    }
    let last = &keys[FLIGHT_PROBES];
    assert_eq!(s.claim(last), Claim::None);
    assert!(!s.owns(last));
    s.release(&keys[3]);
    assert_eq!(s.claim(last), Claim::Owner, "a released record is reused");
    assert_eq!(s.claim(&keys[3]), Claim::None);
}

#[test]
fn closing_a_handle_ends_its_waits() {
    let d = TempDir::new();
    let p = d.file("c");
    let a = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    let b = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    assert_eq!(a.claim(b"k"), Claim::Owner);
    let w = b.waiter(b"k");
    let t = std::thread::spawn(move || w.wait(None));
    std::thread::sleep(Duration::from_millis(20));
    drop(b);
    assert_eq!(
        t.join().unwrap(),
        End::Timeout,
        "the wait of a closed handle ends"
    );
    assert!(a.owns(b"k"), "another handle's flight stays");
}
