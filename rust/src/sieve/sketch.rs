//! W-TinyLFU's frequency sketch, and the key hash that feeds it.
//!
//! The sketch is Caffeine's `FrequencySketch` (Ben Manes, Caffeine v3.2.4,
//! `caffeine/src/main/java/com/github/benmanes/caffeine/cache/FrequencySketch.java`): a
//! count-min sketch of 4-bit counters, four per key, all in one 64-byte block, halved (the
//! TinyLFU "reset") every 10 increments per entry of the cache. In front of it, the TinyLFU
//! doorkeeper as Caffeine's simulator has it (`PeriodicResetCountMin4` with
//! `periodic.doorkeeper`): a Bloom filter (1% false positives for 3 insertions per entry)
//! that takes a key's first access in each period, so that only repeated accesses reach
//! the counters; the reset empties it, and a key it holds counts one more.
//! Caffeine's production cache has no doorkeeper; with it, W-TinyLFU missed less on every
//! trace of `bench/sim.ts` (notes/eviction.md).
//!
//! Both engines compute the same counters: the key hash is the TypeScript store's index
//! hash (`hashBytes` in `src/store/ts_store.ts`), and all arithmetic is Java's `int`
//! arithmetic. `src/store/_frequency_sketch.ts` is the TypeScript port.

/// The key hash of the sketch: MurmurHash3 x86_32 mixing over the little-endian 32-bit
/// words of `key`, seed `0x9747b28c ^ len`, masked to 30 bits; the hash that the TypeScript
/// store indexes its keys with (`hashBytes`).
pub fn key_hash(key: &[u8]) -> u32 {
    let len = key.len();
    let mut h: u32 = 0x9747_b28c ^ (len as u32);
    let mut chunks = key.chunks_exact(4);
    for c in &mut chunks {
        let mut w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        w = w.wrapping_mul(0xcc9e_2d51).rotate_left(15);
        h ^= w.wrapping_mul(0x1b87_3593);
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w: u32 = 0;
        for (i, &b) in rest.iter().enumerate() {
            w |= u32::from(b) << (8 * i);
        }
        w = w.wrapping_mul(0xcc9e_2d51).rotate_left(15);
        h ^= w.wrapping_mul(0x1b87_3593);
    }
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h & 0x3fff_ffff
}

/// Caffeine's `spread`.
#[inline]
fn spread(mut x: u32) -> u32 {
    x ^= x >> 17;
    x = x.wrapping_mul(0xed5a_d4bb);
    x ^= x >> 11;
    x = x.wrapping_mul(0xac4c_1b51);
    x ^= x >> 15;
    x
}

/// Caffeine's `rehash`.
#[inline]
fn rehash(mut x: u32) -> u32 {
    x = x.wrapping_mul(0x3184_8bab);
    x ^= x >> 14;
    x
}

/// The doorkeeper's hash of a key's hash (the simulator's `BloomFilter.spread`).
#[inline]
fn door_spread(mut x: u32) -> u32 {
    x = ((x >> 16) ^ x).wrapping_mul(0x045d_9f3b);
    x = ((x >> 16) ^ x).wrapping_mul(0x045d_9f3b);
    (x >> 16) ^ x
}

/// Seeds of the doorkeeper's four bits (the low halves of the simulator's).
const DOOR_SEEDS: [u32; 4] = [0x97cb_3127, 0x6fbe_98f3, 0x2f90_404f, 0x8422_2325];
/// Bits of the doorkeeper per expected insertion: `-ln(0.01) / ln(2)^2`, a 1% false
/// positive rate (written out, so that both engines size it alike).
const DOOR_BITS_PER_KEY: f64 = 9.585_058_377_367_439;
/// Expected insertions into the doorkeeper per entry of the cache (the simulator's).
const DOOR_INSERTIONS: f64 = 3.0;
/// Java's `Integer.MAX_VALUE`.
const MAX_INT: usize = i32::MAX as usize;
const RESET_MASK: u64 = 0x7777_7777_7777_7777;
const ONE_MASK: u64 = 0x1111_1111_1111_1111;

/// Caffeine's frequency sketch with a doorkeeper (see the module docs).
#[derive(Debug)]
pub(super) struct FrequencySketch {
    table: Vec<u64>,
    door: Vec<u64>,
    /// Increments of the counters between two resets: 10 per entry of the cache.
    sample_size: i32,
    /// Increments of the counters since the last reset (a Java `int`).
    size: i32,
    block_mask: u32,
    door_shift: u32,
}

impl FrequencySketch {
    /// A sketch for a cache of `maximum_size` entries (positive).
    pub(super) fn new(maximum_size: usize) -> FrequencySketch {
        let maximum = maximum_size.min(MAX_INT >> 1);
        let words = maximum.next_power_of_two().max(8);
        let bits = ((DOOR_INSERTIONS * maximum as f64 * DOOR_BITS_PER_KEY) as usize).min(MAX_INT);
        // 32-bit words in the TypeScript port: as many bits, in half as many u64 words.
        let door_words32 = (bits >> 5).next_power_of_two().max(2);
        FrequencySketch {
            table: vec![0; words],
            door: vec![0; door_words32 / 2],
            // Caffeine's int product wraps past 2^31 - 1; here it stops there.
            sample_size: (10 * maximum).min(MAX_INT) as i32,
            size: 0,
            block_mask: ((words >> 3) - 1) as u32,
            door_shift: 32 - door_words32.trailing_zeros(),
        }
    }

    /// Increments between two resets.
    pub(super) fn sample_size(&self) -> i32 {
        self.sample_size
    }

