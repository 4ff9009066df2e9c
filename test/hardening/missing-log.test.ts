// Issue #23 (5): a data directory whose log has gone (moved away, deleted) must not start
// empty: it used to open with 0 memories, no warning, and truncate the vectors file.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HASH_DIMS, MemoryStore, NativeError, hashEmbed } from '../../ts/native.js';
import { MemoryServer } from '../../ts/server/memory.js';
import { silentLogger, until } from '../helpers/ws-client.js';

const dirs: string[] = [];
const tempDir = (): string => {
  const d = mkdtempSync(path.join(tmpdir(), 'memsrv-nolog-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const N = 40;

/** A closed data directory holding N memories and a full vectors file. */
async function filledDir(): Promise<string> {
  const dir = tempDir();
  const s = MemoryStore.open(dir, { dims: HASH_DIMS });
  for (let i = 0; i < N; i++) {
    const text = `memory number ${i}`;
    await s.put([{ namespace: 'default', id: `m${i}`, text, embedding: hashEmbed([text], HASH_DIMS) }]);
  }
  // Every put writes its row to the vectors file (the one durable copy of the vectors).
  const vectors = path.join(dir, readdirSync(dir).find((f) => f.startsWith('vectors-'))!);
  await until(() => statSync(vectors).size === N * HASH_DIMS * 4);
  s.close();
  return dir;
}

const snapshot = (dir: string): Record<string, string> =>
  Object.fromEntries(
    readdirSync(dir)
      .filter((f) => f !== 'LOCK')
      .map((f) => [f, readFileSync(path.join(dir, f)).toString('base64')]),
  );

describe('a data directory without its log', () => {
  it('refuses to open, says why, and changes no file', async () => {
    const dir = await filledDir();
    const log = readdirSync(dir).find((f) => /^wal-\d+\.log$/.test(f))!;
    const vectors = readdirSync(dir).find((f) => /^vectors-\d+\.f32$/.test(f))!;
    expect(readFileSync(path.join(dir, vectors)).length).toBe(N * HASH_DIMS * 4);
    renameSync(path.join(dir, log), path.join(tempDir(), log));
    const before = snapshot(dir);

    let err: unknown;
    try {
      MemoryStore.open(dir, { dims: HASH_DIMS }).close();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NativeError);
    expect((err as NativeError).message).toContain(dir);
    expect((err as NativeError).message).toMatch(/no log/);
    expect((err as NativeError).message).toContain('store.json');
    // The server refuses to start with the same reason.
    const server = new MemoryServer({ dataDir: dir, host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false });
    await expect(server.listen()).rejects.toThrow(/no log/);
    await server.close();
    // Nothing was created, truncated or rewritten.
    expect(snapshot(dir)).toEqual(before);
  });

  it('refuses when only the vectors file is left', async () => {
    const dir = await filledDir();
    for (const f of readdirSync(dir)) if (!f.startsWith('vectors-')) rmSync(path.join(dir, f));
    const before = snapshot(dir);
    expect(() => MemoryStore.open(dir, { dims: HASH_DIMS })).toThrow(/no log/);
    expect(snapshot(dir)).toEqual(before);
  });

  it('a new directory, or an empty one, still starts empty', async () => {
    const fresh = path.join(tempDir(), 'not', 'yet');
    const a = MemoryStore.open(fresh, { dims: HASH_DIMS });
    expect(a.count('default')).toBe(0);
    a.close();
    const empty = path.join(tempDir(), 'empty');
    mkdirSync(empty);
    const b = MemoryStore.open(empty, { dims: HASH_DIMS });
    await b.put([{ namespace: 'default', id: 'x', text: 'x', embedding: hashEmbed(['x'], HASH_DIMS) }]);
    b.close();
    const c = MemoryStore.open(empty, { dims: HASH_DIMS });
    expect(c.count('default')).toBe(1);
    c.close();
    expect(existsSync(path.join(empty, 'store.json'))).toBe(true);
  });
});
