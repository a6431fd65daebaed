/**
 * Measures the value codec (src/codec/value_codec.ts): its fast paths, and the structured
 * serializers it was chosen among. Each case is a round trip: encode to bytes, decode.
 *
 * Run: `deno bench -A bench/value_codec_bench.ts`. `npm:msgpackr` and `npm:cbor-x` are
 * left out: they do not resolve through `npm:` here (per-platform native builds).
 *
 * @module
 */

import * as v8 from "node:v8";
import { Decoder, Encoder } from "npm:@msgpack/msgpack@^3.1.3";
import { decode as cborDecode, encode as cborEncode } from "npm:cbor2@^2.3.0";
import { parse, stringify } from "npm:devalue@^6.0.3";
import * as ungap from "npm:@ungap/structured-clone@^1.4.0";
import { decodeValue, encodeValue } from "../src/codec/value_codec.ts";

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder("utf-8", { ignoreBOM: true });
const scratch = new Uint8Array(1 << 22);
const msgpackEncoder = new Encoder();
const msgpackDecoder = new Decoder();
const ungapSerialize = ungap.serialize as (value: unknown) => unknown;
const ungapDeserialize = ungap.deserialize as (records: unknown) => unknown;

/** Keeps results alive so that the work is not optimised away. */
export let sink: unknown;

/** Writes `text` to bytes and reads it back, as the store would. */
function viaBytes(text: string): string {
  const { written } = textEncoder.encodeInto(text, scratch);
  return textDecoder.decode(scratch.subarray(0, written));
}

const small = { id: 42, name: "alice", active: true, score: 3.5, tags: ["a", "b"] };
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

const structured: Record<string, unknown> = { small, medium, rich };
for (const [group, value] of Object.entries(structured)) {
  const plain = group !== "rich";
  Deno.bench({
    group,
    name: "value_codec (devalue)",
    baseline: true,
    fn: () => {
      sink = decodeValue(encodeValue(value));
    },
  });
  Deno.bench({
    group,
    name: "devalue + TextEncoder",
    fn: () => {
      sink = parse(viaBytes(stringify(value)));
    },
  });
  Deno.bench({
    group,
    name: "node:v8",
    fn: () => {
      sink = v8.deserialize(v8.serialize(value));
    },
  });
  Deno.bench({
    group,
    name: "@ungap/structured-clone + JSON",
    fn: () => {
      sink = ungapDeserialize(JSON.parse(viaBytes(JSON.stringify(ungapSerialize(value)))));
    },
  });
  Deno.bench({
    group,
    name: "cbor2",
    fn: () => {
      sink = cborDecode(cborEncode(value));
    },
  });
  if (plain) {
    // Neither keeps the types of `rich`; shown as lower bounds on plain data.
    Deno.bench({
      group,
      name: "@msgpack/msgpack (no extensions)",
      fn: () => {
        sink = msgpackDecoder.decode(msgpackEncoder.encode(value));
      },
    });
    Deno.bench({
      group,
      name: "JSON + TextEncoder",
      fn: () => {
        sink = JSON.parse(viaBytes(JSON.stringify(value)));
      },
    });
  }
}

const fast: Record<string, unknown> = {
  "number": 3.25,
  "short string": "user:1234",
  "1 KiB string": "abcdefgh".repeat(128),
  "string with a lone surrogate": "ab\ud800cd".repeat(20),
  "1 KiB Uint8Array": new Uint8Array(1024).fill(7),
  "flat array of 10 numbers": Array.from({ length: 10 }, (_, i) => i * 1.5),
  "flat array of 10 short strings": Array.from({ length: 10 }, (_, i) => `s${i}`),
};
for (const [name, value] of Object.entries(fast)) {
  Deno.bench({
    group: "fast paths",
    name,
    baseline: name === "number",
    fn: () => {
      sink = decodeValue(encodeValue(value));
    },
  });
}
Deno.bench({
  group: "fast paths",
  name: "flat array of 10 numbers through devalue (for comparison)",
  fn: () => {
    sink = parse(viaBytes(stringify(fast["flat array of 10 numbers"])));
  },
});
