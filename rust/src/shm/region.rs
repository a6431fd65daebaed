//! Opening, creating, validating and mapping a cache file.
//!
//! Safety of the file system side:
//! - The directory is created (mode 0700) only when missing, and only its last
//!   component; it is then opened once and every file operation is relative to that
//!   descriptor (`openat`, `linkat`, `renameat`), so a directory swapped later changes
//!   nothing.
//! - The cache file is opened with `O_NOFOLLOW`: a symbolic link at its name is refused
//!   with an error and neither the link nor its target is touched. A file of another
//!   owner, or that is not a regular file, is refused too.
//! - A new file is written completely under a private temporary name (`O_EXCL`, mode
//!   0600, space reserved with `posix_fallocate` so that a full `/dev/shm` is an error
//!   rather than a later `SIGBUS`), then published with `linkat`, which fails if the
//!   name exists: of several processes creating at once, one wins and the others open
//!   its file. So a file at the name is always complete.
//! - A file at the name whose size, magic, version, parameters or hash check differ is
//!   replaced by a fresh one with `renameat` (which replaces a name, never writes
//!   through it), while holding `flock` on the old file and after checking that the
//!   name still refers to it, so that several processes replacing the same bad file
//!   agree on one new file.
//! - A process that still maps a file that was replaced keeps using the old file: a
//!   handle's parameters never change under it.
//!
//! Files in use keep their parameters. Every handle holds, for its lifetime, an open
//! file description locked for reading (`fcntl` `F_OFD_SETLK`, `F_RDLCK`) on the single
//! byte at [`IN_USE_BYTE`] (past the end of the file, which is allowed). The kernel
//! drops the lock when the handle closes or its process dies, so it tells "in use"
//! without pids. An opener that finds a valid file whose parameters (capacity, key or
//! value size) differ from the ones it asks for tries a write lock on that byte, without
//! waiting, on its own descriptor:
//! - granted: no handle of any process (this one included: open file description
//!   locks conflict between descriptions of one process too) has the file open, and it
//!   is replaced by a file of the new parameters, as a bad file is;
//! - refused: the file is in use, and the opener ADOPTS its parameters, so that it
//!   shares entries and counters with the running processes (a rolling deploy that
//!   changes a size keeps one cache). [`Region::params`] then differs from the
//!   parameters asked for, and the caller says so (`src/store/shared_store.ts` warns once,
//!   naming the file, both sets of sizes and how to change them).
//!
//! A handle takes its read lock (waiting, if a replacer holds the write lock) and only
//! then checks that the name still refers to its file, retrying otherwise, so that a
//! handle never settles on a file that a replacer has just unlinked. A replacer holds a
//! read lock on the new file from before it gets its name. The byte offsets from
//! `1 << 40` on are left to the write lock (`lock.rs`). Other platforms (macOS) have no
//! open file description locks: there a file of other parameters is always replaced.

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};

use super::ShmError;
use super::layout::{
    DIR_MODE, FILE_MODE, HEADER_SIZE, Header, MAGIC, NIL, Params, VERSION, hash_check,
};
use super::lock::FileId;
use crate::error::Status;
use std::mem::offset_of;

/// Attempts of the open / create / replace loop before giving up (each failed attempt
/// means another process changed the name in between).
const OPEN_ATTEMPTS: u32 = 32;

/// The byte of a cache file on which every handle holds a read lock (see the module
/// docs). Past the end of any file (whose size is at most `MAX_FILE_SIZE`, under `1 << 37`), below the
/// offsets of the write lock's liveness (`1 << 40` and up).
pub const IN_USE_BYTE: i64 = 1 << 39;

/// A mapped cache file. The mapping stays valid as long as this value lives, whatever
/// happens to the file's name.
pub struct Region {
    map: MmapRaw,
    params: Params,
    /// Device and inode of the mapped file: which in-process lock its handles share.
    file_id: FileId,
    /// The file, open as long as the mapping: its description holds the read lock on
    /// [`IN_USE_BYTE`] that tells other openers the file is in use.
    _file: File,
}

