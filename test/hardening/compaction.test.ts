/**
 * #23 item 6: compaction runs by itself (garbage ratio and size), in the background, and is
 * also a CLI command and a control-center action; deleted text leaves the disk; `stats`
 * reports live and garbage bytes and the last compaction.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlCenter } from '../../ts/control/index.js';
import { HashEmbedder } from '../../ts/embedder.js';
import { HASH_DIMS, MemoryStore, hashEmbed } from '../../ts/native.js';
import { MemoryServer, type MemoryServerOptions } from '../../ts/server/memory.js';
import { ensureBuilt, root } from '../helpers/build-dist.js';
import { connect, httpRequest, silentLogger, until } from '../helpers/ws-client.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'memsrv-compact-'));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function start(options: MemoryServerOptions): Promise<{ server: MemoryServer; url: string }> {
  // No rate limit: one connection sends the 4,000 requests of the cycles as fast as it can.
  const server = new MemoryServer({ host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false, closeTimeoutMs: 2_000, rateLimit: false, ...options });
  const info = await server.listen();
  return { server, url: `ws://127.0.0.1:${info.port}` };
}

/**
 * Indices `i` of every `<prefix><i>-` still in some file of the data directory (log, vectors
 * file…). A compaction running meanwhile may rename its temporary file over the log between
 * the listing and the read: then the whole directory is read again, so no file is skipped.
 */
function onDisk(dir: string, prefix: string): Set<number> {
  const re = new RegExp(`${prefix}(\\d+)-`, 'g');
  for (let attempt = 1; ; attempt++) {
    const found = new Set<number>();
    try {
      for (const f of readdirSync(dir)) {
        const text = readFileSync(path.join(dir, f)).toString('latin1');
        for (const m of text.matchAll(re)) found.add(Number(m[1]));
      }
      return found;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 50) throw err;
    }
  }
}

const CYCLES = 2_000;

describe('automatic compaction', () => {
  it(`${CYCLES} store-then-delete cycles: it runs by itself, the deleted texts leave the disk, live memories and writes made meanwhile stay`, async () => {
    const dir = tempDir();
    // Default policy (garbage ≥ 50% of a log ≥ 1 MiB); fsync off only to keep the test short.
    const { server, url } = await start({ dataDir: dir, fsync: 'off' });
    const a = await connect(url);
    const b = await connect(url);
    const sub = await connect(url);
    try {
      await sub.request('subscribe', { events: ['memory_removed'] });
      for (let i = 0; i < 20; i++) expect((await a.request('store', { id: `keep-${i}`, text: `hardening-keep-${i}- stays` })).status).toBe('success');
      const prefix = `hardening-deleted-${process.pid}-`;
      // Another connection stores while the cycles (and the compactions they cause) run.
      let cyclesDone = false;
      const during: Array<{ id: string; status: string }> = [];
      const writer = (async () => {
        for (let i = 0; i < 200 && !cyclesDone; i++) {
          const r = await b.request('store', { id: `during-${i}`, text: `hardening-during-${i}- stays too` });
          during.push({ id: `during-${i}`, status: r.status });
        }
      })();
      for (let w = 0; w < CYCLES; w += 50) {
        const replies: Array<Promise<{ status: string }>> = [];
        for (let i = w; i < w + 50; i++) {
          replies.push(a.request('store', { id: `gone-${i}`, text: `${prefix}${i}- a secret that must not stay on disk` }));
          replies.push(a.request('delete', { id: `gone-${i}` }));
        }
        for (const r of await Promise.all(replies)) expect(r, 'a store or delete of the cycles').toMatchObject({ status: 'success' });
      }
      cyclesDone = true;
      await writer;

      // The seq of each delete (from its memory_removed event) against the last compaction's
      // start: every memory deleted before a compaction started is gone from disk after it.
      const deleteSeq = new Map<number, number>();
      await until(() => {
        for (const m of sub.messages as any[]) if (m.type === 'memory_removed') deleteSeq.set(Number(m.data.memory.id.slice(5)), m.data.seq);
        return deleteSeq.size === CYCLES;
      }, 10_000);
      let stats: any = null;
      const covered = (): number => [...deleteSeq.values()].filter((s) => s <= (stats?.last_compaction?.start_seq ?? -1)).length;
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline) {
        stats = (await a.request('stats')).data;
        if (covered() >= CYCLES / 2) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      const about = JSON.stringify(stats);
      expect(stats.last_compaction, `stats.last_compaction after the cycles: ${about}`).toMatchObject({ automatic: true });
      expect(covered(), `deletes merged by an automatic compaction: ${about}`).toBeGreaterThanOrEqual(CYCLES / 2);
      expect(stats.live_bytes, about).toBeGreaterThan(0);
      expect(stats.live_bytes + stats.garbage_bytes, about).toBeLessThanOrEqual(stats.storage_bytes);
      expect(stats.last_compaction.bytes_after, about).toBeLessThan(stats.last_compaction.bytes_before);

      const left = onDisk(dir, prefix);
      const merged = [...deleteSeq].filter(([, s]) => s <= stats.last_compaction.start_seq).map(([i]) => i);
      expect(merged.filter((i) => left.has(i)), 'deleted texts still on disk after the compaction that merged their deletion').toEqual([]);
      // The log does not grow without bound: far less than the ~3.4 MB the cycles wrote.
      expect(stats.storage_bytes, about).toBeLessThan(CYCLES * 1_700);

      for (let i = 0; i < 20; i++) expect((await a.request('get', { id: `keep-${i}` })).data?.text, `keep-${i}`).toBe(`hardening-keep-${i}- stays`);
      expect(during.length).toBeGreaterThan(0);
      for (const d of during) {
        expect(d.status, `store ${d.id}`).toBe('success');
        expect((await a.request('get', { id: d.id })).status, `get ${d.id}`).toBe('success');
      }
      expect((await a.request('get', { id: 'gone-7' })).code).toBe('not_found');
    } finally {
      a.close();
      b.close();
      sub.close();
      await server.close();
    }
    // And after a restart, from the compacted log.
    const again = await start({ dataDir: dir });
    const c = await connect(again.url);
    try {
      const s = (await c.request('stats')).data;
      expect(s.total_memories).toBeGreaterThanOrEqual(21);
      expect((await c.request('get', { id: 'keep-3' })).data.text).toBe('hardening-keep-3- stays');
      expect((await c.request('get', { id: `gone-${CYCLES - 1}` })).code).toBe('not_found');
    } finally {
      c.close();
      await again.server.close();
    }
  }, 90_000);

  it('the policy is configurable and off with garbageRatio 0 (compaction: false)', async () => {
    const dir = tempDir();
    const { server, url } = await start({ dataDir: dir, fsync: 'off', compaction: false });
    const c = await connect(url);
    try {
      const replies: Array<Promise<{ status: string }>> = [];
      for (let i = 0; i < 800; i++) {
        replies.push(c.request('store', { id: `x${i}`, text: `off-${i}- text` }));
        replies.push(c.request('delete', { id: `x${i}` }));
      }
      for (const r of await Promise.all(replies)) expect(r.status).toBe('success');
      const s = (await c.request('stats')).data;
      expect(s.last_compaction).toBeNull();
      expect(s.garbage_bytes).toBeGreaterThan(1 << 20);
      expect(onDisk(dir, 'off-').size).toBe(800);
      // Asked for, it runs.
      const r = await server.compact();
      expect(r).toMatchObject({ automatic: false, rows_after: 0 });
      expect(onDisk(dir, 'off-').size).toBe(0);
      const after = (await c.request('stats')).data;
      expect(after.last_compaction).toMatchObject({ automatic: false, bytes_after: r.bytes_after });
      expect(after.garbage_bytes).toBe(0);
    } finally {
      c.close();
      await server.close();
    }
  }, 60_000);
});

