/**
 * The bytes of a shared entry with tags: an envelope around the value's own encoding.
 *
 * ```text
 * [0x7F][flags u8: bit 0 = the value is an async result][tag count u16 LE]
 * [nonce: 2 x u32 LE: the tag clock file it was stored under][epoch f64 LE]
 * [per tag: its 64-bit hash, 2 x u32 LE (low, high)]
 * then the value's encoding (the value codec's bytes, or a large value's file reference)
 * ```
 *
 * `0x7F` is never the first byte of the value codec's bytes (its first byte is a tag from
 * 0 up, appended one by one, and bit 7 is its promised flag; tag 127 is kept for this
 * envelope, which `tests/shared_tags_test.ts` pins), so an entry without tags reads as
 * before, and a process of an older version reads an envelope as an unknown tag: a miss.
 *
 * @module
 */

/** First byte of a tagged entry's bytes. */
export const TAGGED_ENVELOPE = 0x7f;
/** Bytes before the tag hashes. */
const HEAD = 20;
/** Most tags of one entry. */
export const MAX_ENTRY_TAGS = 0xffff;

/** Bytes an envelope adds to a value's own for the tags of hashes `hashes`. */
export function envelopeBytes(hashes: readonly number[]): number {
  return HEAD + 4 * hashes.length;
}

/** What an envelope says of its entry. */
export interface Envelope {
  /** Where the value's own bytes start. */
  offset: number;
  /** Whether the value is an async result. */
  promised: boolean;
  /** The tag clock's nonce when it was stored (low, high). */
  nonceLo: number;
  nonceHi: number;
  /** The tag clock's epoch when its computation started (`NaN`: none). */
  at: number;
  /** Its tags' hashes, two `u32` each. */
  hashes: number[];
}

/**
 * Wraps `inner` (the value's bytes) in an envelope.
 *
 * @param hashes The tags' 64-bit hashes (`hashTags`).
 * @throws {RangeError} If there are more than 65,535 tags.
 */
export function encodeEnvelope(
  inner: Uint8Array,
  promised: boolean,
  nonceLo: number,
  nonceHi: number,
  at: number,
  hashes: readonly number[],
): Uint8Array {
  const count = hashes.length / 2;
  if (count > MAX_ENTRY_TAGS) {
    throw new RangeError(
      `Cannot store an entry with ${count} tags in a shared cache: at most ${MAX_ENTRY_TAGS}`,
    );
  }
  const out = new Uint8Array(HEAD + 8 * count + inner.length);
  const view = new DataView(out.buffer);
  out[0] = TAGGED_ENVELOPE;
  out[1] = promised ? 1 : 0;
  view.setUint16(2, count, true);
  view.setUint32(4, nonceLo, true);
  view.setUint32(8, nonceHi, true);
  view.setFloat64(12, at, true);
  for (let i = 0; i < hashes.length; i++) view.setUint32(HEAD + 4 * i, hashes[i]!, true);
  out.set(inner, HEAD + 8 * count);
  return out;
}

/**
 * Where the value's own bytes start in the envelope `buf[0..len)` (read through `view`, a
 * `DataView` over `buf` from its offset 0), or -1 when those bytes are not a whole one.
 */
export function envelopeOffset(buf: Uint8Array, view: DataView, len: number): number {
  if (len < HEAD || buf[0] !== TAGGED_ENVELOPE || (buf[1]! & ~1) !== 0) return -1;
  const offset = HEAD + 8 * view.getUint16(2, true);
  return offset < len ? offset : -1;
}

/** Whether the envelope's value is an async result. */
export function envelopePromised(buf: Uint8Array): boolean {
  return buf[1] === 1;
}

/** The envelope's epoch (see {@linkcode Envelope.at}). */
export function envelopeAt(view: DataView): number {
  return view.getFloat64(12, true);
}

/** Whether the envelope was stored under the tag clock file of nonce (`lo`, `hi`). */
export function envelopeNonceIs(view: DataView, lo: number, hi: number): boolean {
  return view.getUint32(4, true) === lo && view.getUint32(8, true) === hi;
}

/** A copy of the envelope's tag hashes. */
export function envelopeHashes(view: DataView): number[] {
  const n = 2 * view.getUint16(2, true);
  const hashes: number[] = [];
  for (let i = 0; i < n; i++) hashes.push(view.getUint32(HEAD + 4 * i, true));
  return hashes;
}

/** The envelope in `buf[0..len)`, or `undefined` when those bytes are not a whole one. */
export function readEnvelope(buf: Uint8Array, len: number): Envelope | undefined {
  const view = new DataView(buf.buffer, buf.byteOffset, len);
  const offset = envelopeOffset(buf, view, len);
  if (offset < 0) return undefined;
  return {
    offset,
    promised: envelopePromised(buf),
    nonceLo: view.getUint32(4, true),
    nonceHi: view.getUint32(8, true),
    at: envelopeAt(view),
    hashes: envelopeHashes(view),
  };
}