impl Region {
    /// Opens (creating or recreating it if needed) the cache file at `path` with the
    /// layout `params`, or with the layout of the file found there when that file is
    /// valid and in use by another handle (see the module docs): compare
    /// [`Region::params`] with `params`.
    pub fn open(path: &Path, params: Params) -> Result<Region, ShmError> {
        let shown = path.display().to_string();
        let name = path.file_name().filter(|n| !n.is_empty()).ok_or_else(|| {
            invalid(format!(
                "Cannot open a shared cache: the path has no file name: {shown}"
            ))
        })?;
        let cname = cstring(name.as_bytes(), &shown)?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dirfd = open_dir(dir)?;
        let mut swept = false;
        // The last file this call created, locked for reading until the mapped file
        // holds its own lock: others see it in use from the moment it has its name.
        let mut _created: Option<File> = None;
        for _ in 0..OPEN_ATTEMPTS {
            match open_existing(&dirfd, &cname, &shown)? {
                None => {
                    // No file: create one, publish it unless someone else did first.
                    if !std::mem::replace(&mut swept, true) {
                        sweep_stale_temps(&dirfd, dir, name);
                    }
                    let (tmp, file) = create_fresh(&dirfd, name, params, &shown)?;
                    let linked = link_no_replace(&dirfd, &tmp, &cname);
                    unlink(&dirfd, &tmp);
                    match linked {
                        Ok(()) => _created = Some(file),
                        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                        // Our temporary file was removed before it got its name: another
                        // opener's sweep (whose `kill(pid, 0)` cannot see a process of
                        // another PID namespace) took it for a dead process's. Try again.
                        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                        Err(e) => return Err(io(format!("Cannot create {shown}"), &e)),
                    }
                }
                Some(file) => {
                    let (found, file_id) = identity(&file, &shown)?;
                    let layout = match found {
                        Some(p) if p == params => Some(p),
                        // Valid, other parameters, and open elsewhere: share it.
                        Some(p) if in_use_elsewhere(&file) => Some(p),
                        _ => None,
                    };
                    if let Some(layout) = layout {
                        let map = map(&file, layout, &shown)?;
                        // Lock, then check the name: a replacer that got the write lock
                        // first has unlinked this file by now, and we retry.
                        hold_in_use(&file, &shown)?;
                        if names_file(&dirfd, &cname, &file) {
                            return Ok(Region {
                                map,
                                params: layout,
                                file_id,
                                _file: file,
                            });
                        }
                        continue;
                    }
                    // Bad, or other parameters and in use by no one (this call now
                    // holds the write lock on the in-use byte, until `file` closes).
                    if !std::mem::replace(&mut swept, true) {
                        sweep_stale_temps(&dirfd, dir, name);
                    }
                    if let Some(new) = replace_bad(&dirfd, &cname, &file, name, params, &shown)? {
                        _created = Some(new);
                    }
                }
            }
        }
        Err(ShmError::new(
            Status::Io,
            format!("Cannot open {shown}: the file kept changing while it was opened"),
        ))
    }

