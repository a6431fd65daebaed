//! The cross-process write lock: a spinlock word in the file header that names its owner
//! handle, so that a waiter can tell a dead owner from a slow one, behind an in-process
//! mutex per file.
//!
//! ## Owners are handles, and their liveness is held by the kernel
//!
//! On Linux every handle ([`super::ShmStore`]) holds, for as long as it lives, an
//! open-file-description lock (`fcntl(F_OFD_SETLK)`, Linux 3.15 and later) on one byte
//! of the cache file, at [`LIVENESS_BASE`]` + id` (far past the end of the file, which
//! such locks allow; no data is ever there). The id (0 to [`MAX_IDS`]` - 1`) is the first
//! byte that a non-blocking `F_OFD_SETLK` gets at open ([`Owner::open`]). The kernel
//! releases the lock when the last descriptor of that open file description is closed,
//! which includes the death of the process in any way. A waiter asks the kernel with
//! `F_OFD_GETLK` whether anyone holds the owner's byte: no lock means the owner is gone.
//! That answer is kernel state about the file, so it holds across PID namespaces
//! (containers sharing `/dev/shm`), where a pid means nothing (hole 19 of RELIABILITY.md:
//! the previous design named the owner by pid and start time, and two writers in two
//! PID namespaces took the lock from each other). Byte `1 << 39` belongs to another use
//! (the "file in use" lock taken at open) and is never one of ours. A child forked without
//! `exec` shares its parent's descriptors, and with them the parent's liveness ids, until
//! it exits (our descriptors are close-on-exec; Deno never forks without `exec`).
//!
//! Elsewhere (macOS, the BSDs: no open-file-description locks, and classic `fcntl` locks
//! are dropped when the process closes *any* descriptor of the file, which opening a
//! second handle does) the owner tag is the process id and a waiter uses `kill(pid, 0)`:
//! those systems have no PID namespaces, and a reused pid makes waiters wait (within the
//! bounds below) until that process exits. That path compiles and is unit-tested on
//! Linux too ([`pid_alive`]).
//!
//! ## The word
//!
//! `tag | counter << 32 | check << 48`: the owner tag (liveness id, or pid), a 16-bit
//! counter that the handle bumps on every acquisition, and a 16-bit check of the other
//! 48 bits whose top bit is always set (so a word is never 0, the free value). The
//! counter makes a takeover ABA-safe: a waiter that judged the owner dead replaces the
//! exact word it judged with a compare-and-swap, so an id that died and was reused by a
//! new handle which took the lock in between has another word and is not taken over. The
//! check makes garbage (random bytes over a mapped file) a dead owner without asking
//! anyone: a word whose check fails names nobody. Garbage that passes the check (2^-16)
//! and names an id that is live is waited for like a live owner, within the bounds below,
//! until that owner writes (it finds its own tag: see below) or closes.
//!
//! ## Threads of one process
//!
//! The tag names a handle (or a process), not a thread, and several threads may share one
//! handle; so the threads of one process first take an in-process mutex of the file (one
//! per device and inode, see [`local_for`]), and only then the word. Holding that mutex, a
//! thread that finds a tag of its own process in the word (this handle's or another
//! handle's on the same file) knows that no thread of its process holds the lock: the word
//! is stale (garbage) and is taken over. The mutex also lets the threads of one process
//! sleep on a condition variable instead of polling the word. (An earlier design counted
//! the locks held by the process's threads instead; a thread preempted between taking the
//! word and counting it let a second thread take the same word: hole 5 of RELIABILITY.md.)
//!
//! ## Waiting is bounded
//!
//! A waiter spins, then yields, then sleeps briefly; once it has waited a little it asks
//! about every millisecond whether the owner is alive, and takes a dead owner's word over
//! with a compare-and-swap, so that of several waiters exactly one does; it then repairs
//! the store (see `table.rs`) when the sequence counter shows that the owner died
//! mid-write. A live owner that does not release (stopped by `SIGSTOP`, Ctrl-Z,
//! `docker pause`, a debugger) is never taken over; callers give up after a bound of their
//! choice instead ([`Wait`]; `set` after [`super::SET_WAIT`], `delete` and `clear` after
//! [`super::LONG_WAIT`], lock-free readers never wait).
//!
//! ## Why not a robust process-shared mutex (LMDB)
//!
//! A `pthread_mutex` with `PTHREAD_MUTEX_ROBUST` in the file also survives the death of
//! its owner, but its state lives in the file: garbage written over it can make
//! `pthread_mutex_lock` wait forever or fail in ways that cannot be repaired from user
//! space, and G5 of RELIABILITY.md (a garbage lock word never blocks) would not hold.
//! Here garbage can only name a dead owner (or, behind a 16-bit check, a live one that
//! does not hold the lock, waited for within bounds), and liveness is kernel state that
//! the file cannot corrupt. The uncontended path is one compare-and-swap either way.

