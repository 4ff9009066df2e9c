import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  CLOSE_CODES,
  DEFAULTS,
  ERROR_CODES,
  JSON_TEXT,
  PROTOCOL_VERSION,
  ProtocolError,
  decodeMessage,
  decodeRequest,
  encodeMessage,
  errorReply,
  event,
  flatJson,
  parseData,
  success,
  toFloat32Array,
} from '../ts/protocol/index.js';
import { OriginPolicy } from '../ts/server/origin.js';
import { takeBudget, type RateBudget, type RateLimitOptions } from '../ts/server/rate-limit.js';
import { ServerMetrics } from '../ts/server/metrics.js';
import { authenticate, extractToken, signJwtHs256, verifyJwtHs256 } from '../ts/server/auth.js';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

describe('constants', () => {
  it('has the documented error codes, close codes and defaults (docs/protocol.md, docs/connection.md)', () => {
    expect([...ERROR_CODES].sort()).toEqual(
      ['internal', 'invalid_json', 'invalid_request', 'not_found', 'overloaded', 'payload_too_large', 'rate_limited', 'unavailable', 'unknown_type'].sort(),
    );
    expect(Object.values(CLOSE_CODES).sort()).toEqual([1000, 1001, 1008, 1009, 1011, 1013]);
    expect(PROTOCOL_VERSION).toBe(1);
    expect(DEFAULTS.ports).toMatchObject({ memory: 5000, inference: 5005, control: 9000 });
    expect(DEFAULTS.maxFrameBytes).toBe(17 * 1024 * 1024);
    expect(DEFAULTS.rateLimit).toMatchObject({ messagesPerSecond: 2000, messagesBurst: 4000 });
    expect(DEFAULTS.pingIntervalMs).toBe(20_000);
    expect(DEFAULTS.pongTimeoutMs).toBe(20_000);
    expect(DEFAULTS.closeTimeoutMs).toBe(10_000);
  });
});

describe('envelope', () => {
  it('builds success and error replies', () => {
    const s = success('store', 7, { id: 'm1' });
    expect(s).toMatchObject({ status: 'success', type: 'store', id: 7, data: { id: 'm1' } });
    expect(Date.parse(s.timestamp)).not.toBeNaN();
    expect('id' in success('stats', undefined, {})).toBe(false);
    const e = errorReply('unknown_type', 'Unknown command type: x', { type: 'x', id: 'a' });
    expect(e).toMatchObject({ status: 'error', type: 'x', id: 'a', code: 'unknown_type', message: 'Unknown command type: x', error: 'Unknown command type: x' });
    expect('data' in e).toBe(false);
    expect(event('memory_added', { seq: 1 })).toMatchObject({ status: 'success', type: 'memory_added', data: { seq: 1 } });
  });
});

