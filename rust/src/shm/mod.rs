//! Cross-process store in a memory-mapped file (unix only).
//!
//! - [`layout`]: the `#[repr(C)]` header and slot header, sizes pinned by const asserts.
//! - [`region`]: opening, creating and validating the file, and mapping it.
//! - [`lock`]: the write lock (owner handles named by liveness ids that the kernel holds,
//!   dead-owner takeover, bounded waits).
//! - [`table`]: the hash table, slots (an entry of at most [`layout::INLINE_BYTES`] bytes
//!   of key and value in its slot's body), chunk chains and SIEVE queue inside the mapping.
//! - [`inspect`]: read-only inspection of a file (sizes, counters) that changes nothing.
//! - [`flight`]: cross-process single-flight (one computation of a key at a time, waiters
//!   sleeping on a futex in the mapping, dead owners taken over).
//! - [`dispatch`]: asynchronous flight waits, all of a JavaScript thread's on one thread.
//! - [`tags`]: the tag clock of a directory (`.warp_tags`): when each tag was last
//!   invalidated, read by every process through its mapping.
//!
//! Concurrency design:
//! - Readers take no lock and never wait for a writer. A sequence counter in the header
//!   is odd while a writer changes anything; a reader loads it, looks the key up and
//!   copies the value into its own buffer, then loads it again. A value is returned only
//!   when its checksum (over key hash, time, lengths, key and value) verifies on the copy
//!   that is returned, computed with the reader's own key: so a copy that verifies is
//!   this key's entry whatever the counter said, and is a hit even while a writer is
//!   active or stopped mid-write (updates are copy-on-write: the old entry stays intact
//!   until the new one is complete). What cannot be told without a stable counter
//!   (absent, inconsistent, a checksum that fails) is retried a bounded number of times,
//!   then, when the lock can be taken without waiting (free, or its owner dead), answered
//!   under it; otherwise it is a miss for that call. Hits set the SIEVE visited bit (in the slot's
//!   meta word, with an atomic OR that never undoes a writer's change of the lengths
//!   beside it) without the lock, and only when it is not set yet: a hit on a hot entry
//!   writes nothing shared but its handle's counter stripe.
//! - Writers take the lock word in the header (see [`lock`]), make the counter odd, write,
//!   make it even, and release. A writer that finds the counter odd on taking the lock
//!   knows its predecessor died (or panicked) mid-write, and rebuilds the structure from
//!   the slots whose chains and checksums verify before going on (see
//!   [`table::Table::rebuild`]).
//!   Waiting for a live owner is bounded: `set` gives up after [`SET_WAIT`] and does not
//!   store (the call still returns its value; a later `set` finding the same owner still
//!   there gives up at once), `delete` and `clear` give up after [`LONG_WAIT`] with
//!   [`Status::Busy`]; a process stopped while holding the lock (`SIGSTOP`, Ctrl-Z,
//!   `docker pause`, a debugger) freezes nobody.
//! - Counters (hits, misses, oversize skips, evictions) are atomics in the header, so
//!   their totals are exact across processes. Hits, misses and oversize skips are
//!   striped: each handle adds to the stripe (cache line) it was given round robin at
//!   open, and a total is the sum of the stripes, so that two processes hitting on two
//!   cores do not fight over one line. Evictions are written under the lock.
//! - Counters are best-effort after corruption: a rebuild caused by corruption (not by
//!   a dead writer) resets them, and so does any implausible value (above
//!   [`layout::COUNTER_LIMIT`]) found at open or by [`ShmStore::info`]. Entries are
//!   what the checksums protect.
//! - The TTL is a setting of the handle, not of the file: processes that open the same
//!   file with different TTLs each judge freshness by their own TTL, unless the entry was
//!   stored with a TTL of its own ([`ShmStore::set_with_ttl`]), which every handle honours
//!   (a handle without a TTL too). An entry expired for this handle is a miss for this
//!   handle and stays in the file for the others (a later `set` replaces it; eviction
//!   removes it). So is the stale window ([`ShmStore::set_stale`]): an entry older than its
//!   TTL but not than its TTL plus the window is a miss for `get` and a value for
//!   [`ShmStore::peek_stale`].
//!
//! ## Safety
//! Mapping a file is unsafe because the file can be modified, in or out of process, at
//! any time. This module reads the file only through atomics, raw-pointer copies that are
//! validated afterwards (sequence counter, checksum), or under the cross-process lock,
//! and bounds-checks every index it reads from the file against its own copy of the
//! parameters. Truncating the file from outside (which no code of ours does: bad files
//! are replaced by rename) would still raise `SIGBUS` in processes that map it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

use crate::error::Status;

pub mod dispatch;
pub mod flight;
pub mod inspect;
pub mod layout;
pub mod lock;
pub mod region;
pub mod table;
pub mod tags;

use flight::{Claim, End, Flights, Waiter};
use layout::{CounterStripe, Params, Stamp};
use region::Region;
use table::{Corrupt, Read, Table, mark_visited};

/// Lock-free read attempts before a reader that cannot tell (no stable sequence counter)
/// tries the lock without waiting, and otherwise misses.
const READ_ATTEMPTS: u32 = 64;

/// How long a `set` waits for a live lock owner before it gives up and does not store.
/// A legitimate hold lasts microseconds (a rebuild of a large file, milliseconds), but a
/// holder preempted on an overloaded machine can keep it for tens of milliseconds: at
/// 200 ms, the killed-writer test (`tests/fault_kill_test.ts`, 4 processes on 2 cores at
/// a load average of 10) saw a `set` give up once in about 1,000 kills.
pub const SET_WAIT: Duration = Duration::from_millis(500);

