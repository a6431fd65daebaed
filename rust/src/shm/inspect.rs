//! Read-only inspection of a cache file, for operators (`src/ops/cli.ts`): sizes, counters and
//! whether processes have it open, WITHOUT changing the file in any way.
//!
//! [`crate::shm::ShmStore::open`] writes to the file (it takes a counter stripe, may
//! repair or recreate a bad file, holds the in-use lock, resets garbage counters). This
//! module does none of that:
//! - the file is opened `O_RDONLY | O_NOFOLLOW` (a symbolic link is refused, never
//!   followed) and mapped `PROT_READ` (a private read-only mapping), so no store can
//!   reach it;
//! - the identity line is read with `pread` and checked like an opener checks it (magic,
//!   version, header size, hash check, sizes that [`Params::with_bytes`] accepts and
//!   derives exactly, and the file size they imply), but nothing is repaired: the verdict
//!   is [`Verdict::Foreign`] (not a cache file of this library: wrong magic),
//!   [`Verdict::OtherVersion`] (a cache file of another format version or hash) or
//!   [`Verdict::Corrupt`] (our magic and version, but sizes that do not fit, a truncated
//!   file, or counts out of bounds), each with a message;
//! - the header is read through atomic loads inside a seqlock read (sequence even and
//!   unchanged around the reads), retried a bounded number of times: a writer stopped
//!   mid-write cannot hold the inspection, whose result then says it is not consistent;
//! - "in use" is asked with `F_OFD_GETLK` on the in-use byte ([`IN_USE_BYTE`]), which
//!   reports a conflicting lock without taking one.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::Path;
use std::sync::atomic::{Ordering, fence};

use memmap2::MmapOptions;

use super::Info;
use super::layout::{HEADER_SIZE, Header, MAGIC, Params, VERSION, hash_check};
use super::region::IN_USE_BYTE;
use super::table::Totals;
use std::mem::offset_of;

/// Seqlock attempts before the header is reported as read while a writer was active.
const READ_ATTEMPTS: u32 = 200;

/// What an inspection found.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// A valid cache file of this library, with its [`Inspection`].
    Valid(Inspection),
    /// Not a cache file of this library (another magic, or too short to hold one).
    Foreign(String),
    /// A cache file of another format version (or hash check); the version it records.
    OtherVersion(u32, String),
    /// Our magic and version, but sizes or counts that do not fit.
    Corrupt(String),
}

/// Sizes and counters of a valid cache file.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Inspection {
    /// What `ShmStore::info` reports for the file (read without opening it).
    pub info: Info,
    /// The format version ([`VERSION`]).
    pub version: u32,
    /// Size of the file in bytes.
    pub file_size: u64,
    /// Whether a handle (of any process) has the file open: `Some(true)` or `Some(false)`
    /// on Linux, `None` where it cannot be told (no open file description locks).
    pub in_use: Option<bool>,
    /// Whether the header was read with the sequence counter even and unchanged (`false`:
    /// a writer was active for every attempt, or stopped mid-write).
    pub consistent: bool,
    /// Whether the write lock was held when the header was read.
    pub locked: bool,
}