use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

/// How often a waiter checks whether the owner is alive.
const LIVENESS_PERIOD: Duration = Duration::from_millis(1);

/// Spins before the first liveness check and before yielding.
const SPINS: u32 = 128;

/// Byte offset of the first liveness byte: far past the end of any cache file (at most
/// `MAX_FILE_SIZE`, under `1 << 37`), and above the "file in use" byte at `1 << 39`.
pub const LIVENESS_BASE: i64 = 1 << 40;

/// Number of liveness ids: handles open on one file at once, in all processes.
pub const MAX_IDS: u32 = 1 << 16;

/// Device and inode of a file.
pub type FileId = (u64, u64);

/// How long an acquisition may wait for a live owner.
#[derive(Clone, Copy, Debug)]
pub enum Wait {
    /// Not at all: take a free lock, or a dead owner's, else give up at once.
    No,
    /// Until this instant.
    Until(Instant),
    /// At most this long from the first time the lock is found taken: the clock is read
    /// only then (an uncontended acquisition reads none; two clock reads were a tenth of a
    /// shared miss's cost).
    For(Duration),
}

impl Wait {
    /// Waits at most `d` from now (from when the lock is first found taken: see
    /// [`Wait::For`]).
    pub fn at_most(d: Duration) -> Wait {
        Wait::For(d)
    }

    /// This wait with its deadline fixed at `now` plus its duration ([`Wait::For`]).
    fn fix(self, now: Instant) -> Wait {
        match self {
            Wait::For(d) => now.checked_add(d).map_or(Wait::For(d), Wait::Until),
            w => w,
        }
    }

    fn expired(self, now: Instant) -> bool {
        match self.fix(now) {
            Wait::No => true,
            Wait::Until(t) => now >= t,
            Wait::For(_) => false,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The word

/// A 16-bit check of the low 48 bits of a word, with its top bit set (splitmix64's
/// finalizer: every input bit moves every output bit).
fn check(body: u64) -> u64 {
    let mut x = body ^ 0x9e37_79b9_7f4a_7c15;
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (x >> 48) | 0x8000
}

/// The word of owner `tag` at acquisition `counter`.
pub fn word_of(tag: u32, counter: u16) -> u64 {
    let body = u64::from(tag) | u64::from(counter) << 32;
    body | check(body) << 48
}

/// The owner tag of `word`, or `None` when its check fails (garbage).
pub fn tag_of(word: u64) -> Option<u32> {
    let body = word & ((1 << 48) - 1);
    (word >> 48 == check(body)).then_some(body as u32)
}

// ---------------------------------------------------------------------------------------
// Liveness

/// Whether process `pid` exists (`kill(pid, 0)` does not fail with `ESRCH`): the
/// liveness test where there are no open-file-description locks.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false; // not a pid at all: garbage
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing; it only checks that the pid exists.
    let r = unsafe { libc::kill(pid, 0) };
    !(r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH))
}

/// An `F_WRLCK` description of liveness byte `id`.
#[cfg(target_os = "linux")]
fn liveness_flock(id: u32) -> libc::flock {
    // SAFETY: `flock` is plain data for which all-zero bytes are valid.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = LIVENESS_BASE + libc::off_t::from(id as i32);
    fl.l_len = 1;
    fl.l_pid = 0; // required by F_OFD_*
    fl
}

/// The identity of one handle as a lock owner: its tag (liveness id, or pid) and the
/// counter of its acquisitions. On Linux it owns the open file description that holds
/// the liveness lock: dropping it releases the id.
///
/// As a flight owner (`flight.rs`) a handle is named by the whole word it issued for the
/// flight, recorded in [`Local`] before the word is published in the file: a word whose
/// tag is this process's but which no live handle of the process issued (a dead process's
/// flight under a reused liveness id, or garbage) names nobody.
pub struct Owner {
    tag: u32,
    counter: AtomicU16,
    /// Tells this owner apart from the other owners of the process (tags may repeat:
    /// pids, or a liveness id reused after a handle closed).
    serial: u64,
    /// The in-process mutex of the file, which knows this owner's tag while it lives.
    local: Arc<Local>,
    /// The descriptor that holds the liveness lock, and asks about others'.
    #[cfg(target_os = "linux")]
    file: File,
}

impl std::fmt::Debug for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Owner").field("tag", &self.tag).finish()
    }
}

