"""Replays traces through libCacheSim's eviction policies and prints their miss counts.

Run by `bench/_libcachesim.ts` (the simulator, `bench/sim.ts`) and by
`scripts/record_libcachesim.ts` (the fixture of `tests/eviction_quality_test.ts`) with the
interpreter of `bench/.venv`, where PyPI `libcachesim` is installed.

Usage: `python bench/libcachesim_replay.py SPEC.json`, where the spec is
`{"traces": [{"name", "path", "capacities": [int]}], "policies": [str]}`; each `path` is a
trace in libCacheSim's oracleGeneral binary format (24 bytes a request: u32 time, u64 id,
u32 size, i64 next access; little-endian), every size 1, so that a capacity counts objects.
Prints one JSON object: `{"version", "results": [{"trace", "policy", "capacity",
"requests", "misses"}]}`.

Each policy runs with libCacheSim's defaults (`S3FIFO`: small queue 10%, ghost 90%,
move-to-main threshold 2; `WTinyLFU`: 1% LRU window, SLRU main), through its C trace loop
(`process_trace`), which counts a miss for every request not found and inserts the object.
"""

import json
import sys
from importlib.metadata import version

import libcachesim as lcs

POLICIES = {
    "Sieve": lcs.Sieve,
    "LRU": lcs.LRU,
    "FIFO": lcs.FIFO,
    "S3FIFO": lcs.S3FIFO,
    "ARC": lcs.ARC,
    "WTinyLFU": lcs.WTinyLFU,
    "TwoQ": lcs.TwoQ,
}


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        spec = json.load(f)
    results = []
    for trace in spec["traces"]:
        for capacity in trace["capacities"]:
            for name in spec["policies"]:
                reader = lcs.TraceReader(trace["path"], lcs.TraceType.ORACLE_GENERAL_TRACE)
                cache = POLICIES[name](capacity)
                miss_ratio, _ = cache.process_trace(reader)
                requests = trace["requests"]
                results.append(
                    {
                        "trace": trace["name"],
                        "policy": name,
                        "capacity": capacity,
                        "requests": requests,
                        # process_trace returns 1 - hits / requests as a double: rounding
                        # recovers the exact count (requests is far below 2^52).
                        "misses": round(miss_ratio * requests),
                    }
                )
    json.dump({"version": version("libcachesim"), "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
