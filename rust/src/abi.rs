//! Every fact that crosses the FFI: status codes, sentinels, result codes, the fields of
//! the info exports and their order, policy numbers, limits, the shared file's layout and
//! format version, the ABI version. This module defines each one (the codes that exist
//! only at the boundary) or re-exports it (facts that live with their code: [`Status`],
//! [`Policy`], `shm::layout`), and [`facts`] lists them all, each with its doc line.
//!
//! `src/native/_abi.ts` is generated from [`facts`] by [`render`]; no TypeScript file
//! copies a fact by hand. `deno task abi` regenerates it (the test
//! `abi::tests::generated_file_is_current` with `UPDATE_ABI=1`); the same test fails, in
//! `cargo test`, `deno task test` and `.ci/run`, while the file is stale.
//!
//! Adding a fact is one line: a member of an [`abi_enum!`] or [`abi_codes!`] block, a
//! field of [`SHM_INFO`] or [`MEM_INFO`], or a line of [`facts`] for a constant that
//! lives elsewhere; then `deno task abi`.

pub use crate::error::Status;
pub use crate::ffi::ABI_VERSION;
pub use crate::ffi::mem::EXPIRED_BASE;
pub use crate::sieve::{MAX_SLOTS, Policy};

use crate::sieve::SieveStore;

/// A named number of a group (an enum variant, a result code, a field index), with its
/// doc (rustdoc lines, joined by `\n`).
#[derive(Clone, Copy, Debug)]
pub struct Member {
    /// Its name in `src/native/_abi.ts`.
    pub name: &'static str,
    /// Its number.
    pub value: i64,
    /// Its doc.
    pub doc: &'static str,
}

/// Declares a fieldless enum whose numbers cross the FFI, unchanged, with `ALL` (every
/// variant, in order) and `MEMBERS` (each variant's name, number and doc, for
/// `src/native/_abi.ts`). Variants carry doc comments only.
#[macro_export]
macro_rules! abi_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(
                $(#[doc = $doc:literal])*
                $variant:ident = $value:expr,
            )*
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $( $(#[doc = $doc])* $variant = $value, )*
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            /// Each variant's name, number and doc (`src/native/_abi.ts`).
            pub const MEMBERS: &'static [$crate::abi::Member] = &[$(
                $crate::abi::Member {
                    name: stringify!($variant),
                    value: $value,
                    doc: concat!($($doc, "\n"),*),
                }
            ),*];
        }
    };
}