describe('decodeRequest', () => {
  it('decodes JSON text frames (string or bytes)', () => {
    const r = decodeRequest('{"type":"store","id":"1","timestamp":"2024-01-01T00:00:00Z","data":{"text":"hi"}}', false);
    expect(r).toEqual({ ok: true, request: { type: 'store', id: '1', timestamp: '2024-01-01T00:00:00Z', data: { text: 'hi' } } });
    expect(decodeRequest(enc('{"type":"stats"}'), false)).toEqual({ ok: true, request: { type: 'stats' } });
    expect(decodeRequest(enc('{"type":"stats"}').buffer as ArrayBuffer, false)).toEqual({ ok: true, request: { type: 'stats' } });
  });

  it('invalid_json for unparsable frames and invalid UTF-8', () => {
    for (const f of ['', '{', 'nope', '{"type":']) {
      const r = decodeRequest(f, false);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error).toMatchObject({ code: 'invalid_json', message: 'Invalid JSON format' });
    }
    const bad = decodeRequest(new Uint8Array([0x7b, 0xff, 0x7d]), false);
    expect(!bad.ok && bad.error.code).toBe('invalid_json');
    const badPack = decodeRequest(new Uint8Array([0xc1]), true);
    expect(!badPack.ok && badPack.error.code).toBe('invalid_json');
  });

  it('non-object payloads are invalid_request; bad envelope fields are named', () => {
    for (const f of ['[1]', '1', '"s"', 'null', 'true']) {
      const r = decodeRequest(f, false);
      expect(!r.ok && r.error.code).toBe('invalid_request');
    }
    const noType = decodeRequest('{"id":5}', false);
    expect(noType).toMatchObject({ ok: false, id: 5, error: { code: 'unknown_type', message: 'Unknown command type: undefined' } });
    const numType = decodeRequest('{"type":3}', false);
    expect(!numType.ok && numType.error.message).toBe('Unknown command type: 3');
    const badId = decodeRequest('{"type":"x","id":{"a":1}}', false);
    expect(badId).toMatchObject({ ok: false, type: 'x', error: { code: 'invalid_request' } });
    expect(!badId.ok && badId.error.message).toMatch(/^id:/);
    const badData = decodeRequest('{"type":"x","id":1,"data":[1]}', false);
    expect(badData).toMatchObject({ ok: false, type: 'x', id: 1, error: { code: 'invalid_request', message: 'data: must be an object' } });
    const badTs = decodeRequest('{"type":"x","timestamp":5}', false);
    expect(!badTs.ok && badTs.error.message).toMatch(/^timestamp:/);
  });

  it('decodes MessagePack frames; embedding as float32 bin or number[]', () => {
    const vec = new Float32Array([1, -2.5, 3.25]);
    const frame = encodeMessage({ type: 'store', id: 1, data: { text: 't', embedding: vec } }, true) as Uint8Array;
    expect(frame).toBeInstanceOf(Uint8Array);
    const r = decodeRequest(frame, true);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const e = r.request.data!.embedding as Float32Array;
    expect(e).toBeInstanceOf(Float32Array);
    expect(Array.from(e)).toEqual([1, -2.5, 3.25]);
    const r2 = decodeRequest(encodeMessage({ type: 'store', data: { embedding: [1, 2] } }, true), true);
    expect(r2.ok && r2.request.data!.embedding).toEqual([1, 2]);
    // unaligned bin length
    const r3 = decodeRequest(encodeMessage({ type: 'store', data: { embedding: new Uint8Array(5) } }, true), true);
    expect(!r3.ok && r3.error.code).toBe('invalid_request');
  });

  it('MessagePack vectors travel as float32 bytes, not number arrays', () => {
    const vec = new Float32Array(384).map((_, i) => i / 7);
    const packed = encodeMessage({ embedding: vec }, true) as Uint8Array;
    expect(packed.byteLength).toBeLessThan(384 * 4 + 32);
    const asArray = encodeMessage({ embedding: Array.from(vec) }, true) as Uint8Array;
    expect(asArray.byteLength).toBeGreaterThan(384 * 4 + 32);
  });
});

describe('encodeMessage / decodeMessage', () => {
  it('JSON: Float32Array as a number array', () => {
    const s = encodeMessage(success('embeddings', 'a', { embedding: new Float32Array([0.5, 1]) }), false);
    expect(typeof s).toBe('string');
    expect(JSON.parse(s as string).data.embedding).toEqual([0.5, 1]);
  });

  it('MessagePack round trip incl. nested vector lists, leaves the input intact', () => {
    const embeddings = [new Float32Array([1, 2]), new Float32Array([3, 4])];
    const msg = success('embeddings', 9, { embeddings, dims: 2, nested: { items: [{ embedding: new Float32Array([5]) }] } });
    const bytes = encodeMessage(msg, true) as Uint8Array;
    expect(msg.data.embeddings[0]).toBeInstanceOf(Float32Array); // not mutated
    const back = decodeMessage<typeof msg>(bytes, true);
    expect(back.data.embeddings.map((e) => Array.from(e))).toEqual([[1, 2], [3, 4]]);
    expect(back.data.embeddings[0]).toBeInstanceOf(Float32Array);
    expect(back.data.nested.items[0]!.embedding).toBeInstanceOf(Float32Array);
    expect(back.id).toBe(9);
    expect(back.status).toBe('success');
  });

  it('encoded buffers are independent copies', () => {
    const a = encodeMessage({ v: 1 }, true) as Uint8Array;
    const copy = Array.from(a);
    encodeMessage({ v: 2, w: 'x'.repeat(100) }, true);
    expect(Array.from(a)).toEqual(copy);
  });

  it('toFloat32Array accepts the vector forms', () => {
    expect(Array.from(toFloat32Array([1, 2])!)).toEqual([1, 2]);
    expect(toFloat32Array(['a'])).toBeNull();
    expect(toFloat32Array(new Uint8Array(new Float32Array([7]).buffer))![0]).toBe(7);
  });
});

