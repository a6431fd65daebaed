//! Exports of the shared store (`warp_shm_*`), thin wrappers over [`crate::shm::ShmStore`].
//!
//! A handle is a `Box<ShmStore>` owned by JavaScript between `warp_shm_open` and
//! `warp_shm_close`. Every function taking a handle accepts null (an error, or a no-op
//! for close).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{guarded, key_slice, thread_handles};
use crate::abi::{
    FLIGHT_ASYNC, FLIGHT_CLOSED, FLIGHT_DONE, FLIGHT_ID_BASE, FLIGHT_LOCAL, FLIGHT_MISS_CLAIMED,
    FLIGHT_NONE, FLIGHT_OWNER, FLIGHT_TIMEOUT, FLIGHT_WAIT, INSPECT_CONSISTENT, INSPECT_CORRUPT,
    INSPECT_FIELDS, INSPECT_FILE_SIZE, INSPECT_FOREIGN, INSPECT_FORMAT_VERSION, INSPECT_IN_USE,
    INSPECT_LOCKED, INSPECT_OTHER_VERSION, INSPECT_VALID, SET_BUSY, SET_LOST, SET_SKIPPED,
    SET_STORED, SHM_INFO, SHM_INFO_FIELDS, ttl_arg, write_fields,
};
use crate::error::{Status, fail};
use crate::shm::dispatch;
use crate::shm::flight::{Claim, End};
use crate::shm::{Fetch, Get, Info, Set, ShmError, ShmStore, deadline_after};

/// `now` as given, or Unix time from the library when the caller passes `NaN`: a clock
/// that every process agrees on.
#[inline]
fn wall_now(now: f64) -> f64 {
    if now.is_nan() {
        crate::clock::wall_ms()
    } else {
        now
    }
}

// The codes (`FLIGHT_*`, `INSPECT_*`, `SET_*`) and the fields of `warp_shm_info` and
// `warp_shm_inspect` are defined in `crate::abi`, which `src/native/_abi.ts` is generated from.
// A wait's end is FLIGHT_OWNER when it took a dead owner's flight over.

fn claim_code(c: Claim) -> i32 {
    match c {
        Claim::Owner => FLIGHT_OWNER,
        Claim::Wait => FLIGHT_WAIT,
        Claim::None => FLIGHT_NONE,
        Claim::Local => FLIGHT_LOCAL,
    }
}

fn end_code(e: End) -> i32 {
    match e {
        End::Done => FLIGHT_DONE,
        End::Owner => FLIGHT_OWNER,
        End::Timeout => FLIGHT_TIMEOUT,
        End::Async => FLIGHT_ASYNC,
        End::Closed => FLIGHT_CLOSED,
    }
}

fn failed(e: &ShmError) -> i32 {
    fail(e.status, e.message.clone())
}

/// Runs `f` on the store behind `h`.
///
/// # Safety
/// - `h` must be null or a live pointer returned by `warp_shm_open`.
unsafe fn with_shm(h: *const ShmStore, f: impl FnOnce(&ShmStore) -> i32) -> i32 {
    if h.is_null() {
        return fail(Status::InvalidArgument, "shared store handle is null");
    }
    // SAFETY: the caller guarantees `h` came from `warp_shm_open` and was not closed.
    let store = unsafe { &*h };
    guarded(|| f(store))
}

/// Opens (creating or recreating it if needed) the shared cache file whose path is the
/// bytes `path[..path_len]`, for at most `capacity` entries (1 to 2^24), keys up to
/// `max_key_size` bytes (1 to 1 MiB) and values up to `max_value_size` bytes (1 to
/// 64 MiB), whose keys and values take at most `max_bytes` bytes (256 to 64 GiB;
/// `DEFAULT_BUDGET`: the default, `layout::default_max_bytes`). Entries without a TTL of
/// their own expire `ttl_ms` ms after insertion as judged by this handle (`NO_TTL` or
/// `+Infinity`: never; 0 or negative: a bad argument); the TTL is not part of the file. Entries stay stale (a miss for `warp_shm_get`, a value for
/// `warp_shm_peek_stale`) for `stale_ms` ms after their TTL (`<= 0` or not finite: none). Creates the parent
/// directory (mode 0700) if it is missing. A valid file of other sizes that another
/// handle has open is adopted with its sizes (see `ShmStore::open`): `warp_shm_info`
/// reports the sizes in use (capacity, max key size, max value size, max bytes). Returns
/// null on failure, with the reason in
/// `warp_last_error` (a symbolic link, a file of another user, a full file system,
/// bad sizes...).
///
/// # Safety
/// - `path` must be valid for reads of `path_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_shm_open(
    path: *const u8,
    path_len: u32,
    capacity: u32,
    max_key_size: u32,
    max_value_size: u32,
    max_bytes: u64,
    ttl_ms: f64,
    stale_ms: f64,
) -> *mut ShmStore {
    // SAFETY: the caller guarantees `path` is valid for `path_len` bytes.
    let bytes = unsafe { key_slice(path, path_len) };
    let mut handle: *mut ShmStore = std::ptr::null_mut();
    guarded(|| {
        if bytes.is_empty() {
            return fail(
                Status::InvalidArgument,
                "Cannot open a shared cache: the path is empty",
            );
        }
        if let Err(status) = ttl_arg(ttl_ms) {
            return status;
        }
        let path = Path::new(OsStr::from_bytes(bytes));
        match ShmStore::open_sized(
            path,
            capacity,
            max_key_size,
            max_value_size,
            max_bytes,
            ttl_ms,
        ) {
            Ok(mut store) => {
                store.set_stale(stale_ms);
                handle = thread_handles::adopt(Box::new(store));
                Status::Ok as i32
            }
            Err(e) => failed(&e),
        }
    });
    handle
}