/// A starting counter that differs between handles (time and a process-wide count), so
/// that a reused id does not repeat its predecessor's words.
fn first_counter() -> u16 {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = N.fetch_add(0x9e37, Ordering::Relaxed);
    (check(nanos ^ n ^ u64::from(std::process::id())) & 0xffff) as u16
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.local.retire_all(self.serial);
        self.local.remove_tag(self.tag);
    }
}

/// A serial number for a new [`Owner`], never reused in the process.
fn next_serial() -> u64 {
    static SERIAL: AtomicU64 = AtomicU64::new(1);
    SERIAL.fetch_add(1, Ordering::Relaxed)
}

impl Owner {
    /// Takes the first free liveness id of the file open as `file` (a descriptor of this
    /// handle's own, kept open as long as the owner lives: the lock belongs to its open
    /// file description), and registers it with `local`, the file's in-process mutex
    /// from [`local_for`].
    #[cfg(target_os = "linux")]
    pub fn open(file: File, local: Arc<Local>) -> std::io::Result<Owner> {
        use std::os::fd::AsRawFd;
        for id in 0..MAX_IDS {
            let fl = liveness_flock(id);
            // SAFETY: `file` is open; F_OFD_SETLK reads `fl` and does not keep it.
            let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &raw const fl) };
            if r == 0 {
                local.add_tag(id);
                return Ok(Owner {
                    tag: id,
                    counter: AtomicU16::new(first_counter()),
                    serial: next_serial(),
                    local,
                    file,
                });
            }
            let e = std::io::Error::last_os_error();
            if !matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) {
                return Err(e);
            }
        }
        Err(std::io::Error::other(format!(
            "{MAX_IDS} handles have the file open already"
        )))
    }

    /// The owner of this process (tag: the pid).
    #[cfg(not(target_os = "linux"))]
    pub fn open(_file: File, local: Arc<Local>) -> std::io::Result<Owner> {
        let tag = std::process::id();
        local.add_tag(tag);
        Ok(Owner {
            tag,
            counter: AtomicU16::new(first_counter()),
            serial: next_serial(),
            local,
        })
    }

    /// This owner's tag (liveness id on Linux, pid elsewhere).
    pub fn tag(&self) -> u32 {
        self.tag
    }

    /// This owner's serial: unique among the owners of the process.
    pub fn serial(&self) -> u64 {
        self.serial
    }

    /// The in-process mutex of the file.
    pub fn local(&self) -> &Local {
        &self.local
    }

    /// The word of this owner's next acquisition (of the lock, or of a flight).
    pub fn next_word(&self) -> u64 {
        word_of(self.tag, self.counter.fetch_add(1, Ordering::Relaxed))
    }

    /// A new word for this owner's flight of key `hash`, recorded as a live flight of the
    /// process (to do before the word is published in the file). It replaces the word of
    /// an earlier flight of `hash` (one that another process ended).
    pub fn issue(&self, hash: u64) -> u64 {
        let word = self.next_word();
        self.local.issue(self.serial, hash, word);
        word
    }

    /// The word of this owner's live flight of `hash`, if it has one.
    pub fn flight_word(&self, hash: u64) -> Option<u64> {
        self.local.word_of(self.serial, hash)
    }

    /// Forgets this owner's flight of `hash` (after it ended in the file).
    pub fn retire(&self, hash: u64) {
        self.local.retire(self.serial, hash);
    }

    /// Forgets the flight word `word` if this owner issued it (a claim that lost its
    /// compare-and-swap).
    pub fn retire_word(&self, word: u64) {
        self.local.retire_word(self.serial, word);
    }

    /// The words of this owner's live flights.
    pub fn flight_words(&self) -> Vec<u64> {
        self.local.words_of(self.serial)
    }

    /// Forgets every flight of this owner (a handle that closes, after ending them).
    pub fn retire_all(&self) {
        self.local.retire_all(self.serial);
    }

    /// Whether the owner with `tag` (another handle's) is alive: someone holds its
    /// liveness byte. An error of the query counts as alive (waiting is bounded).
    #[cfg(target_os = "linux")]
    pub fn alive(&self, tag: u32) -> bool {
        use std::os::fd::AsRawFd;
        if tag >= MAX_IDS {
            return false; // no handle ever has this id: garbage
        }
        let mut fl = liveness_flock(tag);
        // SAFETY: `self.file` is open; F_OFD_GETLK fills `fl` with a conflicting lock, or
        // sets its type to F_UNLCK when there is none.
        let r = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_OFD_GETLK, &raw mut fl) };
        r != 0 || fl.l_type != libc::F_UNLCK as libc::c_short
    }

    /// Whether the process `tag` is alive.
    #[cfg(not(target_os = "linux"))]
    pub fn alive(&self, tag: u32) -> bool {
        pid_alive(tag)
    }
}

