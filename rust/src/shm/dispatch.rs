//! Asynchronous flight waits on a fixed number of threads: one dispatcher per JavaScript
//! thread (the main isolate, each Worker) holds every wait that its thread registered,
//! and one call at a time ([`Dispatcher::next`], a `nonblocking` FFI call, so one thread
//! of Deno's blocking pool) sleeps for all of them and returns the waits that ended.
//!
//! Before this, each waiting call was a `nonblocking` call of its own, holding one thread
//! of Deno's blocking pool for as long as it waited: 782 calls waiting on another
//! process's flights held 782 threads, and a small `Deno.readTextFile` then took 7.7 s
//! (RELIABILITY.md, "Pending waits exhausted Deno's blocking pool").
//!
//! ## Sleeping on many words
//!
//! A wait ends when its flight ends (the record's futex word is bumped), when its owner
//! dies (nobody bumps anything: liveness is asked every [`LIVENESS_PERIOD`]), at its
//! deadline, or when its handle closes. A registration, a close and the end of the
//! dispatcher ring its doorbell, a futex word of this process.
//! - With `futex_waitv` (Linux 5.16 and later), the dispatcher sleeps at once on the
//!   doorbell and on the futex word of every record it waits on (up to [`WAITV_WORDS`]),
//!   so only the ends of its own flights wake it; with more waits than that, on the
//!   flight epoch of each file instead (`layout::Header::flight_epoch`, bumped by every
//!   end of a flight in the file).
//! - Without it (older kernels, a syscall filter), it sleeps on the flight epoch of its
//!   file when all its waits are in one file (a ring then bumps that epoch), else it naps
//!   at most [`POLL_NAP`] between looks; elsewhere than Linux, every sleep is such a nap.
//!
//! Each word is counted as slept on (its record's or file's count of sleepers) and read
//! before the flights are looked at: an end after the look changes the word, and the sleep
//! returns at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::flight::{End, LIVENESS_PERIOD, Liveness, Waiter, flights_of, sleep_on};
use super::region::Region;

/// Most futex words of one sleep besides the doorbell (`futex_waitv` takes 128).
pub const WAITV_WORDS: usize = 127;

/// The longest nap when the dispatcher cannot sleep on every word it waits on.
pub const POLL_NAP: Duration = Duration::from_millis(2);

/// Largest wait id; ids wrap around to 1 after it.
const MAX_ID: u32 = (1 << 30) - 1;

/// One registered wait.
struct Pending {
    waiter: Waiter,
    deadline: Option<Instant>,
}

#[derive(Default)]
struct State {
    /// The last id given.
    last_id: u32,
    waits: HashMap<u32, Pending>,
    /// Waits that ended, not yet returned by `next`.
    ended: Vec<(u32, End)>,
    /// When the owners' liveness is asked next.
    next_liveness: Option<Instant>,
    /// Without `futex_waitv`: the file whose flight epoch the dispatcher sleeps on.
    sleeping_on: Option<Arc<Region>>,
}

/// The asynchronous flight waits of one JavaScript thread (see the module docs).
#[derive(Default)]
pub struct Dispatcher {
    state: Mutex<State>,
    /// A futex word private to the process: rung by registrations, closes and the end.
    doorbell: AtomicU32,
    closed: AtomicBool,
}

/// A word that a sleep waits on, counted as slept on while this lives.
struct Word {
    /// Keeps the mapping of `word` and `count` alive.
    _region: Arc<Region>,
    word: *const AtomicU32,
    count: *const AtomicU32,
    expected: u32,
}

impl Word {
    /// Counts a sleeper in `count`, then reads `word`.
    ///
    /// # Safety
    /// `word` and `count` must point into the mapping of `region`.
    unsafe fn new(region: &Arc<Region>, word: &AtomicU32, count: &AtomicU32) -> Word {
        let _ = count.fetch_update(SeqCst, SeqCst, |n| Some(n.saturating_add(1)));
        Word {
            _region: region.clone(),
            word,
            count,
            expected: word.load(SeqCst),
        }
    }

    fn word(&self) -> &AtomicU32 {
        // SAFETY: it points into the mapping that `_region` keeps alive (see `new`).
        unsafe { &*self.word }
    }
}

