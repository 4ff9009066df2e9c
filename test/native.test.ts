// The napi binding against real files: persistence, concurrency, bad input.
import { mkdtempSync, rmSync, statSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore, NativeError, hashEmbed, hashEmbedAsync, kernelInfo, repair, wordWindows } from '../ts/native.js';

const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'ms-native-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const DIMS = 384;
const vec = (text: string) => hashEmbed([text], DIMS);
const item = (text: string, extra: Record<string, unknown> = {}) => ({ namespace: 'default', text, embedding: vec(text), ...extra });

async function expectCode(p: Promise<unknown> | (() => unknown), code: string, msg?: RegExp) {
  let err: unknown;
  try {
    if (typeof p === 'function') p();
    else await p;
  } catch (e) {
    err = e;
  }
  expect(err, 'expected an error').toBeInstanceOf(NativeError);
  expect((err as NativeError).code).toBe(code);
  if (msg) expect((err as NativeError).message).toMatch(msg);
}

describe('native MemoryStore', () => {
  it('persists memories across close and reopen', async () => {
    const dir = tmp();
    const s = MemoryStore.open(dir, { dims: DIMS });
    const [a] = await s.put([item('the cat sat on the mat', { id: 'a', metadata: JSON.stringify({ type: 'note' }) })]);
    expect(a.existing).toBe(false);
    expect(a.significance).toBeCloseTo(0.9, 5); // empty namespace: 0.5 + 0.3 + 0.2 * 0.5
    await s.put([item('the cat sat on a mat', { id: 'b' })]);
    const b = s.get('default', 'b')!;
    expect(b.associations).toEqual(['a']);
    s.close();

    const s2 = MemoryStore.open(dir, { dims: DIMS });
    expect(s2.count('default')).toBe(2);
    const got = s2.get('default', 'a', true)!;
    expect(got.text).toBe('the cat sat on the mat');
    expect(JSON.parse(got.metadata)).toEqual({ type: 'note' });
    expect(got.embedding).toBeInstanceOf(Float32Array);
    expect(got.embedding!.length).toBe(DIMS);
    expect(s2.get('default', 'b')!.associations).toEqual(['a']);
    s2.close();
  });

  it('answers one put and a batch put with results of the same shape and values', async () => {
    const s = MemoryStore.open(tmp(), { dims: DIMS });
    const [one] = await s.put([item('first memory', { id: 'one', ttlMs: 60_000, significance: 0.25 })]);
    const batch = await s.put([item('second memory', { id: 'two' }), item('first memory again', { id: 'one' })]);
    for (const r of [one!, ...batch]) {
      expect(Object.keys(r).sort()).toEqual(['associations', 'existing', 'id', 'namespaceTotal', 'seq', 'significance', 'timestamp']);
      const m = s.get('default', r.id)!;
      expect([r.seq <= m.seq, r.significance, r.timestamp, r.associations]).toEqual([true, m.significance, m.timestamp, m.associations]);
    }
    expect([one!.id, one!.seq, one!.existing, one!.namespaceTotal, one!.significance]).toEqual(['one', 1, false, 1, 0.25]);
    expect(batch.map((r) => [r.id, r.existing, r.namespaceTotal])).toEqual([['two', false, 2], ['one', true, 2]]);
    expect(s.get('default', 'one')!.expiresAt).toBe(one!.timestamp + 60_000);
    s.close();
  });

  it('returns memories with the same fields and values from every read', async () => {
    const s = MemoryStore.open(tmp(), { dims: DIMS });
    const [a] = await s.put([item('alpha memory', { id: 'a', metadata: JSON.stringify({ type: 'note' }), ttlMs: 60_000 })]);
    await s.put([item('alpha memory too', { id: 'b' })]);
    const want = {
      id: 'a',
      namespace: 'default',
      text: 'alpha memory',
      metadata: JSON.stringify({ type: 'note' }),
      significance: a!.significance,
      timestamp: a!.timestamp,
      associations: [],
      seq: 1,
      expiresAt: a!.timestamp + 60_000,
    };
    const fields = (m: object) => Object.fromEntries(Object.entries(m).filter(([, v]) => v !== undefined));
    expect(fields(s.get('default', 'a')!)).toEqual(want);
    expect(fields(s.list('default', 0, 1).memories[0]!)).toEqual(want);
    expect(fields(s.top({ namespace: 'default', k: 2 }).find((m) => m.id === 'a')!)).toEqual(want);
    const [hit] = await s.searchBatched(vec('alpha memory'), { namespace: 'default', k: 1, includeEmbeddings: true });
    const { score, embedding, ...rest } = hit!;
    expect(fields(rest)).toEqual(want);
    expect(score).toBeCloseTo(1, 5);
    expect(embedding).toBeInstanceOf(Float32Array);
    expect(Array.from(embedding!)).toEqual(Array.from(s.get('default', 'a', true)!.embedding!));
    expect(s.get('default', 'b')!.expiresAt).toBeUndefined();
    const [[sync]] = s.searchSync(vec('alpha memory'), 1, { namespace: 'default', k: 1 });
    expect(sync!.id).toBe('a');
    const updated = await s.update('default', 'a', JSON.stringify({ type: 'changed' }));
    expect(fields(updated)).toEqual({ ...want, metadata: JSON.stringify({ type: 'changed' }), seq: 3 });
    expect(s.export(0, 10).map((m) => [m.id, m.embedding!.length])).toEqual([['a', DIMS], ['b', DIMS]]);
    s.close();
  });

  it('acknowledges many concurrent async puts with shared fsyncs', async () => {
    const s = MemoryStore.open(tmp(), { dims: DIMS, fsync: 'always' });
    const n = 200;
    const results = await Promise.all(
      Array.from({ length: n }, (_, i) => s.put([item(`memory number ${i} about topic ${i % 7}`, { id: `m${i}` })])),
    );
    expect(results.map((r) => r[0].id).sort()).toEqual(Array.from({ length: n }, (_, i) => `m${i}`).sort());
    const st = s.stats();
    expect(st.totalMemories).toBe(n);
    expect(st.fsyncs).toBeGreaterThan(0);
    expect(st.fsyncs).toBeLessThan(n); // group commit: writers shared fsyncs
    // counters() (filled in place) agrees with stats(), and keeps agreeing as the store changes.
    const c = s.counters();
    expect(c).toEqual({
      totalMemories: n,
      namespaces: st.namespaces,
      storageBytes: st.storageBytes,
      totalAssociations: st.totalAssociations,
      lastSeq: st.lastSeq,
      fsyncs: st.fsyncs,
      liveBytes: st.liveBytes,
      garbageBytes: st.garbageBytes,
      compactions: st.compactions,
      plansExact: st.plansExact,
      plansGraph: st.plansGraph,
    });
    await s.put([item('one more', { id: 'extra', namespace: 'other' })]);
    expect(s.counters()).toMatchObject({ totalMemories: n + 1, namespaces: st.namespaces + 1, lastSeq: st.lastSeq + 1 });
    expect(results.map((r) => r[0].namespaceTotal).sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    s.close();
  });

  it('searches by cosine, in one pass for many queries, and batched', async () => {
    const s = MemoryStore.open(tmp(), { dims: DIMS });
    const texts = ['apples and oranges', 'rust programming language', 'ocean waves at night', 'fresh apples in autumn'];
    await s.put(texts.map((t, i) => item(t, { id: `t${i}` })));
    const q = vec('apples');
    const [hits] = await s.search(q, 1, { namespace: 'default', k: 2 });
    expect(hits.map((h) => h.id).sort()).toEqual(['t0', 't3']);
    expect(hits[0].score!).toBeGreaterThanOrEqual(hits[1].score!);
    const qs = new Float32Array(DIMS * 2);
    qs.set(vec('apples'), 0);
    qs.set(vec('ocean waves'), DIMS);
    const both = s.searchSync(qs, 2, { namespace: 'default', k: 1 });
    expect(both[1][0].id).toBe('t2');
    const batched = await Promise.all(Array.from({ length: 32 }, () => s.searchBatched(q, { namespace: 'default', k: 2 })));
    for (const r of batched) expect(r.map((h) => h.id)).toEqual(hits.map((h) => h.id));
    const filtered = s.searchSync(q, 1, { namespace: 'default', k: 5, filter: JSON.stringify({ missing: 'x' }) });
    expect(filtered[0]).toEqual([]);
    s.close();
  });

  it('rejects bad input with typed errors and writes nothing', async () => {
    const dir = tmp();
    const s = MemoryStore.open(dir, { dims: DIMS });
    await s.put([item('keep me', { id: 'keep' })]);
    const before = s.stats();
    const nan = vec('x');
    nan[3] = NaN;
    await expectCode(s.put([{ namespace: 'default', text: 'x', embedding: new Float32Array(5) }]), 'invalid_request', /5 dimensions/);
    await expectCode(s.put([{ namespace: 'default', text: 'x', embedding: nan }]), 'invalid_request', /NaN/);
    const inf = vec('y');
    inf[0] = Infinity;
    await expectCode(s.put([{ namespace: 'default', text: 'y', embedding: inf }]), 'invalid_request');
    await expectCode(s.put([item('   ')]), 'invalid_request', /text/);
    await expectCode(s.put([item('x', { metadata: JSON.stringify({ big: 'x'.repeat(17000) }) })]), 'payload_too_large', /16 KiB/);
    await expectCode(s.put([item('x', { metadata: '[1,2]' })]), 'invalid_request', /object/);
    await expectCode(s.put([item('x', { significance: 2 })]), 'invalid_request', /significance/);
    await expectCode(s.put([item('ok one'), item('')]), 'invalid_request', /items\[1\]\.text/);
    // Wrong JavaScript types reject too (the one-item fast path as well as a batch).
    const wrongText = { namespace: 'default', text: 5, embedding: vec('z') } as unknown as ReturnType<typeof item>;
    const wrongVec = { namespace: 'default', text: 'z', embedding: [1, 2, 3] } as unknown as ReturnType<typeof item>;
    for (const items of [[wrongText], [wrongVec], [null], [item('fine'), wrongText]] as Array<Array<ReturnType<typeof item>>>) {
      const p = s.put(items);
      expect(p).toBeInstanceOf(Promise);
      await expectCode(p, 'invalid_request');
    }
    await expectCode(s.update('default', 'nope', '{}'), 'not_found');
    const del = await s.delete('default', ['nope']);
    expect(del.notFound).toEqual(['nope']);
    expect(del.deleted).toEqual([]);
    await expectCode(() => s.searchSync(new Float32Array(3), 1, { namespace: 'default', k: 1 }), 'invalid_request');
    await expectCode(() => s.searchSync(vec('q'), 1, { namespace: 'default', k: 1, filter: '{"a":{"$regex":"x"}}' }), 'invalid_request', /\$regex/);
    const after = s.stats();
    expect(after.totalMemories).toBe(before.totalMemories);
    expect(after.storageBytes).toBe(before.storageBytes);
    s.close();
  });

  it('refuses a second open of a locked directory and other dims', async () => {
    const dir = tmp();
    const s = MemoryStore.open(dir, { dims: DIMS });
    await expectCode(() => MemoryStore.open(dir, { dims: DIMS }), 'locked', /in use/);
    s.close();
    await expectCode(() => MemoryStore.open(dir, { dims: 128 }), 'invalid_request', /384-dimensional/);
    const again = await MemoryStore.openAsync(dir, { dims: DIMS });
    again.close();
  });

  it('stores, updates, deletes, lists and orders by significance', async () => {
    const s = MemoryStore.open(tmp(), { dims: DIMS });
    await s.put([
      item('low', { id: 'l', significance: 0.1 }),
      item('high', { id: 'h', significance: 0.9 }),
      item('mid', { id: 'm', significance: 0.5 }),
    ]);
    expect(s.top({ namespace: 'default', k: 10 }).map((m) => m.id)).toEqual(['h', 'm', 'l']);
    expect(s.top({ namespace: 'default', k: 10, minSignificance: 0.4 }).map((m) => m.id)).toEqual(['h', 'm']);
    const u = await s.update('default', 'l', JSON.stringify({ tag: 'x' }), 0.95);
    expect(u.significance).toBeCloseTo(0.95, 5);
    expect(s.top({ namespace: 'default', k: 1 })[0].id).toBe('l');
    const p1 = s.list('default', 0, 2);
    expect(p1.memories.map((m) => m.id)).toEqual(['l', 'h']);
    const p2 = s.list('default', p1.nextCursor!, 2);
    expect(p2.memories.map((m) => m.id)).toEqual(['m']);
    expect(p2.nextCursor ?? null).toBeNull();
    const d = await s.delete('default', ['h']);
    expect(d.deleted.map((x) => x.id)).toEqual(['h']);
    expect(s.get('default', 'h')).toBeNull();
    const dup = await s.put([item('low', { id: 'l' })]);
    expect(dup[0].existing).toBe(true);
    expect(s.namespaces()).toEqual([{ name: 'default', totalMemories: 2 }]);
    s.close();
  });

  it('repairs a log with corruption before its tail', async () => {
    const dir = tmp();
    const s = MemoryStore.open(dir, { dims: DIMS });
    for (let i = 0; i < 5; i++) await s.put([item(`record ${i}`, { id: `r${i}` })]);
    s.close();
    const log = readdirSync(dir).find((f) => f.startsWith('wal-'))!;
    const path = join(dir, log);
    const { openSync, writeSync, closeSync } = await import('node:fs');
    const size = statSync(path).size;
    const fd = openSync(path, 'r+');
    writeSync(fd, Buffer.from([0xff, 0xee]), 0, 2, Math.floor(size / 2));
    closeSync(fd);
    await expectCode(() => MemoryStore.open(dir, { dims: DIMS }), 'corrupt', /wal-000001\.log.*offset \d+/);
    const r = repair(dir);
    expect(r.damagedTo).toMatch(/\.damaged-\d+$/);
    expect(r.lost).toHaveLength(1);
    expect(r.keptRecords).toBe(4);
    const s2 = MemoryStore.open(dir, { dims: DIMS });
    expect(s2.count('default')).toBe(r.keptRecords);
    s2.close();
  });
});

describe('native helpers', () => {
  it('hash embedder is deterministic, normalized, sync and async alike', async () => {
    const a = hashEmbed(['hello world', 'another text']);
    const b = await hashEmbedAsync(['hello world', 'another text']);
    expect(a.length).toBe(2 * 384);
    expect(Array.from(a)).toEqual(Array.from(b));
    let norm = 0;
    for (let i = 0; i < 384; i++) norm += a[i] * a[i];
    expect(norm).toBeCloseTo(1, 5);
  });

  it('word windows report JavaScript string offsets', () => {
    const text = '😀 one two three four five';
    const w = wordWindows(text, 2, 1);
    expect(w.length).toBeGreaterThan(1);
    for (const c of w) expect(text.slice(c.start, c.end)).toBe(c.text);
  });

  it('reports the SIMD kernel in use', () => {
    const k = kernelInfo();
    expect(k.available).toContain('scalar');
    expect(k.available).toContain(k.isa);
    expect(['amx', 'vnni', 'none']).toContain(k.int8Kernel);
    expect(k.int8).toBe(k.int8Kernel !== 'none');
    expect(typeof k.prefetch).toBe('boolean');
  });

  it('uses no software prefetch outside the AVX-512 kernels', (ctx) => {
    const k = kernelInfo();
    ctx.skip(k.isa === 'avx512', 'AVX-512 kernels in use here: prefetch may be on');
    expect(k.prefetch).toBe(false);
  });

  it('settles promises through one completion queue: pending ones keep Node alive, idle ones let it exit', () => {
    // A child process whose only pending work is native promises: it must wait for all of
    // them (output shows every result), then exit by itself without close() (no timeout).
    const dir = tmp();
    const native = fileURLToPath(new URL('../native/index.cjs', import.meta.url));
    const script = `
      const { MemoryStore } = require(${JSON.stringify(native)});
      const s = MemoryStore.open(${JSON.stringify(dir)}, { dims: 4 });
      const e = new Float32Array([1, 0, 0, 0]);
      for (let i = 0; i < 50; i++) {
        s.put([{ namespace: 'n', id: 'k' + i, text: 't' + i, embedding: e }]).then((r) => console.log('put', r[0].id, r[0].namespaceTotal));
      }
      s.put([{ namespace: 'n', text: '', embedding: e }]).catch((err) => console.log('rejected', err.message));
      s.flush().then(() => console.log('flushed'));
    `;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines.filter((l) => l.startsWith('put ')).length).toBe(50);
    expect(lines).toContain('put k49 50');
    expect(lines.some((l) => l.startsWith('rejected [invalid_request]'))).toBe(true);
    expect(lines).toContain('flushed');
  });

  it('rejects operations on a closed store instead of leaving them pending', async () => {
    const s = MemoryStore.open(tmp(), { dims: DIMS });
    await s.put([item('before close', { id: 'a' })]);
    s.close();
    await expectCode(s.put([item('after close')]), 'unavailable');
    await expectCode(s.flush(), 'unavailable');
    // Reads too: the closed store's memory is freed, so it must not answer from nothing.
    await expectCode(() => s.get('default', 'a'), 'unavailable', /closed/);
    await expectCode(s.search(vec('before close'), 1, { namespace: 'default', k: 1 }), 'unavailable');
    await expectCode(() => s.searchSync(vec('before close'), 1, { namespace: 'default', k: 1 }), 'unavailable');
    await expectCode(() => s.stats(), 'unavailable');
    await expectCode(() => s.count('default'), 'unavailable');
  });
});
