/**
 * #23 item 14: the rate limiter's close could be dodged (every accepted frame reset the
 * rejection count) and rejected frames were still parsed in full.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { CLOSE_CODES } from '../../ts/protocol/index.js';
import { startTestServer } from '../helpers/echo-server.js';
import { connect, delay, type TestClient } from '../helpers/ws-client.js';

// Counts how many frames the server decodes (the dispatcher imports decodeRequest from here).
const decoded = vi.hoisted(() => ({ n: 0 }));
vi.mock('../../ts/protocol/index.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../ts/protocol/index.js')>();
  return {
    ...real,
    decodeRequest: (...args: Parameters<typeof real.decodeRequest>) => {
      decoded.n++;
      return real.decodeRequest(...args);
    },
  };
});

const open: TestClient[] = [];
afterEach(() => {
  for (const c of open.splice(0)) c.ws.terminate();
});

describe('rate limiter hardening', () => {
  it('a client that stays just over the rate (one rejection per refill) is closed with 1008', async () => {
    // One token per 100 ms, burst 1: each round the first frame passes and the second is
    // rejected. Before the fix every accepted frame reset the count, so this never closed.
    const { server, url } = await startTestServer({
      rateLimit: { messagesPerSecond: 10, messagesBurst: 1, closeAfterRejected: 5, rejectWindowMs: 60_000 },
    });
    try {
      const c = await connect(url);
      open.push(c);
      let rounds = 0;
      for (; rounds < 20 && c.ws.readyState === WebSocket.OPEN; rounds++) {
        c.send({ type: 'echo', id: `a${rounds}` });
        c.send({ type: 'echo', id: `b${rounds}` });
        await Promise.race([c.waitFor((m) => m.id === `b${rounds}`), c.closed]);
        await delay(110); // the bucket has refilled its one token
      }
      const closed = await Promise.race([c.closed, delay(2_000).then(() => null)]);
      expect(closed?.code).toBe(CLOSE_CODES.POLICY_VIOLATION);
      // 5 rejections are allowed in the window; the 6th closes.
      expect(rounds).toBe(6);
    } finally {
      await server.close();
    }
  });

  it('a frame arriving with an empty bucket is refused before it is parsed', async () => {
    const { server, url } = await startTestServer({
      rateLimit: { messagesPerSecond: 0.001, messagesBurst: 2, closeAfterRejected: 1_000 },
    });
    try {
      const c = await connect(url);
      open.push(c);
      expect((await c.request('echo', { n: 1 })).status).toBe('success');
      expect((await c.request('echo', { n: 2 })).status).toBe('success');
      const before = decoded.n;
      // Malformed JSON: parsing it would answer invalid_json.
      c.send('{"type":"echo","id":"bad", not json');
      const big = JSON.stringify({ type: 'echo', id: 'big', data: { pad: 'x'.repeat(256 * 1024) } });
      c.send(big);
      const bad = await c.waitFor((m) => m.id === 'bad');
      const refused = await c.waitFor((m) => m.id === 'big');
      expect(bad).toMatchObject({ status: 'error', code: 'rate_limited', type: 'echo' });
      expect(refused).toMatchObject({ status: 'error', code: 'rate_limited', type: 'echo' });
      expect(decoded.n).toBe(before);
    } finally {
      await server.close();
    }
  });

  it('a refused MessagePack frame still gets its id and type back', async () => {
    const { server, url } = await startTestServer({
      rateLimit: { messagesPerSecond: 0.001, messagesBurst: 1, closeAfterRejected: 1_000 },
    });
    try {
      const c = await connect(url);
      open.push(c);
      expect((await c.request('echo', {}, { binary: true })).status).toBe('success');
      const r = await c.request('echo', { x: 1 }, { binary: true, id: 42 });
      expect(r).toMatchObject({ status: 'error', code: 'rate_limited', type: 'echo', id: 42 });
    } finally {
      await server.close();
    }
  });
});

describe('peekEnvelope (type and id of a refused frame, without a parse)', async () => {
  const { peekEnvelope, PEEK_BYTES } = await import('../../ts/server/ws/peek.js');
  const { encodeMessage } = await import('../../ts/protocol/index.js');
  const ab = (x: string | Uint8Array): ArrayBuffer => {
    const u = typeof x === 'string' ? new TextEncoder().encode(x) : x;
    return u.buffer.slice(u.byteOffset, u.byteOffset + u.byteLength) as ArrayBuffer;
  };

  it('reads top-level type and id of JSON and MessagePack frames', () => {
    expect(peekEnvelope(ab(' { "type" : "store", "id": -12.5e1, "data": {"id": "inner"} }'), false)).toEqual({ type: 'store', id: -125 });
    expect(peekEnvelope(ab('{"data":{"id":"inner","type":"x"},"id":"outer"}'), false)).toEqual({});
    const bin = encodeMessage({ type: 'list', id: 'r7', data: { limit: 3 } }, true) as Uint8Array;
    expect(peekEnvelope(ab(bin), true)).toEqual({ type: 'list', id: 'r7' });
    const binNum = encodeMessage({ id: 70000, type: 'get' }, true) as Uint8Array;
    expect(peekEnvelope(ab(binNum), true)).toEqual({ type: 'get', id: 70000 });
  });

  it('gives up on escapes, odd values and anything past the window', () => {
    expect(peekEnvelope(ab('{"type":"st\\"ore","id":1}'), false)).toEqual({});
    expect(peekEnvelope(ab('{"id":true,"type":"x"}'), false)).toEqual({});
    expect(peekEnvelope(ab(`{"pad":"${'x'.repeat(PEEK_BYTES)}","type":"x","id":1}`), false)).toEqual({});
    expect(peekEnvelope(ab('[1,2]'), false)).toEqual({});
    expect(peekEnvelope(ab(new Uint8Array([0xdf, 0xff])), true)).toEqual({});
    expect(peekEnvelope(new ArrayBuffer(0), true)).toEqual({});
    expect(peekEnvelope(new ArrayBuffer(0), false)).toEqual({});
  });
});
