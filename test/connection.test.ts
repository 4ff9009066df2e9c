import { createRequire } from 'node:module';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import uWSRaw from 'uWebSockets.js';
import WebSocket from 'ws';
import { CLOSE_CODES, ProtocolError } from '../ts/protocol/index.js';
import { WsServer, assertNativeUws, isNativeUws, loadUws, signJwtHs256 } from '../ts/server/index.js';
import { startTestServer } from './helpers/echo-server.js';
import { connect, delay, freePort, httpRequest, silentLogger, until, upgradeStatus, type TestClient } from './helpers/ws-client.js';

const openClients: TestClient[] = [];
async function client(url: string, options: WebSocket.ClientOptions = {}): Promise<TestClient> {
  const c = await connect(url, options);
  openClients.push(c);
  return c;
}
afterEach(() => {
  for (const c of openClients.splice(0)) c.ws.terminate();
});

describe('native uWebSockets.js', () => {
  it('is the native addon, and the JS fallback is refused', () => {
    const { module, build } = loadUws();
    expect(isNativeUws(module)).toBe(true);
    expect(() => assertNativeUws(module)).not.toThrow();
    expect(['btc-vision', 'trufflesuite']).toContain(build);
    const require = createRequire(import.meta.url);
    const fallbackPath = require.resolve('uWebSockets.js').replace(/src[\\/]uws\.js$/, 'dist/index.js');
    const fallback = require(fallbackPath);
    expect(isNativeUws(fallback)).toBe(false);
    expect(() => assertNativeUws(fallback)).toThrow(/native binary is not loaded/);
  });
});

