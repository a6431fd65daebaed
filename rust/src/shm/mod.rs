//! Cross-process store in a memory-mapped file (see `layout`, `region`).
