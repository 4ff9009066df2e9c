/**
 * Checks on a request frame that the schemas cannot make (docs/protocol.md "What a
 * request may contain"):
 * objects and arrays nest at most MAX_NESTING_DEPTH levels, and every string — keys
 * included, at any depth — is well-formed: no lone surrogate in JSON (`"\ud800"` would
 * otherwise reach the store as U+FFFD, so `"\ud800"` and `"\udfff"` would be one id), valid
 * UTF-8 in MessagePack (which msgpackr would also turn into U+FFFD). Browser-safe, no zod.
 *
 * - checkDecoded walks a value JSON.parse produced (V8's JSON.parse is not recursive, so a
 *   deep frame parses; this walk stops at the limit instead of recursing further).
 * - scanMessagePack walks MessagePack bytes *before* msgpackr decodes them (its decoder is
 *   recursive and overflows the stack at a few thousand levels), without recursion.
 */
import { MAX_NESTING_DEPTH } from './constants.js';

export interface FrameProblem {
  path: string;
  rule: string;
  /** The envelope's `type` and `id`, when they were read before the problem (for the error reply). */
  type?: string;
  id?: string | number;
}

type Segment = string | number;

/** `data.items[3].text` from path segments (keys with lone surrogates shown escaped). */
export function formatPath(segments: readonly Segment[]): string {
  let out = '';
  for (const s of segments) {
    if (typeof s === 'number') out += `[${s}]`;
    else out += (out === '' ? '' : '.') + printable(s);
  }
  return out === '' ? 'request' : out;
}

const isWellFormed = (s: string): boolean => (s as unknown as { isWellFormed(): boolean }).isWellFormed();

/** The string itself, or with each lone surrogate written as `\uXXXX` (error messages only). */
export function printable(s: string): string {
  if (isWellFormed(s)) return s;
  return s.replace(/\p{Cs}/gu, (c) => `\\u${c.charCodeAt(0).toString(16)}`);
}

const NESTED = (limit: number): string => `nested deeper than ${limit} levels of objects and arrays`;
const LONE_SURROGATE = 'must be well-formed Unicode (it holds a lone surrogate)';
const KEY_LONE_SURROGATE = 'key must be well-formed Unicode (it holds a lone surrogate)';

/** The first problem in a decoded (JSON) value, or null; `value` itself is level 1 (the envelope). */
export function checkDecoded(value: unknown, maxDepth: number = MAX_NESTING_DEPTH): FrameProblem | null {
  const path: Segment[] = [];
  const walk = (v: unknown, depth: number): string | null => {
    if (typeof v === 'string') return isWellFormed(v) ? null : LONE_SURROGATE;
    if (typeof v !== 'object' || v === null || ArrayBuffer.isView(v)) return null;
    if (depth > maxDepth) return NESTED(maxDepth);
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const x: unknown = v[i];
        if (typeof x === 'number') continue; // vectors: the common case, nothing to check
        path.push(i);
        const bad = walk(x, depth + 1);
        if (bad !== null) return bad;
        path.pop();
      }
      return null;
    }
    for (const k in v as Record<string, unknown>) {
      path.push(k);
      if (!isWellFormed(k)) return KEY_LONE_SURROGATE;
      const bad = walk((v as Record<string, unknown>)[k], depth + 1);
      if (bad !== null) return bad;
      path.pop();
    }
    return null;
  };
  const rule = walk(value, 1);
  return rule === null ? null : { path: formatPath(path), rule };
}

const fatalUtf8 = new TextDecoder('utf-8', { fatal: true });
const lenientUtf8 = new TextDecoder('utf-8');

function validUtf8(bytes: Uint8Array, start: number, end: number): boolean {
  let i = start;
  while (i < end && bytes[i]! < 0x80) i++; // ASCII: most strings, no decoder call
  if (i === end) return true;
  try {
    fatalUtf8.decode(bytes.subarray(i, end));
    return true;
  } catch {
    return false;
  }
}

/** Thrown by the scanner on bytes that are not one complete MessagePack value. */
export class MalformedMessagePack extends Error {}

interface Level {
  /** Items (map: keys and values) left to read at this level. */
  left: number;
  map: boolean;
  /** Items read so far. */
  read: number;
  /** The current map key: a string key's bytes [keyStart, keyEnd), or (keyStart -1) keyScalar. */
  keyStart: number;
  keyEnd: number;
  keyScalar: string;
}

