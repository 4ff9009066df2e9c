import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MemoryServer, type MemoryServerOptions } from '../ts/server/memory.js';
import { hashEmbed, HASH_DIMS } from '../ts/native.js';
import { signJwtHs256 } from '../ts/server/auth.js';
import { connect, silentLogger, until, type TestClient } from './helpers/ws-client.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'memsrv-test-'));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function start(options: MemoryServerOptions = {}): Promise<{ server: MemoryServer; url: string }> {
  const server = new MemoryServer({
    dataDir: tempDir(),
    host: '127.0.0.1',
    port: 0,
    logger: silentLogger,
    printListening: false,
    closeTimeoutMs: 2_000,
    ...options,
  });
  const info = await server.listen();
  return { server, url: `ws://127.0.0.1:${info.port}` };
}

describe('memory server', () => {
  let server: MemoryServer;
  let url: string;
  let c: TestClient;
  beforeAll(async () => {
    ({ server, url } = await start());
    c = await connect(url);
  });
  afterAll(async () => {
    c.close();
    await server.close();
  });

  it('store → reply shape, then get', async () => {
    const r = await c.request('store', { text: 'the cat sat on the mat', metadata: { type: 'user', n: 1 } });
    expect(r).toMatchObject({ status: 'success', type: 'store' });
    expect(typeof r.timestamp).toBe('string');
    const d = r.data;
    expect(Object.keys(d).sort()).toEqual(['associations', 'existing', 'id', 'significance', 'stats', 'timestamp']);
    expect(d.existing).toBe(false);
    expect(d.significance).toBeGreaterThan(0);
    expect(d.significance).toBeLessThanOrEqual(1);
    expect(new Date(d.timestamp).toISOString()).toBe(d.timestamp);
    expect(d.stats.total_memories).toBeGreaterThanOrEqual(1);
    const g = await c.request('get', { id: d.id });
    expect(g.data).toMatchObject({ id: d.id, namespace: 'default', text: 'the cat sat on the mat', metadata: { type: 'user', n: 1 } });
    expect(g.data.embedding).toBeUndefined();
    const ge = await c.request('get', { id: d.id, include_embeddings: true });
    expect(ge.data.embedding).toHaveLength(HASH_DIMS);
  });

  it('pipelined stores of one connection run together but land in request order; a later read sees them all', async () => {
    const { server: s2, url: u2 } = await start();
    try {
      const c2 = await connect(u2);
      const ids = Array.from({ length: 24 }, (_, i) => `pipe-${i}`);
      // A duplicate id inside the run and a bad request in the middle change nothing for the others.
      const sent = ids.map((id, i) => c2.request('store', { text: `pipelined memory number ${i}`, id, namespace: 'pipe' }));
      const dup = c2.request('store', { text: 'again', id: 'pipe-3', namespace: 'pipe' });
      const bad = c2.request('store', { text: '', namespace: 'pipe' });
      const list = c2.request('list', { namespace: 'pipe', limit: 100 });
      const replies = await Promise.all(sent);
      for (const r of replies) expect(r.status).toBe('success');
      expect((await dup).data.existing).toBe(true);
      expect((await bad).code).toBe('invalid_request');
      const listed = (await list).data.memories.map((m: { id: string }) => m.id);
      expect(listed).toEqual(ids); // log (seq) order = request order, and the list waited for all
      // Each reply counts the namespace right after its own store, even when stores shared a
      // commit (how many share one depends on timing; bench-store reports it).
      expect(replies.map((r) => r.data.stats.namespace_total)).toEqual(ids.map((_, i) => i + 1));
      c2.close();
    } finally {
      await s2.close();
    }
  });

  it('idempotent client ids → existing: true, nothing changes', async () => {
    const a = await c.request('store', { id: 'idem-1', text: 'first text', significance: 0.4 });
    expect(a.data).toMatchObject({ id: 'idem-1', existing: false, significance: 0.4 });
    const b = await c.request('store', { id: 'idem-1', text: 'other text', significance: 0.9 });
    expect(b.data).toMatchObject({ id: 'idem-1', existing: true, significance: 0.4 });
    const g = await c.request('get', { id: 'idem-1' });
    expect(g.data.text).toBe('first text');
  });

  it('batch store; all-or-nothing on a bad item', async () => {
    const ns = 'batch';
    const r = await c.request('store', { namespace: ns, items: [{ text: 'one' }, { text: 'two', id: 'b2' }, { text: 'three' }] });
    expect(r.data.items).toHaveLength(3);
    expect(r.data.items[1]).toMatchObject({ id: 'b2', existing: false });
    expect(r.data.stats.namespace_total).toBe(3);
    const bad = await c.request('store', { namespace: ns, items: [{ text: 'four' }, { text: '' }] });
    expect(bad).toMatchObject({ status: 'error', code: 'invalid_request' });
    expect(bad.message).toMatch(/^data\.items\[1\]\.text: /);
    const badDims = await c.request('store', { namespace: ns, items: [{ text: 'four' }, { text: 'x', embedding: [1, 2, 3] }] });
    expect(badDims).toMatchObject({ status: 'error', code: 'invalid_request' });
    expect(badDims.message).toContain('data.items[1].embedding');
    const n = await c.request('stats', { namespace: ns });
    expect(n.data.total_memories).toBe(3);
  });

  it('errors: exact messages and codes, connection stays open', async () => {
    c.send('not json{');
    const j = await c.waitFor((m) => m.code === 'invalid_json');
    expect(j).toMatchObject({ status: 'error', message: 'Invalid JSON format', error: 'Invalid JSON format' });
    const u = await c.request('foo', {});
    expect(u).toMatchObject({ status: 'error', type: 'foo', code: 'unknown_type', message: 'Unknown command type: foo' });
    const missing = await c.request('store', {});
    expect(missing).toMatchObject({ code: 'invalid_request', message: 'data.text: is required' });
    const wrong = await c.request('retrieve', { count: 0 });
    expect(wrong.code).toBe('invalid_request');
    expect(wrong.message).toMatch(/^data\.count: /);
    const tooMany = await c.request('retrieve', { count: 5000 });
    expect(tooMany.message).toMatch(/^data\.count: /);
    const big = await c.request('store', { text: 'x'.repeat(70_000) });
    expect(big).toMatchObject({ code: 'payload_too_large' });
    expect(big.message).toContain('data.text');
    const bigMeta = await c.request('store', { text: 'y', metadata: { blob: 'z'.repeat(17_000) } });
    expect(bigMeta).toMatchObject({ code: 'payload_too_large' });
    expect(bigMeta.message).toContain('data.metadata');
    const longId = await c.request('store', { text: 'y', id: 'i'.repeat(300) });
    expect(longId.code).toBe('payload_too_large');
    const nf = await c.request('get', { id: 'nope' });
    expect(nf).toMatchObject({ code: 'not_found', message: 'Memory not found: nope' });
    const nfd = await c.request('delete', { id: 'nope' });
    expect(nfd.code).toBe('not_found');
    const nfu = await c.request('update', { id: 'nope', significance: 0.5 });
    expect(nfu.code).toBe('not_found');
    const badFilter = await c.request('retrieve', { filter: { a: { $regex: 'x' } } });
    expect(badFilter.code).toBe('invalid_request');
    expect(badFilter.message).toContain('data.filter');
    const badSince = await c.request('retrieve', { since: 'yesterday' });
    expect(badSince.message).toMatch(/^data\.since: /);
    const ok = await c.request('namespaces');
    expect(ok.status).toBe('success');
  });

  it('retrieve without query: significance order, min_significance, count, type shorthand', async () => {
    const ns = 'order';
    await c.request('store', {
      namespace: ns,
      items: [
        { text: 'low', significance: 0.1, metadata: { type: 'a' } },
        { text: 'high', significance: 0.9, metadata: { type: 'b' } },
        { text: 'mid', significance: 0.5, metadata: { type: 'a' } },
        { text: 'mid newer', significance: 0.5, metadata: { type: 'a' } },
      ],
    });
    const r = await c.request('retrieve', { namespace: ns, count: 10 });
    expect(r.data.memories.map((m: any) => m.text)).toEqual(['high', 'mid newer', 'mid', 'low']);
    const m = r.data.memories[0];
    expect(Object.keys(m).sort()).toEqual(['associations', 'id', 'metadata', 'namespace', 'significance', 'text', 'timestamp']);
    const min = await c.request('retrieve', { namespace: ns, min_significance: 0.4 });
    expect(min.data.memories).toHaveLength(3);
    const two = await c.request('retrieve', { namespace: ns, count: 2 });
    expect(two.data.memories).toHaveLength(2);
    const typed = await c.request('retrieve', { namespace: ns, type: 'a', count: 10 });
    expect(typed.data.memories.map((x: any) => x.text)).toEqual(['mid newer', 'mid', 'low']);
    const emb = await c.request('retrieve', { namespace: ns, count: 1, include_embeddings: true });
    expect(emb.data.memories[0].embedding).toHaveLength(HASH_DIMS);
  });

  it('retrieve with query / embedding: score order, min_score, recency', async () => {
    const ns = 'semantic';
    await c.request('store', {
      namespace: ns,
      items: [
        { text: 'apples and oranges are fruit' },
        { text: 'the stock market fell today' },
        { text: 'bananas are yellow fruit' },
      ],
    });
    const r = await c.request('retrieve', { namespace: ns, query: 'apples and oranges are fruit', count: 3 });
    const ms = r.data.memories;
    expect(ms[0].text).toBe('apples and oranges are fruit');
    expect(ms[0].score).toBeCloseTo(1, 3);
    for (let i = 1; i < ms.length; i++) expect(ms[i - 1].score).toBeGreaterThanOrEqual(ms[i].score);
    const e = Array.from(hashEmbed(['bananas are yellow fruit']));
    const byEmb = await c.request('retrieve', { namespace: ns, embedding: e, count: 1 });
    expect(byEmb.data.memories[0].text).toBe('bananas are yellow fruit');
    const strict = await c.request('retrieve', { namespace: ns, query: 'apples and oranges are fruit', min_score: 0.99 });
    expect(strict.data.memories).toHaveLength(1);
    const rec = await c.request('retrieve', { namespace: ns, query: 'apples and oranges are fruit', recency_half_life_s: 3600 });
    expect(rec.data.memories[0].score).toBeLessThanOrEqual(1);
    expect(rec.data.memories[0].score).toBeGreaterThan(0.99);
  });

  it('filter operators', async () => {
    const ns = 'filters';
    await c.request('store', {
      namespace: ns,
      items: [
        { text: 'f1', metadata: { n: 1, tag: 'x' } },
        { text: 'f2', metadata: { n: 2, tag: 'y' } },
        { text: 'f3', metadata: { n: 3 } },
      ],
    });
    const q = async (filter: unknown) =>
      ((await c.request('retrieve', { namespace: ns, filter, count: 10 })).data.memories as any[]).map((m) => m.text).sort();
    expect(await q({ n: 2 })).toEqual(['f2']);
    expect(await q({ n: { $gt: 1 } })).toEqual(['f2', 'f3']);
    expect(await q({ n: { $gte: 1, $lt: 3 } })).toEqual(['f1', 'f2']);
    expect(await q({ n: { $lte: 1 } })).toEqual(['f1']);
    expect(await q({ tag: { $in: ['x', 'y'] } })).toEqual(['f1', 'f2']);
    expect(await q({ tag: { $nin: ['x'] } })).toEqual(['f2', 'f3']);
    expect(await q({ tag: { $ne: 'x' } })).toEqual(['f2', 'f3']);
    expect(await q({ tag: { $exists: false } })).toEqual(['f3']);
    expect(await q({ tag: 'x', n: 1 })).toEqual(['f1']);
    const l = await c.request('list', { namespace: ns, filter: { n: { $gte: 2 } } });
    expect(l.data.memories.map((m: any) => m.text)).toEqual(['f2', 'f3']);
  });

  it('since / until', async () => {
    const ns = 'time';
    await c.request('store', { namespace: ns, text: 'old one' });
    await new Promise((r) => setTimeout(r, 20));
    const mid = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 20));
    await c.request('store', { namespace: ns, text: 'new one' });
    const after = await c.request('retrieve', { namespace: ns, since: mid });
    expect(after.data.memories.map((m: any) => m.text)).toEqual(['new one']);
    const before = await c.request('retrieve', { namespace: ns, until: mid });
    expect(before.data.memories.map((m: any) => m.text)).toEqual(['old one']);
  });

  it('list pagination in store order', async () => {
    const ns = 'paging';
    const items = Array.from({ length: 25 }, (_, i) => ({ text: `item ${i}`, id: `p${i}` }));
    await c.request('store', { namespace: ns, items });
    const seen: string[] = [];
    let cursor: string | null | undefined;
    for (let guard = 0; guard < 10; guard++) {
      const r = await c.request('list', { namespace: ns, limit: 10, ...(cursor ? { cursor } : {}) });
      seen.push(...r.data.memories.map((m: any) => m.id));
      cursor = r.data.next_cursor;
      if (cursor === null) break;
      expect(typeof cursor).toBe('string');
    }
    expect(seen).toEqual(items.map((i) => i.id));
    const bad = await c.request('list', { namespace: ns, cursor: 'garbage' });
    expect(bad.code).toBe('invalid_request');
  });

  it('update: metadata replaced, significance; immutable fields refused', async () => {
    const s = await c.request('store', { text: 'to update', metadata: { a: 1, b: 2 } });
    const u = await c.request('update', { id: s.data.id, metadata: { c: 3 }, significance: 0.77 });
    expect(u.data).toMatchObject({ id: s.data.id, metadata: { c: 3 }, significance: 0.77, text: 'to update' });
    const g = await c.request('get', { id: s.data.id });
    expect(g.data.metadata).toEqual({ c: 3 });
    const t = await c.request('update', { id: s.data.id, text: 'changed' });
    expect(t).toMatchObject({ code: 'invalid_request' });
    expect(t.message).toMatch(/^data\.text: cannot change/);
    const e = await c.request('update', { id: s.data.id, embedding: [1] });
    expect(e.message).toMatch(/^data\.embedding: cannot change/);
  });

  it('delete by id, ids, filter, all', async () => {
    const ns = 'del';
    await c.request('store', {
      namespace: ns,
      items: [1, 2, 3, 4, 5].map((i) => ({ id: `d${i}`, text: `del ${i}`, metadata: { k: i % 2 } })),
    });
    expect((await c.request('delete', { namespace: ns, id: 'd1' })).data).toEqual({ deleted: 1, not_found: [] });
    expect((await c.request('delete', { namespace: ns, ids: ['d2', 'zz'] })).data).toEqual({ deleted: 1, not_found: ['zz'] });
    expect((await c.request('delete', { namespace: ns, filter: { k: 1 } })).data).toEqual({ deleted: 2, not_found: [] });
    const none = await c.request('delete', { namespace: ns });
    expect(none.code).toBe('invalid_request');
    expect((await c.request('delete', { namespace: ns, all: true })).data).toEqual({ deleted: 1, not_found: [] });
    expect((await c.request('stats', { namespace: ns })).data.total_memories).toBe(0);
  });

  it('namespaces are isolated and listed', async () => {
    await c.request('store', { namespace: 'iso-a', text: 'secret of a', id: 'same' });
    await c.request('store', { namespace: 'iso-b', text: 'secret of b', id: 'same' });
    expect((await c.request('get', { namespace: 'iso-a', id: 'same' })).data.text).toBe('secret of a');
    expect((await c.request('get', { namespace: 'iso-b', id: 'same' })).data.text).toBe('secret of b');
    const r = await c.request('retrieve', { namespace: 'iso-a', query: 'secret of b', count: 10 });
    expect(r.data.memories.map((m: any) => m.text)).toEqual(['secret of a']);
    const ns = await c.request('namespaces');
    const names = ns.data.namespaces.map((n: any) => n.name);
    expect(names).toEqual(expect.arrayContaining(['iso-a', 'iso-b', 'default']));
    expect(ns.data.namespaces.find((n: any) => n.name === 'iso-a')).toEqual({ name: 'iso-a', total_memories: 1 });
  });

  it('pipelined store then retrieve on one connection sees the store; replies in order', async () => {
    const ns = 'pipe';
    const ids = ['p-a', 'p-b', 'p-c'];
    const waits = ids.map((id) => c.waitFor((m) => m.id === id));
    c.send({ type: 'store', id: 'p-a', data: { namespace: ns, text: 'pipelined text' } });
    c.send({ type: 'retrieve', id: 'p-b', data: { namespace: ns } });
    c.send({ type: 'retrieve', id: 'p-c', data: { namespace: ns, query: 'pipelined text' } });
    const [, b, cc] = await Promise.all(waits);
    expect(b.data.memories).toHaveLength(1);
    expect(cc.data.memories[0].text).toBe('pipelined text');
    const order = c.messages.filter((m: any) => ids.includes(m.id)).map((m: any) => m.id);
    expect(order).toEqual(ids);
  });

  it('binary MessagePack frames: float32 embeddings in and out', async () => {
    const emb = hashEmbed(['binary memory']);
    const r = await c.request('store', { namespace: 'bin', text: 'binary memory', embedding: emb }, { binary: true });
    expect((r as any).__binary).toBe(true);
    expect(r.status).toBe('success');
    const g = await c.request('get', { namespace: 'bin', id: r.data.id, include_embeddings: true }, { binary: true });
    expect(g.data.embedding).toBeInstanceOf(Float32Array);
    const back = g.data.embedding as Float32Array;
    for (let i = 0; i < emb.length; i++) expect(Math.abs(back[i]! - emb[i]!)).toBeLessThan(1e-6);
    const q = await c.request('retrieve', { namespace: 'bin', embedding: emb }, { binary: true });
    expect(q.data.memories[0].score).toBeCloseTo(1, 4);
  });

  it('stats fields (global and per namespace)', async () => {
    const s = await c.request('stats');
    for (const k of [
      'total_memories',
      'memory_count',
      'dims',
      'model',
      'device',
      'storage_bytes',
      'storage_path',
      'connections',
      'uptime_s',
      'queries_per_second',
      'avg_latency_ms',
      'fsync',
      'namespaces',
    ]) {
      expect(s.data).toHaveProperty(k);
    }
    expect(s.data).toMatchObject({ dims: HASH_DIMS, model: 'hash-v1', device: 'cpu', fsync: 'always', connections: 1 });
    expect(s.data.memory_count).toBe(s.data.total_memories);
    const n = await c.request('stats', { namespace: 'iso-a' });
    expect(n.data.total_memories).toBe(1);
    expect(n.data.totals.total_memories).toBe(s.data.total_memories);
  });
});