/// The size in bytes of a shared cache file for `capacity` entries, keys up to
/// `max_key_size` and values up to `max_value_size` bytes, and a byte budget of
/// `max_bytes` (0: the default) (the formula `file_size_of`, `rust/src/shm/layout.rs`,
/// whatever the limits), so that callers check sizes before opening with the one
/// formula. An `f64`: exact (at most about 2^45).
#[unsafe(no_mangle)]
pub extern "C" fn warp_shm_file_size(
    capacity: u32,
    max_key_size: u32,
    max_value_size: u32,
    max_bytes: u64,
) -> f64 {
    crate::shm::layout::file_size_of(capacity, max_key_size, max_value_size, max_bytes) as f64
}

/// The byte budget of a shared cache opened with `max_bytes` 0 for these sizes
/// (`default_max_bytes`, `rust/src/shm/layout.rs`). An `f64`: exact (at most 16 MiB).
#[unsafe(no_mangle)]
pub extern "C" fn warp_shm_default_max_bytes(
    capacity: u32,
    max_key_size: u32,
    max_value_size: u32,
) -> f64 {
    crate::shm::layout::default_max_bytes(capacity, max_key_size, max_value_size) as f64
}

/// The largest shared cache file, in bytes: the one of the largest sizes (about 65.3 GiB,
/// `MAX_FILE_SIZE` in `shm/layout.rs`); a larger one is refused at open.
#[unsafe(no_mangle)]
pub extern "C" fn warp_shm_max_file_size() -> f64 {
    crate::shm::layout::MAX_FILE_SIZE as f64
}

/// Closes a handle (unmaps the file; the file stays). Null, or a handle that is not
/// live (already closed, or closed when its thread exited), is a no-op.
///
/// # Safety
/// - `h` must be null or a pointer returned by `warp_shm_open`, not used after this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_shm_close(h: *mut ShmStore) {
    // SAFETY: the caller guarantees nobody uses `h` after this call.
    let Some(store) = (unsafe { thread_handles::release(h) }) else {
        return;
    };
    guarded(|| {
        drop(store);
        Status::Ok as i32
    });
}

/// Looks `key[..key_len]` up at time `now` (ms; `NaN` = Unix time read by the library) and copies its value into
/// `out[..out_cap]`. Returns the value length (`>= 0`) on a hit, `-1` on a miss (absent,
/// expired or corrupt; counted), `BufferTooSmall` (-7, not counted, the needed size in
/// the message) when `out_cap` is less than the value length, or another negative
/// status.
///
/// # Safety
/// - `h` must be null or live (see `warp_shm_open`); `key` valid for `key_len` bytes;
///   `out` valid for writes of `out_cap` bytes (or `out_cap` 0), not overlapping `key`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_shm_get(
    h: *const ShmStore,
    key: *const u8,
    key_len: u32,
    out: *mut u8,
    out_cap: u32,
    now: f64,
) -> i32 {
    // SAFETY: forwarded caller guarantees.
    unsafe { lookup(h, key, key_len, out, out_cap, now, Lookup::Get) }
}

/// [`warp_shm_get`] without counting the lookup or setting the visited bit (`cacheGet()`).
///
/// # Safety
/// The same as [`warp_shm_get`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_shm_peek(
    h: *const ShmStore,
    key: *const u8,
    key_len: u32,
    out: *mut u8,
    out_cap: u32,
    now: f64,
) -> i32 {
    // SAFETY: forwarded caller guarantees.
    unsafe { lookup(h, key, key_len, out, out_cap, now, Lookup::Peek) }
}

/// [`warp_shm_peek`] that also returns a stale entry (older than its TTL, not older than
/// its TTL plus this handle's stale window).
///
/// # Safety
/// The same as [`warp_shm_get`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_shm_peek_stale(
    h: *const ShmStore,
    key: *const u8,
    key_len: u32,
    out: *mut u8,
    out_cap: u32,
    now: f64,
) -> i32 {
    // SAFETY: forwarded caller guarantees.
    unsafe { lookup(h, key, key_len, out, out_cap, now, Lookup::PeekStale) }
}