/// Inspects the cache file at `path` without changing it. `Err` is an operating-system
/// error (no such file, permission denied, not a regular file, a symbolic link) with a
/// message naming the path.
pub fn inspect(path: &Path) -> Result<Verdict, String> {
    use std::os::unix::ffi::OsStrExt;
    let shown = path.display().to_string();
    let cpath = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("Cannot inspect {shown}: the path contains a NUL byte"))?;
    // SAFETY: `cpath` is NUL-terminated; O_NOFOLLOW refuses a symbolic link.
    let fd = unsafe {
        libc::open(
            cpath.as_ptr(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ELOOP) {
            return Err(format!(
                "Cannot inspect {shown}: it is a symbolic link, which is never followed"
            ));
        }
        return Err(format!("Cannot inspect {shown}: {e}"));
    }
    // SAFETY: `fd` was just returned by open and is owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    let meta = file
        .metadata()
        .map_err(|e| format!("Cannot inspect {shown}: {e}"))?;
    if !meta.file_type().is_file() {
        return Err(format!("Cannot inspect {shown}: it is not a regular file"));
    }
    let size = meta.len();
    let mut line = [0u8; 64];
    let got = read_at_most(&file, &mut line).map_err(|e| format!("Cannot read {shown}: {e}"))?;
    if got < MAGIC.len() || line[..MAGIC.len()] != MAGIC {
        return Ok(Verdict::Foreign(format!(
            "{shown} is not a cache file of @warp/cache (no WARPSHM1 magic)"
        )));
    }
    if got < line.len() {
        return Ok(Verdict::Corrupt(format!(
            "{shown} is truncated: {size} bytes, shorter than its identity line"
        )));
    }
    let u32_at = |at: usize| u32::from_ne_bytes(line[at..at + 4].try_into().unwrap_or_default());
    let u64_at = |at: usize| u64::from_ne_bytes(line[at..at + 8].try_into().unwrap_or_default());
    let version = u32_at(offset_of!(Header, version));
    if version != VERSION {
        return Ok(Verdict::OtherVersion(
            version,
            format!(
                "{shown} has format version {version}, this library reads version {VERSION} (a process of this version recreates it when it opens it)"
            ),
        ));
    }
    if u64_at(offset_of!(Header, hash_check)) != hash_check() {
        return Ok(Verdict::OtherVersion(
            version,
            format!(
                "{shown} was created by a library that hashes keys differently (another build; a process of this build recreates it when it opens it)"
            ),
        ));
    }
    if u32_at(offset_of!(Header, header_size)) != HEADER_SIZE as u32 {
        return Ok(Verdict::Corrupt(format!(
            "{shown} is corrupt: header size {} instead of {HEADER_SIZE}",
            u32_at(offset_of!(Header, header_size))
        )));
    }
    let max_bytes = u64_at(offset_of!(Header, max_bytes));
    let params = Params::with_bytes(
        u32_at(offset_of!(Header, capacity)),
        u32_at(offset_of!(Header, max_key_size)),
        u32_at(offset_of!(Header, max_value_size)),
        max_bytes,
    );
    let p = match params {
        Ok(p) if max_bytes != 0 => p,
        Ok(_) => {
            return Ok(Verdict::Corrupt(format!(
                "{shown} is corrupt: max_bytes is 0"
            )));
        }
        Err(e) => return Ok(Verdict::Corrupt(format!("{shown} is corrupt: {e}"))),
    };
    let exact = u32_at(offset_of!(Header, slot_size)) == p.slot_size
        && u32_at(offset_of!(Header, table_size)) == p.table_size
        && u32_at(offset_of!(Header, chunks)) == p.chunks
        && u64_at(offset_of!(Header, file_size)) == p.file_size;
    if !exact {
        return Ok(Verdict::Corrupt(format!(
            "{shown} is corrupt: its recorded layout does not match its sizes"
        )));
    }
    if size != p.file_size {
        return Ok(Verdict::Corrupt(format!(
            "{shown} is corrupt (truncated or extended): {size} bytes, its sizes make {}",
            p.file_size
        )));
    }
    // A read-only mapping of the header only: nothing else is read.
    // SAFETY: the mapping is read-only (PROT_READ) and private to this call; other
    // processes may change the file at any time, which is why the header is read only
    // through atomic loads (see `read_header`). The file is at least HEADER_SIZE bytes
    // (checked above: its size equals the file size its sizes imply).
    let map = unsafe { MmapOptions::new().len(HEADER_SIZE).map(&file) }
        .map_err(|e| format!("Cannot map {shown}: {e}"))?;
    // SAFETY: the mapping is HEADER_SIZE bytes, page-aligned (so 8-aligned), and
    // `Header` is `#[repr(C)]` of exactly HEADER_SIZE bytes whose fields after the
    // identity line are atomics: a shared reference only ever loads from them, which a
    // read-only mapping allows, and any bit pattern is a valid value of each field.
    let header = unsafe { &*map.as_ptr().cast::<Header>() };
    let (mut found, totals) = read_header(header);
    found.info.capacity = u64::from(p.capacity);
    found.info.max_key_size = u64::from(p.max_key_size);
    found.info.max_value_size = u64::from(p.max_value_size);
    found.info.max_bytes = p.max_bytes;
    found.version = version;
    found.file_size = size;
    found.in_use = in_use(&file);
    let info = &found.info;
    if found.consistent {
        if info.len > info.capacity {
            return Ok(Verdict::Corrupt(format!(
                "{shown} is corrupt: {} entries recorded, more than its capacity {}",
                info.len, info.capacity
            )));
        }
        if info.bytes > u64::from(p.chunks) * super::layout::CHUNK_SIZE as u64 {
            return Ok(Verdict::Corrupt(format!(
                "{shown} is corrupt: {} bytes held, more than its chunks",
                info.bytes
            )));
        }
    }
    if !totals.plausible() {
        return Ok(Verdict::Corrupt(format!(
            "{shown} is corrupt: a counter is above 2^53 (the next process that opens it resets the counters)"
        )));
    }
    Ok(Verdict::Valid(found))
}

