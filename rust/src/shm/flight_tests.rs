//! Tests of formats 6 and 7: per-entry TTL, the stale window, the stale-hit and refresh
//! counters, and the flight table (see `flight.rs`) with its dispatcher (`dispatch.rs`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::dispatch::{self, Dispatcher};
use super::flight::{self, Claim, End};
use super::layout::{self, FLIGHT_PROBES, FLIGHT_RECORDS};
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

/// A handle of another process on the file at `p`: an owner with a process state
/// ([`lock::Local`]) of its own, as a real other process has. Dropping it without ending
/// its flights is what a SIGKILL does.
fn other_process(p: &Path) -> lock::Owner {
    let f = std::fs::File::options()
        .read(true)
        .write(true)
        .open(p)
        .unwrap();
    lock::Owner::open(f, Arc::default()).unwrap()
}

/// The home record of `key` in `s`'s file.
fn home(s: &ShmStore, key: &[u8]) -> usize {
    (s.table().hash(key) >> 40) as usize % FLIGHT_RECORDS
}

fn hash(s: &ShmStore, key: &[u8]) -> u64 {
    s.table().hash(key)
}

/// `f` on another thread; joined with its time.
fn timed<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<(T, Duration)> {
    std::thread::spawn(move || {
        let t = Instant::now();
        let r = f();
        (r, t.elapsed())
    })
}

#[test]
fn a_claim_makes_one_owner_other_processes_wait_and_a_release_ends_the_wait() {
    let d = TempDir::new();
    let p = d.file("c");
    let a = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    let other = other_process(&p);
    let k = hash(&a, b"k");
    assert_eq!(a.flights().claim(k, &other, false), Claim::Owner);
    assert!(a.flights().owns(k, &other) && !a.owns(b"k"));
    assert_eq!(
        a.claim(b"k", false),
        Claim::Wait,
        "another live process owns it"
    );
    assert_eq!(a.claim(b"other", false), Claim::Owner, "another key");
    assert_eq!(a.wait_sync(b"k", 0.0, false), End::Timeout);
    assert_eq!(
        a.wait_sync(b"none", 0.0, false),
        End::Done,
        "no flight: done at once"
    );
    a.release(b"k");
    assert!(a.flights().owns(k, &other), "only the owner releases");
    // A waiter on another thread sleeps until the release wakes it.
    let mut w = a.waiter(b"k");
    let t = timed(move || w.wait_sync(None, false));
    std::thread::sleep(Duration::from_millis(30));
    a.flights().release(k, &other);
    a.flights().release(k, &other); // idempotent
    assert_eq!(t.join().unwrap().0, End::Done);
    assert!(!a.flights().owns(k, &other));
    assert_eq!(a.claim(b"k", false), Claim::Owner, "free again");
    assert_eq!(a.flights().count(), 2);
}

/// Issue 4 of "No hang, no stall, no leak across processes": two caches of one name in
/// one process (two handles): the one that computes asynchronously owns the flight; the
/// synchronous one waited in `waitSync`, blocking the very thread the owner needed.
#[test]
fn a_flight_of_this_process_is_local_and_a_synchronous_wait_never_blocks_on_it() {
    let d = TempDir::new();
    let p = d.file("c");
    let a = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    let b = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    assert_eq!(a.claim(b"k", true), Claim::Owner);
    assert_eq!(a.claim(b"k", false), Claim::Local, "its own flight");
    assert_eq!(
        b.claim(b"k", false),
        Claim::Local,
        "another handle of this process"
    );
    assert!(a.owns(b"k") && !b.owns(b"k"));
    let t = Instant::now();
    assert_eq!(b.wait_sync(b"k", f64::INFINITY, false), End::Done);
    assert_eq!(b.wait_sync(b"k", f64::INFINITY, true), End::Async);
    assert_eq!(a.wait_sync(b"k", f64::INFINITY, false), End::Done);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "never blocked: {:?}",
        t.elapsed()
    );
    assert!(a.owns(b"k"), "waits took nothing over");
    // An asynchronous wait (the dispatcher) waits for it, without blocking any thread
    // but its own.
    let disp = Dispatcher::default();
    let id = disp.register(b.waiter(b"k"), None).unwrap();
    let ended = std::thread::scope(|sc| {
        let t = sc.spawn(|| disp.next(8));
        std::thread::sleep(Duration::from_millis(30));
        a.release(b"k");
        t.join().unwrap()
    });
    assert_eq!(ended, vec![(id, End::Done)]);
}