// ---------------------------------------------------------------------------------------
// The in-process mutex of a file

/// The in-process mutex of one file, shared by every handle of this process on it, with
/// a timed lock (std's `Mutex` has none), the tags of those handles and the words of
/// their live flights.
///
/// The mutex is the word `held`: taken with one compare-and-swap and released with one
/// swap when nobody waits (a miss of a shared cache takes it twice, and a `std` mutex
/// guarding a flag, as before, cost four atomic operations each time); a thread that
/// finds it taken counts itself in `waiters` and sleeps on the condition variable `freed`
/// under `state`, and a release that sees a waiter wakes one (both sides are sequentially
/// consistent: a waiter counted after a release read no waiter finds the word free).
#[derive(Debug, Default)]
pub struct Local {
    held: AtomicU32,
    waiters: AtomicU32,
    state: Mutex<LocalState>,
    freed: Condvar,
    flights: Mutex<LocalFlights>,
}

/// The flights that the live handles of this process own on the file, by the word each
/// issued (see [`Owner::issue`]).
#[derive(Debug, Default)]
struct LocalFlights {
    /// Word -> (owner serial, key hash).
    by_word: WordMap<u64, (u64, u64)>,
    /// (Owner serial, key hash) -> word.
    by_key: WordMap<(u64, u64), u64>,
}

/// A map keyed by words and hashes that this process made (not input, and mixed already),
/// on every miss's path: FxHash's one multiply per `u64` instead of std's SipHash.
type WordMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<WordHasher>>;

/// FxHash (rustc's): rotate, xor, multiply.
#[derive(Debug, Default, Clone, Copy)]
struct WordHasher(u64);

impl std::hash::Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[derive(Debug, Default)]
struct LocalState {
    /// Tags of this process's live handles on the file (a tag may repeat: pids).
    tags: Vec<u32>,
}

