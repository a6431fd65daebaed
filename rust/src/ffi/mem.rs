//! Exports of the in-process store (`warp_mem_*`).

use std::cell::UnsafeCell;

use super::{guarded, key_slice, thread_handles};
use crate::abi::{MEM_INFO, UNBOUNDED_CAPACITY, ttl_arg, write_fields};
use crate::error::{Status, fail};
use crate::sieve::{Lookup, Policy, SieveStore};

/// Offset added to a slot number to report "expired" from `warp_mem_get`: a result
/// `r <= EXPIRED_BASE` means the entry at slot `EXPIRED_BASE - r` expired and was
/// removed. Values between -2 and -15 are [`Status`] codes.
pub const EXPIRED_BASE: i32 = -16;

// Times: every `now` is in ms, or `LIBRARY_TIME` (`NaN`): the library reads its own
// monotonic clock (the decorator passes it when no `clock` option is set, which spares a
// JS clock call), and only when the entry at hand has a TTL (see `crate::sieve`). Every
// `ttl_ms` is a TTL or `NO_TTL` (`crate::abi::ttl_arg`).

/// Handle of an in-process store, owned by JavaScript between `warp_mem_new` and
/// `warp_mem_free`, or until the thread that created it exits (a Worker that ends; see
/// `thread_handles.rs`).
///
/// ## Safety
/// There is no lock: a handle must be used by one thread at a time. The TypeScript side
/// guarantees it: the handle lives in a private field of one `NativeMemoryStore`, which
/// belongs to one isolate (a Worker cannot receive it), and no export calls back into
/// JavaScript, so calls never overlap. An uncontended `parking_lot::Mutex` measured 13 ns
/// per lock/unlock here, more than the lookup itself (9 ns): `cargo run --release
/// --example get_timing`.
pub struct MemStore {
    inner: UnsafeCell<SieveStore>,
}

/// Runs `f` on the store behind `h`.
///
/// # Safety
/// - `h` must be null or a live pointer returned by `warp_mem_new`, not used by another
///   thread during the call (see [`MemStore`]).
unsafe fn with_mem(h: *const MemStore, f: impl FnOnce(&mut SieveStore) -> i32) -> i32 {
    if h.is_null() {
        return fail(Status::InvalidArgument, "memory store handle is null");
    }
    // SAFETY: the caller guarantees `h` came from `warp_mem_new`, was not freed, and is
    // not in use by another call, so this is the only reference to the store.
    let store = unsafe { &mut *(*h).inner.get() };
    guarded(|| f(store))
}

/// Creates a memory store for at most `capacity` entries (`UNBOUNDED_CAPACITY`: no bound), whose
/// entries expire `ttl_ms` ms after insertion (`NO_TTL` or `+Infinity`: never) unless given a
/// TTL of their own, stay stale for `stale_ms` ms after their TTL (0 = no stale window),
/// evicting by `policy` (0 SIEVE, 1 LRU, 2 MRU, 3 FIFO, 4 LFU, 5 S3-FIFO, 6 W-TinyLFU,
/// 7 ARC; `crate::sieve::Policy`). Returns null on a bad argument (a `ttl_ms` of 0 or less among
/// them).
#[unsafe(no_mangle)]
pub extern "C" fn warp_mem_new(
    capacity: u32,
    ttl_ms: f64,
    policy: u32,
    stale_ms: f64,
) -> *mut MemStore {
    let Some(policy) = Policy::from_u32(policy) else {
        fail(Status::InvalidArgument, format!("unknown policy: {policy}"));
        return std::ptr::null_mut();
    };
    if !(stale_ms.is_finite() && stale_ms >= 0.0) {
        fail(
            Status::InvalidArgument,
            format!(
                "stale window must be 0 or a positive finite number of ms: received {stale_ms}"
            ),
        );
        return std::ptr::null_mut();
    }
    let Ok(ttl) = ttl_arg(ttl_ms) else {
        return std::ptr::null_mut();
    };
    let ttl = ttl.filter(|t| t.is_finite());
    let capacity = if capacity == UNBOUNDED_CAPACITY {
        usize::MAX
    } else {
        capacity as usize
    };
    let store = MemStore {
        inner: UnsafeCell::new(SieveStore::with_stale(capacity, ttl, policy, stale_ms)),
    };
    thread_handles::adopt(Box::new(store))
}