/// Issue 1 of "No hang, no stall, no leak across processes": a writer killed while it
/// owned a flight left its liveness id on the record; a new process got that id (the
/// first free one), judged the flight its own (`t == me.tag()`), and waited for itself
/// forever. Fails on format 6 ("left: Wait, right: Owner").
#[test]
fn a_reused_liveness_id_never_waits_for_a_dead_owner() {
    let d = TempDir::new();
    let p = d.file("c");
    let a = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    let ghost = other_process(&p);
    let k = hash(&a, b"k");
    assert_eq!(a.flights().claim(k, &ghost, false), Claim::Owner);
    let dead = ghost.tag();
    drop(ghost); // SIGKILL: the id is released, the flight stays
    assert_eq!(a.flights().count(), 1);
    let b = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    assert_eq!(b.owner.tag(), dead, "the dead owner's id is reused");
    assert_eq!(a.flights().count(), 0, "the new handle ended it at open");
    assert_eq!(b.claim(b"k", false), Claim::Owner);
    assert!(b.owns(b"k"));
    b.release(b"k");
    // A word that names this process's tags but that no live handle issued (garbage, or
    // a flight that the sweep missed) is dead too, for the handle of that tag and for the
    // others of the process; and `owns` compares the whole word, not the tag.
    let rec = &a.table().flights()[home(&a, b"k")];
    for stale in [
        lock::word_of(b.owner.tag(), 999),
        lock::word_of(a.owner.tag(), 999),
    ] {
        flight::set_owner(rec, k, stale);
        assert!(
            !a.owns(b"k") && !b.owns(b"k"),
            "a word nobody issued is nobody's"
        );
        assert_eq!(
            a.wait_sync(b"k", f64::INFINITY, false),
            End::Owner,
            "taken over"
        );
        a.release(b"k");
        flight::set_owner(rec, k, stale);
        assert_eq!(b.claim(b"k", false), Claim::Owner, "taken over");
        b.release(b"k");
    }
    assert_eq!(a.flights().count(), 0);
}

#[test]
fn a_dead_owners_flight_is_taken_over_by_a_waiter_or_a_claimer() {
    let d = TempDir::new();
    let s = ShmStore::open(&d.file("c"), 8, 16, 16, 0.0).unwrap();
    let k = hash(&s, b"k");
    let rec = &s.table().flights()[home(&s, b"k")];
    flight::set_owner(rec, k, lock::dead_word());
    assert!(!s.owns(b"k"));
    assert_eq!(
        s.wait_sync(b"k", f64::INFINITY, false),
        End::Owner,
        "taken over"
    );
    assert!(s.owns(b"k"));
    s.release(b"k");
    assert_eq!(s.flights().count(), 0);
    // Garbage owner words name nobody: taken over by a claim.
    flight::set_owner(rec, k, 0x1234);
    assert_eq!(s.claim(b"k", false), Claim::Owner);
    assert!(s.owns(b"k"));
}

#[test]
fn a_killed_owner_is_taken_over_by_exactly_one_waiter_within_the_liveness_period() {
    // The owner's liveness id is released without the flight being ended: what a SIGKILL
    // does (a handle's drop would end its flights).
    let d = TempDir::new();
    let p = d.file("c");
    let s = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    let t = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    let ghost = other_process(&p);
    let k = hash(&s, b"k");
    assert_eq!(s.flights().claim(k, &ghost, false), Claim::Owner);
    assert_eq!(s.claim(b"k", false), Claim::Wait, "alive");
    let mut w1 = s.waiter(b"k");
    let mut w2 = t.waiter(b"k");
    let t1 = timed(move || w1.wait_sync(None, false));
    let t2 = timed(move || w2.wait_sync(None, false));
    std::thread::sleep(Duration::from_millis(30));
    drop(ghost);
    let (e1, took1) = t1.join().unwrap();
    let (e2, took2) = t2.join().unwrap();
    assert!(
        took1.max(took2) < Duration::from_secs(30),
        "{took1:?} {took2:?}"
    );
    // Exactly one took it over; the other then found it owned by a handle of this
    // process, which a synchronous wait never blocks on.
    let mut ends = [e1, e2];
    ends.sort_by_key(|e| *e == End::Owner);
    assert_eq!(ends, [End::Done, End::Owner]);
    assert!(s.owns(b"k") ^ t.owns(b"k"));
}

