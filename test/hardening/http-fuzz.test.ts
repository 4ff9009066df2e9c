/**
 * Bad input on the memory server's HTTP API (docs/http.md "Errors"), as the WebSocket protocol
 * is fuzzed: wrong content types, malformed JSON and UTF-8, bodies over the limit (declared or
 * streamed), unknown routes and methods, missing auth with a large body, clients that abort
 * mid-body or before the answer, malformed fields — then seeded random requests. Each gets a
 * clear JSON error (never a 500), nothing stored changes, nothing is logged as an error, and
 * the server keeps serving.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMemory, type Started } from './protocol-servers.js';
import type { MemoryServer } from '../../ts/server/memory.js';
import { openApiChecker, request, type OpenApiChecker } from '../helpers/http-api.js';
import { delay } from '../helpers/ws-client.js';

const LIMIT = 64 * 1024;

/** Whether `text` holds one whole HTTP response (head and Content-Length bytes of body). */
function complete(text: string): boolean {
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) return false;
  const len = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, end));
  return len !== null && text.length - end - 4 >= Number(len[1]);
}

/**
 * Sends raw bytes on a fresh socket; resolves with the response once it is complete, or with
 * whatever came back when the server closed, `destroyAfterMs` (the client aborts) or `waitMs` passed.
 */
function raw(port: number, chunks: Array<string | Buffer>, { destroyAfterMs = -1, waitMs = 5_000 } = {}): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const got: Buffer[] = [];
    const done = (): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(Buffer.concat(got).toString('latin1'));
    };
    const timer = setTimeout(done, waitMs);
    s.on('data', (d: Buffer) => {
      got.push(d);
      if (complete(Buffer.concat(got).toString('latin1'))) done();
    });
    s.on('close', done);
    s.on('error', done);
    s.on('connect', () => {
      for (const c of chunks) s.write(c);
      if (destroyAfterMs >= 0) setTimeout(done, destroyAfterMs);
    });
  });
}

