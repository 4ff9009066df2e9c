/**
 * The memory server's HTTP API (docs/http.md): every route against a real server on port 0,
 * each request and response validated against the server's own OpenAPI document; the same
 * handlers as the WebSocket (a WebSocket subscriber sees HTTP stores; replies agree), the
 * error-code → status table, auth, rate limits, metrics, and /healthz /readyz /metrics on both
 * servers.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryServer, type MemoryServerOptions } from '../ts/server/memory.js';
import { InferenceServer } from '../ts/server/inference.js';
import { hashEmbed, HASH_DIMS } from '../ts/native.js';
import { signJwtHs256 } from '../ts/server/auth.js';
import { HTTP_STATUS_OF_CODE } from '../ts/protocol/http.js';
import { ERROR_CODES } from '../ts/protocol/errors.js';
import { MEMORY_API_ROUTES, addMemoryApiRoutes } from '../ts/server/http/memory-api.js';
import type { CommandHandler } from '../ts/server/ws/dispatch.js';
import { createPrometheusRegistry } from '../ts/control/prometheus.js';
import { inferenceSnapshot } from '../ts/control/instrument.js';
import { addOperationalRoutes } from '../ts/server/http/operational.js';
import { WsServer } from '../ts/server/ws-server.js';
import { connect, silentLogger, until } from './helpers/ws-client.js';
import { openApiChecker, request, type JsonResult, type OpenApiChecker } from './helpers/http-api.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function start(options: MemoryServerOptions = {}): Promise<MemoryServer> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'memsrv-http-'));
  dirs.push(dataDir);
  const server = new MemoryServer({ dataDir, host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false, closeTimeoutMs: 2_000, ...options });
  await server.listen();
  return server;
}

const vec = (text: string): number[] => Array.from(hashEmbed([text]));

describe('memory HTTP API', () => {
  let server: MemoryServer;
  let port: number;
  let api: OpenApiChecker;
  /**
   * A request whose body (when an object) and response are checked against the OpenAPI
   * document; `invalid` requests are sent as they are (only the error response is checked).
   */
  const call = async (method: string, p: string, body?: unknown, headers: Record<string, string> = {}, invalid = false): Promise<JsonResult> => {
    if (body !== undefined && typeof body === 'object' && !invalid) api.checkRequest(method, p, body);
    const r = await request(port, method, p, body, headers);
    api.checkResponse(method, p, r);
    return r;
  };

  beforeAll(async () => {
    server = await start();
    port = server.port;
    api = await openApiChecker(port);
  });
  afterAll(async () => {
    await server.close();
  });

  it('documents every route of the table in the OpenAPI document', () => {
    for (const r of MEMORY_API_ROUTES) {
      const p = r.pattern.replace(/:([a-z]+)/g, '{$1}');
      const method = r.method === 'del' ? 'delete' : r.method;
      expect(api.doc.paths[p]?.[method], `${method} ${p}`).toBeDefined();
    }
    expect(Object.keys(api.doc.paths)).toEqual(expect.arrayContaining(['/healthz', '/readyz', '/metrics', '/openapi.json']));
  });

  it('POST /v1/memories stores one (201), again with the same id is 200 existing, GET returns it', async () => {
    const r = await call('POST', '/v1/memories', { text: 'the user prefers dark mode', metadata: { type: 'preference' }, id: 'pref-1' });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ id: 'pref-1', existing: false, stats: { namespace_total: 1 } });
    const again = await call('POST', '/v1/memories', { text: 'something else', id: 'pref-1' });
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ id: 'pref-1', existing: true });
    const g = await call('GET', '/v1/memories/pref-1');
    expect(g.status).toBe(200);
    expect(g.body).toMatchObject({ id: 'pref-1', namespace: 'default', text: 'the user prefers dark mode', metadata: { type: 'preference' } });
    expect(g.body.embedding).toBeUndefined();
    const withVec = await call('GET', '/v1/memories/pref-1?include_embeddings=true');
    expect(withVec.body.embedding).toHaveLength(HASH_DIMS);
  });

  it('POST /v1/memories with items stores a batch, all or nothing', async () => {
    const ns = 'batch';
    const ok = await call('POST', `/v1/memories?namespace=${ns}`, { items: [{ text: 'one' }, { text: 'two', metadata: { n: 2 } }] });
    expect(ok.status).toBe(201);
    expect(ok.body.items).toHaveLength(2);
    expect(ok.body.stats.namespace_total).toBe(2);
    const bad = await call('POST', `/v1/memories?namespace=${ns}`, { items: [{ text: 'three' }, { text: '' }] }, {}, true);
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({ status: 'error', code: 'invalid_request', data: { field: 'data.items[1].text' } });
    expect(server.store.count(ns)).toBe(2);
  });

  it('POST /v1/memories/search by embedding and by query, with filter and min_score, equals the WebSocket retrieve', async () => {
    const ns = 'search';
    const texts = ['apples are red', 'bananas are yellow', 'the sky is blue', 'grass is green'];
    await call('POST', '/v1/memories', { items: texts.map((t, i) => ({ text: t, metadata: { i, kind: i % 2 ? 'odd' : 'even' } })) }, { 'X-Namespace': ns });
    const byVec = await call('POST', '/v1/memories/search', { embedding: vec('bananas are yellow'), count: 2 }, { 'X-Namespace': ns });
    expect(byVec.status).toBe(200);
    expect(byVec.body.memories[0].text).toBe('bananas are yellow');
    expect(byVec.body.memories[0].score).toBeCloseTo(1, 5);
    const filtered = await call('POST', '/v1/memories/search', { query: 'bananas are yellow', count: 4, filter: { kind: 'even' }, min_score: -1 }, { 'X-Namespace': ns });
    expect(filtered.body.memories.map((m: { metadata: { kind: string } }) => m.metadata.kind)).toEqual(['even', 'even']);
    const recent = await call('POST', '/v1/memories/search', { query: 'sky', count: 4, recency_half_life_s: 3600, min_score: 0.1 }, { 'X-Namespace': ns });
    expect(recent.body.memories.length).toBeGreaterThan(0);
    for (const m of recent.body.memories as Array<{ score: number }>) expect(m.score).toBeGreaterThanOrEqual(0.1);

    const ws = await connect(`ws://127.0.0.1:${port}`);
    try {
      const viaWs = await ws.request('retrieve', { namespace: ns, embedding: vec('bananas are yellow'), count: 2 });
      expect(viaWs.data).toEqual(byVec.body);
    } finally {
      ws.close();
    }
  });

  it('GET /v1/memories pages with next_cursor and takes a filter as URL-encoded JSON', async () => {
    const ns = 'paging';
    await call('POST', `/v1/memories?namespace=${ns}`, { items: Array.from({ length: 5 }, (_, i) => ({ text: `memory ${i}`, metadata: { i } })) });
    const seen: string[] = [];
    let cursor: string | null = '';
    for (let guard = 0; cursor !== null && guard < 10; guard++) {
      const page = await call('GET', `/v1/memories?namespace=${ns}&limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(page.status).toBe(200);
      seen.push(...page.body.memories.map((m: { text: string }) => m.text));
      cursor = page.body.next_cursor;
    }
    expect(seen).toEqual(['memory 0', 'memory 1', 'memory 2', 'memory 3', 'memory 4']);
    const f = await call('GET', `/v1/memories?namespace=${ns}&filter=${encodeURIComponent(JSON.stringify({ i: { $gte: 3 } }))}`);
    expect(f.body.memories.map((m: { text: string }) => m.text)).toEqual(['memory 3', 'memory 4']);
    const badLimit = await call('GET', `/v1/memories?namespace=${ns}&limit=0`);
    expect(badLimit.status).toBe(400);
    expect(badLimit.body.data.field).toBe('data.limit');
    const badFilter = await call('GET', `/v1/memories?filter=%7Bnot-json`);
    expect(badFilter.status).toBe(400);
    expect(badFilter.body.message).toBe('data.filter: must be URL-encoded JSON');
  });

  it('PATCH and DELETE /v1/memories/{id}; unknown ids are 404 not_found; immutable fields 400', async () => {
    const ns = 'edit';
    const id = 'a/b c'; // needs percent-encoding in the path
    await call('POST', '/v1/memories', { text: 'to edit', id, namespace: ns });
    const enc = encodeURIComponent(id);
    const up = await call('PATCH', `/v1/memories/${enc}?namespace=${ns}`, { metadata: { v: 2 }, significance: 0.25 });
    expect(up.status).toBe(200);
    expect(up.body).toMatchObject({ id, metadata: { v: 2 }, significance: 0.25 });
    const text = await call('PATCH', `/v1/memories/${enc}?namespace=${ns}`, { text: 'new' }, {}, true);
    expect(text.status).toBe(400);
    expect(text.body.message).toBe('data.text: cannot change (delete the memory and store it again)');
    const del = await call('DELETE', `/v1/memories/${enc}?namespace=${ns}`);
    expect(del.status).toBe(200);
    expect(del.body).toEqual({ deleted: 1, not_found: [] });
    for (const [m, body] of [['GET', undefined], ['PATCH', { significance: 0.5 }], ['DELETE', undefined]] as const) {
      const r = await call(m, `/v1/memories/${enc}?namespace=${ns}`, body);
      expect(r.status, m).toBe(404);
      expect(r.body).toMatchObject({ code: 'not_found', message: `Memory not found: ${id}`, data: { id, namespace: ns } });
    }
  });

  it('POST /v1/memories/delete by filter and all; an empty filter without all is refused', async () => {
    const ns = 'bulkdel';
    await call('POST', `/v1/memories?namespace=${ns}`, { items: [{ text: 'x1', metadata: { t: 'x' } }, { text: 'y1', metadata: { t: 'y' } }, { text: 'x2', metadata: { t: 'x' } }] });
    const refused = await call('POST', `/v1/memories/delete?namespace=${ns}`, { filter: {} });
    expect(refused.status).toBe(400);
    expect(server.store.count(ns)).toBe(3);
    const byFilter = await call('POST', `/v1/memories/delete?namespace=${ns}`, { filter: { t: 'x' } });
    expect(byFilter.body).toEqual({ deleted: 2, not_found: [] });
    const all = await call('POST', `/v1/memories/delete?namespace=${ns}`, { all: true });
    expect(all.body).toEqual({ deleted: 1, not_found: [] });
    expect(server.store.count(ns)).toBe(0);
  });

  it('GET /v1/namespaces and /v1/stats; the namespace comes from the header, the query or the body, and they must agree', async () => {
    await call('POST', '/v1/memories', { text: 'ns by header' }, { 'X-Namespace': 'hdr' });
    const list = await call('GET', '/v1/namespaces');
    expect(list.body.namespaces).toEqual(expect.arrayContaining([{ name: 'hdr', total_memories: 1 }]));
    const stats = await call('GET', '/v1/stats');
    expect(stats.body.total_memories).toBe(server.store.stats().totalMemories);
    const nsStats = await call('GET', '/v1/stats', undefined, { 'X-Namespace': 'hdr' });
    expect(nsStats.body).toMatchObject({ namespace: 'hdr', total_memories: 1 });
    const clash = await call('POST', '/v1/memories?namespace=a', { text: 't', namespace: 'b' });
    expect(clash.status).toBe(400);
    expect(clash.body.data.field).toBe('data.namespace');
    expect(server.store.count('a') + server.store.count('b')).toBe(0);
  });

  it('an HTTP store reaches WebSocket subscribers (the same handler publishes memory_added)', async () => {
    const ws = await connect(`ws://127.0.0.1:${port}`);
    try {
      await ws.request('subscribe', { namespace: 'events' });
      const r = await call('POST', '/v1/memories', { text: 'seen by a socket', id: 'ev-1' }, { 'X-Namespace': 'events' });
      expect(r.status).toBe(201);
      const e = await ws.waitFor((m) => m.type === 'memory_added', 5_000);
      expect(e.data.memory).toMatchObject({ id: 'ev-1', namespace: 'events', text: 'seen by a socket' });
    } finally {
      ws.close();
    }
  });

  it('maps every protocol error code onto one HTTP status', () => {
    for (const code of ERROR_CODES) expect(HTTP_STATUS_OF_CODE[code], code).toBeGreaterThanOrEqual(400);
    expect(HTTP_STATUS_OF_CODE).toMatchObject({ invalid_request: 400, payload_too_large: 413, rate_limited: 429, not_found: 404, unavailable: 503, internal: 500 });
  });

  it('a field over its limit is 413 payload_too_large and nothing is stored', async () => {
    const before = server.store.stats().totalMemories;
    const r = await call('POST', '/v1/memories', { text: 'x'.repeat(64 * 1024 + 1) }, {}, true);
    expect(r.status).toBe(413);
    expect(r.body).toMatchObject({ code: 'payload_too_large', data: { field: 'data.text', limit: 65536 } });
    expect(server.store.stats().totalMemories).toBe(before);
  });

  it('counts HTTP commands in the same metrics as the WebSocket (stats, /metrics)', async () => {
    const before = server.ws.metrics.byType.get('namespaces')?.count ?? 0;
    await call('GET', '/v1/namespaces');
    await call('GET', '/v1/namespaces');
    expect(server.ws.metrics.byType.get('namespaces')?.count).toBe(before + 2);
    const m = await request(port, 'GET', '/metrics');
    expect(m.status).toBe(200);
    expect(m.headers['content-type']).toMatch(/^text\/plain/);
    expect(m.text).toContain(`memory_server_commands{component="memory",command="namespaces"} ${before + 2}`);
    expect(m.text).toMatch(/memory_server_memories \d+/);
  });
});