/// Issue 6 of "No hang, no stall, no leak across processes": a value set by hand in one
/// process was overwritten by a computation already under way in another. `delete`,
/// `clear` and `end_flight` (`cacheSet`) end the flights they concern, whoever owns them.
#[test]
fn delete_clear_and_end_flight_end_the_flights_they_concern() {
    let d = TempDir::new();
    let p = d.file("c");
    let b = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    let other = other_process(&p);
    for k in [&b"k1"[..], b"k2", b"k3", b"k4"] {
        assert_eq!(b.flights().claim(hash(&b, k), &other, false), Claim::Owner);
    }
    let owns = |k: &[u8]| b.flights().owns(hash(&b, k), &other);
    let mut w = b.waiter(b"k1");
    let t = timed(move || w.wait_sync(None, false));
    std::thread::sleep(Duration::from_millis(20));
    assert!(!b.delete(b"k1").unwrap(), "no entry, but its flight ends");
    assert_eq!(t.join().unwrap().0, End::Done);
    assert!(!owns(b"k1") && owns(b"k2") && owns(b"k3"));
    let mut w = b.waiter(b"k4");
    let t = timed(move || w.wait_sync(None, false));
    std::thread::sleep(Duration::from_millis(20));
    b.end_flight(b"k4");
    assert_eq!(t.join().unwrap().0, End::Done);
    assert!(
        !owns(b"k4") && owns(b"k2"),
        "end_flight ends the key's flight only"
    );
    let mut w = b.waiter(b"k2");
    let t = timed(move || w.wait_sync(Some(Instant::now() + Duration::from_secs(60)), false));
    std::thread::sleep(Duration::from_millis(20));
    b.clear().unwrap();
    assert_eq!(t.join().unwrap().0, End::Done);
    assert!(!owns(b"k2") && !owns(b"k3"));
    assert_eq!(b.flights().count(), 0);
    // The owner's release afterwards ends nothing (it owns nothing), and is idempotent.
    b.flights().release(hash(&b, b"k2"), &other);
}

#[test]
fn a_full_probe_window_gives_none_and_a_dead_owners_record_in_it_serves() {
    let d = TempDir::new();
    let p = d.file("c");
    let s = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    let other = other_process(&p);
    // FLIGHT_PROBES + 1 keys with one home record.
    let target = home(&s, b"0");
    let keys: Vec<Vec<u8>> = (0u32..)
        .map(|i| i.to_string().into_bytes())
        .filter(|k| home(&s, k) == target)
        .take(FLIGHT_PROBES + 1)
        .collect();
    for k in &keys[..FLIGHT_PROBES] {
        assert_eq!(s.flights().claim(hash(&s, k), &other, false), Claim::Owner);
    }
    let last = &keys[FLIGHT_PROBES];
    assert_eq!(s.claim(last, false), Claim::None);
    assert!(!s.owns(last));
    s.flights().release(hash(&s, &keys[3]), &other);
    assert_eq!(
        s.claim(last, false),
        Claim::Owner,
        "a released record is reused"
    );
    assert_eq!(s.claim(&keys[3], false), Claim::None);
    // The other process dies: its records of other keys serve the next claim.
    drop(other);
    assert_eq!(
        s.claim(&keys[3], false),
        Claim::Owner,
        "a dead owner's record serves"
    );
    assert_eq!(
        s.flights().count(),
        FLIGHT_PROBES,
        "one dead flight gave way"
    );
}

/// Issue 7 of "No hang, no stall, no leak across processes": disposing a cache during a
/// cross-process wait rejected with "TimeoutError ... timeout of undefined ms". A wait of
/// a handle that closes ends with `Closed`, and the closed handle's flights end.
#[test]
fn closing_a_handle_ends_its_flights_and_its_waits_with_closed() {
    let d = TempDir::new();
    let p = d.file("c");
    let a = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    let b = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    let other = other_process(&p);
    let k = hash(&a, b"k");
    assert_eq!(a.flights().claim(k, &other, false), Claim::Owner);
    assert_eq!(b.claim(b"mine", false), Claim::Owner);
    // A synchronous wait on another thread, and one in a dispatcher.
    let mut w = b.waiter(b"k");
    let t = timed(move || w.wait_sync(None, false));
    let disp = Arc::new(Dispatcher::default());
    let id = disp.register(b.waiter(b"k"), None).unwrap();
    let d2 = disp.clone();
    let next = timed(move || d2.next(8));
    std::thread::sleep(Duration::from_millis(30));
    drop(b);
    assert_eq!(t.join().unwrap().0, End::Closed);
    assert_eq!(next.join().unwrap().0, vec![(id, End::Closed)]);
    assert!(a.flights().owns(k, &other), "another handle's flight stays");
    assert_eq!(
        a.claim(b"mine", false),
        Claim::Owner,
        "the closed handle's flight ended"
    );
}

