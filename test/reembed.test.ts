/**
 * `--reembed` (ts/server/reembed.ts): a data directory written by the hash embedder,
 * reopened with another embedder, has every memory embedded again in the background —
 * queries answer meanwhile with the old embedder, writes made during the run are kept,
 * significance and associations are computed again, a kill -9 midway resumes, a crash
 * during the switch is finished by the next start, and a mismatch without --reembed is
 * refused as before.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Embedder } from '../ts/embedder.js';
import { HASH_DIMS, MemoryStore, hashEmbed } from '../ts/native.js';
import { MemoryServer, type MemoryServerOptions } from '../ts/server/memory.js';
import { OnnxEmbedder } from '../ts/onnx/embedder.js';
import { memorySnapshot } from '../ts/control/instrument.js';
import { pino } from 'pino';
import { ensureBuilt, root } from './helpers/build-dist.js';
import { connect, delay, silentLogger, until, type TestClient } from './helpers/ws-client.js';

const dirs: string[] = [];
const tempDir = (): string => {
  const d = mkdtempSync(path.join(tmpdir(), 'memsrv-reembed-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const D = HASH_DIMS;

/**
 * A second embedder for the tests: the hash embedder of the text with a word appended (which
 * changes every cosine, so significance and associations change too), its dimensions
 * permuted. `delayMs` per 64 texts makes a run long enough to watch.
 */
class VariantEmbedder implements Embedder {
  readonly name = 'hash-variant';
  readonly hash = 'perm7-zz';
  readonly dims = D;
  readonly device = 'cpu';
  readonly maxBatch = 64;
  texts = 0;
  constructor(private readonly delayMs = 0) {}
  static vectors(texts: string[]): Float32Array {
    const h = hashEmbed(texts.map((t) => `${t} zzvariant`));
    const out = new Float32Array(h.length);
    for (let r = 0; r < texts.length; r++) for (let i = 0; i < D; i++) out[r * D + i] = h[r * D + ((i * 7 + 3) % D)]!;
    return out;
  }
  async embed(texts: string[]): Promise<Float32Array> {
    this.texts += texts.length;
    if (this.delayMs > 0) await delay(this.delayMs * Math.ceil(texts.length / 64));
    return VariantEmbedder.vectors(texts);
  }
}

async function start(dataDir: string, options: MemoryServerOptions = {}): Promise<{ server: MemoryServer; c: TestClient }> {
  const server = new MemoryServer({ dataDir, host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false, closeTimeoutMs: 5_000, ...options });
  const info = await server.listen();
  return { server, c: await connect(`ws://127.0.0.1:${info.port}`) };
}

interface Seeded {
  id: string;
  namespace: string;
  text: string;
  timestamp: string;
}

/** Stores `n` memories per namespace with the hash embedder, in batches; returns them in store order. */
async function seed(dataDir: string, n: number, namespaces = ['a', 'b']): Promise<Seeded[]> {
  const { server, c } = await start(dataDir);
  const out: Seeded[] = [];
  try {
    for (const ns of namespaces) {
      for (let i = 0; i < n; i += 100) {
        const items = Array.from({ length: Math.min(100, n - i) }, (_, j) => ({
          id: `${ns}-${i + j}`,
          text: `memory ${i + j} of ${ns}: the ${['cat', 'dog', 'fox', 'owl'][(i + j) % 4]} ${['sat', 'ran', 'slept'][(i + j) % 3]} near item ${(i + j) % 17}`,
          metadata: { i: i + j, kind: (i + j) % 2 === 0 ? 'even' : 'odd' },
        }));
        const r = await c.request('store', { namespace: ns, items });
        expect(r.status).toBe('success');
        r.data.items.forEach((it: { id: string; timestamp: string }, j: number) => out.push({ id: it.id, namespace: ns, text: items[j]!.text, timestamp: it.timestamp }));
      }
    }
  } finally {
    c.close();
    await server.close();
  }
  return out;
}

