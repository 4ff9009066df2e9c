/**
 * Frame codec shared by servers, client and tests. Browser-safe: uses only
 * msgpackr, TextEncoder/TextDecoder and typed arrays.
 *
 * - Text frames carry JSON; binary frames carry the same envelope as MessagePack.
 * - Float32Array values encode as a plain number array in JSON and as a raw
 *   MessagePack `bin` of little-endian float32 bytes in MessagePack (msgpackr's
 *   own typed-array extension does not round-trip reliably and is unknown to
 *   other MessagePack implementations). On decode, a `bin` found under one of
 *   the VECTOR_KEYS (`embedding`, `embeddings`, `vector`, `vectors`, `query_embedding`)
 *   becomes a Float32Array again (a list of bins becomes Float32Array[]).
 * - Keys are data: `__proto__` (and `constructor`, `prototype`) stay own properties, as
 *   JSON.parse leaves them. msgpackr renames a `__proto__` key to `__proto_`, so a frame
 *   holding that key is decoded into Maps and rebuilt here with own properties.
 * - Requests (decodeRequest) are checked first (well-formed.ts): nesting depth, lone
 *   surrogates (JSON), invalid UTF-8 (MessagePack) → `invalid_request` naming the field.
 * - Decode decisions: a frame that does not parse is `invalid_json`; a frame that
 *   parses but is not a map/object (array, string, number, null) is
 *   `invalid_request` ("request: must be an object"); a missing or non-string
 *   `type` is `unknown_type`; an `id` that is neither string nor finite number,
 *   a non-object `data` or a non-string `timestamp` is `invalid_request`.
 */
import { Packr } from 'msgpackr';
import { ProtocolError, invalidJson, invalidRequest, unknownType } from './errors.js';
import { isRequestId, type Request, type RequestId } from './envelope.js';
import { MalformedMessagePack, checkDecoded, scanMessagePack, type FrameProblem } from './well-formed.js';

export const VECTOR_KEYS: ReadonlySet<string> = new Set([
  'embedding',
  'embeddings',
  'vector',
  'vectors',
  'query_embedding',
]);

const packr = new Packr({
  useRecords: false,
  mapsAsObjects: true,
  copyBuffers: true,
  moreTypes: false,
  int64AsType: 'number',
  encodeUndefinedAsNil: false,
});

/** Same options, but maps decode as Maps: for frames with a `__proto__` key (see mapsToObjects). */
const mapPackr = new Packr({
  useRecords: false,
  mapsAsObjects: false,
  copyBuffers: true,
  moreTypes: false,
  int64AsType: 'number',
  encodeUndefinedAsNil: false,
});

const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

/** Defines an own enumerable property (a plain assignment of `__proto__` would set the prototype instead). */
export function setOwn(obj: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
  else obj[key] = value;
}

const PROTO = Array.from('__proto__', (ch) => ch.charCodeAt(0));

/**
 * Whether MessagePack bytes hold the bytes of `__proto__` anywhere (as a key in any string
 * encoding, or inside some other string: then the slower Map path is taken for nothing).
 */
function holdsProtoKey(bytes: Uint8Array): boolean {
  // Anchored on the 'p' (third byte): rarer than '_'.
  for (let i = bytes.indexOf(0x70, 2); i >= 0 && i + 7 <= bytes.length; i = bytes.indexOf(0x70, i + 1)) {
    let j = 0;
    while (j < PROTO.length && bytes[i - 2 + j] === PROTO[j]) j++;
    if (j === PROTO.length) return true;
  }
  return false;
}

/** Maps (from mapPackr) → plain objects with own properties for every key, `__proto__` included. */
function mapsToObjects(value: unknown): unknown {
  if (value instanceof Map) {
    const obj: Record<string, unknown> = {};
    for (const [k, v] of value as Map<unknown, unknown>) setOwn(obj, String(k), mapsToObjects(v));
    return obj;
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = mapsToObjects(value[i]);
  }
  return value;
}

function unpack(bytes: Uint8Array): unknown {
  return holdsProtoKey(bytes) ? mapsToObjects(mapPackr.unpack(bytes)) : packr.unpack(bytes);
}