/// How long `delete`, `clear` (and open, when the file needs a repair) wait for a live
/// lock owner before they fail with [`Status::Busy`]. Open waits [`SET_WAIT`] when it only
/// lacks a stable snapshot, then opens without the full check.
pub const LONG_WAIT: Duration = Duration::from_secs(5);

/// Lock-free attempts of the check at open before it takes the lock (see
/// [`ShmStore::check_at_open`]).
const OPEN_CHECK_ATTEMPTS: u32 = 4;

/// An error of the shared store: a status for the C ABI and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShmError {
    pub status: Status,
    pub message: String,
}

impl ShmError {
    pub fn new(status: Status, message: impl Into<String>) -> ShmError {
        ShmError {
            status,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ShmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Result of [`ShmStore::get`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Get {
    /// Fresh entry; its value (this many bytes) is at the start of the output buffer.
    Hit(usize),
    /// Absent, expired or corrupt (counted as a miss).
    Miss,
    /// Present, but the value needs this many bytes, more than the buffer holds (not
    /// counted).
    TooSmall(usize),
}

/// Result of [`ShmStore::set`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Set {
    /// Stored (inserted or replaced).
    Stored,
    /// Not stored: the key or value is larger than its size limit, or the entry larger than
    /// the whole byte budget (counted).
    Skipped,
    /// Not stored: a live process kept the write lock for [`SET_WAIT`] (stopped, or in a
    /// debugger); not counted.
    Busy,
    /// Not stored ([`ShmStore::set_owned`]): this handle no longer owned the key's flight
    /// (a `delete`, `clear` or `set` by hand ended it, or another handle took it over);
    /// not counted.
    Lost,
}

/// Result of [`ShmStore::get_or_claim`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fetch {
    /// Fresh entry; its value (this many bytes) is at the start of the output buffer.
    Hit(usize),
    /// Present, but the value needs this many bytes, more than the buffer holds (not
    /// counted, nothing claimed).
    TooSmall(usize),
    /// Absent, expired or corrupt (counted as a miss), and what the claim of its flight
    /// found.
    Miss(Claim),
}

/// Counters and sizes of a shared store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Info {
    pub hits: u64,
    pub misses: u64,
    pub oversize_skips: u64,
    pub len: u64,
    pub capacity: u64,
    pub evictions: u64,
    pub max_key_size: u64,
    pub max_value_size: u64,
    /// Bytes of the chunks that the entries hold (at most `max_bytes`).
    pub bytes: u64,
    /// The byte budget of the entries.
    pub max_bytes: u64,
    /// Stale values returned (counted in `hits` too).
    pub stale_hits: u64,
    /// Background refreshes started.
    pub refreshes: u64,
}

impl Info {
    /// Takes the counters from `t` (the sizes stay as they are).
    pub(crate) fn set_counters(&mut self, t: &table::Totals) {
        self.hits = t.hits;
        self.misses = t.misses;
        self.oversize_skips = t.oversize_skips;
        self.evictions = t.evictions;
        self.stale_hits = t.stale_hits;
        self.refreshes = t.refreshes;
    }
}

/// How fresh an entry is for a handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Age {
    /// Younger than its TTL (or none).
    Fresh,
    /// At least its TTL old, younger than its TTL plus the stale window.
    Stale,
    /// Older: gone for this handle.
    Expired,
}

/// What a lookup returns and counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Fresh entries; counts and marks.
    Get,
    /// Fresh entries; counts and marks nothing.
    Peek,
    /// Fresh or stale entries; counts and marks nothing.
    PeekStale,
}

/// A handle on a shared cache file: one mapping, usable from any thread.
pub struct ShmStore {
    // `table` points into `region`'s mapping; both are dropped together (waits keep the
    // region alive by their own reference: see [`flight::Waiter`]).
    table: Table,
    region: Arc<Region>,
    ttl_ms: Option<f64>,
    /// The stale window after the TTL, in ms (0: none).
    stale_ms: f64,
    /// Set when the handle closes: its waits end.
    closed: Arc<AtomicBool>,
    path: PathBuf,
    /// The counter stripe of this handle (`< STRIPES`).
    stripe: usize,
    /// This handle as a lock (and flight) owner: its liveness id, and the in-process mutex
    /// of the file, shared by this process's handles on it (see [`lock`]).
    owner: Arc<lock::Owner>,
    /// The lock word a `set` last gave up on (0: none): a `set` that finds it still there
    /// gives up at once instead of waiting [`SET_WAIT`] again.
    stuck: AtomicU64,
}

impl ShmStore {
    /// Opens the cache file at `path` (creating or recreating it; see [`region`]) for at
    /// most `capacity` entries with keys up to `max_key_size` and values up to
    /// `max_value_size` bytes. Entries expire `ttl_ms` ms after insertion, as judged by
    /// this handle (`ttl_ms <= 0` or not finite: never).
    ///
    /// A valid file of other sizes that another handle (of any process, this one
    /// included) has open is adopted, not replaced: the handle shares it with the running
    /// processes and works with the file's sizes, which [`ShmStore::params`] and
    /// [`ShmStore::info`] report (the caller compares them with what it asked for and
    /// warns). A file of other sizes that no one has open is replaced by one of the sizes
    /// asked for. See [`region`]. The byte budget is the default (see
    /// [`ShmStore::open_sized`]).
    pub fn open(
        path: &Path,
        capacity: u32,
        max_key_size: u32,
        max_value_size: u32,
        ttl_ms: f64,
    ) -> Result<ShmStore, ShmError> {
        ShmStore::open_sized(path, capacity, max_key_size, max_value_size, 0, ttl_ms)
    }

