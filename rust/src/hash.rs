//! Key hashing with `ahash` at fixed seeds, so that every process of the machine that
//! loads the same library computes the same hash for the same key bytes.

/// The fixed seeds (digits of pi). Changing them changes every shared file's layout:
/// bump `shm::layout::VERSION` with them.
const SEEDS: [u64; 4] = [
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
];

/// Returns the `ahash` state at the fixed seeds.
pub fn fixed_state() -> ahash::RandomState {
    ahash::RandomState::with_seeds(SEEDS[0], SEEDS[1], SEEDS[2], SEEDS[3])
}

/// Hashes `bytes` at the fixed seeds.
#[inline]
pub fn hash_bytes(state: &ahash::RandomState, bytes: &[u8]) -> u64 {
    state.hash_one(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_same_hash_across_states() {
        let a = fixed_state();
        let b = fixed_state();
        assert_eq!(hash_bytes(&a, b"key"), hash_bytes(&b, b"key"));
        assert_ne!(hash_bytes(&a, b"key"), hash_bytes(&a, b"kez"));
    }
}