describe('memory HTTP API: auth and rate limits', () => {
  it('with --token: 401 before any work (nothing stored), 200 with the bearer token; health probes stay public', async () => {
    const server = await start({ token: 'sekret' });
    try {
      const port = server.port;
      const no = await request(port, 'POST', '/v1/memories', { text: 'never stored' });
      expect(no.status).toBe(401);
      expect(no.headers['www-authenticate']).toBe('Bearer');
      expect(no.body).toMatchObject({ status: 'error', code: 'unauthorized', message: 'Unauthorized: missing token' });
      const wrong = await request(port, 'POST', '/v1/memories', { text: 'never stored' }, { Authorization: 'Bearer nope' });
      expect(wrong.status).toBe(401);
      expect(server.store.stats().totalMemories).toBe(0);
      const yes = await request(port, 'POST', '/v1/memories', { text: 'stored' }, { Authorization: 'Bearer sekret' });
      expect(yes.status).toBe(201);
      const viaQuery = await request(port, 'GET', '/v1/stats?token=sekret');
      expect(viaQuery.status).toBe(200);
      expect((await request(port, 'GET', '/metrics')).status).toBe(401);
      expect((await request(port, 'GET', '/healthz')).status).toBe(200);
      expect((await request(port, 'GET', '/readyz')).status).toBe(200);
      expect((await request(port, 'GET', '/openapi.json')).status).toBe(200);
    } finally {
      await server.close();
    }
  });

  it("a JWT's ns claim limits the namespaces over HTTP as over the WebSocket", async () => {
    const server = await start({ jwtSecret: 'k' });
    try {
      const token = signJwtHs256({ sub: 'u', ns: ['mine'] }, 'k');
      const auth = { Authorization: `Bearer ${token}` };
      const ok = await request(server.port, 'POST', '/v1/memories', { text: 'mine' }, { ...auth, 'X-Namespace': 'mine' });
      expect(ok.status).toBe(201);
      const other = await request(server.port, 'POST', '/v1/memories', { text: 'theirs' }, { ...auth, 'X-Namespace': 'theirs' });
      expect(other.status).toBe(400);
      expect(other.body.message).toBe('data.namespace: namespace "theirs" is not allowed for this token');
      expect(server.store.count('theirs')).toBe(0);
      const expired = signJwtHs256({ ns: ['mine'], exp: Math.floor(Date.now() / 1000) - 3600 }, 'k');
      const late = await request(server.port, 'GET', '/v1/namespaces', undefined, { Authorization: `Bearer ${expired}` });
      expect(late.status).toBe(401);
      expect(late.body.message).toBe('Unauthorized: token expired');
      // Store-wide figures stay hidden from a namespace-limited token: 403 on /metrics, its own counts in /v1/stats.
      const metrics = await request(server.port, 'GET', '/metrics', undefined, auth);
      expect(metrics.status).toBe(403);
      expect(metrics.body.code).toBe('forbidden');
      const stats = await request(server.port, 'GET', '/v1/stats', undefined, auth);
      expect(stats.body.total_memories).toBe(1);
      expect(stats.body.storage_path).toBeUndefined();
      const full = signJwtHs256({ sub: 'admin' }, 'k');
      expect((await request(server.port, 'GET', '/metrics', undefined, { Authorization: `Bearer ${full}` })).status).toBe(200);
    } finally {
      await server.close();
    }
  });

  it('over the rate limit: 429 with Retry-After and retry_after_ms, and the request is not run', async () => {
    const server = await start({ rateLimit: { messagesPerSecond: 0.001, messagesBurst: 2 } });
    try {
      const port = server.port;
      expect((await request(port, 'POST', '/v1/memories', { text: 'one' })).status).toBe(201);
      expect((await request(port, 'POST', '/v1/memories', { text: 'two' })).status).toBe(201);
      const r = await request(port, 'POST', '/v1/memories', { text: 'three' });
      expect(r.status).toBe(429);
      expect(Number(r.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(r.body).toMatchObject({ code: 'rate_limited', message: 'Rate limit exceeded' });
      expect(r.body.data.retry_after_ms).toBeGreaterThan(0);
      expect(server.store.stats().totalMemories).toBe(2);
      expect(server.ws.metrics.rateLimited).toBe(1);
    } finally {
      await server.close();
    }
  });
});

describe('memory HTTP API: shutdown', () => {
  it('a graceful shutdown answers the HTTP commands in flight before it completes', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const commands: Record<string, CommandHandler> = {};
    for (const r of MEMORY_API_ROUTES) commands[r.command] = () => ({});
    commands.retrieve = async () => {
      started();
      await gate;
      return { memories: [] };
    };
    const ws = new WsServer({ host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false, closeTimeoutMs: 5_000 });
    addMemoryApiRoutes({ ws, commands });
    await ws.listen();
    const reply = request(ws.port, 'POST', '/v1/memories/search', { count: 1 });
    await running;
    let closed = false;
    const shutdown = ws.shutdown().then(() => (closed = true));
    await new Promise((r) => setTimeout(r, 100));
    expect(closed).toBe(false);
    release();
    const r = await reply;
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ memories: [] });
    await shutdown;
    expect(closed).toBe(true);
  });
});

