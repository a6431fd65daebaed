//! Cross-process single-flight: at most one computation of a key at a time among the
//! processes that share a cache file, the others waiting for it without polling.
//!
//! ## The table
//!
//! The file ends with [`FLIGHT_RECORDS`] records ([`FlightRecord`]): an owner word, a key
//! hash, a futex word and a count of sleepers. A record is free while its owner word is 0;
//! otherwise it is the flight of the key whose 64-bit hash it holds, computed by the
//! handle that the owner word names, with the word format of the write lock
//! (`lock::word_of`: liveness id, counter, check; see `lock.rs`). A key's records are the
//! [`FLIGHT_PROBES`] records from its home (`hash >> 40` modulo the table), wrapping.
//!
//! Keys are identified by their hash: two keys with one hash share a flight, so that a
//! caller may wait for the computation of another key, then look its own up, miss, and
//! claim again (about one pair in 2^64 per pair of keys computed at once).
//!
//! - **Claim** ([`Flights::claim`], under the file's write lock, so that two claimers of
//!   one key never pick two free records): a record of the key whose owner is alive
//!   answers [`Claim::Wait`] (this handle's own flight too); one whose owner is dead is
//!   taken over ([`Claim::Owner`]); else the first free record of the probe window is
//!   taken (the key written first, then the owner word); no free record: [`Claim::None`].
//!   A record's key is only written under the lock while its owner word is 0, and every
//!   other change is a compare-and-swap of the owner word from the value judged: so a
//!   release, a takeover and the end of a flight by `delete` or `clear` (all lock-free)
//!   act on exactly the flight they judged (the counter in the word makes reuse ABA-safe).
//! - **End** ([`Flights::end`]): the owner word goes to 0, the futex word is bumped, and
//!   sleepers (if the record counts any) are woken.
//! - **Wait** ([`Waiter::wait`]): the waiter counts itself a sleeper, then loops: it reads
//!   the futex word, then the record; a record that no longer holds the key's flight means
//!   the flight ended ([`End::Done`]); an owner that is dead (garbage, or a liveness id
//!   that the kernel no longer holds: killed, exited, closed) is taken over with a
//!   compare-and-swap ([`End::Owner`]: of several waiters exactly one wins, the others
//!   wait for it); else it sleeps on the futex word (`FUTEX_WAIT` on the shared mapping,
//!   without `FUTEX_PRIVATE_FLAG`, so that other processes' `FUTEX_WAKE` reach it) until a
//!   wake, or [`LIVENESS_PERIOD`] to check the owner's liveness again, or the deadline
//!   ([`End::Timeout`]). Reading the futex word before the record means that an end
//!   between the read and the sleep changes the word, and `FUTEX_WAIT` returns at once.
//!   Elsewhere than Linux the sleep is a short `thread::sleep` (no futex).
//!
//! A handle that is closed ends its flights (and its waits), so that waiters do not wait
//! for a liveness id that a waiter of the same handle might still keep.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

use super::layout::{FLIGHT_PROBES, FLIGHT_RECORDS, FlightRecord};
use super::lock::{Owner, tag_of};
use super::region::Region;

/// How long a waiter sleeps at most before it checks the owner's liveness again: a
/// killed owner is taken over within about this long.
pub const LIVENESS_PERIOD: Duration = Duration::from_millis(100);

/// What [`Flights::claim`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This handle now owns the key's flight: compute, then release.
    Owner,
    /// A live handle (this one included) owns it: wait.
    Wait,
    /// No free record in the key's probe window: compute without a flight.
    None,
}

/// How [`Waiter::wait`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The flight ended (released, or ended by `delete` or `clear`), or there was none.
    Done,
    /// Its owner died: this handle took it over (compute, then release).
    Owner,
    /// The deadline passed (or the handle was closed).
    Timeout,
}

/// The records of a key's probe window, by index.
fn window(hash: u64) -> impl Iterator<Item = usize> {
    let home = (hash >> 40) as usize % FLIGHT_RECORDS;
    (0..FLIGHT_PROBES).map(move |p| (home + p) % FLIGHT_RECORDS)
}

/// Whether the owner named by `word` (not 0) is alive, as judged by `me`: its check
/// passes and it is this handle, another handle of this process on the file, or a
/// liveness id that the kernel holds.
fn alive(word: u64, me: &Owner) -> bool {
    tag_of(word).is_some_and(|t| t == me.tag() || me.local().has_tag(t) || me.alive(t))
}