    /// The counter indexes of `hash`: `(word, nibble)` four times.
    #[inline]
    fn indexes(&self, hash: u32) -> [(usize, u32); 4] {
        let block_hash = spread(hash);
        let counter_hash = rehash(block_hash);
        let block = (block_hash & self.block_mask) << 3;
        let mut out = [(0usize, 0u32); 4];
        for (i, o) in out.iter_mut().enumerate() {
            let h = counter_hash >> (i << 3);
            let index = (h >> 1) & 15;
            *o = ((block + (h & 1) + ((i as u32) << 1)) as usize, index);
        }
        out
    }

    /// The estimated count (0 to 15) of the key of hash `hash`: its counters' minimum,
    /// plus one when the doorkeeper holds it.
    pub(super) fn frequency(&self, hash: u32) -> u32 {
        let mut min = 15;
        for (word, index) in self.indexes(hash) {
            min = min.min(((self.table[word] >> (index << 2)) & 15) as u32);
        }
        if min < 15 && self.door_has(hash) {
            min += 1;
        }
        min
    }

    /// Counts one more access to the key of hash `hash`: the doorkeeper takes the first
    /// in each period, the counters (which stop at 15) the others; every `sample_size`
    /// increments of the counters, [`FrequencySketch::reset`].
    pub(super) fn increment(&mut self, hash: u32) {
        if !self.door_put(hash) {
            return;
        }
        let mut added = false;
        for (word, index) in self.indexes(hash) {
            let shift = index << 2;
            if (self.table[word] >> shift) & 15 != 15 {
                self.table[word] += 1 << shift;
                added = true;
            }
        }
        if added {
            self.size = self.size.wrapping_add(1);
            if self.size == self.sample_size {
                self.reset();
            }
        }
    }

    /// Halves every counter (TinyLFU's reset), and the increment count with them; empties
    /// the doorkeeper.
    pub(super) fn reset(&mut self) {
        let mut count: u32 = 0;
        for w in &mut self.table {
            count += (*w & ONE_MASK).count_ones();
            *w = (*w >> 1) & RESET_MASK;
        }
        self.size = ((self.size.wrapping_sub((count >> 2) as i32) as u32) >> 1) as i32;
        self.door.fill(0);
    }

    /// The doorkeeper's four bits of `hash`: `(u64 word, mask)`; bit `h & 31` of the
    /// 32-bit word `h >> door_shift`, as in the TypeScript port.
    #[inline]
    fn door_bits(&self, hash: u32) -> [(usize, u64); 4] {
        let item = door_spread(hash);
        DOOR_SEEDS.map(|seed| {
            let mut h = item.wrapping_add(seed).wrapping_mul(seed);
            h ^= h >> 15;
            let bit = u64::from(h >> self.door_shift) * 32 + u64::from(h & 31);
            ((bit >> 6) as usize, 1u64 << (bit & 63))
        })
    }

    /// Whether the doorkeeper holds the key of hash `hash`.
    fn door_has(&self, hash: u32) -> bool {
        self.door_bits(hash)
            .iter()
            .all(|&(word, mask)| self.door[word] & mask != 0)
    }

    /// Puts the key of hash `hash` in the doorkeeper; returns whether it was there.
    fn door_put(&mut self, hash: u32) -> bool {
        let mut present = true;
        for (word, mask) in self.door_bits(hash) {
            if self.door[word] & mask == 0 {
                self.door[word] |= mask;
                present = false;
            }
        }
        present
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned in `tests/eviction_quality_test.ts` too (`hashBytes`): the engines agree.
    #[test]
    fn key_hash_matches_the_typescript_store() {
        let pins: [(&[u8], u32); 5] = [
            (b"", 0x2bb6_c228),
            (b"a", 0x3fa0_9ea6),
            (b"abcd", 0x15a4_6ea9),
            (b"hello world", 0x19bc_60c1),
            ("\u{ff}\u{1}xyz12".as_bytes(), 0x0d28_db29),
        ];
        for (key, hash) in pins {
            assert_eq!(key_hash(key), hash, "{key:?}");
        }
    }

    /// The same workload as `tests/eviction_quality_test.ts` ("FrequencySketch ..."): the
    /// same counters, increments since the reset and sizes in both engines.
    #[test]
    fn sketch_matches_the_typescript_port() {
        let mut s = FrequencySketch::new(100);
        let key = |i: u32| key_hash(&[(i % 251) as u8, (i % 7) as u8]);
        for i in 0..3000 {
            s.increment(key(i));
        }
        let mut sum: i32 = 0;
        for i in 0..300 {
            sum = sum
                .wrapping_mul(31)
                .wrapping_add(s.frequency(key(i)) as i32);
        }
        assert_eq!((s.size, sum, s.sample_size), (375, 962_784_685, 1000));
        assert_eq!((s.door.len() * 2, s.table.len() * 2), (128, 256));
    }

    #[test]
    fn counts_repeats_past_the_doorkeeper_and_halves_them() {
        let mut s = FrequencySketch::new(64);
        let k = key_hash(b"k");
        assert_eq!(s.frequency(k), 0);
        s.increment(k);
        assert_eq!(s.frequency(k), 1, "the doorkeeper's one");
        assert_eq!(s.size, 0, "the first access does not reach the counters");
        for n in 2..=16 {
            s.increment(k);
            assert_eq!(s.frequency(k), n.min(15));
        }
        s.reset();
        assert_eq!(
            s.frequency(k),
            7,
            "15 counted, halved, the doorkeeper emptied"
        );
    }
}
