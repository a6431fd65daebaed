//! Handles released when the thread that created them ends.
//!
//! JavaScript owns every handle between its constructor (`warp_mem_new`, `warp_shm_open`)
//! and its free (`warp_mem_free`, `warp_shm_close`), called by `close()` or by a
//! `FinalizationRegistry`. But Deno tears a Worker's isolate down without running its
//! finalizers, so a Worker that ends (`terminate()`, `self.close()`, or the end of its
//! work) would leave its stores allocated and its shared files mapped until the process
//! exits: 200 Workers that each filled a memory store of 20,000 entries and opened a
//! shared cache left +160 MiB and 200 mappings behind (RELIABILITY.md).
//!
//! Deno runs each Worker's isolate, and so every synchronous FFI call and every
//! finalizer of it, on one OS thread of its own, which exits when the Worker ends. So
//! each handle is recorded, at creation, as owned by the calling thread, and a
//! thread-local guard frees the handles its thread still owns when that thread exits.
//! Rust runs that destructor through glibc's `__cxa_thread_atexit_impl`, which also keeps
//! the library loaded until it ran, even when the Worker's `Deno.dlopen` was the last
//! reference and has been closed with the isolate.
//!
//! The record is one process-wide map from handle address to owner, under a mutex taken
//! only by constructors, frees and thread exits (never by a lookup), so a handle is freed
//! exactly once: by whoever removes it from the map first. A free of an address that is
//! not in the map (or is of another type) does nothing.
//!
//! This holds only if constructors are called on the thread whose isolate uses the handle:
//! they must not be declared `nonblocking` in `src/native/ffi.ts` (a blocking-pool thread would
//! own, and free, the handle).

use std::any::TypeId;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Owner of handles created while its thread could no longer record them (its
/// thread-locals already destroyed): nobody; only an explicit free releases them.
const NO_THREAD: u64 = 0;

/// What the map knows of a live handle.
struct Entry {
    /// [`ThreadHandles::id`] of the creating thread, or [`NO_THREAD`].
    thread: u64,
    /// Type behind the address, so that a free of the wrong kind is refused.
    type_id: TypeId,
    /// Drops the `Box` behind the address.
    drop: unsafe fn(*mut ()),
}

/// Every live handle of the process, by address.
static OPEN: Mutex<Option<HashMap<usize, Entry>>> = Mutex::new(None);

/// Source of thread ids (never reused; 0 is [`NO_THREAD`]).
static NEXT_THREAD: AtomicU64 = AtomicU64::new(NO_THREAD + 1);

/// The calling thread's guard: its `Drop` frees the handles the thread still owns.
struct ThreadHandles {
    id: u64,
}

impl Drop for ThreadHandles {
    fn drop(&mut self) {
        release_thread(self.id);
    }
}

thread_local! {
    static THREAD: ThreadHandles = ThreadHandles {
        id: NEXT_THREAD.fetch_add(1, Ordering::Relaxed),
    };
}

fn open() -> MutexGuard<'static, Option<HashMap<usize, Entry>>> {
    // A panic while the map was locked left it consistent (every operation on it is a
    // single insert, remove or extraction), so a poisoned lock is used as is.
    OPEN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Drops the `Box<T>` at `ptr`.
///
/// # Safety
/// - `ptr` must come from `Box::<T>::into_raw`, not be dropped before, and not be used
///   during or after this call.
unsafe fn drop_box<T>(ptr: *mut ()) {
    // SAFETY: guaranteed by the caller.
    drop(unsafe { Box::from_raw(ptr.cast::<T>()) });
}

/// Turns `value` into a raw handle owned by the calling thread: freed by [`release`], or
/// when this thread exits if it was not released by then.
pub(crate) fn adopt<T: 'static>(value: Box<T>) -> *mut T {
    let ptr = Box::into_raw(value);
    // During its own exit a thread can no longer record handles; they get no owner.
    let thread = THREAD.try_with(|t| t.id).unwrap_or(NO_THREAD);
    let entry = Entry {
        thread,
        type_id: TypeId::of::<T>(),
        drop: drop_box::<T>,
    };
    open()
        .get_or_insert_with(HashMap::new)
        .insert(ptr as usize, entry);
    ptr
}