/// Ends the flight in `r` if its owner word is still `word`; wakes its sleepers.
fn end_if(r: &FlightRecord, word: u64) -> bool {
    if word == 0 || r.owner.compare_exchange(word, 0, SeqCst, SeqCst).is_err() {
        return false;
    }
    bump(r);
    true
}

/// Bumps the futex word of `r` and wakes its sleepers, if it counts any.
fn bump(r: &FlightRecord) {
    r.seq.fetch_add(1, SeqCst);
    if r.waiters.load(SeqCst) != 0 {
        wake_all(&r.seq);
    }
}

/// The flight table of a mapped file.
#[derive(Clone, Copy)]
pub struct Flights<'a> {
    records: &'a [FlightRecord],
}

impl<'a> Flights<'a> {
    /// The view of `records` ([`FLIGHT_RECORDS`] of them).
    pub fn new(records: &'a [FlightRecord]) -> Flights<'a> {
        Flights { records }
    }

    fn record(&self, i: usize) -> &'a FlightRecord {
        &self.records[i % self.records.len()]
    }

    /// The index of the record holding the flight of `hash`, if any. Lock-free.
    pub fn find(&self, hash: u64) -> Option<usize> {
        window(hash).find(|&i| {
            let r = self.record(i);
            r.owner.load(SeqCst) != 0 && r.key.load(SeqCst) == hash
        })
    }

    /// Claims the flight of `hash` for `me`. Under the file's write lock.
    pub fn claim(&self, hash: u64, me: &Owner) -> Claim {
        let mut free = None;
        for i in window(hash) {
            let r = self.record(i);
            loop {
                let o = r.owner.load(SeqCst);
                if o == 0 {
                    free = free.or(Some(i));
                    break;
                }
                if r.key.load(SeqCst) != hash {
                    break;
                }
                if alive(o, me) {
                    return Claim::Wait;
                }
                // A dead owner's flight (or garbage): take it over.
                if r.owner
                    .compare_exchange(o, me.next_word(), SeqCst, SeqCst)
                    .is_ok()
                {
                    bump(r);
                    return Claim::Owner;
                }
                // A waiter took it over (or it ended) meanwhile: judge it again.
            }
        }
        let Some(i) = free else {
            return Claim::None;
        };
        let r = self.record(i);
        // Under the lock, a free record stays free until we fill it: only claims fill
        // records, and every lock-free change starts from a non-zero word.
        r.key.store(hash, SeqCst);
        r.owner.store(me.next_word(), SeqCst);
        r.seq.fetch_add(1, SeqCst);
        Claim::Owner
    }

    /// Whether `me` owns the flight of `hash`. Lock-free.
    pub fn owns(&self, hash: u64, me: &Owner) -> bool {
        window(hash).any(|i| {
            let r = self.record(i);
            let o = r.owner.load(SeqCst);
            o != 0 && r.key.load(SeqCst) == hash && tag_of(o) == Some(me.tag())
        })
    }

    /// Ends `me`'s flight of `hash`, if it has one. Lock-free; idempotent.
    pub fn release(&self, hash: u64, me: &Owner) {
        for i in window(hash) {
            let r = self.record(i);
            let o = r.owner.load(SeqCst);
            if o != 0 && r.key.load(SeqCst) == hash && tag_of(o) == Some(me.tag()) {
                end_if(r, o);
            }
        }
    }

    /// Ends every flight of `hash`, whoever owns it (`delete`). Lock-free.
    pub fn end(&self, hash: u64) {
        for i in window(hash) {
            let r = self.record(i);
            let o = r.owner.load(SeqCst);
            if o != 0 && r.key.load(SeqCst) == hash {
                end_if(r, o);
            }
        }
    }

    /// Ends every flight (`clear`), or only those of `me` (a handle that closes). Also
    /// wakes every sleeper, so that the waits of a closing handle see it. Lock-free.
    pub fn end_all(&self, only: Option<&Owner>) {
        for r in self.records {
            let o = r.owner.load(SeqCst);
            let mine = only.is_none_or(|me| tag_of(o) == Some(me.tag()));
            let ended = o != 0 && mine && end_if(r, o);
            if !ended && only.is_some() && r.waiters.load(SeqCst) != 0 {
                wake_all(&r.seq);
            }
        }
    }

    /// Flights under way (tests).
    #[cfg(test)]
    pub fn count(&self) -> usize {
        self.records
            .iter()
            .filter(|r| r.owner.load(SeqCst) != 0)
            .count()
    }
}

