/**
 * The byte budget of one reply: `list` and `retrieve` stop adding memories once their
 * estimated size reaches it (docs/protocol.md; `maxReplyBytes`, default 1 MiB). Without it a
 * `list` of 1,000 memories of 64 KiB of control characters was a 393 MB reply: seconds of
 * JSON encoding on the event loop and, for a client that does not read, all of it in the
 * send buffer.
 *
 * The estimate is the size of the memory's JSON (the larger of the two encodings), computed
 * from the string lengths, not by serialising: cheap enough to run on every row, exact for
 * strings and an upper bound for the rest. The store is given the same budget (`maxBytes`)
 * and stops building rows just past it, counting their raw bytes (never more than this
 * estimate), so the rows it returns always reach the budget here when it cut them.
 */
import type { NativeMemory } from '../native.js';

/** Keys, punctuation, namespace-free numbers and the ISO timestamps of one wire memory: an upper bound. */
const MEMORY_OVERHEAD_BYTES = 200;
/** One float32 of an embedding in JSON: up to 22 characters as a double (-0.0012345678918063641) and a comma. */
export const JSON_FLOAT_BYTES = 24;
/** The characters JSON.stringify escapes or encodes as more than their UTF-8: controls, `"`, `\`, surrogates. */
// eslint-disable-next-line no-control-regex
const SPECIAL = /[\u0000-\u001f"\\\ud800-\udfff]/;

/** Bytes of `JSON.stringify(s)` (quotes included), without building it. */
export function jsonStringBytes(s: string): number {
  if (!SPECIAL.test(s)) return Buffer.byteLength(s, 'utf8') + 2;
  let n = 2;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20) n += c === 8 || c === 9 || c === 10 || c === 12 || c === 13 ? 2 : 6;
    else if (c === 0x22 || c === 0x5c) n += 2;
    else if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else if (c >= 0xd800 && c <= 0xdfff) n += 6; // a lone surrogate: \udXXX
    else n += 3;
  }
  return n;
}

/** Estimated bytes of one memory in a reply (JSON, the larger encoding). */
export function memoryReplyBytes(m: NativeMemory, includeEmbedding: boolean): number {
  let n = MEMORY_OVERHEAD_BYTES + jsonStringBytes(m.id) + jsonStringBytes(m.namespace) + jsonStringBytes(m.text);
  // Stored metadata is the JSON text the reply re-serialises (the same bytes).
  n += m.metadata ? Buffer.byteLength(m.metadata, 'utf8') : 2;
  for (const a of m.associations) n += jsonStringBytes(a) + 1;
  if (includeEmbedding && m.embedding) n += m.embedding.length * JSON_FLOAT_BYTES;
  return n;
}

/**
 * The longest prefix of `rows` that fits in `budget` bytes: always at least one row (a
 * client must be able to make progress; one memory is bounded by the store's limits).
 */
export function fittingPrefix(rows: readonly NativeMemory[], includeEmbedding: boolean, budget: number): number {
  let bytes = 0;
  for (let i = 0; i < rows.length; i++) {
    bytes += memoryReplyBytes(rows[i]!, includeEmbedding);
    if (bytes > budget && i > 0) return i;
  }
  return rows.length;
}
