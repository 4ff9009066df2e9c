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