impl Drop for Word {
    fn drop(&mut self) {
        // SAFETY: it points into the mapping that `_region` keeps alive (see `new`).
        let count = unsafe { &*self.count };
        let _ = count.fetch_update(SeqCst, SeqCst, |n| Some(n.saturating_sub(1)));
    }
}

/// How this dispatcher sleeps (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// On the futex word of each record waited on.
    Records,
    /// On the flight epoch of each file waited on.
    Epochs,
}

impl Dispatcher {
    fn state(&self) -> MutexGuard<'_, State> {
        // Every change under it is a single insert, remove or drain.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers `waiter`, bounded by `deadline` (`None`: none): `Ok(id)` when it waits
    /// (its end comes from [`Dispatcher::next`]), or `Err(end)` when it ended at once.
    pub fn register(&self, mut waiter: Waiter, deadline: Option<Instant>) -> Result<u32, End> {
        if self.closed.load(SeqCst) {
            return Err(End::Closed);
        }
        if let Some(end) = waiter.poll(&mut Liveness::new(true), false, false) {
            return Err(end);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(End::Timeout);
        }
        let mut st = self.state();
        let mut id = st.last_id;
        loop {
            id = if id >= MAX_ID { 1 } else { id + 1 };
            if !st.waits.contains_key(&id) && !st.ended.iter().any(|&(e, _)| e == id) {
                break;
            }
        }
        st.last_id = id;
        st.waits.insert(id, Pending { waiter, deadline });
        drop(st);
        self.ring();
        Ok(id)
    }

    /// Wakes the thread in [`Dispatcher::next`], so that it looks at its waits again.
    pub fn ring(&self) {
        self.doorbell.fetch_add(1, SeqCst);
        wake_private(&self.doorbell);
        let epoch_of = self.state().sleeping_on.clone();
        if let Some(region) = epoch_of {
            flights_of(&region).bump_epoch();
        }
    }

    /// Ends the dispatcher: [`Dispatcher::next`] returns 0 from now on, and its waits are
    /// dropped.
    pub fn close(&self) {
        self.closed.store(true, SeqCst);
        self.ring();
        let waits = std::mem::take(&mut self.state().waits);
        drop(waits);
    }

    /// Waits registered and not yet returned (tests).
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        let st = self.state();
        st.waits.len() + st.ended.len()
    }

    /// Blocks until waits end, and returns at most `max` of them as `(id, end)`; returns
    /// nothing at once when no wait is registered or the dispatcher was closed. One call
    /// at a time (others wait for the state between looks, and share the work).
    pub fn next(&self, max: usize) -> Vec<(u32, End)> {
        let max = max.max(1);
        loop {
            if self.closed.load(SeqCst) {
                return Vec::new();
            }
            let bell = self.doorbell.load(SeqCst);
            let mut st = self.state();
            st.sleeping_on = None;
            let now = Instant::now();
            let liveness = st.next_liveness.is_none_or(|t| now >= t);
            if liveness {
                st.next_liveness = Some(now + LIVENESS_PERIOD);
            }
            let waitv = waitv_available();
            let mode = if waitv && st.waits.len() <= WAITV_WORDS {
                Mode::Records
            } else {
                Mode::Epochs
            };
            let (words, nap, again) = look(&mut st, mode, liveness);
            if !st.ended.is_empty() {
                let n = st.ended.len().min(max);
                return st.ended.drain(..n).collect();
            }
            if st.waits.is_empty() {
                return Vec::new();
            }
            if again {
                continue;
            }
            let now = Instant::now();
            let nap = st
                .next_liveness
                .map_or(nap, |t| nap.min(t.saturating_duration_since(now)));
            let single_file = mode == Mode::Epochs && words.len() == 1;
            if !waitv && single_file {
                st.sleeping_on = Some(words[0]._region.clone());
            }
            drop(st);
            if waitv {
                sleep_on_all(&self.doorbell, bell, &words, nap);
            } else if single_file {
                if self.doorbell.load(SeqCst) == bell {
                    sleep_on(words[0].word(), words[0].expected, nap);
                }
            } else if self.doorbell.load(SeqCst) == bell {
                std::thread::sleep(nap.min(POLL_NAP));
            }
            drop(words);
        }
    }
}

