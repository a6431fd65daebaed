//! Cross-process single-flight: at most one computation of a key at a time among the
//! processes that share a cache file, the others waiting for it without polling.
//!
//! ## The table
//!
//! The file ends with [`FLIGHT_RECORDS`] records ([`FlightRecord`]): an owner word, a key
//! hash, a futex word, a count of sleepers and an async mark. A record is free while its
//! owner word is 0; otherwise it is the flight of the key whose 64-bit hash it holds. A
//! key's records are the [`FLIGHT_PROBES`] records from its home (`hash >> 40` modulo the
//! table), wrapping.
//!
//! Keys are identified by their hash: two keys with one hash share a flight, so that a
//! caller may wait for the computation of another key, then look its own up and miss
//! (about one pair in 2^64 per pair of keys computed at once).
//!
//! ## Who owns a flight
//!
//! The owner word has the format of the write lock's (`lock::word_of`: liveness id,
//! counter, check; see `lock.rs`), and names the handle that issued it: a handle records
//! every flight word it issues in its process's [`lock::Local`] before it publishes it,
//! and forgets it after the flight ended. A handle judges an owner word ([`judge`]):
//! - a word that a live handle of this process issued: [`Judged::Local`] (this handle's
//!   own flights included);
//! - a word whose check fails (garbage), or whose tag is this process's while no live
//!   handle of it issued that word: dead. Liveness ids are reused (the first free one is
//!   taken at open): judging by the tag alone, a process that got the id of a dead one
//!   took the dead one's flight for its own and waited for itself forever (RELIABILITY.md,
//!   "A killed writer left a key that hung every new process");
//! - another tag: alive while the kernel holds that liveness id ([`lock::Owner::alive`]),
//!   else dead. A handle that takes a liveness id ends every flight it judges dead
//!   ([`Flights::sweep`], at open), so no flight of a dead handle outlives the reuse of
//!   its id.
//!
//! ## Operations
//!
//! - **Claim** ([`Flights::claim`], under the file's write lock, so that two claimers of
//!   one key never pick two free records): a record of the key whose owner is a live
//!   handle of this process answers [`Claim::Local`], one of another live process
//!   [`Claim::Wait`]; a dead owner's is taken over ([`Claim::Owner`]); else the first free
//!   record of the probe window is taken (the key and mark written first, then the owner
//!   word), or when there is none, a record of the window whose owner is dead; else
//!   [`Claim::None`]. A record's key is only written under the lock while its owner word
//!   is 0, and every other change is a compare-and-swap of the owner word from the value
//!   judged: so a release, a takeover and the end of a flight by `delete`, `set` or
//!   `clear` (all lock-free) act on exactly the flight they judged (the counter in the
//!   word makes reuse ABA-safe).
//! - **End** (release, [`Flights::end`], [`Flights::end_all`], a handle that closes): the
//!   owner word goes to 0, then the record's futex word and the file's flight epoch are
//!   bumped and their sleepers (if any are counted) woken.
//! - **Async mark** ([`Flights::mark_async`]): the owner records that its computation is
//!   async, so that a synchronous waiter that can switch to an async wait stops blocking
//!   its thread ([`End::Async`]).
//! - **Wait** ([`Waiter::poll`]): a record that no longer holds the key's flight means the
//!   flight ended ([`End::Done`]); a dead owner is taken over with a compare-and-swap
//!   ([`End::Owner`]: of several waiters exactly one wins, the others wait for it). A
//!   synchronous wait ([`Waiter::wait_sync`]) sleeps on the record's futex word
//!   (`FUTEX_WAIT` on the shared mapping, without `FUTEX_PRIVATE_FLAG`, so that other
//!   processes' `FUTEX_WAKE` reach it) until a wake, [`LIVENESS_PERIOD`] (to ask about the
//!   owner's liveness again) or its deadline; it never blocks on a flight of this process
//!   (its owner may need this very thread). Asynchronous waits go to a dispatcher
//!   (`dispatch.rs`), which sleeps for all of them on one thread. Reading a futex word
//!   before the record means that an end between the read and the sleep changes the word,
//!   and the sleep returns at once. Elsewhere than Linux the sleep is a short
//!   `thread::sleep` (no futex).
//!
//! A handle that closes ends its flights, so that nobody waits for it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{
    AtomicBool, AtomicU32,
    Ordering::{Relaxed, Release, SeqCst},
};
use std::time::{Duration, Instant};

