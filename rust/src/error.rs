//! Status codes returned over the C ABI, and the thread-local last-error message.
//!
//! Every export returns an `i32` (or a null pointer for constructors); a negative
//! [`Status`] means failure and [`set_last_error`] has recorded a message, which the
//! TypeScript side reads through `warp_last_error`.

use std::cell::RefCell;

crate::abi_enum! {
    /// Status codes of every export (`Status` in `src/native/_abi.ts`, generated: see
    /// `crate::abi`). Non-negative return values are results (slot numbers, lengths);
    /// negative ones are these codes.
    #[repr(i32)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Status {
        /// Success.
        Ok = 0,
        /// The key is not in the store (not an error).
        Miss = -1,
        /// An argument was out of range (null handle, bad size).
        InvalidArgument = -2,
        /// An operating-system call failed (open, mmap, fallocate...).
        Io = -3,
        /// A panic was caught at the FFI boundary.
        Panic = -4,
        /// A shared file failed validation (bad magic, version, size, or content).
        Corrupt = -5,
        /// A key or value is larger than the slot allows.
        TooLarge = -6,
        /// The caller's output buffer is too small; the needed size is in the message.
        BufferTooSmall = -7,
        /// A shared file's write lock stayed with a live process (stopped, or in a debugger)
        /// for longer than the operation waits.
        Busy = -8,
    }
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records `message` as the calling thread's last error.
pub fn set_last_error(message: impl Into<String>) {
    let message = message.into();
    LAST_ERROR.with(|cell| *cell.borrow_mut() = message);
}

/// Returns a copy of the calling thread's last error message.
pub fn last_error() -> String {
    LAST_ERROR.with(|cell| cell.borrow().clone())
}

/// Records `message` and returns `status` as an `i32`, for `return fail(...)`.
pub fn fail(status: Status, message: impl Into<String>) -> i32 {
    set_last_error(message);
    status as i32
}
