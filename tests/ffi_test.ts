// The symbol table of src/native/ffi.ts against the built library.
import assert from "node:assert/strict";
import { loadNative, symbols } from "../src/native/ffi.ts";
import { ABI_VERSION, NO_TTL } from "../src/native/_abi.ts";
import { candidates } from "../src/native/_library.ts";

const libraryCandidates = (): string[] => candidates().map((c) => c.path);

const lib = loadNative();

Deno.test({
  name: "loadNative() finds the built library",
  fn(): void {
    assert.notEqual(lib, null, `library not loaded; looked in ${libraryCandidates().join(", ")}`);
  },
});

Deno.test({
  name: "every declared symbol exists in the library, and the ABI version matches",
  fn(): void {
    const path = libraryCandidates().find((p) => {
      try {
        return Deno.statSync(p).isFile;
      } catch {
        return false;
      }
    });
    assert.ok(path, "a library file exists");
    // Open each symbol alone and required, so a missing one is an error naming it.
    for (const [name, def] of Object.entries(symbols)) {
      const { optional: _optional, ...required } = def as Deno.ForeignFunction & {
        optional?: boolean;
      };
      const iface: Deno.ForeignLibraryInterface = { [name]: required };
      const one: Deno.DynamicLibrary<Deno.ForeignLibraryInterface> = Deno.dlopen(path, iface);
      assert.equal(typeof one.symbols[name], "function", name);
      one.close();
    }
    assert.equal(lib!.warp_abi_version(), ABI_VERSION);
  },
});

Deno.test({
  name: "warp_last_error reports the reason of a refused call",
  fn(): void {
    assert.equal(lib!.warp_mem_new(1, NO_TTL, 99, 0), null);
    const buf = new Uint8Array(256);
    const n = lib!.warp_last_error(buf, buf.length);
    assert.match(new TextDecoder().decode(buf.subarray(0, n)), /unknown policy: 99/);
  },
});