use super::layout::{FLIGHT_PROBES, FLIGHT_RECORDS, FlightRecord, Header};
use super::lock::{Owner, tag_of};
use super::region::Region;

/// How long a waiter sleeps at most before it asks again whether the owner lives: a
/// killed owner is taken over within about this long.
pub const LIVENESS_PERIOD: Duration = Duration::from_millis(100);

/// What [`Flights::claim`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This handle now owns the key's flight: compute, then release.
    Owner,
    /// A live handle of another process owns it: wait.
    Wait,
    /// A live handle of this process (this one included) owns it: a synchronous caller
    /// must not block its thread on it.
    Local,
    /// No record could be had in the key's probe window: compute without a flight.
    None,
}

/// How a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The flight ended (released, or ended by `delete`, `set` or `clear`), or there was
    /// none; for a synchronous wait also: a handle of this process owns it now.
    Done,
    /// Its owner died: this handle took it over (compute, then release).
    Owner,
    /// (Synchronous waits that asked for it.) The owner's computation is async, or a
    /// handle of this process owns the flight: switch to an asynchronous wait.
    Async,
    /// The deadline passed.
    Timeout,
    /// The handle was closed.
    Closed,
}

/// The records of a key's probe window, by index.
fn window(hash: u64) -> impl Iterator<Item = usize> {
    let home = (hash >> 40) as usize % FLIGHT_RECORDS;
    (0..FLIGHT_PROBES).map(move |p| (home + p) % FLIGHT_RECORDS)
}

/// The async mark of owner word `word`: its upper half (counter and check; never 0).
pub fn mark_of(word: u64) -> u32 {
    (word >> 32) as u32
}

/// Who owns a flight, as a handle judges its owner word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judged {
    /// A live handle of this process issued the word (this handle included).
    Local,
    /// A handle of another process whose liveness id the kernel holds (or not asked).
    Live,
    /// Nobody: garbage, a word of this process's tags that no live handle issued, or a
    /// liveness id that nobody holds.
    Dead,
}

/// Answers about other processes' liveness ids, each asked of the kernel at most once per
/// look (per file: a liveness id means something in its file only).
pub struct Liveness {
    ask: bool,
    /// Made at the first question (a claim that finds no flight asks none).
    known: Option<HashMap<(usize, u32), bool>>,
}

impl Liveness {
    /// Asks the kernel (`ask`), or counts every other process's owner as alive.
    pub fn new(ask: bool) -> Liveness {
        Liveness { ask, known: None }
    }

    fn alive(&mut self, file: usize, tag: u32, me: &Owner) -> bool {
        !self.ask
            || *self
                .known
                .get_or_insert_with(HashMap::new)
                .entry((file, tag))
                .or_insert_with(|| me.alive(tag))
    }
}

/// Judges owner word `word` (not 0) of the file `file` (see [`Flights::file`]) as `me`
/// (see the module docs), asking about other processes through `live`.
pub fn judge(word: u64, me: &Owner, file: usize, live: &mut Liveness) -> Judged {
    if me.local().flight_owner(word).is_some() {
        return Judged::Local;
    }
    match tag_of(word) {
        None => Judged::Dead,
        Some(t) if t == me.tag() || me.local().has_tag(t) => Judged::Dead,
        Some(t) if live.alive(file, t, me) => Judged::Live,
        Some(_) => Judged::Dead,
    }
}