/// [`warp_shm_get`] that claims the key's flight when it misses, in the same call (see
/// `ShmStore::get_or_claim`): returns the value length on a hit (counted), or on a miss
/// (counted) [`FLIGHT_MISS_CLAIMED`]` - code`, `code` being what the claim found: [`FLIGHT_OWNER`]
/// (this handle computes the key: then `warp_shm_set_owned`, or
/// `warp_shm_flight_release`), [`FLIGHT_WAIT`], [`FLIGHT_LOCAL`] or [`FLIGHT_NONE`] (as
/// `warp_shm_flight_claim`). `BufferTooSmall` and other statuses as `warp_shm_get`. A
/// miss looks the key up again under the write lock before it claims: one call instead
/// of a lookup, a claim and a second lookup.
///
/// # Safety
/// The same as [`warp_shm_get`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_shm_get_claim(
    h: *const ShmStore,
    key: *const u8,
    key_len: u32,
    out: *mut u8,
    out_cap: u32,
    now: f64,
) -> i32 {
    // SAFETY: the caller guarantees `key` is valid for `key_len` bytes.
    let key = unsafe { key_slice(key, key_len) };
    // SAFETY: the caller guarantees `out` (when not null) is valid for `out_cap` bytes of
    // writes, not overlapping `key`.
    let out = unsafe { out_slice(out, out_cap) };
    // SAFETY: forwarded caller guarantee on `h`.
    unsafe {
        with_shm(h, |s| match s.get_or_claim(key, out, now) {
            Ok(Fetch::Hit(n)) => i32::try_from(n).unwrap_or(i32::MAX),
            Ok(Fetch::Miss(c)) => FLIGHT_MISS_CLAIMED - claim_code(c),
            Ok(Fetch::TooSmall(n)) => too_small(n, out_cap),
            Err(e) => failed(&e),
        })
    }
}

/// The output buffer `out[..out_cap]` (empty when null or 0).
///
/// # Safety
/// `out` must be null, or valid for writes of `out_cap` bytes for the returned lifetime.
unsafe fn out_slice<'a>(out: *mut u8, out_cap: u32) -> &'a mut [u8] {
    if out.is_null() || out_cap == 0 {
        &mut []
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts_mut(out, out_cap as usize) }
    }
}

/// The `BufferTooSmall` status of a value of `n` bytes and a buffer of `out_cap`.
fn too_small(n: usize, out_cap: u32) -> i32 {
    fail(
        Status::BufferTooSmall,
        format!("Cannot copy a shared cache value: it needs {n} bytes, the buffer has {out_cap}"),
    )
}

/// Which lookup [`lookup`] makes.
#[derive(Clone, Copy)]
enum Lookup {
    Get,
    Peek,
    PeekStale,
}

/// The body of [`warp_shm_get`], [`warp_shm_peek`] and [`warp_shm_peek_stale`].
///
/// # Safety
/// The same as [`warp_shm_get`].
unsafe fn lookup(
    h: *const ShmStore,
    key: *const u8,
    key_len: u32,
    out: *mut u8,
    out_cap: u32,
    now: f64,
    mode: Lookup,
) -> i32 {
    // SAFETY: the caller guarantees `key` is valid for `key_len` bytes.
    let key = unsafe { key_slice(key, key_len) };
    // SAFETY: the caller guarantees `out` (when not null) is valid for writes of
    // `out_cap` bytes and does not overlap `key`.
    let out = unsafe { out_slice(out, out_cap) };
    // SAFETY: forwarded caller guarantee on `h`.
    unsafe {
        with_shm(h, |s| {
            let r = match mode {
                Lookup::Get => s.get(key, out, now),
                Lookup::Peek => s.peek(key, out, now),
                Lookup::PeekStale => s.peek_stale(key, out, now),
            };
            match r {
                Ok(Get::Hit(n)) => i32::try_from(n).unwrap_or(i32::MAX),
                Ok(Get::Miss) => Status::Miss as i32,
                Ok(Get::TooSmall(n)) => too_small(n, out_cap),
                Err(e) => failed(&e),
            }
        })
    }
}

/// Stores `key[..key_len] -> value[..value_len]` inserted at `now` (ms) with its own TTL
/// `ttl_ms` (`+Infinity`: never expires; `NO_TTL`: none, each handle judges it by its own
/// TTL; 0 or negative: `InvalidArgument`, nothing stored); an existing key gets the new
/// value, insertion time and TTL; a full store (entries or bytes) evicts by SIEVE until the
/// entry fits. Returns [`SET_STORED`], [`SET_SKIPPED`] when the key or value exceeds its
/// size limit, or the entry the whole byte budget (counted as an oversize skip),
/// [`SET_BUSY`] when not stored because a live process kept the write lock (stopped, or in
/// a debugger; see `ShmStore::set`), or a negative status.
///
/// # Safety
/// - `h` must be null or live (see `warp_shm_open`); `key` valid for `key_len` bytes,
///   `value` for `value_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_shm_set(
    h: *const ShmStore,
    key: *const u8,
    key_len: u32,
    value: *const u8,
    value_len: u32,
    now: f64,
    ttl_ms: f64,
) -> i32 {
    // SAFETY: the caller guarantees both ranges are valid for reads.
    let (key, value) = unsafe { (key_slice(key, key_len), key_slice(value, value_len)) };
    // SAFETY: forwarded caller guarantee on `h`.
    unsafe {
        with_shm(h, |s| {
            if let Err(status) = ttl_arg(ttl_ms) {
                return status;
            }
            set_code(s.set_with_ttl(key, value, wall_now(now), ttl_ms))
        })
    }
}