describe('flatJson / JSON_TEXT fast path', () => {
  const keys = ['n', 's', 'neg', 'big', 'path'];
  const text = flatJson(keys);
  const base = () => ({ n: 1.5, s: 'plain', neg: -0, big: 1e21, path: '/tmp/a "quoted"\\ \u2028 é \n' });

  it('is exactly JSON.stringify for matching objects, also when strings change', () => {
    const a = base();
    expect(text.call(a)).toBe(JSON.stringify(a));
    const b = { ...base(), s: 'other', n: NaN, big: -Infinity };
    expect(text.call(b)).toBe(JSON.stringify(b));
    expect(text.call(b)).toContain('"n":null');
    expect(text.call(a)).toBe(JSON.stringify(a)); // the per-key memo follows the value
    expect(flatJson([]).call({})).toBe('{}');
  });

  it('falls back to JSON.stringify when the object does not match its key list', () => {
    const cases: Record<string, unknown>[] = [
      { n: 1, s: 'x', neg: 0, big: 2 }, // a key missing
      { ...base(), extra: 1 }, // an extra key
      { s: 'x', n: 1, neg: 0, big: 2, path: 'p' }, // another order
      { ...base(), s: undefined }, // undefined value (JSON.stringify drops it)
      { ...base(), s: { nested: [1, 'two'] } }, // not a number or string
      { ...base(), s: true },
      { ...base(), s: null },
    ];
    for (const c of cases) expect(text.call(c)).toBe(JSON.stringify(c));
  });

  it('encodeMessage builds the success envelope around it, identical to JSON.stringify', () => {
    const data = { ...base(), [JSON_TEXT]: text };
    for (const id of [undefined, 7, 'req "1"', 0]) {
      const reply = success('stats', id, data);
      expect(encodeMessage(reply, false)).toBe(JSON.stringify(reply));
      expect(JSON.parse(encodeMessage(reply, false) as string)).toEqual(JSON.parse(JSON.stringify(reply)));
    }
    const weird = { ...success('sta"ts', 3, data), extra: true };
    expect(encodeMessage(weird, false)).toBe(JSON.stringify(weird));
    // MessagePack never sees the symbol.
    const back = decodeMessage<Record<string, unknown>>(encodeMessage(success('stats', 1, data), true), true);
    expect(back.data).toEqual({ ...base(), neg: 0 }); // (MessagePack has no -0)
  });
});

describe('parseData', () => {
  const schema = z.object({
    text: z.string().min(1).max(10),
    count: z.number().int().min(1).max(1000).default(5),
    items: z.array(z.object({ text: z.string() })).max(2).optional(),
  });

  it('returns parsed data', () => {
    expect(parseData(schema, { text: 'hi' }, 'store')).toEqual({ text: 'hi', count: 5 });
  });

  it('invalid_request names the field and the rule', () => {
    const missing = () => parseData(schema, {}, 'store');
    expect(missing).toThrow(ProtocolError);
    expect(missing).toThrow('text: is required');
    try {
      parseData(schema, { text: 'a', count: 5000 }, 'retrieve');
    } catch (e) {
      expect(e).toMatchObject({ code: 'invalid_request' });
      expect((e as Error).message).toMatch(/^count: .*1000/);
    }
    try {
      parseData(schema, { text: 'a', items: [{ text: 1 }] }, 'store');
    } catch (e) {
      expect((e as Error).message).toMatch(/^items\[0\]\.text: /);
    }
  });

  it('payload_too_large for string and list limits', () => {
    try {
      parseData(schema, { text: 'x'.repeat(11) }, 'store');
      expect.unreachable();
    } catch (e) {
      expect(e).toMatchObject({ code: 'payload_too_large', data: { field: 'text', limit: 10 } });
      expect((e as Error).message).toBe('text: exceeds the limit of 10 characters');
    }
    try {
      parseData(schema, { text: 'a', items: [{ text: '' }, { text: '' }, { text: '' }] }, 'store');
      expect.unreachable();
    } catch (e) {
      expect(e).toMatchObject({ code: 'payload_too_large' });
    }
  });
});

describe('origin policy', () => {
  it('matches exact, any-port and wildcard patterns', () => {
    const p = new OriginPolicy(DEFAULTS.origins);
    expect(p.allows('')).toBe(true);
    expect(p.allows('http://localhost:3000')).toBe(true);
    expect(p.allows('http://localhost')).toBe(true);
    expect(p.allows('https://127.0.0.1:8443')).toBe(true);
    expect(p.allows('http://localhost.evil.com')).toBe(false);
    expect(p.allows('http://localhost:3000.evil.com')).toBe(false);
    expect(p.allows('http://example.com')).toBe(false);
    expect(new OriginPolicy(['*']).allows('http://example.com')).toBe(true);
  });
});