/// Frees a memory store. Null, or a handle that is not live (already freed, or freed
/// when its thread exited), is a no-op.
///
/// # Safety
/// - `h` must be null or a pointer returned by `warp_mem_new`, not used after this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_mem_free(h: *mut MemStore) {
    // SAFETY: the caller guarantees nobody uses `h` after this call.
    drop(unsafe { thread_handles::release(h) });
}

/// Looks up the key `key[..len]` at time `now` (ms; `NaN` = the library's monotonic
/// clock). Returns the slot (`>= 0`) on a hit, `-1` on a miss (a stale entry included: it
/// stays, and so must its value), `EXPIRED_BASE - slot` when the entry was past its TTL and
/// stale window and was removed (only then may the caller drop the slot's value), or a
/// negative [`Status`].
///
/// # Safety
/// - `h` must be null or live (see `warp_mem_new`) and not in use by another thread; `key` valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_mem_get(
    h: *const MemStore,
    key: *const u8,
    len: u32,
    now: f64,
) -> i32 {
    // SAFETY: forwarded caller guarantees.
    unsafe {
        with_mem(h, |s| match s.get(key_slice(key, len), now) {
            Lookup::Hit(slot) => slot as i32,
            Lookup::Miss | Lookup::Stale(_) => Status::Miss as i32,
            Lookup::Expired(slot) => EXPIRED_BASE - slot as i32,
        })
    }
}

/// Inserts the key `key[..len]` at time `now` (ms; `NaN` = the library's clock) with the
/// TTL `ttl_ms`: the entry's own (positive, `+Infinity` for never) or, for
/// [`NO_TTL`](crate::abi::NO_TTL), the store's. Returns its slot (`>= 0`); when the store was full, an
/// entry was evicted and its slot is the one returned. A bad `ttl_ms` stores nothing and
/// returns [`Status::InvalidArgument`].
///
/// # Safety
/// - `h` must be null or live (see `warp_mem_new`) and not in use by another thread; `key` valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_mem_set(
    h: *const MemStore,
    key: *const u8,
    len: u32,
    now: f64,
    ttl_ms: f64,
) -> i32 {
    // SAFETY: forwarded caller guarantees.
    unsafe {
        with_mem(h, |s| match ttl_arg(ttl_ms) {
            Ok(ttl) => s.insert_with_ttl(key_slice(key, len), now, ttl).slot as i32,
            Err(status) => status,
        })
    }
}

/// Returns the slot of `key[..len]` if present and fresh at `now`, else `-1`, without
/// counting or marking anything.
///
/// # Safety
/// - `h` must be null or live (see `warp_mem_new`) and not in use by another thread; `key` valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_mem_peek(
    h: *const MemStore,
    key: *const u8,
    len: u32,
    now: f64,
) -> i32 {
    // SAFETY: forwarded caller guarantees.
    unsafe {
        with_mem(h, |s| match s.peek(key_slice(key, len), now) {
            Some(slot) => slot as i32,
            None => Status::Miss as i32,
        })
    }
}

/// Returns the slot of `key[..len]` if present and fresh or stale (inside the stale window)
/// at `now`, else `-1`, without counting, marking or removing anything.
///
/// # Safety
/// - `h` must be null or live (see `warp_mem_new`) and not in use by another thread; `key` valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_mem_peek_stale(
    h: *const MemStore,
    key: *const u8,
    len: u32,
    now: f64,
) -> i32 {
    // SAFETY: forwarded caller guarantees.
    unsafe {
        with_mem(h, |s| match s.peek_stale(key_slice(key, len), now) {
            Some(slot) => slot as i32,
            None => Status::Miss as i32,
        })
    }
}

/// Removes `key[..len]`; returns its former slot, or `-1` when absent.
///
/// # Safety
/// - `h` must be null or live (see `warp_mem_new`) and not in use by another thread; `key` valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_mem_delete(h: *const MemStore, key: *const u8, len: u32) -> i32 {
    // SAFETY: forwarded caller guarantees.
    unsafe {
        with_mem(h, |s| match s.remove(key_slice(key, len)) {
            Some(slot) => slot as i32,
            None => Status::Miss as i32,
        })
    }
}