    /// [`ShmStore::open`] with a byte budget: the entries' keys and values (in chunks of
    /// [`layout::CHUNK_SIZE`] bytes, see [`layout`]) take at most `max_bytes` bytes (0:
    /// [`layout::default_max_bytes`]).
    pub fn open_sized(
        path: &Path,
        capacity: u32,
        max_key_size: u32,
        max_value_size: u32,
        max_bytes: u64,
        ttl_ms: f64,
    ) -> Result<ShmStore, ShmError> {
        let params = Params::with_bytes(capacity, max_key_size, max_value_size, max_bytes)
            .map_err(|m| {
                ShmError::new(
                    Status::InvalidArgument,
                    format!("Cannot open the shared cache {}: {m}", path.display()),
                )
            })?;
        let (region, file) = open_with_own_file(path, params)?;
        // SAFETY: the region maps `region.params().file_size` bytes (page-aligned) whose
        // identity line matches `region.params()`, and is kept alive in the same struct as
        // the table.
        let table = unsafe { Table::new(region.base(), region.params()) };
        let owner = lock::Owner::open(file, lock::local_for(region.file_id())).map_err(|e| {
            ShmError::new(
                Status::Io,
                format!("Cannot take a liveness lock on {}: {e}", path.display()),
            )
        })?;
        // A liveness id may be a dead handle's: end its flights (and any other dead
        // owner's) before this handle judges any flight (see `flight.rs`).
        Flights::new(table.flights(), table.header()).sweep(&owner);
        let mut store = ShmStore {
            table,
            region: Arc::new(region),
            ttl_ms: (ttl_ms.is_finite() && ttl_ms > 0.0).then_some(ttl_ms),
            stale_ms: 0.0,
            closed: Arc::new(AtomicBool::new(false)),
            path: path.to_path_buf(),
            stripe: 0,
            owner: Arc::new(owner),
            stuck: AtomicU64::new(0),
        };
        store.check_at_open()?;
        // Round robin over the stripes; an atomic add, so no lock is needed.
        let next = store
            .table
            .header()
            .next_stripe
            .fetch_add(1, Ordering::Relaxed);
        store.stripe = next as usize % layout::STRIPES;
        Ok(store)
    }

    /// Sets the stale window of this handle: an entry at least its TTL old but younger
    /// than its TTL plus `stale_ms` is stale (`get` misses and keeps it, `peek_stale`
    /// returns it). Not positive or not finite: none (an infinite window is refused by the
    /// caller).
    pub fn set_stale(&mut self, stale_ms: f64) {
        self.stale_ms = if stale_ms.is_finite() && stale_ms > 0.0 {
            stale_ms
        } else {
            0.0
        };
    }

    /// Checks the whole structure once at open, and repairs it when it is inconsistent.
    ///
    /// A file that passes the identity check may still hold a structure that is
    /// inconsistent without any single operation noticing (found by fuzzing: garbage
    /// queue links that looked plausible), so open checks every invariant
    /// ([`Table::check`]: O(capacity) plus the checksums of the live entries).
    ///
    /// The check runs first without the lock, against a seqlock snapshot: when the
    /// sequence counter is even and unchanged around it, what it saw was a state that
    /// some writer left complete, and a pass needs nothing more. So reopening a valid
    /// file (a restarted worker) stalls no other process: readers never wait on it and
    /// writers do not either. A check that a writer interrupts (the counter moved; it is
    /// polled during the check, see [`table::CHECK_POLL`]) is retried
    /// [`OPEN_CHECK_ATTEMPTS`] times. Only then, or when the file was seen inconsistent,
    /// is it checked again under the write lock with the counter left even (readers go
    /// on; writers wait for one check), and only a file still inconsistent there, or
    /// left mid-write by a dead writer (odd counter), is rebuilt (see [`Self::locked`]).
    /// A rebuild for corruption resets the counters; implausible counters are reset even
    /// when the structure is fine (garbage over the counter lines only).
    fn check_at_open(&self) -> Result<(), ShmError> {
        let h = self.table.header();
        let mut seen_inconsistent = false;
        for attempt in 0..OPEN_CHECK_ATTEMPTS {
            let s1 = h.seq.load(Ordering::Acquire);
            if s1 & 1 == 0 {
                let r = self.table.check(|| h.seq.load(Ordering::Relaxed) != s1);
                fence(Ordering::Acquire);
                if h.seq.load(Ordering::Relaxed) == s1 {
                    if r.is_ok() && self.table.counters_plausible() {
                        return Ok(());
                    }
                    seen_inconsistent = true;
                    break; // seen inconsistent: check again, and repair, under the lock
                }
            }
            // A writer is at work: let it finish.
            if attempt < 2 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        {
            let wait = if seen_inconsistent {
                LONG_WAIT
            } else {
                SET_WAIT
            };
            let Some(_held) = lock::acquire(&h.lock, &self.owner, lock::Wait::at_most(wait)) else {
                if !seen_inconsistent {
                    // A live writer keeps the lock (stopped mid-write, say) and no stable
                    // snapshot could be had: its file passed the identity check and every
                    // operation verifies what it reads, so open without the full check
                    // rather than stall (the next writer repairs whatever it finds).
                    return Ok(());
                }
                return Err(ShmError::new(
                    Status::Busy,
                    format!(
                        "Cannot open the shared cache {}: it needs a repair, and its write lock is held by a live process that has not released it for {} s (stopped, or paused in a debugger?)",
                        self.path.display(),
                        LONG_WAIT.as_secs()
                    ),
                ));
            };
            // Writers wait; the counter stays even, so readers do not.
            if h.seq.load(Ordering::Relaxed) & 1 == 0
                && self.table.validate().is_ok()
                && self.table.counters_plausible()
            {
                return Ok(());
            }
        }
        self.locked("open", |t| {
            if t.validate().is_err() {
                t.rebuild();
                t.reset_counters();
            }
            if !t.counters_plausible() {
                t.reset_counters();
            }
            Ok(())
        })
    }

    /// Takes the write lock as a writer of this handle would, without changing anything
    /// (for tests and `examples/shm_hold.rs`, which play a stuck or dying writer). Waits
    /// at most [`LONG_WAIT`].
    #[doc(hidden)]
    pub fn hold_lock(&self) -> Option<lock::Held<'_>> {
        lock::acquire(
            &self.table.header().lock,
            &self.owner,
            lock::Wait::at_most(LONG_WAIT),
        )
    }