/// The in-process mutex, held; released when dropped.
#[derive(Debug)]
pub struct LocalGuard<'a>(&'a Local);

impl Drop for LocalGuard<'_> {
    fn drop(&mut self) {
        let l = self.0;
        l.held.store(0, Ordering::SeqCst);
        if l.waiters.load(Ordering::SeqCst) > 0 {
            // Under the mutex: a waiter between its look at `held` and its sleep holds it,
            // so the wake cannot fall in between.
            let _s = l.state();
            l.freed.notify_one();
        }
    }
}

impl Local {
    fn state(&self) -> MutexGuard<'_, LocalState> {
        // Never held across user code or a panic point that leaves it inconsistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn try_take(&self) -> bool {
        self.held
            .compare_exchange(0, 1, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
    }

    /// Takes the mutex, waiting as `wait` allows (whose deadline it fixes when it waits);
    /// `None` when it stayed held.
    pub fn lock(&self, wait: &mut Wait) -> Option<LocalGuard<'_>> {
        if self.try_take() {
            return Some(LocalGuard(self));
        }
        let mut s = self.state();
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let taken = loop {
            if self.try_take() {
                break true;
            }
            let now = Instant::now();
            *wait = wait.fix(now);
            let Wait::Until(deadline) = *wait else {
                break false;
            };
            if now >= deadline {
                break false;
            }
            s = self
                .freed
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        drop(s);
        // (`then`, not `then_some`: a guard made and dropped would release the mutex.)
        taken.then(|| LocalGuard(self))
    }

    /// Records a handle of this process with owner tag `tag` on the file.
    fn add_tag(&self, tag: u32) {
        self.state().tags.push(tag);
    }

    /// Forgets one handle with owner tag `tag`.
    fn remove_tag(&self, tag: u32) {
        let mut s = self.state();
        if let Some(i) = s.tags.iter().position(|&t| t == tag) {
            s.tags.swap_remove(i);
        }
    }

    /// Whether a handle of this process on the file has owner tag `tag`.
    pub fn has_tag(&self, tag: u32) -> bool {
        self.state().tags.contains(&tag)
    }

    fn flights(&self) -> MutexGuard<'_, LocalFlights> {
        // Every operation on it is a single insert or remove pair: consistent after a panic.
        self.flights.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `word` as owner `serial`'s live flight of `hash` (replacing an earlier one).
    fn issue(&self, serial: u64, hash: u64, word: u64) {
        let mut f = self.flights();
        if let Some(old) = f.by_key.insert((serial, hash), word) {
            f.by_word.remove(&old);
        }
        f.by_word.insert(word, (serial, hash));
    }

    fn word_of(&self, serial: u64, hash: u64) -> Option<u64> {
        self.flights().by_key.get(&(serial, hash)).copied()
    }

    fn retire(&self, serial: u64, hash: u64) {
        let mut f = self.flights();
        if let Some(word) = f.by_key.remove(&(serial, hash)) {
            f.by_word.remove(&word);
        }
    }

    fn retire_word(&self, serial: u64, word: u64) {
        let mut f = self.flights();
        if let Some(&(s, hash)) = f.by_word.get(&word)
            && s == serial
        {
            f.by_word.remove(&word);
            f.by_key.remove(&(serial, hash));
        }
    }

    fn words_of(&self, serial: u64) -> Vec<u64> {
        let f = self.flights();
        f.by_word
            .iter()
            .filter(|&(_, &(s, _))| s == serial)
            .map(|(&w, _)| w)
            .collect()
    }

    fn retire_all(&self, serial: u64) {
        let mut f = self.flights();
        f.by_word.retain(|_, &mut (s, _)| s != serial);
        f.by_key.retain(|&(s, _), _| s != serial);
    }

    /// Whether `word` is the word of a live flight of a handle of this process, and of
    /// which owner (its serial).
    pub fn flight_owner(&self, word: u64) -> Option<u64> {
        self.flights().by_word.get(&word).map(|&(s, _)| s)
    }
}

