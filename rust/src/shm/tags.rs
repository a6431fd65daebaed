//! The tag clock of a directory of shared caches: the file `<dir>/.warp_tags`, which every
//! process of the user maps, holding when each tag was last invalidated.
//!
//! ```text
//! offset 0        TagsHeader (HEADER_SIZE = 64 bytes, below)
//! offset 64       SLOTS (65,536) slots of 16 bytes: tag hash (u64, 0 = empty), epoch (u64)
//! ```
//!
//! A tag invalidation ([`TagsFile::invalidate`]) adds 1 to the global epoch (an atomic
//! fetch-add) and stores the new epoch in the slot of each tag's 64-bit hash (the hashes
//! are computed by the caller: `src/store/shared_tags.ts`), claiming the slot with a CAS
//! when the hash is new (open addressing, linear probing over at most [`PROBE`] slots
//! from the hash's home slot). An entry records the global epoch at which its computation
//! started; it is invalid when one of its tags has a greater epoch, or when the _floor_ is
//! greater than its epoch (a new file starts at a random epoch below 2^31, which is its
//! first floor). The floor is raised when a tag finds no slot (the table is
//! full around its home slot): every entry older than that invalidation is then invalid
//! (misses, never a stale hit), and the table is emptied ([`TagsFile::invalidate`]) so
//! that later tags find room again. Readers (JavaScript, through an `ArrayBuffer` over
//! the mapping) load the slots, then the floor, so a reset under way is never missed.
//!
//! Hash collisions only ever make entries misses: two tags of one hash share an epoch.
//!
//! The file is opened like a cache file (see [`super::region`]): the directory is created
//! 0700 when missing, the file 0600 and never through a symbolic link, a file of another
//! owner or not regular is refused, a new file is written completely under a temporary
//! name and published with `linkat`, and a file that is not a valid tag clock (garbage,
//! truncated, another size) is replaced with `renameat`. Before it is replaced, its
//! epoch is marked _retired_ (bit 63): a process that still maps it sees the mark on its
//! next read (the epoch's high word is then not 0) and opens the new file, so that
//! no two processes keep two clocks for one directory. A new file gets a random nonce:
//! entries stored under another file's epochs are told apart by it (and are misses).
//!
//! The mappings are never unmapped (JavaScript reads them through `ArrayBuffer`s that do
//! not own them): one per directory per process (see [`shared`]), plus one per
//! replacement of a bad file.
//!
//! ## Safety
//! Mapping a file is unsafe because the file can be modified, in or out of process, at
//! any time. This module reads and writes the mapping only through atomics at offsets
//! below [`FILE_SIZE`], after checking that the file has that size. Truncating the file
//! from outside (which no code of ours does: bad files are replaced by rename) would raise
//! `SIGBUS` in processes that map it, as for cache files.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use memmap2::{MmapOptions, MmapRaw};

use super::layout::FILE_MODE;
use super::region;
use super::{ShmError, ShmStore};
use crate::abi::{TAGS_LAYOUT, TAGS_LAYOUT_FIELDS, write_fields};
use crate::error::Status;

/// Name of the tag clock file in a directory of shared caches (a leading dot: never a
/// cache file's name, see `sharedFileName` in `src/store/shared_store.ts`). A later format
/// takes another name, so that two library versions never fight over one file.
pub const TAGS_FILE: &str = ".warp_tags";

/// First 8 bytes of a tag clock file.
pub const MAGIC: [u8; 8] = *b"WARPTAG1";

/// Format version. History: 1 = first format.
pub const VERSION: u32 = 1;

/// Slots of the table (a power of two).
pub const SLOTS: u32 = 1 << 16;

/// Most slots probed from a hash's home slot, by writers and readers.
pub const PROBE: u32 = 64;

/// Bytes of the header.
pub const HEADER_SIZE: usize = 64;

/// Bytes of a slot: hash, epoch.
pub const SLOT_SIZE: usize = 16;