/// The flight table of a mapped file, with the file's flight epoch.
#[derive(Clone, Copy)]
pub struct Flights<'a> {
    records: &'a [FlightRecord],
    header: &'a Header,
}

impl<'a> Flights<'a> {
    /// The view of `records` ([`FLIGHT_RECORDS`] of them) of the file whose header is
    /// `header`.
    pub fn new(records: &'a [FlightRecord], header: &'a Header) -> Flights<'a> {
        debug_assert_eq!(records.len(), FLIGHT_RECORDS);
        Flights { records, header }
    }

    /// Tells this file's mapping apart from others (for [`Liveness`]).
    pub fn file(&self) -> usize {
        self.records.as_ptr() as usize
    }

    /// Record `i` (modulo the table).
    pub fn record(&self, i: usize) -> &'a FlightRecord {
        // A power of two: a mask, not a division (on every claim's 16 looks).
        &self.records[i % FLIGHT_RECORDS]
    }

    /// The file's flight epoch and its count of sleepers.
    pub fn epoch(&self) -> (&'a AtomicU32, &'a AtomicU32) {
        (&self.header.flight_epoch, &self.header.flight_sleepers)
    }

    /// The index of the record holding the flight of `hash`, if any. Lock-free.
    pub fn find(&self, hash: u64) -> Option<usize> {
        window(hash).find(|&i| {
            let r = self.record(i);
            r.owner.load(SeqCst) != 0 && r.key.load(SeqCst) == hash
        })
    }

    /// Wakes whoever waits on record `r`: when sleepers are counted on it, or on the file's
    /// epoch, that futex word is bumped and they are woken.
    ///
    /// A word nobody is counted on is left alone (every flight end used to bump both, two
    /// atomic additions per miss, one on the lock's cache line): a sleeper counts itself,
    /// then reads the word, then looks at the flight; all sequentially consistent, so a
    /// change made before an end found no sleeper counted is seen by that look, and the
    /// sleeper never sleeps on it.
    fn changed(&self, r: &FlightRecord) {
        if r.waiters.load(SeqCst) != 0 {
            r.seq.fetch_add(1, SeqCst);
            wake_all(&r.seq);
        }
        self.bump_epoch_if_slept_on();
    }

    /// Bumps the file's flight epoch and wakes its sleepers (if any are counted).
    pub fn bump_epoch(&self) {
        let (epoch, sleepers) = self.epoch();
        epoch.fetch_add(1, SeqCst);
        if sleepers.load(SeqCst) != 0 {
            wake_all(epoch);
        }
    }

    /// [`Flights::bump_epoch`] when sleepers are counted on it (see [`Flights::changed`]).
    fn bump_epoch_if_slept_on(&self) {
        let (epoch, sleepers) = self.epoch();
        if sleepers.load(SeqCst) != 0 {
            epoch.fetch_add(1, SeqCst);
            wake_all(epoch);
        }
    }

    /// Ends the flight in `r` if its owner word is still `word`, and wakes its waiters.
    fn end_if(&self, r: &FlightRecord, word: u64) -> bool {
        if word == 0 || r.owner.compare_exchange(word, 0, SeqCst, SeqCst).is_err() {
            return false;
        }
        self.changed(r);
        true
    }

    /// Takes the flight in `r` over from owner word `dead` for `me`, as the owner of key
    /// `hash`, with the async mark when `async_`. False when the word changed meanwhile.
    fn take_over(&self, r: &FlightRecord, dead: u64, hash: u64, me: &Owner, async_: bool) -> bool {
        let word = me.issue(hash);
        if r.owner
            .compare_exchange(dead, word, SeqCst, SeqCst)
            .is_err()
        {
            me.retire_word(word);
            return false;
        }
        r.mark.store(if async_ { mark_of(word) } else { 0 }, SeqCst);
        true
    }

    /// Claims the flight of `hash` for `me`, with the async mark when `async_` (its
    /// computation is known to be async). Under the file's write lock.
    pub fn claim(&self, hash: u64, me: &Owner, async_: bool) -> Claim {
        let mut live = Liveness::new(true);
        let mut free = None;
        let mut others = false;
        for i in window(hash) {
            let r = self.record(i);
            loop {
                let o = r.owner.load(SeqCst);
                if o == 0 {
                    free = free.or(Some(i));
                    break;
                }
                if r.key.load(SeqCst) != hash {
                    others = true;
                    break;
                }
                match judge(o, me, self.file(), &mut live) {
                    Judged::Local => return Claim::Local,
                    Judged::Live => return Claim::Wait,
                    Judged::Dead => {
                        if self.take_over(r, o, hash, me, async_) {
                            return Claim::Owner;
                        }
                        // A waiter took it over (or it ended) meanwhile: judge it again.
                    }
                }
            }
        }
        if free.is_none() && others {
            // The window is full: a record whose owner is dead serves (it could otherwise
            // stay taken until its key is claimed again).
            free = window(hash).find(|&i| {
                let r = self.record(i);
                let o = r.owner.load(SeqCst);
                o != 0 && judge(o, me, self.file(), &mut live) == Judged::Dead && self.end_if(r, o)
            });
        }
        let Some(i) = free else {
            return Claim::None;
        };
        let r = self.record(i);
        let word = me.issue(hash);
        // Under the lock, a free record stays free until we fill it: only claims fill
        // records, and every lock-free change starts from a non-zero word. The owner word
        // is stored last, with release: whoever sees it sees the key and the mark.
        r.key.store(hash, Relaxed);
        r.mark
            .store(if async_ { mark_of(word) } else { 0 }, Relaxed);
        r.owner.store(word, Release);
        Claim::Owner
    }

    /// The record of `me`'s live flight of `hash` and its word, if it has one. Lock-free.
    pub fn mine(&self, hash: u64, me: &Owner) -> Option<(&'a FlightRecord, u64)> {
        let word = me.flight_word(hash)?;
        window(hash).map(|i| self.record(i)).find_map(|r| {
            (r.owner.load(SeqCst) == word && r.key.load(SeqCst) == hash).then_some((r, word))
        })
    }

    /// Whether `me` owns the flight of `hash`: the record holds the very word that `me`
    /// issued for it. Lock-free.
    pub fn owns(&self, hash: u64, me: &Owner) -> bool {
        self.mine(hash, me).is_some()
    }

    /// Marks `me`'s flight of `hash` async (its computation returned a Promise) and wakes
    /// its waiters. Lock-free; nothing when `me` does not own it.
    pub fn mark_async(&self, hash: u64, me: &Owner) {
        if let Some((r, word)) = self.mine(hash, me) {
            r.mark.store(mark_of(word), SeqCst);
            self.changed(r);
        }
    }

    /// Ends `me`'s flight of `hash`, if it has one, and forgets it. Lock-free; idempotent.
    pub fn release(&self, hash: u64, me: &Owner) {
        self.release_found(self.mine(hash, me), hash, me);
    }

    /// [`Flights::release`] of the flight that [`Flights::mine`] found (`None`: none): ends
    /// it if its record still holds that word, and forgets `me`'s flight of `hash`.
    pub fn release_found(&self, found: Option<(&FlightRecord, u64)>, hash: u64, me: &Owner) {
        if let Some((r, word)) = found {
            self.end_if(r, word);
        }
        me.retire(hash);
    }

    /// Ends every flight of `hash`, whoever owns it (`delete`, `set`). Lock-free.
    pub fn end(&self, hash: u64) {
        for i in window(hash) {
            let r = self.record(i);
            let o = r.owner.load(SeqCst);
            if o != 0 && r.key.load(SeqCst) == hash {
                self.end_if(r, o);
            }
        }
    }

    /// Ends every flight (`clear`). Lock-free.
    pub fn end_all(&self) {
        for r in self.records {
            self.end_if(r, r.owner.load(SeqCst));
        }
    }

    /// Ends every flight of `me` (a handle that closes) and forgets them, then bumps the
    /// epoch. Lock-free.
    pub fn close(&self, me: &Owner) {
        let words = me.flight_words();
        if !words.is_empty() {
            for r in self.records {
                let o = r.owner.load(SeqCst);
                if o != 0 && words.contains(&o) {
                    self.end_if(r, o);
                }
            }
        }
        me.retire_all();
        self.bump_epoch();
    }

    /// Ends every flight whose owner `me` judges dead (asking the kernel about other
    /// processes): what a handle does at open, before it uses the file, so that no flight
    /// of a dead handle outlives the reuse of its liveness id. Returns how many ended.
    pub fn sweep(&self, me: &Owner) -> usize {
        let mut live = Liveness::new(true);
        self.records
            .iter()
            .filter(|r| {
                let o = r.owner.load(SeqCst);
                o != 0 && judge(o, me, self.file(), &mut live) == Judged::Dead && self.end_if(r, o)
            })
            .count()
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

/// The flight table of the file mapped by `region`.
pub fn flights_of(region: &Region) -> Flights<'_> {
    let p = region.params();
    // SAFETY: the region maps the whole file (its size checked at open), which starts with
    // a Header and holds FLIGHT_RECORDS records at `flights_offset` (8-aligned); every
    // field read after open is atomic; the borrow keeps the mapping alive.
    unsafe {
        let base = region.base();
        Flights::new(
            std::slice::from_raw_parts(
                base.add(p.flights_offset()).cast::<FlightRecord>(),
                FLIGHT_RECORDS,
            ),
            &*base.cast::<Header>(),
        )
    }
}