/// The in-process mutexes by file, held weakly: an entry lives while a handle does.
type Locals = Mutex<HashMap<FileId, Weak<Local>>>;

/// The in-process mutex of the file with this device and inode: every handle this
/// process opens on the file gets the same one (kept while a handle holds it).
pub fn local_for(file_id: FileId) -> Arc<Local> {
    static LOCALS: OnceLock<Locals> = OnceLock::new();
    let mut map = LOCALS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(local) = map.get(&file_id).and_then(Weak::upgrade) {
        return local;
    }
    map.retain(|_, w| w.strong_count() > 0);
    let local = Arc::new(Local::default());
    map.insert(file_id, Arc::downgrade(&local));
    local
}

// ---------------------------------------------------------------------------------------
// Acquiring

/// A held lock: released (word, then in-process mutex) when dropped, also while
/// unwinding from a panic.
#[derive(Debug)]
pub struct Held<'a> {
    lock: &'a AtomicU64,
    /// The word the lock was taken with.
    pub word: u64,
    /// Whether it was taken over from a dead (or stale) owner.
    pub took_over: bool,
    _local: LocalGuard<'a>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // Only if the word is still ours: a waiter that wrongly judged us dead and took
        // over keeps its lock.
        let _ = self
            .lock
            .compare_exchange(self.word, 0, Ordering::Release, Ordering::Relaxed);
    }
}

/// Whether the owner named by `word` cannot hold the lock, judged by `owner` while it
/// holds the file's in-process mutex: garbage (the check fails), a tag of this process
/// (no thread of it holds the lock), or an owner the kernel says is gone.
pub fn owner_is_gone(word: u64, owner: &Owner) -> bool {
    match tag_of(word) {
        None => true,
        Some(tag) => tag == owner.tag() || owner.local.has_tag(tag) || !owner.alive(tag),
    }
}

/// Takes the in-process mutex of `owner`'s file, then the lock word `lock` of that file,
/// taking over from a dead owner and waiting for a live one as `wait` allows; `None` when
/// the wait ran out (a live owner kept the lock, or a thread of this process kept the
/// in-process mutex).
pub fn acquire<'a>(lock: &'a AtomicU64, owner: &'a Owner, wait: Wait) -> Option<Held<'a>> {
    let mut wait = wait;
    let guard = owner.local.lock(&mut wait)?;
    let me = owner.next_word();
    let held = |took_over, guard| Held {
        lock,
        word: me,
        took_over,
        _local: guard,
    };
    let mut spins = 0u32;
    let mut next_check: Option<Instant> = None;
    loop {
        let cur = lock.load(Ordering::Relaxed);
        if cur == 0 {
            if lock
                .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Some(held(false, guard));
            }
            continue;
        }
        spins = spins.saturating_add(1);
        let no_wait = matches!(wait, Wait::No);
        if spins < SPINS && !no_wait {
            std::hint::spin_loop();
            continue;
        }
        let now = Instant::now();
        wait = wait.fix(now);
        if next_check.is_none_or(|t| now >= t) {
            next_check = Some(now + LIVENESS_PERIOD);
            if owner_is_gone(cur, owner)
                && lock
                    .compare_exchange(cur, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return Some(held(true, guard));
            }
        }
        if wait.expired(now) {
            return None;
        }
        if spins < 2 * SPINS {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(20));
        }
    }
}