    /// Start of the mapping.
    pub fn base(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// The layout of the mapped file.
    pub fn params(&self) -> Params {
        self.params
    }

    /// The mapped file, open as long as the mapping (its description carries this
    /// handle's locks).
    pub fn file(&self) -> &File {
        &self._file
    }

    /// Device and inode of the mapped file (the same for every handle on it in this
    /// process, whatever path opened it).
    pub fn file_id(&self) -> FileId {
        self.file_id
    }
}

pub(super) fn invalid(message: String) -> ShmError {
    ShmError::new(Status::InvalidArgument, message)
}

pub(super) fn io(what: String, e: &std::io::Error) -> ShmError {
    ShmError::new(Status::Io, format!("{what}: {e}"))
}

pub(super) fn cstring(bytes: &[u8], shown: &str) -> Result<CString, ShmError> {
    CString::new(bytes).map_err(|_| {
        invalid(format!(
            "Cannot open a shared cache: the path contains a NUL byte: {shown}"
        ))
    })
}

/// Creates `dir` (mode 0700) if it is missing, checks it, and opens it.
pub(super) fn open_dir(dir: &Path) -> Result<OwnedFd, ShmError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let shown = dir.display().to_string();
    match std::fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(format!("Cannot create the cache directory {shown}"), &e)),
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let link = std::fs::symlink_metadata(dir)
        .map_err(|e| io(format!("Cannot inspect the cache directory {shown}"), &e))?;
    if link.file_type().is_symlink() && link.uid() != uid && link.uid() != 0 {
        return Err(ShmError::new(
            Status::Io,
            format!(
                "Cannot use the cache directory {shown}: it is a symbolic link owned by another user"
            ),
        ));
    }
    let cdir = cstring(dir.as_os_str().as_bytes(), &shown)?;
    // SAFETY: `cdir` is a valid NUL-terminated string; the flags open a directory only.
    let fd = unsafe {
        libc::open(
            cdir.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(io(format!("Cannot open the cache directory {shown}"), &e));
    }
    // SAFETY: `fd` was just returned by open and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let st = fstat(fd.as_raw_fd())
        .map_err(|e| io(format!("Cannot inspect the cache directory {shown}"), &e))?;
    let mode = mode_bits(st.st_mode);
    let others_write = mode & 0o002 != 0 && mode & mode_bits(libc::S_ISVTX) == 0;
    let foreign = st.st_uid != uid && st.st_uid != 0 && mode & 0o022 != 0;
    if others_write || foreign {
        return Err(ShmError::new(
            Status::Io,
            format!(
                "Cannot use the cache directory {shown}: other users may write to it (mode {:o}, owner {})",
                mode & 0o7777,
                st.st_uid
            ),
        ));
    }
    Ok(fd)
}

/// The mode bits as `u32` (`mode_t` is `u16` on some platforms).
#[allow(clippy::unnecessary_cast)]
fn mode_bits(m: libc::mode_t) -> u32 {
    m as u32
}

/// A mode as `mode_t`.
#[allow(clippy::unnecessary_cast)]
pub(super) fn mode_t(m: u32) -> libc::mode_t {
    m as libc::mode_t
}

pub(super) fn fstat(fd: RawFd) -> std::io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is valid for writes of one `stat`; fstat fills it on success.
    let r = unsafe { libc::fstat(fd, st.as_mut_ptr()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fstat returned 0, so it initialized `st`.
    Ok(unsafe { st.assume_init() })
}

fn lstat_at(dirfd: &OwnedFd, name: &CStr) -> std::io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `name` is NUL-terminated, `st` valid for writes; AT_SYMLINK_NOFOLLOW makes
    // this describe a link itself rather than its target.
    let r = unsafe {
        libc::fstatat(
            dirfd.as_raw_fd(),
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fstatat returned 0, so it initialized `st`.
    Ok(unsafe { st.assume_init() })
}

/// Opens the file at `name` without following a link: `None` when there is none.
pub(super) fn open_existing(
    dirfd: &OwnedFd,
    name: &CStr,
    shown: &str,
) -> Result<Option<File>, ShmError> {
    // SAFETY: `name` is NUL-terminated; O_NOFOLLOW refuses a symbolic link.
    let fd = unsafe {
        libc::openat(
            dirfd.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOENT) {
            return Ok(None);
        }
        if lstat_at(dirfd, name).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK) {
            return Err(ShmError::new(
                Status::Io,
                format!("Cannot open {shown}: it is a symbolic link, which is never followed"),
            ));
        }
        return Err(io(format!("Cannot open {shown}"), &e));
    }
    // SAFETY: `fd` was just returned by openat and is owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    let st = fstat(fd).map_err(|e| io(format!("Cannot inspect {shown}"), &e))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(ShmError::new(
            Status::Io,
            format!("Cannot open {shown}: it is not a regular file"),
        ));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if st.st_uid != uid {
        return Err(ShmError::new(
            Status::Io,
            format!(
                "Cannot open {shown}: it is owned by another user (uid {})",
                st.st_uid
            ),
        ));
    }
    if mode_bits(st.st_mode) & 0o077 != 0 {
        // SAFETY: `fd` is open; fchmod changes only this file's mode bits.
        unsafe { libc::fchmod(fd, mode_t(FILE_MODE)) };
    }
    Ok(Some(file))
}