    /// The file's parameters.
    pub fn params(&self) -> Params {
        self.table.params()
    }

    /// The path given at open.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How fresh an entry stamped `stamp` is at `now` for this handle: by its own TTL if it
    /// has one, else by this handle's. Fresh while `age < ttl`, stale while
    /// `ttl <= age < ttl + stale`. A `now` of `NaN` is read from the wall clock, and only
    /// for an entry that has a TTL (a lookup without one reads no clock).
    fn age(&self, stamp: Stamp, now: f64) -> Age {
        let ttl = if stamp.ttl != 0 {
            f64::from_bits(stamp.ttl)
        } else if let Some(ttl) = self.ttl_ms {
            ttl
        } else {
            return Age::Fresh;
        };
        if ttl == f64::INFINITY {
            return Age::Fresh;
        }
        let now = if now.is_nan() {
            crate::clock::wall_ms()
        } else {
            now
        };
        let age = now - f64::from_bits(stamp.at);
        if age >= ttl + self.stale_ms {
            Age::Expired
        } else if age >= ttl {
            Age::Stale
        } else {
            Age::Fresh
        }
    }

    /// Whether an entry of this age is returned in `mode`.
    fn usable(age: Age, mode: Mode) -> bool {
        age == Age::Fresh || (age == Age::Stale && mode == Mode::PeekStale)
    }

    /// Runs `f` under the write lock, waiting at most [`LONG_WAIT`] for a live owner (then
    /// [`Status::Busy`], with `what` the operation, e.g. "delete from").
    fn locked<R>(
        &self,
        what: &str,
        f: impl FnMut(&Table) -> Result<R, Corrupt>,
    ) -> Result<R, ShmError> {
        self.locked_within(lock::Wait::at_most(LONG_WAIT), f)?
            .ok_or_else(|| {
                ShmError::new(
                    Status::Busy,
                    format!(
                        "Cannot {what} the shared cache {}: its write lock is held by a live process that has not released it for {} s (stopped, or paused in a debugger?)",
                        self.path.display(),
                        LONG_WAIT.as_secs()
                    ),
                )
            })
    }

    /// Runs `f` under the write lock with the sequence counter odd; when `f` finds the
    /// structure inconsistent, rebuilds it and runs `f` once more. `None` when the lock
    /// stayed with a live owner for as long as `wait` allows.
    fn locked_within<R>(
        &self,
        wait: lock::Wait,
        mut f: impl FnMut(&Table) -> Result<R, Corrupt>,
    ) -> Result<Option<R>, ShmError> {
        let h = self.table.header();
        // Released when dropped, also while unwinding from a panic (then the sequence
        // counter stays odd and the next writer rebuilds).
        let Some(held) = lock::acquire(&h.lock, &self.owner, wait) else {
            return Ok(None);
        };
        let seq = h.seq.load(Ordering::Relaxed);
        if seq & 1 == 1 {
            // The previous writer died (or panicked) mid-write; the counter stays odd.
            // Counters are atomics that no writer leaves half-done: they stay, unless
            // they are garbage (an odd counter may be garbage too).
            fence(Ordering::Acquire);
            self.table.rebuild();
            if !self.table.counters_plausible() {
                self.table.reset_counters();
            }
        } else {
            h.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        }
        fence(Ordering::Release);
        let r = match f(&self.table) {
            Ok(r) => Ok(Some(r)),
            Err(Corrupt) => {
                // Corruption: the counters may be garbage as well (best effort).
                self.table.rebuild();
                self.table.reset_counters();
                f(&self.table).map(Some).map_err(|Corrupt| {
                    ShmError::new(
                        Status::Corrupt,
                        format!(
                            "The shared cache {} is inconsistent even after a rebuild",
                            self.path.display()
                        ),
                    )
                })
            }
        };
        // A store, not an atomic add: only the lock holder writes the counter.
        h.seq.store(
            h.seq.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Release,
        );
        drop(held);
        r
    }

    /// Looks `key` up at time `now` (ms; `NaN`: the wall clock, read only when the entry has
    /// a TTL) and copies its value into `out`. Counts a hit
    /// or a miss (not `TooSmall`). Expired entries (by this handle's TTL) are misses and
    /// stay in the file; corrupt ones are misses and are dropped when the lock is free.
    ///
    /// Never waits for a writer: a copy whose checksum verifies for `key` is a hit even
    /// while the sequence counter is odd or changing; what cannot be told without a stable
    /// counter is retried [`READ_ATTEMPTS`] times, then answered under the lock if it can
    /// be taken without waiting, else a miss.
    pub fn get(&self, key: &[u8], out: &mut [u8], now: f64) -> Result<Get, ShmError> {
        self.lookup(key, out, now, Mode::Get)
    }

