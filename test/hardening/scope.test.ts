/**
 * Issue #23 (12): a connection limited to some namespaces (JWT `ns`) sees only its own
 * namespaces — in `stats`, `namespaces` and the store reply — and the public `GET /` shows no
 * counts once auth is configured.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryServer, type MemoryServerOptions } from '../../ts/server/memory.js';
import { signJwtHs256 } from '../../ts/server/auth.js';
import { connect, httpRequest, silentLogger, type TestClient } from '../helpers/ws-client.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function start(options: MemoryServerOptions = {}): Promise<{ server: MemoryServer; port: number }> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'hardening-scope-'));
  dirs.push(dataDir);
  const server = new MemoryServer({ dataDir, host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false, closeTimeoutMs: 2_000, ...options });
  const { port } = await server.listen();
  return { server, port };
}

const GLOBAL_ONLY = ['storage_path', 'storage_bytes', 'total_associations', 'fsyncs', 'last_seq', 'connections', 'queries_per_second', 'avg_latency_ms'];

describe('namespace-restricted connections', () => {
  const secret = 'scope-secret';
  const token = 'admin-token';
  let server: MemoryServer;
  let port: number;
  let admin: TestClient;
  let mine: TestClient;
  const exp = Math.floor(Date.now() / 1000) + 600;

  beforeAll(async () => {
    ({ server, port } = await start({ jwtSecret: secret, token }));
    admin = await connect(`ws://127.0.0.1:${port}/`, { headers: { Authorization: `Bearer ${token}` } });
    for (let i = 0; i < 5; i++) await admin.request('store', { namespace: 'other', text: `someone else's memory ${i}` });
    await admin.request('store', { namespace: 'mine', text: 'my first memory' });
    await admin.request('store', { namespace: 'also-mine', text: 'my second namespace' });
    mine = await connect(`ws://127.0.0.1:${port}/`, {
      headers: { Authorization: `Bearer ${signJwtHs256({ ns: ['mine', 'also-mine', 'empty-mine'], exp }, secret)}` },
    });
  });
  afterAll(async () => {
    admin?.close();
    mine?.close();
    await server?.close();
  });

  it('stats reports only its namespaces: no global totals, bytes, path or activity', async () => {
    const all = (await admin.request('stats')).data;
    expect(all.total_memories).toBe(7);
    expect(all.storage_path).toBeTypeOf('string');
    const s = (await mine.request('stats')).data;
    expect(s).toMatchObject({ total_memories: 2, memory_count: 2, namespaces: 2, dims: all.dims, model: all.model, fsync: all.fsync });
    for (const k of GLOBAL_ONLY) expect(s, k).not.toHaveProperty(k);
    expect(JSON.stringify(s)).not.toContain(server.dataDir);
  });

  it('stats for one namespace carries totals over its own namespaces only; others are refused', async () => {
    const s = (await mine.request('stats', { namespace: 'mine' })).data;
    expect(s).toMatchObject({ namespace: 'mine', total_memories: 1, namespaces: 1, totals: { total_memories: 2, memory_count: 2, namespaces: 2 } });
    for (const k of GLOBAL_ONLY) expect(s, k).not.toHaveProperty(k);
    const denied = await mine.request('stats', { namespace: 'other' });
    expect(denied).toMatchObject({ status: 'error', code: 'invalid_request' });
  });

  it('namespaces lists only its own', async () => {
    const names = (await mine.request('namespaces')).data.namespaces.map((n: { name: string }) => n.name).sort();
    expect(names).toEqual(['also-mine', 'mine']);
  });

  it('the store reply never counts memories outside its namespaces', async () => {
    const r = await mine.request('store', { namespace: 'mine', text: 'one more of mine' });
    expect(r.status).toBe('success');
    expect(r.data.stats.total_memories).toBeLessThanOrEqual(3);
    for (const v of Object.values(r.data.stats as Record<string, number>)) expect(v).toBeLessThanOrEqual(3);
    const b = await mine.request('store', { namespace: 'also-mine', items: [{ text: 'batch of mine' }] });
    for (const v of Object.values(b.data.stats as Record<string, number>)) expect(v).toBeLessThanOrEqual(4);
  });

  it('public GET / shows no counts when auth is configured', async () => {
    const r = await httpRequest(port, 'GET', '/');
    expect(r.status).toBe(200);
    const info = JSON.parse(r.body);
    expect(info.service).toBe('memory-server');
    expect(info).not.toHaveProperty('total_memories');
  });
});

describe('without auth', () => {
  it('GET / and stats keep the global figures', async () => {
    const { server, port } = await start();
    try {
      const c = await connect(`ws://127.0.0.1:${port}/`);
      await c.request('store', { namespace: 'a', text: 'x' });
      await c.request('store', { namespace: 'b', text: 'y' });
      expect(JSON.parse((await httpRequest(port, 'GET', '/')).body).total_memories).toBe(2);
      const s = (await c.request('stats')).data;
      expect(s).toMatchObject({ total_memories: 2, namespaces: 2 });
      expect(s.storage_path).toBeTypeOf('string');
      c.close();
    } finally {
      await server.close();
    }
  });
});
