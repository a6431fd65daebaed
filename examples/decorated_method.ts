/**
 * A decorated method (a standard TC39 decorator, not `experimentalDecorators`), and its
 * controls through `cacheControls()`: a decorator cannot change a method's declared type,
 * so `users.find.cacheInfo()` does not type-check, and `cacheControls(users.find)` gives the
 * same function typed with its controls.
 *
 * $ deno run --allow-ffi --allow-env --allow-read examples/decorated_method.ts
 *
 * @module
 */

import assert from "node:assert/strict";
import { cache, cacheControls } from "../mod.ts"; // jsr:@warp/cache

interface User {
  id: number;
  name: string;
}

class Users {
  queries = 0;

  // One cache for the method, shared by every instance (keyed on `this` and the arguments).
  @cache({ maxSize: 128, ttl: 60_000 })
  async find(id: number): Promise<User> {
    this.queries++;
    await new Promise((r) => setTimeout(r, 10)); // a database round trip
    return { id, name: `user ${id}` };
  }
}

const users = new Users();
const a = await users.find(1); // miss
const b = await users.find(1); // hit: the very same object
assert.equal(a, b);
assert.equal(users.queries, 1);

const find = cacheControls(users.find);
console.log(find.cacheInfo()); // { hits: 1, misses: 1, maxSize: 128, currentSize: 1 }
assert.deepEqual(find.cacheInfo(), { hits: 1, misses: 1, maxSize: 128, currentSize: 1 });

// The entry controls take the method's arguments; a method keys on `this`, so they need the
// instance as `this`.
console.log(find.cacheGet.call(users, 1)); // { id: 1, name: "user 1" }: counts nothing
find.cacheSet.call(users, { id: 2, name: "primed" }, 2); // the next find(2) is a hit
assert.equal((await users.find(2)).name, "primed");
assert.equal(find.cacheDelete.call(users, 1), true);
assert.equal(find.cacheGet.call(users, 1), undefined);
assert.equal(users.queries, 1);

// Another instance is another key: its own miss.
const other = new Users();
await other.find(1);
assert.equal(other.queries, 1);
console.log(find.cacheInfo());