/// A wait for the flight of one key, holding what it needs to outlive its handle: the
/// mapping, the handle's owner identity and its closed flag. So a wait that runs on
/// another thread (Deno's `nonblocking` calls) never touches a handle that JavaScript may
/// close meanwhile.
pub struct Waiter {
    region: Arc<Region>,
    owner: Arc<Owner>,
    closed: Arc<AtomicBool>,
    hash: u64,
}

impl Waiter {
    /// A wait for the flight of `hash` in `region`, as `owner`, until `closed`.
    pub fn new(
        region: Arc<Region>,
        owner: Arc<Owner>,
        closed: Arc<AtomicBool>,
        hash: u64,
    ) -> Waiter {
        Waiter {
            region,
            owner,
            closed,
            hash,
        }
    }

    fn records(&self) -> &[FlightRecord] {
        let p = self.region.params();
        // SAFETY: the region maps the file (kept alive by `self.region`), which holds
        // FLIGHT_RECORDS records at `flights_offset` (8-aligned); every field is atomic.
        unsafe {
            std::slice::from_raw_parts(
                self.region
                    .base()
                    .add(p.flights_offset())
                    .cast::<FlightRecord>(),
                FLIGHT_RECORDS,
            )
        }
    }

    /// Waits until the flight ends, its owner dies (then takes it over) or `deadline`
    /// passes (`None`: no bound). Sleeps on the record's futex word between checks.
    pub fn wait(&self, deadline: Option<Instant>) -> End {
        let flights = Flights::new(self.records());
        let Some(i) = flights.find(self.hash) else {
            return End::Done;
        };
        let r = flights.record(i);
        r.waiters.fetch_add(1, SeqCst);
        let end = self.wait_on(r, deadline);
        // Saturating: garbage may have put anything there.
        let _ = r
            .waiters
            .fetch_update(SeqCst, SeqCst, |n| Some(n.saturating_sub(1)));
        end
    }

    fn wait_on(&self, r: &FlightRecord, deadline: Option<Instant>) -> End {
        loop {
            if self.closed.load(SeqCst) {
                return End::Timeout;
            }
            let seq = r.seq.load(SeqCst);
            let o = r.owner.load(SeqCst);
            if o == 0 || r.key.load(SeqCst) != self.hash {
                return End::Done;
            }
            if !alive(o, &self.owner) {
                let me = self.owner.next_word();
                if r.owner.compare_exchange(o, me, SeqCst, SeqCst).is_ok() {
                    bump(r);
                    if self.closed.load(SeqCst) {
                        // The handle closed meanwhile: it must not keep a flight.
                        end_if(r, me);
                        return End::Timeout;
                    }
                    return End::Owner;
                }
                continue;
            }
            let now = Instant::now();
            let nap = match deadline {
                Some(d) if now >= d => return End::Timeout,
                Some(d) => (d - now).min(LIVENESS_PERIOD),
                None => LIVENESS_PERIOD,
            };
            sleep_on(&r.seq, seq, nap);
        }
    }
}

/// Sleeps until `word` is woken or no longer `expected`, or `nap` passes (or a signal).
#[cfg(target_os = "linux")]
fn sleep_on(word: &AtomicU32, expected: u32, nap: Duration) {
    let ts = libc::timespec {
        tv_sec: nap.as_secs().try_into().unwrap_or(libc::time_t::MAX),
        tv_nsec: nap.subsec_nanos().into(),
    };
    // SAFETY: `word` is a live, 4-aligned u32 (in the shared mapping, which outlives the
    // call); FUTEX_WAIT only reads it and sleeps; `ts` is a valid relative timeout. Not
    // FUTEX_PRIVATE_FLAG: the word is shared with other processes.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &raw const ts,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Wakes every process sleeping on `word`.
#[cfg(target_os = "linux")]
fn wake_all(word: &AtomicU32) {
    // SAFETY: `word` is a live, 4-aligned u32; FUTEX_WAKE does not access memory.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// The portable fallback: a short sleep (no cross-process futex).
#[cfg(not(target_os = "linux"))]
fn sleep_on(word: &AtomicU32, expected: u32, nap: Duration) {
    if word.load(SeqCst) == expected {
        std::thread::sleep(nap.min(Duration::from_millis(2)));
    }
}

/// Nothing to wake without a futex: sleepers wake by themselves.
#[cfg(not(target_os = "linux"))]
fn wake_all(_word: &AtomicU32) {}

/// The owner word of a flight, for tests that play a dead owner.
#[cfg(test)]
pub fn set_owner(r: &FlightRecord, hash: u64, word: u64) {
    r.key.store(hash, SeqCst);
    r.owner.store(word, SeqCst);
}