/** Every memory of a namespace (with embeddings), through `list`. */
async function listAll(c: TestClient, namespace: string): Promise<any[]> {
  const all: any[] = [];
  let cursor: string | null = null;
  do {
    const r: any = await c.request('list', { namespace, limit: 500, include_embeddings: true, ...(cursor ? { cursor } : {}) });
    expect(r.status).toBe('success');
    all.push(...r.data.memories);
    cursor = r.data.next_cursor;
  } while (cursor);
  return all;
}

function expectVectorsClose(got: number[], want: Float32Array): void {
  expect(got).toHaveLength(want.length);
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
  expect(worst).toBeLessThan(1e-5);
}

const reembedLeftovers = (dir: string): string[] => readdirSync(dir).filter((f) => f.startsWith('reembed'));

describe('--reembed', () => {
  it('without --reembed a directory written by another embedder is refused and left as it was', async () => {
    const dir = tempDir();
    await seed(dir, 50, ['a']);
    const before = readFileSync(path.join(dir, 'store.json'), 'utf8');
    const server = new MemoryServer({ dataDir: dir, host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false, embedder: new VariantEmbedder() });
    await expect(server.listen()).rejects.toThrow(/written by embedder hash-v1 .*not hash-variant.*--reembed/);
    expect(readFileSync(path.join(dir, 'store.json'), 'utf8')).toBe(before);
    expect(reembedLeftovers(dir)).toEqual([]);
    const { server: again, c } = await start(dir);
    expect((await c.request('stats')).data.total_memories).toBe(50);
    c.close();
    await again.close();
  });

  it('re-embeds every memory in the background: queries answer meanwhile, writes during the run are kept, progress is in stats', async () => {
    const dir = tempDir();
    const seeded = await seed(dir, 600);
    const variant = new VariantEmbedder(40);
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => void lines.push(l) });
    const { server, c } = await start(dir, { embedder: variant, reembed: true, logger });
    try {
      // Running: the old embedder answers, progress is reported.
      const s1 = (await c.request('stats')).data;
      expect(s1.model).toBe('hash-v1');
      expect(s1.reembed).toMatchObject({ state: 'copying', from: 'hash-v1', to: 'hash-variant', total: 1200 });
      expect(s1.reembed.done).toBeLessThan(1200);
      // …and in the control center's snapshot of the server.
      expect(memorySnapshot(server).reembed).toMatchObject({ state: 'copying', to: 'hash-variant', total: 1200 });
      const probe = seeded[1100]!;
      const hit = await c.request('retrieve', { namespace: probe.namespace, query: probe.text, count: 1 });
      expect(hit.data.memories[0].id).toBe(probe.id);
      // The memory is served with the vector it was stored with until the switch.
      const g = await c.request('get', { namespace: probe.namespace, id: probe.id, include_embeddings: true });
      expectVectorsClose(g.data.embedding, hashEmbed([probe.text]));
      // Writes meanwhile: a new memory, updates and deletes of memories copied already and not yet.
      await until(() => server.reembedProgress()!.done >= 512, 20_000);
      expect((await c.request('store', { namespace: 'a', id: 'new-1', text: 'stored while re-embedding' })).status).toBe('success');
      expect((await c.request('update', { namespace: 'a', id: 'a-0', metadata: { edited: 'early' } })).status).toBe('success');
      expect((await c.request('update', { namespace: 'b', id: 'b-599', metadata: { edited: 'late' }, significance: 0.25 })).status).toBe('success');
      expect((await c.request('delete', { namespace: 'a', id: 'a-1' })).data.deleted).toBe(1);
      expect((await c.request('delete', { namespace: 'b', id: 'b-598' })).data.deleted).toBe(1);
      const mid = (await c.request('stats')).data.reembed;
      expect(mid.done).toBeGreaterThan(0);

      await until(() => server.reembedProgress() === null, 60_000, 25);
      const s2 = (await c.request('stats')).data;
      expect(s2.model).toBe('hash-variant');
      expect(s2.reembed).toBeUndefined();
      expect(s2.total_memories).toBe(1200 + 1 - 2);

      // Every memory now has the new embedder's vector, its original time, and the writes made meanwhile.
      const a = await listAll(c, 'a');
      const b = await listAll(c, 'b');
      const byId = new Map([...a, ...b].map((m) => [`${m.namespace}/${m.id}`, m]));
      expect(byId.size).toBe(1199);
      for (const m of [...a, ...b]) expectVectorsClose(m.embedding, VariantEmbedder.vectors([m.text]));
      for (const s of seeded) {
        const m = byId.get(`${s.namespace}/${s.id}`);
        if (s.id === 'a-1' || s.id === 'b-598') {
          expect(m).toBeUndefined();
          continue;
        }
        expect(m, s.id).toBeDefined();
        expect(m.timestamp).toBe(s.timestamp);
        expect(m.text).toBe(s.text);
      }
      expect(byId.get('a/a-0').metadata).toEqual({ edited: 'early' });
      expect(byId.get('b/b-599').metadata).toEqual({ edited: 'late' });
      expect(byId.get('b/b-599').significance).toBeCloseTo(0.25, 5);
      expect(byId.get('a/new-1').text).toBe('stored while re-embedding');
      // Queries now embed with the new embedder and find the memories by it.
      const after = await c.request('retrieve', { namespace: probe.namespace, query: probe.text, count: 1 });
      expect(after.data.memories[0].id).toBe(probe.id);
      expect(after.data.memories[0].score).toBeCloseTo(1, 4);
      const stored = await c.request('store', { namespace: 'a', text: 'after the switch', id: 'new-2' });
      expect(stored.status).toBe('success');
      expect(reembedLeftovers(dir)).toEqual([]);
      expect(memorySnapshot(server).reembed).toBeUndefined();
      // …and in the log: the start, progress every 5 s, the end.
      const messages = lines.map((l) => JSON.parse(l).msg as string);
      expect(messages[0]).toBe('re-embedding starts: hash-v1 → hash-variant');
      expect(messages).toContain('re-embedding done: the server now uses hash-variant');
      expect(messages.some((m) => /^re-embedding: \d+ of \d+ memories/.test(m))).toBe(true);
    } finally {
      c.close();
      await server.close();
    }
    // Reopened: the directory is the new embedder's; the old one is now the mismatch.
    const { server: s3, c: c3 } = await start(dir, { embedder: new VariantEmbedder() });
    expect((await c3.request('stats')).data.total_memories).toBe(1200);
    c3.close();
    await s3.close();
    await expect(new MemoryServer({ dataDir: dir, port: 0, host: '127.0.0.1', logger: silentLogger, printListening: false }).listen()).rejects.toThrow(/--reembed/);
  }, 90_000);

  it('significance and associations are computed again, as if the memories had been stored with the new embedder', async () => {
    const dir = tempDir();
    const texts = Array.from({ length: 120 }, (_, i) => `note ${i % 40}: the quick brown fox ${i % 3 === 0 ? 'jumps' : 'walks'} over dog ${i % 40}`);
    const { server, c } = await start(dir);
    const ids: string[] = [];
    const hashEra: Array<{ significance: number; associations: string[] }> = [];
    for (const [i, text] of texts.entries()) {
      const r = await c.request('store', { id: `m${i}`, text, metadata: { importance: (i % 5) / 5 } });
      ids.push(r.data.id);
      hashEra.push({ significance: r.data.significance, associations: r.data.associations });
    }
    c.close();
    await server.close();

    const { server: s2, c: c2 } = await start(dir, { embedder: new VariantEmbedder(), reembed: true });
    await until(() => s2.reembedProgress() === null, 30_000, 25);
    const got = await listAll(c2, 'default');
    c2.close();
    await s2.close();

    // The reference: the same memories stored in the same order into a fresh store with the new vectors.
    const ref = MemoryStore.open(tempDir(), { dims: D, fsync: 'off' });
    const vectors = VariantEmbedder.vectors(texts);
    const want = await ref.put(
      texts.map((text, i) => ({ namespace: 'default', id: `m${i}`, text, metadata: JSON.stringify({ importance: (i % 5) / 5 }), embedding: vectors.slice(i * D, (i + 1) * D) })),
    );
    ref.close();
    expect(got.map((m) => m.id)).toEqual(ids);
    let changed = 0;
    for (const [i, m] of got.entries()) {
      expect(m.significance, m.id).toBeCloseTo(want[i]!.significance, 5);
      expect(m.associations, m.id).toEqual(want[i]!.associations);
      if (Math.abs(m.significance - hashEra[i]!.significance) > 1e-4 || m.associations.join() !== hashEra[i]!.associations.join()) changed++;
    }
    // The new space relates the notes differently (the test would prove nothing otherwise).
    expect(changed).toBeGreaterThan(texts.length / 2);
  }, 60_000);

  it('a crash during the switch is finished by the next start, even without --reembed', async () => {
    for (const phase of ['switching', 'installing'] as const) {
      const dir = tempDir();
      const seeded = await seed(dir, 100, ['a']);
      // A whole copy in reembed/ (as a run leaves it when the switch begins), built by hand.
      const shadow = MemoryStore.open(path.join(dir, 'reembed'), { dims: D, fsync: 'always', embedderName: 'hash-variant', embedderHash: 'perm7-zz' });
      const vectors = VariantEmbedder.vectors(seeded.map((m) => m.text));
      await shadow.put(
        seeded.map((m, i) => ({ namespace: m.namespace, id: m.id, text: m.text, embedding: vectors.slice(i * D, (i + 1) * D), timestampMs: Date.parse(m.timestamp) })),
      );
      shadow.close();
      const identity = (name: string, hash: string) => ({ name, hash, dims: D });
      const state = { format: 1, from: identity('hash-v1', 'builtin'), to: identity('hash-variant', 'perm7-zz'), cursor: 100, phase, started_at: new Date().toISOString() };
      writeFileSync(path.join(dir, 'reembed.json'), JSON.stringify(state));
      // The crash: partway through the phase's renames.
      mkdirSync(path.join(dir, 'reembed-old'));
      renameSync(path.join(dir, 'store.json'), path.join(dir, 'reembed-old', 'store.json'));
      if (phase === 'installing') {
        renameSync(path.join(dir, 'wal-000001.log'), path.join(dir, 'reembed-old', 'wal-000001.log'));
        renameSync(path.join(dir, 'reembed', 'store.json'), path.join(dir, 'store.json'));
      }
      const { server, c } = await start(dir, { embedder: new VariantEmbedder() });
      try {
        const st = (await c.request('stats')).data;
        expect(st.model, phase).toBe('hash-variant');
        expect(st.total_memories, phase).toBe(100);
        const all = await listAll(c, 'a');
        for (const [i, m] of all.entries()) {
          expect(m.id).toBe(seeded[i]!.id);
          expect(m.timestamp).toBe(seeded[i]!.timestamp);
          expectVectorsClose(m.embedding, vectors.subarray(i * D, (i + 1) * D));
        }
        expect(reembedLeftovers(dir)).toEqual([]);
      } finally {
        c.close();
        await server.close();
      }
    }
  }, 60_000);
});

