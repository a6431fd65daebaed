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

/**
 * Removes `node` from an open-addressing `table` with linear probing (`NIL` of
 * `_multi_queue.ts`, -1, marks an empty bucket; a node's home bucket is `hashes[node] & mask`) without tombstones: the nodes
 * after it in its run move back when their home allows (Knuth's algorithm R), so that every
 * lookup still finds its node before an empty bucket. `node` must be in the table.
 */
export function unprobe(table: Int32Array, mask: number, hashes: Int32Array, node: number): void {
  let i = hashes[node]! & mask;
  while (table[i] !== node) i = (i + 1) & mask;
  for (;;) {
    table[i] = -1;
    let j = i;
    let moved = false;
    for (;;) {
      j = (j + 1) & mask;
      const other = table[j]!;
      if (other === -1) break;
      const home = hashes[other]! & mask;
      // `other` may stay at j only if its home lies cyclically in (i, j].
      const stays = i <= j ? i < home && home <= j : i < home || home <= j;
      if (!stays) {
        table[i] = other;
        i = j;
        moved = true;
        break;
      }
    }
    if (!moved) break;
  }
}