export type Frame = ArrayBuffer | Uint8Array | string;

function toBytes(frame: ArrayBuffer | Uint8Array): Uint8Array {
  return frame instanceof Uint8Array ? frame : new Uint8Array(frame);
}

/** Parses a frame into a plain value; throws ProtocolError('invalid_json'). */
export function decodeValue(frame: Frame, isBinary: boolean): unknown {
  try {
    if (typeof frame === 'string') {
      return isBinary ? reviveVectors(unpack(new TextEncoder().encode(frame))) : JSON.parse(frame);
    }
    if (isBinary) {
      const value: unknown = unpack(toBytes(frame));
      // 0xC1 is the one byte MessagePack never uses; msgpackr returns a marker object for it.
      if (typeof value === 'object' && value !== null && value.constructor?.name === 'C1Type') throw invalidJson();
      return reviveVectors(value);
    }
    return JSON.parse(utf8Decoder.decode(toBytes(frame)));
  } catch (err) {
    if (err instanceof ProtocolError) throw err;
    throw invalidJson();
  }
}

export type DecodeResult =
  | { ok: true; request: Request }
  | { ok: false; error: ProtocolError; type?: string; id?: RequestId };

function frameError(p: FrameProblem): DecodeResult {
  const r: DecodeResult = { ok: false, error: new ProtocolError('invalid_request', `${p.path}: ${p.rule}`, { field: p.path }) };
  if (p.type !== undefined) r.type = p.type;
  if (p.id !== undefined && isRequestId(p.id)) r.id = p.id;
  return r;
}

/** Decodes and validates the envelope of a client request. Never throws. */
export function decodeRequest(frame: Frame, isBinary: boolean): DecodeResult {
  let value: unknown;
  try {
    if (isBinary) {
      // Checked before msgpackr decodes (and turns bad UTF-8 into U+FFFD, or recurses too deep).
      const problem = scanMessagePack(typeof frame === 'string' ? new TextEncoder().encode(frame) : toBytes(frame));
      if (problem) return frameError(problem);
    }
    value = decodeValue(frame, isBinary);
  } catch (err) {
    return { ok: false, error: err instanceof MalformedMessagePack ? invalidJson() : (err as ProtocolError) };
  }
  if (!isBinary) {
    const problem = checkDecoded(value);
    if (problem) {
      const raw = typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
      if (typeof raw.type === 'string' && problem.path !== 'type') problem.type = raw.type;
      if (isRequestId(raw.id) && problem.path !== 'id') problem.id = raw.id;
      return frameError(problem);
    }
  }
  const proto: unknown = typeof value === 'object' && value !== null ? Object.getPrototypeOf(value) : undefined;
  if (proto !== Object.prototype && proto !== null) {
    return { ok: false, error: invalidRequest('request: must be an object') };
  }
  const raw = value as Record<string, unknown>;
  const type = typeof raw.type === 'string' ? raw.type : undefined;
  const id = isRequestId(raw.id) ? raw.id : undefined;
  const fail = (error: ProtocolError): DecodeResult => {
    const r: DecodeResult = { ok: false, error };
    if (type !== undefined) r.type = type;
    if (id !== undefined) r.id = id;
    return r;
  };
  if (raw.id !== undefined && raw.id !== null && id === undefined) {
    return fail(invalidRequest('id: must be a string or a finite number'));
  }
  if (type === undefined || type.length === 0) return fail(unknownType(raw.type));
  if (raw.timestamp !== undefined && raw.timestamp !== null && typeof raw.timestamp !== 'string') {
    return fail(invalidRequest('timestamp: must be an ISO-8601 string'));
  }
  const data = raw.data;
  if (data !== undefined && data !== null && (typeof data !== 'object' || Array.isArray(data) || ArrayBuffer.isView(data))) {
    return fail(invalidRequest('data: must be an object'));
  }
  const request: Request = { type };
  if (id !== undefined) request.id = id;
  if (typeof raw.timestamp === 'string') request.timestamp = raw.timestamp;
  if (data !== undefined && data !== null) request.data = data as Record<string, unknown>;
  for (const k in raw) {
    if (k === 'type' || k === 'id' || k === 'timestamp' || k === 'data') continue;
    setOwn((request.extra ??= {}), k, raw[k]);
  }
  return { ok: true, request };
}

function jsonReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Float32Array || value instanceof Float64Array) return Array.from(value);
  return value;
}

/** Whether a reply holds a typed array anywhere (a replacer makes stringify ~2× slower, so only use one then). */
function hasTypedArray(value: unknown, depth: number): boolean {
  if (typeof value !== 'object' || value === null) return false;
  if (ArrayBuffer.isView(value)) return true;
  if (depth > 32) return false;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const x = value[i];
      if (typeof x === 'object' && x !== null && hasTypedArray(x, depth + 1)) return true;
    }
    return false;
  }
  for (const k in value as Record<string, unknown>) {
    const x = (value as Record<string, unknown>)[k];
    if (typeof x === 'object' && x !== null && hasTypedArray(x, depth + 1)) return true;
  }
  return false;
}

/** Replaces Float32Array values by Uint8Array views of their (little-endian) bytes, copying containers lazily. */
function vectorsToBytes(value: unknown, depth = 0): unknown {
  if (value instanceof Float32Array) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (depth > 32 || typeof value !== 'object' || value === null || ArrayBuffer.isView(value)) return value;
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const v = value[i];
      const c = vectorsToBytes(v, depth + 1);
      if (c !== v) {
        out ??= value.slice();
        out[i] = c;
      }
    }
    return out ?? value;
  }
  if (Object.getPrototypeOf(value) !== Object.prototype && Object.getPrototypeOf(value) !== null) return value;
  let out: Record<string, unknown> | undefined;
  for (const k in value as Record<string, unknown>) {
    const v = (value as Record<string, unknown>)[k];
    const c = vectorsToBytes(v, depth + 1);
    if (c !== v) {
      out ??= { ...(value as Record<string, unknown>) };
      out[k] = c;
    }
  }
  return out ?? value;
}

/** Turns a little-endian float32 byte string into a (copied, aligned) Float32Array. */
export function bytesToFloat32(bytes: Uint8Array, field = 'embedding'): Float32Array {
  if (bytes.byteLength % 4 !== 0) {
    throw invalidRequest(`${field}: binary vector length must be a multiple of 4 bytes (float32)`);
  }
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new Float32Array(copy.buffer);
}

function reviveVectors(value: unknown, depth = 0): unknown {
  if (depth > 32 || typeof value !== 'object' || value === null || ArrayBuffer.isView(value)) return value;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = reviveVectors(value[i], depth + 1);
    return value;
  }
  const obj = value as Record<string, unknown>;
  for (const k in obj) {
    const v = obj[k];
    if (VECTOR_KEYS.has(k)) {
      if (v instanceof Uint8Array) {
        obj[k] = bytesToFloat32(v, k);
        continue;
      }
      if (Array.isArray(v) && v.length > 0 && v.every((x) => x instanceof Uint8Array)) {
        obj[k] = v.map((x: Uint8Array) => bytesToFloat32(x, k));
        continue;
      }
    }
    obj[k] = reviveVectors(v, depth + 1);
  }
  return obj;
}

/**
 * A reply's `data` object may carry, under this symbol key, a function that returns the
 * object's own JSON text (see {@link flatJson}). Symbol keys are invisible to
 * JSON.stringify, MessagePack and `for…in`, so the object stays a plain value everywhere
 * else; text frames of a success reply whose data has one are built around that text
 * instead of running JSON.stringify over the whole envelope (hot replies such as `stats`).
 */
export const JSON_TEXT: unique symbol = Symbol('memory-server.jsonText');

type JsonTextFn = (this: Record<string, unknown>) => string;

/** One-entry memo of the last string's JSON form (a reply type or timestamp repeats a lot). */
class StringMemo {
  private s: string | undefined;
  private j = '';
  get(s: string): string {
    if (s !== this.s) {
      this.s = s;
      this.j = JSON.stringify(s);
    }
    return this.j;
  }
}