describe('HTTP, paths and origins', () => {
  let server: WsServer;
  let port: number;
  let url: string;
  beforeAll(async () => {
    ({ server, port, url } = await startTestServer({
      origins: ['http://localhost:*', 'https://app.example.com'],
    }));
  });
  afterAll(() => server.close());

  it('http() after listen is refused', () => {
    expect(() => server.http('get', '/late', () => ({}))).toThrow(/before listen/);
  });

  it('GET / answers service info', async () => {
    const r = await httpRequest(port, 'GET', '/');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('application/json');
    expect(JSON.parse(r.body)).toEqual({ service: 'test-server', version: '9.9.9', protocol: 1, status: 'ok' });
  });

  it('other paths get 404 (HTTP and upgrade)', async () => {
    expect((await httpRequest(port, 'GET', '/nope')).status).toBe(404);
    expect(await upgradeStatus(`${url}/other`)).toBe(404);
  });

  it('upgrades on / and /ws, query string ignored', async () => {
    expect(await upgradeStatus(`${url}/`)).toBe(101);
    expect(await upgradeStatus(`${url}/ws`)).toBe(101);
    expect(await upgradeStatus(`${url}/ws?foo=bar&x=1`)).toBe(101);
    expect(await upgradeStatus(`${url}/?a=b`)).toBe(101);
  });

  it('origin allow-list: refused origin 403 before upgrade; allowed and absent origins pass', async () => {
    expect(await upgradeStatus(`${url}/ws`, { origin: 'http://evil.example.com' })).toBe(403);
    expect(await upgradeStatus(`${url}/ws`, { origin: 'http://localhost:3000' })).toBe(101);
    expect(await upgradeStatus(`${url}/ws`, { origin: 'https://app.example.com' })).toBe(101);
    expect(await upgradeStatus(`${url}/ws`, { origin: 'https://app.example.com:444' })).toBe(403);
    expect(await upgradeStatus(`${url}/ws`)).toBe(101);
  });

  it('OPTIONS preflight: 204 with CORS headers for allowed origins, 403 otherwise', async () => {
    const ok = await httpRequest(port, 'OPTIONS', '/api/x', {
      Origin: 'http://localhost:5173',
      'Access-Control-Request-Method': 'POST',
    });
    expect(ok.status).toBe(204);
    expect(ok.headers['access-control-allow-origin']).toBe('http://localhost:5173');
    expect(ok.headers['access-control-allow-methods']).toContain('POST');
    expect(ok.headers['access-control-allow-headers']).toContain('Authorization');
    const bad = await httpRequest(port, 'OPTIONS', '/api/x', { Origin: 'http://evil.example.com' });
    expect(bad.status).toBe(403);
    expect(bad.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('CORS headers on plain replies to allowed origins', async () => {
    const r = await httpRequest(port, 'GET', '/', { Origin: 'http://localhost:8080' });
    expect(r.status).toBe(200);
    expect(r.headers['access-control-allow-origin']).toBe('http://localhost:8080');
    const r2 = await httpRequest(port, 'GET', '/');
    expect(r2.headers['access-control-allow-origin']).toBeUndefined();
    expect((await httpRequest(port, 'GET', '/', { Origin: 'http://evil.example.com' })).status).toBe(403);
  });
});

describe('dispatch and errors', () => {
  let server: WsServer;
  let url: string;
  beforeAll(async () => {
    ({ server, url } = await startTestServer());
  });
  afterAll(() => server.close());

  it('echoes id and type with a timestamp', async () => {
    const c = await client(url);
    const r = await c.request('echo', { a: 1 }, { id: 42 });
    expect(r).toMatchObject({ status: 'success', type: 'echo', id: 42, data: { echo: { a: 1 } } });
    expect(new Date(r.timestamp).toISOString()).toBe(r.timestamp);
    const r2 = await c.request('echo', undefined, { id: 'abc' });
    expect(r2.id).toBe('abc');
  });

  it('invalid_json with the exact message, connection stays open', async () => {
    const c = await client(url);
    c.send('{not json');
    const err = await c.waitFor((m) => m.status === 'error');
    expect(err).toMatchObject({ code: 'invalid_json', message: 'Invalid JSON format', error: 'Invalid JSON format' });
    expect(err.id).toBeUndefined();
    expect((await c.request('echo', { still: 'open' })).data.echo.still).toBe('open');
  });

  it('non-object JSON is invalid_request', async () => {
    const c = await client(url);
    c.send('[1,2,3]');
    const err = await c.waitFor((m) => m.status === 'error');
    expect(err.code).toBe('invalid_request');
    expect(err.message).toMatch(/request/);
  });

  it('unknown_type with the exact message; missing type too', async () => {
    const c = await client(url);
    const r = await c.request('frobnicate');
    expect(r).toMatchObject({ status: 'error', type: 'frobnicate', code: 'unknown_type', message: 'Unknown command type: frobnicate' });
    expect(r.error).toBe(r.message);
    c.send({ id: 'no-type' });
    const r2 = await c.waitFor((m) => m.id === 'no-type');
    expect(r2.code).toBe('unknown_type');
    // Prototype keys are not commands.
    expect((await c.request('constructor')).code).toBe('unknown_type');
  });

  it('a throwing handler answers internal with a correlation id named in the message', async () => {
    const errors: unknown[] = [];
    const logger = silentLogger.child({});
    vi.spyOn(logger, 'error').mockImplementation(((obj: unknown) => {
      errors.push(obj);
    }) as never);
    const { server: s2, url: u2 } = await startTestServer({ logger });
    try {
      const c = await client(u2);
      for (const type of ['fail', 'fail_async']) {
        const r = await c.request(type);
        expect(r).toMatchObject({ status: 'error', type, code: 'internal' });
        const cid = r.data.correlation_id as string;
        expect(cid).toMatch(/^[0-9a-f]{12}$/);
        expect(r.message).toContain(cid);
        expect(errors.some((e) => (e as { correlationId?: string }).correlationId === cid)).toBe(true);
      }
      expect((await c.request('echo', { ok: true })).status).toBe('success');
    } finally {
      await s2.close();
    }
  });

  it('ProtocolError passes through with its code and data', async () => {
    const c = await client(url);
    const r = await c.request('missing');
    expect(r).toMatchObject({ status: 'error', code: 'not_found', message: 'Memory not found: x', data: { id: 'x' } });
  });

  it('pipelined requests are answered in order even with varying async delays', async () => {
    const c = await client(url);
    const ids: string[] = [];
    const delays = [60, 0, 30, 5, 0, 45, 10, 0];
    for (let i = 0; i < delays.length; i++) {
      ids.push(`p${i}`);
      c.send({ type: i % 3 === 1 ? 'echo' : 'delay', id: `p${i}`, data: { ms: delays[i] } });
    }
    await c.waitFor((m) => m.id === ids[ids.length - 1]);
    const got = c.messages.map((m) => (m as { id: string }).id).filter((id) => ids.includes(id));
    expect(got).toEqual(ids);
  });

  it('concurrent pipelining runs handlers at once but still replies in order', async () => {
    let running = 0;
    let maxRunning = 0;
    const { server: s2, url: u2 } = await startTestServer({
      pipelining: 'concurrent',
      commands: {
        work: async (_c, req) => {
          running++;
          maxRunning = Math.max(maxRunning, running);
          await delay(Number((req.data as { ms: number }).ms));
          running--;
          return {};
        },
      },
    });
    try {
      const c = await client(u2);
      const ms = [300, 10, 20, 0];
      ms.forEach((m, i) => c.send({ type: 'work', id: i, data: { ms: m } }));
      await c.waitFor((m) => m.id === 3);
      expect(c.messages.map((m) => (m as { id: number }).id)).toEqual([0, 1, 2, 3]);
      expect(maxRunning).toBeGreaterThan(1);
    } finally {
      await s2.close();
    }
  });

  it('serial pipelining with overlapping types: a run of them starts together, anything else is a barrier', async () => {
    const log: string[] = [];
    const work = (name: string) => async (_c: unknown, req: { id?: unknown; data?: unknown }) => {
      log.push(`start ${name}${String(req.id)}`);
      await delay(Number((req.data as { ms: number }).ms));
      log.push(`end ${name}${String(req.id)}`);
      return {};
    };
    const { server: s2, url: u2 } = await startTestServer({
      pipelining: 'serial',
      overlapping: ['put'],
      commands: { put: work('put'), read: work('read') },
    });
    try {
      const c = await client(u2);
      const plan: Array<[string, number]> = [['put', 60], ['put', 10], ['put', 30], ['read', 10], ['put', 10], ['put', 0]];
      plan.forEach(([type, ms], i) => c.send({ type, id: i, data: { ms } }));
      await c.waitFor((m) => m.id === plan.length - 1);
      expect(c.messages.map((m) => (m as { id: number }).id)).toEqual([0, 1, 2, 3, 4, 5]);
      const at = (e: string): number => log.indexOf(e);
      // puts 0–2 started in request order before any of them ended
      expect(at('start put0')).toBeLessThan(at('start put1'));
      expect(at('start put1')).toBeLessThan(at('start put2'));
      expect(at('start put2')).toBeLessThan(at('end put1'));
      // the read waited for all three; the next puts waited for the read, then ran together
      for (const e of ['end put0', 'end put1', 'end put2']) expect(at(e)).toBeLessThan(at('start read3'));
      expect(at('end read3')).toBeLessThan(at('start put4'));
      expect(at('start put5')).toBeLessThan(at('end put4'));
    } finally {
      await s2.close();
    }
  });

  it('binary frames get binary MessagePack replies; Float32Array round-trips', async () => {
    const c = await client(url);
    const vec = new Float32Array([0.5, -1.25, 3.75, 1e-3]);
    const r = await c.request('vector', { embedding: vec }, { binary: true });
    expect((r as { __binary: boolean }).__binary).toBe(true);
    expect(r.data.received).toBe('float32');
    expect(r.data.embedding).toBeInstanceOf(Float32Array);
    expect(Array.from(r.data.embedding as Float32Array)).toEqual(Array.from(vec));
    // number[] is accepted too in MessagePack
    const r2 = await c.request('vector', { embedding: [1, 2] }, { binary: true });
    expect(r2.data.received).toBe('array');
    expect(Array.from(r2.data.embedding as Float32Array)).toEqual([1, 2]);
    // text frame: JSON reply, Float32Array as a number array
    const r3 = await c.request('vector', { embedding: [0.5, 2] });
    expect((r3 as { __binary: boolean }).__binary).toBe(false);
    expect(r3.data.embedding).toEqual([0.5, 2]);
    // undecodable binary frame
    c.ws.send(Buffer.from([0xc1]), { binary: true });
    const err = await c.waitFor((m) => m.status === 'error' && m.code === 'invalid_json');
    expect((err as { __binary: boolean }).__binary).toBe(true);
  });

  it('a request whose client left is dropped without touching the socket', async () => {
    const c = await connect(url);
    c.send({ type: 'delay', id: 'x', data: { ms: 50 } });
    c.ws.terminate();
    await c.closed;
    await delay(100);
    const c2 = await client(url);
    expect((await c2.request('echo', {})).status).toBe('success');
  });
});

describe('limits', () => {
  it('a frame over maxFrameBytes is closed with 1009', async () => {
    const { server, url } = await startTestServer({ maxFrameBytes: 16 * 1024 });
    try {
      const c = await client(url);
      expect((await c.request('echo', { small: 'x'.repeat(1000) })).status).toBe('success');
      c.send({ type: 'echo', data: { big: 'x'.repeat(20 * 1024) } });
      const closed = await c.closed;
      expect(closed.code).toBe(CLOSE_CODES.MESSAGE_TOO_BIG);
    } finally {
      await server.close();
    }
  });

  it('rate limit: over budget → rate_limited with retry_after_ms, not processed', async () => {
    let processed = 0;
    const { server, url } = await startTestServer({
      rateLimit: { messagesPerSecond: 1, messagesBurst: 5, closeAfterRejected: 1000 },
      commands: {
        count: () => ({ n: ++processed }),
      },
    });
    try {
      const c = await client(url);
      for (let i = 0; i < 10; i++) c.send({ type: 'count', id: i });
      await c.waitFor((m) => m.id === 9);
      const replies = c.messages as Array<{ id: number; status: string; code?: string; data?: { retry_after_ms?: number } }>;
      const limited = replies.filter((m) => m.code === 'rate_limited');
      expect(limited.length).toBeGreaterThanOrEqual(4);
      expect(processed).toBe(10 - limited.length);
      for (const m of limited) {
        expect(m.data?.retry_after_ms).toBeGreaterThan(0);
        expect(m.status).toBe('error');
      }
      expect(server.metrics.rateLimited).toBe(limited.length);
    } finally {
      await server.close();
    }
  });

  it('sustained abuse far over budget is closed with 1008', async () => {
    const { server, url } = await startTestServer({
      rateLimit: { messagesPerSecond: 1, messagesBurst: 2, closeAfterRejected: 20 },
    });
    try {
      const c = await client(url);
      for (let i = 0; i < 100 && c.ws.readyState === WebSocket.OPEN; i++) c.send({ type: 'echo', id: i });
      const closed = await c.closed;
      expect(closed.code).toBe(CLOSE_CODES.POLICY_VIOLATION);
    } finally {
      await server.close();
    }
  });

  it('global connection limit: upgrade completes, then closed with 1013', async () => {
    const { server, url } = await startTestServer({ maxConnections: 2 });
    try {
      await client(url);
      await client(url);
      const third = await client(url);
      expect((await third.closed).code).toBe(CLOSE_CODES.TRY_AGAIN_LATER);
      expect(server.connectionCount()).toBe(2);
      expect(server.metrics.connectionsRejected).toBe(1);
    } finally {
      await server.close();
    }
  });

  it('per-IP connection limit → 1013', async () => {
    const { server, url } = await startTestServer({ maxConnectionsPerIp: 1 });
    try {
      const first = await client(url);
      const second = await client(url);
      expect((await second.closed).code).toBe(CLOSE_CODES.TRY_AGAIN_LATER);
      // Slot frees after the first leaves.
      first.ws.close();
      await first.closed;
      await until(() => server.connectionCount() === 0);
      const third = await client(url);
      expect((await third.request('echo', {})).status).toBe('success');
    } finally {
      await server.close();
    }
  });

  it('a slow consumer loses events (counted) instead of growing the buffer', async () => {
    const { server, url } = await startTestServer({ maxBufferedBytes: 64 * 1024 });
    try {
      const c = await client(url);
      await c.request('echo', {});
      const id = server.connections()[0]!;
      c.ws.pause(); // stop reading: the server's send buffer fills
      const big = { type: 'evt', status: 'success', data: { pad: 'y'.repeat(32 * 1024) } };
      let sent = 0;
      for (let i = 0; i < 2000; i++) if (server.send(id, big)) sent++;
      expect(sent).toBeLessThan(2000);
      expect(server.metrics.droppedEvents).toBe(2000 - sent);
      expect(server.connectionCount()).toBe(1); // events never close the connection
      c.ws.resume();
    } finally {
      await server.close();
    }
  });
});

describe('keep-alive', () => {
  it('a client that does not answer pings is dropped', async () => {
    // The answering client gets a generous pong budget so a loaded machine cannot flake it.
    const { server, url } = await startTestServer({ pingIntervalMs: 100, pongTimeoutMs: 1_000 });
    try {
      const good = await client(url);
      const bad = await client(url, { autoPong: false });
      let pings = 0;
      bad.ws.on('ping', () => pings++);
      const closed = await bad.closed;
      expect(pings).toBeGreaterThanOrEqual(1);
      expect(closed.code).toBe(1006); // hard cut, no close frame
      // The answering client survives several ping rounds.
      expect(good.ws.readyState).toBe(WebSocket.OPEN);
      expect((await good.request('echo', {})).status).toBe('success');
      expect(server.connectionCount()).toBe(1);
    } finally {
      await server.close();
    }
  });
});

describe('listening', () => {
  it('listens exclusively: a second server on the same port fails', async () => {
    // A fixed port: the kernel never lets a socket join an ephemeral (port 0) bind,
    // so only a fixed port shows whether SO_REUSEPORT sharing is off.
    const port = await freePort();
    const { server } = await startTestServer({ port });
    expect(server.port).toBe(port);
    try {
      const second = new WsServer({ host: '127.0.0.1', port, logger: silentLogger, printListening: false });
      await expect(second.listen()).rejects.toThrow(/Could not listen/);
      // Even a plain uWS listen that asks for SO_REUSEPORT sharing cannot join.
      const shared = await new Promise<unknown>((resolve) => uWSRaw.App().listen('127.0.0.1', port, resolve));
      if (shared) uWSRaw.us_listen_socket_close(shared as never);
      expect(shared).toBe(false);
    } finally {
      await server.close();
    }
  });

  it('portRange tries the next ports, then fails with No available ports found', async () => {
    const { server: a, port } = await startTestServer({ port: await freePort() });
    const b = new WsServer({ host: '127.0.0.1', port, portRange: 3, logger: silentLogger, printListening: false });
    try {
      const info = await b.listen();
      expect(info.port).toBeGreaterThan(port);
      expect(info.port).toBeLessThanOrEqual(port + 3);
      // Every port of [port, port + (b.port - port)] is now taken.
      const c = new WsServer({ host: '127.0.0.1', port, portRange: info.port - port, logger: silentLogger, printListening: false });
      await expect(c.listen()).rejects.toThrow('No available ports found');
      const d = new WsServer({ host: '127.0.0.1', port, logger: silentLogger, printListening: false });
      await expect(d.listen()).rejects.toThrow(/Could not listen/);
    } finally {
      await b.close();
      await a.close();
    }
  });

  it('prints the listening line with the host as given', async () => {
    const writes: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation(((s: string) => {
      writes.push(String(s));
      return true;
    }) as never);
    const server = new WsServer({ host: 'localhost', port: 0, logger: silentLogger });
    try {
      const info = await server.listen();
      expect(writes).toContain(`WebSocket server listening on localhost:${info.port}\n`);
      expect((await httpRequest(info.port, 'GET', '/')).status).toBe(200); // bound on 127.0.0.1
    } finally {
      spy.mockRestore();
      await server.close();
    }
  });
});

describe('registry', () => {
  it('connections, send, broadcast via pub/sub, publish to topics, close', async () => {
    const { server, url } = await startTestServer();
    try {
      const a = await client(url);
      const b = await client(url);
      const c = await client(url);
      await until(() => server.connectionCount() === 3);
      const ids = server.connections();
      expect(ids).toHaveLength(3);
      expect(new Set(ids).size).toBe(3);

      const who = await a.request('whoami');
      expect(ids).toContain(who.data.id);
      expect(server.send(who.data.id, { status: 'success', type: 'hello', data: { to: 'a' } })).toBe(true);
      expect((await a.waitFor((m) => m.type === 'hello')).data.to).toBe('a');
      expect(server.send('no-such-id', { type: 'x' })).toBe(false);

      expect(server.broadcast({ status: 'success', type: 'news', data: { n: 1 } })).toBe(3);
      for (const x of [a, b, c]) expect((await x.waitFor((m) => m.type === 'news')).data.n).toBe(1);

      await b.request('subscribe', { topic: 'ns:alpha' });
      expect(server.publish('ns:alpha', { status: 'success', type: 'memory_added', data: { seq: 1 } })).toBe(1);
      expect((await b.waitFor((m) => m.type === 'memory_added')).data.seq).toBe(1);
      expect(server.publish('ns:empty', { type: 'x' })).toBe(0);

      expect(server.close(who.data.id, 1000, 'bye')).toBe(true);
      expect(await a.closed).toEqual({ code: 1000, reason: 'bye' });
      await until(() => server.connectionCount() === 2);
      expect(server.broadcast({ type: 'news2' })).toBe(2);
      expect(server.close('no-such-id')).toBe(false);
    } finally {
      await server.close();
    }
  });

  it('metrics count messages, types and latency', async () => {
    const { server, url } = await startTestServer();
    try {
      const c = await client(url);
      await c.request('echo', {});
      await c.request('echo', {});
      await c.request('nope');
      const m = server.metricsSnapshot();
      expect(m.messages).toBe(3);
      expect(m.byType.echo?.count).toBe(2);
      expect(m.byType.echo?.latencyMsSum).toBeGreaterThanOrEqual(0);
      expect(m.byType.nope).toBeUndefined();
      expect(m.errors).toBe(1);
      expect(m.connections).toBe(1);
    } finally {
      await server.close();
    }
  });
});

describe('auth', () => {
  it('shared token: 401 without or with a wrong token; Bearer header and ?token= work', async () => {
    const { server, url, port } = await startTestServer({ token: 's3cret' });
    try {
      expect(await upgradeStatus(url)).toBe(401);
      expect(await upgradeStatus(`${url}/?token=wrong`)).toBe(401);
      expect(await upgradeStatus(`${url}/?token=s3cret`)).toBe(101);
      const c = await client(url, { headers: { Authorization: 'Bearer s3cret' } });
      expect((await c.request('whoami')).data.auth.method).toBe('token');
      // GET / stays public
      expect((await httpRequest(port, 'GET', '/')).status).toBe(200);
    } finally {
      await server.close();
    }
  });

  it('JWT HS256: valid token with ns claim, expired → 401, bad signature → 401', async () => {
    const secret = 'jwt-key';
    const { server, url } = await startTestServer({ jwtSecret: secret });
    try {
      const now = Math.floor(Date.now() / 1000);
      const good = signJwtHs256({ sub: 'agent-1', exp: now + 60, ns: ['alpha', 'beta'] }, secret);
      const c = await client(`${url}/ws?token=${good}`);
      const who = await c.request('whoami');
      expect(who.data.auth).toMatchObject({ method: 'jwt', subject: 'agent-1', namespaces: ['alpha', 'beta'] });
      const conn = server.connection(who.data.id)!;
      expect(conn.allowsNamespace('alpha')).toBe(true);
      expect(conn.allowsNamespace('gamma')).toBe(false);

      const expired = signJwtHs256({ exp: now - 10 }, secret);
      expect(await upgradeStatus(url, { headers: { Authorization: `Bearer ${expired}` } })).toBe(401);
      const forged = signJwtHs256({ exp: now + 60 }, 'other-key');
      expect(await upgradeStatus(url, { headers: { Authorization: `Bearer ${forged}` } })).toBe(401);
      const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('{}').toString('base64url')}.`;
      expect(await upgradeStatus(`${url}?token=${none}`)).toBe(401);
    } finally {
      await server.close();
    }
  });

  it('HTTP routes require auth unless public; POSTs pass the origin check', async () => {
    const server = new WsServer({ host: '127.0.0.1', port: 0, token: 'tok', logger: silentLogger, printListening: false });
    server.http('post', '/api/components/:name/:action', (req) => ({
      body: { success: true, name: req.params[0], action: req.params[1], got: req.json() },
    }));
    server.http('get', '/healthz', () => ({ body: 'ok' }), { public: true });
    const { port } = await server.listen();
    try {
      expect((await httpRequest(port, 'GET', '/healthz')).body).toBe('ok');
      const body = JSON.stringify({ x: 1 });
      expect((await httpRequest(port, 'POST', '/api/components/memory/restart', {}, body)).status).toBe(401);
      const ok = await httpRequest(port, 'POST', '/api/components/memory/restart', { Authorization: 'Bearer tok', 'Content-Type': 'application/json' }, body);
      expect(ok.status).toBe(200);
      expect(JSON.parse(ok.body)).toEqual({ success: true, name: 'memory', action: 'restart', got: { x: 1 } });
      const evil = await httpRequest(port, 'POST', '/api/components/memory/restart', { Authorization: 'Bearer tok', Origin: 'http://evil.example.com' }, body);
      expect(evil.status).toBe(403);
    } finally {
      await server.close();
    }
  });
});

describe('graceful shutdown', () => {
  it('finishes in-flight replies, runs beforeClose, closes clients with 1001, refuses new upgrades', async () => {
    const order: string[] = [];
    const { server, url, port } = await startTestServer({
      commands: {
        slow: async () => {
          await delay(150);
          order.push('handler done');
          return { done: true };
        },
      },
      beforeClose: () => {
        order.push('beforeClose');
      },
    });
    const a = await client(url);
    const b = await client(url);
    a.send({ type: 'slow', id: 'slow' });
    await until(() => server.metrics.messages === 1);
    expect(server.state).toBe('running');
    const closing = server.close();
    expect(server.state).toBe('closing');
    // New connections are refused while closing (listen socket closed).
    await expect(connect(url)).rejects.toThrow();
    const [ca, cb] = await Promise.all([a.closed, b.closed]);
    await closing;
    // The in-flight reply arrived before the 1001 close frame.
    const reply = a.messages.find((m) => (m as { id?: string }).id === 'slow') as { status: string; data: unknown };
    expect(reply).toMatchObject({ status: 'success', data: { done: true } });
    expect(ca.code).toBe(CLOSE_CODES.GOING_AWAY);
    expect(cb.code).toBe(CLOSE_CODES.GOING_AWAY);
    expect(order).toEqual(['handler done', 'beforeClose']);
    expect(server.state).toBe('closed');
    expect(server.connectionCount()).toBe(0);
    await expect(httpRequest(port, 'GET', '/')).rejects.toThrow();
    await server.close(); // idempotent
  });

  it('ProtocolError is exported for handlers', () => {
    expect(new ProtocolError('overloaded', 'queue full').code).toBe('overloaded');
  });
});

describe('shutdown budget', () => {
  it('a handler that never finishes does not block shutdown past closeTimeoutMs', async () => {
    const { server, url } = await startTestServer({
      closeTimeoutMs: 200,
      commands: { hang: () => new Promise(() => {}) },
    });
    const c = await client(url);
    c.send({ type: 'hang', id: 'h' });
    await until(() => server.metrics.messages === 1);
    await server.close();
    expect((await c.closed).code).toBe(CLOSE_CODES.GOING_AWAY);
    expect(server.state).toBe('closed');
  });

  it('requests arriving while closing get unavailable', async () => {
    let release!: () => void;
    const { server, url } = await startTestServer({
      commands: {
        hold: () => new Promise<void>((r) => (release = r)),
        echo: () => ({}),
      },
    });
    const c = await client(url);
    c.send({ type: 'hold', id: 'first' });
    await until(() => server.metrics.messages === 1);
    const closing = server.close();
    c.send({ type: 'echo', id: 'late' });
    await until(() => server.metrics.messages === 2);
    release();
    const late = await c.waitFor((m) => m.id === 'late');
    expect(late).toMatchObject({ status: 'error', code: 'unavailable' });
    expect((await c.waitFor((m) => m.id === 'first')).status).toBe('success');
    // replies stay in request order
    expect(c.messages.map((m) => (m as { id: string }).id)).toEqual(['first', 'late']);
    await closing;
  });
});

describe('queue bound', () => {
  it('too many queued requests on one connection → 1013', async () => {
    const { server, url } = await startTestServer({
      maxQueuedRequests: 4,
      commands: { hang: () => new Promise(() => {}) },
      closeTimeoutMs: 100,
    });
    try {
      const c = await client(url);
      for (let i = 0; i < 10; i++) c.send({ type: 'hang', id: i });
      expect((await c.closed).code).toBe(CLOSE_CODES.TRY_AGAIN_LATER);
    } finally {
      await server.close();
    }
  });
});

describe('transport options', () => {
  it('permessage-deflate when compression is on', async () => {
    const { server, url } = await startTestServer({ compression: true });
    try {
      const c = await client(url, { perMessageDeflate: true });
      expect(c.ws.extensions).toContain('permessage-deflate');
      const r = await c.request('echo', { text: 'z'.repeat(10_000) });
      expect(r.data.echo.text).toHaveLength(10_000);
      const plain = await startTestServer();
      try {
        const c2 = await client(plain.url, { perMessageDeflate: true });
        expect(c2.ws.extensions).not.toContain('permessage-deflate');
      } finally {
        await plain.server.close();
      }
    } finally {
      await server.close();
    }
  });

  it('TLS: wss:// and https:// with tlsCert/tlsKey', async () => {
    const { execFileSync } = await import('node:child_process');
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'ms-tls-'));
    try {
      const key = join(dir, 'key.pem');
      const cert = join(dir, 'cert.pem');
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost'], { stdio: 'ignore' });
      const { server, port } = await startTestServer({ tlsCert: cert, tlsKey: key });
      try {
        const c = await client(`wss://127.0.0.1:${port}/ws`, { rejectUnauthorized: false });
        expect((await c.request('echo', { tls: true })).data.echo.tls).toBe(true);
        // plain ws:// against a TLS port fails
        await expect(connect(`ws://127.0.0.1:${port}/ws`)).rejects.toThrow();
      } finally {
        await server.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