/// The parameters of the valid cache file `file` (magic, version, header size, hash
/// check, parameters that [`Params::new`] accepts and derives exactly, and the file
/// size they imply), or `None` for a file that is not one; and its device and inode.
/// Reads the identity line with `pread`: it is written once, before the file gets its
/// name, and never changes.
fn identity(file: &File, shown: &str) -> Result<(Option<Params>, FileId), ShmError> {
    use std::os::unix::fs::FileExt;
    let st = fstat(file.as_raw_fd()).map_err(|e| io(format!("Cannot inspect {shown}"), &e))?;
    // The field types differ between platforms (`dev_t` is i32 on macOS): a bit cast.
    #[allow(clippy::unnecessary_cast)]
    let file_id = (st.st_dev as u64, st.st_ino as u64);
    let mut line = [0u8; 64];
    match file.read_exact_at(&mut line, 0) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok((None, file_id)),
        Err(e) => return Err(io(format!("Cannot read {shown}"), &e)),
    }
    let u32_at = |at: usize| u32::from_ne_bytes(line[at..at + 4].try_into().unwrap_or_default());
    let u64_at = |at: usize| u64::from_ne_bytes(line[at..at + 8].try_into().unwrap_or_default());
    if line[offset_of!(Header, magic)..][..8] != MAGIC
        || u32_at(offset_of!(Header, version)) != VERSION
        || u32_at(offset_of!(Header, header_size)) != HEADER_SIZE as u32
        || u64_at(offset_of!(Header, hash_check)) != hash_check()
    {
        return Ok((None, file_id));
    }
    let max_bytes = u64_at(offset_of!(Header, max_bytes));
    if max_bytes == 0 {
        return Ok((None, file_id)); // 0 asks for the default: never in a valid file
    }
    let Ok(p) = Params::with_bytes(
        u32_at(offset_of!(Header, capacity)),
        u32_at(offset_of!(Header, max_key_size)),
        u32_at(offset_of!(Header, max_value_size)),
        max_bytes,
    ) else {
        return Ok((None, file_id));
    };
    let exact = u32_at(offset_of!(Header, slot_size)) == p.slot_size
        && u32_at(offset_of!(Header, table_size)) == p.table_size
        && u32_at(offset_of!(Header, chunks)) == p.chunks
        && u64_at(offset_of!(Header, file_size)) == p.file_size
        && u64::try_from(st.st_size).ok() == Some(p.file_size);
    Ok((exact.then_some(p), file_id))
}

fn map(file: &File, params: Params, shown: &str) -> Result<MmapRaw, ShmError> {
    let len = usize::try_from(params.file_size)
        .map_err(|_| invalid(format!("Cannot map {shown}: too large for this platform")))?;
    MmapOptions::new()
        .len(len)
        .map_raw(file)
        .map_err(|e| io(format!("Cannot map {shown}"), &e))
}

/// A name for a private temporary file next to the cache file.
pub(super) fn temp_name(name: &OsStr) -> Vec<u8> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut out = b".".to_vec();
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(format!(".{}.{n}.{nanos}.tmp", std::process::id()).as_bytes());
    out
}

