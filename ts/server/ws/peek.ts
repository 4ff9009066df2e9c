/**
 * A frame's `type` and `id` without parsing it: for refusals made before decoding (rate
 * limit), whose error reply should still name the request. Only the first PEEK_BYTES bytes
 * are looked at, only the top level of the envelope, and anything unusual (escapes in a
 * string, a nested value before the fields) ends the look: the cost is bounded whatever the
 * frame holds, and a frame that does not show its fields early simply gets a reply without them.
 */
import type { RequestId } from '../../protocol/index.js';

/** How far into a frame the peek looks. */
export const PEEK_BYTES = 512;

export interface Peeked {
  type?: string;
  id?: RequestId;
}

const utf8 = new TextDecoder('utf-8', { fatal: false });

/** `type` and `id` of a JSON (text) or MessagePack (binary) request, when they show early. */
export function peekEnvelope(message: ArrayBuffer, isBinary: boolean): Peeked {
  const bytes = new Uint8Array(message, 0, Math.min(message.byteLength, PEEK_BYTES));
  const out: Peeked = {};
  try {
    if (isBinary) peekMsgpack(bytes, out);
    else peekJson(bytes, out);
  } catch {
    // A truncated or odd prefix: keep what was found.
  }
  return out;
}

function take(out: Peeked, key: string, value: unknown): void {
  if (key === 'type' && typeof value === 'string') out.type = value;
  else if (key === 'id' && ((typeof value === 'string') || (typeof value === 'number' && Number.isFinite(value)))) out.id = value;
}

// ------------------------------------------------------------------ JSON