describe('memory server events', () => {
  let server: MemoryServer;
  let url: string;
  beforeAll(async () => {
    ({ server, url } = await start());
  });
  afterAll(async () => {
    await server.close();
  });

  it('subscribe: added / updated / removed for own namespace only', async () => {
    const sub = await connect(url);
    const other = await connect(url);
    const writer = await connect(url);
    const r = await sub.request('subscribe', { namespace: 'ev' });
    expect(r.data).toMatchObject({ events: ['memory_added', 'memory_updated', 'memory_removed'], namespace: 'ev' });
    expect(typeof r.data.seq).toBe('number');
    await other.request('subscribe', { namespace: 'ev-other' });
    const s = await writer.request('store', { namespace: 'ev', text: 'event text', id: 'e1', metadata: { x: 1 } });
    const added = await sub.waitFor((m) => m.type === 'memory_added');
    expect(added).toMatchObject({ status: 'success', type: 'memory_added', data: { memory: { id: 'e1', namespace: 'ev', text: 'event text', metadata: { x: 1 } } } });
    expect(added.data.memory.embedding).toBeUndefined();
    expect(added.data.seq).toBeGreaterThan(r.data.seq);
    expect(typeof added.timestamp).toBe('string');
    await writer.request('update', { namespace: 'ev', id: 'e1', significance: 0.3 });
    const upd = await sub.waitFor((m) => m.type === 'memory_updated');
    expect(upd.data.memory.significance).toBeCloseTo(0.3);
    await writer.request('delete', { namespace: 'ev', id: 'e1' });
    const rem = await sub.waitFor((m) => m.type === 'memory_removed');
    expect(rem.data.memory.id).toBe('e1');
    expect(rem.data.seq).toBeGreaterThan(upd.data.seq);
    expect(s.data.existing).toBe(false);
    // Barrier: a request on `other` after the events; it got none of them.
    await other.request('stats');
    expect(other.messages.filter((m: any) => String(m.type).startsWith('memory_'))).toHaveLength(0);
    // unsubscribe
    const un = await sub.request('unsubscribe', { namespace: 'ev' });
    expect(un.data.events).toEqual([]);
    await writer.request('store', { namespace: 'ev', text: 'after unsubscribe' });
    await sub.request('stats');
    expect(sub.messages.filter((m: any) => m.type === 'memory_added')).toHaveLength(1);
    sub.close();
    other.close();
    writer.close();
  });

  it('since_seq replays missed events first, in order; event filter', async () => {
    const w = await connect(url);
    const first = await w.request('store', { namespace: 'replay', text: 'r0' });
    const sub0 = await connect(url);
    const base = (await sub0.request('subscribe', { namespace: 'replay' })).data.seq;
    sub0.close();
    await w.request('store', { namespace: 'replay', items: [{ text: 'r1', id: 'r1' }, { text: 'r2', id: 'r2' }] });
    await w.request('delete', { namespace: 'replay', id: 'r1' });
    const sub = await connect(url);
    const reply = await sub.request('subscribe', { namespace: 'replay', since_seq: base });
    const idx = sub.messages.indexOf(reply);
    const replayed = sub.messages.slice(0, idx) as any[];
    expect(replayed.map((m) => [m.type, m.data.memory.id])).toEqual([
      ['memory_added', 'r1'],
      ['memory_added', 'r2'],
      ['memory_removed', 'r1'],
    ]);
    expect(reply.data.replayed).toBe(3);
    const seqs = replayed.map((m) => m.data.seq);
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
    const only = await connect(url);
    const r2 = await only.request('subscribe', { namespace: 'replay', since_seq: base, events: ['memory_removed'] });
    expect(r2.data.events).toEqual(['memory_removed']);
    expect(only.messages.filter((m: any) => m.type === 'memory_added')).toHaveLength(0);
    expect(only.messages.filter((m: any) => m.type === 'memory_removed')).toHaveLength(1);
    expect(first.data.existing).toBe(false);
    w.close();
    sub.close();
    only.close();
  });

  it('JWT ns claim limits namespaces', async () => {
    const secret = 'jwt-secret-for-tests';
    const { server: s2, url: u2 } = await start({ jwtSecret: secret });
    const token = signJwtHs256({ ns: ['mine'], exp: Math.floor(Date.now() / 1000) + 60 }, secret);
    const cl = await connect(`${u2}/?token=${token}`);
    expect((await cl.request('store', { namespace: 'mine', text: 'ok' })).status).toBe('success');
    const denied = await cl.request('store', { namespace: 'theirs', text: 'no' });
    expect(denied.code).toBe('invalid_request');
    expect(denied.message).toContain('data.namespace');
    const dflt = await cl.request('retrieve', {});
    expect(dflt.status).toBe('error');
    cl.close();
    await s2.close();
  });
});

