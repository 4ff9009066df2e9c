/**
 * Cluster mode on one nats-server with an R1 stream (the development set-up): writes go
 * through the stream and every instance applies them; replies come after the publish ack
 * and the local apply; events carry the stream sequence; `stats.cluster`; `min_seq`;
 * restart from the checkpoint. (Three NATS servers, kills and partitions:
 * cluster-ha.test.ts.)
 */
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryServer } from '../ts/server/memory.js';
import { parseArgs, resolveConfig } from '../ts/cli/config.js';
import { NATS_SERVER, startNats, until, type NatsCluster } from './helpers/cluster.js';
import { contentDigest } from './helpers/cluster-content.js';
import { connect as natsConnect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { Objm } from '@nats-io/obj';
import type { ClusterOptions } from '../ts/cluster/options.js';
import { connect, silentLogger, type TestClient } from './helpers/ws-client.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'memsrv-cluster-'));
  dirs.push(d);
  return d;
}

async function member(nats: NatsCluster, nodeId: string, dataDir = tempDir(), name = 'dev', extra: Partial<ClusterOptions> = {}): Promise<{ server: MemoryServer; url: string; dataDir: string }> {
  const server = new MemoryServer({
    dataDir,
    host: '127.0.0.1',
    port: 0,
    logger: silentLogger,
    printListening: false,
    closeTimeoutMs: 2_000,
    rateLimit: false,
    cluster: { servers: nats.urls, nodeId, name, ...extra },
  });
  const info = await server.listen();
  return { server, url: `ws://127.0.0.1:${info.port}`, dataDir };
}

describe('cluster options', () => {
  it('--cluster takes nats:// URLs; the other cluster flags need it', () => {
    const cfg = resolveConfig(parseArgs(['--cluster', 'nats://a:4222,nats://b:4222', '--node-id', 'x', '--cluster-replicas', '3']), {});
    expect(cfg).toMatchObject({ cluster: ['nats://a:4222', 'nats://b:4222'], nodeId: 'x', clusterReplicas: 3 });
    expect(() => resolveConfig(parseArgs(['--node-id', 'x']), {})).toThrow(/--node-id .*only applies with --cluster/);
    expect(() => resolveConfig(parseArgs(['--cluster', 'http://a:4222']), {})).toThrow(/--cluster .*must be nats:\/\/host:port URLs/);
    expect(() => resolveConfig(parseArgs(['--cluster', 'nats://a:4222', '--cluster-replicas', '7']), {})).toThrow(/--cluster-replicas/);
  });
});

