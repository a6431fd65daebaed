/**
 * The key hash of the TypeScript store's index, also the key hash of W-TinyLFU's frequency
 * sketch on both engines (`key_hash` in `rust/src/sieve/sketch.rs` computes the same).
 *
 * @module
 */

/**
 * Hashes `key[0..len)` to a non-negative 30-bit integer (MurmurHash3 x86_32 mixing over
 * little-endian words, fixed seed). Not DoS-resistant, like the native store's fixed-seed
 * `ahash`.
 */
export function hashBytes(key: Uint8Array, len: number): number {
  let h = 0x9747b28c ^ len;
  let i = 0;
  for (; i + 3 < len; i += 4) {
    let w = key[i]! | (key[i + 1]! << 8) | (key[i + 2]! << 16) | (key[i + 3]! << 24);
    w = Math.imul(w, 0xcc9e2d51);
    w = (w << 15) | (w >>> 17);
    h ^= Math.imul(w, 0x1b873593);
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  if (i < len) {
    let w = 0;
    for (let shift = 0; i < len; i++, shift += 8) w |= key[i]! << shift;
    w = Math.imul(w, 0xcc9e2d51);
    w = (w << 15) | (w >>> 17);
    h ^= Math.imul(w, 0x1b873593);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h & 0x3fffffff;
}
