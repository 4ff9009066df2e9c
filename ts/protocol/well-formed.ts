/**
 * Checks on a request frame that the schemas cannot make (docs/protocol.md "Envelope"):
 * objects and arrays nest at most MAX_NESTING_DEPTH levels, and every string — keys
 * included, at any depth — is well-formed: no lone surrogate in JSON (`"\ud800"` would
 * otherwise reach the store as U+FFFD, so `"\ud800"` and `"\udfff"` would be one id), valid
 * UTF-8 in MessagePack (which msgpackr would also turn into U+FFFD). Browser-safe, no zod.
 *
 * - checkDecoded walks a value JSON.parse produced (V8's JSON.parse is not recursive, so a
 *   deep frame parses; this walk stops at the limit instead of recursing further).
 * - scanMessagePack walks MessagePack bytes *before* msgpackr decodes them (its decoder is
 *   recursive and overflows the stack at a few thousand levels), without recursion and
 *   without allocating except for an error's path.
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

/**
 * The first problem in a decoded (JSON) value, or null. `depth` is the nesting level of
 * `value` itself (the envelope object is level 1).
 */
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
  /** The current map key: its bytes (start, end) for a string key, or a number. */
  key: Segment | [number, number];
}

/**
 * The first problem in a MessagePack value (one value filling `bytes`), or null. Throws
 * MalformedMessagePack when the bytes are truncated, have trailing data or use the reserved
 * byte 0xC1 (the caller answers `invalid_json`).
 */
export function scanMessagePack(bytes: Uint8Array, maxDepth: number = MAX_NESTING_DEPTH): FrameProblem | null {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const end = bytes.byteLength;
  const stack: Level[] = [];
  let pos = 0;
  const need = (n: number): void => {
    if (pos + n > end) throw new MalformedMessagePack('truncated');
  };
  const uint = (n: 1 | 2 | 4): number => {
    need(n);
    const v = n === 1 ? view.getUint8(pos) : n === 2 ? view.getUint16(pos) : view.getUint32(pos);
    pos += n;
    return v;
  };
  const pathOf = (): string =>
    formatPath(
      stack.map((l, i) => {
        // The item being read: not counted yet at the top level, already counted below it.
        if (!l.map) return i === stack.length - 1 ? l.read : l.read - 1;
        const k = l.key;
        return Array.isArray(k) ? lenientUtf8.decode(bytes.subarray(k[0], k[1])) : k;
      }),
    );
  const envelope: { type?: string; id?: string | number } = {};
  const problem = (path: string, rule: string): FrameProblem => ({ path, rule, ...envelope });
  const topKeyIs = (name: string): boolean => {
    const k = stack[0]?.key;
    return stack.length === 1 && Array.isArray(k) && k[1] - k[0] === name.length && lenientUtf8.decode(bytes.subarray(k[0], k[1])) === name;
  };
  let done = false;
  while (!done) {
    // Where this item sits: a map key, a map value or an array element.
    const top = stack[stack.length - 1];
    const isKey = top !== undefined && top.map && top.read % 2 === 0;
    need(1);
    const b = bytes[pos++]!;
    let container = -1; // items of a new map (×2) or array
    let isMap = false;
    let strLen = -1;
    let skip = 0;
    let scalarKey: number | undefined;
    if (b <= 0x7f) scalarKey = b;
    else if (b <= 0x8f) [container, isMap] = [(b & 0x0f) * 2, true];
    else if (b <= 0x9f) container = b & 0x0f;
    else if (b <= 0xbf) strLen = b & 0x1f;
    else if (b >= 0xe0) scalarKey = b - 0x100;
    else {
      switch (b) {
        case 0xc0: case 0xc2: case 0xc3: break; // nil, false, true
        case 0xc1: throw new MalformedMessagePack('reserved byte 0xc1');
        case 0xc4: skip = uint(1); break; // bin 8/16/32
        case 0xc5: skip = uint(2); break;
        case 0xc6: skip = uint(4); break;
        case 0xc7: skip = uint(1) + 1; break; // ext 8/16/32: length, type, data
        case 0xc8: skip = uint(2) + 1; break;
        case 0xc9: skip = uint(4) + 1; break;
        case 0xca: skip = 4; break; // float 32/64
        case 0xcb: skip = 8; break;
        case 0xcc: scalarKey = uint(1); break; // uint 8/16/32/64
        case 0xcd: scalarKey = uint(2); break;
        case 0xce: scalarKey = uint(4); break;
        case 0xcf: skip = 8; break;
        case 0xd0: skip = 1; break; // int 8/16/32/64
        case 0xd1: skip = 2; break;
        case 0xd2: skip = 4; break;
        case 0xd3: skip = 8; break;
        case 0xd4: skip = 2; break; // fixext 1/2/4/8/16 (type + data)
        case 0xd5: skip = 3; break;
        case 0xd6: skip = 5; break;
        case 0xd7: skip = 9; break;
        case 0xd8: skip = 17; break;
        case 0xd9: strLen = uint(1); break; // str 8/16/32
        case 0xda: strLen = uint(2); break;
        case 0xdb: strLen = uint(4); break;
        case 0xdc: container = uint(2); break; // array 16/32
        case 0xdd: container = uint(4); break;
        case 0xde: [container, isMap] = [uint(2) * 2, true]; break; // map 16/32
        case 0xdf: [container, isMap] = [uint(4) * 2, true]; break;
      }
    }
    if (isKey) top.key = scalarKey === undefined ? '?' : String(scalarKey);
    if (strLen >= 0) {
      need(strLen);
      if (isKey) top.key = [pos, pos + strLen];
      if (!validUtf8(bytes, pos, pos + strLen)) {
        return problem(pathOf(), isKey ? 'key must be valid UTF-8' : 'must be valid UTF-8');
      }
      if (!isKey && (topKeyIs('type') || topKeyIs('id'))) {
        envelope[topKeyIs('type') ? 'type' : 'id'] = lenientUtf8.decode(bytes.subarray(pos, pos + strLen));
      }
      pos += strLen;
    } else if (skip > 0) {
      need(skip);
      pos += skip;
    } else if (scalarKey !== undefined && !isKey && topKeyIs('id')) {
      envelope.id = scalarKey;
    }
    if (container >= 0 && stack.length + 1 > maxDepth) return problem(pathOf(), NESTED(maxDepth));
    if (top !== undefined) top.read++;
    if (container >= 0) {
      stack.push({ left: container, map: isMap, read: 0, key: '?' });
    } else if (top !== undefined) {
      top.left--;
    } else {
      done = true; // a scalar at the top level
    }
    // Close every container that is complete.
    for (;;) {
      const l = stack[stack.length - 1];
      if (l === undefined || l.left > 0) break;
      stack.pop();
      const parent = stack[stack.length - 1];
      if (parent === undefined) {
        done = true;
        break;
      }
      parent.left--;
    }
  }
  if (pos !== end) throw new MalformedMessagePack('trailing data');
  return null;
}
