/**
 * #24: `memory-server import` takes each line on the path that keeps what it carries. A
 * recorded line (with `associations`, as `export` writes) is bulk-loaded exactly as
 * recorded; a line without (a user's own JSONL of texts, with or without embeddings) is
 * stored the way `store` stores it — significance and associations computed against what is
 * stored before it — through the store's batch put.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HashEmbedder } from '../ts/embedder.js';
import { HASH_DIMS, MemoryStore, hashEmbed, type NativeMemory } from '../ts/native.js';
import { MemoryServer } from '../ts/server/memory.js';
import { ensureBuilt, root } from './helpers/build-dist.js';
import { connect, silentLogger } from './helpers/ws-client.js';

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
  return spawnSync(process.execPath, [path.join(root, 'dist/cli/main.js'), ...args], { encoding: 'utf8', timeout: 60_000 });
}

function jsonl(rows: Array<Record<string, unknown>>): string {
  const f = path.join(tempDir(), 'in.jsonl');
  writeFileSync(f, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  return f;
}

/** Every memory of a stopped data directory (reopened: what is durable), by id. */
async function readAll(dir: string): Promise<Map<string, NativeMemory>> {
  const e = new HashEmbedder();
  const store = await MemoryStore.openAsync(dir, { dims: HASH_DIMS, embedderName: e.name, embedderHash: e.hash });
  try {
    const out = new Map<string, NativeMemory>();
    for (let after = 0; ; ) {
      const page = store.export(after, 1000);
      if (page.length === 0) return out;
      for (const m of page) out.set(`${m.namespace}/${m.id}`, m);
      after = page[page.length - 1]!.seq;
    }
  } finally {
    store.close();
  }
}

/** Texts in families of near-duplicates, so the hash embedder links some of them (associations). */
const TEXTS = Array.from({ length: 60 }, (_, i) => `note ${i % 12} about the ${['heron', 'violet lake', 'tax form', 'garden shed', 'piano lesson'][i % 5]} and what to do next week`);

describe('import: scored lines are stored like store', () => {
  it('a JSONL of texts (some with embeddings) gets the significance and associations `store` gives the same batch', async () => {
    const rows = TEXTS.map((text, i) => ({
      id: `t${i}`,
      text,
      metadata: { n: i },
      ...(i % 2 === 0 ? { embedding: Array.from(hashEmbed([text])) } : {}),
    }));
    // The reference: the same items as one `store` batch on a server.
    const refDir = tempDir();
    const server = new MemoryServer({ dataDir: refDir, host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false, closeTimeoutMs: 2_000 });
    const c = await connect(`ws://127.0.0.1:${(await server.listen()).port}`);
    try {
      expect((await c.request('store', { items: rows })).status).toBe('success');
    } finally {
      c.close();
      await server.close();
    }
    const dir = tempDir();
    // --batch-size 7: several put batches, and the result still equals one store batch.
    const r = cli(['import', jsonl(rows), '--data-dir', dir, '--batch-size', '7']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/imported 60 memories into .*: 0 as recorded, 60 scored like store$/m);
    const ref = await readAll(refDir);
    const got = await readAll(dir);
    expect(got.size).toBe(60);
    const linked = [...got.values()].filter((m) => m.associations.length > 0);
    expect(linked.length).toBeGreaterThan(10);
    for (const [key, m] of ref) {
      const g = got.get(key)!;
      expect({ key, significance: g.significance, associations: g.associations, metadata: g.metadata }).toEqual({
        key,
        significance: m.significance,
        associations: m.associations,
        metadata: m.metadata,
      });
    }
  }, 60_000);

  it('lines without ids are stored under new ids; a given significance is kept and associations computed; timestamps kept', async () => {
    const dir = tempDir();
    const text = 'the heron stood by the violet lake at dawn';
    const r = cli([
      'import',
      jsonl([
        { text },
        { text: `${text} again`, significance: 0.25, timestamp: '2020-05-06T07:08:09.000Z', namespace: 'n2' },
        { text: `${text} once more`, namespace: 'n2' },
      ]),
      '--data-dir',
      dir,
    ]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('imported 3 memories');
    const all = [...(await readAll(dir)).values()];
    expect(all).toHaveLength(3);
    for (const m of all) expect(m.id).toMatch(/^[0-9a-f]{32}$/);
    const again = all.find((m) => m.text === `${text} again`)!;
    expect(again.significance).toBe(Math.fround(0.25));
    expect(new Date(again.timestamp).toISOString()).toBe('2020-05-06T07:08:09.000Z');
    // The third is near the second (same namespace), not the first (another namespace).
    const more = all.find((m) => m.text === `${text} once more`)!;
    expect(more.associations).toEqual([again.id]);
    expect(more.significance).toBeGreaterThan(0);
    expect(more.significance).toBeLessThan(1);
  }, 60_000);
});

describe('import: recorded lines and mixed files', () => {
  it('recorded lines keep significance and associations exactly; a scored line after them is scored against them; a re-import changes nothing', async () => {
    const dir = tempDir();
    const text = 'weekly piano lesson moved to thursday afternoon';
    const rows = [
      { id: 'r1', text, significance: 0.123, associations: ['somewhere-else'], timestamp: '2021-01-01T00:00:00.000Z' },
      { id: 'r2', text: 'a grocery list: eggs, flour, milk', significance: 0.9, associations: [], embedding: Array.from(hashEmbed(['x'])) },
      { id: 's1', text: `${text} (confirmed)` },
    ];
    const file = jsonl(rows);
    const r = cli(['import', file, '--data-dir', dir]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/imported 3 memories into .*: 2 as recorded, 1 scored like store$/m);
    const all = await readAll(dir);
    expect(all.get('default/r1')).toMatchObject({ significance: Math.fround(0.123), associations: ['somewhere-else'], timestamp: Date.parse('2021-01-01T00:00:00.000Z') });
    expect(all.get('default/r2')).toMatchObject({ significance: Math.fround(0.9), associations: [] });
    expect(Array.from(all.get('default/r2')!.embedding!)).toEqual(Array.from(hashEmbed(['x'])));
    expect(all.get('default/s1')!.associations).toEqual(['r1']);

    const again = cli(['import', file, '--data-dir', dir]);
    expect(again.status).toBe(0);
    expect(again.stdout).toMatch(/imported 0 memories .*\(skipped: 3 already stored\)/);
    const after = await readAll(dir);
    expect([...after.values()].map((m) => [m.id, m.significance, m.associations, m.seq])).toEqual([...all.values()].map((m) => [m.id, m.significance, m.associations, m.seq]));
  }, 60_000);

  it('associations without a significance or an id are refused by line, and nothing is imported', async () => {
    const dir = tempDir();
    const r = cli([
      'import',
      jsonl([
        { id: 'ok', text: 'fine' },
        { id: 'half', text: 'half a record', associations: ['ok'] },
        { text: 'no id', significance: 0.5, associations: [] },
        { id: 'zero', text: 'zero vector', embedding: new Array(HASH_DIMS).fill(0) },
      ]),
      '--data-dir',
      dir,
    ]);
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([
      'line 2: significance: is required beside associations (a line with associations is loaded as recorded; leave associations out to have them computed)',
      'line 3: id: is required beside associations (a line with associations is loaded as recorded; leave associations out to have them computed)',
      'line 4: embedding: must not be the zero vector',
      expect.stringMatching(/^3 lines rejected; nothing imported/),
    ]);
    expect((await readAll(dir)).size).toBe(0);
  }, 60_000);
});