/// Removes the temporary files of `name` left by processes that died while creating
/// it (they hold reserved space). Best effort: errors are ignored.
pub(super) fn sweep_stale_temps(dirfd: &OwnedFd, dir: &Path, name: &OsStr) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut prefix = b".".to_vec();
    prefix.extend_from_slice(name.as_bytes());
    prefix.push(b'.');
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name
            .as_bytes()
            .strip_prefix(prefix.as_slice())
            .and_then(|r| r.strip_suffix(b".tmp"))
        else {
            continue;
        };
        let pid = rest.split(|&b| b == b'.').next().unwrap_or_default();
        let Some(pid) = std::str::from_utf8(pid)
            .ok()
            .and_then(|p| p.parse::<libc::pid_t>().ok())
            .filter(|&p| p > 0)
        else {
            continue;
        };
        // SAFETY: kill with signal 0 sends nothing; it only checks that the pid exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone && let Ok(c) = CString::new(file_name.as_bytes()) {
            unlink(dirfd, &c);
        }
    }
}

/// Writes a complete, empty cache file under a temporary name; returns that name and the
/// file, which holds the read lock on [`IN_USE_BYTE`] (so that the file is in use from
/// the moment it gets its name until the caller closes it).
fn create_fresh(
    dirfd: &OwnedFd,
    name: &OsStr,
    params: Params,
    shown: &str,
) -> Result<(CString, File), ShmError> {
    let tmp = cstring(&temp_name(name), shown)?;
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
        return Err(io(format!("Cannot create {shown}"), &e));
    }
    // SAFETY: `fd` was just returned by openat and is owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    if let Err(e) = init_file(&file, params, shown) {
        unlink(dirfd, &tmp);
        return Err(e);
    }
    // A private file: nobody else can hold its lock.
    let _ = hold_in_use(&file, shown);
    Ok((tmp, file))
}

fn init_file(file: &File, params: Params, shown: &str) -> Result<(), ShmError> {
    let fd = file.as_raw_fd();
    // The umask may have removed bits from the creation mode: set it exactly.
    // SAFETY: `fd` is open; fchmod changes only this file's mode bits.
    unsafe { libc::fchmod(fd, mode_t(FILE_MODE)) };
    reserve(fd, params.file_size).map_err(|e| {
        io(
            format!(
                "Cannot reserve {} bytes for {shown} (is the file system full?)",
                params.file_size
            ),
            &e,
        )
    })?;
    let map = map(file, params, shown)?;
    let h = map.as_mut_ptr().cast::<Header>();
    // SAFETY: the mapping is at least HEADER_SIZE bytes, page-aligned, zero-filled, and
    // private to this process until the file is linked under its name.
    unsafe {
        (&raw mut (*h).magic).write(MAGIC);
        (&raw mut (*h).version).write(VERSION);
        (&raw mut (*h).header_size).write(HEADER_SIZE as u32);
        (&raw mut (*h).capacity).write(params.capacity);
        (&raw mut (*h).max_key_size).write(params.max_key_size);
        (&raw mut (*h).max_value_size).write(params.max_value_size);
        (&raw mut (*h).slot_size).write(params.slot_size);
        (&raw mut (*h).table_size).write(params.table_size);
        (&raw mut (*h).chunks).write(params.chunks);
        (&raw mut (*h).max_bytes).write(params.max_bytes);
        (&raw mut (*h).file_size).write(params.file_size);
        (&raw mut (*h).hash_check).write(hash_check());
        (&raw mut (*h).head).write(AtomicU32::new(NIL));
        (&raw mut (*h).tail).write(AtomicU32::new(NIL));
        (&raw mut (*h).hand).write(AtomicU32::new(NIL));
        (&raw mut (*h).free_head).write(AtomicU32::new(NIL));
        (&raw mut (*h).chunk_free_head).write(AtomicU32::new(NIL));
    }
    Ok(())
}

/// Allocates the file's blocks, so that touching the mapping later cannot fail.
#[cfg(target_os = "linux")]
pub(super) fn reserve(fd: RawFd, size: u64) -> std::io::Result<()> {
    let len = libc::off_t::try_from(size).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    // SAFETY: `fd` is an open regular file; posix_fallocate returns an error number.
    let r = unsafe { libc::posix_fallocate(fd, 0, len) };
    match r {
        0 => Ok(()),
        // The file system cannot preallocate: fall back to setting the size.
        libc::EOPNOTSUPP | libc::EINVAL => truncate(fd, len),
        e => Err(std::io::Error::from_raw_os_error(e)),
    }
}

