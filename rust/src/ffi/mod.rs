//! Every `extern "C"` export of the library. This is the only module that turns pointers
//! received from JavaScript into references or slices; each export is a thin wrapper over
//! safe code, runs inside `catch_unwind` so that no panic crosses the boundary, and
//! returns an `i32` [`Status`] (or a null pointer from a constructor, with the reason in
//! `warp_last_error`). A handle lives until its free export, or until the thread that
//! created it exits, whichever comes first (`thread_handles.rs`: a Deno Worker that ends
//! runs no finalizer).
//!
//! Hot symbols take byte lengths as `u32` and times as `f64` ms: 64-bit integers would
//! reach JavaScript as BigInt and leave V8's fast-call path (measured by the raw FFI group of `deno task bench`).

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::error::{Status, fail, last_error};

pub mod mem;
#[cfg(unix)]
mod shm;
#[cfg(unix)]
mod tags;
mod thread_handles;

/// Version of the C ABI below; `src/native/ffi.ts` refuses a library that reports another one.
/// History: 1 = first release (memory store). 2 = `warp_shm_file_size` and
/// `warp_shm_max_file_size`; `warp_shm_open` adopts the sizes of a file in use (the
/// caller reads them back with `warp_shm_info`). 3 = shared format 5: `warp_shm_open` and
/// `warp_shm_file_size` take `max_bytes`; `warp_shm_info` writes 10 fields (bytes, max bytes);
/// `warp_shm_default_max_bytes`. 4 = `warp_shm_peek`; `warp_shm_set` returns 2 when a stopped
/// lock holder kept it from storing. 5 = shared format 6: `warp_shm_open` takes `stale_ms`,
/// `warp_shm_set` the entry's own `ttl_ms`; `warp_shm_info` writes 12 fields (stale hits,
/// refreshes); `warp_shm_peek_stale`, `warp_shm_count_stale_hit`, `warp_shm_count_refresh`
/// and the `warp_shm_flight_*` exports; `warp_mem_new` takes `stale_ms`, `warp_mem_set`
/// takes `ttl_ms` (an entry's own TTL), `warp_mem_peek_stale`. 6 = shared format 7:
/// `warp_shm_flight_claim` takes `async_` and may return `FLIGHT_LOCAL`;
/// `warp_shm_flight_wait_sync` takes the handle and key (and `until_async`);
/// `warp_shm_flight_waiter` and `warp_shm_flight_wait` gave way to the dispatcher
/// (`warp_shm_flight_dispatcher`, `_register`, `_next`); `warp_shm_flight_mark_async`,
/// `warp_shm_flight_end`. 7 = the tag clock of a directory (`shm/tags.rs`):
/// `warp_tags_open`, `warp_tags_base`, `warp_tags_layout`, `warp_tags_invalidate`, and
/// `warp_shm_count_invalid_hit`. 8 = one "no TTL" sentinel, `NO_TTL` (`NaN`, `crate::abi`):
/// `warp_shm_set` takes it for "no TTL of its own" (0 did) and refuses a `ttl_ms` of 0 or
/// less, as `warp_mem_set` does; `warp_mem_new` and `warp_shm_open` take it for "no TTL"
/// and refuse 0 or less (which meant none). 9 = shared format 8 (small entries in their
/// slots; the file size formula changed); `warp_shm_get_claim` (a lookup that claims the
/// key's flight when it misses) and `warp_shm_set_owned` (a set by the flight's owner,
/// which ends the flight; it may return `SET_LOST`).
pub const ABI_VERSION: u32 = 9;

/// Returns [`ABI_VERSION`].
#[unsafe(no_mangle)]
pub extern "C" fn warp_abi_version() -> u32 {
    ABI_VERSION
}

/// Copies the calling thread's last error message (UTF-8, not NUL-terminated) into
/// `buf`, at most `cap` bytes, and returns its full length in bytes.
///
/// # Safety
/// - `buf` must be null or valid for writes of `cap` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_last_error(buf: *mut u8, cap: u32) -> u32 {
    let msg = last_error();
    let bytes = msg.as_bytes();
    if !buf.is_null() {
        let n = bytes.len().min(cap as usize);
        // SAFETY: the caller guarantees `buf` is valid for `cap` bytes and `n <= cap`;
        // `bytes` is a fresh String, so the two cannot overlap.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf, n) };
    }
    u32::try_from(bytes.len()).unwrap_or(u32::MAX)
}

/// Runs `f`, turning a panic into [`Status::Panic`].
pub(crate) fn guarded(f: impl FnOnce() -> i32) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            fail(
                Status::Panic,
                format!("internal error in warp_cache: {what}"),
            )
        }
    }
}

/// Rebuilds the key slice from a pointer and a length.
///
/// # Safety
/// - `ptr` must be valid for reads of `len` bytes for the returned lifetime, or `len`
///   must be 0.
pub(crate) unsafe fn key_slice<'a>(ptr: *const u8, len: u32) -> &'a [u8] {
    if len == 0 || ptr.is_null() {
        return &[];
    }
    // SAFETY: guaranteed by the caller: `ptr` is valid for `len` bytes.
    unsafe { std::slice::from_raw_parts(ptr, len as usize) }
}