/** A stopped data directory holding `keep` live memories and `gone` deleted ones. */
async function fillDir(dir: string, keep: string[], gone: string[]): Promise<void> {
  const e = new HashEmbedder();
  const store = await MemoryStore.openAsync(dir, { dims: HASH_DIMS, embedderName: e.name, embedderHash: e.hash });
  try {
    const item = (text: string) => ({ namespace: 'default', id: text, text, embedding: hashEmbed([text]) });
    await store.put([...keep, ...gone].map(item));
    await store.delete('default', gone);
    await store.flush();
  } finally {
    store.close();
  }
}

describe('compaction when asked', () => {
  // The CLI and the supervised child run from dist/.
  beforeAll(() => ensureBuilt(), 120_000);

  it('`memory-server compact --data-dir D` removes deleted texts from a stopped directory', async () => {
    const dir = tempDir();
    await fillDir(dir, ['cli-kept-1-', 'cli-kept-2-'], ['cli-gone-1-', 'cli-gone-2-', 'cli-gone-3-']);
    expect(onDisk(dir, 'cli-gone-').size).toBe(3);
    const r = spawnSync(process.execPath, [path.join(root, 'dist/cli/main.js'), 'compact', '--data-dir', dir], { encoding: 'utf8', timeout: 30_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/compacted \d+ → \d+ bytes \(5 → 2 rows\)/);
    expect(onDisk(dir, 'cli-gone-').size).toBe(0);
    expect([...onDisk(dir, 'cli-kept-')].sort()).toEqual([1, 2]);
  });

  it('the control center compacts its supervised memory server: POST /api/components/memory/compact', async () => {
    const dir = tempDir();
    await fillDir(dir, ['cc-kept-1-'], ['cc-gone-1-', 'cc-gone-2-']);
    const cc = await startControlCenter({
      host: '127.0.0.1',
      port: 0,
      dataDir: dir,
      memory: { port: 0, printListening: false },
      inference: false,
      logLevel: 'warn',
      logger: silentLogger,
      printListening: false,
      supervisor: { forwardOutput: false },
    });
    try {
      const mem = cc.components.memory!.status();
      expect(mem.state).toBe('running');
      expect(onDisk(dir, 'cc-gone-').size).toBe(2);
      // Actions carry the control center's CSRF token (ts/control/guard.ts), as the dashboard's do.
      const csrf = { 'X-CSRF-Token': JSON.parse((await httpRequest(cc.port, 'GET', '/api/csrf')).body).csrf_token };
      const res = await httpRequest(cc.port, 'POST', '/api/components/memory/compact', csrf);
      expect(res.status).toBe(200);
      const body = JSON.parse(res.body);
      expect(body).toMatchObject({ success: true, compaction: { automatic: false, rows_before: 3, rows_after: 1 } });
      expect(onDisk(dir, 'cc-gone-').size).toBe(0);
      const c = await connect(`ws://127.0.0.1:${mem.port}`);
      try {
        expect((await c.request('get', { id: 'cc-kept-1-' })).data.text).toBe('cc-kept-1-');
        expect((await c.request('stats')).data.last_compaction).toMatchObject({ automatic: false, rows_after: 1 });
      } finally {
        c.close();
      }
      // Only the memory server has a log to compact.
      const other = await httpRequest(cc.port, 'POST', '/api/components/inference/compact', csrf);
      expect(other.status).toBe(404);
    } finally {
      await cc.close();
    }
  }, 60_000);
});