/// Issue 3 of "No hang, no stall, no leak across processes": an owner stopped (SIGSTOP)
/// stalled its waiters for as long as it was stopped. A live owner that never ends its
/// flight is waited for exactly as long as asked, synchronously or not.
#[test]
fn a_live_owner_that_never_ends_is_waited_for_exactly_as_long_as_asked() {
    let d = TempDir::new();
    let p = d.file("c");
    let s = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    let stopped = other_process(&p); // alive, never releases
    assert_eq!(
        s.flights().claim(hash(&s, b"k"), &stopped, false),
        Claim::Owner
    );
    for ms in [0.0, 1.0, 80.0, 250.0] {
        let t = Instant::now();
        assert_eq!(s.wait_sync(b"k", ms, false), End::Timeout);
        let took = t.elapsed();
        let asked = Duration::from_secs_f64(ms / 1000.0);
        assert!(
            took >= asked && took < asked + Duration::from_secs(5),
            "{ms}: {took:?}"
        );
        let disp = Dispatcher::default();
        let t = Instant::now();
        let ended = match disp.register(s.waiter(b"k"), deadline_after(ms)) {
            Ok(id) => {
                let e = disp.next(8);
                assert_eq!(e, vec![(id, End::Timeout)]);
                End::Timeout
            }
            Err(e) => e,
        };
        assert_eq!(ended, End::Timeout);
        let took = t.elapsed();
        assert!(
            took >= asked && took < asked + Duration::from_secs(5),
            "{ms}: {took:?}"
        );
    }
    assert!(
        s.flights().owns(hash(&s, b"k"), &stopped),
        "nothing was taken over"
    );
}

/// Issue 5 of "No hang, no stall, no leak across processes": a function that returns a
/// Promise without being `async` blocked the event loop in `waitSync` on its first call.
/// An owner records that its computation is async (at claim, or later), and a
/// synchronous wait that asked for it returns `Async` as soon as the record says so.
#[test]
fn a_synchronous_wait_until_async_ends_when_the_owner_marks_its_flight_async() {
    let d = TempDir::new();
    let p = d.file("c");
    let s = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    let other = other_process(&p);
    let (a, b) = (hash(&s, b"a"), hash(&s, b"b"));
    assert_eq!(s.flights().claim(a, &other, true), Claim::Owner);
    assert_eq!(
        s.wait_sync(b"a", f64::INFINITY, true),
        End::Async,
        "async at claim"
    );
    assert_eq!(
        s.wait_sync(b"a", 0.0, false),
        End::Timeout,
        "not asked: waits"
    );
    assert_eq!(s.flights().claim(b, &other, false), Claim::Owner);
    assert_eq!(s.wait_sync(b"b", 30.0, true), End::Timeout, "not async yet");
    let mut w = s.waiter(b"b");
    let t = timed(move || w.wait_sync(Some(Instant::now() + Duration::from_secs(60)), true));
    std::thread::sleep(Duration::from_millis(30));
    s.flights().mark_async(b, &other);
    let (end, took) = t.join().unwrap();
    assert_eq!(end, End::Async);
    assert!(
        took < Duration::from_secs(30),
        "woken by the mark: {took:?}"
    );
    // A mark left by an earlier owner of the record does not make a later one async.
    s.flights().release(b, &other);
    assert_eq!(s.flights().claim(b, &other, false), Claim::Owner);
    assert_eq!(s.wait_sync(b"b", 30.0, true), End::Timeout);
    // Only the owner marks.
    s.mark_async(b"b");
    assert_eq!(s.wait_sync(b"b", 30.0, true), End::Timeout);
}

