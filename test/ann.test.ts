// retrieve's planner over the wire: the ANN graph for a big namespace, `exact: true`, a
// selective filter sent to the exact pass, `explain: true` saying which plan ran, and the
// plan counts in `stats`. The store is opened with a small graph threshold (annMinRows) so a
// few hundred memories get a graph.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryServer } from '../ts/server/memory.js';
import { HASH_DIMS, MemoryStore } from '../ts/native.js';
import { connect, silentLogger, until, type TestClient } from './helpers/ws-client.js';
import { request } from './helpers/http-api.js';

const dir = mkdtempSync(path.join(tmpdir(), 'memsrv-ann-'));
const ROWS = 600;

describe('retrieve planner (ANN graph)', () => {
  let server: MemoryServer;
  let store: MemoryStore;
  let c: TestClient;
  beforeAll(async () => {
    store = MemoryStore.open(dir, { dims: HASH_DIMS, fsync: 'off', annMinRows: 300 });
    server = new MemoryServer({ store, dataDir: dir, host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false, closeTimeoutMs: 2_000 });
    const info = await server.listen();
    c = await connect(`ws://127.0.0.1:${info.port}`);
    const items = Array.from({ length: ROWS }, (_, i) => ({
      id: `m${i}`,
      text: `note ${i} about topic ${i % 20} and detail ${(i * 7) % 13}`,
      metadata: { tag: i % 10 },
    }));
    const r = await c.request('store', { items });
    expect(r.status).toBe('success');
    await until(() => store.stats().annPending === 0, 30_000);
  });
  afterAll(async () => {
    c.close();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a big namespace is searched through its graph; exact: true forces the exact pass; both find the stored text first', async () => {
    expect(store.stats().annRows).toBe(ROWS);
    const query = 'note 123 about topic 3 and detail 11';
    const g = await c.request('retrieve', { query, count: 5, explain: true });
    expect(g.data.plan).toMatchObject({ plan: 'graph', reason: 'graph' });
    expect(g.data.plan.scored).toBeGreaterThan(0);
    expect(g.data.memories[0].id).toBe('m123');
    const e = await c.request('retrieve', { query, count: 5, explain: true, exact: true });
    expect(e.data.plan).toMatchObject({ plan: 'exact', reason: 'exact: true' });
    expect(e.data.memories[0].id).toBe('m123');
    // Scores are exact f32 cosines on both plans: the shared top hit scores the same.
    expect(g.data.memories[0].score).toBeCloseTo(e.data.memories[0].score, 6);
  });

  it('a selective filter goes to the exact pass over its candidates; without explain there is no plan in the reply', async () => {
    const r = await c.request('retrieve', { query: 'topic 4', count: 10, filter: { tag: 4 }, explain: true });
    expect(r.data.plan).toMatchObject({ plan: 'exact', reason: 'selective filter', filter_candidates: ROWS / 10 });
    expect(r.data.memories.length).toBe(10);
    for (const m of r.data.memories) expect(m.metadata.tag).toBe(4);
    const plain = await c.request('retrieve', { query: 'topic 4', count: 3 });
    expect(plain.data.plan).toBeUndefined();
    const top = await c.request('retrieve', { count: 3, explain: true });
    expect(top.data.plan).toMatchObject({ plan: 'significance' });
  });

  it('stats counts searches per plan; a non-boolean exact or explain is invalid_request naming the field', async () => {
    const before = (await c.request('stats')).data.plans;
    await c.request('retrieve', { query: 'topic 9', count: 3 });
    await c.request('retrieve', { query: 'topic 9', count: 3, exact: true });
    const after = (await c.request('stats')).data.plans;
    expect(after.graph - before.graph).toBe(1);
    expect(after.exact - before.exact).toBe(1);
    for (const field of ['exact', 'explain']) {
      const bad = await c.request('retrieve', { query: 'x', [field]: 'yes' });
      expect(bad).toMatchObject({ status: 'error', code: 'invalid_request' });
      expect(bad.message).toContain(`data.${field}`);
    }
  });

  it('ef sets the graph list of this query (explain shows it, at least count), the exact pass ignores it', async () => {
    const query = 'note 123 about topic 3 and detail 11';
    const planned = await c.request('retrieve', { query, count: 5, explain: true });
    expect(planned.data.plan).toMatchObject({ plan: 'graph', ef: 96 });
    const wide = await c.request('retrieve', { query, count: 5, explain: true, ef: 400 });
    expect(wide.data.plan).toMatchObject({ plan: 'graph', reason: 'graph', ef: 400 });
    // A longer list scores more nodes, and still finds the stored text first.
    expect(wide.data.plan.scored).toBeGreaterThan(planned.data.plan.scored);
    expect(wide.data.memories[0].id).toBe('m123');
    const short = await c.request('retrieve', { query, count: 5, explain: true, ef: 1 });
    expect(short.data.plan).toMatchObject({ plan: 'graph', ef: 5 });
    expect(short.data.memories.length).toBe(5);
    const exact = await c.request('retrieve', { query, count: 5, explain: true, exact: true, ef: 400 });
    expect(exact.data.plan).toMatchObject({ plan: 'exact', reason: 'exact: true', ef: 0 });
    expect(exact.data.memories.map((m: { id: string }) => m.id)).toEqual(wide.data.memories.map((m: { id: string }) => m.id));
    // Without explain: the same answer, no plan.
    const plain = await c.request('retrieve', { query, count: 5, ef: 400 });
    expect(plain.data.plan).toBeUndefined();
    expect(plain.data.memories.map((m: { id: string }) => m.id)).toEqual(wide.data.memories.map((m: { id: string }) => m.id));
  });

  it('an ef that is not an integer from 1 to 16384 is invalid_request naming data.ef, over the WebSocket and HTTP', async () => {
    const port = server.port;
    for (const ef of [0, -3, 16_385, 2.5, '96', null, true]) {
      const ws = await c.request('retrieve', { query: 'topic 2', ef });
      expect(ws, `ef ${String(ef)}`).toMatchObject({ status: 'error', code: 'invalid_request', data: { field: 'data.ef' } });
      expect(ws.message).toContain('data.ef');
      const http = await request(port, 'POST', '/v1/memories/search', { query: 'topic 2', ef });
      expect(http.status, `ef ${String(ef)}`).toBe(400);
      expect(http.body).toMatchObject({ status: 'error', code: 'invalid_request', data: { field: 'data.ef' } });
    }
    expect((await c.request('retrieve', { query: 'topic 2', ef: 16_384 })).status).toBe('success');
    const ok = await request(port, 'POST', '/v1/memories/search', { query: 'topic 2', count: 3, ef: 200, explain: true });
    expect(ok.status).toBe(200);
    expect(ok.body.plan).toMatchObject({ plan: 'graph', ef: 200 });
  });
});