const head = (method: string, path: string, headers: Record<string, string | number>): string =>
  `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;

function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

describe('HTTP API hardening', () => {
  let s: Started<MemoryServer>;
  let port: number;
  let api: OpenApiChecker;
  const total = (): number => s.server.store.stats().totalMemories;
  const errorLogs = (): Array<{ msg: string }> => s.logs.filter((l) => l.level >= 50);

  beforeAll(async () => {
    s = await startMemory({ maxFrameBytes: LIMIT });
    port = s.server.port;
    api = await openApiChecker(port);
    expect((await request(port, 'POST', '/v1/memories', { text: 'the one memory', id: 'keep', metadata: { v: 1 } })).status).toBe(201);
  });
  afterAll(async () => {
    await s.stop();
  });

  /** The error is JSON with the documented shape, and the store still holds exactly `expected`. */
  const expectError = (r: { status: number; body: unknown }, status: number, code: string): void => {
    expect(r.status).toBe(status);
    expect(r.body).toMatchObject({ status: 'error', code });
  };

  it('wrong or missing content type: 415, nothing stored', async () => {
    const before = total();
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/jsonx', 'multipart/form-data; boundary=x']) {
      const r = await request(port, 'POST', '/v1/memories', '{"text":"no"}', { 'Content-Type': type });
      expectError(r, 415, 'unsupported_media_type');
      expect(r.body.message).toBe(`Content-Type must be application/json (got ${type})`);
    }
    const none = await raw(port, [head('POST', '/v1/memories', { 'Content-Length': 13 }), '{"text":"no"}']);
    expect(none).toMatch(/^HTTP\/1\.1 415 /);
    expect(none).toContain('Content-Type must be application/json (none given)');
    expect(total()).toBe(before);
    const ok = await request(port, 'POST', '/v1/memories/search', { count: 1 }, { 'Content-Type': 'Application/JSON; charset=utf-8' });
    expect(ok.status).toBe(200);
  });

  it('malformed JSON, bytes that are not UTF-8, and bodies that are not objects: 400', async () => {
    const before = total();
    for (const body of ['{', '{"text": "a",}', 'nul', '\u0000', '{"text":"a"} {"text":"b"}']) {
      expectError(await request(port, 'POST', '/v1/memories', body), 400, 'invalid_json');
    }
    const badUtf8 = Buffer.concat([Buffer.from('{"text":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]);
    expectError(await request(port, 'POST', '/v1/memories', badUtf8), 400, 'invalid_json');
    for (const body of ['[]', '"text"', '42', 'null', '[{"text":"a"}]']) {
      const r = await request(port, 'POST', '/v1/memories', body);
      expectError(r, 400, 'invalid_request');
      expect(r.body.message).toBe('data: the body must be a JSON object');
    }
    expect(total()).toBe(before);
  });

  it('malformed fields: named like the WebSocket names them; keys such as __proto__ are data', async () => {
    const before = total();
    const cases: Array<[string, unknown, string]> = [
      ['/v1/memories', { text: 'a', bogus: 1 }, 'data.bogus: unknown field'],
      ['/v1/memories', { text: 'a\ud800' }, 'data.text: must be well-formed Unicode (it holds a lone surrogate)'],
      ['/v1/memories', { text: 5 }, 'data.text: must be a string'],
      ['/v1/memories', { items: [{ text: 'a', namespace: 'x' }] }, 'data.items[0].namespace: unknown field'],
      ['/v1/memories/search', { count: 1001 }, 'data.count: Number must be less than or equal to 1000'],
      ['/v1/memories/search', { query: 'a', embedding: [1] }, 'data.embedding: give either query or embedding, not both'],
      ['/v1/memories/search', { filter: { a: { $regex: 'x' } } }, ''],
    ];
    for (const [p, body, message] of cases) {
      const r = await request(port, 'POST', p, JSON.stringify(body).replace('\\\\ud800', '\\ud800'));
      expect(r.status, JSON.stringify(body)).toBe(400);
      api.checkResponse('POST', p, r);
      if (message) expect(r.body.message).toBe(message);
    }
    let deep: unknown = 1;
    for (let i = 0; i < 40; i++) deep = { a: deep };
    const d = await request(port, 'POST', '/v1/memories', { text: 'deep', metadata: deep });
    expectError(d, 400, 'invalid_request');
    expect(d.body.message).toMatch(/nested deeper than 32 levels/);
    expect(total()).toBe(before);

    const proto = await request(port, 'POST', '/v1/memories', '{"text":"proto","id":"proto","metadata":{"__proto__":{"polluted":true}}}');
    expect(proto.status).toBe(201);
    const back = await request(port, 'GET', '/v1/memories/proto');
    expect(Object.keys(back.body.metadata)).toEqual(['__proto__']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((await request(port, 'DELETE', '/v1/memories/proto')).status).toBe(200);
  });

  it('bad query strings and path ids: 400 naming the parameter', async () => {
    const dup = await request(port, 'GET', '/v1/memories?limit=1&limit=2');
    expectError(dup, 400, 'invalid_request');
    expect(dup.body.message).toBe('query.limit: given more than once');
    const unknown = await request(port, 'GET', '/v1/memories?colour=red');
    expect(unknown.body.message).toBe('query.colour: unknown parameter (known: cursor, limit, filter, include_embeddings, namespace)');
    const badBool = await request(port, 'GET', '/v1/memories/keep?include_embeddings=yes');
    expect(badBool.body.data.field).toBe('data.include_embeddings');
    const badId = await request(port, 'GET', '/v1/memories/%E0%A4%A');
    expectError(badId, 400, 'invalid_request');
    expect(badId.body.message).toBe('data.id: is not valid percent-encoded UTF-8');
    const idInBody = await request(port, 'PATCH', '/v1/memories/keep', { id: 'other', significance: 0.5 });
    expect(idInBody.body.message).toBe('data.id: is given by the path (/v1/memories/{id})');
    const longNs = await request(port, 'GET', '/v1/stats', undefined, { 'X-Namespace': 'n'.repeat(257) });
    expectError(longNs, 413, 'payload_too_large');
  });

  it('bodies over the limit: 413 whether declared by Content-Length or streamed chunked, nothing stored', async () => {
    const before = total();
    const big = JSON.stringify({ text: 'x'.repeat(LIMIT) });
    const declared = await request(port, 'POST', '/v1/memories', big);
    expectError(declared, 413, 'payload_too_large');
    expect(declared.body.data).toEqual({ field: 'body', limit: LIMIT });
    // Refused on the header alone: the server answers before the body is sent.
    const early = await raw(port, [head('POST', '/v1/memories', { 'Content-Type': 'application/json', 'Content-Length': 10 * LIMIT })]);
    expect(early).toMatch(/^HTTP\/1\.1 413 /);
    const chunk = Buffer.alloc(16 * 1024, 'x');
    const parts: Array<string | Buffer> = [head('POST', '/v1/memories', { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' }), '9\r\n{"text":"\r\n'];
    for (let i = 0; i < 8; i++) parts.push(`${chunk.length.toString(16)}\r\n`, chunk, '\r\n');
    const streamed = await raw(port, parts);
    expect(streamed).toMatch(/^HTTP\/1\.1 413 /);
    expect(streamed).toContain(`Body exceeds the limit of ${LIMIT} bytes`);
    expect(total()).toBe(before);
  });

  it('unknown routes are 404 and other methods of a known path 405 with Allow', async () => {
    const r = await request(port, 'GET', '/v2/memories');
    expectError(r, 404, 'route_not_found');
    expect(r.body.message).toBe('Not found: no route for GET /v2/memories');
    for (const [method, p, allow] of [
      ['PUT', '/v1/memories', 'GET, POST'],
      ['DELETE', '/v1/memories', 'GET, POST'],
      ['PUT', '/v1/memories/x', 'DELETE, GET, PATCH'],
      ['GET', '/v1/memories/search', 'POST'],
      ['POST', '/v1/stats', 'GET'],
    ] as const) {
      const m = await request(port, method, p);
      expectError(m, 405, 'method_not_allowed');
      expect(m.headers.allow, `${method} ${p}`).toBe(allow);
    }
  });

  it('an aborted client (mid-body, or before the answer) costs nothing: no store, no error, the server keeps serving', async () => {
    const before = total();
    const body = JSON.stringify({ text: 'never complete' });
    await raw(port, [head('POST', '/v1/memories', { 'Content-Type': 'application/json', 'Content-Length': body.length + 100 }), body], { destroyAfterMs: 50 });
    await raw(port, [head('POST', '/v1/memories', { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' }), '5\r\n{"tex'], { destroyAfterMs: 50 });
    expect(total()).toBe(before);
    // A complete request whose client leaves at once: the store may happen (as over a WebSocket); nothing breaks.
    const full = JSON.stringify({ text: 'client left', id: 'left' });
    await raw(port, [head('POST', '/v1/memories', { 'Content-Type': 'application/json', 'Content-Length': full.length }), full], { destroyAfterMs: 0 });
    const many = Array.from({ length: 20 }, (_, i) =>
      raw(port, [head('POST', '/v1/memories/search', { 'Content-Type': 'application/json', 'Content-Length': 11 }), '{"count":1}'], { destroyAfterMs: i % 3 }),
    );
    await Promise.all(many);
    await delay(100);
    const after = await request(port, 'GET', '/v1/memories/keep');
    expect(after.status).toBe(200);
    expect(errorLogs()).toEqual([]);
    await request(port, 'DELETE', '/v1/memories/left'); // stored or not: either is right
    expect(total()).toBe(before);
  });

  it('seeded random requests: never a 500, always a documented JSON answer, the store changes only as the answers say', async () => {
    const r = rng(20);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
    const valid: Array<[string, string, unknown]> = [
      ['POST', '/v1/memories', { text: 'fuzz', metadata: { k: 1 } }],
      ['POST', '/v1/memories', { items: [{ text: 'a' }, { text: 'b', significance: 0.5 }] }],
      ['POST', '/v1/memories/search', { query: 'fuzz', count: 3, filter: { k: 1 } }],
      ['GET', '/v1/memories?limit=2', undefined],
      ['GET', '/v1/memories/keep', undefined],
      ['PATCH', '/v1/memories/keep', { metadata: { v: 2 } }],
      ['POST', '/v1/memories/delete', { ids: ['nope'] }],
      ['GET', '/v1/namespaces', undefined],
      ['GET', '/v1/stats', undefined],
    ];
    const junk = (): unknown => pick([null, true, -1, 1e308, 'x', '', [], {}, [1, 'a'], { $gt: 1 }, 'é'.repeat(50), { text: 'nested' }]);
    const mutate = (v: unknown): unknown => {
      if (typeof v !== 'object' || v === null || r() < 0.2) return junk();
      const o: Record<string, unknown> = Array.isArray(v) ? ({ ...v } as Record<string, unknown>) : { ...(v as Record<string, unknown>) };
      const keys = Object.keys(o);
      const roll = r();
      if (roll < 0.3 && keys.length) delete o[pick(keys)];
      else if (roll < 0.6 && keys.length) o[pick(keys)] = mutate(o[pick(keys)]);
      else o[pick(['text', 'count', 'namespace', 'filter', 'items', 'id', 'embedding', 'zz', '__proto__', 'all'])] = junk();
      return o;
    };
    let expected = total();
    const statuses = new Map<number, number>();
    for (let n = 0; n < 300; n++) {
      const [method0, path0, body0] = pick(valid);
      const method = r() < 0.1 ? pick(['PUT', 'DELETE', 'GET', 'POST', 'PATCH']) : method0;
      let p = path0;
      if (r() < 0.1) p = pick(['/v1/memories/%ZZ', '/v1/memories//', '/v1//memories', `/v1/memories/${'x'.repeat(300)}`, '/v1/memories?namespace=', '/v1/stats?namespace=%00']);
      let payload: string | Buffer | undefined = body0 === undefined ? undefined : JSON.stringify(r() < 0.7 ? mutate(body0) : body0);
      if (payload !== undefined && r() < 0.1) payload = payload.slice(0, Math.floor(r() * payload.length));
      if (r() < 0.05) payload = Buffer.from(Array.from({ length: 20 }, () => Math.floor(r() * 256)));
      // No body on GET/DELETE: uWS builds differ there (20.57 parses a GET's body bytes as the
      // next request and answers that garbage itself, 505, before any route runs).
      if (method === 'GET' || method === 'DELETE') payload = undefined;
      const headers: Record<string, string> = r() < 0.05 ? { 'Content-Type': 'text/plain' } : {};
      if (r() < 0.05) headers['X-Namespace'] = pick(['', 'other', 'n'.repeat(300)]);
      const res = await request(port, method, p, payload, headers);
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      expect([200, 201, 400, 404, 405, 413, 415], `${method} ${p} ${String(payload).slice(0, 200)} → ${res.status} ${res.text.slice(0, 200)}`).toContain(res.status);
      expect(res.body, res.text.slice(0, 200)).toBeTypeOf('object');
      if (res.status >= 400) expect(res.body).toMatchObject({ status: 'error', code: expect.any(String), message: expect.any(String) });
      if (res.status < 400 || res.status === 404) {
        // Documented answers are checked against the document (a 405/415 of an undocumented method is not an operation).
        try {
          api.checkResponse(method, p, res);
        } catch (err) {
          if (!String(err).includes('no operation')) throw err;
        }
      }
      if (res.status === 201) expected += Array.isArray(res.body.items) ? res.body.items.filter((i: { existing: boolean }) => !i.existing).length : 1;
      if (res.status === 200 && typeof res.body.deleted === 'number') expected -= res.body.deleted;
    }
    expect(total()).toBe(expected);
    expect(statuses.get(400) ?? 0).toBeGreaterThan(30);
    expect((statuses.get(200) ?? 0) + (statuses.get(201) ?? 0)).toBeGreaterThan(30);
    expect(errorLogs()).toEqual([]);
    // (The fuzz may have deleted everything: `all: true` is one of its mutations.)
    expect((await request(port, 'POST', '/v1/memories', { text: 'after the fuzz', id: 'after' })).status).toBe(201);
    expect((await request(port, 'GET', '/v1/memories/after')).status).toBe(200);
  });
});

describe('HTTP API hardening: auth comes first', () => {
  it('a missing or bad token is 401 before the body is read (a body over the limit too); nothing stored', async () => {
    const s = await startMemory({ token: 't0k', maxFrameBytes: LIMIT });
    try {
      const port = s.server.port;
      const big = JSON.stringify({ text: 'x'.repeat(2 * LIMIT) });
      const r = await request(port, 'POST', '/v1/memories', big);
      expect(r.status).toBe(401);
      expect(r.body).toMatchObject({ code: 'unauthorized' });
      const bad = await request(port, 'POST', '/v1/memories', { text: 'no' }, { Authorization: 'Bearer t0K' });
      expect(bad.status).toBe(401);
      const refusedEarly = await raw(port, [head('POST', '/v1/memories', { 'Content-Type': 'application/json', 'Content-Length': 1000 })]);
      expect(refusedEarly).toMatch(/^HTTP\/1\.1 401 /);
      expect(s.server.store.stats().totalMemories).toBe(0);
      expect((await request(port, 'POST', '/v1/memories', { text: 'yes' }, { Authorization: 'Bearer t0k' })).status).toBe(201);
    } finally {
      await s.stop();
    }
  });
});