/// Issue 8 of "No hang, no stall, no leak across processes": when a flight ends, every
/// waiter wakes at once (nothing in the store serializes them).
#[test]
fn every_waiter_wakes_when_the_flight_ends() {
    let d = TempDir::new();
    let p = d.file("c");
    let stores: Vec<ShmStore> = (0..4)
        .map(|_| ShmStore::open(&p, 8, 16, 16, 0.0).unwrap())
        .collect();
    let other = other_process(&p);
    let k = hash(&stores[0], b"k");
    assert_eq!(stores[0].flights().claim(k, &other, false), Claim::Owner);
    let threads: Vec<_> = stores
        .iter()
        .map(|s| {
            let mut w = s.waiter(b"k");
            timed(move || (w.wait_sync(None, false), Instant::now()))
        })
        .collect();
    let disp = Arc::new(Dispatcher::default());
    let ids: Vec<u32> = stores
        .iter()
        .map(|s| disp.register(s.waiter(b"k"), None).unwrap())
        .collect();
    let d2 = disp.clone();
    let next = std::thread::spawn(move || {
        let mut got = Vec::new();
        while got.len() < 4 {
            got.extend(d2.next(2));
        }
        (got, Instant::now())
    });
    std::thread::sleep(Duration::from_millis(50));
    let ended_at = Instant::now();
    stores[0].flights().release(k, &other);
    let mut latest = Duration::ZERO;
    for t in threads {
        let ((end, at), _) = t.join().unwrap();
        assert_eq!(end, End::Done);
        latest = latest.max(at - ended_at);
    }
    let (mut got, at) = next.join().unwrap();
    got.sort_by_key(|&(i, _)| i);
    assert_eq!(got, ids.iter().map(|&i| (i, End::Done)).collect::<Vec<_>>());
    latest = latest.max(at - ended_at);
    assert!(latest < Duration::from_secs(5), "{latest:?}");
}

/// Issue 2 of "No hang, no stall, no leak across processes": each asynchronous wait held
/// a thread of Deno's blocking pool. One dispatcher sleeps for any number of waits on one
/// thread, in each of its ways to sleep (record words, file epochs, and without
/// `futex_waitv`).
#[test]
fn one_dispatcher_thread_carries_hundreds_of_waits_in_every_mode() {
    for (waits, no_waitv) in [(40, false), (300, false), (40, true), (300, true)] {
        dispatch::play_no_waitv(no_waitv);
        let d = TempDir::new();
        let p = d.file("c");
        let s = ShmStore::open(&p, 400, 16, 16, 0.0).unwrap();
        let other = other_process(&p);
        let keys: Vec<Vec<u8>> = (0..waits).map(|i| format!("k{i}").into_bytes()).collect();
        let mut claimed = Vec::new();
        for k in &keys {
            if s.flights().claim(hash(&s, k), &other, false) == Claim::Owner {
                claimed.push(k.clone());
            }
        }
        assert!(
            claimed.len() >= waits * 9 / 10,
            "{} of {waits}",
            claimed.len()
        );
        let disp = Arc::new(Dispatcher::default());
        let mut ids: Vec<(u32, Vec<u8>)> = claimed
            .iter()
            .map(|k| (disp.register(s.waiter(k), None).unwrap(), k.clone()))
            .collect();
        // A wait whose flight is already over ends at once.
        assert_eq!(disp.register(s.waiter(b"nothing"), None), Err(End::Done));
        let d2 = disp.clone();
        let n = claimed.len();
        let collector = std::thread::spawn(move || {
            let mut got = Vec::new();
            while got.len() < n {
                got.extend(d2.next(64));
            }
            got
        });
        // The owner ends them one by one, in random order.
        ids.sort_by_key(|(_, k)| hash(&s, k) ^ 0x5555);
        for (_, k) in &ids {
            s.flights().release(hash(&s, k), &other);
        }
        let mut got = collector.join().unwrap();
        got.sort_by_key(|&(i, _)| i);
        let mut want: Vec<(u32, End)> = ids.iter().map(|&(i, _)| (i, End::Done)).collect();
        want.sort_by_key(|&(i, _)| i);
        assert_eq!(got, want, "{waits} waits, no_waitv {no_waitv}");
        assert_eq!(disp.pending(), 0);
        assert!(disp.next(8).is_empty(), "no wait: returns at once");
    }
    dispatch::play_no_waitv(false);
}