fn set_code(r: Result<Set, ShmError>) -> i32 {
    match r {
        Ok(Set::Stored) => SET_STORED,
        Ok(Set::Skipped) => SET_SKIPPED,
        Ok(Set::Busy) => SET_BUSY,
        Ok(Set::Lost) => SET_LOST,
        Err(e) => failed(&e),
    }
}

/// [`warp_shm_set`] by the owner of the key's flight (claimed by
/// [`warp_shm_get_claim`] or [`warp_shm_flight_claim`]), which it ends, stored or not (as
/// `warp_shm_flight_release` does): stores only while this handle still owns the flight,
/// checked under the write lock (a delete, clear or set by hand in any process ended it:
/// the value computed before must not go over theirs). Returns [`SET_STORED`],
/// [`SET_SKIPPED`], [`SET_BUSY`], [`SET_LOST`] (not stored: the flight was no longer
/// this handle's), or a negative status. One call instead of `warp_shm_flight_owns`,
/// `warp_shm_set` and `warp_shm_flight_release`.
///
/// # Safety
/// - `h` must be null or live (see `warp_shm_open`); `key` valid for `key_len` bytes,
///   `value` for `value_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_shm_set_owned(
    h: *const ShmStore,
    key: *const u8,
    key_len: u32,
    value: *const u8,
    value_len: u32,
    now: f64,
    ttl_ms: f64,
) -> i32 {
    // SAFETY: the caller guarantees both ranges are valid for reads.
    let (key, value) = unsafe { (key_slice(key, key_len), key_slice(value, value_len)) };
    // SAFETY: forwarded caller guarantee on `h`.
    unsafe {
        with_shm(h, |s| {
            if let Err(status) = ttl_arg(ttl_ms) {
                return status;
            }
            set_code(s.set_owned(key, value, wall_now(now), ttl_ms))
        })
    }
}

/// Removes `key[..key_len]` and ends its flight (whoever owns it). Returns 0 when it was
/// present, -1 when absent, or a negative status.
///
/// # Safety
/// - `h` must be null or live (see `warp_shm_open`); `key` valid for `key_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_shm_delete(h: *const ShmStore, key: *const u8, key_len: u32) -> i32 {
    // SAFETY: the caller guarantees `key` is valid for `key_len` bytes.
    let key = unsafe { key_slice(key, key_len) };
    // SAFETY: forwarded caller guarantee on `h`.
    unsafe {
        with_shm(h, |s| match s.delete(key) {
            Ok(true) => Status::Ok as i32,
            Ok(false) => Status::Miss as i32,
            Err(e) => failed(&e),
        })
    }
}

/// Removes every entry of the file (for every process), resets every counter (oversize
/// skips, stale hits and refreshes included) and ends every flight. Returns 0 or a
/// negative status.
///
/// # Safety
/// - `h` must be null or live (see `warp_shm_open`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_shm_clear(h: *const ShmStore) -> i32 {
    // SAFETY: forwarded caller guarantee on `h`.
    unsafe {
        with_shm(h, |s| match s.clear() {
            Ok(()) => Status::Ok as i32,
            Err(e) => failed(&e),
        })
    }
}

/// The fields of `warp_shm_info`, in the order of [`SHM_INFO`].
fn info_fields(i: &Info) -> [f64; SHM_INFO_FIELDS] {
    write_fields(&SHM_INFO, i)
}

/// Writes `fields` to `out` as little-endian `f64`s.
///
/// # Safety
/// `out` must be valid for writes of `8 * fields.len()` bytes.
unsafe fn write_f64s(fields: &[f64], out: *mut u8) {
    for (i, v) in fields.iter().enumerate() {
        let b = v.to_le_bytes();
        // SAFETY: `i * 8 + 8 <= 8 * fields.len()`, within what the caller guarantees.
        unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), out.add(i * 8), 8) };
    }
}