describe('--reembed: crash recovery', () => {
  const bin = path.join(root, 'dist/cli/main.js');
  const FIXTURE = path.join(root, 'test/fixtures/tiny-bert');
  const children: ChildProcess[] = [];
  beforeAll(() => ensureBuilt(), 180_000);
  afterEach(() => {
    for (const ch of children.splice(0)) if (ch.exitCode === null && ch.signalCode === null) ch.kill('SIGKILL');
  });

  async function startCli(dataDir: string): Promise<{ child: ChildProcess; port: number }> {
    const args = ['--host', '127.0.0.1', '--port', '0', '--no-inference', '--no-control', '--data-dir', dataDir, '--log-level', 'silent'];
    const child = spawn(process.execPath, [bin, ...args, '--model', FIXTURE, '--device', 'cpu', '--threads', '1', '--reembed'], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const deadline = Date.now() + 30_000;
    while (!out.includes('Ctrl-C to stop')) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`CLI did not start: ${out}`);
      await delay(20);
    }
    return { child, port: Number(/memory server\s+ws:\/\/[^\s]+:(\d+)/.exec(out)![1]) };
  }

  it('kill -9 midway, then a restart resumes and completes with nothing lost or duplicated (hash → a 64-dim ONNX model)', async () => {
    const dir = tempDir();
    const seeded = await seed(dir, 2500);
    const first = await startCli(dir);
    const c = await connect(`ws://127.0.0.1:${first.port}`);
    // Wait for some progress to be durable, then kill the process without warning.
    let copied: number;
    const deadline = Date.now() + 60_000;
    for (;;) {
      const st = (await c.request('stats')).data;
      expect(st.reembed, 'still re-embedding when killed').toBeDefined();
      const state = existsSync(path.join(dir, 'reembed.json')) ? JSON.parse(readFileSync(path.join(dir, 'reembed.json'), 'utf8')) : null;
      if (state && state.cursor >= 1024) {
        copied = st.reembed.done;
        break;
      }
      if (Date.now() > deadline) throw new Error('no progress');
      await delay(5);
    }
    // An acknowledged store made during the run survives the kill too.
    expect((await c.request('store', { namespace: 'a', id: 'during', text: 'stored during the run, before the kill' })).status).toBe('success');
    first.child.kill('SIGKILL');
    await new Promise((r) => first.child.once('exit', r));
    c.close();
    expect(copied).toBeGreaterThan(0);
    expect(copied).toBeLessThan(5000);

    const second = await startCli(dir);
    const c2 = await connect(`ws://127.0.0.1:${second.port}`);
    try {
      const resumed = (await c2.request('stats')).data.reembed;
      // Resumed from the copy (not from zero), unless it already finished.
      if (resumed) expect(resumed.done).toBeGreaterThanOrEqual(copied);
      const end = Date.now() + 120_000;
      while ((await c2.request('stats')).data.reembed) {
        if (Date.now() > end) throw new Error('re-embedding did not finish');
        await delay(50);
      }
      const st = (await c2.request('stats')).data;
      expect(st.dims).toBe(64);
      expect(st.total_memories).toBe(5001);
      const model = await OnnxEmbedder.load({ model: FIXTURE, device: 'cpu', threads: 1 });
      try {
        const all = [...(await listAll(c2, 'a')), ...(await listAll(c2, 'b'))];
        expect(new Set(all.map((m) => `${m.namespace}/${m.id}`)).size).toBe(5001);
        expect(all.map((m) => `${m.namespace}/${m.id}`).sort()).toEqual([...seeded.map((s) => `${s.namespace}/${s.id}`), 'a/during'].sort());
        const when = new Map(seeded.map((s) => [`${s.namespace}/${s.id}`, s.timestamp]));
        for (let i = 0; i < all.length; i += 250) {
          const part = all.slice(i, i + 250);
          const want = await model.embed(part.map((m) => m.text));
          part.forEach((m, j) => {
            expectVectorsClose(m.embedding, want.subarray(j * 64, (j + 1) * 64));
            if (m.id !== 'during') expect(m.timestamp).toBe(when.get(`${m.namespace}/${m.id}`));
          });
        }
      } finally {
        await model.close();
      }
      expect(reembedLeftovers(dir)).toEqual([]);
    } finally {
      c2.close();
      second.child.kill('SIGTERM');
      await new Promise((r) => second.child.once('exit', r));
    }
  }, 240_000);
});