#[test]
fn a_dispatcher_takes_a_killed_owners_flight_over_and_returns_when_closed() {
    let d = TempDir::new();
    let p = d.file("c");
    let s = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    let ghost = other_process(&p);
    assert_eq!(
        s.flights().claim(hash(&s, b"k"), &ghost, false),
        Claim::Owner
    );
    assert_eq!(
        s.flights().claim(hash(&s, b"j"), &ghost, false),
        Claim::Owner
    );
    let disp = Arc::new(Dispatcher::default());
    let id = disp.register(s.waiter(b"k"), None).unwrap();
    let d2 = disp.clone();
    let t = timed(move || d2.next(8));
    std::thread::sleep(Duration::from_millis(30));
    drop(ghost);
    let (got, took) = t.join().unwrap();
    assert_eq!(got, vec![(id, End::Owner)]);
    assert!(took < Duration::from_secs(30));
    assert!(s.owns(b"k"));
    // A dispatcher that ends (its thread exits) returns at once and drops its waits.
    let other = other_process(&p);
    assert_eq!(
        s.flights().claim(hash(&s, b"i"), &other, false),
        Claim::Owner
    );
    disp.register(s.waiter(b"i"), None).unwrap();
    let d2 = disp.clone();
    let t = timed(move || d2.next(8));
    std::thread::sleep(Duration::from_millis(30));
    disp.close();
    assert!(t.join().unwrap().0.is_empty());
    assert_eq!(disp.pending(), 0);
    assert_eq!(disp.register(s.waiter(b"i"), None), Err(End::Closed));
}

#[test]
fn each_thread_has_its_own_dispatcher_ended_with_the_thread() {
    let mine = dispatch::for_this_thread().unwrap();
    assert_eq!(dispatch::for_this_thread(), Some(mine));
    let theirs = std::thread::spawn(|| dispatch::for_this_thread().unwrap())
        .join()
        .unwrap();
    assert_ne!(theirs, mine);
    assert!(dispatch::get(mine).is_some());
    assert!(dispatch::get(theirs).is_none(), "gone with its thread");
}

fn fetch(s: &ShmStore, key: &[u8]) -> Fetch {
    let mut out = [0u8; 64];
    s.get_or_claim(key, &mut out, 0.0).unwrap()
}

/// The lookup of a cached call claims the key's flight when it misses (one call instead
/// of a lookup, a claim and a second lookup), counts like `get`, and claims nothing on a
/// hit; the owner's `set_owned` stores and ends the flight in one call, its waiters wake.
#[test]
fn a_lookup_that_misses_claims_and_the_owners_set_ends_the_flight() {
    let d = TempDir::new();
    let p = d.file("c");
    let a = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    let b = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    let other = other_process(&p);
    assert_eq!(fetch(&a, b"k"), Fetch::Miss(Claim::Owner));
    assert!(a.owns(b"k"));
    assert_eq!(
        fetch(&b, b"k"),
        Fetch::Miss(Claim::Local),
        "a handle of this process has it"
    );
    let k = hash(&a, b"k");
    assert_eq!(a.flights().claim(k, &other, false), Claim::Wait);
    // Another process waits; the owner's set wakes it with the value stored.
    let mut w = b.waiter(b"k");
    let t = timed(move || w.wait_sync(None, false));
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(a.set_owned(b"k", b"v", 1.0, 0.0).unwrap(), Set::Stored);
    assert_eq!(t.join().unwrap().0, End::Done);
    assert!(!a.owns(b"k") && a.flights().count() == 0);
    assert_eq!(fetch(&b, b"k"), Fetch::Hit(1));
    assert_eq!(a.flights().count(), 0, "a hit claims nothing");
    assert_eq!(hits_misses(&a), (1, 2));
    // Another process's flight: the lookup reports it, and takes nothing.
    assert_eq!(
        a.flights().claim(hash(&a, b"x"), &other, false),
        Claim::Owner
    );
    assert_eq!(fetch(&a, b"x"), Fetch::Miss(Claim::Wait));
    assert_eq!(a.flights().count(), 1);
    // A closed handle claims nothing.
    drop(other);
    let c = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    c.closed.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(fetch(&c, b"y"), Fetch::Miss(Claim::None));
}