describe('the graph threshold (annMinRows) of a server opening its own data directory', () => {
  // The same 400 memories: a server given annMinRows 300 builds a graph and searches it; one
  // left at the default (200,000) searches exactly.
  for (const [annMinRows, plan] of [
    [300, 'graph'],
    [undefined, 'exact'],
  ] as const) {
    it(`annMinRows ${annMinRows ?? 'default'}: the ${plan} plan answers`, async () => {
      const own = mkdtempSync(path.join(tmpdir(), 'memsrv-ann-opt-'));
      const server = new MemoryServer({ dataDir: own, fsync: 'off', host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false, closeTimeoutMs: 2_000, ...(annMinRows ? { annMinRows } : {}) });
      const info = await server.listen();
      const client = await connect(`ws://127.0.0.1:${info.port}`);
      try {
        const items = Array.from({ length: 400 }, (_, i) => ({ id: `n${i}`, text: `entry ${i} on subject ${i % 17}` }));
        expect((await client.request('store', { items })).status).toBe('success');
        await until(() => server.store.stats().annPending === 0, 30_000);
        const r = await client.request('retrieve', { query: 'entry 42 on subject 8', count: 3, explain: true });
        expect(r.data.plan.plan).toBe(plan);
        expect(r.data.memories[0].id).toBe('n42');
        expect(server.store.stats().annRows).toBe(plan === 'graph' ? 400 : 0);
      } finally {
        client.close();
        await server.close();
        rmSync(own, { recursive: true, force: true });
      }
    });
  }
});