    /// [`ShmStore::get`] without counting a hit or a miss and without setting the visited
    /// bit: what `cacheGet()` reads.
    pub fn peek(&self, key: &[u8], out: &mut [u8], now: f64) -> Result<Get, ShmError> {
        self.lookup(key, out, now, Mode::Peek)
    }

    /// [`ShmStore::peek`] that also returns a stale entry (see [`ShmStore::set_stale`]).
    pub fn peek_stale(&self, key: &[u8], out: &mut [u8], now: f64) -> Result<Get, ShmError> {
        self.lookup(key, out, now, Mode::PeekStale)
    }

    /// The read of [`ShmStore::get`], [`ShmStore::peek`] and [`ShmStore::peek_stale`]:
    /// [`ShmStore::look`], counted.
    fn lookup(&self, key: &[u8], out: &mut [u8], now: f64, mode: Mode) -> Result<Get, ShmError> {
        let r = self.look(key, self.table.hash(key), out, now, mode, &mut None)?;
        self.count(mode == Mode::Get, r);
        Ok(r)
    }

    /// Looks `key` (whose hash is `hash`) up without counting (see [`ShmStore::get`]); in
    /// [`Mode::Get`], a hit sets the visited bit. A miss because the key was absent at a
    /// stable sequence counter leaves that counter in `absent_at`.
    fn look(
        &self,
        key: &[u8],
        hash: u64,
        out: &mut [u8],
        now: f64,
        mode: Mode,
        absent_at: &mut Option<u64>,
    ) -> Result<Get, ShmError> {
        let touch = mode == Mode::Get;
        let h = self.table.header();
        for attempt in 0..READ_ATTEMPTS {
            let s1 = h.seq.load(Ordering::Acquire);
            let read = self.table.read(key, hash, out);
            fence(Ordering::Acquire);
            let stable = s1 & 1 == 0 && h.seq.load(Ordering::Relaxed) == s1;
            match read {
                Read::Found {
                    slot,
                    len,
                    stamp,
                    checksum,
                    visited,
                } if len <= out.len() => {
                    let sum = self.table.checksum(hash, stamp, key, &out[..len]);
                    if sum == checksum {
                        // This key's entry, intact, whatever writers did meanwhile.
                        if !Self::usable(self.age(stamp, now), mode) {
                            return Ok(Get::Miss);
                        }
                        if touch
                            && !visited
                            && let Ok(s) = self.table.slot(slot)
                        {
                            mark_visited(&s.h.meta);
                        }
                        return Ok(Get::Hit(len));
                    }
                    if stable {
                        // Stable but wrong: corrupt. Drop it under the lock if it is free.
                        return self.look_locked(key, hash, out, now, mode);
                    }
                }
                Read::Found { len, .. } if stable => return Ok(Get::TooSmall(len)),
                Read::Absent if stable => {
                    *absent_at = Some(s1);
                    return Ok(Get::Miss);
                }
                Read::Inconsistent if stable => {
                    return self.look_locked(key, hash, out, now, mode);
                }
                _ => {}
            }
            backoff(attempt);
        }
        self.look_locked(key, hash, out, now, mode)
    }

    /// Counts a lookup's outcome on this handle's stripe, when `touch`.
    fn count(&self, touch: bool, r: Get) {
        if !touch {
            return;
        }
        match r {
            Get::Hit(_) => self.counters().hits.fetch_add(1, Ordering::Relaxed),
            Get::Miss => self.counters().misses.fetch_add(1, Ordering::Relaxed),
            Get::TooSmall(_) => 0,
        };
    }

    /// [`ShmStore::look_locked`], counted (tests).
    #[cfg(test)]
    fn get_locked(
        &self,
        key: &[u8],
        hash: u64,
        out: &mut [u8],
        now: f64,
        mode: Mode,
    ) -> Result<Get, ShmError> {
        let r = self.look_locked(key, hash, out, now, mode)?;
        self.count(mode == Mode::Get, r);
        Ok(r)
    }

    /// [`ShmStore::look`] under the lock, if it can be taken without waiting (free, or its
    /// owner dead: then this reader repairs), else a miss: the fallback for a reader that
    /// kept seeing writers, and the path that drops corrupt entries. Counts nothing.
    fn look_locked(
        &self,
        key: &[u8],
        hash: u64,
        out: &mut [u8],
        now: f64,
        mode: Mode,
    ) -> Result<Get, ShmError> {
        let touch = mode == Mode::Get;
        let r = self.locked_within(lock::Wait::No, |t| {
            let Some((_, slot, _)) = t.find(key, hash)? else {
                return Ok(Get::Miss);
            };
            if !t.verify(slot) {
                t.remove_slot_hashed(slot, hash)?;
                return Ok(Get::Miss);
            }
            let s = t.slot(slot)?;
            let stamp = Stamp {
                at: s.h.inserted_at.load(Ordering::Relaxed),
                ttl: s.h.own_ttl.load(Ordering::Relaxed),
            };
            if !Self::usable(self.age(stamp, now), mode) {
                return Ok(Get::Miss); // expired for this handle only: left for the others
            }
            let len = layout::meta_value_len(s.meta());
            if len > out.len() {
                return Ok(Get::TooSmall(len));
            }
            t.copy_value(slot, out)?;
            if touch {
                mark_visited(&s.h.meta);
            }
            Ok(Get::Hit(len))
        })?;
        Ok(r.unwrap_or(Get::Miss))
    }

