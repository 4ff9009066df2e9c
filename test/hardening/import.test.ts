/**
 * #23 item 8: import validates every line like `store` (out-of-range timestamps and expiries
 * included), reports rejected lines by number and writes nothing of them; a stored value
 * outside JavaScript's Date range never breaks list, retrieve or export.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HashEmbedder } from '../../ts/embedder.js';
import { HASH_DIMS, MemoryStore, hashEmbed } from '../../ts/native.js';
import { MemoryServer } from '../../ts/server/memory.js';
import { ensureBuilt, root } from '../helpers/build-dist.js';
import { connect, silentLogger } from '../helpers/ws-client.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'memsrv-import-'));
  dirs.push(d);
  return d;
}
beforeAll(() => ensureBuilt(), 120_000);
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function cli(args: string[]) {
  return spawnSync(process.execPath, [path.join(root, 'dist/cli/main.js'), ...args], { encoding: 'utf8', timeout: 30_000 });
}

/** A JSONL file of these rows (objects, or raw lines). */
function jsonl(rows: Array<Record<string, unknown> | string>): string {
  const f = path.join(tempDir(), 'in.jsonl');
  writeFileSync(f, rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n') + '\n');
  return f;
}

async function count(dir: string): Promise<number> {
  const e = new HashEmbedder();
  const store = await MemoryStore.openAsync(dir, { dims: HASH_DIMS, embedderName: e.name, embedderHash: e.hash });
  try {
    return store.namespaces().reduce((n, x) => n + x.totalMemories, 0);
  } finally {
    store.close();
  }
}

const ok = (id: string) => ({ id, text: `valid ${id}`, timestamp: '2026-01-02T03:04:05.000Z' });

describe('import validation', () => {
  it('rejects out-of-range timestamps and expiries, naming line and field, and imports nothing', async () => {
    const dir = tempDir();
    const file = jsonl([
      ok('a'),
      { id: 'huge', text: 'from the far future', timestamp: 1e300 },
      { id: 'bad-exp', text: 'never visible', expires_at: 'not a date' },
      '',
      { id: 'neg', text: 'before the epoch', timestamp: -5 },
      { id: 'big-text', text: 'x'.repeat(64 * 1024 + 1) },
      { id: 'typo', txt: 'unknown field' },
      { id: '', text: 'empty id' },
      { id: 'sig', text: 'significance out of range', significance: 2 },
      '{not json',
      ok('b'),
    ]);
    const r = cli(['import', file, '--data-dir', dir]);
    expect(r.status).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toEqual([
      expect.stringMatching(/^line 2: timestamp: must be between 1970-01-01T00:00:00\.000Z and 9999-12-31T23:59:59\.999Z/),
      'line 3: expires_at: must be an ISO-8601 timestamp or epoch milliseconds',
      expect.stringMatching(/^line 5: timestamp: must be between/),
      'line 6: text: exceeds the limit of 65536 bytes',
      expect.stringMatching(/^line 7: /),
      'line 8: id: must be a non-empty string',
      expect.stringMatching(/^line 9: significance: /),
      'line 10: not valid JSON',
      expect.stringMatching(/^8 lines rejected; nothing imported/),
    ]);
    expect(await count(dir)).toBe(0);
  });

  it('--skip-invalid imports the valid lines only; a passed expires_at is counted, not hidden', async () => {
    const dir = tempDir();
    const file = jsonl([
      ok('a'),
      { id: 'huge', text: 'x', timestamp: 1e300 },
      { id: 'expired', text: 'expired already', expires_at: '2001-01-01T00:00:00.000Z' },
      { ...ok('with-exp'), expires_at: Date.now() + 3_600_000, embedding: [] },
    ]);
    const r = cli(['import', file, '--data-dir', dir, '--skip-invalid']);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/^line 2: timestamp: /);
    expect(r.stdout).toMatch(/imported 2 memories .* \(skipped: 1 already expired, 1 rejected\)/);
    expect(await count(dir)).toBe(2);
  });
});

describe('reads of stored out-of-range instants', () => {
  it('list, retrieve, get and export work when a record holds a timestamp or expiry outside the Date range', async () => {
    const dir = tempDir();
    const e = new HashEmbedder();
    // Written through the native API: import now refuses such rows.
    const store = await MemoryStore.openAsync(dir, { dims: HASH_DIMS, embedderName: e.name, embedderHash: e.hash });
    try {
      const rec = (id: string, timestamp: number, expiresAt?: number) => ({
        namespace: 'far',
        id,
        text: `record ${id}`,
        significance: 0.5,
        timestamp,
        ...(expiresAt !== undefined ? { expiresAt } : {}),
        embedding: hashEmbed([`record ${id}`]),
      });
      expect(await store.bulkLoad([rec('future', 1e300), rec('past', -1e300), rec('exp', Date.now(), 9e18)])).toBe(3);
      await store.flush();
    } finally {
      store.close();
    }
    const server = new MemoryServer({ dataDir: dir, host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false, closeTimeoutMs: 2_000 });
    const info = await server.listen();
    const c = await connect(`ws://127.0.0.1:${info.port}`);
    try {
      const list = await c.request('list', { namespace: 'far' });
      expect(list.status).toBe('success');
      expect(list.data.memories.map((m: { id: string }) => m.id).sort()).toEqual(['exp', 'future', 'past']);
      for (const m of list.data.memories) expect(Number.isNaN(Date.parse(m.timestamp))).toBe(false);
      expect(list.data.memories.find((m: { id: string }) => m.id === 'exp').expires_at).toBe('+275760-09-13T00:00:00.000Z');
      expect((await c.request('retrieve', { namespace: 'far', count: 10 })).status).toBe('success');
      expect((await c.request('retrieve', { namespace: 'far', query: 'record future' })).status).toBe('success');
      expect((await c.request('get', { namespace: 'far', id: 'future' })).data.timestamp).toBe('+275760-09-13T00:00:00.000Z');
      expect((await c.request('get', { namespace: 'far', id: 'past' })).data.timestamp).toBe('-271821-04-20T00:00:00.000Z');
      // Storing the same id again reports the stored memory: no throw on its timestamp either.
      expect((await c.request('store', { namespace: 'far', id: 'future', text: 'again' })).data.existing).toBe(true);
    } finally {
      c.close();
      await server.close();
    }
    // The directory can still be backed up.
    const exp = cli(['export', '--data-dir', dir]);
    expect(exp.stderr).toMatch(/exported 3 memories/);
    expect(exp.status).toBe(0);
    expect(exp.stdout.trim().split('\n')).toHaveLength(3);
  }, 30_000);
});