describe('memory server persistence and locking', () => {
  const servers: MemoryServer[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) await s.close();
  });

  it('persists across restart on the same data dir', async () => {
    const dataDir = tempDir();
    const a = await start({ dataDir });
    servers.push(a.server);
    const cl = await connect(a.url);
    await cl.request('store', { id: 'keep', text: 'persist me', metadata: { v: 1 } });
    await cl.request('store', { namespace: 'other', text: 'persist too' });
    const closed = cl.closed;
    await a.server.close();
    expect((await closed).code).toBe(1001);
    const b = await start({ dataDir });
    servers.push(b.server);
    const cl2 = await connect(b.url);
    const g = await cl2.request('get', { id: 'keep' });
    expect(g.data).toMatchObject({ text: 'persist me', metadata: { v: 1 } });
    expect((await cl2.request('stats')).data.total_memories).toBe(2);
    cl2.close();
  });

  it('a second server on the same data dir fails clearly (locked)', async () => {
    const dataDir = tempDir();
    const a = await start({ dataDir });
    servers.push(a.server);
    const second = new MemoryServer({ dataDir, host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false });
    await expect(second.listen()).rejects.toThrow(/locked/);
  });

  it('ttl_s expires memories from reads', async () => {
    const a = await start();
    servers.push(a.server);
    const cl = await connect(a.url);
    const r = await cl.request('store', { text: 'short lived', ttl_s: 0.05, id: 'ttl' });
    expect(r.status).toBe('success');
    await until(() => a.server.store.get('default', 'ttl', false) === null, 3_000);
    expect((await cl.request('get', { id: 'ttl' })).code).toBe('not_found');
    cl.close();
  });
});