/// Declares a group of constants of one type (`CONST_NAME = value`, each with its doc)
/// and a slice of [`Member`]s named `$group` listing them under their TypeScript names
/// (`tsName: CONST_NAME = value`), for `src/native/_abi.ts`.
#[macro_export]
macro_rules! abi_codes {
    (
        $(#[doc = $gdoc:literal])*
        $vis:vis $group:ident: $ty:ty {
            $(
                $(#[doc = $doc:literal])*
                $key:ident: $const:ident = $value:expr,
            )*
        }
    ) => {
        $(
            $(#[doc = $doc])*
            $vis const $const: $ty = $value;
        )*
        $(#[doc = $gdoc])*
        $vis const $group: &[$crate::abi::Member] = &[$(
            $crate::abi::Member {
                name: stringify!($key),
                value: $const as i64,
                doc: concat!($($doc, "\n"),*),
            }
        ),*];
    };
}

/// A number that an export writes into an `f64` array, at its index in the table: its
/// TypeScript name, doc, and how the export reads it from `T`.
pub struct Field<T> {
    /// Its name in `src/native/_abi.ts`.
    pub name: &'static str,
    /// Its doc.
    pub doc: &'static str,
    /// Its value.
    pub get: fn(&T) -> f64,
}

impl<T> Field<T> {
    /// The fields of `table`, each with its index, as [`Member`]s.
    pub fn members(table: &[Field<T>]) -> Vec<Member> {
        table
            .iter()
            .enumerate()
            .map(|(i, f)| Member {
                name: f.name,
                value: i as i64,
                doc: f.doc,
            })
            .collect()
    }
}

/// Writes the values of `table` read from `from` into `out` (one `f64` a field).
pub fn write_fields<T, const N: usize>(table: &[Field<T>; N], from: &T) -> [f64; N] {
    table.each_ref().map(|f| (f.get)(from))
}

// ---------------------------------------------------------------------------------------
// Sentinels.

/// "No TTL", the one sentinel of every `ttl_ms` argument: `warp_mem_new` and
/// `warp_shm_open` (the store has no TTL) and `warp_mem_set` and `warp_shm_set` (the entry
/// has no TTL of its own: the store's applies). Any other `ttl_ms` is a TTL: positive, or
/// `Infinity` for never; 0, negative: `InvalidArgument`.
pub const NO_TTL: f64 = f64::NAN;

/// The `now_ms` that asks the library to read its own clock (monotonic for the memory
/// store, Unix time for the shared store, which every process agrees on).
pub const LIBRARY_TIME: f64 = f64::NAN;

/// The `capacity` of `warp_mem_new` for a store without a bound on its entries.
pub const UNBOUNDED_CAPACITY: u32 = 0;

/// The `max_bytes` of `warp_shm_open` and `warp_shm_file_size` asking for the default
/// byte budget (`warp_shm_default_max_bytes`).
pub const DEFAULT_BUDGET: u64 = 0;

/// The TTL that a `ttl_ms` argument stands for: `Ok(None)` for [`NO_TTL`], `Ok(Some(ms))`
/// for a positive one (`+Infinity`: never), else the `InvalidArgument` status, with the
/// message recorded.
pub fn ttl_arg(ttl_ms: f64) -> Result<Option<f64>, i32> {
    if ttl_ms.is_nan() {
        Ok(None)
    } else if ttl_ms > 0.0 {
        Ok(Some(ttl_ms))
    } else {
        Err(crate::error::fail(
            Status::InvalidArgument,
            format!("ttl must be positive or Infinity (NaN: none): received {ttl_ms}"),
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Result codes of the shared store's exports.

abi_codes! {
    /// What `warp_shm_set` returns when it does not fail.
    pub SET: i32 {
        /// Stored.
        stored: SET_STORED = 0,
        /// Not stored: the key or value is over its size limit, or the entry over the
        /// whole byte budget (counted as an oversize skip).
        skipped: SET_SKIPPED = 1,
        /// Not stored: a live process kept the write lock (stopped, or in a debugger).
        busy: SET_BUSY = 2,
        /// `warp_shm_set_owned`: not stored, the flight was no longer this handle's (a
        /// delete, clear or set in any process ended it).
        lost: SET_LOST = 3,
    }
}

abi_codes! {
    /// The codes of the `warp_shm_flight_*` exports: `warp_shm_flight_claim` returns `owner`,
    /// `wait`, `local` or `none`; a wait ends with `done`, `owner` (a dead owner's flight
    /// taken over), `async`, `timeout` or `closed`; `warp_shm_flight_register` returns an
    /// end code, or `idBase` plus the id of a wait that goes on.
    pub FLIGHT: i32 {
        /// `warp_shm_flight_claim`: this handle owns the flight (and a wait's end: it took
        /// a dead owner's flight over).
        owner: FLIGHT_OWNER = 0,
        /// `warp_shm_flight_claim`: a live handle of another process owns it.
        wait: FLIGHT_WAIT = 1,
        /// `warp_shm_flight_claim`: no flight could be recorded.
        none: FLIGHT_NONE = 2,
        /// A wait's end: the flight ended.
        done: FLIGHT_DONE = 3,
        /// A wait's end: the time ran out.
        timeout: FLIGHT_TIMEOUT = 4,
        /// `warp_shm_flight_claim`: a live handle of this process owns it.
        local: FLIGHT_LOCAL = 5,
        /// `warp_shm_flight_wait_sync` with `until_async`: the owner's computation is async
        /// (or a handle of this process owns the flight): wait asynchronously instead.
        async: FLIGHT_ASYNC = 6,
        /// A wait's end: the handle was closed.
        closed: FLIGHT_CLOSED = 7,
        /// `warp_shm_flight_register` returns `idBase + id` for a wait that goes on (an end
        /// code, below it, for one that ended at once).
        idBase: FLIGHT_ID_BASE = 16,
        /// `warp_shm_get_claim` reports a miss as `missClaimed - claim code` (the lookup
        /// claimed the key's flight).
        missClaimed: FLIGHT_MISS_CLAIMED = -32,
    }
}

abi_codes! {
    /// What `warp_shm_inspect` returns when it could read the file (a negative status when
    /// it could not open it).
    pub INSPECT: i32 {
        /// A valid cache file.
        valid: INSPECT_VALID = 0,
        /// Not a cache file of this library (no magic).
        foreign: INSPECT_FOREIGN = 1,
        /// A cache file of another format version (written to the `formatVersion` field) or
        /// hash check.
        otherVersion: INSPECT_OTHER_VERSION = 2,
        /// Our magic and version, but sizes or counts that do not fit.
        corrupt: INSPECT_CORRUPT = 3,
    }
}

// ---------------------------------------------------------------------------------------
// Fields of the info exports, in the order they are written.

/// The fields that `warp_mem_info` writes, in order (little-endian `f64`s).
pub const MEM_INFO: [Field<SieveStore>; 6] = [
    Field {
        name: "hits",
        doc: "Lookups that found a fresh entry.",
        get: |s| s.stats().hits as f64,
    },
    Field {
        name: "misses",
        doc: "Lookups that found none.",
        get: |s| s.stats().misses as f64,
    },
    Field {
        name: "evictions",
        doc: "Entries evicted to make room.",
        get: |s| s.stats().evictions as f64,
    },
    Field {
        name: "expirations",
        doc: "Entries removed past their TTL (and stale window).",
        get: |s| s.stats().expirations as f64,
    },
    Field {
        name: "currentSize",
        doc: "Entries held.",
        get: |s| s.len() as f64,
    },
    Field {
        name: "maxSize",
        doc: "Most entries (`MAX_MEM_CAPACITY` or more: unbounded).",
        get: |s| s.capacity() as f64,
    },
];

/// Number of `f64` fields written by `warp_mem_info`.
pub const MEM_INFO_FIELDS: usize = MEM_INFO.len();

#[cfg(unix)]
pub use shared::*;

/// The facts of the shared store (unix only, as the store).
#[cfg(unix)]
mod shared {
    use super::{Field, Member};
    use crate::shm::Info;
    use crate::shm::tags::{self as t, TagsHeader};
    use std::mem::offset_of;

    /// The fields that `warp_shm_info` writes, in order (little-endian `f64`s). Counters
    /// are the totals of every process since creation or the last clear.
    pub const SHM_INFO: [Field<Info>; 12] = [
        Field {
            name: "hits",
            doc: "Lookups that found a fresh entry (stale hits and joins included).",
            get: |i| i.hits as f64,
        },
        Field {
            name: "misses",
            doc: "Lookups that found none.",
            get: |i| i.misses as f64,
        },
        Field {
            name: "oversizeSkips",
            doc: "Entries not stored: key or value over its limit, or over the byte budget.",
            get: |i| i.oversize_skips as f64,
        },
        Field {
            name: "currentSize",
            doc: "Entries held.",
            get: |i| i.len as f64,
        },
        Field {
            name: "maxSize",
            doc: "Most entries of the file in use.",
            get: |i| i.capacity as f64,
        },
        Field {
            name: "evictions",
            doc: "Entries evicted to make room.",
            get: |i| i.evictions as f64,
        },
        Field {
            name: "maxKeySize",
            doc: "Largest key in bytes of the file in use.",
            get: |i| i.max_key_size as f64,
        },
        Field {
            name: "maxValueSize",
            doc: "Largest value in bytes of the file in use.",
            get: |i| i.max_value_size as f64,
        },
        Field {
            name: "bytes",
            doc: "Bytes of the chunks that the entries hold.",
            get: |i| i.bytes as f64,
        },
        Field {
            name: "maxBytes",
            doc: "The byte budget of the entries.",
            get: |i| i.max_bytes as f64,
        },
        Field {
            name: "staleHits",
            doc: "Stale values returned (counted in `hits` too).",
            get: |i| i.stale_hits as f64,
        },
        Field {
            name: "refreshes",
            doc: "Background refreshes started.",
            get: |i| i.refreshes as f64,
        },
    ];

    /// Number of `f64` fields written by `warp_shm_info`.
    pub const SHM_INFO_FIELDS: usize = SHM_INFO.len();

    abi_codes! {
        /// The fields that `warp_shm_inspect` writes after those of `SHM_INFO`, by index.
        pub INSPECT_MORE: usize {
            /// The format version of the file (also for `INSPECT.otherVersion`).
            formatVersion: INSPECT_FORMAT_VERSION = SHM_INFO_FIELDS,
            /// The file size in bytes.
            fileSize: INSPECT_FILE_SIZE = SHM_INFO_FIELDS + 1,
            /// Whether a process has the file open: 1, 0, or -1 (cannot tell).
            inUse: INSPECT_IN_USE = SHM_INFO_FIELDS + 2,
            /// Whether the header was read consistently: 1 or 0.
            consistent: INSPECT_CONSISTENT = SHM_INFO_FIELDS + 3,
            /// Whether the write lock was held: 1 or 0.
            locked: INSPECT_LOCKED = SHM_INFO_FIELDS + 4,
        }
    }

    /// Number of `f64` fields written by `warp_shm_inspect`.
    pub const INSPECT_FIELDS: usize = SHM_INFO_FIELDS + INSPECT_MORE.len();

    /// The fields that `warp_tags_layout` writes, in order: the layout of tag clock files
    /// (`crate::shm::tags`) that JavaScript reads the mapping with.
    pub const TAGS_LAYOUT: [Field<()>; 10] = [
        Field {
            name: "fileSize",
            doc: "Bytes of the file.",
            get: |_| t::FILE_SIZE as f64,
        },
        Field {
            name: "headerSize",
            doc: "Bytes of the header; the slots follow.",
            get: |_| t::HEADER_SIZE as f64,
        },
        Field {
            name: "slotSize",
            doc: "Bytes of a slot: the tag's 64-bit hash, then its epoch (u64 each).",
            get: |_| t::SLOT_SIZE as f64,
        },
        Field {
            name: "slots",
            doc: "Slots of the table (a power of two).",
            get: |_| f64::from(t::SLOTS),
        },
        Field {
            name: "probe",
            doc: "Most slots probed from a hash's home slot.",
            get: |_| f64::from(t::PROBE),
        },
        Field {
            name: "nonce",
            doc: "Byte offset of the file's nonce (u64).",
            get: |_| offset_of!(TagsHeader, nonce) as f64,
        },
        Field {
            name: "epoch",
            doc: "Byte offset of the epoch (u64).",
            get: |_| offset_of!(TagsHeader, epoch) as f64,
        },
        Field {
            name: "floor",
            doc: "Byte offset of the floor (u64).",
            get: |_| offset_of!(TagsHeader, floor) as f64,
        },
        Field {
            name: "version",
            doc: "The format version of tag clock files.",
            get: |_| f64::from(t::VERSION),
        },
        Field {
            name: "start",
            doc: "Byte offset of the first epoch (u64).",
            get: |_| offset_of!(TagsHeader, start) as f64,
        },
    ];

    /// Number of `f64` fields written by `warp_tags_layout`.
    pub const TAGS_LAYOUT_FIELDS: usize = TAGS_LAYOUT.len();

    /// The fields of `warp_shm_inspect`: those of [`SHM_INFO`], then [`INSPECT_MORE`].
    pub fn inspect_members() -> Vec<Member> {
        let mut m = Field::members(&SHM_INFO);
        m.extend_from_slice(INSPECT_MORE);
        m
    }
}

// ---------------------------------------------------------------------------------------
// The list, and `src/native/_abi.ts`.

/// A value of a constant.
#[derive(Clone, Copy, Debug)]
pub enum Value {
    /// An integer (exact in JavaScript: below 2^53).
    Int(i64),
    /// A float (`NaN` for the sentinels).
    Float(f64),
    /// A string.
    Str(&'static str),
}

macro_rules! int_values {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::Int(i64::try_from(v).expect("an ABI fact fits in i64"))
            }
        }
    )*};
}
int_values!(i32, u32, u64, usize);

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

impl From<&'static str> for Value {
    fn from(v: &'static str) -> Value {
        Value::Str(v)
    }
}

/// One item of `src/native/_abi.ts`.
#[derive(Clone, Debug)]
pub enum Fact {
    /// A `// ` comment line that opens a section.
    Section(&'static str),
    /// `export const NAME = value;`
    Const {
        name: &'static str,
        doc: &'static str,
        value: Value,
    },
    /// `export const NAME = { member: number, ... } as const;`
    Object {
        name: &'static str,
        doc: &'static str,
        members: Vec<Member>,
    },
}

fn konst(name: &'static str, value: impl Into<Value>, doc: &'static str) -> Fact {
    Fact::Const {
        name,
        doc,
        value: value.into(),
    }
}

fn object(name: &'static str, members: &[Member], doc: &'static str) -> Fact {
    Fact::Object {
        name,
        doc,
        members: members.to_vec(),
    }
}

fn m(name: &'static str, value: impl Into<Value>, doc: &'static str) -> Member {
    let Value::Int(value) = value.into() else {
        unreachable!("members are integers")
    };
    Member { name, value, doc }
}

/// Every fact, in the order of `src/native/_abi.ts`.
#[cfg(unix)]
pub fn facts() -> Vec<Fact> {
    use crate::shm::layout::{self as l, FlightRecord, Header, SlotHeader};
    use std::mem::offset_of;
    let magic = std::str::from_utf8(&l::MAGIC).expect("the magic is ASCII");
    vec![
        Fact::Section("The library"),
        konst(
            "ABI_VERSION",
            ABI_VERSION,
            "Version of the C ABI (`ABI_VERSION` in `rust/src/ffi/mod.rs`, with its history): `src/native/ffi.ts` refuses a library that reports another one.",
        ),
        object(
            "Status",
            Status::MEMBERS,
            "Status codes (`Status` in `rust/src/error.rs`). Non-negative results are results (slots, lengths); negative ones are these codes, and the library's last error says why.",
        ),
        konst(
            "NO_TTL",
            NO_TTL,
            "\"No TTL\", the one sentinel of every `ttl_ms` argument: `warp_mem_new` and `warp_shm_open` (the store has no TTL), `warp_mem_set` and `warp_shm_set` (the entry has no TTL of its own: the store's applies). Any other `ttl_ms` is a TTL: positive, or `Infinity` for never; 0 or negative: `Status.InvalidArgument`.",
        ),
        konst(
            "LIBRARY_TIME",
            LIBRARY_TIME,
            "The `now_ms` asking the library to read its own clock (monotonic for the memory store; Unix time, which every process agrees on, for the shared store).",
        ),
        Fact::Section("The memory store (warp_mem_*)"),
        object(
            "POLICY",
            Policy::MEMBERS,
            "Eviction policies of `warp_mem_new` (`Policy` in `rust/src/sieve.rs`); `Strategy` in `src/options/options.ts` has the same numbers.",
        ),
        konst(
            "UNBOUNDED_CAPACITY",
            UNBOUNDED_CAPACITY,
            "The `capacity` of `warp_mem_new` for a store without a bound on its entries.",
        ),
        konst(
            "MAX_MEM_CAPACITY",
            MAX_SLOTS,
            "Most slots of a memory store: slot numbers travel as non-negative `i32`; a larger `maxSize` is unbounded.",
        ),
        konst(
            "EXPIRED_BASE",
            EXPIRED_BASE,
            "`warp_mem_get` reports \"expired and removed\" as `EXPIRED_BASE - slot` (a result `r <= EXPIRED_BASE`: the value of slot `EXPIRED_BASE - r` may go); results between it and -1 are `Status` codes.",
        ),
        object(
            "MEM_INFO",
            &Field::members(&MEM_INFO),
            "Index of each `f64` that `warp_mem_info` writes.",
        ),
        konst(
            "MEM_INFO_FIELDS",
            MEM_INFO_FIELDS,
            "Number of `f64` fields written by `warp_mem_info`.",
        ),
        Fact::Section("The shared store (warp_shm_*)"),
        konst(
            "MAX_SHARED_ENTRIES",
            l::MAX_CAPACITY,
            "Largest `maxSize` of a shared cache (`MAX_CAPACITY`).",
        ),
        konst(
            "MAX_KEY_BYTES",
            l::MAX_KEY_SIZE,
            "Largest `maxKeySize` of a shared cache, in bytes (`MAX_KEY_SIZE`): 1 MiB.",
        ),
        konst(
            "MAX_VALUE_BYTES",
            l::MAX_VALUE_SIZE,
            "Largest `maxValueSize` of a shared cache, in bytes (`MAX_VALUE_SIZE`): 64 MiB; values are returned as `i32` lengths.",
        ),
        konst(
            "MIN_SHARED_BYTES",
            l::MIN_MAX_BYTES,
            "Smallest `maxBytes` of a shared cache: one chunk (`MIN_MAX_BYTES`).",
        ),
        konst(
            "MAX_SHARED_BYTES",
            l::MAX_MAX_BYTES,
            "Largest `maxBytes` of a shared cache: 64 GiB (`MAX_MAX_BYTES`).",
        ),
        konst(
            "SET_WAIT_MS",
            crate::shm::SET_WAIT.as_millis() as u64,
            "Most ms that `warp_shm_set` waits for the write lock before it gives up (`SET.busy`: the holder is alive but stopped) (`SET_WAIT`).",
        ),
        konst(
            "LONG_WAIT_MS",
            crate::shm::LONG_WAIT.as_millis() as u64,
            "Most ms that `warp_shm_delete` and `warp_shm_clear` wait for the write lock before they fail with `Status.Busy` (`LONG_WAIT`); `cacheSet` waits as long, through repeated sets.",
        ),
        konst(
            "DEFAULT_MAX_BYTES",
            l::DEFAULT_MAX_BYTES,
            "The most that the default byte budget of a shared cache takes: 16 MiB (`warp_shm_default_max_bytes` gives it for given sizes).",
        ),
        konst(
            "DEFAULT_BUDGET",
            DEFAULT_BUDGET,
            "The `max_bytes` of `warp_shm_open` and `warp_shm_file_size` asking for the default byte budget.",
        ),
        object(
            "SET",
            SET,
            "What `warp_shm_set` returns when it does not fail.",
        ),
        object(
            "SHM_INFO",
            &Field::members(&SHM_INFO),
            "Index of each `f64` that `warp_shm_info` writes. Counters are the totals of every process since creation or the last clear.",
        ),
        konst(
            "SHM_INFO_FIELDS",
            SHM_INFO_FIELDS,
            "Number of `f64` fields written by `warp_shm_info`.",
        ),
        object(
            "SHM_INSPECT",
            &inspect_members(),
            "Index of each `f64` that `warp_shm_inspect` writes: the fields of `SHM_INFO` at the same indices, then facts about the file (all 0 unless the file is valid; `formatVersion` also for `INSPECT.otherVersion`).",
        ),
        konst(
            "SHM_INSPECT_FIELDS",
            INSPECT_FIELDS,
            "Number of `f64` fields written by `warp_shm_inspect`.",
        ),
        object(
            "INSPECT",
            INSPECT,
            "What `warp_shm_inspect` returns when it could read the file (a negative status when it could not open it).",
        ),
        object(
            "FLIGHT",
            FLIGHT,
            "The codes of the `warp_shm_flight_*` exports: `warp_shm_flight_claim` returns `owner`, `wait`, `local` or `none`; a wait ends with `done`, `owner` (a dead owner's flight taken over), `async`, `timeout` or `closed`; `warp_shm_flight_register` returns an end code, or `idBase` plus the id of a wait that goes on.",
        ),
        Fact::Section("The shared cache file (rust/src/shm/layout.rs)"),
        konst(
            "FORMAT_VERSION",
            l::VERSION,
            "Format version of shared cache files (`VERSION`, with its history): a file of another version is recreated.",
        ),
        konst(
            "SHARED_MAGIC",
            magic,
            "First 8 bytes of every shared cache file (`MAGIC`).",
        ),
        konst(
            "HEADER_SIZE",
            l::HEADER_SIZE,
            "Bytes of the file header; the hash table follows.",
        ),
        object(
            "SHM_HEADER",
            &[
                m(
                    "magic",
                    offset_of!(Header, magic),
                    "The magic (line 0: the identity fields).",
                ),
                m(
                    "version",
                    offset_of!(Header, version),
                    "The format version (u32).",
                ),
                m(
                    "seq",
                    offset_of!(Header, seq),
                    "The seqlock counter's line.",
                ),
                m("lock", offset_of!(Header, lock), "The write lock's line."),
                m(
                    "stripes",
                    offset_of!(Header, stripe0),
                    "The first counter stripe's line.",
                ),
                m("queue", offset_of!(Header, head), "The SIEVE queue's line."),
            ],
            "Byte offsets in the file header.",
        ),
        konst(
            "BUCKET_SIZE",
            l::BUCKET_SIZE,
            "Bytes of a hash-table bucket; the table has a power of two of them, at least 8 and `2 * maxSize`.",
        ),
        konst(
            "SLOT_SIZE",
            l::SLOT_HEADER_SIZE,
            "Bytes of a slot (an entry's header); the file has `maxSize + 1` after the table.",
        ),
        object(
            "SHM_SLOT",
            &[
                m(
                    "meta",
                    offset_of!(SlotHeader, meta),
                    "The key length, value length, live and visited bits (one u64).",
                ),
                m(
                    "firstChunk",
                    offset_of!(SlotHeader, body),
                    "The body: an entry's key then value when they fit (`INLINE_BYTES`), else its first chunk (u32).",
                ),
                m(
                    "chunkCount",
                    offset_of!(SlotHeader, body) + 4,
                    "A chained entry's chunk count (u32, word 1 of the body).",
                ),
            ],
            "Byte offsets in a slot.",
        ),
        konst(
            "INLINE_BYTES",
            l::INLINE_BYTES,
            "Bytes of an entry's key and value that its slot holds itself (no chunk, no budget).",
        ),
        konst(
            "CHUNK_SIZE",
            l::CHUNK_SIZE,
            "Bytes of a chunk: a chunk header, then `CHUNK_PAYLOAD` bytes of an entry's key and value; the chunks follow the slots.",
        ),
        konst(
            "CHUNK_HEADER_SIZE",
            l::CHUNK_HEADER_SIZE,
            "Bytes of a chunk header: the next chunk, then the owner slot (u32 each).",
        ),
        konst(
            "CHUNK_PAYLOAD",
            l::CHUNK_PAYLOAD,
            "Bytes of an entry's key and value that a chunk holds.",
        ),
        konst(
            "FLIGHT_RECORDS",
            l::FLIGHT_RECORDS,
            "Flight records at the end of the file: computations under way in all processes at once, at most.",
        ),
        konst(
            "FLIGHT_SIZE",
            std::mem::size_of::<FlightRecord>(),
            "Bytes of a flight record.",
        ),
        Fact::Section("The tag clock file of a directory (rust/src/shm/tags.rs)"),
        konst(
            "TAGS_FILE",
            crate::shm::tags::TAGS_FILE,
            "Name of the tag clock file in a directory of shared caches (never a cache file's name: it starts with a dot).",
        ),
        konst(
            "TAGS_MAGIC",
            std::str::from_utf8(&crate::shm::tags::MAGIC).expect("the magic is ASCII"),
            "First 8 bytes of a tag clock file.",
        ),
        konst(
            "TAGS_SLOT_SIZE",
            crate::shm::tags::SLOT_SIZE,
            "Bytes of a slot of the tag clock (read as four u32 words: hash, epoch); `warp_tags_layout` must report it.",
        ),
        object(
            "TAGS_LAYOUT",
            &Field::members(&TAGS_LAYOUT),
            "Index of each `f64` that `warp_tags_layout` writes: the layout of tag clock files.",
        ),
        konst(
            "TAGS_LAYOUT_FIELDS",
            TAGS_LAYOUT_FIELDS,
            "Number of `f64` fields written by `warp_tags_layout`.",
        ),
    ]
}

/// Where the generated file lives, from the crate's directory.
pub const GENERATED_PATH: &str = "../src/native/_abi.ts";

/// The text of `src/native/_abi.ts`, formatted as `deno fmt` leaves it.
#[cfg(unix)]
pub fn render() -> String {
    let mut out = String::from(
        "// Generated from rust/src/abi.rs by `deno task abi`: do not edit by hand.
/**
 * Every fact that crosses the FFI between the native library and this package: status codes,
 * sentinels, result codes, the fields of the info exports in their order, policy numbers,
 * limits, the shared cache file's layout and format version, the ABI version.
 *
 * One source: `rust/src/abi.rs` defines or re-exports each fact, and this file is generated
 * from it; every TypeScript use imports it from here (the symbols themselves are declared in
 * `src/native/ffi.ts`), but for a few literals on hot paths, each followed by a comment
 * `abi: Name` and checked against this file by `tests/abi_test.ts`. After changing a fact in
 * the crate, run `deno task abi`: it runs the crate's test
 * `abi::tests::generated_file_is_current` with `UPDATE_ABI=1`, which rewrites this file.
 * Without `UPDATE_ABI` that test fails while this file is stale; `cargo test`, `deno task test`
 * and `.ci/run` run it.
 *
 * \"No TTL\" has one sentinel everywhere: {@linkcode NO_TTL} (`NaN`).
 *
 * @module
 */
",
    );
    for fact in facts() {
        out.push('\n');
        match fact {
            Fact::Section(title) => {
                out.push_str(&format!("// {title}.\n"));
            }
            Fact::Const { name, doc, value } => {
                out.push_str(&jsdoc(doc, ""));
                out.push_str(&format!("export const {name} = {};\n", literal(value)));
            }
            Fact::Object { name, doc, members } => {
                out.push_str(&jsdoc(doc, ""));
                out.push_str(&format!("export const {name} = {{\n"));
                for m in members {
                    out.push_str(&jsdoc(m.doc, "  "));
                    out.push_str(&format!("  {}: {},\n", m.name, m.value));
                }
                out.push_str("} as const;\n");
            }
        }
    }
    out
}

/// A TypeScript literal of `v`.
fn literal(v: Value) -> String {
    match v {
        Value::Int(n) => grouped(n),
        Value::Float(f) if f.is_nan() => "NaN".to_owned(),
        Value::Float(f) if f.is_infinite() => {
            (if f > 0.0 { "Infinity" } else { "-Infinity" }).to_owned()
        }
        Value::Float(f) => format!("{f:?}"),
        Value::Str(s) => format!("{s:?}"),
    }
}

/// `n` in decimal, with `_` between groups of three digits from 100,000 on (`16_777_216`).
fn grouped(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    if digits.len() < 6 {
        return n.to_string();
    }
    let mut s = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            s.push('_');
        }
        s.push(c);
    }
    if n < 0 { format!("-{s}") } else { s }
}

/// Rustdoc as plain text: intra-doc links "[`x`]" become "`x`", lines trimmed.
fn plain(doc: &str) -> Vec<String> {
    doc.lines()
        .map(|l| l.trim().replace("[`", "`").replace("`]", "`"))
        .filter(|l| !l.is_empty())
        .collect()
}

/// `doc` as a JSDoc comment indented by `indent`, wrapped at 100 columns.
fn jsdoc(doc: &str, indent: &str) -> String {
    let text = plain(doc).join(" ");
    let width = 100 - indent.len() - 3;
    let mut lines: Vec<String> = vec![];
    for word in text.split(' ') {
        match lines.last_mut() {
            Some(line) if line.len() + 1 + word.len() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_owned()),
        }
    }
    let one = format!("{indent}/** {} */\n", lines.join(" "));
    if lines.len() <= 1 && one.len() <= 101 {
        return one;
    }
    let mut s = format!("{indent}/**\n");
    for line in lines {
        s.push_str(&format!("{indent} * {line}\n"));
    }
    s.push_str(&format!("{indent} */\n"));
    s
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::path::PathBuf;

    fn generated_path() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(GENERATED_PATH)
    }

    /// The check behind `deno task abi`: with `UPDATE_ABI=1` it writes the file; without,
    /// it fails while the file differs from what the crate's facts give.
    #[test]
    fn generated_file_is_current() {
        let path = generated_path();
        let text = render();
        if std::env::var_os("UPDATE_ABI").is_some_and(|v| v != "0" && !v.is_empty()) {
            std::fs::write(&path, &text).expect("write src/native/_abi.ts");
            eprintln!("wrote {}", path.display());
            return;
        }
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current != text {
            let first = current
                .lines()
                .zip(text.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| current.lines().count().min(text.lines().count()));
            panic!(
                "src/native/_abi.ts is stale: the crate's facts (rust/src/abi.rs and what it re-exports) changed; run `deno task abi` to regenerate it.\nfirst difference at line {}:\n  file:      {}\n  generated: {}",
                first + 1,
                current.lines().nth(first).unwrap_or("(end of file)"),
                text.lines().nth(first).unwrap_or("(end of file)"),
            );
        }
    }

    #[test]
    fn names_are_unique_and_members_distinct() {
        let mut names = HashSet::new();
        for fact in facts() {
            let (name, members) = match fact {
                Fact::Section(_) => continue,
                Fact::Const { name, .. } => (name, vec![]),
                Fact::Object { name, members, .. } => (name, members),
            };
            assert!(names.insert(name), "{name} twice");
            let mut keys = HashSet::new();
            let mut values = HashSet::new();
            for m in &members {
                assert!(keys.insert(m.name), "{name}.{} twice", m.name);
                assert!(values.insert(m.value), "{name}.{} repeats a number", m.name);
                assert!(
                    m.value.abs() < 1 << 53,
                    "{name}.{} is exact in JavaScript",
                    m.name
                );
                assert!(!m.doc.trim().is_empty(), "{name}.{} has a doc", m.name);
            }
        }
    }

    #[test]
    fn codes_do_not_collide() {
        let statuses = Status::MEMBERS.iter().map(|m| m.value);
        // Results of warp_mem_get: slots (>= 0), statuses, then EXPIRED_BASE - slot.
        assert!(
            statuses
                .clone()
                .all(|s| s > i64::from(EXPIRED_BASE) && s <= 0)
        );
        assert_eq!(Status::Ok as i32, 0);
        assert_eq!(Status::Miss as i32, -1);
        // A wait's end codes are below idBase, where wait ids start.
        assert!(FLIGHT.iter().all(|m| m.value <= i64::from(FLIGHT_ID_BASE)));
        // Every policy number maps back to its policy.
        for (p, m) in Policy::ALL.iter().zip(Policy::MEMBERS) {
            assert_eq!(Policy::from_u32(m.value as u32), Some(*p));
        }
        assert_eq!(Policy::from_u32(Policy::ALL.len() as u32), None);
    }

    #[test]
    fn info_fields_follow_their_tables() {
        use crate::shm::Info;
        let info = Info {
            hits: 1,
            misses: 2,
            oversize_skips: 3,
            len: 4,
            capacity: 5,
            evictions: 6,
            max_key_size: 7,
            max_value_size: 8,
            bytes: 9,
            max_bytes: 10,
            stale_hits: 11,
            refreshes: 12,
        };
        let got = write_fields(&SHM_INFO, &info);
        assert_eq!(got, std::array::from_fn(|i| (i + 1) as f64));
    }

    #[test]
    fn ttl_arg_has_one_sentinel() {
        assert_eq!(ttl_arg(NO_TTL), Ok(None));
        assert_eq!(ttl_arg(5.0), Ok(Some(5.0)));
        assert_eq!(ttl_arg(f64::INFINITY), Ok(Some(f64::INFINITY)));
        for bad in [0.0, -0.0, -1.0, f64::NEG_INFINITY] {
            assert_eq!(ttl_arg(bad), Err(Status::InvalidArgument as i32), "{bad}");
        }
    }

    #[test]
    fn jsdoc_wraps_at_the_line_width() {
        let long = "word ".repeat(40);
        for line in jsdoc(&long, "  ").lines() {
            assert!(line.len() <= 100, "{line}");
        }
        assert_eq!(jsdoc("Short.", ""), "/** Short. */\n");
        assert_eq!(
            jsdoc(" See [`x`].\n Next.\n", ""),
            "/** See `x`. Next. */\n"
        );
        assert_eq!(literal(Value::Int(16 << 20)), "16_777_216");
        assert_eq!(literal(Value::Int(-16)), "-16");
        assert_eq!(literal(Value::Int(65536)), "65536");
        assert_eq!(literal(Value::Int(-123_456)), "-123_456");
    }
}