/// Bytes of the file.
pub const FILE_SIZE: usize = HEADER_SIZE + SLOT_SIZE * SLOTS as usize;

/// Set in the epoch of a file that was replaced: its readers open the new file.
pub const RETIRED: u64 = 1 << 63;

/// Epochs stay below 2^32, so that JavaScript reads one 32-bit word of an epoch (and
/// checks that the other is 0) without a torn read; an epoch word at or above it is a
/// retired file (or garbage, or a file that counted 2^31 invalidations or more since it
/// was created), never a clock to trust: it is replaced (every entry stored under it is
/// then a miss).
pub const EPOCH_LIMIT: u64 = 1 << 32;

/// How long an open waits for another process that is replacing a bad file (a few ms of
/// work) before it gives up with [`Status::Busy`] (a replacer stopped mid-way, say).
const REPLACE_WAIT: Duration = Duration::from_secs(2);

/// Attempts of the open / create / replace loop (each failed one means another process
/// changed the name in between).
const OPEN_ATTEMPTS: u32 = 32;

/// The header of a tag clock file. Offsets in comments; sizes pinned below.
#[repr(C)]
pub struct TagsHeader {
    /// [`MAGIC`] (0).
    pub magic: [u8; 8],
    /// [`VERSION`] (8).
    pub version: u32,
    /// [`SLOTS`] (12).
    pub slots: u32,
    /// Random, never 0, fixed at creation: entries name the file they were stored under (16).
    pub nonce: u64,
    /// Invalidations so far; bit 63 ([`RETIRED`]): the file was replaced (24).
    pub epoch: AtomicU64,
    /// Entries whose epoch is below it are invalid, whatever their tags (32).
    pub floor: AtomicU64,
    /// Times the table was emptied because it was full (40).
    pub resets: AtomicU64,
    /// [`FILE_SIZE`] (48).
    pub file_size: u64,
    /// The first epoch, fixed at creation (56): a computation that started before its
    /// process opened the file stores its entry at this epoch (older than any invalidation
    /// recorded here: the entry is a miss if one of its tags was invalidated since the file
    /// was created, never a stale hit).
    pub start: u64,
}

const _: () = assert!(size_of::<TagsHeader>() == HEADER_SIZE);
const _: () = assert!(offset_of!(TagsHeader, epoch) == 24);
const _: () = assert!(offset_of!(TagsHeader, floor) == 32);
const _: () = assert!(SLOTS.is_power_of_two());

/// A slot of the table: a tag's 64-bit hash (0: empty) and the epoch of its last
/// invalidation.
#[repr(C)]
pub struct TagSlot {
    pub hash: AtomicU64,
    pub epoch: AtomicU64,
}

const _: () = assert!(size_of::<TagSlot>() == SLOT_SIZE);

/// The layout that JavaScript reads the mapping with (`warp_tags_layout`), in the order of
/// [`crate::abi::TAGS_LAYOUT`]: file size, header size, slot size, slots, probe length, and
/// the byte offsets of the nonce, the epoch and the floor, the format version, and the byte
/// offset of the first epoch.
pub fn layout() -> [f64; TAGS_LAYOUT_FIELDS] {
    write_fields(&TAGS_LAYOUT, &())
}

/// A mapped tag clock file (see the module docs).
pub struct TagsFile {
    map: MmapRaw,
    /// The directory's file as it was opened (for messages).
    path: PathBuf,
    _file: File,
}

// SAFETY: the mapping is only read and written through atomics (see the module docs), so
// sharing a `TagsFile` between threads is sound.
unsafe impl Sync for TagsFile {}
// SAFETY: as above; the mapping does not belong to a thread.
unsafe impl Send for TagsFile {}