/// A wait for the flight of one key, holding what it needs to outlive its handle: the
/// mapping, the handle's owner identity and its closed flag. So a wait that runs on
/// another thread (the dispatcher of `dispatch.rs`) never touches a handle that
/// JavaScript may close meanwhile.
pub struct Waiter {
    region: Arc<Region>,
    owner: Arc<Owner>,
    closed: Arc<AtomicBool>,
    hash: u64,
    /// The record and owner word of the flight at the last look: a record that still
    /// holds them needs no search.
    seen: Option<(usize, u64)>,
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
            seen: None,
        }
    }

    /// The mapping of the file waited on.
    pub fn region(&self) -> &Arc<Region> {
        &self.region
    }

    /// The flight table of the mapping.
    pub fn flights(&self) -> Flights<'_> {
        flights_of(&self.region)
    }

    /// The index of the record that held the flight at the last look (or the home
    /// record of the key): what a sleeper sleeps on.
    pub fn record_index(&self) -> usize {
        self.seen
            .map_or((self.hash >> 40) as usize % FLIGHT_RECORDS, |(i, _)| i)
    }

    /// One look at the flight: `Some(end)` when the wait is over. `live`: whether (and
    /// what) to ask the kernel about another process's owner (else it counts as alive). `sync`:
    /// the caller blocks its thread, so a flight of this process ends the wait
    /// ([`End::Async`] with `until_async`, else [`End::Done`]); `until_async`: a flight
    /// marked async ends it too ([`End::Async`]).
    pub fn poll(&mut self, live: &mut Liveness, sync: bool, until_async: bool) -> Option<End> {
        if self.closed.load(SeqCst) {
            return Some(End::Closed);
        }
        let region = self.region.clone();
        let flights = flights_of(&region);
        loop {
            let i = match self.seen {
                Some((i, w))
                    if flights.record(i).owner.load(SeqCst) == w
                        && flights.record(i).key.load(SeqCst) == self.hash =>
                {
                    i
                }
                _ => match flights.find(self.hash) {
                    Some(i) => i,
                    None => return Some(End::Done),
                },
            };
            let r = flights.record(i);
            let o = r.owner.load(SeqCst);
            if o == 0 || r.key.load(SeqCst) != self.hash {
                self.seen = None;
                continue;
            }
            self.seen = Some((i, o));
            match judge(o, &self.owner, flights.file(), live) {
                Judged::Local if sync => {
                    return Some(if until_async { End::Async } else { End::Done });
                }
                Judged::Local => return None,
                Judged::Live => {
                    let async_ = until_async && r.mark.load(SeqCst) == mark_of(o);
                    return async_.then_some(End::Async);
                }
                Judged::Dead => {
                    if !flights.take_over(r, o, self.hash, &self.owner, false) {
                        continue;
                    }
                    if self.closed.load(SeqCst) {
                        // The handle closed meanwhile: it must not keep a flight.
                        flights.release(self.hash, &self.owner);
                        return Some(End::Closed);
                    }
                    return Some(End::Owner);
                }
            }
        }
    }

    /// Waits on the calling thread until the flight ends, its owner dies (then takes it
    /// over), `deadline` passes (`None`: no bound) or the handle is closed; with
    /// `until_async`, also until the owner marks its computation async. Never blocks on a
    /// flight of this process (see [`Waiter::poll`]). Sleeps on the record's futex word
    /// between looks, and asks about the owner's liveness every [`LIVENESS_PERIOD`].
    pub fn wait_sync(&mut self, deadline: Option<Instant>, until_async: bool) -> End {
        let mut next_liveness = Instant::now();
        let region = self.region.clone();
        let flights = flights_of(&region);
        loop {
            let r = flights.record(self.record_index());
            // Counted before the futex word is read: an end after the read wakes us.
            let _asleep = Sleeper::new(&r.waiters);
            let seq = r.seq.load(SeqCst);
            let now = Instant::now();
            let liveness = now >= next_liveness;
            if liveness {
                next_liveness = now + LIVENESS_PERIOD;
            }
            let before = self.record_index();
            if let Some(end) = self.poll(&mut Liveness::new(liveness), true, until_async) {
                return end;
            }
            if self.record_index() != before {
                continue; // the flight is in another record than the one counted on
            }
            let now = Instant::now();
            let mut nap = next_liveness.saturating_duration_since(now);
            if let Some(d) = deadline {
                if now >= d {
                    return End::Timeout;
                }
                nap = nap.min(d - now);
            }
            sleep_on(&r.seq, seq, nap);
        }
    }
}