/// Looks at every wait of `st`: moves those that ended to `st.ended`, and returns the
/// words to sleep on (counted and read before the look), the longest nap that the
/// deadlines allow, and whether to look again at once (a flight moved to a record other
/// than the one counted on).
fn look(st: &mut State, mode: Mode, liveness: bool) -> (Vec<Word>, Duration, bool) {
    let mut words: Vec<Word> = Vec::new();
    let mut counted: HashMap<*const AtomicU32, ()> = HashMap::new();
    let mut nap = LIVENESS_PERIOD;
    let mut again = false;
    let mut done = Vec::new();
    let mut live = Liveness::new(liveness);
    for (&id, p) in st.waits.iter_mut() {
        let region = p.waiter.region().clone();
        let flights = flights_of(&region);
        let before = p.waiter.record_index();
        let (word, count) = match mode {
            Mode::Records => {
                let r = flights.record(before);
                (&r.seq, &r.waiters)
            }
            Mode::Epochs => flights.epoch(),
        };
        let key: *const AtomicU32 = word;
        if counted.insert(key, ()).is_none() {
            // SAFETY: both words are in the mapping of `region` (the record or header
            // of the flight table built from it).
            words.push(unsafe { Word::new(&region, word, count) });
        }
        if let Some(end) = p.waiter.poll(&mut live, false, false) {
            done.push((id, end));
            continue;
        }
        let now = Instant::now();
        if let Some(d) = p.deadline {
            if now >= d {
                done.push((id, End::Timeout));
                continue;
            }
            nap = nap.min(d - now);
        }
        if mode == Mode::Records && p.waiter.record_index() != before {
            again = true;
        }
    }
    for (id, end) in done {
        st.waits.remove(&id);
        st.ended.push((id, end));
    }
    (words, nap, again)
}

/// Wakes the threads of this process sleeping on `word` (a private futex word).
#[cfg(target_os = "linux")]
fn wake_private(word: &AtomicU32) {
    // SAFETY: `word` is a live, 4-aligned u32; FUTEX_WAKE does not access memory.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn wake_private(_word: &AtomicU32) {}

/// Set by tests to play a kernel without `futex_waitv`.
static NO_WAITV: AtomicBool = AtomicBool::new(false);

/// Makes the dispatchers sleep as on a kernel without `futex_waitv` (`true`), or as the
/// kernel allows (`false`). For tests.
#[doc(hidden)]
pub fn play_no_waitv(on: bool) {
    NO_WAITV.store(on, SeqCst);
}

/// The `futex_waitv` system call where it exists (Linux 5.16 and later, x86_64 and
/// aarch64): a sleep on several futex words at once.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod waitv {
    use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

    /// `struct futex_waitv` of `<linux/futex.h>`.
    #[repr(C)]
    pub struct FutexWaitv {
        pub val: u64,
        pub uaddr: u64,
        pub flags: u32,
        pub reserved: u32,
    }

    /// `FUTEX2_SIZE_U32`.
    pub const SIZE_U32: u32 = 0x02;
    /// `FUTEX2_PRIVATE`.
    pub const PRIVATE: u32 = 128;

    /// 0: not asked yet, 1: available, 2: not (ENOSYS, or refused by a filter).
    static KNOWN: AtomicU8 = AtomicU8::new(0);

    /// `futex_waitv(entries, n, 0, deadline on CLOCK_MONOTONIC)`: the index of the word
    /// woken, or the errno.
    ///
    /// # Safety
    /// Every `uaddr` of `entries` must point to a live, 4-aligned u32.
    pub unsafe fn call(entries: &[FutexWaitv], deadline: &libc::timespec) -> Result<i64, i32> {
        // SAFETY: `entries` is a valid array of `entries.len()` (at most 128) entries
        // whose words are live (the caller's guarantee); `deadline` is a valid timespec.
        let r = unsafe {
            libc::syscall(
                libc::SYS_futex_waitv,
                entries.as_ptr(),
                entries.len() as libc::c_uint,
                0u32,
                std::ptr::from_ref(deadline),
                libc::CLOCK_MONOTONIC,
            )
        };
        if r >= 0 {
            Ok(r)
        } else {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        }
    }

    /// Whether the kernel has the call (asked once, with an empty list: EINVAL if it does).
    pub fn available() -> bool {
        match KNOWN.load(Relaxed) {
            1 => true,
            2 => false,
            _ => {
                let t = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: no entries to read.
                let ok = !matches!(unsafe { call(&[], &t) }, Err(libc::ENOSYS | libc::EPERM));
                KNOWN.store(if ok { 1 } else { 2 }, Relaxed);
                ok
            }
        }
    }
}