/// Writes [`SHM_INFO_FIELDS`] (12) little-endian `f64` (96 bytes) into `out`: hits,
/// misses, oversize skips, current length, capacity, evictions, max key size, max value
/// size, bytes held by the entries, max bytes, stale hits, refreshes. Counters are the
/// totals of every process since creation or the last clear. Returns 0 or a negative
/// status.
///
/// # Safety
/// - `h` must be null or live (see `warp_shm_open`); `out` valid for writes of 96 bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_shm_info(h: *const ShmStore, out: *mut u8) -> i32 {
    if out.is_null() {
        return fail(Status::InvalidArgument, "info buffer is null");
    }
    // SAFETY: forwarded caller guarantee on `h`.
    unsafe {
        with_shm(h, |s| {
            let fields = info_fields(&s.info());
            // SAFETY: the caller guarantees `out` is valid for 96 bytes of writes.
            write_f64s(&fields, out);
            Status::Ok as i32
        })
    }
}

/// Inspects the cache file whose path is the bytes `path[..path_len]` WITHOUT changing it
/// (`crate::shm::inspect`: opened read-only, header read with atomic loads in a bounded
/// seqlock read, nothing repaired, no lock taken) and writes [`INSPECT_FIELDS`] (17)
/// little-endian `f64` (136 bytes) into `out` (all 0 unless the file is valid; field 12,
/// the version, also for [`INSPECT_OTHER_VERSION`]). Returns [`INSPECT_VALID`],
/// [`INSPECT_FOREIGN`], [`INSPECT_OTHER_VERSION`] or [`INSPECT_CORRUPT`] (with the reason
/// in `warp_last_error`), or a negative status (the file cannot be opened: missing, a
/// symbolic link, not a regular file, no permission; the reason in `warp_last_error`).
///
/// # Safety
/// - `path` valid for reads of `path_len` bytes; `out` valid for writes of 136 bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_shm_inspect(path: *const u8, path_len: u32, out: *mut u8) -> i32 {
    use crate::shm::inspect::{Verdict, inspect};
    if out.is_null() {
        return fail(Status::InvalidArgument, "inspect buffer is null");
    }
    // SAFETY: the caller guarantees `path` is valid for `path_len` bytes.
    let path = unsafe { key_slice(path, path_len) };
    guarded(|| {
        let mut fields = [0f64; INSPECT_FIELDS];
        let code = match inspect(Path::new(OsStr::from_bytes(path))) {
            Ok(Verdict::Valid(i)) => {
                fields[..SHM_INFO_FIELDS].copy_from_slice(&info_fields(&i.info));
                fields[INSPECT_FORMAT_VERSION] = f64::from(i.version);
                fields[INSPECT_FILE_SIZE] = i.file_size as f64;
                fields[INSPECT_IN_USE] = match i.in_use {
                    Some(true) => 1.0,
                    Some(false) => 0.0,
                    None => -1.0,
                };
                fields[INSPECT_CONSISTENT] = f64::from(u8::from(i.consistent));
                fields[INSPECT_LOCKED] = f64::from(u8::from(i.locked));
                INSPECT_VALID
            }
            Ok(Verdict::Foreign(m)) => fail_with(INSPECT_FOREIGN, m),
            Ok(Verdict::OtherVersion(v, m)) => {
                fields[INSPECT_FORMAT_VERSION] = f64::from(v);
                fail_with(INSPECT_OTHER_VERSION, m)
            }
            Ok(Verdict::Corrupt(m)) => fail_with(INSPECT_CORRUPT, m),
            Err(m) => fail(Status::Io, m),
        };
        // SAFETY: the caller guarantees `out` is valid for 136 bytes of writes.
        unsafe { write_f64s(&fields, out) };
        code
    })
}

/// Records `message` as the last error and returns `code` (a verdict, not a status).
fn fail_with(code: i32, message: String) -> i32 {
    crate::error::set_last_error(message);
    code
}

/// Turns one counted miss into a hit (a call that joined another call's pending
/// computation): misses -= 1 (not below 0), hits += 1. Returns 0 or a negative status.
///
/// # Safety
/// - `h` must be null or live (see `warp_shm_open`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_shm_count_hit(h: *const ShmStore) -> i32 {
    // SAFETY: forwarded caller guarantee on `h`.
    unsafe {
        with_shm(h, |s| {
            s.count_hit();
            Status::Ok as i32
        })
    }
}

/// Turns one counted miss into a hit and counts a stale hit (a stale value returned);
/// with `joined` non-zero, counts the stale hit only (the call was counted as a hit
/// already). Returns 0 or a negative status.
///
/// # Safety
/// - `h` must be null or live (see `warp_shm_open`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_shm_count_stale_hit(h: *const ShmStore, joined: u8) -> i32 {
    // SAFETY: forwarded caller guarantee on `h`.
    unsafe {
        with_shm(h, |s| {
            s.count_stale_hit(joined != 0);
            Status::Ok as i32
        })
    }
}

/// Counts a background refresh. Returns 0 or a negative status.
///
/// # Safety
/// - `h` must be null or live (see `warp_shm_open`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_shm_count_refresh(h: *const ShmStore) -> i32 {
    // SAFETY: forwarded caller guarantee on `h`.
    unsafe {
        with_shm(h, |s| {
            s.count_refresh();
            Status::Ok as i32
        })
    }
}