/// Sets the file size (no preallocation on this platform).
#[cfg(not(target_os = "linux"))]
pub(super) fn reserve(fd: RawFd, size: u64) -> std::io::Result<()> {
    let len = libc::off_t::try_from(size).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    truncate(fd, len)
}

fn truncate(fd: RawFd, len: libc::off_t) -> std::io::Result<()> {
    // SAFETY: `fd` is an open regular file of ours, still private.
    if unsafe { libc::ftruncate(fd, len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Gives the file at `from` the name `to`, failing with `EEXIST` when `to` exists.
pub(super) fn link_no_replace(dirfd: &OwnedFd, from: &CStr, to: &CStr) -> std::io::Result<()> {
    let d = dirfd.as_raw_fd();
    // SAFETY: both names are NUL-terminated; flags 0 do not follow a link at `from`.
    if unsafe { libc::linkat(d, from.as_ptr(), d, to.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        // File systems without hard links: fall back to an atomic no-replace rename.
        Some(libc::EPERM | libc::EOPNOTSUPP | libc::EMLINK) => rename_no_replace(d, from, to),
        _ => Err(e),
    }
}

#[cfg(target_os = "linux")]
fn rename_no_replace(d: RawFd, from: &CStr, to: &CStr) -> std::io::Result<()> {
    // SAFETY: both names are NUL-terminated; RENAME_NOREPLACE fails if `to` exists.
    let r = unsafe { libc::renameat2(d, from.as_ptr(), d, to.as_ptr(), libc::RENAME_NOREPLACE) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn rename_no_replace(_d: RawFd, _from: &CStr, _to: &CStr) -> std::io::Result<()> {
    Err(std::io::Error::from_raw_os_error(libc::EOPNOTSUPP))
}

pub(super) fn unlink(dirfd: &OwnedFd, name: &CStr) {
    // SAFETY: `name` is NUL-terminated; unlinkat removes a name, never follows it.
    unsafe { libc::unlinkat(dirfd.as_raw_fd(), name.as_ptr(), 0) };
}

/// Whether the name `cname` in `dirfd` refers to `file` (same device and inode).
pub(super) fn names_file(dirfd: &OwnedFd, cname: &CStr, file: &File) -> bool {
    let Ok(ours) = fstat(file.as_raw_fd()) else {
        return false;
    };
    lstat_at(dirfd, cname).is_ok_and(|st| st.st_dev == ours.st_dev && st.st_ino == ours.st_ino)
}

/// Replaces the bad file `file`, found at `name`, by a fresh one, and returns the fresh
/// one (locked for reading, see [`create_fresh`]). Does nothing when the name no longer
/// refers to `file` (another process replaced it first).
fn replace_bad(
    dirfd: &OwnedFd,
    cname: &CStr,
    file: &File,
    name: &OsStr,
    params: Params,
    shown: &str,
) -> Result<Option<File>, ShmError> {
    // Bounded: a replacer stopped while it holds the lock (SIGSTOP, docker pause, a
    // debugger) must not hang every process that opens the cache.
    let deadline = std::time::Instant::now() + super::LONG_WAIT;
    loop {
        // SAFETY: `file` is open; the lock is released when it is closed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(io(format!("Cannot lock {shown}"), &e));
        }
        if std::time::Instant::now() >= deadline {
            return Err(replacing_too_long(shown));
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    if !names_file(dirfd, cname, file) {
        return Ok(None);
    }
    let (tmp, fresh) = create_fresh(dirfd, name, params, shown)?;
    let d = dirfd.as_raw_fd();
    // SAFETY: both names are NUL-terminated; renameat replaces the name `cname` (never
    // following a link there) with the complete file at `tmp`.
    let r = unsafe { libc::renameat(d, tmp.as_ptr(), d, cname.as_ptr()) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        unlink(dirfd, &tmp);
        if e.raw_os_error() == Some(libc::ENOENT) {
            return Ok(None); // our temporary file was swept (see `Region::open`): again
        }
        return Err(io(format!("Cannot replace {shown}"), &e));
    }
    Ok(Some(fresh))
}

/// Locks the byte [`IN_USE_BYTE`] of `file`'s open file description (`F_OFD_SETLK`),
/// for reading or writing, waiting or not.
#[cfg(target_os = "linux")]
fn ofd_lock(file: &File, kind: libc::c_int, wait: bool) -> std::io::Result<()> {
    // SAFETY: `flock` is plain data for which all zero bytes are valid (l_pid must be 0
    // for open file description locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = IN_USE_BYTE as libc::off_t;
    fl.l_len = 1;
    let cmd = if wait {
        libc::F_OFD_SETLKW
    } else {
        libc::F_OFD_SETLK
    };
    loop {
        // SAFETY: `file` is open and `fl` is a valid, initialized lock description.
        if unsafe { libc::fcntl(file.as_raw_fd(), cmd, &raw const fl) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Takes the read lock on [`IN_USE_BYTE`] that tells other openers this file is in use
/// (waiting while a replacer holds the write lock). Best effort: a file system without
/// locks leaves the file unmarked, and a file of other parameters is then replaced, as
/// on platforms without open file description locks.
#[cfg(target_os = "linux")]
fn hold_in_use(file: &File, shown: &str) -> Result<(), ShmError> {
    // Not `F_OFD_SETLKW`: a replacer stopped while it holds the write lock (SIGSTOP, docker
    // pause, a debugger) would hang this open for as long as it stays stopped.
    let deadline = std::time::Instant::now() + super::LONG_WAIT;
    loop {
        match ofd_lock(file, libc::F_RDLCK, false) {
            Ok(()) => return Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => {
                if std::time::Instant::now() >= deadline {
                    return Err(replacing_too_long(shown));
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(_) => return Ok(()), // best effort: a file system without locks
        }
    }
}

/// The error of an open that waited [`super::LONG_WAIT`] for another process replacing the
/// file.
fn replacing_too_long(shown: &str) -> ShmError {
    ShmError::new(
        Status::Busy,
        format!(
            "Cannot open {shown}: another process has been replacing it for {} s (stopped, or paused in a debugger?)",
            super::LONG_WAIT.as_secs()
        ),
    )
}

/// Whether another open file description (of any process, this one included) holds the
/// file: tries the write lock on [`IN_USE_BYTE`] without waiting. Granted (kept until
/// `file` closes): `false`. Refused: `true`. Any other error: `false` (cannot tell).
///
/// A refusal is retried a few times over about 2 ms: a process that forks (to spawn a
/// command) shares every open file description with its child until the child's `exec`
/// closes them, so a brief refusal may come from a child that never uses the file (seen in
/// the test binary, whose tests spawn children while others open files).
#[cfg(target_os = "linux")]
fn in_use_elsewhere(file: &File) -> bool {
    for attempt in 0..IN_USE_ATTEMPTS {
        match ofd_lock(file, libc::F_WRLCK, false) {
            Ok(()) => return false,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => {
                if attempt + 1 < IN_USE_ATTEMPTS {
                    std::thread::sleep(std::time::Duration::from_micros(500));
                }
            }
            Err(_) => return false,
        }
    }
    true
}

/// Tries of the in-use check before a file is taken to be in use (see `in_use_elsewhere`).
#[cfg(target_os = "linux")]
const IN_USE_ATTEMPTS: u32 = 5;

#[cfg(not(target_os = "linux"))]
fn hold_in_use(_file: &File, _shown: &str) -> Result<(), ShmError> {
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn in_use_elsewhere(_file: &File) -> bool {
    false
}