    /// [`ShmStore::get`] that claims the key's flight when it misses (see [`flight`]): what
    /// a cached call does, in one call instead of a lookup, a claim and a second lookup.
    /// A hit is counted and returned as by `get`. On a miss it takes the write lock (waiting
    /// at most [`SET_WAIT`]), looks the key up again under it (another process may have
    /// stored it since the lock-free look, its whole flight fitting in between: then it is
    /// a hit after all), and claims the flight as [`ShmStore::claim`] does (async mark: none;
    /// see [`ShmStore::mark_async`]); the miss is counted. [`Fetch::Miss`] of
    /// [`Claim::Owner`]: compute, then store with [`ShmStore::set_owned`] (or
    /// [`ShmStore::release`]).
    pub fn get_or_claim(&self, key: &[u8], out: &mut [u8], now: f64) -> Result<Fetch, ShmError> {
        let hash = self.table.hash(key);
        let mut absent_at = None;
        match self.look(key, hash, out, now, Mode::Get, &mut absent_at)? {
            Get::Hit(n) => {
                self.count(true, Get::Hit(n));
                return Ok(Fetch::Hit(n));
            }
            Get::TooSmall(n) => return Ok(Fetch::TooSmall(n)),
            Get::Miss => {}
        }
        let claim = if self.closed.load(Ordering::SeqCst) {
            Claim::None
        } else {
            let h = self.table.header();
            // The lock only serializes claims (and is not the seqlock's write): the
            // sequence counter is left as found, so a dead writer's odd counter still gets
            // its rebuild, and what is read here is checked like a lock-free read.
            // As long as an insert waits (not again while the owner it gave up on still
            // holds the lock: every miss of every call would block its thread that long).
            match lock::acquire(&h.lock, &self.owner, self.set_wait()) {
                // Nobody wrote since the key was seen absent (every write moves the
                // counter, and none runs while the lock is held): it still is.
                Some(_held)
                    if absent_at.is_some() && absent_at == Some(h.seq.load(Ordering::Acquire)) =>
                {
                    self.flights().claim(hash, &self.owner, false)
                }
                Some(_held) => match self.table.read(key, hash, out) {
                    Read::Found {
                        slot,
                        len,
                        stamp,
                        checksum,
                        visited,
                    } if len <= out.len()
                        && self.table.checksum(hash, stamp, key, &out[..len]) == checksum
                        && Self::usable(self.age(stamp, now), Mode::Get) =>
                    {
                        if !visited && let Ok(s) = self.table.slot(slot) {
                            mark_visited(&s.h.meta);
                        }
                        self.count(true, Get::Hit(len));
                        return Ok(Fetch::Hit(len));
                    }
                    _ => self.flights().claim(hash, &self.owner, false),
                },
                None => {
                    self.busy();
                    Claim::None
                }
            }
        };
        self.count(true, Get::Miss);
        Ok(Fetch::Miss(claim))
    }

    /// Stores `key -> value` inserted at `now` (ms), replacing the value and time of an
    /// existing key; evicts by SIEVE until a slot and enough of the byte budget are free.
    /// A key or value larger than its size limit, or an entry larger than the whole byte
    /// budget, is skipped and counted. When a live process keeps the lock for [`SET_WAIT`]
    /// (stopped, or in a debugger), nothing is stored ([`Set::Busy`]); while that same
    /// owner keeps it, later calls give up without waiting.
    pub fn set(&self, key: &[u8], value: &[u8], now: f64) -> Result<Set, ShmError> {
        self.set_with_ttl(key, value, now, 0.0)
    }

    /// [`ShmStore::set`] with the entry's own TTL `ttl` ms (`+Infinity`: never expires; not
    /// positive or NaN: none, each handle judges it by its own TTL), which every handle
    /// honours. Hits do not extend it.
    pub fn set_with_ttl(
        &self,
        key: &[u8],
        value: &[u8],
        now: f64,
        ttl: f64,
    ) -> Result<Set, ShmError> {
        if !self.table.fits(key.len(), value.len()) {
            self.counters()
                .oversize_skips
                .fetch_add(1, Ordering::Relaxed);
            // The entry that this value replaces must not stay (as in the memory stores):
            // every process would keep reading the value that this one replaced.
            if key.len() <= self.params().max_key_size as usize {
                let hash = self.table.hash(key);
                if self
                    .locked_within(self.set_wait(), |t| t.remove_key(key, hash))?
                    .is_none()
                {
                    return Ok(self.busy());
                }
            }
            return Ok(Set::Skipped);
        }
        let hash = self.table.hash(key);
        let stamp = Stamp::new(now, ttl);
        let sum = self.table.checksum(hash, stamp, key, value);
        match self.locked_within(self.set_wait(), |t| t.store(key, hash, value, stamp, sum))? {
            Some(_) => Ok(Set::Stored),
            None => Ok(self.busy()),
        }
    }

    /// How long an insert waits for the lock: [`SET_WAIT`], or not at all while the owner
    /// that an earlier insert gave up on still holds it (a dead one is taken over).
    fn set_wait(&self) -> lock::Wait {
        let stuck = self.stuck.load(Ordering::Relaxed);
        if stuck != 0 && self.table.header().lock.load(Ordering::Relaxed) == stuck {
            lock::Wait::No
        } else {
            lock::Wait::at_most(SET_WAIT)
        }
    }