impl TagsFile {
    /// Opens the tag clock of `dir` (creating the directory and the file when missing, and
    /// replacing a file that is not a valid clock).
    pub fn open(dir: &Path) -> Result<TagsFile, ShmError> {
        let path = dir.join(TAGS_FILE);
        let shown = path.display().to_string();
        let name = OsStr::new(TAGS_FILE);
        let cname = region::cstring(name.as_bytes(), &shown)?;
        let dirfd = region::open_dir(dir)?;
        let mut swept = false;
        for _ in 0..OPEN_ATTEMPTS {
            match region::open_existing(&dirfd, &cname, &shown)? {
                None => {
                    if !std::mem::replace(&mut swept, true) {
                        region::sweep_stale_temps(&dirfd, dir, name);
                    }
                    let tmp = create_fresh(&dirfd, &shown)?;
                    let linked = region::link_no_replace(&dirfd, &tmp, &cname);
                    region::unlink(&dirfd, &tmp);
                    match linked {
                        Ok(()) => {}
                        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                        // Our temporary file was removed before it got its name: another
                        // opener's sweep (whose `kill(pid, 0)` cannot see a process of
                        // another PID namespace) took it for a dead process's. Try again.
                        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                        Err(e) => return Err(region::io(format!("Cannot create {shown}"), &e)),
                    }
                }
                Some(file) => {
                    if let Some(map) = adopt(&file, &shown)? {
                        if region::names_file(&dirfd, &cname, &file) {
                            return Ok(TagsFile {
                                map,
                                path,
                                _file: file,
                            });
                        }
                        continue;
                    }
                    replace_bad(&dirfd, &cname, &file, &shown)?;
                }
            }
        }
        Err(ShmError::new(
            Status::Io,
            format!("Cannot open {shown}: the file kept changing while it was opened"),
        ))
    }

