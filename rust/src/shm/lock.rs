//! The cross-process write lock: a spinlock word in the file header that holds its
//! owner's identity, so that a waiter can tell a dead owner from a slow one.
//!
//! The owner word is `pid | start << 32`, where `start` is the low 32 bits of the
//! owner's start time (field 22 of `/proc/<pid>/stat`, clock ticks since boot) on Linux
//! and 0 elsewhere. A word is never 0 because no process of ours has pid 0.
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

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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

/// Locks (of any file) held by the threads of this process right now.
static HELD_HERE: AtomicUsize = AtomicUsize::new(0);

/// Whether the process recorded in `word` is gone (so its lock may be taken over).
pub fn owner_is_dead(word: u64) -> bool {
    let pid = (word & 0xffff_ffff) as u32;
    let start = word >> 32;
    if word == own_word() {
        // Another thread of this process, unless no thread of ours holds any lock: then
        // the word is stale (a corrupt file, or a dead process whose pid and start time
        // we reuse) and waiting for ourselves would never end (found by fuzzing).
        return HELD_HERE.load(Ordering::Acquire) == 0;
    }
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

/// A held lock: the word it was taken with, and whether it was taken over from a dead
/// owner.
#[derive(Clone, Copy, Debug)]
pub struct Held {
    pub word: u64,
    pub took_over: bool,
}

/// Takes the lock word, waiting for a live owner and taking over from a dead one.
pub fn acquire(lock: &AtomicU64) -> Held {
    let me = own_word();
    let mut spins = 0u32;
    let mut next_check: Option<Instant> = None;
    loop {
        let cur = lock.load(Ordering::Relaxed);
        if cur == 0 {
            if lock
                .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                HELD_HERE.fetch_add(1, Ordering::AcqRel);
                return Held {
                    word: me,
                    took_over: false,
                };
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
            if owner_is_dead(cur)
                && lock
                    .compare_exchange(cur, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                HELD_HERE.fetch_add(1, Ordering::AcqRel);
                return Held {
                    word: me,
                    took_over: true,
                };
            }
        }
        if spins < 2 * SPINS {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(20));
        }
    }
}

/// Releases the lock word if it still holds `held` (a waiter that wrongly judged us dead
/// and took over keeps its lock).
pub fn release(lock: &AtomicU64, held: Held) {
    let _ = lock.compare_exchange(held.word, 0, Ordering::Release, Ordering::Relaxed);
    HELD_HERE.fetch_sub(1, Ordering::AcqRel);
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
        let a = AtomicU64::new(0);
        let held = acquire(&a);
        assert!(!owner_is_dead(own_word()));
        release(&a, held);
        assert!(owner_is_dead(dead_word()));
        assert_ne!(own_word(), 0);
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
        let lock = AtomicU64::new(u64::from(pid)); // our pid, start time 0
        let t = Instant::now();
        let held = acquire(&lock);
        assert!(held.took_over);
        assert!(t.elapsed() < Duration::from_secs(1));
        release(&lock, held);
        // While a thread of ours holds a lock, our own word is a live owner.
        let a = AtomicU64::new(0);
        let held = acquire(&a);
        assert!(!owner_is_dead(own_word()));
        release(&a, held);
    }

    /// Runs alone in a child process (see below), where no thread holds a lock.
    #[test]
    fn stale_own_word_child() {
        if std::env::var_os("WARP_LOCK_TEST_CHILD").is_none() {
            return;
        }
        let lock = AtomicU64::new(own_word());
        let t = Instant::now();
        let held = acquire(&lock);
        assert!(held.took_over && t.elapsed() < Duration::from_secs(1));
        release(&lock, held);
    }

    /// Regression (fuzzing): a lock word equal to this process's own word while none of
    /// its threads holds a lock (a corrupt file, or a dead owner whose pid and start time
    /// we reuse) made this process wait for itself forever.
    #[test]
    fn a_stale_own_word_is_taken_over() {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "shm::lock::tests::stale_own_word_child",
                "--quiet",
            ])
            .env("WARP_LOCK_TEST_CHILD", "1")
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[test]
    fn acquire_takes_over_from_a_dead_owner() {
        let lock = AtomicU64::new(dead_word());
        let t = Instant::now();
        let held = acquire(&lock);
        assert!(held.took_over);
        assert!(t.elapsed() < Duration::from_secs(1));
        assert_eq!(lock.load(Ordering::Relaxed), own_word());
        release(&lock, held);
        assert_eq!(lock.load(Ordering::Relaxed), 0);
        let held = acquire(&lock);
        assert!(!held.took_over);
        release(&lock, held);
    }
}
