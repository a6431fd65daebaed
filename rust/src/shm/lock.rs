//! The cross-process write lock: a spinlock word in the file header that holds its
//! owner's identity, so that a waiter can tell a dead owner from a slow one, behind an
//! in-process mutex per file.
//!
//! The owner word is `pid | start << 32`, where `start` is the low 32 bits of the
//! owner's start time (field 22 of `/proc/<pid>/stat`, clock ticks since boot) on Linux
//! and 0 elsewhere. A word is never 0 because no process of ours has pid 0.
//!
//! The word names a process, not a thread, so the threads of one process (handles in
//! Workers, or several handles on one file) first take an in-process mutex of the file
//! (one per device and inode, see [`local_for`]), and only then the word. Holding that
//! mutex, a thread that finds its own process's word in the file knows that no thread of
//! its process holds the lock: the word is stale (a dead process whose pid and start time
//! we reuse, or garbage) and is taken over. (An earlier design counted the locks held by
//! the process's threads instead; a thread preempted between taking the word and counting
//! it let a second thread take the same word: two writers at once, found by the test
//! `threads_with_their_own_handles_never_read_a_wrong_value` on a CI machine.)
//!
//! A waiter spins, then yields, then sleeps briefly; once it has waited a little it
//! checks about every millisecond whether the owner is alive. The owner is dead when
//! `kill(pid, 0)` fails with `ESRCH`, or when the pid now belongs to a process with
//! another start time: pids are reused, and the start time is what tells the new
//! process from the old one (a reuse within the same clock tick is the residual risk;
//! where `/proc` is missing, as on macOS, only `kill` is used and a reused pid makes
//! waiters wait until that process exits). A dead owner's word is swapped for the
//! waiter's with a compare-and-swap, so that of several waiters exactly one takes over;
//! it then repairs the store (see `table.rs`) when the sequence counter shows that the
//! owner died mid-write.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

/// How often a waiter checks whether the owner is alive.
const LIVENESS_PERIOD: Duration = Duration::from_millis(1);

/// Spins before the first liveness check and before yielding.
const SPINS: u32 = 128;

/// The start time of process `pid` in clock ticks since boot, from `/proc/<pid>/stat`.
#[cfg(target_os = "linux")]
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: skip past the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // Fields from 3 (state) on; starttime is field 22.
    rest.split_ascii_whitespace().nth(22 - 3)?.parse().ok()
}

#[cfg(not(target_os = "linux"))]
fn start_ticks(_pid: u32) -> Option<u64> {
    None
}

/// Builds an owner word.
fn word_of(pid: u32, start: Option<u64>) -> u64 {
    u64::from(pid) | (start.unwrap_or(0) & 0xffff_ffff) << 32
}

/// This process's owner word (computed once; a forked child has another pid and
/// recomputes, since `std::process::id` is checked).
pub fn own_word() -> u64 {
    static WORD: OnceLock<(u32, u64)> = OnceLock::new();
    let pid = std::process::id();
    let &(cached_pid, word) = WORD.get_or_init(|| (pid, word_of(pid, start_ticks(pid))));
    if cached_pid == pid {
        word
    } else {
        word_of(pid, start_ticks(pid))
    }
}

/// Device and inode of a file.
pub type FileId = (u64, u64);

/// The in-process mutexes by file, held weakly: an entry lives while a handle does.
type Locals = Mutex<HashMap<FileId, Weak<Mutex<()>>>>;

/// The in-process mutex of the file with this device and inode: every handle this
/// process opens on the file gets the same one (kept while a handle holds it).
pub fn local_for(file_id: FileId) -> Arc<Mutex<()>> {
    static LOCALS: OnceLock<Locals> = OnceLock::new();
    let mut map = LOCALS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(local) = map.get(&file_id).and_then(Weak::upgrade) {
        return local;
    }
    map.retain(|_, w| w.strong_count() > 0);
    let local = Arc::new(Mutex::new(()));
    map.insert(file_id, Arc::downgrade(&local));
    local
}

/// Whether the process recorded in `word` is gone (so its lock may be taken over). Our
/// own word is alive; [`acquire`] tells a stale copy of it apart by its in-process mutex.
pub fn owner_is_dead(word: u64) -> bool {
    if word == own_word() {
        return false;
    }
    let pid = (word & 0xffff_ffff) as u32;
    let start = word >> 32;
    let Ok(pid_t) = libc::pid_t::try_from(pid) else {
        return true; // not a pid at all: garbage in the lock word
    };
    if pid_t <= 0 {
        return true;
    }
    // SAFETY: kill with signal 0 sends nothing; it only checks that the pid exists.
    let r = unsafe { libc::kill(pid_t, 0) };
    if r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        return true;
    }
    // The pid exists (or belongs to another user: EPERM). Same process as the owner?
    // Where start times are known, every word we write has the owner's, so a word whose
    // start differs (0 included: garbage naming a live pid, found by fuzzing) is not a
    // live owner's. Elsewhere only `kill` can tell.
    match start_ticks(pid) {
        None => false,
        Some(now) => start != now & 0xffff_ffff,
    }
}

/// A held lock: released (word, then in-process mutex) when dropped, also while
/// unwinding from a panic.
#[derive(Debug)]
pub struct Held<'a> {
    lock: &'a AtomicU64,
    /// The word the lock was taken with.
    pub word: u64,
    /// Whether it was taken over from a dead (or stale) owner.
    pub took_over: bool,
    _local: MutexGuard<'a, ()>,
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