/** 0-9 - + . e E */
const isNumberByte = (c: number): boolean => (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2b || c === 0x2e || c === 0x65 || c === 0x45;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

function peekJson(b: Uint8Array, out: Peeked): void {
  let i = 0;
  const ws = (): void => {
    while (i < b.length && (b[i] === 0x20 || b[i] === 0x09 || b[i] === 0x0a || b[i] === 0x0d)) i++;
  };
  /** A string without escapes starting at the quote at i; undefined (stop) otherwise. */
  const str = (): string | undefined => {
    if (b[i] !== QUOTE) return undefined;
    const start = ++i;
    while (i < b.length && b[i] !== QUOTE) {
      if (b[i] === BACKSLASH) return undefined;
      i++;
    }
    if (i >= b.length) return undefined;
    return utf8.decode(b.subarray(start, i++));
  };
  ws();
  if (b[i] !== 0x7b) return; // '{'
  i++;
  while (i < b.length && (out.type === undefined || out.id === undefined)) {
    ws();
    const key = str();
    if (key === undefined) return;
    ws();
    if (b[i] !== 0x3a) return; // ':'
    i++;
    ws();
    const c = b[i];
    if (c === QUOTE) {
      const v = str();
      if (v === undefined) return;
      take(out, key, v);
    } else if (c === 0x2d || (c !== undefined && c >= 0x30 && c <= 0x39)) {
      const start = i;
      while (i < b.length && isNumberByte(b[i]!)) i++;
      if (i >= b.length) return; // the number may go on past the window
      take(out, key, Number(utf8.decode(b.subarray(start, i))));
    } else {
      return; // an object, array or literal: stop rather than walk it
    }
    ws();
    if (b[i] !== 0x2c) return; // ','
    i++;
  }
}

// ------------------------------------------------------------------ MessagePack

function peekMsgpack(b: Uint8Array, out: Peeked): void {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let i = 0;
  let n: number;
  const h = b[i++]!;
  if (h >= 0x80 && h <= 0x8f) n = h & 0x0f;
  else if (h === 0xde) {
    n = view.getUint16(i);
    i += 2;
  } else if (h === 0xdf) {
    n = view.getUint32(i);
    i += 4;
  } else return;
  const str = (len: number): string => {
    if (i + len > b.length) throw new RangeError('past the window');
    const s = utf8.decode(b.subarray(i, i + len));
    i += len;
    return s;
  };
  /** A scalar value at i (string or number), or undefined: stop. */
  const scalar = (): string | number | undefined => {
    const t = b[i++]!;
    if (t <= 0x7f) return t;
    if (t >= 0xe0) return t - 0x100;
    if (t >= 0xa0 && t <= 0xbf) return str(t & 0x1f);
    switch (t) {
      case 0xd9: return str(b[i++]!);
      case 0xda: { const len = view.getUint16(i); i += 2; return str(len); }
      case 0xcc: return b[i++]!;
      case 0xcd: { const v = view.getUint16(i); i += 2; return v; }
      case 0xce: { const v = view.getUint32(i); i += 4; return v; }
      case 0xd0: return view.getInt8(i++);
      case 0xd1: { const v = view.getInt16(i); i += 2; return v; }
      case 0xd2: { const v = view.getInt32(i); i += 4; return v; }
      case 0xca: { const v = view.getFloat32(i); i += 4; return v; }
      case 0xcb: { const v = view.getFloat64(i); i += 8; return v; }
      default: return undefined;
    }
  };
  for (let k = 0; k < n && (out.type === undefined || out.id === undefined); k++) {
    const key = scalar();
    if (typeof key !== 'string') return;
    const value = scalar();
    if (value === undefined) return;
    take(out, key, value);
  }
}

// ------------------------------------------------------------------ plain requests

/** The longest frame the plain-request scan takes (a plain `{"type","id"}` is far shorter). */
export const PLAIN_MAX_BYTES = 128;

/**
 * The command names as bytes, so that a frame's `type` is matched to the table's own string
 * (interned, its hash computed once) without decoding a new string per request.
 */
export class CommandNames {
  private readonly names: Array<{ name: string; bytes: Uint8Array }> = [];
  constructor(names: Iterable<string>) {
    for (const name of names) {
      // Only names that are plain ASCII (no quote, backslash or control byte) read the same raw and parsed.
      if (/^[\x20-\x21\x23-\x5b\x5d-\x7e]+$/.test(name)) this.names.push({ name, bytes: new TextEncoder().encode(name) });
    }
  }
  /** The name spelled by b[start, end), or undefined. */
  match(b: Uint8Array, start: number, end: number): string | undefined {
    const len = end - start;
    outer: for (const { name, bytes } of this.names) {
      if (bytes.length !== len) continue;
      for (let j = 0; j < len; j++) if (b[start + j] !== bytes[j]) continue outer;
      return name;
    }
    return undefined;
  }
}

/**
 * The request of a text frame that is exactly `{"type":"<command>"}`, `{"type":"<command>","id":<id>}`
 * or `{"id":<id>,"type":"<command>"}` — no whitespace, no other field, `<command>` one of
 * `names`, `<id>` an integer of at most 15 digits (no leading zero) or a string of printable
 * ASCII without quote or backslash — else null, and the frame takes the full decode.
 *
 * Written by hand because it is the hot path: `stats` and health checks arrive at hundreds
 * of thousands a second, and for these frames JSON.parse, the well-formedness walk and the
 * envelope checks cost more than the command. Every frame accepted here decodes to exactly
 * the request `decodeRequest` gives (the forms above leave JSON.parse no choice: ASCII only,
 * no escapes, exact integers, no duplicate keys).
 */
export function plainRequest(message: ArrayBuffer, names: CommandNames): { type: string; id?: RequestId } | null {
  const n = message.byteLength;
  if (n > PLAIN_MAX_BYTES || n < 10) return null;
  const b = new Uint8Array(message);
  if (b[0] !== 0x7b || b[n - 1] !== 0x7d || b[1] !== QUOTE) return null;
  let type: string | undefined;
  let id: RequestId | undefined;
  let i = 1;
  // At most two fields: `type` then optionally `id`, or `id` then `type`.
  for (let field = 0; field < 2; field++) {
    if (b[i] !== QUOTE) return null;
    if (b[i + 1] === 0x74 /* t */ && b[i + 2] === 0x79 && b[i + 3] === 0x70 && b[i + 4] === 0x65 && b[i + 5] === QUOTE && b[i + 6] === 0x3a) {
      if (type !== undefined) return null;
      i += 7;
      if (b[i] !== QUOTE) return null;
      const start = ++i;
      while (i < n && b[i] !== QUOTE) i++;
      type = names.match(b, start, i);
      if (type === undefined) return null;
      i++;
    } else if (b[i + 1] === 0x69 /* i */ && b[i + 2] === 0x64 && b[i + 3] === QUOTE && b[i + 4] === 0x3a) {
      if (id !== undefined) return null;
      i += 5;
      const end = plainId(b, i, n);
      if (end < 0) return null;
      id = plainIdValue;
      i = end;
    } else return null;
    if (i === n - 1) break; // the closing brace
    if (b[i] !== 0x2c || field === 1) return null; // ','
    i++;
  }
  if (type === undefined || i !== n - 1) return null;
  return id === undefined ? { type } : { type, id };
}

/** The value read by the last successful plainId (no allocation of a result pair per call). */
let plainIdValue: RequestId = 0;

/** Reads an id at b[i]: returns the index after it (its value in plainIdValue), or -1. */
function plainId(b: Uint8Array, i: number, n: number): number {
  if (b[i] === QUOTE) {
    i++;
    let s = '';
    for (; i < n; i++) {
      const c = b[i]!;
      if (c === QUOTE) break;
      if (c < 0x20 || c > 0x7e || c === BACKSLASH) return -1;
      s += String.fromCharCode(c);
    }
    if (i >= n) return -1;
    plainIdValue = s;
    return i + 1;
  }
  const negative = b[i] === 0x2d;
  if (negative) i++;
  const start = i;
  let v = 0;
  while (i < n && b[i]! >= 0x30 && b[i]! <= 0x39) v = v * 10 + (b[i++]! - 0x30);
  const digits = i - start;
  // JSON's integers: no leading zero; 15 digits stay exact in a double. A fraction or exponent
  // (or anything else) ends the scan here and the frame takes the full decode.
  if (digits === 0 || digits > 15 || (digits > 1 && b[start] === 0x30)) return -1;
  if (b[i] !== 0x2c && b[i] !== 0x7d) return -1;
  plainIdValue = negative ? -v : v;
  return i;
}