/// Whether the dispatchers may sleep on several words at once.
fn waitv_available() -> bool {
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    {
        !NO_WAITV.load(SeqCst) && waitv::available()
    }
    #[cfg(not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    {
        false
    }
}

/// Sleeps until the doorbell or one of `words` is woken or changed, or `nap` passes.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
fn sleep_on_all(doorbell: &AtomicU32, bell: u32, words: &[Word], nap: Duration) {
    use waitv::{FutexWaitv, PRIVATE, SIZE_U32};
    let mut entries = Vec::with_capacity(words.len() + 1);
    entries.push(FutexWaitv {
        val: u64::from(bell),
        uaddr: doorbell.as_ptr() as u64,
        flags: SIZE_U32 | PRIVATE,
        reserved: 0,
    });
    for w in words.iter().take(WAITV_WORDS) {
        entries.push(FutexWaitv {
            val: u64::from(w.expected),
            uaddr: w.word().as_ptr() as u64,
            flags: SIZE_U32, // shared with other processes
            reserved: 0,
        });
    }
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut now) };
    let nanos = now.tv_nsec + i64::from(nap.subsec_nanos());
    let secs = now
        .tv_sec
        .saturating_add(i64::try_from(nap.as_secs()).unwrap_or(i64::MAX / 2))
        .saturating_add(nanos / 1_000_000_000);
    let deadline = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: (nanos % 1_000_000_000) as _,
    };
    // SAFETY: the doorbell lives as long as its dispatcher (borrowed here), and every
    // other word is in a mapping that its `Word` keeps alive until after the call.
    let _ = unsafe { waitv::call(&entries, &deadline) };
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
fn sleep_on_all(doorbell: &AtomicU32, bell: u32, _words: &[Word], nap: Duration) {
    if doorbell.load(SeqCst) == bell {
        std::thread::sleep(nap.min(POLL_NAP));
    }
}

// ---------------------------------------------------------------------------------------
// The dispatchers of the process, by id

/// Every live dispatcher of the process, by id: `next` runs on a thread of Deno's
/// blocking pool and finds its dispatcher by id, so it never holds a pointer that the
/// dispatcher's thread may free meanwhile.
static DISPATCHERS: Mutex<Option<HashMap<u32, Arc<Dispatcher>>>> = Mutex::new(None);

fn dispatchers() -> MutexGuard<'static, Option<HashMap<u32, Arc<Dispatcher>>>> {
    DISPATCHERS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The dispatcher with id `id`, if it lives.
pub fn get(id: u32) -> Option<Arc<Dispatcher>> {
    dispatchers().as_ref()?.get(&id).cloned()
}

/// Rings every dispatcher of the process: a handle closed, and its waits end.
pub fn ring_all() {
    let all: Vec<Arc<Dispatcher>> = match dispatchers().as_ref() {
        Some(map) => map.values().cloned().collect(),
        None => return,
    };
    for d in all {
        d.ring();
    }
}

/// The calling thread's dispatcher: removed and closed when the thread exits.
struct ThreadDispatcher(u32);

impl Drop for ThreadDispatcher {
    fn drop(&mut self) {
        let d = dispatchers().as_mut().and_then(|m| m.remove(&self.0));
        if let Some(d) = d {
            d.close();
        }
    }
}

thread_local! {
    static THIS_THREAD: ThreadDispatcher = {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let id = NEXT.fetch_add(1, SeqCst);
        dispatchers()
            .get_or_insert_with(HashMap::new)
            .insert(id, Arc::new(Dispatcher::default()));
        ThreadDispatcher(id)
    };
}

/// The id of the calling thread's dispatcher (made on first use), or `None` while the
/// thread exits.
pub fn for_this_thread() -> Option<u32> {
    THIS_THREAD.try_with(|d| d.0).ok()
}