    /// [`Set::Busy`], remembering the owner that kept the lock (see [`ShmStore::set_wait`]).
    fn busy(&self) -> Set {
        let word = self.table.header().lock.load(Ordering::Relaxed);
        self.stuck.store(word, Ordering::Relaxed);
        Set::Busy
    }

    /// [`ShmStore::set_with_ttl`] by the owner of the key's flight, which it ends: stores
    /// only while this handle still owns the flight (checked under the write lock: a
    /// `delete`, `clear` or `set` by hand in any process, or a takeover, ended it, and the
    /// value computed before must not be stored over theirs), else [`Set::Lost`]. The
    /// flight ends in every case (stored, skipped, lost or busy), as
    /// [`ShmStore::release`] ends it: one call instead of an ownership check, a `set` and
    /// a release.
    pub fn set_owned(&self, key: &[u8], value: &[u8], now: f64, ttl: f64) -> Result<Set, ShmError> {
        let hash = self.table.hash(key);
        let flights = self.flights();
        if !self.table.fits(key.len(), value.len()) {
            self.counters()
                .oversize_skips
                .fetch_add(1, Ordering::Relaxed);
            flights.release(hash, &self.owner);
            return Ok(Set::Skipped);
        }
        let stamp = Stamp::new(now, ttl);
        let sum = self.table.checksum(hash, stamp, key, value);
        let mut found = None;
        let mut looked = false;
        let r = self.locked_within(self.set_wait(), |t| {
            looked = true;
            found = flights.mine(hash, &self.owner);
            if found.is_none() {
                return Ok(false);
            }
            t.store(key, hash, value, stamp, sum).map(|_| true)
        });
        // After the lock: waiters that wake read a complete entry. (Without the lock, the
        // flight is looked for again.)
        if looked {
            flights.release_found(found, hash, &self.owner);
        } else {
            flights.release(hash, &self.owner);
        }
        Ok(match r? {
            Some(true) => Set::Stored,
            Some(false) => Set::Lost,
            None => self.busy(),
        })
    }

    /// Removes `key`; returns whether it was present. Ends the key's flight, whoever owns
    /// it (its waiters wake with [`End::Done`]). Fails with [`Status::Busy`] when a
    /// live process keeps the lock for [`LONG_WAIT`] (the flight is ended all the same).
    pub fn delete(&self, key: &[u8]) -> Result<bool, ShmError> {
        let hash = self.table.hash(key);
        let flights = self.flights();
        // The flight ends under the lock too: an owner storing with `set_owned` after the
        // removal finds it ended, and does not put back a value computed before it.
        let r = self.locked("delete from", |t| {
            let removed = t.remove_key(key, hash);
            flights.end(hash);
            removed
        });
        flights.end(hash);
        r
    }

    /// Removes every entry, resets every counter (oversize skips included) and ends every
    /// flight. Fails with [`Status::Busy`] when a live process keeps the lock for
    /// [`LONG_WAIT`] (the flights are ended all the same).
    pub fn clear(&self) -> Result<(), ShmError> {
        let flights = self.flights();
        // The flights end under the lock too (as in `delete`): an owner storing with
        // `set_owned` after the clear finds its flight ended, and does not put back a value
        // computed before it.
        let r = self.locked("clear", |t| {
            t.clear();
            t.reset_counters();
            flights.end_all();
            Ok(())
        });
        flights.end_all();
        r
    }