/// Counts a sleeper on a futex word while it lives (saturating: garbage may be there).
pub struct Sleeper<'a>(&'a AtomicU32);

impl<'a> Sleeper<'a> {
    /// Counts one more sleeper in `count`.
    pub fn new(count: &'a AtomicU32) -> Sleeper<'a> {
        let _ = count.fetch_update(SeqCst, SeqCst, |n| Some(n.saturating_add(1)));
        Sleeper(count)
    }
}

impl Drop for Sleeper<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .fetch_update(SeqCst, SeqCst, |n| Some(n.saturating_sub(1)));
    }
}

/// Sleeps until `word` is woken or no longer `expected`, or `nap` passes (or a signal).
#[cfg(target_os = "linux")]
pub fn sleep_on(word: &AtomicU32, expected: u32, nap: Duration) {
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

/// Wakes every thread of every process sleeping on `word`.
#[cfg(target_os = "linux")]
pub fn wake_all(word: &AtomicU32) {
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
pub fn sleep_on(word: &AtomicU32, expected: u32, nap: Duration) {
    if word.load(SeqCst) == expected {
        std::thread::sleep(nap.min(Duration::from_millis(2)));
    }
}

/// Nothing to wake without a futex: sleepers wake by themselves.
#[cfg(not(target_os = "linux"))]
pub fn wake_all(_word: &AtomicU32) {}

/// The owner word of a flight, for tests that play a dead owner.
#[cfg(test)]
pub fn set_owner(r: &FlightRecord, hash: u64, word: u64) {
    r.key.store(hash, SeqCst);
    r.owner.store(word, SeqCst);
}