describe('/healthz, /readyz and /metrics on the servers themselves', () => {
  it('memory: alive, ready (listening, store open, embedder loaded)', async () => {
    const server = await start();
    try {
      const h = await request(server.port, 'GET', '/healthz');
      expect(h.status).toBe(200);
      expect(h.body).toMatchObject({ status: 'ok', service: 'memory-server' });
      const r = await request(server.port, 'GET', '/readyz');
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ status: 'ok', checks: { listening: true, store: true, embedder: true } });
    } finally {
      await server.close();
    }
  });

  it('inference: the same routes, and its embeddings counted under component="inference"', async () => {
    const server = new InferenceServer({ host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false });
    await server.listen();
    try {
      expect((await request(server.port, 'GET', '/healthz')).body).toMatchObject({ status: 'ok', service: 'inference-server' });
      expect((await request(server.port, 'GET', '/readyz')).body).toMatchObject({ status: 'ok', checks: { listening: true, embedder: true } });
      const ws = await connect(`ws://127.0.0.1:${server.port}`);
      await ws.request('embeddings', { text: 'hello' });
      ws.close();
      await until(() => server.ws.metrics.byType.get('embeddings')?.count === 1);
      const m = await request(server.port, 'GET', '/metrics');
      expect(m.text).toContain('memory_server_commands{component="inference",command="embeddings"} 1');
      expect(m.text).toContain('memory_server_command_latency_seconds_count{component="inference",command="embeddings"} 1');
    } finally {
      await server.close();
    }
  });

  it('/readyz is 503 not_ready, naming the failed check, while one fails (and /healthz stays 200)', async () => {
    let storeOpen = false;
    const ws = new WsServer({ host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false });
    addOperationalRoutes({ ws, component: 'memory', readiness: () => ({ store: storeOpen }), snapshot: () => inferenceSnapshot({ ws } as never) });
    await ws.listen();
    try {
      const r = await request(ws.port, 'GET', '/readyz');
      expect(r.status).toBe(503);
      expect(r.body).toMatchObject({ status: 'not_ready', checks: { listening: true, store: false } });
      expect((await request(ws.port, 'GET', '/healthz')).status).toBe(200);
      storeOpen = true;
      expect((await request(ws.port, 'GET', '/readyz')).status).toBe(200);
    } finally {
      await ws.shutdown();
    }
  });

  it("a server's metric families are the control center's (same names), less the supervisor's own", async () => {
    const server = await start();
    try {
      const names = (text: string): Set<string> => new Set([...text.matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1]!));
      const own = names((await request(server.port, 'GET', '/metrics')).text);
      const control = createPrometheusRegistry(new Map(), { snapshots: () => new Map() } as never);
      const aggregated = names(await control.metrics());
      for (const n of own) expect(aggregated.has(n), n).toBe(true);
      expect([...own].sort()).toEqual([
        'memory_server_associations',
        // Cluster mode only has samples (docs/cluster.md); the families are always declared.
        'memory_server_cluster_applied_seq',
        'memory_server_cluster_lag',
        'memory_server_cluster_member_lag',
        'memory_server_cluster_members',
        'memory_server_cluster_stream_seq',
        'memory_server_command_errors',
        'memory_server_command_latency_seconds',
        'memory_server_commands',
        'memory_server_component_resident_memory_bytes',
        'memory_server_connections',
        'memory_server_memories',
        'memory_server_queries_per_second',
        'memory_server_storage_bytes',
      ]);
    } finally {
      await server.close();
    }
  });
});
