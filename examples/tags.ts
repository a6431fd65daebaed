/**
 * Tags: an entry carries the tags that the `tags` option gives for its arguments, plus those
 * its computation adds with `cacheContext().tag()`; `invalidateTags()` makes every entry
 * carrying one of them a miss, in every cache of the process, without scanning anything.
 *
 * $ deno run --allow-ffi --allow-env --allow-read examples/tags.ts
 *
 * @module
 */

import assert from "node:assert/strict";
import { cache, cacheContext, invalidateTags } from "../mod.ts"; // jsr:@warp/cache

interface Post {
  id: number;
  author: number;
  title: string;
}
const db: Post[] = [
  { id: 1, author: 7, title: "SIEVE" },
  { id: 2, author: 7, title: "S3-FIFO" },
  { id: 3, author: 9, title: "W-TinyLFU" },
];
let queries = 0;

// Each post carries `post:<id>` (from the option) and `user:<author>` (added once known).
const post = cache({ tags: (id: number) => [`post:${id}`] })((id: number): Post => {
  queries++;
  const p = db.find((x) => x.id === id)!;
  cacheContext()?.tag(`user:${p.author}`);
  return { ...p };
});
// A listing in another cache carries the author's tag too.
const postsBy = cache({ tags: (author: number) => [`user:${author}`] })(
  (author: number): string[] => {
    queries++;
    return db.filter((x) => x.author === author).map((x) => x.title);
  },
);

for (let round = 0; round < 2; round++) { // the second round: all hits
  for (const id of [1, 2, 3]) post(id);
  postsBy(7);
}
assert.equal(queries, 4);

// User 7 renames a post: every entry of user 7, in both caches, is a miss from now on.
db[1]!.title = "S3-FIFO, revised";
invalidateTags("user:7");
assert.equal(post(2).title, "S3-FIFO, revised");
assert.deepEqual(postsBy(7), ["SIEVE", "S3-FIFO, revised"]);
post(3); // user 9's post: still a hit
assert.equal(queries, 6);

invalidateTags("post:3");
post(3);
assert.equal(queries, 7);
console.log(post.cacheInfo(), postsBy.cacheInfo());
