//! Exports of the in-process store (`warp_mem_*`).

use std::cell::UnsafeCell;

use super::{guarded, key_slice, thread_handles};
use crate::error::{Status, fail};
use crate::sieve::{Lookup, Policy, SieveStore};

/// Offset added to a slot number to report "expired" from `warp_mem_get`: a result
/// `r <= EXPIRED_BASE` means the entry at slot `EXPIRED_BASE - r` expired and was
/// removed. Values between -2 and -15 are [`Status`] codes.
pub const EXPIRED_BASE: i32 = -16;

/// `now` as given, or the library's monotonic clock when the caller passes `NaN` (the
/// decorator does so when no `clock` option is set, which spares a JS clock call).
#[inline]
fn resolve_now(now: f64) -> f64 {
    if now.is_nan() {
        crate::clock::monotonic_ms()
    } else {
        now
    }
}

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

/// Creates a memory store for at most `capacity` entries (0 = unbounded), whose entries
/// expire `ttl_ms` ms after insertion (`ttl_ms <= 0` or not finite = never), evicting by
/// `policy` (0 SIEVE, 1 LRU, 2 MRU, 3 FIFO, 4 LFU). Returns null on a bad argument.
#[unsafe(no_mangle)]
pub extern "C" fn warp_mem_new(capacity: u32, ttl_ms: f64, policy: u32) -> *mut MemStore {
    let Some(policy) = Policy::from_u32(policy) else {
        fail(Status::InvalidArgument, format!("unknown policy: {policy}"));
        return std::ptr::null_mut();
    };
    let capacity = if capacity == 0 {
        usize::MAX
    } else {
        capacity as usize
    };
    let ttl = (ttl_ms.is_finite() && ttl_ms > 0.0).then_some(ttl_ms);
    let store = MemStore {
        inner: UnsafeCell::new(SieveStore::new(capacity, ttl, policy)),
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

/// Looks up the key `key[..len]` at time `now` (ms; `NaN` = the library's monotonic clock). Returns the slot (`>= 0`) on a hit,
/// `-1` on a miss, `EXPIRED_BASE - slot` when the entry expired and was removed, or a
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
        with_mem(h, |s| match s.get(key_slice(key, len), resolve_now(now)) {
            Lookup::Hit(slot) => slot as i32,
            Lookup::Miss => Status::Miss as i32,
            Lookup::Expired(slot) => EXPIRED_BASE - slot as i32,
        })
    }
}

/// Inserts the key `key[..len]` at time `now` (ms; `NaN` = the library's clock) and returns its slot (`>= 0`); when
/// the store was full, an entry was evicted and its slot is the one returned.
///
/// # Safety
/// - `h` must be null or live (see `warp_mem_new`) and not in use by another thread; `key` valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_mem_set(
    h: *const MemStore,
    key: *const u8,
    len: u32,
    now: f64,
) -> i32 {
    // SAFETY: forwarded caller guarantees.
    unsafe {
        with_mem(h, |s| {
            s.insert(key_slice(key, len), resolve_now(now)).slot as i32
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
        with_mem(h, |s| match s.peek(key_slice(key, len), resolve_now(now)) {
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

/// Writes the store's counters as 6 little-endian `f64` (48 bytes) into `out`: hits,
/// misses, evictions, expirations, current size, capacity.
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
            let st = s.stats();
            let fields = [
                st.hits as f64,
                st.misses as f64,
                st.evictions as f64,
                st.expirations as f64,
                s.len() as f64,
                s.capacity() as f64,
            ];
            for (i, v) in fields.iter().enumerate() {
                let b = v.to_le_bytes();
                // SAFETY: `out` is valid for 48 bytes; `i * 8 + 8 <= 48`.
                std::ptr::copy_nonoverlapping(b.as_ptr(), out.add(i * 8), 8);
            }
            Status::Ok as i32
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::last_error;

    #[test]
    fn memory_store_round_trip_through_the_c_abi() {
        let h = warp_mem_new(2, 0.0, 0);
        assert!(!h.is_null());
        let k = b"key";
        // SAFETY: `h` is live, `k` is valid for its length.
        unsafe {
            assert_eq!(warp_mem_get(h, k.as_ptr(), 3, 0.0), -1);
            let slot = warp_mem_set(h, k.as_ptr(), 3, 0.0);
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
        let h = warp_mem_new(4, 10.0, 0);
        let k = b"k";
        // SAFETY: `h` is live, `k` is valid for its length.
        unsafe {
            let slot = warp_mem_set(h, k.as_ptr(), 1, 0.0);
            assert_eq!(warp_mem_get(h, k.as_ptr(), 1, 10.0), EXPIRED_BASE - slot);
            warp_mem_free(h);
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
        assert!(warp_mem_new(1, 0.0, 99).is_null());
        assert!(last_error().contains("policy"));
    }
}