describe('rate limiter', () => {
  const limits = (o: Partial<RateLimitOptions>): RateLimitOptions => ({
    messagesPerSecond: 1e9,
    messagesBurst: 1e9,
    bytesPerSecond: 1e9,
    bytesBurst: 1e9,
    closeAfterRejected: 1,
    rejectWindowMs: 10_000,
    ...o,
  });
  const full = (l: RateLimitOptions, now = 0): RateBudget => ({ msgTokens: l.messagesBurst, byteTokens: l.bytesBurst, tokensAt: now });

  it('grants the burst, then reports a retry delay, then refills', () => {
    const l = limits({ messagesPerSecond: 10, messagesBurst: 3 });
    const b = full(l);
    expect([takeBudget(b, l, 1, 0), takeBudget(b, l, 1, 0), takeBudget(b, l, 1, 0)]).toEqual([0, 0, 0]);
    const retry = takeBudget(b, l, 1, 0);
    expect(retry).toBe(100);
    expect(takeBudget(b, l, 1, 100)).toBe(0);
  });

  it('limits bytes too: a frame takes from both buckets or from neither', () => {
    const l = limits({ bytesPerSecond: 1000, bytesBurst: 100 });
    const b = full(l);
    expect(takeBudget(b, l, 60, 0)).toBe(0);
    const msgTokens = b.msgTokens;
    expect(takeBudget(b, l, 60, 0)).toBe(20); // 40 bytes left, 20 more take 20 ms
    expect(b.msgTokens).toBe(msgTokens);
    // A frame larger than the burst needs (only) a full bucket.
    expect(takeBudget(b, l, 500, 60)).toBe(0);
    expect(b.byteTokens).toBe(0);
  });

  it('a bucket that never refills reports an infinite wait', () => {
    const l = limits({ messagesPerSecond: 0, messagesBurst: 1 });
    const b = full(l);
    expect(takeBudget(b, l, 1, 0)).toBe(0);
    expect(takeBudget(b, l, 1, 1000)).toBe(Number.POSITIVE_INFINITY);
  });
});

describe('server metrics', () => {
  it('counts replies per type; latency histograms once enabled, per bound plus overflow', () => {
    const m = new ServerMetrics();
    m.recordReply('store', 3, false);
    expect(m.latencyHistogram('store')).toEqual([0]);
    m.enableLatencyHistograms([1, 5]);
    m.recordReply('store', 0.5, false);
    m.recordReply('store', 1, false);
    m.recordReply('store', 4, true);
    m.recordReply('store', 50, false);
    m.recordReply(undefined, 2, true);
    expect(m.latencyHistogram('store')).toEqual([2, 1, 1]);
    expect(m.latencyHistogram('get')).toEqual([0, 0, 0]);
    expect(m.snapshot().byType.store).toEqual({ count: 5, errors: 1, latencyMsSum: 58.5 });
    expect(m.snapshot().errors).toBe(2);
  });
});

describe('auth', () => {
  it('verifies HS256 JWTs', async () => {
    const now = Date.now();
    const t = signJwtHs256({ exp: Math.floor(now / 1000) + 10, ns: ['a'] }, 'k');
    expect(await verifyJwtHs256(t, 'k', {}, now)).toMatchObject({ ok: true, claims: { method: 'jwt', namespaces: ['a'] } });
    expect(await verifyJwtHs256(t, 'k', {}, now + 20_000)).toEqual({ ok: false, reason: 'token expired' });
    expect((await verifyJwtHs256(t, 'other', {}, now)).ok).toBe(false);
    expect((await verifyJwtHs256('a.b', 'k')).ok).toBe(false);
    const badNs = signJwtHs256({ ns: [1] }, 'k');
    expect((await verifyJwtHs256(badNs, 'k')).ok).toBe(false);
  });

  it('authenticates a JWT synchronously (the WebSocket upgrade completes inside uWS\'s callback; see auth.ts)', () => {
    const t = signJwtHs256({ sub: 'x' }, 'k');
    const r = authenticate({ jwtSecret: 'k' }, t);
    expect(typeof (r as { then?: unknown }).then).toBe('undefined');
    expect(r).toMatchObject({ ok: true, claims: { method: 'jwt', subject: 'x' } });
    expect(authenticate({ jwtSecret: 'k' }, signJwtHs256({ sub: 'x' }, 'other'))).toEqual({ ok: false, reason: 'bad signature' });
  });

  it('extracts tokens and authenticates', async () => {
    expect(extractToken('Bearer abc', '')).toBe('abc');
    expect(extractToken('', 'x=1&token=def')).toBe('def');
    expect(extractToken('', '')).toBeUndefined();
    expect((await authenticate({}, undefined)).ok).toBe(true);
    expect((await authenticate({ token: 't' }, undefined)).ok).toBe(false);
    expect((await authenticate({ token: 't' }, 't')).ok).toBe(true);
    expect((await authenticate({ token: 't' }, 'tt')).ok).toBe(false);
  });
});
