//! Native stores of `@warp/cache`, loaded by Deno through `Deno.dlopen`.
//!
//! - [`sieve`]: the in-process SIEVE store (safe code, no `unsafe`).
//! - [`shm`]: the cross-process store in a memory-mapped file (unix only).
//! - [`ffi`]: every `extern "C"` export; the only code that touches JS pointers.
//!
//! SIEVE is the eviction algorithm of Zhang et al., "SIEVE is Simpler than LRU: an
//! Efficient Turn-Key Eviction Algorithm for Web Caches", NSDI 2024.

pub mod abi;
pub mod clock;
pub mod error;
pub mod ffi;
pub mod hash;
#[cfg(unix)]
pub mod shm;
pub mod sieve;