/// Claims the computation of `key[..key_len]` for this handle across processes: returns
/// [`FLIGHT_OWNER`] (compute, then `warp_shm_flight_release`), [`FLIGHT_WAIT`] (a live
/// handle of another process has it: wait), [`FLIGHT_LOCAL`] (a live handle of this
/// process has it: a synchronous caller must not block on it), [`FLIGHT_NONE`] (no room:
/// compute without a flight), or a negative status. `async_` non-zero: the computation is
/// known to be async (see `warp_shm_flight_mark_async`).
///
/// # Safety
/// - `h` must be null or live (see `warp_shm_open`); `key` valid for `key_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_shm_flight_claim(
    h: *const ShmStore,
    key: *const u8,
    key_len: u32,
    async_: u8,
) -> i32 {
    // SAFETY: the caller guarantees `key` is valid for `key_len` bytes.
    let key = unsafe { key_slice(key, key_len) };
    // SAFETY: forwarded caller guarantee on `h`.
    unsafe { with_shm(h, |s| claim_code(s.claim(key, async_ != 0))) }
}

/// Records that this handle's computation of `key[..key_len]` is async (it returned a
/// Promise), waking the synchronous waiters that asked to know; nothing when this handle
/// does not own the key's flight. Returns 0 or a negative status.
///
/// # Safety
/// - `h` must be null or live (see `warp_shm_open`); `key` valid for `key_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_shm_flight_mark_async(
    h: *const ShmStore,
    key: *const u8,
    key_len: u32,
) -> i32 {
    // SAFETY: the caller guarantees `key` is valid for `key_len` bytes.
    let key = unsafe { key_slice(key, key_len) };
    // SAFETY: forwarded caller guarantee on `h`.
    unsafe {
        with_shm(h, |s| {
            s.mark_async(key);
            Status::Ok as i32
        })
    }
}

/// Whether this handle owns the flight of `key[..key_len]`: 1 or 0, or a negative status.
///
/// # Safety
/// - `h` must be null or live (see `warp_shm_open`); `key` valid for `key_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_shm_flight_owns(
    h: *const ShmStore,
    key: *const u8,
    key_len: u32,
) -> i32 {
    // SAFETY: the caller guarantees `key` is valid for `key_len` bytes.
    let key = unsafe { key_slice(key, key_len) };
    // SAFETY: forwarded caller guarantee on `h`.
    unsafe { with_shm(h, |s| i32::from(s.owns(key))) }
}

/// Ends this handle's flight of `key[..key_len]` and wakes its waiters (idempotent).
/// Returns 0 or a negative status.
///
/// # Safety
/// - `h` must be null or live (see `warp_shm_open`); `key` valid for `key_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_shm_flight_release(
    h: *const ShmStore,
    key: *const u8,
    key_len: u32,
) -> i32 {
    // SAFETY: the caller guarantees `key` is valid for `key_len` bytes.
    let key = unsafe { key_slice(key, key_len) };
    // SAFETY: forwarded caller guarantee on `h`.
    unsafe {
        with_shm(h, |s| {
            s.release(key);
            Status::Ok as i32
        })
    }
}

/// Ends every flight of `key[..key_len]`, whoever owns it, in any process (a value set by
/// hand: the computation under way must not store over it), waking its waiters. Returns
/// 0 or a negative status.
///
/// # Safety
/// - `h` must be null or live (see `warp_shm_open`); `key` valid for `key_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_shm_flight_end(
    h: *const ShmStore,
    key: *const u8,
    key_len: u32,
) -> i32 {
    // SAFETY: the caller guarantees `key` is valid for `key_len` bytes.
    let key = unsafe { key_slice(key, key_len) };
    // SAFETY: forwarded caller guarantee on `h`.
    unsafe {
        with_shm(h, |s| {
            s.end_flight(key);
            Status::Ok as i32
        })
    }
}

/// Waits on the calling thread for the flight of `key[..key_len]`: returns
/// [`FLIGHT_DONE`] (it ended, or a handle of this process owns it now and `until_async`
/// is 0: never blocks on a flight of this process), [`FLIGHT_OWNER`] (its owner died and
/// this handle took it over: compute, then release), [`FLIGHT_ASYNC`] (with
/// `until_async` non-zero: the owner marked its computation async, or a handle of this
/// process owns the flight: wait asynchronously instead), [`FLIGHT_TIMEOUT`] (`ms` ms
/// passed; not finite: no bound) or a negative status. Sleeps on a futex word of the
/// flight's record, asking about the owner's liveness every 100 ms.
///
/// # Safety
/// - `h` must be null or live (see `warp_shm_open`); `key` valid for `key_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_shm_flight_wait_sync(
    h: *const ShmStore,
    key: *const u8,
    key_len: u32,
    ms: f64,
    until_async: u8,
) -> i32 {
    // SAFETY: the caller guarantees `key` is valid for `key_len` bytes.
    let key = unsafe { key_slice(key, key_len) };
    // SAFETY: forwarded caller guarantee on `h`.
    unsafe { with_shm(h, |s| end_code(s.wait_sync(key, ms, until_async != 0))) }
}