/// A word whose owner does not exist, for tests: a valid check naming an id that no
/// handle can have (on Linux) or a pid above the kernel's maximum (elsewhere).
#[cfg(test)]
pub fn dead_word() -> u64 {
    #[cfg(target_os = "linux")]
    let tag = MAX_IDS + 7;
    #[cfg(not(target_os = "linux"))]
    let tag = 1 << 30;
    word_of(tag, 12345)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    /// A scratch file for owners (liveness locks live on a file), removed on drop.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new() -> Scratch {
            static N: AtomicU32 = AtomicU32::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("warp-lock-test-{}-{n}", std::process::id()));
            std::fs::write(&p, b"x").unwrap();
            Scratch(p)
        }

        /// An owner whose process-side state is `local` (owners with distinct locals
        /// stand for handles of distinct processes).
        fn owner_in(&self, local: &Arc<Local>) -> Owner {
            let f = File::options()
                .read(true)
                .write(true)
                .open(&self.0)
                .unwrap();
            Owner::open(f, local.clone()).unwrap()
        }

        /// An owner as if of a process of its own.
        fn owner(&self) -> Owner {
            self.owner_in(&Arc::default())
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn words_round_trip_and_garbage_fails_the_check() {
        for (tag, c) in [(0, 0), (1, 1), (65_535, 65_535), (u32::MAX, 7)] {
            let w = word_of(tag, c);
            assert_ne!(w, 0);
            assert_eq!(tag_of(w), Some(tag));
        }
        assert_eq!(tag_of(4), None, "the fuzzing finding: small garbage");
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut passed = 0;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            passed += u32::from(tag_of(x).is_some());
        }
        assert!(
            passed < 10,
            "{passed} of 100000 random words pass the check"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn liveness_ids_are_distinct_and_released_on_drop() {
        let f = Scratch::new();
        let (a, b) = (f.owner(), f.owner());
        assert_ne!(a.tag(), b.tag());
        assert!(a.alive(b.tag()) && b.alive(a.tag()));
        let gone = b.tag();
        drop(b);
        assert!(!a.alive(gone), "a closed handle's id is free");
        let c = f.owner();
        assert_eq!(c.tag(), gone, "the first free id is taken");
        assert!(!a.alive(MAX_IDS + 1), "an id past the range is dead");
    }

    #[test]
    fn pid_liveness_knows_this_process_and_not_a_pid_past_the_maximum() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(1 << 30));
        assert!(!pid_alive(0));
        assert!(!pid_alive(u32::MAX));
    }

    #[test]
    fn dropping_the_hold_releases_the_word_and_each_hold_has_its_own_word() {
        let f = Scratch::new();
        let o = f.owner();
        let a = AtomicU64::new(0);
        let held = acquire(&a, &o, Wait::No).unwrap();
        assert!(!held.took_over);
        assert_eq!(tag_of(a.load(Ordering::Relaxed)), Some(o.tag()));
        assert!(
            o.local().lock(&mut Wait::No).is_none(),
            "the in-process mutex is held too"
        );
        let w1 = held.word;
        drop(held);
        assert_eq!(a.load(Ordering::Relaxed), 0);
        assert!(o.local().lock(&mut Wait::No).is_some());
        let held = acquire(&a, &o, Wait::No).unwrap();
        assert_ne!(
            held.word, w1,
            "the counter makes every acquisition's word new"
        );
    }

    #[test]
    fn handles_on_one_file_share_the_in_process_mutex() {
        let a = local_for((1, 42));
        let b = local_for((1, 42));
        let c = local_for((2, 42));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }

    /// Regression (fuzzing, rust/fuzz/regressions/): a lock word of garbage (a live pid
    /// with start time 0, in the pid design) made every writer wait forever. Garbage fails
    /// the check and is taken over at the first liveness check.
    #[test]
    fn garbage_is_taken_over() {
        let f = Scratch::new();
        let o = f.owner();
        for garbage in [4u64, u64::MAX, word_of(o.tag(), 1) ^ 1 << 40] {
            let lock = AtomicU64::new(garbage);
            let held = acquire(&lock, &o, Wait::No).expect("garbage never blocks");
            assert!(held.took_over);
        }
    }

    /// A word naming a live owner (a handle of another process) is waited for, never
    /// taken over: the wait runs out. Once the kernel releases its id, it is dead.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_live_owner_is_not_taken_over_and_a_closed_one_is() {
        let f = Scratch::new();
        let (me, other) = (f.owner(), f.owner());
        let live = word_of(other.tag(), 3);
        let lock = AtomicU64::new(live);
        assert!(acquire(&lock, &me, Wait::No).is_none());
        let w = Wait::at_most(Duration::from_millis(30));
        assert!(acquire(&lock, &me, w).is_none());
        assert_eq!(lock.load(Ordering::Relaxed), live);
        drop(other);
        let held = acquire(&lock, &me, Wait::No).expect("a dead owner is taken over");
        assert!(held.took_over);
    }

    /// Regression (fuzzing): a lock word naming this very owner (or another handle of
    /// this process) while none of its threads holds the lock (a corrupt file) made this
    /// process wait for itself forever. Holding the in-process mutex, it is stale.
    #[test]
    fn a_stale_word_of_this_process_is_taken_over() {
        let f = Scratch::new();
        let local = Arc::default();
        let (me, sibling) = (f.owner_in(&local), f.owner_in(&local));
        for stale in [word_of(me.tag(), 9), word_of(sibling.tag(), 9)] {
            let lock = AtomicU64::new(stale);
            let held = acquire(&lock, &me, Wait::No).expect("stale word of this process");
            assert!(held.took_over);
            drop(held);
            assert_eq!(lock.load(Ordering::Relaxed), 0);
        }
    }

    /// Regression (CI): threads of one process never hold the word at once. Each thread
    /// increments a plain counter in two steps under the lock; a second holder would
    /// lose increments. Half the threads share one owner (one handle used by several
    /// threads: one tag, which the kernel cannot tell apart), the others have their own.
    #[test]
    fn threads_of_one_process_hold_the_lock_one_at_a_time() {
        let f = Scratch::new();
        let lock = Arc::new(AtomicU64::new(0));
        let local = Arc::default();
        let shared = Arc::new(f.owner_in(&local));
        let inside = Arc::new(AtomicU64::new(0));
        let total = Arc::new(AtomicU64::new(0));
        let (threads, rounds) = (6, 5_000);
        let joins: Vec<_> = (0..threads)
            .map(|t| {
                let lock = lock.clone();
                let (inside, total) = (inside.clone(), total.clone());
                let owner = if t % 2 == 0 {
                    shared.clone()
                } else {
                    Arc::new(f.owner_in(&local))
                };
                std::thread::spawn(move || {
                    for _ in 0..rounds {
                        let wait = Wait::at_most(Duration::from_secs(3600));
                        let held = acquire(&lock, &owner, wait).unwrap();
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                        let v = total.load(Ordering::Relaxed);
                        std::thread::yield_now();
                        total.store(v + 1, Ordering::Relaxed);
                        inside.fetch_sub(1, Ordering::SeqCst);
                        drop(held);
                    }
                })
            })
            .collect();
        for j in joins {
            j.join().unwrap();
        }
        assert_eq!(total.load(Ordering::Relaxed), threads * rounds);
        assert_eq!(lock.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn acquire_takes_over_from_a_dead_owner() {
        let f = Scratch::new();
        let o = f.owner();
        let lock = AtomicU64::new(dead_word());
        let held = acquire(&lock, &o, Wait::No).unwrap();
        assert!(held.took_over);
        assert_eq!(tag_of(lock.load(Ordering::Relaxed)), Some(o.tag()));
        drop(held);
        assert_eq!(lock.load(Ordering::Relaxed), 0);
        let held = acquire(&lock, &o, Wait::No).unwrap();
        assert!(!held.took_over);
    }

    #[test]
    fn the_in_process_mutex_waits_within_its_bound() {
        let local = Arc::new(Local::default());
        let g = local.lock(&mut Wait::No).unwrap();
        assert!(local.lock(&mut Wait::No).is_none());
        assert!(
            local
                .lock(&mut Wait::at_most(Duration::from_millis(20)))
                .is_none()
        );
        let l2 = local.clone();
        let waiter = std::thread::spawn(move || {
            l2.lock(&mut Wait::at_most(Duration::from_secs(30)))
                .is_some()
        });
        std::thread::sleep(Duration::from_millis(20));
        drop(g);
        assert!(
            waiter.join().unwrap(),
            "a waiter is woken when the mutex is freed"
        );
    }
}