/// Reads up to `buf.len()` bytes from offset 0; returns how many (fewer at end of file).
fn read_at_most(file: &File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The counters and counts of `h`, read inside a seqlock read (retried up to
/// [`READ_ATTEMPTS`] times; the last attempt is returned with `consistent: false`), with
/// the counter totals they were taken from.
fn read_header(h: &Header) -> (Inspection, Totals) {
    let mut out = Inspection::default();
    let mut t = Totals::default();
    for attempt in 0..READ_ATTEMPTS {
        let before = h.seq.load(Ordering::Acquire);
        out.info.len = u64::from(h.len.load(Ordering::Relaxed));
        out.info.bytes =
            u64::from(h.chunks_used.load(Ordering::Relaxed)) * super::layout::CHUNK_SIZE as u64;
        out.locked = h.lock.load(Ordering::Relaxed) != 0;
        t = Totals::of(h);
        out.info.set_counters(&t);
        fence(Ordering::Acquire);
        let after = h.seq.load(Ordering::Relaxed);
        if before.is_multiple_of(2) && before == after {
            out.consistent = true;
            return (out, t);
        }
        if attempt >= 8 {
            std::thread::sleep(std::time::Duration::from_micros(100));
        } else {
            std::hint::spin_loop();
        }
    }
    out.consistent = false;
    (out, t)
}

/// Whether another open file description holds a lock on the in-use byte: asked with
/// `F_OFD_GETLK`, which takes no lock.
#[cfg(target_os = "linux")]
fn in_use(file: &File) -> Option<bool> {
    // SAFETY: `flock` is plain data for which all zero bytes are valid (l_pid must be 0
    // for open file description locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = IN_USE_BYTE as libc::off_t;
    fl.l_len = 1;
    // SAFETY: `file` is open and `fl` is a valid, initialized lock description, which
    // F_OFD_GETLK overwrites with the conflicting lock, if any.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &raw mut fl) } != 0 {
        return None;
    }
    Some(fl.l_type != libc::F_UNLCK as libc::c_short)
}

#[cfg(not(target_os = "linux"))]
fn in_use(_file: &File) -> Option<bool> {
    None
}

#[cfg(test)]
mod tests {
    use super::super::test_dir::TempDir;
    use super::super::{Get, Set, ShmStore};
    use super::*;

    fn valid(v: Verdict) -> Inspection {
        match v {
            Verdict::Valid(i) => i,
            other => panic!("expected a valid file, got {other:?}"),
        }
    }

    #[test]
    fn inspect_reads_counters_without_changing_the_file() {
        let d = TempDir::new();
        let p = d.file("c.warp");
        let s = ShmStore::open(&p, 100, 64, 64, 0.0).unwrap();
        let mut out = [0u8; 64];
        assert_eq!(s.set(b"a", b"1", 0.0).unwrap(), Set::Stored);
        // One entry in its slot, one in a chunk.
        assert_eq!(s.set(b"b", &[2; 40], 0.0).unwrap(), Set::Stored);
        assert_eq!(s.get(b"a", &mut out, 0.0).unwrap(), Get::Hit(1));
        assert_eq!(s.get(b"a", &mut out, 0.0).unwrap(), Get::Hit(1));
        assert_eq!(s.get(b"z", &mut out, 0.0).unwrap(), Get::Miss);
        let before = std::fs::read(&p).unwrap();
        let i = valid(inspect(&p).unwrap());
        assert_eq!(
            (i.info.hits, i.info.misses, i.info.len, i.info.capacity),
            (2, 1, 2, 100)
        );
        assert_eq!(
            (i.info.max_key_size, i.info.max_value_size, i.version),
            (64, 64, VERSION)
        );
        assert_eq!(i.file_size, before.len() as u64);
        assert_eq!(i.info.bytes, super::super::layout::CHUNK_SIZE as u64);
        assert!(i.consistent && !i.locked);
        #[cfg(target_os = "linux")]
        assert_eq!(i.in_use, Some(true));
        // Twice: the first inspection changed nothing, not even a stripe cursor.
        assert_eq!(valid(inspect(&p).unwrap()), i);
        assert_eq!(
            std::fs::read(&p).unwrap(),
            before,
            "the file is byte-identical"
        );
        drop(s);
        #[cfg(target_os = "linux")]
        assert_eq!(valid(inspect(&p).unwrap()).in_use, Some(false));
    }

    #[test]
    fn inspect_tells_foreign_other_version_and_corrupt_files_apart() {
        let d = TempDir::new();
        let p = d.file("c.warp");
        drop(ShmStore::open(&p, 10, 16, 16, 0.0).unwrap());
        let good = std::fs::read(&p).unwrap();

        let f = d.file("random.warp");
        std::fs::write(&f, [7u8; 4096]).unwrap();
        assert!(
            matches!(inspect(&f).unwrap(), Verdict::Foreign(m) if m.contains("not a cache file"))
        );
        std::fs::write(&f, b"").unwrap();
        assert!(matches!(inspect(&f).unwrap(), Verdict::Foreign(_)));

        std::fs::write(&f, &good[..40]).unwrap();
        assert!(matches!(inspect(&f).unwrap(), Verdict::Corrupt(m) if m.contains("truncated")));
        std::fs::write(&f, &good[..good.len() - 1]).unwrap();
        assert!(matches!(inspect(&f).unwrap(), Verdict::Corrupt(m) if m.contains("truncated")));

        let mut old = good.clone();
        old[offset_of!(Header, version)..][..4].copy_from_slice(&5u32.to_ne_bytes());
        std::fs::write(&f, &old).unwrap();
        assert!(
            matches!(inspect(&f).unwrap(), Verdict::OtherVersion(5, m) if m.contains("version 5"))
        );

        let mut bad = good.clone();
        bad[offset_of!(Header, capacity)..][..4].copy_from_slice(&0u32.to_ne_bytes());
        std::fs::write(&f, &bad).unwrap();
        assert!(matches!(inspect(&f).unwrap(), Verdict::Corrupt(m) if m.contains("capacity")));

        let mut garbage = good.clone();
        garbage[offset_of!(Header, len)..][..4].copy_from_slice(&1000u32.to_ne_bytes());
        std::fs::write(&f, &garbage).unwrap();
        assert!(matches!(inspect(&f).unwrap(), Verdict::Corrupt(m) if m.contains("entries")));

        assert!(
            inspect(&d.file("missing.warp"))
                .unwrap_err()
                .contains("No such file")
        );
        #[cfg(unix)]
        {
            let l = d.file("link.warp");
            std::os::unix::fs::symlink(&p, &l).unwrap();
            assert!(inspect(&l).unwrap_err().contains("symbolic link"));
        }
        assert_eq!(std::fs::read(&p).unwrap(), good);
    }

    #[test]
    fn inspect_reports_a_header_read_during_a_write_as_not_consistent() {
        let d = TempDir::new();
        let p = d.file("c.warp");
        drop(ShmStore::open(&p, 10, 16, 16, 0.0).unwrap());
        let mut bytes = std::fs::read(&p).unwrap();
        // A writer stopped mid-write: the sequence counter stays odd.
        bytes[offset_of!(Header, seq)..][..8].copy_from_slice(&3u64.to_ne_bytes());
        std::fs::write(&p, &bytes).unwrap();
        let i = valid(inspect(&p).unwrap());
        assert!(!i.consistent);
        assert_eq!(std::fs::read(&p).unwrap(), bytes);
    }
}
