// Issue #23 (10): `memory-server repair` used to keep only the records before the first
// damaged one and move everything after it aside, where nothing reads it; and it answered
// a garbage store.json with "nothing to repair". It now salvages every intact record after
// the damage, reports what was lost, and keeps the damaged bytes aside.
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HASH_DIMS, MemoryStore, NativeError, hashEmbed } from '../../ts/native.js';
import { until } from '../helpers/ws-client.js';
import { buildCli, run } from './cli-process.js';

const dirs: string[] = [];
const tempDir = (): string => {
  const d = mkdtempSync(path.join(tmpdir(), 'memsrv-repair-'));
  dirs.push(d);
  return d;
};
beforeAll(buildCli, 120_000);
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const text = (i: number) => `memory number ${i} about topic ${i % 7}`;
const embed = (t: string) => hashEmbed([t], HASH_DIMS);

/** A closed data directory with `n` memories m0…m{n-1} and a full vectors file. */
async function filledDir(n: number): Promise<string> {
  const dir = tempDir();
  const s = MemoryStore.open(dir, { dims: HASH_DIMS });
  for (let i = 0; i < n; i++) await s.put([{ namespace: 'default', id: `m${i}`, text: text(i), embedding: embed(text(i)) }]);
  const vectors = path.join(dir, readdirSync(dir).find((f) => f.startsWith('vectors-'))!);
  await until(() => statSync(vectors).size === n * HASH_DIMS * 4);
  s.close();
  return dir;
}

/** Record frames of a log (format: crates/memory-core/src/store/log.rs): offset, length, seq. */
function frames(log: Buffer): Array<{ off: number; end: number; seq: bigint }> {
  const out = [];
  for (let off = 40; off < log.length; ) {
    const len = log.readUInt32LE(off);
    out.push({ off, end: off + 8 + len, seq: log.readBigUInt64LE(off + 8 + 1) });
    off += 8 + len;
  }
  return out;
}

function openError(dir: string): NativeError {
  try {
    MemoryStore.open(dir, { dims: HASH_DIMS }).close();
  } catch (e) {
    return e as NativeError;
  }
  throw new Error(`${dir} opened`);
}

describe('memory-server repair', () => {
  it('salvages every intact record after a flipped bit and reports what was lost', async () => {
    const n = 60;
    const dir = await filledDir(n);
    const logPath = path.join(dir, 'wal-000001.log');
    const original = readFileSync(logPath);
    const recs = frames(original);
    expect(recs).toHaveLength(n);
    const bad = 30;
    const { off, end, seq } = recs[bad]!;
    const damaged = Buffer.from(original);
    damaged[off + 8 + Math.floor((end - off - 8) / 2)]! ^= 0x10;
    writeFileSync(logPath, damaged);
    expect(openError(dir).code).toBe('corrupt');

    const r = run(['repair', '--data-dir', dir]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`kept ${n - 1} records`);
    expect(r.stdout).toContain(`bytes ${off}..${end}`);
    expect(r.stdout).toMatch(new RegExp(`sequence ${seq}\\b`));
    const aside = /damaged bytes kept in (\S+)/.exec(r.stdout)?.[1];
    expect(aside, r.stdout).toBeDefined();
    expect(readFileSync(aside!).equals(damaged.subarray(off, end))).toBe(true);

    const s = MemoryStore.open(dir, { dims: HASH_DIMS });
    try {
      expect(s.count('default')).toBe(n - 1);
      expect(s.get('default', `m${bad}`)).toBeNull();
      for (let i = 0; i < n; i++) {
        if (i === bad) continue;
        const m = s.get('default', `m${i}`, true);
        expect(m?.text).toBe(text(i));
        expect(Array.from(m!.embedding!)).toEqual(Array.from(embed(text(i))));
      }
      // Searchable with the original embeddings (rows after the lost one moved up by one).
      for (const i of [0, bad - 1, bad + 1, n - 1]) {
        const [hits] = await s.search(embed(text(i)), 1, { namespace: 'default', k: 1 });
        expect(hits![0]!.id).toBe(`m${i}`);
      }
    } finally {
      s.close();
    }
    const again = run(['repair', '--data-dir', dir]);
    expect(again.status).toBe(0);
    expect(again.stdout).toContain('nothing to repair');
  }, 60_000);

  it('repairs a garbage store.json from the log, keeping the garbage aside', async () => {
    const dir = await filledDir(5);
    writeFileSync(path.join(dir, 'store.json'), 'garbage\u0000{');
    const e = openError(dir);
    expect(e.code).toBe('corrupt');
    expect(e.message).toContain('store.json');

    const r = run(['repair', '--data-dir', dir]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).not.toContain('nothing to repair');
    expect(r.stdout).toContain('store.json');
    const aside = /store\.json kept in (\S+)/.exec(r.stdout)?.[1];
    expect(aside, r.stdout).toBeDefined();
    expect(readFileSync(aside!, 'utf8')).toBe('garbage\u0000{');

    const exp = run(['export', '--data-dir', dir]);
    expect(exp.status, exp.stderr).toBe(0);
    expect(exp.stdout.trim().split('\n').map((l) => JSON.parse(l).id).sort()).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
  }, 60_000);
});