/// Takes the handle `ptr` back from the map and returns its `Box`, or `None` when `ptr` is
/// not a live handle of type `T` (null, already released, or of another kind), in which
/// case nothing is freed.
///
/// # Safety
/// - If `ptr` is a live handle, no other reference to `*ptr` may be in use during or after
///   this call.
pub(crate) unsafe fn release<T: 'static>(ptr: *mut T) -> Option<Box<T>> {
    let mut open = open();
    let map = open.as_mut()?;
    let key = ptr as usize;
    if map.get(&key)?.type_id != TypeId::of::<T>() {
        return None;
    }
    map.remove(&key);
    drop(open);
    // SAFETY: the entry was inserted by `adopt::<T>` for this address, from
    // `Box::into_raw`, and was just removed under the lock, so this is the only release
    // of it; the caller guarantees nobody uses it any more.
    Some(unsafe { Box::from_raw(ptr) })
}

/// Frees every handle owned by the thread `id`, which is exiting.
fn release_thread(id: u64) {
    let mine: Vec<(usize, Entry)> = match open().as_mut() {
        Some(map) => map.extract_if(|_, e| e.thread == id).collect(),
        None => return,
    };
    for (ptr, entry) in mine {
        // A panic must not leave a thread-local destructor (that aborts the process);
        // the handle is then leaked, which is all that can be done.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: `ptr` was inserted by `adopt` with its own `drop_box::<T>` and was
            // just removed under the lock, so it is dropped once; its owner thread is
            // exiting, and handles are used only by their creator's thread (the isolate
            // that created it has been torn down), so nobody uses it any more.
            unsafe { (entry.drop)(ptr as *mut ()) }
        }));
    }
}

/// Number of live handles owned by the calling thread (for tests).
#[cfg(test)]
pub(crate) fn owned_by_this_thread() -> usize {
    let Ok(id) = THREAD.try_with(|t| t.id) else {
        return 0;
    };
    open()
        .as_ref()
        .map_or(0, |map| map.values().filter(|e| e.thread == id).count())
}