/// Takes the in-process mutex `local` (from [`local_for`] for the file that holds
/// `lock`), then the lock word, waiting for a live owner and taking over from a dead one.
pub fn acquire<'a>(lock: &'a AtomicU64, local: &'a Mutex<()>) -> Held<'a> {
    // A panic while holding it poisons the mutex; the sequence counter (left odd) is
    // what tells the next writer to repair, so the poison carries nothing.
    let guard = local.lock().unwrap_or_else(PoisonError::into_inner);
    let me = own_word();
    let held = |took_over| Held {
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
                return held(false);
            }
            continue;
        }
        spins = spins.saturating_add(1);
        if spins < SPINS {
            std::hint::spin_loop();
            continue;
        }
        let now = Instant::now();
        if next_check.is_none_or(|t| now >= t) {
            next_check = Some(now + LIVENESS_PERIOD);
            // Our own word, while we hold this file's in-process mutex, is stale.
            if (cur == me || owner_is_dead(cur))
                && lock
                    .compare_exchange(cur, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return held(true);
            }
        }
        if spins < 2 * SPINS {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(20));
        }
    }
}

/// The owner word of a process that does not exist, for tests: a pid above the
/// kernel's maximum.
#[cfg(test)]
pub fn dead_word() -> u64 {
    // pid_max is at most 2^22 on Linux; 2^30 is never a live pid.
    word_of(1 << 30, Some(12345))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_word_is_alive_and_dead_word_is_dead() {
        assert!(!owner_is_dead(own_word()));
        assert!(owner_is_dead(dead_word()));
        assert_ne!(own_word(), 0);
    }

    #[test]
    fn dropping_the_hold_releases_the_word() {
        let (a, local) = (AtomicU64::new(0), Mutex::new(()));
        let held = acquire(&a, &local);
        assert!(!held.took_over);
        assert_eq!(a.load(Ordering::Relaxed), own_word());
        assert!(
            local.try_lock().is_err(),
            "the in-process mutex is held too"
        );
        drop(held);
        assert_eq!(a.load(Ordering::Relaxed), 0);
        assert!(local.try_lock().is_ok());
    }

    #[test]
    fn handles_on_one_file_share_the_in_process_mutex() {
        let a = local_for((1, 42));
        let b = local_for((1, 42));
        let c = local_for((2, 42));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_reused_pid_with_another_start_time_is_dead() {
        let pid = std::process::id();
        let start = start_ticks(pid).unwrap();
        // pid 1 is alive; with a start time that is not its own it is a reused pid.
        let fake = word_of(1, Some(start_ticks(1).unwrap_or(0) + 1));
        assert!(owner_is_dead(fake) || start_ticks(1).is_none());
        assert!(!owner_is_dead(word_of(1, start_ticks(1))));
        assert_eq!(own_word(), word_of(pid, Some(start)));
    }

    /// Regression (fuzzing, rust/fuzz/regressions/): a lock word naming a live process
    /// with start time 0 made every writer wait forever.
    #[test]
    fn garbage_naming_a_live_process_is_taken_over() {
        let pid = std::process::id();
        if start_ticks(pid).is_none() {
            return; // without /proc a live pid is trusted
        }
        let (lock, local) = (AtomicU64::new(u64::from(pid)), Mutex::new(())); // start time 0
        let t = Instant::now();
        let held = acquire(&lock, &local);
        assert!(held.took_over);
        assert!(t.elapsed() < Duration::from_secs(1));
    }

    /// Regression (fuzzing): a lock word equal to this process's own word while none of
    /// its threads holds the lock (a corrupt file, or a dead owner whose pid and start
    /// time we reuse) made this process wait for itself forever.
    #[test]
    fn a_stale_own_word_is_taken_over() {
        let (lock, local) = (AtomicU64::new(own_word()), Mutex::new(()));
        let t = Instant::now();
        let held = acquire(&lock, &local);
        assert!(held.took_over && t.elapsed() < Duration::from_secs(1));
        drop(held);
        assert_eq!(lock.load(Ordering::Relaxed), 0);
    }

    /// Regression (CI): threads of one process never hold the word at once. Each thread
    /// increments a plain counter in two steps under the lock; a second holder would
    /// lose increments. The old design (a process-wide count of held locks) failed this
    /// when a thread was preempted between taking the word and counting it.
    #[test]
    fn threads_of_one_process_hold_the_lock_one_at_a_time() {
        let lock = Arc::new(AtomicU64::new(0));
        let local = local_for((u64::MAX, u64::MAX));
        let inside = Arc::new(AtomicU64::new(0));
        let total = Arc::new(AtomicU64::new(0));
        let (threads, rounds) = (6, 5_000);
        let joins: Vec<_> = (0..threads)
            .map(|_| {
                let (lock, local) = (lock.clone(), local.clone());
                let (inside, total) = (inside.clone(), total.clone());
                std::thread::spawn(move || {
                    for _ in 0..rounds {
                        let held = acquire(&lock, &local);
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
        let (lock, local) = (AtomicU64::new(dead_word()), Mutex::new(()));
        let t = Instant::now();
        let held = acquire(&lock, &local);
        assert!(held.took_over);
        assert!(t.elapsed() < Duration::from_secs(1));
        assert_eq!(lock.load(Ordering::Relaxed), own_word());
        drop(held);
        assert_eq!(lock.load(Ordering::Relaxed), 0);
        let held = acquire(&lock, &local);
        assert!(!held.took_over);
    }
}