    /// The flight table of the file.
    pub fn flights(&self) -> Flights<'_> {
        Flights::new(self.table.flights(), self.table.header())
    }

    /// Claims the computation of `key` for this handle (see [`flight`]): [`Claim::Owner`]
    /// (compute, then [`ShmStore::release`]), [`Claim::Wait`] (a live handle of another
    /// process has it), [`Claim::Local`] (a live handle of this process has it: a
    /// synchronous caller must not block on it) or [`Claim::None`] (no free record, or the
    /// write lock stayed with a live process for [`SET_WAIT`]: compute without a flight).
    /// `async_`: the computation is known to be async (recorded for synchronous waiters;
    /// see [`ShmStore::mark_async`]).
    pub fn claim(&self, key: &[u8], async_: bool) -> Claim {
        if self.closed.load(Ordering::SeqCst) {
            return Claim::None;
        }
        let hash = self.table.hash(key);
        let h = self.table.header();
        // The lock only serializes claims (and is not the seqlock's write): the sequence
        // counter is left as found, so a dead writer's odd counter still gets its rebuild.
        match lock::acquire(&h.lock, &self.owner, self.set_wait()) {
            Some(_held) => self.flights().claim(hash, &self.owner, async_),
            None => {
                self.busy();
                Claim::None
            }
        }
    }

    /// Records that this handle's computation of `key` is async (it returned a Promise),
    /// and wakes the key's synchronous waiters that asked to know. Nothing when this
    /// handle does not own the key's flight.
    pub fn mark_async(&self, key: &[u8]) {
        self.flights().mark_async(self.table.hash(key), &self.owner);
    }

    /// Whether this handle owns the flight of `key` (the very word it issued for it: a
    /// `delete`, `set` or `clear` in any process, or a takeover, ends that).
    pub fn owns(&self, key: &[u8]) -> bool {
        self.flights().owns(self.table.hash(key), &self.owner)
    }

    /// Ends this handle's flight of `key`, waking its waiters. Idempotent.
    pub fn release(&self, key: &[u8]) {
        self.flights().release(self.table.hash(key), &self.owner);
    }

    /// Ends every flight of `key`, whoever owns it, in any process (a `set` by hand: the
    /// computation under way must not store its result over it).
    pub fn end_flight(&self, key: &[u8]) {
        self.flights().end(self.table.hash(key));
    }

    /// A wait for the flight of `key` that does not borrow the handle (see
    /// [`flight::Waiter`]), for a dispatcher (see [`dispatch`]).
    pub fn waiter(&self, key: &[u8]) -> Waiter {
        Waiter::new(
            self.region.clone(),
            self.owner.clone(),
            self.closed.clone(),
            self.table.hash(key),
        )
    }

    /// Waits on this thread for the flight of `key` to end, at most `ms` ms (not finite:
    /// no bound), never on a flight of this process; with `until_async`, also until its
    /// owner marks it async (see [`flight::Waiter::wait_sync`]).
    pub fn wait_sync(&self, key: &[u8], ms: f64, until_async: bool) -> End {
        self.waiter(key).wait_sync(deadline_after(ms), until_async)
    }

    /// Counts a stale value returned: one counted miss turned into a hit (see
    /// [`ShmStore::count_hit`]) and a stale hit; with `joined`, the stale hit only (the
    /// call was counted as a hit already: it joined a computation, then got the stale
    /// value when its timeout passed).
    pub fn count_stale_hit(&self, joined: bool) {
        if !joined {
            self.count_hit();
        }
        self.counters().stale_hits.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a background refresh started.
    pub fn count_refresh(&self) {
        self.counters().refreshes.fetch_add(1, Ordering::Relaxed);
    }

    /// Turns one counted miss into a hit (a caller that joined another's pending
    /// computation). Misses do not go below 0 (after a clear); hits always grow by 1.
    ///
    /// The miss is taken from this handle's stripe, where this handle counted it, or
    /// when that stripe is at 0 (a clear, or the miss was counted by another handle of
    /// the stripe) from the first stripe that has one, so the totals stay exact.
    pub fn count_hit(&self) {
        let h = self.table.header();
        for i in 0..layout::STRIPES {
            let m = &h.stripe(self.stripe + i).misses;
            if m.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| m.checked_sub(1))
                .is_ok()
            {
                break;
            }
        }
        self.counters().hits.fetch_add(1, Ordering::Relaxed);
    }

    /// This handle's counter stripe.
    #[inline]
    fn counters(&self) -> &CounterStripe {
        self.table.header().stripe(self.stripe)
    }

    /// The stripe of this handle (tests).
    #[cfg(test)]
    pub(crate) fn stripe_index(&self) -> usize {
        self.stripe
    }

    /// Number of entries (expired ones included until they are replaced or evicted).
    pub fn len(&self) -> usize {
        let len = self.table.header().len.load(Ordering::Relaxed);
        len.min(self.params().capacity) as usize
    }

    /// Whether the store holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counters and sizes.
    ///
    /// Hits, misses and oversize skips are the sums of the stripes. Counters found
    /// implausible (garbage written over a mapped file) are reset under the lock first.
    pub fn info(&self) -> Info {
        if !self.table.counters_plausible() {
            // Best effort, without waiting: when the lock is busy (or on an error) the
            // garbage is reported as is.
            let _ = self.locked_within(lock::Wait::No, |t| {
                if !t.counters_plausible() {
                    t.reset_counters();
                }
                Ok(())
            });
        }
        let p = self.params();
        let mut info = Info {
            len: self.len() as u64,
            capacity: u64::from(p.capacity),
            max_key_size: u64::from(p.max_key_size),
            max_value_size: u64::from(p.max_value_size),
            bytes: self.table.bytes_used(),
            max_bytes: p.max_bytes,
            ..Info::default()
        };
        info.set_counters(&self.table.counter_totals());
        info
    }

    /// The table, for tests and the fuzz targets (`rust/fuzz/`).
    #[doc(hidden)]
    pub fn table(&self) -> &Table {
        &self.table
    }
}

impl Drop for ShmStore {
    /// Ends this handle's waits and flights: nobody waits for a handle that is gone.
    fn drop(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
        self.flights().close(&self.owner);
        dispatch::ring_all();
    }
}

/// The deadline `ms` ms from now: `None` (no bound) when `ms` is not finite or too far to
/// represent; now when it is not positive.
pub fn deadline_after(ms: f64) -> Option<Instant> {
    if ms.is_nan() {
        return Some(Instant::now());
    }
    let d = Duration::try_from_secs_f64(ms.max(0.0) / 1000.0).ok()?;
    Instant::now().checked_add(d)
}

/// Opens the region at `path`, and a second descriptor of the region's file for the
/// handle's liveness lock (see [`lock`]): a duplicate, so it shares the region's open file
/// description (whose locks are on other bytes) and surely names the very file mapped.
fn open_with_own_file(path: &Path, params: Params) -> Result<(Region, std::fs::File), ShmError> {
    let region = Region::open(path, params)?;
    let file = region
        .file()
        .try_clone()
        .map_err(|e| ShmError::new(Status::Io, format!("Cannot open {}: {e}", path.display())))?;
    Ok((region, file))
}

fn backoff(attempt: u32) {
    if attempt < 32 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod chunk_tests;
#[cfg(test)]
mod flight_tests;
#[cfg(test)]
mod inline_tests;
#[cfg(test)]
mod open_tests;
#[cfg(test)]
mod test_dir;
#[cfg(test)]
mod tests;
