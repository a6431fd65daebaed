//! Exports of the shared store (`warp_shm_*`). Not written yet.
