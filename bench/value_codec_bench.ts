/**
 * Measures the value codec (src/codec/value_codec.ts) against the codec it replaced and
 * the structured serializers it was chosen among: a shared hit decodes, a miss encodes,
 * so each is timed alone (`decode ...`, `encode ...` groups), besides the round trips of
 * the fast paths.
 *
 * - `value_codec`: this module (tag 13, the binary item codec, for structured values).
 * - `previous codec`: the module as it was before tag 13 (`tests/fixtures/value_codec_v1.ts`:
 *   `JSON` + `TextEncoder` for small JSON-exact trees, devalue for the rest).
 * - `msgpackr` (records on, its native string decoder where it loads): what lmdb stores
 *   values with; it loses `-0`, `undefined` properties and holes, so it is a reference
 *   for speed, not a candidate. It resolves through `npm:` here now.
 * - `JSON + TextEncoder`, `@msgpack/msgpack`: plain data only (lower bounds).
 * - `devalue + TextEncoder`, `node:v8`: exact or nearly (see the module doc of the codec).
 *
 * Run: `deno bench -A bench/value_codec_bench.ts`.
 *
 * @module
 */

import * as v8 from "node:v8";
import { Decoder, Encoder } from "npm:@msgpack/msgpack@^3.1.3";
import { Packr } from "npm:msgpackr@1.12.1";
import { parse, stringify } from "npm:devalue@^6.0.3";
import { decodeValue, decodeValueIn, encodeValue } from "../src/codec/value_codec.ts";
import * as previous from "../tests/fixtures/value_codec_v1.ts";

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder("utf-8", { ignoreBOM: true });
const scratch = new Uint8Array(1 << 22);
const msgpackEncoder = new Encoder();
const msgpackDecoder = new Decoder();
const packr = new Packr({ useRecords: true, structuredClone: true });

/** Keeps results alive so that the work is not optimised away. */
export let sink: unknown;

/** The shared benches' row (`bench/_workload.ts`, `structured`). */
const row = { id: 42_042, name: "user42", active: true, score: 10.5, tags: ["a", "b"] };
const medium = {
  users: Array.from({ length: 20 }, (_, i) => ({
    id: i,
    name: `user${i}`,
    email: `u${i}@example.com`,
    score: i * 1.5,
    roles: ["r1", "r2"],
  })),
  meta: { page: 1, total: 20, query: "select" },
};
const rich = {
  when: new Date(1_700_000_000_000),
  ids: new Set([1, 2, 3]),
  index: new Map([["a", 1], ["b", 2]]),
  big: 12_345_678_901_234_567_890n,
  samples: new Float64Array([1, 2, 3]),
};

/** Encodes to bytes and returns a copy, as the store keeps them. */
function bytesOf(text: string): Uint8Array {
  const { written } = textEncoder.encodeInto(text, scratch);
  return scratch.slice(0, written);
}

interface Candidate {
  name: string;
  /** Whether it keeps the types of `rich` (else it runs on plain data only). */
  rich: boolean;
  encode(value: unknown): Uint8Array;
  decode(bytes: Uint8Array): unknown;
}

const candidates: Candidate[] = [
  {
    name: "value_codec",
    rich: true,
    encode: (v) => encodeValue(v),
    decode: (b) => decodeValue(b),
  },
  {
    name: "previous codec (JSON / devalue)",
    rich: true,
    encode: (v) => previous.encodeValue(v),
    decode: (b) => previous.decodeValue(b),
  },
  {
    name: "msgpackr (records)",
    rich: true,
    encode: (v) => packr.pack(v),
    decode: (b) => packr.unpack(b),
  },
  {
    name: "devalue + TextEncoder",
    rich: true,
    encode: (v) => bytesOf(stringify(v)),
    decode: (b) => parse(textDecoder.decode(b)),
  },
  {
    name: "node:v8",
    rich: true,
    encode: (v) => v8.serialize(v),
    decode: (b) => v8.deserialize(b),
  },
  {
    name: "JSON + TextEncoder",
    rich: false,
    encode: (v) => bytesOf(JSON.stringify(v)),
    decode: (b) => JSON.parse(textDecoder.decode(b)),
  },
  {
    name: "@msgpack/msgpack",
    rich: false,
    encode: (v) => msgpackEncoder.encode(v),
    decode: (b) => msgpackDecoder.decode(b),
  },
];

const values: Record<string, unknown> = { row, medium, rich };
for (const [label, value] of Object.entries(values)) {
  for (const c of candidates) {
    if (label === "rich" && !c.rich) continue;
    const bytes = c.encode(value).slice();
    Deno.bench({
      group: `decode ${label}`,
      name: c.name,
      baseline: c.name === "value_codec",
      fn: () => {
        sink = c.decode(bytes);
      },
    });
    Deno.bench({
      group: `encode ${label}`,
      name: c.name,
      baseline: c.name === "value_codec",
      fn: () => {
        sink = c.encode(value);
      },
    });
  }
}

// The decode of a shared hit: from the store's reused output buffer, with its DataView.
{
  const out = new Uint8Array(4096);
  const view = new DataView(out.buffer);
  const encoded = encodeValue(row);
  out.set(encoded);
  const len = encoded.length;
  Deno.bench({
    group: "decode row",
    name: "value_codec: decodeValueIn (the shared hit)",
    fn: () => {
      sink = decodeValueIn(out, len, view);
    },
  });
}

const fast: Record<string, unknown> = {
  "number": 3.25,
  "short string": "user:1234",
  "1 KiB string": "abcdefgh".repeat(128),
  "string with a lone surrogate": "ab\ud800cd".repeat(20),
  "1 KiB Uint8Array": new Uint8Array(1024).fill(7),
  "array of 10 numbers": Array.from({ length: 10 }, (_, i) => i * 1.5),
  "array of 10 short strings": Array.from({ length: 10 }, (_, i) => `s${i}`),
};
for (const [name, value] of Object.entries(fast)) {
  Deno.bench({
    group: "round trips of the fast paths",
    name,
    baseline: name === "number",
    fn: () => {
      sink = decodeValue(encodeValue(value));
    },
  });
}