    /// The path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Start of the mapping ([`FILE_SIZE`] bytes).
    pub fn base(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    fn header(&self) -> &TagsHeader {
        // SAFETY: the mapping is FILE_SIZE bytes, page-aligned, so the header is in bounds
        // and aligned; its atomics are the only fields that change after creation.
        unsafe { &*self.map.as_ptr().cast::<TagsHeader>() }
    }

    fn slot(&self, i: u32) -> &TagSlot {
        let i = (i & (SLOTS - 1)) as usize;
        // SAFETY: `i < SLOTS`, so the slot lies within the FILE_SIZE bytes mapped, 16-byte
        // aligned (the header is 64 bytes); slots are only accessed through atomics.
        unsafe {
            &*self
                .map
                .as_ptr()
                .add(HEADER_SIZE + i * SLOT_SIZE)
                .cast::<TagSlot>()
        }
    }

    /// The file's nonce.
    pub fn nonce(&self) -> u64 {
        self.header().nonce
    }

    /// The epoch word as stored (at or above [`EPOCH_LIMIT`]: retired or garbage).
    pub fn epoch(&self) -> u64 {
        self.header().epoch.load(Ordering::SeqCst)
    }

    /// The first epoch (see [`TagsHeader::start`]).
    pub fn start(&self) -> u64 {
        self.header().start
    }

    /// The floor.
    pub fn floor(&self) -> u64 {
        self.header().floor.load(Ordering::SeqCst)
    }

    /// Times the table was emptied because it was full.
    pub fn resets(&self) -> u64 {
        self.header().resets.load(Ordering::Relaxed)
    }

    /// Whether this file is still the clock of its directory: not retired, and its header
    /// is intact (garbage written over it makes it not current).
    pub fn is_current(&self) -> bool {
        let h = self.header();
        h.magic == MAGIC
            && h.version == VERSION
            && h.slots == SLOTS
            && h.file_size == FILE_SIZE as u64
            && h.nonce != 0
            && self.epoch() < EPOCH_LIMIT
    }

    /// Invalidates the tags of 64-bit hashes `hashes` (0 is taken as 1): returns the new
    /// epoch, or `None` when the file is not current (the caller opens the new one and
    /// tries again).
    pub fn invalidate(&self, hashes: &[u64]) -> Option<u64> {
        if !self.is_current() {
            return None;
        }
        let h = self.header();
        let e = h.epoch.fetch_add(1, Ordering::SeqCst).wrapping_add(1);
        if e >= EPOCH_LIMIT {
            return None;
        }
        let mut full = false;
        for &hash in hashes {
            if !self.record(if hash == 0 { 1 } else { hash }, e) {
                full = true;
            }
        }
        if full {
            self.reset(e);
        }
        Some(e)
    }

    /// Stores epoch `e` in the slot of `hash` (claiming one when it has none); `false`
    /// when none of its [`PROBE`] slots is free.
    fn record(&self, hash: u64, e: u64) -> bool {
        let home = hash as u32;
        for i in 0..PROBE {
            let s = self.slot(home.wrapping_add(i));
            let mut cur = s.hash.load(Ordering::SeqCst);
            if cur == 0 {
                cur = match s
                    .hash
                    .compare_exchange(0, hash, Ordering::SeqCst, Ordering::SeqCst)
                {
                    Ok(_) => hash,
                    Err(other) => other,
                };
            }
            if cur == hash {
                s.epoch.fetch_max(e, Ordering::SeqCst);
                return true;
            }
        }
        false
    }

    /// The table is full around a tag's home slot: every entry older than epoch `e` (the
    /// invalidation that found no room) becomes invalid, the table is emptied, and the
    /// floor rises again to the epoch after the emptying, which covers any invalidation
    /// whose slot the emptying erased.
    fn reset(&self, e: u64) {
        let h = self.header();
        h.floor.fetch_max(e, Ordering::SeqCst);
        for i in 0..SLOTS {
            let s = self.slot(i);
            s.hash.store(0, Ordering::SeqCst);
            s.epoch.store(0, Ordering::SeqCst);
        }
        let now = h.epoch.load(Ordering::SeqCst);
        if now < EPOCH_LIMIT {
            h.floor.fetch_max(now, Ordering::SeqCst);
        }
        h.resets.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether an entry stored at epoch `at` with the tags of hashes `hashes` is invalid
    /// (the check that JavaScript makes on the mapping, for tests): one of its tags was
    /// invalidated after `at`, or `at` is below the floor. Slots first, then the floor.
    pub fn invalid_since(&self, hashes: &[u64], at: u64) -> bool {
        for &hash in hashes {
            let hash = if hash == 0 { 1 } else { hash };
            let home = hash as u32;
            for i in 0..PROBE {
                let s = self.slot(home.wrapping_add(i));
                let cur = s.hash.load(Ordering::SeqCst);
                if cur == 0 {
                    break;
                }
                if cur == hash {
                    if s.epoch.load(Ordering::SeqCst) > at {
                        return true;
                    }
                    break;
                }
            }
        }
        self.floor() > at
    }

    /// Marks this file retired (its readers open the file that replaces it).
    pub fn retire(&self) {
        self.header().epoch.fetch_or(RETIRED, Ordering::SeqCst);
    }
}

/// A mapping of `file` when it is a valid tag clock, else `None`.
fn adopt(file: &File, shown: &str) -> Result<Option<MmapRaw>, ShmError> {
    let st = region::fstat(file.as_raw_fd())
        .map_err(|e| region::io(format!("Cannot inspect {shown}"), &e))?;
    if u64::try_from(st.st_size).ok() != Some(FILE_SIZE as u64) {
        return Ok(None);
    }
    // The identity fields are written once, before the file gets its name.
    let mut line = [0u8; HEADER_SIZE];
    match file.read_exact_at(&mut line, 0) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(region::io(format!("Cannot read {shown}"), &e)),
    }
    let u32_at = |at: usize| u32::from_ne_bytes(line[at..at + 4].try_into().unwrap_or_default());
    let u64_at = |at: usize| u64::from_ne_bytes(line[at..at + 8].try_into().unwrap_or_default());
    if line[..8] != MAGIC
        || u32_at(offset_of!(TagsHeader, version)) != VERSION
        || u32_at(offset_of!(TagsHeader, slots)) != SLOTS
        || u64_at(offset_of!(TagsHeader, nonce)) == 0
        || u64_at(offset_of!(TagsHeader, file_size)) != FILE_SIZE as u64
        || u64_at(offset_of!(TagsHeader, start)) >= EPOCH_LIMIT
    {
        return Ok(None);
    }
    let map = MmapOptions::new()
        .len(FILE_SIZE)
        .map_raw(file)
        .map_err(|e| region::io(format!("Cannot map {shown}"), &e))?;
    // The counters, read atomically through the mapping: garbage (or a retired file) is
    // not a clock.
    // SAFETY: the mapping is FILE_SIZE bytes of a file of that size, page-aligned; the
    // header's counters are only accessed as atomics.
    let h = unsafe { &*map.as_ptr().cast::<TagsHeader>() };
    if h.epoch.load(Ordering::SeqCst) >= EPOCH_LIMIT
        || h.floor.load(Ordering::SeqCst) >= EPOCH_LIMIT
    {
        return Ok(None);
    }
    Ok(Some(map))
}

/// A random nonce, never 0.
fn random_nonce() -> u64 {
    let mut b = [0u8; 8];
    let from_os = File::open("/dev/urandom").and_then(|f| f.read_exact_at(&mut b, 0));
    let mut n = u64::from_ne_bytes(b);
    if from_os.is_err() || n == 0 {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        n ^= t ^ (u64::from(std::process::id()) << 32) ^ (&raw const b as u64);
    }
    if n == 0 { 1 } else { n }
}

/// The header of a new file of nonce `nonce` whose first epoch (and floor) is `start`:
/// a random first epoch (below 2^31) leaves an entry stored under another file's epochs
/// older than the floor or, rarely, at an epoch of no meaning here, which its nonce tells
/// apart.
fn header_line(nonce: u64, start: u64) -> [u8; HEADER_SIZE] {
    let mut line = [0u8; HEADER_SIZE];
    let mut put = |at: usize, bytes: &[u8]| line[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, &MAGIC);
    put(offset_of!(TagsHeader, version), &VERSION.to_ne_bytes());
    put(offset_of!(TagsHeader, slots), &SLOTS.to_ne_bytes());
    put(offset_of!(TagsHeader, nonce), &nonce.to_ne_bytes());
    put(offset_of!(TagsHeader, epoch), &start.to_ne_bytes());
    put(offset_of!(TagsHeader, floor), &start.to_ne_bytes());
    put(offset_of!(TagsHeader, start), &start.to_ne_bytes());
    put(
        offset_of!(TagsHeader, file_size),
        &(FILE_SIZE as u64).to_ne_bytes(),
    );
    line
}

/// Writes a complete, empty tag clock under a temporary name; returns that name.
fn create_fresh(dirfd: &OwnedFd, shown: &str) -> Result<CString, ShmError> {
    let tmp = region::cstring(&region::temp_name(OsStr::new(TAGS_FILE)), shown)?;
    // SAFETY: `tmp` is NUL-terminated; O_EXCL|O_NOFOLLOW create a new file or fail.
    let fd = unsafe {
        libc::openat(
            dirfd.as_raw_fd(),
            tmp.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            FILE_MODE,
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(region::io(format!("Cannot create {shown}"), &e));
    }
    // SAFETY: `fd` was just returned by openat and is owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    let written = (|| {
        // The umask may have removed bits from the creation mode: set it exactly.
        // SAFETY: `fd` is open; fchmod changes only this file's mode bits.
        unsafe { libc::fchmod(fd, region::mode_t(FILE_MODE)) };
        region::reserve(fd, FILE_SIZE as u64).map_err(|e| {
            region::io(
                format!("Cannot reserve {FILE_SIZE} bytes for {shown} (is the file system full?)"),
                &e,
            )
        })?;
        let line = header_line(random_nonce(), (random_nonce() >> 33) | 1);
        file.write_all_at(&line, 0)
            .map_err(|e| region::io(format!("Cannot write {shown}"), &e))
    })();
    if let Err(e) = written {
        region::unlink(dirfd, &tmp);
        return Err(e);
    }
    Ok(tmp)
}