/**
 * A serializer for flat objects with a known key list, exactly equal to JSON.stringify's
 * output for them (same key order, numbers as Number#toString, non-finite numbers as null,
 * strings escaped by JSON.stringify and memoized per key). It gives up and returns
 * JSON.stringify(object) when the object does not match: a key missing or undefined, an own
 * key outside the list, or a value that is neither a number nor a string. About 4× faster than
 * JSON.stringify on the `stats` reply, whose fixed strings (paths, model names) are escaped
 * once instead of on every reply.
 */
export function flatJson(keys: readonly string[]): JsonTextFn {
  const heads = keys.map((k, i) => (i === 0 ? '{' : ',') + JSON.stringify(k) + ':');
  const memos = keys.map(() => new StringMemo());
  const n = keys.length;
  return function (this: Record<string, unknown>): string {
    let out = '';
    let i = 0;
    // for…in walks the keys in JSON.stringify's order, and V8 reads `this[k]` in it from the
    // enumeration cache (no keyed lookup).
    for (const k in this) {
      if (k !== keys[i]) return JSON.stringify(this);
      const v = this[k];
      if (typeof v === 'number') out += heads[i]! + (Number.isFinite(v) ? '' + v : 'null');
      else if (typeof v === 'string') out += heads[i]! + memos[i]!.get(v);
      else if (typeof v === 'object') {
        // null or a nested object (e.g. stats' last_compaction): as JSON.stringify nests it.
        const j = JSON.stringify(v) as string | undefined;
        if (j === undefined) return JSON.stringify(this);
        out += heads[i]! + j;
      } else return JSON.stringify(this);
      i++;
    }
    if (i !== n) return JSON.stringify(this);
    return n === 0 ? '{}' : out + '}';
  };
}

const typeMemo = new StringMemo();
const tsMemo = new StringMemo();

function encodeText(message: unknown): string {
  const m = message as { status?: unknown; type?: unknown; id?: unknown; timestamp?: unknown; data?: unknown };
  if (typeof m === 'object' && m !== null && m.status === 'success' && typeof m.type === 'string' && typeof m.timestamp === 'string') {
    const d = m.data as Record<string | symbol, unknown> | null | undefined;
    const text = typeof d === 'object' && d !== null ? (d[JSON_TEXT] as JsonTextFn | undefined) : undefined;
    if (text !== undefined) {
      // Same text as JSON.stringify of success()'s envelope: status, type, id?, timestamp, data.
      let keys = 0;
      for (const _ in m) keys++;
      const id = m.id;
      if (keys === (id === undefined ? 4 : 5)) {
        const idText = id === undefined ? '' : `"id":${typeof id === 'number' && Number.isFinite(id) ? '' + id : JSON.stringify(id)},`;
        return `{"status":"success","type":${typeMemo.get(m.type)},${idText}"timestamp":${tsMemo.get(m.timestamp)},"data":${text.call(d as Record<string, unknown>)}}`;
      }
    }
  }
  return hasTypedArray(message, 0) ? JSON.stringify(message, jsonReplacer) : JSON.stringify(message);
}

/**
 * Encodes a message as the same kind as the frame it answers: JSON text, or
 * MessagePack bytes (a fresh Uint8Array, safe to hold while a socket flushes).
 */
export function encodeMessage(message: unknown, binary: boolean): string | Uint8Array {
  if (!binary) return encodeText(message);
  return new Uint8Array(packr.pack(vectorsToBytes(message)));
}

/** Decodes any message (server replies, events or requests) without envelope validation. */
export function decodeMessage<T = unknown>(frame: Frame, isBinary: boolean): T {
  return decodeValue(frame, isBinary) as T;
}

/** Accepts a vector given as Float32Array, number[] or float32 bytes; null if it is none of these. */
export function toFloat32Array(value: unknown): Float32Array | null {
  if (value instanceof Float32Array) return value;
  if (value instanceof Uint8Array) return value.byteLength % 4 === 0 ? bytesToFloat32(value) : null;
  if (Array.isArray(value) && value.every((x) => typeof x === 'number' && Number.isFinite(x))) {
    return Float32Array.from(value as number[]);
  }
  return null;
}