describe.skipIf(!NATS_SERVER)('cluster: one nats-server, R1 stream', () => {
  let nats: NatsCluster;
  let a: { server: MemoryServer; url: string; dataDir: string };
  let b: { server: MemoryServer; url: string; dataDir: string };
  let ca: TestClient;
  let cb: TestClient;
  beforeAll(async () => {
    nats = await startNats(1);
    a = await member(nats, 'a');
    b = await member(nats, 'b');
    ca = await connect(a.url);
    cb = await connect(b.url);
  }, 60_000);
  afterAll(async () => {
    ca?.close();
    cb?.close();
    await a?.server.close();
    await b?.server.close();
    nats?.cleanup();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('a store through A is answered after A applied it, and B applies it too; events carry the stream sequence', async () => {
    const sub = await cb.request('subscribe', { namespace: 'ev' });
    expect(sub.status).toBe('success');
    const r = await ca.request('store', { namespace: 'ev', text: 'replicated through the stream', metadata: { k: 1 } });
    expect(r.status).toBe('success');
    expect(r.data.existing).toBe(false);
    // The writer reads its own write at once, on its own instance.
    const ga = await ca.request('get', { namespace: 'ev', id: r.data.id });
    expect(ga.data).toMatchObject({ text: 'replicated through the stream', significance: r.data.significance, timestamp: r.data.timestamp });
    const ev = await cb.waitFor((m) => m.type === 'memory_added' && m.data.memory.id === r.data.id);
    const st = await ca.request('stats');
    expect(st.data.cluster).toMatchObject({ node_id: 'a', applied_seq: expect.any(Number), stream_seq: expect.any(Number), lag: expect.any(Number), nats_server: expect.any(String) });
    // The event's seq is the stream sequence of the write, the same on every instance.
    expect(ev.data.seq).toBe(st.data.cluster.applied_seq);
    const gb = await cb.request('get', { namespace: 'ev', id: r.data.id, min_seq: ev.data.seq });
    expect(gb.data).toEqual(ga.data);
    const sb = await cb.request('stats');
    expect(sb.data.cluster).toMatchObject({ node_id: 'b', applied_seq: ev.data.seq, lag: 0 });
  });

  it('writes through both instances converge: same content, significance, timestamps and vectors', async () => {
    const texts = Array.from({ length: 60 }, (_, i) => `memory ${i} about ${['cats', 'dogs', 'birds'][i % 3]} and ${i % 7}`);
    await Promise.all(
      texts.map((text, i) => (i % 2 === 0 ? ca : cb).request('store', { namespace: 'conv', text, metadata: { i, type: i % 3 === 0 ? 'x' : 'y' }, ...(i % 5 === 0 ? { ttl_s: 3600 } : {}) })),
    );
    // A batch, and one with a client id through each instance (stored once).
    const batch = await ca.request('store', { namespace: 'conv', items: texts.slice(0, 5).map((t, i) => ({ text: `${t} (batch)`, id: `b${i}` })) });
    expect(batch.status).toBe('success');
    const [x, y] = await Promise.all([ca.request('store', { namespace: 'conv', text: 'same id twice', id: 'dup' }), cb.request('store', { namespace: 'conv', text: 'same id twice', id: 'dup' })]);
    expect([x.data.existing, y.data.existing].sort()).toEqual([false, true]);
    expect(x.data.significance).toBe(y.data.significance);
    const seq = (await ca.request('stats')).data.cluster.stream_seq;
    await until(async () => (await cb.request('stats')).data.cluster.applied_seq >= seq, 10_000, 'B to catch up');
    const da = await contentDigest(ca, ['conv']);
    const db = await contentDigest(cb, ['conv']);
    expect(da.count).toBe(60 + 5 + 1);
    expect(db.digest).toBe(da.digest);
    expect(da.memories.filter((m) => m.expires_at !== undefined)).toHaveLength(12);
  });

  it('update, delete by ids and by filter replicate, with one event each on every instance', async () => {
    const sub = await cb.request('subscribe', { namespace: 'upd' });
    const stored = await Promise.all([1, 2, 3, 4].map((i) => ca.request('store', { namespace: 'upd', text: `to change ${i}`, id: `u${i}`, metadata: { g: i % 2 } })));
    expect(stored.every((r) => r.status === 'success')).toBe(true);
    const u = await cb.request('update', { namespace: 'upd', id: 'u1', metadata: { g: 9 }, significance: 0.25 });
    expect(u.data).toMatchObject({ id: 'u1', metadata: { g: 9 }, significance: 0.25 });
    const missing = await cb.request('update', { namespace: 'upd', id: 'nope', significance: 0.5 });
    expect(missing).toMatchObject({ status: 'error', code: 'not_found' });
    const d = await ca.request('delete', { namespace: 'upd', ids: ['u2', 'zz'] });
    expect(d.data).toEqual({ deleted: 1, not_found: ['zz'] });
    const f = await cb.request('delete', { namespace: 'upd', filter: { g: 1 } });
    expect(f.data).toEqual({ deleted: 1, not_found: [] });
    const seq = (await cb.request('stats')).data.cluster.applied_seq;
    const ga = await ca.request('get', { namespace: 'upd', id: 'u1', min_seq: seq });
    expect(ga.data).toMatchObject({ metadata: { g: 9 }, significance: 0.25 });
    for (const id of ['u2', 'u3']) expect((await ca.request('get', { namespace: 'upd', id })).code).toBe('not_found');
    expect((await contentDigest(ca, ['upd'])).digest).toBe((await contentDigest(cb, ['upd'])).digest);
    const events = cb.messages.filter((m: any) => m.type?.startsWith('memory_') && m.data.memory.namespace === 'upd') as any[];
    expect(events.map((e) => e.type)).toEqual(['memory_added', 'memory_added', 'memory_added', 'memory_added', 'memory_updated', 'memory_removed', 'memory_removed']);
    const seqs = events.map((e) => e.data.seq);
    expect([...seqs].sort((p, q) => p - q)).toEqual(seqs);
    expect(sub.data.seq).toBeLessThan(seqs[0]);
  });

  it('a write larger than the NATS max_payload is refused with payload_too_large, storing nothing', async () => {
    const items = Array.from({ length: 1000 }, (_, i) => ({ text: `${'long text '.repeat(150)} ${i}`, id: `big-${i}` }));
    const r = await ca.request('store', { namespace: 'big', items });
    expect(r).toMatchObject({ status: 'error', code: 'payload_too_large', data: { field: 'data.items', limit: 1024 * 1024 } });
    expect(r.message).toMatch(/max_payload/);
    expect((await ca.request('namespaces')).data.namespaces.find((n: { name: string }) => n.name === 'big')).toBeUndefined();
  });

  it('min_seq beyond what exists waits (bounded) and fails with unavailable, changing nothing', async () => {
    const applied = (await ca.request('stats')).data.cluster.applied_seq;
    const t0 = Date.now();
    const r = await ca.request('retrieve', { query: 'anything', min_seq: applied + 1000 });
    expect(r).toMatchObject({ status: 'error', code: 'unavailable', data: { reason: 'min_seq_timeout', min_seq: applied + 1000 } });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(4000);
    const ok = await ca.request('retrieve', { query: 'cats', min_seq: applied, namespace: 'conv' });
    expect(ok.status).toBe('success');
    expect((await ca.request('stats')).data.cluster.applied_seq).toBe(applied);
  }, 20_000);

  it('an instance restarted on its data directory resumes after its checkpoint: nothing applied twice, nothing missed', async () => {
    const before = await contentDigest(cb, ['conv', 'upd', 'ev']);
    cb.close();
    await b.server.close();
    // Written while B is away.
    for (let i = 0; i < 10; i++) expect((await ca.request('store', { namespace: 'conv', text: `while b was down ${i}` })).status).toBe('success');
    await ca.request('delete', { namespace: 'conv', id: 'dup' });
    b = await member(nats, 'b', b.dataDir);
    cb = await connect(b.url);
    const seq = (await ca.request('stats')).data.cluster.applied_seq;
    const g = await cb.request('get', { namespace: 'conv', id: 'b0', min_seq: seq });
    expect(g.status).toBe('success');
    const da = await contentDigest(ca, ['conv', 'upd', 'ev']);
    const db = await contentDigest(cb, ['conv', 'upd', 'ev']);
    expect(db.digest).toBe(da.digest);
    expect(db.count).toBe(before.count + 10 - 1);
  }, 30_000);

  it('a data directory holding memories written outside the cluster is refused with a clear error', async () => {
    const dir = tempDir();
    const single = new MemoryServer({ dataDir: dir, host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false });
    await single.listen();
    const c = await connect(`ws://127.0.0.1:${single.port}`);
    await c.request('store', { text: 'not in the stream' });
    c.close();
    await single.close();
    await expect(member(nats, 'c', dir)).rejects.toThrow(/holds memories that are not in the cluster's write log/);
  });
});

describe.skipIf(!NATS_SERVER)('cluster: a long-absent member restores the latest snapshot', () => {
  let nats: NatsCluster;
  let a: { server: MemoryServer; url: string; dataDir: string };
  let b: { server: MemoryServer; url: string; dataDir: string } | null = null;
  beforeAll(async () => {
    nats = await startNats(1);
  }, 30_000);
  afterAll(async () => {
    await b?.server.close();
    await a?.server.close();
    nats?.cleanup();
  });

  it('B stops, A writes, the stream is purged up to a snapshot: B restarts on its old directory, swaps in the snapshot and converges', async () => {
    const fast = { snapshotIntervalS: 1 };
    a = await member(nats, 'a', tempDir(), 'stale', fast);
    b = await member(nats, 'b', tempDir(), 'stale', fast);
    const ca = await connect(a.url);
    let cb = await connect(b.url);
    for (let i = 0; i < 20; i++) expect((await ca.request('store', { namespace: 'st', text: `before ${i}`, id: `p${i}`, metadata: { i } })).status).toBe('success');
    const seen = (await ca.request('stats')).data.cluster.applied_seq;
    expect((await cb.request('get', { namespace: 'st', id: 'p19', min_seq: seen })).status).toBe('success');
    cb.close();
    const bDir = b.dataDir;
    await b.server.close();
    b = null;
    const staleSeq = JSON.parse(readFileSync(path.join(bDir, 'cluster-state.json'), 'utf8')).applied_seq as number;
    // Written while B is away: stores, an update, a delete.
    for (let i = 0; i < 20; i++) expect((await ca.request('store', { namespace: 'st', text: `while away ${i}`, id: `w${i}` })).status).toBe('success');
    expect((await ca.request('update', { namespace: 'st', id: 'p1', metadata: { changed: true }, significance: 0.75 })).status).toBe('success');
    expect((await ca.request('delete', { namespace: 'st', ids: ['p2', 'w3'] })).status).toBe('success');
    const top = (await ca.request('stats')).data.cluster.applied_seq as number;
    const nc = await natsConnect({ servers: nats.urls });
    let snapSeq: number;
    try {
      const os = await new Objm(nc).open('memory_stale_snapshots');
      snapSeq = await until(async () => {
        const seq = Number((await os.info('latest'))?.metadata?.seq ?? 0);
        return seq >= top ? seq : 0;
      }, 20_000, 'a snapshot at the top of the stream', 200);
      await (await jetstreamManager(nc)).streams.purge('MEMORY_stale', { seq: snapSeq + 1 });
      const first = (await (await jetstreamManager(nc)).streams.info('MEMORY_stale')).state.first_seq;
      expect(first).toBeGreaterThan(staleSeq + 1);
    } finally {
      await nc.close();
    }
    // After the purge: applied from the stream once the snapshot is in.
    for (let i = 0; i < 3; i++) expect((await ca.request('store', { namespace: 'st', text: `after purge ${i}`, id: `z${i}` })).status).toBe('success');
    b = await member(nats, 'b', bDir, 'stale', fast);
    cb = await connect(b.url);
    const last = (await ca.request('stats')).data.cluster.applied_seq as number;
    expect((await cb.request('get', { namespace: 'st', id: 'z2', min_seq: last })).status).toBe('success');
    const da = await contentDigest(ca, ['st']);
    const db = await contentDigest(cb, ['st']);
    expect(da.count).toBe(20 + 20 - 2 + 3);
    expect(db.digest).toBe(da.digest);
    // The switch left nothing behind, and the checkpoint moved past the snapshot.
    for (const leftover of ['cluster-restore', 'cluster-restore-old', 'cluster-restore.json']) expect(existsSync(path.join(bDir, leftover)), leftover).toBe(false);
    await until(() => JSON.parse(readFileSync(path.join(bDir, 'cluster-state.json'), 'utf8')).applied_seq >= last, 5_000, 'the checkpoint');
    // Writes through the restored member replicate as before.
    expect((await cb.request('store', { namespace: 'st', text: 'through restored b', id: 'rb' })).status).toBe('success');
    const top2 = (await cb.request('stats')).data.cluster.applied_seq as number;
    expect((await ca.request('get', { namespace: 'st', id: 'rb', min_seq: top2 })).status).toBe('success');
    expect((await contentDigest(cb, ['st'])).digest).toBe((await contentDigest(ca, ['st'])).digest);
    ca.close();
    cb.close();
  }, 90_000);

  it('a long-absent member with no snapshot reaching the purged stream is refused, its store unchanged', async () => {
    // A member of another stream with snapshots off: nothing can cover the purge.
    const c = await member(nats, 'c', tempDir(), 'nosnap', { snapshotIntervalS: 0 });
    const d = await member(nats, 'd', tempDir(), 'nosnap', { snapshotIntervalS: 0 });
    const cc = await connect(c.url);
    for (let i = 0; i < 5; i++) expect((await cc.request('store', { text: `x ${i}`, id: `x${i}` })).status).toBe('success');
    const seq = (await cc.request('stats')).data.cluster.applied_seq as number;
    const cd = await connect(d.url);
    expect((await cd.request('get', { id: 'x4', min_seq: seq })).status).toBe('success');
    const before = await contentDigest(cd, ['default']);
    cd.close();
    await d.server.close();
    expect((await cc.request('store', { text: 'x 5', id: 'x5' })).status).toBe('success');
    const nc = await natsConnect({ servers: nats.urls });
    try {
      await (await jetstreamManager(nc)).streams.purge('MEMORY_nosnap', { seq: seq + 2 });
    } finally {
      await nc.close();
    }
    await expect(member(nats, 'd', d.dataDir, 'nosnap', { snapshotIntervalS: 0 })).rejects.toThrow(/stream starts at sequence .* no snapshot of this stream reaches/);
    // Its store is as it was (opened without the cluster).
    const single = new MemoryServer({ dataDir: d.dataDir, host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false });
    await single.listen();
    const cs = await connect(`ws://127.0.0.1:${single.port}`);
    expect((await contentDigest(cs, ['default'])).digest).toBe(before.digest);
    cs.close();
    await single.close();
    cc.close();
    await c.server.close();
  }, 60_000);
});

describe('cluster restore switch after a crash (files only)', () => {
  async function storeWith(texts: string[]): Promise<string> {
    const dir = tempDir();
    const s = new MemoryServer({ dataDir: dir, host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false });
    await s.listen();
    const c = await connect(`ws://127.0.0.1:${s.port}`);
    for (const text of texts) expect((await c.request('store', { text, id: text })).status).toBe('success');
    c.close();
    await s.close();
    return dir;
  }
  async function idsIn(dir: string): Promise<string[]> {
    const s = new MemoryServer({ dataDir: dir, host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false });
    await s.listen();
    const c = await connect(`ws://127.0.0.1:${s.port}`);
    const r = await c.request('list', { limit: 100 });
    c.close();
    await s.close();
    return (r.data.memories as Array<{ id: string }>).map((m) => m.id).sort();
  }
  /** `dir` with `side`'s store files moved into `dir/cluster-restore/` (a complete restored store). */
  function withSide(dir: string, side: string): void {
    renameSync(side, path.join(dir, 'cluster-restore'));
  }

  it('a switch interrupted after it began is finished at the next start: the restored store is served', async () => {
    const dir = await storeWith(['old1', 'old2']);
    withSide(dir, await storeWith(['new1', 'new2', 'new3']));
    writeFileSync(path.join(dir, 'cluster-restore.json'), JSON.stringify({ phase: 'switching', seq: 9 }));
    expect(await idsIn(dir)).toEqual(['new1', 'new2', 'new3']);
    for (const leftover of ['cluster-restore', 'cluster-restore-old', 'cluster-restore.json']) expect(existsSync(path.join(dir, leftover)), leftover).toBe(false);
  }, 30_000);

  it('a restore that never reached the switch is dropped: the old store is served unchanged', async () => {
    const dir = await storeWith(['old1', 'old2']);
    withSide(dir, await storeWith(['half']));
    expect(await idsIn(dir)).toEqual(['old1', 'old2']);
    expect(existsSync(path.join(dir, 'cluster-restore'))).toBe(false);
  }, 30_000);

  it('a damaged progress file is refused with a clear error, nothing moved', async () => {
    const dir = await storeWith(['old1']);
    writeFileSync(path.join(dir, 'cluster-restore.json'), 'not json');
    const s = new MemoryServer({ dataDir: dir, host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false });
    await expect(s.listen()).rejects.toThrow(/not a cluster restore's progress file/);
    rmSync(path.join(dir, 'cluster-restore.json'));
    expect(await idsIn(dir)).toEqual(['old1']);
  }, 30_000);
});

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