/// Replaces the bad file `file`, found at `cname`, by a fresh one, after marking it
/// retired (see the module docs). Does nothing when the name no longer refers to `file`
/// (another process replaced it first). Waits at most [`REPLACE_WAIT`] for a process that
/// is replacing it.
fn replace_bad(dirfd: &OwnedFd, cname: &CString, file: &File, shown: &str) -> Result<(), ShmError> {
    let deadline = Instant::now() + REPLACE_WAIT;
    loop {
        // SAFETY: `file` is open; the lock is released when it is closed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(region::io(format!("Cannot lock {shown}"), &e));
        }
        if Instant::now() > deadline {
            return Err(ShmError::new(
                Status::Busy,
                format!(
                    "Cannot open {shown}: another process has been replacing the damaged file for {} ms",
                    REPLACE_WAIT.as_millis()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    if !region::names_file(dirfd, cname, file) {
        return Ok(());
    }
    retire_file(file);
    let tmp = create_fresh(dirfd, shown)?;
    let d = dirfd.as_raw_fd();
    // SAFETY: both names are NUL-terminated; renameat replaces the name `cname` (never
    // following a link there) with the complete file at `tmp`.
    let r = unsafe { libc::renameat(d, tmp.as_ptr(), d, cname.as_ptr()) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        region::unlink(dirfd, &tmp);
        if e.raw_os_error() == Some(libc::ENOENT) {
            return Ok(()); // our temporary file was swept (see `TagsFile::open`): again
        }
        return Err(region::io(format!("Cannot replace {shown}"), &e));
    }
    Ok(())
}

/// Marks the epoch of the file being replaced retired, through a mapping of its first
/// page, when the file is large enough to hold the epoch word (a smaller one cannot be
/// mapped by any reader). Best effort.
fn retire_file(file: &File) {
    let Ok(st) = region::fstat(file.as_raw_fd()) else {
        return;
    };
    let end = (offset_of!(TagsHeader, epoch) + 8) as u64;
    if u64::try_from(st.st_size).unwrap_or(0) < end {
        return;
    }
    let Ok(map) = MmapOptions::new().len(HEADER_SIZE).map_raw(file) else {
        return;
    };
    // SAFETY: the mapping covers the first page of a file at least `end` bytes long, so the
    // epoch word (8-aligned, at 24) is backed; it is accessed only as an atomic.
    let epoch = unsafe {
        &*map
            .as_ptr()
            .add(offset_of!(TagsHeader, epoch))
            .cast::<AtomicU64>()
    };
    epoch.fetch_or(RETIRED, Ordering::SeqCst);
}

/// The clocks this process opened, by directory; never dropped (JavaScript may hold views
/// of their mappings).
static OPENED: Mutex<Vec<(PathBuf, &'static TagsFile)>> = Mutex::new(Vec::new());

/// The tag clock of `dir` for this process: the one opened before while it is current,
/// else the file opened (or created, or replaced) now. The clocks live as long as the
/// process.
pub fn shared(dir: &Path) -> Result<&'static TagsFile, ShmError> {
    let mut opened = OPENED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, t)) = opened.iter().rev().find(|(d, _)| d == dir)
        && t.is_current()
    {
        return Ok(t);
    }
    let fresh: &'static TagsFile = Box::leak(Box::new(TagsFile::open(dir)?));
    opened.push((dir.to_path_buf(), fresh));
    Ok(fresh)
}

impl ShmStore {
    /// Turns one hit counted by this handle into a miss (a hit on an entry whose tags were
    /// invalidated). The hit is taken from this handle's stripe, or, when that stripe has
    /// none, from the first stripe that has one, so the totals stay exact; hits do not go
    /// below 0 (after a clear).
    pub fn count_invalid_hit(&self) {
        let h = self.table.header();
        for i in 0..super::layout::STRIPES {
            let s = h.stripe(self.stripe + i);
            if s.hits
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                s.misses.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::test_dir::TempDir;

    #[test]
    fn layout_is_pinned() {
        assert_eq!(FILE_SIZE, 64 + 16 * 65_536);
        assert_eq!(
            layout(),
            [
                1_048_640.0,
                64.0,
                16.0,
                65_536.0,
                64.0,
                16.0,
                24.0,
                32.0,
                1.0,
                56.0
            ]
        );
    }

    #[test]
    fn creates_a_private_file_and_shares_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new();
        let a = TagsFile::open(&dir.0).unwrap();
        let mode = std::fs::metadata(dir.file(TAGS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = TagsFile::open(&dir.0).unwrap();
        assert_eq!(a.nonce(), b.nonce());
        let e = a.epoch();
        assert!(e > 0 && e < 1 << 31 && a.floor() == e && a.start() == e);
        assert!(a.invalid_since(&[], e - 1), "older than the file: invalid");
        assert_eq!(a.invalidate(&[42]), Some(e + 1));
        assert_eq!(b.epoch(), e + 1, "one file, two mappings");
        assert!(b.invalid_since(&[42], e));
        assert!(!b.invalid_since(&[42], e + 1));
        assert!(!b.invalid_since(&[43], e), "another tag");
        assert_eq!(a.invalidate(&[42, 43]), Some(e + 2));
        assert!(a.invalid_since(&[43], e + 1));
        assert!(!a.invalid_since(&[42, 43], e + 2));
    }

    #[test]
    fn hash_zero_is_a_tag_like_any_other() {
        let dir = TempDir::new();
        let t = TagsFile::open(&dir.0).unwrap();
        let e = t.epoch();
        t.invalidate(&[0]);
        assert!(t.invalid_since(&[0], e));
        assert!(t.invalid_since(&[1], e), "0 is taken as 1");
        assert!(!t.invalid_since(&[2], e));
    }

    #[test]
    fn refuses_a_symlink_and_replaces_garbage() {
        let dir = TempDir::new();
        let target = dir.file("target");
        std::fs::write(&target, b"keep").unwrap();
        std::os::unix::fs::symlink(&target, dir.file(TAGS_FILE)).unwrap();
        let err = TagsFile::open(&dir.0).err().unwrap();
        assert!(err.message.contains("symbolic link"), "{}", err.message);
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        std::fs::remove_file(dir.file(TAGS_FILE)).unwrap();
        // Garbage of the right size, a truncated file, an empty one: replaced.
        for bad in [
            vec![0xa5u8; FILE_SIZE],
            vec![0u8; 100],
            MAGIC.to_vec(),
            vec![],
        ] {
            std::fs::write(dir.file(TAGS_FILE), &bad).unwrap();
            let t = TagsFile::open(&dir.0).unwrap();
            assert!(t.is_current());
            assert_eq!(
                std::fs::metadata(dir.file(TAGS_FILE)).unwrap().len(),
                FILE_SIZE as u64
            );
            let e = t.epoch();
            assert_eq!(t.invalidate(&[7]), Some(e + 1));
        }
    }

    #[test]
    fn a_replaced_file_is_retired_for_those_that_map_it() {
        let dir = TempDir::new();
        let old = TagsFile::open(&dir.0).unwrap();
        old.invalidate(&[5]);
        // Garbage over the header (magic) while it is mapped: the next opener replaces it.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.file(TAGS_FILE))
            .unwrap();
        f.write_all_at(b"GARBAGE!", 0).unwrap();
        assert!(!old.is_current());
        let new = TagsFile::open(&dir.0).unwrap();
        assert!(new.is_current());
        assert_ne!(new.nonce(), old.nonce());
        assert!(old.epoch() >= EPOCH_LIMIT, "retired: its readers reopen");
        assert_eq!(old.invalidate(&[5]), None);
        // Retired only (header intact): not current either.
        let other = TempDir::new();
        let t = TagsFile::open(&other.0).unwrap();
        t.retire();
        assert!(!t.is_current());
        let again = TagsFile::open(&other.0).unwrap();
        assert!(again.is_current() && again.nonce() != t.nonce());
    }

    #[test]
    fn a_full_table_makes_older_entries_invalid_then_has_room_again() {
        let dir = TempDir::new();
        let t = TagsFile::open(&dir.0).unwrap();
        let before = t.epoch();
        // Hashes with one home slot: PROBE of them fill its window.
        let same_home = |i: u64| (i << 32) | 5;
        for i in 1..=u64::from(PROBE) {
            t.invalidate(&[same_home(i)]);
        }
        assert_eq!(t.resets(), 0);
        assert!(!t.invalid_since(&[999], before), "a tag never invalidated");
        let at = t.epoch();
        t.invalidate(&[same_home(1000)]);
        assert_eq!(t.resets(), 1);
        assert!(
            t.invalid_since(&[999], at),
            "older than the overflow: conservatively invalid"
        );
        assert!(t.invalid_since(&[same_home(1000)], at));
        let after = t.epoch();
        assert!(
            !t.invalid_since(&[999, same_home(1000)], after),
            "newer entries are valid"
        );
        t.invalidate(&[same_home(2000)]);
        assert_eq!(t.resets(), 1, "room again");
        assert!(t.invalid_since(&[same_home(2000)], after));
        assert!(!t.invalid_since(&[same_home(1000)], after));
    }

    #[test]
    fn concurrent_invalidations_are_all_recorded() {
        let dir = TempDir::new();
        let t = std::sync::Arc::new(TagsFile::open(&dir.0).unwrap());
        let e = t.epoch();
        let threads: Vec<_> = (0..4u64)
            .map(|k| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for i in 0..500u64 {
                        t.invalidate(&[(k << 40) | (i + 1), 77]);
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        assert_eq!(t.epoch(), e + 2000);
        for k in 0..4u64 {
            for i in 0..500u64 {
                assert!(t.invalid_since(&[(k << 40) | (i + 1)], e));
            }
        }
        assert!(t.invalid_since(&[77], e + 1999));
        assert!(!t.invalid_since(&[77], e + 2000));
    }

    #[test]
    fn count_invalid_hit_turns_one_hit_into_a_miss_and_never_goes_below_zero() {
        let dir = TempDir::new();
        let s = ShmStore::open(&dir.file("c"), 8, 16, 16, 0.0).unwrap();
        let mut out = [0u8; 16];
        assert_eq!(s.set(b"k", b"v", 0.0).unwrap(), crate::shm::Set::Stored);
        assert_eq!(s.get(b"k", &mut out, 0.0).unwrap(), crate::shm::Get::Hit(1));
        assert_eq!(s.get(b"k", &mut out, 0.0).unwrap(), crate::shm::Get::Hit(1));
        s.count_invalid_hit();
        let i = s.info();
        assert_eq!((i.hits, i.misses), (1, 1));
        s.count_invalid_hit();
        s.count_invalid_hit();
        let i = s.info();
        assert_eq!((i.hits, i.misses), (0, 2), "no hit left to take");
    }

    #[test]
    fn shared_gives_one_clock_per_directory_until_it_is_replaced() {
        let dir = TempDir::new();
        let a = shared(&dir.0).unwrap();
        let b = shared(&dir.0).unwrap();
        assert!(std::ptr::eq(a, b));
        a.retire();
        let c = shared(&dir.0).unwrap();
        assert!(!std::ptr::eq(a, c));
        assert!(c.is_current());
    }
}