/// Evicts one entry by the policy; returns its slot, or `-1` when empty.
///
/// # Safety
/// - `h` must be null or live (see `warp_mem_new`) and not in use by another thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_mem_evict(h: *const MemStore) -> i32 {
    // SAFETY: forwarded caller guarantees.
    unsafe {
        with_mem(h, |s| match s.evict() {
            Some(slot) => slot as i32,
            None => Status::Miss as i32,
        })
    }
}

/// Removes every entry and resets the counters.
///
/// # Safety
/// - `h` must be null or live (see `warp_mem_new`) and not in use by another thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_mem_clear(h: *const MemStore) -> i32 {
    // SAFETY: forwarded caller guarantees.
    unsafe {
        with_mem(h, |s| {
            s.clear();
            Status::Ok as i32
        })
    }
}

/// Returns the number of live entries (or a negative [`Status`]).
///
/// # Safety
/// - `h` must be null or live (see `warp_mem_new`) and not in use by another thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_mem_len(h: *const MemStore) -> i32 {
    // SAFETY: forwarded caller guarantees.
    unsafe { with_mem(h, |s| i32::try_from(s.len()).unwrap_or(i32::MAX)) }
}

/// Writes the store's counters as [`MEM_INFO_FIELDS`](crate::abi::MEM_INFO_FIELDS) (6) little-endian `f64` (48 bytes)
/// into `out`, in the order of [`MEM_INFO`]: hits, misses, evictions, expirations, current
/// size, capacity.
///
/// # Safety
/// - `h` must be null or live (see `warp_mem_new`) and not in use by another thread; `out` valid for 48 bytes of writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_mem_info(h: *const MemStore, out: *mut u8) -> i32 {
    if out.is_null() {
        return fail(Status::InvalidArgument, "info buffer is null");
    }
    // SAFETY: forwarded caller guarantees.
    unsafe {
        with_mem(h, |s| {
            let fields = write_fields(&MEM_INFO, s);
            for (i, v) in fields.iter().enumerate() {
                let b = v.to_le_bytes();
                // SAFETY: `out` is valid for 48 bytes; `i * 8 + 8 <= 8 * MEM_INFO_FIELDS = 48`.
                std::ptr::copy_nonoverlapping(b.as_ptr(), out.add(i * 8), 8);
            }
            Status::Ok as i32
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::NO_TTL;
    use crate::error::last_error;

    #[test]
    fn memory_store_round_trip_through_the_c_abi() {
        let h = warp_mem_new(2, NO_TTL, 0, 0.0);
        assert!(!h.is_null());
        let k = b"key";
        // SAFETY: `h` is live, `k` is valid for its length.
        unsafe {
            assert_eq!(warp_mem_get(h, k.as_ptr(), 3, 0.0), -1);
            let slot = warp_mem_set(h, k.as_ptr(), 3, 0.0, NO_TTL);
            assert!(slot >= 0);
            assert_eq!(warp_mem_get(h, k.as_ptr(), 3, 0.0), slot);
            assert_eq!(warp_mem_len(h), 1);
            let mut info = [0u8; 48];
            assert_eq!(warp_mem_info(h, info.as_mut_ptr()), 0);
            assert_eq!(f64::from_le_bytes(info[0..8].try_into().unwrap()), 1.0);
            assert_eq!(warp_mem_delete(h, k.as_ptr(), 3), slot);
            warp_mem_free(h);
        }
    }

    #[test]
    fn expired_is_reported_with_its_slot() {
        let h = warp_mem_new(4, 10.0, 0, 0.0);
        let k = b"k";
        // SAFETY: `h` is live, `k` is valid for its length.
        unsafe {
            let slot = warp_mem_set(h, k.as_ptr(), 1, 0.0, NO_TTL);
            assert_eq!(warp_mem_get(h, k.as_ptr(), 1, 10.0), EXPIRED_BASE - slot);
            warp_mem_free(h);
        }
    }

    #[test]
    fn own_ttl_and_stale_window_through_the_c_abi() {
        let h = warp_mem_new(4, 100.0, 0, 50.0);
        let (a, b) = (b"a", b"b");
        // SAFETY: `h` is live, the keys are valid for their lengths.
        unsafe {
            let sa = warp_mem_set(h, a.as_ptr(), 1, 0.0, NO_TTL);
            let sb = warp_mem_set(h, b.as_ptr(), 1, 0.0, 10.0);
            assert_eq!(warp_mem_get(h, b.as_ptr(), 1, 9.0), sb);
            // Stale: a miss that keeps the entry (no EXPIRED_BASE: the value must stay).
            assert_eq!(warp_mem_get(h, b.as_ptr(), 1, 10.0), -1);
            assert_eq!(warp_mem_peek(h, b.as_ptr(), 1, 10.0), -1);
            assert_eq!(warp_mem_peek_stale(h, b.as_ptr(), 1, 59.0), sb);
            assert_eq!(warp_mem_len(h), 2);
            assert_eq!(warp_mem_get(h, b.as_ptr(), 1, 60.0), EXPIRED_BASE - sb);
            assert_eq!(warp_mem_peek_stale(h, b.as_ptr(), 1, 60.0), -1);
            assert_eq!(warp_mem_get(h, a.as_ptr(), 1, 99.0), sa);
            assert_eq!(warp_mem_get(h, a.as_ptr(), 1, 149.0), -1);
            assert_eq!(warp_mem_set(h, a.as_ptr(), 1, 149.0, f64::INFINITY), sa);
            assert_eq!(warp_mem_get(h, a.as_ptr(), 1, 1e15), sa);
            for bad in [0.0, -1.0, f64::NEG_INFINITY] {
                assert_eq!(
                    warp_mem_set(h, b.as_ptr(), 1, 0.0, bad),
                    Status::InvalidArgument as i32
                );
                assert!(last_error().contains("ttl"), "{}", last_error());
            }
            assert_eq!(warp_mem_len(h), 1, "a bad TTL stores nothing");
            warp_mem_free(h);
        }
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(warp_mem_new(1, NO_TTL, 0, bad).is_null());
            assert!(last_error().contains("stale"), "{}", last_error());
        }
    }

    #[test]
    fn null_handle_and_bad_policy_are_errors_not_crashes() {
        // SAFETY: null handles are accepted by contract.
        unsafe {
            assert_eq!(
                warp_mem_get(std::ptr::null(), std::ptr::null(), 0, 0.0),
                Status::InvalidArgument as i32
            );
            warp_mem_free(std::ptr::null_mut());
        }
        assert!(warp_mem_new(1, NO_TTL, 99, 0.0).is_null());
        assert!(last_error().contains("policy"));
        assert!(warp_mem_new(1, NO_TTL, 8, 0.0).is_null());
        assert!(
            last_error().contains("unknown policy: 8"),
            "{}",
            last_error()
        );
    }

    #[test]
    fn every_policy_number_makes_a_store_that_evicts_by_it() {
        for (n, policy) in [
            (0, Policy::Sieve),
            (1, Policy::Lru),
            (2, Policy::Mru),
            (3, Policy::Fifo),
            (4, Policy::Lfu),
            (5, Policy::S3Fifo),
            (6, Policy::WTinyLfu),
            (7, Policy::Arc),
        ] {
            assert_eq!(Policy::from_u32(n), Some(policy));
            assert_eq!(policy as u32, n);
            let h = warp_mem_new(20, NO_TTL, n, 0.0);
            assert!(!h.is_null(), "policy {n}");
            // SAFETY: `h` is live, each key is valid for its 4 bytes.
            unsafe {
                for k in 0u32..100 {
                    let key = k.to_le_bytes();
                    if warp_mem_get(h, key.as_ptr(), 4, 0.0) < 0 {
                        assert!(warp_mem_set(h, key.as_ptr(), 4, 0.0, NO_TTL) >= 0);
                    }
                }
                assert_eq!(warp_mem_len(h), 20, "policy {n}");
                let mut info = [0u8; 48];
                assert_eq!(warp_mem_info(h, info.as_mut_ptr()), 0);
                let evictions = f64::from_le_bytes(info[16..24].try_into().unwrap());
                assert_eq!(evictions, 80.0, "policy {n}");
                warp_mem_free(h);
            }
        }
    }
}
