//! Time sources, in milliseconds as `f64`, for callers that pass `NaN` as `now`.
//!
//! - [`monotonic_ms`]: for the in-process store. On Linux `CLOCK_MONOTONIC_COARSE` (a few
//!   ns per read, resolution one kernel tick: 1-4 ms), elsewhere `Instant`.
//! - [`wall_ms`]: for the shared store, a clock that every process agrees on: Unix time.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds on a clock that never goes backwards, from an arbitrary origin.
pub fn monotonic_ms() -> f64 {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC_COARSE exists on
        // every Linux since 2.6.32 and clock_gettime only writes `ts`.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
        if rc == 0 {
            return ts.tv_sec as f64 * 1000.0 + ts.tv_nsec as f64 / 1_000_000.0;
        }
    }
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_secs_f64() * 1000.0
}

/// Milliseconds since the Unix epoch (wall clock). On Linux one `clock_gettime` read
/// (`CLOCK_REALTIME`, through the vDSO), without `SystemTime`'s conversions: a shared miss
/// reads it once, to stamp its insert.
pub fn wall_ms() -> f64 {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; clock_gettime only writes it.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
        if rc == 0 {
            return ts.tv_sec as f64 * 1000.0 + ts.tv_nsec as f64 / 1_000_000.0;
        }
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_never_goes_backwards_and_advances() {
        let a = monotonic_ms();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = monotonic_ms();
        assert!(b >= a + 10.0, "{a} -> {b}");
    }

    #[test]
    fn wall_clock_is_unix_time() {
        assert!(wall_ms() > 1.7e12);
        let std = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            * 1000.0;
        assert!((wall_ms() - std).abs() < 1000.0);
    }
}
