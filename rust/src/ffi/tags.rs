//! Exports of the tag clock of a directory (`warp_tags_*`, thin wrappers over
//! [`crate::shm::tags`]), and `warp_shm_count_invalid_hit`.
//!
//! A clock handle is a `&'static TagsFile`: it is never freed (JavaScript reads its
//! mapping through an `ArrayBuffer` that does not own it), one per directory per process
//! (plus one per replacement of a damaged file).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{guarded, key_slice};
use crate::abi::TAGS_LAYOUT_FIELDS;
use crate::error::{Status, fail};
use crate::shm::ShmStore;
use crate::shm::tags::{TagsFile, layout, shared};

/// Opens the tag clock of the directory whose path is `path[..path_len]` (creating the
/// directory, mode 0700, and the file `.warp_tags`, mode 0600, when missing; replacing a
/// damaged file), or returns this process's clock of that directory when it is still
/// current. Returns null on failure, with the reason in `warp_last_error` (a symbolic
/// link, a file of another user, a full file system...).
///
/// # Safety
/// - `path` must be valid for reads of `path_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_tags_open(path: *const u8, path_len: u32) -> *const TagsFile {
    // SAFETY: the caller guarantees `path` is valid for `path_len` bytes.
    let bytes = unsafe { key_slice(path, path_len) };
    let mut handle: *const TagsFile = std::ptr::null();
    guarded(|| {
        if bytes.is_empty() {
            return fail(
                Status::InvalidArgument,
                "Cannot open a tag clock: the directory path is empty",
            );
        }
        match shared(Path::new(OsStr::from_bytes(bytes))) {
            Ok(t) => {
                handle = t;
                Status::Ok as i32
            }
            Err(e) => fail(e.status, e.message),
        }
    });
    handle
}

/// The start of the clock's mapping (`FILE_SIZE` bytes, never unmapped), or null for a
/// null handle.
///
/// # Safety
/// - `h` must be null or a pointer returned by `warp_tags_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_tags_base(h: *const TagsFile) -> *mut u8 {
    if h.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: the caller guarantees `h` came from `warp_tags_open`; clocks are never freed.
    unsafe { &*h }.base()
}

/// Writes the layout of tag clock files (see `shm::tags::layout`) into `out`, which must
/// hold [`TAGS_LAYOUT_FIELDS`] (10) `f64`s, in the order of `crate::abi::TAGS_LAYOUT`: file size, header size, slot size, slots, probe
/// length, offsets of the nonce, the epoch and the floor, format version, offset of the
/// first epoch.
///
/// # Safety
/// - `out` must be valid for writes of 10 `f64`s.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_tags_layout(out: *mut f64) -> i32 {
    if out.is_null() {
        return fail(Status::InvalidArgument, "warp_tags_layout: out is null");
    }
    let fields = layout();
    // SAFETY: the caller guarantees `out` holds TAGS_LAYOUT_FIELDS f64s; `fields` is a local
    // array of that length, so the two cannot overlap.
    unsafe { std::ptr::copy_nonoverlapping(fields.as_ptr(), out, TAGS_LAYOUT_FIELDS) };
    Status::Ok as i32
}

/// Invalidates the tags whose 64-bit hashes are `hashes[..count]` (each as two `u32`, low
/// then high, native order; the caller hashes: `src/store/shared_tags.ts`). Returns 0, or
/// `Corrupt` (-5) when the clock was replaced (or damaged) meanwhile: open it again and
/// retry.
///
/// # Safety
/// - `h` must be null or a pointer returned by `warp_tags_open`; `hashes` valid for reads
///   of `2 * count` `u32`s (or `count` 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_tags_invalidate(
    h: *const TagsFile,
    hashes: *const u32,
    count: u32,
) -> i32 {
    if h.is_null() {
        return fail(Status::InvalidArgument, "tag clock handle is null");
    }
    // SAFETY: the caller guarantees `h` came from `warp_tags_open`; clocks are never freed.
    let clock = unsafe { &*h };
    let words: &[u32] = if count == 0 || hashes.is_null() {
        &[]
    } else {
        // SAFETY: the caller guarantees `hashes` is valid for `2 * count` u32s.
        unsafe { std::slice::from_raw_parts(hashes, 2 * count as usize) }
    };
    guarded(|| {
        let tags: Vec<u64> = words
            .chunks_exact(2)
            .map(|w| u64::from(w[0]) | (u64::from(w[1]) << 32))
            .collect();
        match clock.invalidate(&tags) {
            Some(_) => Status::Ok as i32,
            None => fail(
                Status::Corrupt,
                format!(
                    "The tag clock {} was replaced or damaged: open it again",
                    clock.path().display()
                ),
            ),
        }
    })
}

/// Turns one hit counted by this handle into a miss (a hit on an entry whose tags were
/// invalidated): the totals stay exact over every process.
///
/// # Safety
/// - `h` must be null or a live handle of `warp_shm_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn warp_shm_count_invalid_hit(h: *const ShmStore) -> i32 {
    if h.is_null() {
        return fail(Status::InvalidArgument, "shared store handle is null");
    }
    // SAFETY: the caller guarantees `h` came from `warp_shm_open` and was not closed.
    let store = unsafe { &*h };
    guarded(|| {
        store.count_invalid_hit();
        Status::Ok as i32
    })
}