/** One MessagePack item header, as readHeader reads it (one reused object: no allocation). */
interface Header {
  /** A container: its items (a map: keys and values); else -1. */
  items: number;
  isMap: boolean;
  /** A string: its byte length; else -1. */
  strLen: number;
  /** Bytes of payload to skip (bin, ext, floats, wide integers). */
  skip: number;
  /** An integer small enough to name a key or an id. */
  int: number | undefined;
}
const tok: Header = { items: -1, isMap: false, strLen: -1, skip: 0, int: undefined };

/** The big-endian unsigned integer of `n` bytes at `at`. */
function readUint(bytes: Uint8Array, at: number, n: number): number {
  if (at + n > bytes.byteLength) throw new MalformedMessagePack('truncated');
  let v = 0;
  for (let i = 0; i < n; i++) v = v * 256 + bytes[at + i]!;
  return v;
}

/** Reads the rest of the header whose first byte `b` was at `pos - 1` into `t`; returns the position after the header. */
function readHeader(bytes: Uint8Array, pos: number, b: number, t: Header): number {
  t.items = -1;
  t.isMap = false;
  t.strLen = -1;
  t.skip = 0;
  t.int = undefined;
  if (b <= 0x7f) t.int = b;
  else if (b <= 0x8f) {
    t.items = (b & 0x0f) * 2;
    t.isMap = true;
  } else if (b <= 0x9f) t.items = b & 0x0f;
  else if (b <= 0xbf) t.strLen = b & 0x1f;
  else if (b >= 0xe0) t.int = b - 0x100;
  else {
    switch (b) {
      case 0xc0: // nil, false, true
      case 0xc2:
      case 0xc3:
        break;
      case 0xc1:
        throw new MalformedMessagePack('reserved byte 0xc1');
      case 0xc4: // bin 8/16/32
        t.skip = readUint(bytes, pos, 1);
        return pos + 1;
      case 0xc5:
        t.skip = readUint(bytes, pos, 2);
        return pos + 2;
      case 0xc6:
        t.skip = readUint(bytes, pos, 4);
        return pos + 4;
      case 0xc7: // ext 8/16/32: length, type, data
        t.skip = readUint(bytes, pos, 1) + 1;
        return pos + 1;
      case 0xc8:
        t.skip = readUint(bytes, pos, 2) + 1;
        return pos + 2;
      case 0xc9:
        t.skip = readUint(bytes, pos, 4) + 1;
        return pos + 4;
      case 0xca: // float 32
      case 0xd2: // int 32
        t.skip = 4;
        break;
      case 0xcb: // float 64, uint 64, int 64
      case 0xcf:
      case 0xd3:
        t.skip = 8;
        break;
      case 0xcc: // uint 8/16/32
        t.int = readUint(bytes, pos, 1);
        return pos + 1;
      case 0xcd:
        t.int = readUint(bytes, pos, 2);
        return pos + 2;
      case 0xce:
        t.int = readUint(bytes, pos, 4);
        return pos + 4;
      case 0xd0: // int 8/16
        t.skip = 1;
        break;
      case 0xd1:
      case 0xd4: // fixext 1/2/4/8/16: type + data
        t.skip = 2;
        break;
      case 0xd5:
        t.skip = 3;
        break;
      case 0xd6:
        t.skip = 5;
        break;
      case 0xd7:
        t.skip = 9;
        break;
      case 0xd8:
        t.skip = 17;
        break;
      case 0xd9: // str 8/16/32
        t.strLen = readUint(bytes, pos, 1);
        return pos + 1;
      case 0xda:
        t.strLen = readUint(bytes, pos, 2);
        return pos + 2;
      case 0xdb:
        t.strLen = readUint(bytes, pos, 4);
        return pos + 4;
      case 0xdc: // array 16/32
        t.items = readUint(bytes, pos, 2);
        return pos + 2;
      case 0xdd:
        t.items = readUint(bytes, pos, 4);
        return pos + 4;
      case 0xde: // map 16/32
        t.items = readUint(bytes, pos, 2) * 2;
        t.isMap = true;
        return pos + 2;
      case 0xdf:
        t.items = readUint(bytes, pos, 4) * 2;
        t.isMap = true;
        return pos + 4;
    }
  }
  return pos;
}