/// The id of the calling thread's dispatcher of asynchronous flight waits (made on first
/// use; ended when the thread exits), or a negative status. Call it from the thread of
/// the JavaScript isolate that waits (not `nonblocking`).
#[unsafe(no_mangle)]
pub extern "C" fn warp_shm_flight_dispatcher() -> i32 {
    guarded(|| match dispatch::for_this_thread() {
        Some(id) => i32::try_from(id).unwrap_or(i32::MAX),
        None => fail(Status::InvalidArgument, "the thread is exiting"),
    })
}

/// Registers with dispatcher `d` a wait of handle `h` for the flight of `key[..key_len]`,
/// bounded by `ms` ms (not finite: no bound). Returns an end code when the wait ended at
/// once ([`FLIGHT_DONE`], [`FLIGHT_OWNER`], [`FLIGHT_TIMEOUT`], [`FLIGHT_CLOSED`]),
/// [`FLIGHT_ID_BASE`]` + id` when it waits (`warp_shm_flight_next` reports its end under
/// that id), or a negative status. An asynchronous wait does not end when a handle of this
/// process owns the flight: it waits for it.
///
/// # Safety
/// - `h` must be null or live (see `warp_shm_open`); `key` valid for `key_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_shm_flight_register(
    d: u32,
    h: *const ShmStore,
    key: *const u8,
    key_len: u32,
    ms: f64,
) -> i32 {
    // SAFETY: the caller guarantees `key` is valid for `key_len` bytes.
    let key = unsafe { key_slice(key, key_len) };
    let Some(dispatcher) = dispatch::get(d) else {
        return fail(
            Status::InvalidArgument,
            format!("no flight dispatcher {d} in this process"),
        );
    };
    // SAFETY: forwarded caller guarantee on `h`.
    unsafe {
        with_shm(h, |s| {
            match dispatcher.register(s.waiter(key), deadline_after(ms)) {
                Ok(id) => FLIGHT_ID_BASE.saturating_add(i32::try_from(id).unwrap_or(i32::MAX)),
                Err(end) => end_code(end),
            }
        })
    }
}

thread_local! {
    /// Touched by `warp_shm_flight_next`: a thread-local with a destructor keeps the
    /// library loaded until the thread that runs the call exits (glibc's
    /// `__cxa_thread_atexit_impl`), even if the isolate that loaded it is torn down while
    /// the call sleeps.
    static PIN: Pin = const { Pin };
}

struct Pin;

impl Drop for Pin {
    fn drop(&mut self) {}
}