/// Whether `ptr` is a live handle (for tests).
#[cfg(test)]
pub(crate) fn is_live<T>(ptr: *mut T) -> bool {
    open()
        .as_ref()
        .is_some_and(|map| map.contains_key(&(ptr as usize)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    /// Counts its drops.
    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn handles_left_open_are_dropped_once_when_their_thread_ends() {
        let drops = Arc::new(AtomicUsize::new(0));
        let d = drops.clone();
        let (kept, freed) = std::thread::spawn(move || {
            let kept: Vec<usize> = (0..5)
                .map(|_| adopt(Box::new(Counted(d.clone()))) as usize)
                .collect();
            let freed = adopt(Box::new(Counted(d.clone())));
            // SAFETY: `freed` is live and used by nobody else.
            drop(unsafe { release(freed) }.expect("a live handle is released"));
            assert_eq!(d.load(Ordering::SeqCst), 1);
            assert_eq!(owned_by_this_thread(), 5);
            (kept, freed as usize)
        })
        .join()
        .unwrap();
        // 5 dropped by the thread's exit, 1 by `release`: none twice.
        assert_eq!(drops.load(Ordering::SeqCst), 6);
        for p in kept {
            assert!(!is_live(p as *mut Counted));
        }
        assert!(!is_live(freed as *mut Counted));
    }

    #[test]
    fn a_handle_released_by_another_thread_is_not_dropped_again_at_its_creators_exit() {
        let drops = Arc::new(AtomicUsize::new(0));
        let (to_main, from_thread) = std::sync::mpsc::channel::<usize>();
        let (to_thread, from_main) = std::sync::mpsc::channel::<()>();
        let d = drops.clone();
        let creator = std::thread::spawn(move || {
            to_main.send(adopt(Box::new(Counted(d))) as usize).unwrap();
            from_main.recv().unwrap(); // stay alive until the main thread released it
        });
        let ptr = from_thread.recv().unwrap() as *mut Counted;
        // SAFETY: `ptr` is live; its creator does not use it.
        drop(unsafe { release(ptr) }.expect("a live handle is released"));
        to_thread.send(()).unwrap();
        creator.join().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn release_refuses_unknown_released_and_mistyped_handles() {
        let drops = Arc::new(AtomicUsize::new(0));
        let ptr = adopt(Box::new(Counted(drops.clone())));
        // SAFETY: none of these addresses is a live handle of the type asked for, so
        // nothing is dereferenced.
        unsafe {
            assert!(release(std::ptr::null_mut::<Counted>()).is_none());
            assert!(release(ptr.cast::<u64>()).is_none());
        }
        assert!(is_live(ptr));
        // SAFETY: `ptr` is live and used by nobody else.
        drop(unsafe { release(ptr) });
        // SAFETY: `ptr` is no longer in the map, so it is not dereferenced.
        assert!(unsafe { release(ptr) }.is_none());
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn thread_exit_frees_what_the_thread_created_and_nothing_else() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mine = adopt(Box::new(Counted(drops.clone())));
        let d = drops.clone();
        std::thread::spawn(move || {
            let _ = adopt(Box::new(Counted(d.clone())));
            let _ = adopt(Box::new(Counted(d)));
        })
        .join()
        .unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        assert!(is_live(mine), "a handle of a live thread is kept");
        // SAFETY: `mine` is live and used by nobody else.
        drop(unsafe { release(mine) });
        assert_eq!(drops.load(Ordering::SeqCst), 3);
    }

    /// Lines of /proc/self/maps that map `path`.
    #[cfg(target_os = "linux")]
    fn mappings_of(path: &std::path::Path) -> usize {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let needle = path.to_str().unwrap();
        maps.lines().filter(|l| l.ends_with(needle)).count()
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn stores_left_open_by_a_thread_are_freed_and_unmapped_when_it_ends() {
        use crate::abi::NO_TTL;
        use crate::ffi::mem::{warp_mem_new, warp_mem_set};
        use crate::ffi::shm::{warp_shm_close, warp_shm_open};
        use std::os::unix::ffi::OsStrExt;

        let dir = std::env::temp_dir().join(format!("warp-thread-handles-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("left-open.warp");
        let p = path.as_os_str().as_bytes().to_vec();
        let (mem, shm, closed) = std::thread::spawn(move || {
            // SAFETY: `p` is valid for its length; `mem` is live and used by this thread
            // only.
            unsafe {
                let mem = warp_mem_new(0, NO_TTL, 0, 0.0);
                for i in 0u32..1000 {
                    assert!(warp_mem_set(mem, i.to_le_bytes().as_ptr(), 4, 0.0, NO_TTL) >= 0);
                }
                let shm = warp_shm_open(p.as_ptr(), p.len() as u32, 4, 16, 16, 0, NO_TTL, 0.0);
                let closed = warp_shm_open(p.as_ptr(), p.len() as u32, 4, 16, 16, 0, NO_TTL, 0.0);
                assert!(!shm.is_null() && !closed.is_null());
                warp_shm_close(closed);
                assert_eq!(owned_by_this_thread(), 2);
                (mem as usize, shm as usize, closed as usize)
            }
        })
        .join()
        .unwrap();
        assert!(!is_live(mem as *mut crate::ffi::mem::MemStore));
        assert!(!is_live(shm as *mut crate::shm::ShmStore));
        assert!(!is_live(closed as *mut crate::shm::ShmStore));
        assert_eq!(
            mappings_of(&path),
            0,
            "the thread's shared store is unmapped"
        );
        // A store opened here stays mapped until closed.
        let p = path.as_os_str().as_bytes();
        // SAFETY: `p` is valid for its length; `h` is live until closed.
        unsafe {
            let h = warp_shm_open(p.as_ptr(), p.len() as u32, 4, 16, 16, 0, NO_TTL, 0.0);
            assert_eq!(mappings_of(&path), 1);
            warp_shm_close(h);
        }
        assert_eq!(mappings_of(&path), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