/**
 * The first problem in a MessagePack value (one value filling `bytes`), or null. Throws
 * MalformedMessagePack when the bytes are truncated, have trailing data or use the reserved
 * byte 0xC1 (the caller answers `invalid_json`). It runs on every binary frame: it
 * allocates one object per container and decodes nothing unless it reports a problem.
 */
export function scanMessagePack(bytes: Uint8Array, maxDepth: number = MAX_NESTING_DEPTH): FrameProblem | null {
  const end = bytes.byteLength;
  const stack: Level[] = [];
  let pos = 0;
  // The envelope's `type` and `id` values (string: byte range), decoded only for an error.
  let typeStart = -1;
  let typeEnd = -1;
  let idStart = -1;
  let idEnd = -1;
  let idNumber: number | undefined;
  const decode = (start: number, stop: number): string => lenientUtf8.decode(bytes.subarray(start, stop));
  const problem = (rule: string): FrameProblem => {
    const path = formatPath(
      stack.map((l, i): Segment => {
        // The item being read: not counted yet at the top level, already counted below it.
        if (!l.map) return i === stack.length - 1 ? l.read : l.read - 1;
        return l.keyStart >= 0 ? decode(l.keyStart, l.keyEnd) : l.keyScalar;
      }),
    );
    const p: FrameProblem = { path, rule };
    if (typeStart >= 0) p.type = decode(typeStart, typeEnd);
    if (idStart >= 0) p.id = decode(idStart, idEnd);
    else if (idNumber !== undefined) p.id = idNumber;
    return p;
  };
  /** Whether the current map key of the envelope is `name` (ASCII). */
  const envelopeKeyIs = (name: string): boolean => {
    const l = stack[0]!;
    if (l.keyEnd - l.keyStart !== name.length || l.keyStart < 0) return false;
    for (let i = 0; i < name.length; i++) if (bytes[l.keyStart + i] !== name.charCodeAt(i)) return false;
    return true;
  };
  for (;;) {
    // Where this item sits: a map key, a map value or an array element.
    const top = stack.length > 0 ? stack[stack.length - 1]! : undefined;
    const isKey = top !== undefined && top.map && top.read % 2 === 0;
    if (pos >= end) throw new MalformedMessagePack('truncated');
    const b = bytes[pos++]!;
    pos = readHeader(bytes, pos, b, tok);
    const { items, isMap, strLen, skip, int } = tok;
    if (isKey) {
      top.keyStart = -1;
      top.keyScalar = int === undefined ? '?' : String(int);
    }
    if (strLen >= 0) {
      if (pos + strLen > end) throw new MalformedMessagePack('truncated');
      if (isKey) {
        top.keyStart = pos;
        top.keyEnd = pos + strLen;
      }
      if (!validUtf8(bytes, pos, pos + strLen)) return problem(isKey ? 'key must be valid UTF-8' : 'must be valid UTF-8');
      if (!isKey && stack.length === 1) {
        if (envelopeKeyIs('type')) [typeStart, typeEnd] = [pos, pos + strLen];
        else if (envelopeKeyIs('id')) [idStart, idEnd] = [pos, pos + strLen];
      }
      pos += strLen;
    } else if (skip > 0) {
      if (pos + skip > end) throw new MalformedMessagePack('truncated');
      pos += skip;
    } else if (int !== undefined && !isKey && stack.length === 1 && envelopeKeyIs('id')) {
      idNumber = int;
    }
    if (items >= 0 && stack.length + 1 > maxDepth) return problem(NESTED(maxDepth));
    if (top !== undefined) top.read++;
    if (items > 0) {
      stack.push({ left: items, map: isMap, read: 0, keyStart: -1, keyEnd: -1, keyScalar: '?' });
      continue;
    }
    // A scalar or an empty container: one item done; close every container now complete.
    if (top === undefined) break;
    top.left--;
    while (stack.length > 0 && stack[stack.length - 1]!.left === 0) {
      stack.pop();
      if (stack.length > 0) stack[stack.length - 1]!.left--;
    }
    if (stack.length === 0) break;
  }
  if (pos !== end) throw new MalformedMessagePack('trailing data');
  return null;
}