/// Blocks until waits of dispatcher `d` end, and writes their ids and end codes into
/// `out[..cap]` as `u32` pairs (id, code): at most `cap / 2` pairs. Returns the number of
/// pairs written: 0 at once when the dispatcher has no wait (or is gone). Declared
/// `nonblocking` in `src/native/ffi.ts`: one call at a time per dispatcher, on one thread
/// of Deno's blocking pool, sleeps for every wait of its JavaScript thread.
///
/// # Safety
/// - `out` must be valid for writes of `cap` `u32`s (4-aligned), and not used by anyone
///   else until the call returns.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_shm_flight_next(d: u32, out: *mut u32, cap: u32) -> i32 {
    if out.is_null() || cap < 2 {
        return fail(
            Status::InvalidArgument,
            "the flight buffer must hold at least one pair",
        );
    }
    let _ = PIN.try_with(|_| ());
    let Some(dispatcher) = dispatch::get(d) else {
        return 0;
    };
    // SAFETY: the caller guarantees `out` is valid for `cap` u32 writes, used by nobody else.
    let out = unsafe { std::slice::from_raw_parts_mut(out, cap as usize) };
    guarded(|| {
        let ended = dispatcher.next(out.len() / 2);
        for (slot, (id, end)) in out.chunks_exact_mut(2).zip(&ended) {
            slot[0] = *id;
            slot[1] = end_code(*end) as u32;
        }
        i32::try_from(ended.len()).unwrap_or(i32::MAX)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::NO_TTL;
    use crate::error::last_error;

    fn info(h: *const ShmStore) -> [f64; SHM_INFO_FIELDS] {
        let mut out = [0u8; SHM_INFO_FIELDS * 8];
        // SAFETY: `h` is live and `out` holds 96 bytes.
        assert_eq!(unsafe { warp_shm_info(h, out.as_mut_ptr()) }, 0);
        let mut f = [0f64; SHM_INFO_FIELDS];
        for (v, c) in f.iter_mut().zip(out.chunks_exact(8)) {
            *v = f64::from_le_bytes(c.try_into().unwrap());
        }
        f
    }

    #[test]
    fn shared_store_round_trip_through_the_c_abi() {
        let dir = std::env::temp_dir().join(format!("warp-shm-ffi-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("c");
        let p = path.as_os_str().as_bytes();
        // SAFETY: every pointer below is valid for the length passed with it, and `h` is
        // live until closed.
        unsafe {
            let h = warp_shm_open(p.as_ptr(), p.len() as u32, 4, 16, 32, 0, NO_TTL, 0.0);
            assert!(!h.is_null(), "{}", last_error());
            let k = b"key";
            let mut out = [0u8; 32];
            assert_eq!(
                warp_shm_get(h, k.as_ptr(), 3, out.as_mut_ptr(), 32, 0.0),
                -1
            );
            assert_eq!(
                warp_shm_set(h, k.as_ptr(), 3, b"val".as_ptr(), 3, 0.0, NO_TTL),
                0
            );
            assert_eq!(warp_shm_get(h, k.as_ptr(), 3, out.as_mut_ptr(), 32, 0.0), 3);
            assert_eq!(&out[..3], b"val");
            assert_eq!(
                warp_shm_get(h, k.as_ptr(), 3, out.as_mut_ptr(), 2, 0.0),
                Status::BufferTooSmall as i32
            );
            assert!(last_error().contains("3 bytes"), "{}", last_error());
            assert_eq!(
                warp_shm_set(h, k.as_ptr(), 3, [0u8; 33].as_ptr(), 33, 0.0, NO_TTL),
                1
            );
            assert_eq!(warp_shm_count_hit(h), 0);
            assert_eq!(
                info(h),
                [
                    2.0, 0.0, 1.0, 0.0, 4.0, 0.0, 16.0, 32.0, 0.0, 1024.0, 0.0, 0.0
                ]
            );
            // The skipped value's key is gone: its old value is not read any more.
            assert_eq!(warp_shm_delete(h, k.as_ptr(), 3), -1);
            assert_eq!(warp_shm_clear(h), 0);
            assert_eq!(
                info(h),
                [
                    0.0, 0.0, 0.0, 0.0, 4.0, 0.0, 16.0, 32.0, 0.0, 1024.0, 0.0, 0.0
                ]
            );
            warp_shm_close(h);
            warp_shm_close(std::ptr::null_mut());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_file_size_export_is_the_size_of_the_real_file() {
        let dir = std::env::temp_dir().join(format!("warp-shm-ffi-size-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (cap, k, v, b) in [
            (1, 1, 1, 0),
            (3, 16, 32, 0),
            (100, 512, 4096, 0),
            (1000, 7, 9, 0),
            (10, 512, 65536, 1 << 20),
            (10, 16, 16, 300),
        ] {
            let path = dir.join(format!("c{cap}"));
            let p = path.as_os_str().as_bytes();
            // SAFETY: `p` is valid for its length; the handle is closed once.
            unsafe {
                let h = warp_shm_open(p.as_ptr(), p.len() as u32, cap, k, v, b, NO_TTL, 0.0);
                assert!(!h.is_null(), "{}", last_error());
                warp_shm_close(h);
            }
            let real = std::fs::metadata(&path).unwrap().len();
            assert_eq!(
                warp_shm_file_size(cap, k, v, b),
                real as f64,
                "{cap} {k} {v} {b}"
            );
        }
        assert_eq!(warp_shm_max_file_size(), 70_266_244_936.0);
        assert_eq!(warp_shm_default_max_bytes(4, 16, 32), 1024.0);
        assert_eq!(
            warp_shm_default_max_bytes(1 << 20, 512, 4096),
            (16 << 20) as f64
        );
        // The largest sizes make the largest file, computed exactly.
        let max = warp_shm_file_size(1 << 24, 1 << 20, 64 << 20, 64 << 30);
        assert_eq!(max, warp_shm_max_file_size());
        assert_eq!(max as u64 as f64, max);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_arguments_give_null_or_status_with_a_message() {
        // SAFETY: null handles and empty paths are accepted by contract.
        unsafe {
            assert!(warp_shm_open(std::ptr::null(), 0, 4, 16, 16, 0, NO_TTL, 0.0).is_null());
            assert!(last_error().contains("empty"));
            let p = b"/tmp/warp-shm-ffi-bad";
            assert!(warp_shm_open(p.as_ptr(), p.len() as u32, 0, 16, 16, 0, NO_TTL, 0.0).is_null());
            assert!(last_error().contains("capacity"), "{}", last_error());
            assert!(
                warp_shm_open(p.as_ptr(), p.len() as u32, 4, 16, 16, 255, NO_TTL, 0.0).is_null()
            );
            assert!(last_error().contains("max_bytes"), "{}", last_error());
            assert_eq!(
                warp_shm_get(
                    std::ptr::null(),
                    std::ptr::null(),
                    0,
                    std::ptr::null_mut(),
                    0,
                    0.0
                ),
                Status::InvalidArgument as i32
            );
            assert_eq!(
                warp_shm_clear(std::ptr::null()),
                Status::InvalidArgument as i32
            );
        }
    }
}