/// Issue "Fastest on every row": the owner stores only while its flight is still its own
/// (checked under the write lock); after a `delete`, `clear` or `set` by hand in any
/// process ended it, the value computed before is not stored (`Lost`), and the flight is
/// ended whatever happened (stored, lost, oversize, busy).
#[test]
fn the_owners_set_stores_only_while_it_owns_the_flight_and_always_ends_it() {
    let d = TempDir::new();
    let p = d.file("c");
    let a = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    let b = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    // A delete by another handle ends the flight: the result is lost.
    assert_eq!(fetch(&a, b"k"), Fetch::Miss(Claim::Owner));
    assert!(!b.delete(b"k").unwrap());
    assert_eq!(a.set_owned(b"k", b"old", 1.0, 0.0).unwrap(), Set::Lost);
    assert_eq!(get(&a, b"k", 1.0), None, "nothing stored over the delete");
    // A set by hand: its value stays.
    assert_eq!(fetch(&a, b"k"), Fetch::Miss(Claim::Owner));
    b.end_flight(b"k");
    b.set(b"k", b"hand", 2.0).unwrap();
    assert_eq!(a.set_owned(b"k", b"old", 3.0, 0.0).unwrap(), Set::Lost);
    assert_eq!(get(&a, b"k", 4.0).as_deref(), Some(&b"hand"[..]));
    // A clear.
    assert_eq!(fetch(&a, b"z"), Fetch::Miss(Claim::Owner));
    b.clear().unwrap();
    assert_eq!(a.set_owned(b"z", b"old", 5.0, 0.0).unwrap(), Set::Lost);
    assert_eq!(a.len(), 0);
    // Oversize: skipped, counted, and the flight ends.
    assert_eq!(fetch(&a, b"big"), Fetch::Miss(Claim::Owner));
    assert_eq!(
        a.set_owned(b"big", &[1; 17], 6.0, 0.0).unwrap(),
        Set::Skipped
    );
    assert_eq!(a.info().oversize_skips, 1);
    assert!(!a.owns(b"big"));
    // Busy: a stopped holder keeps the lock; the flight still ends.
    assert_eq!(fetch(&a, b"q"), Fetch::Miss(Claim::Owner));
    let held = b.hold_lock().unwrap();
    let t = Instant::now();
    assert_eq!(a.set_owned(b"q", b"v", 7.0, 0.0).unwrap(), Set::Busy);
    assert!(t.elapsed() >= SET_WAIT / 2, "{:?}", t.elapsed());
    drop(held);
    assert!(!a.owns(b"q"));
    assert_eq!(a.flights().count(), 0);
    // Owned: stored, with its own TTL.
    assert_eq!(fetch(&a, b"t"), Fetch::Miss(Claim::Owner));
    assert_eq!(a.set_owned(b"t", b"v", 100.0, 10.0).unwrap(), Set::Stored);
    assert_eq!(get(&b, b"t", 109.0).as_deref(), Some(&b"v"[..]));
    assert_eq!(get(&b, b"t", 110.0), None, "its own TTL");
    a.table().validate().unwrap();
}

/// A key stored by another handle between the lock-free look and the claim (its whole
/// flight in between) is found by the look again under the lock: a hit, nothing claimed.
#[test]
fn a_lookup_that_claims_looks_again_under_the_lock() {
    let d = TempDir::new();
    let p = d.file("c");
    let a = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    let b = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
    // Hold the lock in `b` while `a` looks (lock-free, a miss) and waits to claim; store
    // through the held lock's table, as a writer of another process would, then let go.
    let held = b.hold_lock().unwrap();
    let t = {
        let p = p.clone();
        timed(move || {
            let a = ShmStore::open(&p, 8, 16, 16, 0.0).unwrap();
            let r = fetch(&a, b"k");
            (r, a.flights().count(), a.info().hits)
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    let h = b.table().header();
    h.seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let hash = b.table().hash(b"k");
    let stamp = layout::Stamp::new(1.0, 0.0);
    let sum = b.table().checksum(hash, stamp, b"k", b"vv");
    b.table().store(b"k", hash, b"vv", stamp, sum).unwrap();
    h.seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    drop(held);
    let ((r, flights, hits), _) = t.join().unwrap();
    assert_eq!(r, Fetch::Hit(2), "found under the lock");
    assert_eq!((flights, hits), (0, 1));
    assert_eq!(a.info().misses, 0);
}
