/**
 * What a re-embedding (`--reembed`, ts/server/reembed.ts) does to the commands served while
 * it runs: its model batches give way to commands (ts/server/reembed-lane.ts), and an
 * inference server beside the memory server — in-process (createServers) or a supervised
 * child of the CLI — embeds with the embedder the memories are served with until the switch
 * (ts/server/follow-embedder.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Embedder } from '../ts/embedder.js';
import { HASH_DIMS, hashEmbed } from '../ts/native.js';
import { MemoryServer, type MemoryServerOptions } from '../ts/server/memory.js';
import { BACKGROUND_NICE, OnnxEmbedder } from '../ts/onnx/embedder.js';
import { createServers } from '../ts/servers.js';
import { BackgroundLane } from '../ts/server/reembed-lane.js';
import { ensureBuilt, root } from './helpers/build-dist.js';
import { connect, delay, silentLogger, until, type TestClient } from './helpers/ws-client.js';

const dirs: string[] = [];
const tempDir = (): string => {
  const d = mkdtempSync(path.join(tmpdir(), 'memsrv-reembed-serving-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const D = HASH_DIMS;

/** A promise the test opens. */
function latch(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}

/**
 * An embedder for the tests: the hash embedder's vectors with the dimensions permuted by
 * `shift` (another identity), every call written to `log`, and a call held while `held` is set.
 */
class LoggedEmbedder implements Embedder {
  readonly hash: string;
  readonly dims = D;
  readonly device = 'cpu';
  readonly maxBatch = 16;
  held: Promise<void> | null = null;
  calls = 0;
  constructor(
    readonly name: string,
    private readonly shift: number,
    private readonly log: string[] = [],
  ) {
    this.hash = `perm-${shift}`;
  }
  vectors(texts: string[]): Float32Array {
    const h = hashEmbed(texts);
    if (this.shift === 0) return h;
    const out = new Float32Array(h.length);
    for (let r = 0; r < texts.length; r++) for (let i = 0; i < D; i++) out[r * D + i] = h[r * D + ((i * 7 + this.shift) % D)]!;
    return out;
  }
  async embed(texts: string[]): Promise<Float32Array> {
    this.calls++;
    this.log.push(`${this.name} start`);
    if (this.held) await this.held;
    this.log.push(`${this.name} end`);
    return this.vectors(texts);
  }
}

async function start(dataDir: string, options: MemoryServerOptions = {}): Promise<{ server: MemoryServer; c: TestClient }> {
  const server = new MemoryServer({ dataDir, host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false, closeTimeoutMs: 5_000, ...options });
  const info = await server.listen();
  return { server, c: await connect(`ws://127.0.0.1:${info.port}`) };
}

/** Stores `n` memories into `dataDir` with `embedder` (default: hash). */
async function seed(dataDir: string, n: number, embedder?: Embedder): Promise<void> {
  const { server, c } = await start(dataDir, embedder ? { embedder } : {});
  try {
    for (let i = 0; i < n; i += 250) {
      const items = Array.from({ length: Math.min(250, n - i) }, (_, j) => ({
        id: `m${i + j}`,
        text: `memory ${i + j}: the ${['cat', 'dog', 'fox', 'owl'][(i + j) % 4]} ${['sat', 'ran', 'slept'][(i + j) % 3]} near item ${(i + j) % 17}`,
      }));
      expect((await c.request('store', { items })).status).toBe('success');
    }
  } finally {
    c.close();
    await server.close();
  }
}

function expectVectorsClose(got: number[], want: Float32Array): void {
  expect(got).toHaveLength(want.length);
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
  expect(worst).toBeLessThan(1e-5);
}

describe('re-embedding gives way to commands', () => {
  it('a query embedded while the re-embedding runs is served before any re-embed batch queued after it', async () => {
    const dir = tempDir();
    const log: string[] = [];
    // The directory's embedder answers queries until the switch; the new one re-embeds.
    const previous = new LoggedEmbedder('previous', 3, log);
    const target = new LoggedEmbedder('target', 5, log);
    await seed(dir, 2000, previous);
    log.length = 0;
    const { server, c } = await start(dir, { embedder: target, reembed: true, previousEmbedder: previous });
    const queryHeld = latch();
    try {
      await until(() => target.calls >= 3, 20_000, 1);
      // The query's embedding is held: it stays in flight while the re-embedding would go on.
      previous.held = queryHeld.promise;
      const reply = c.request('retrieve', { query: 'the fox ran near item 3', count: 3 });
      await until(() => log.includes('previous start'), 5_000, 1);
      const submittedBefore = target.calls;
      // Long enough for a whole page of batches had nothing held them back (a batch takes microseconds here).
      await delay(300);
      expect(target.calls, 'no re-embed batch is submitted while the query is in flight').toBe(submittedBefore);
      previous.held = null;
      queryHeld.open();
      expect((await reply).status).toBe('success');
      // Then the re-embedding goes on, and finishes.
      await until(() => server.reembedProgress() === null, 60_000, 5);
      const q = log.indexOf('previous start');
      const qEnd = log.indexOf('previous end');
      expect(log.slice(q + 1, qEnd).filter((e) => e === 'target start')).toEqual([]);
      expect(log.slice(qEnd).filter((e) => e === 'target start').length).toBeGreaterThan(0);
      expect((await c.request('stats')).data.model).toBe('target');
    } finally {
      previous.held = null;
      queryHeld.open();
      c.close();
      await server.close();
    }
  }, 90_000);
});

/** Niceness of each thread of this process, by thread id. */
function threadNiceness(): Map<number, number> {
  const out = new Map<number, number>();
  for (const t of readdirSync('/proc/self/task')) {
    try {
      const stat = readFileSync(`/proc/self/task/${t}/stat`, 'utf8');
      out.set(Number(t), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]));
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

describe('the onnx embedder\'s background instance', () => {
  it.runIf(process.platform === 'linux')('runs one single-threaded session per thread of the model side by side, at a lower priority, with the same vectors', async () => {
    const model = await OnnxEmbedder.load({ model: path.join(root, 'test/fixtures/tiny-bert'), device: 'cpu', threads: 2, maxBatch: 8 });
    const base = Math.max(...[...threadNiceness().values()].filter((n) => n < 5));
    const before = new Set(threadNiceness().keys());
    const bg = await model.background();
    try {
      expect({ name: bg.name, hash: bg.hash, dims: bg.dims }).toEqual({ name: model.name, hash: model.hash, dims: model.dims });
      expect({ sessions: bg.concurrentRuns, threads: bg.threads }).toEqual({ sessions: 2, threads: 1 });
      expect({ sessions: model.concurrentRuns, threads: model.threads }).toEqual({ sessions: 1, threads: 2 });
      // Each session's worker runs its single-threaded session itself, at +BACKGROUND_NICE.
      const added = [...threadNiceness()].filter(([tid]) => !before.has(tid)).map(([, nice]) => nice);
      expect(added.filter((n) => n === Math.min(19, base + BACKGROUND_NICE)).length).toBeGreaterThanOrEqual(2);
      const texts = Array.from({ length: 64 }, (_, i) => `text ${i}: the ${['cat', 'dog', 'fox'][i % 3]} sat on mat ${i % 7}`);
      const [a, b] = [await model.embed(texts), await bg.embed(texts)];
      expect(b).toHaveLength(a.length);
      let worst = 0;
      for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
      expect(worst).toBeLessThan(1e-5);
      // The 8 batches went to both sessions, 4 each (each to the one with fewer queued).
      expect(bg.runsPerSession()).toEqual([4, 4]);
      expect(model.runsPerSession()).toEqual([8]);
    } finally {
      await bg.close();
      await model.close();
    }
  }, 60_000);

  it('a given shape overrides it, and a closed instance refuses work', async () => {
    const model = await OnnxEmbedder.load({ model: path.join(root, 'test/fixtures/tiny-bert'), device: 'cpu', threads: 2 });
    const bg = await model.background({ sessions: 1, threads: 2 });
    try {
      expect({ sessions: bg.concurrentRuns, threads: bg.threads }).toEqual({ sessions: 1, threads: 2 });
      expect(await bg.embed(['one text'])).toHaveLength(model.dims);
    } finally {
      await bg.close();
      await model.close();
    }
    await expect(bg.embed(['after close'])).rejects.toThrow(/closed/);
  }, 60_000);

  it('refuses a session count out of range', async () => {
    await expect(OnnxEmbedder.load({ model: path.join(root, 'test/fixtures/tiny-bert'), device: 'cpu', sessions: 0 })).rejects.toThrow(/sessions must be an integer in 1…64, got 0/);
  });
});

describe('the background lane', () => {
  /** A model whose runs are held until released; counts how many are out at once. */
  class HeldModel implements Embedder {
    readonly name = 'held';
    readonly hash = 'h';
    readonly dims = 2;
    readonly device = 'cpu';
    readonly maxBatch = 4;
    out = 0;
    private release: Array<() => void> = [];
    constructor(readonly concurrentRuns?: number) {}
    async embed(texts: string[]): Promise<Float32Array> {
      this.out++;
      await new Promise<void>((r) => this.release.push(r));
      this.out--;
      return new Float32Array(texts.length * this.dims).fill(texts.length);
    }
    releaseAll(): void {
      for (const r of this.release.splice(0)) r();
    }
  }

  it.each([
    [undefined, 2],
    [1, 2],
    [2, 3],
    [4, 5],
  ])('with concurrentRuns %s keeps %i batches submitted, one more than the model runs at once', async (runs, expected) => {
    const model = new HeldModel(runs);
    const lane = new BackgroundLane(model, { quiet: () => Promise.resolve() });
    const texts = Array.from({ length: 40 }, (_, i) => `t${i}`); // 10 batches of 4
    const done = lane.embed(texts);
    await until(() => model.out === expected, 5_000, 1);
    // Nothing more is submitted while they are held (more would have gone out in this time).
    await delay(50);
    expect(model.out).toBe(expected);
    // Released batch by batch, the rest go through, and the result is in order.
    let finished = false;
    void done.finally(() => (finished = true));
    for (let i = 0; i < 2000 && !finished; i++) {
      model.releaseAll();
      await delay(1);
    }
    const v = await done;
    expect(v).toHaveLength(texts.length * model.dims);
    expect(Array.from(v).every((x) => x === 4)).toBe(true);
  });

  it('cuts the batches from the texts sorted by length and returns the vectors in the order given', async () => {
    const batches: string[][] = [];
    const model: Embedder = {
      name: 'len',
      hash: 'l',
      dims: 1,
      device: 'cpu',
      maxBatch: 4,
      embed: (texts) => {
        batches.push(texts);
        return Promise.resolve(Float32Array.from(texts, (t) => t.length));
      },
    };
    const lane = new BackgroundLane(model, { quiet: () => Promise.resolve() });
    // Lengths 1, 8, 2, 7, 3, 6, 4, 5 in this order.
    const texts = [1, 8, 2, 7, 3, 6, 4, 5].map((n) => 'x'.repeat(n));
    const v = await lane.embed(texts);
    expect(Array.from(v)).toEqual([1, 8, 2, 7, 3, 6, 4, 5]);
    expect(batches.map((b) => b.map((t) => t.length))).toEqual([
      [1, 2, 3, 4],
      [5, 6, 7, 8],
    ]);
  });
});

describe('an inference server beside a re-embedding memory server', () => {
  it('createServers: embeds with the directory\'s old embedder until the switch, then with the new one', async () => {
    const dir = tempDir();
    await seed(dir, 300);
    const target = new LoggedEmbedder('target', 5);
    const reembedHeld = latch();
    target.held = reembedHeld.promise;
    const servers = await createServers({
      embedder: target,
      memory: { dataDir: dir, host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false, reembed: true },
      inference: { host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false },
    });
    const inf = await connect(`ws://127.0.0.1:${servers.inference.port}`);
    const mem = await connect(`ws://127.0.0.1:${servers.memory.port}`);
    try {
      const text = 'memory 7: the owl ran near item 7'; // memory m7's text
      // The re-embedding cannot finish while its batches are held: both servers serve hash-v1.
      const during = await inf.request('embeddings', { text });
      expect(during.data.model).toBe('hash-v1');
      expectVectorsClose(during.data.embedding, hashEmbed([text]));
      expect((await inf.request('stats')).data.model).toBe('hash-v1');
      expect((await mem.request('stats')).data.reembed.state).toBe('copying');
      // A query embedded by the inference server finds the memory in the memory server.
      const hit = await mem.request('retrieve', { embedding: during.data.embedding, count: 1 });
      expect(hit.data.memories[0].id).toBe('m7');
      expect(hit.data.memories[0].score).toBeGreaterThan(0.99);
      target.held = null;
      reembedHeld.open();
      await until(() => servers.memory.reembedProgress() === null, 60_000, 5);
      expect((await mem.request('stats')).data.model).toBe('target');
      // The switch reaches the inference server (a file watch; a poll at worst).
      await until(() => servers.inference.embedder.name === 'target', 5_000, 5);
      const after = await inf.request('embeddings', { text });
      expect(after.data.model).toBe('target');
      expectVectorsClose(after.data.embedding, target.vectors([text]));
    } finally {
      target.held = null;
      reembedHeld.open();
      inf.close();
      mem.close();
      await servers.close();
    }
  }, 90_000);

  describe('the CLI with supervised children', () => {
    const bin = path.join(root, 'dist/cli/main.js');
    const FIXTURE = path.join(root, 'test/fixtures/tiny-bert');
    const children: ChildProcess[] = [];
    beforeAll(() => ensureBuilt(), 180_000);
    afterEach(() => {
      for (const ch of children.splice(0)) if (ch.exitCode === null && ch.signalCode === null) ch.kill('SIGKILL');
    });

    it('the inference child serves hash-v1 while the memory child re-embeds, the model once it has switched', async () => {
      const dir = tempDir();
      await seed(dir, 10_000);
      const args = ['--host', '127.0.0.1', '--port', '0', '--inference-port', '0', '--control-port', '0', '--data-dir', dir, '--log-level', 'silent'];
      const child = spawn(process.execPath, [bin, ...args, '--model', FIXTURE, '--device', 'cpu', '--threads', '1', '--reembed'], { stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(child);
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
      const deadline = Date.now() + 60_000;
      while (!out.includes('Ctrl-C to stop')) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`CLI did not start: ${out}`);
        await delay(20);
      }
      const port = (name: string): number => Number(new RegExp(`${name}\\s+ws://[^\\s]+:(\\d+)`).exec(out)![1]);
      const inf = await connect(`ws://127.0.0.1:${port('inference server')}`);
      const mem = await connect(`ws://127.0.0.1:${port('memory server')}`);
      try {
        // An embedding answered before a `stats` that still shows the re-embedding was made
        // before the switch began (the memory server holds every command from then on), so it
        // must be hash-v1's: sampled until the switch.
        let during = 0;
        const end = Date.now() + 120_000;
        for (;;) {
          const e = await inf.request('embeddings', { text: 'memory 0: the cat sat near item 0' });
          const st = (await mem.request('stats')).data;
          if (!st.reembed) break;
          expect(e.data.model).toBe('hash-v1');
          expect(e.data.dims).toBe(D);
          during++;
          if (Date.now() > end) throw new Error('re-embedding did not finish');
          await delay(20);
        }
        expect(during, 'sampled while re-embedding').toBeGreaterThan(0);
        const model = (await mem.request('stats')).data.model as string;
        expect(model).toMatch(/tiny-bert/);
        // …and the inference child follows the switch.
        const switchedBy = Date.now() + 10_000;
        let e = await inf.request('embeddings', { text: 'memory 0: the cat sat near item 0' });
        while (e.data.model !== model && Date.now() < switchedBy) {
          await delay(25);
          e = await inf.request('embeddings', { text: 'memory 0: the cat sat near item 0' });
        }
        expect(e.data.model).toBe(model);
        expect(e.data.dims).toBe(64);
        // Its vectors are the memory server's now: the memory's own text scores 1.
        const hit = await mem.request('retrieve', { embedding: e.data.embedding, count: 1 });
        expect(hit.data.memories[0].score).toBeGreaterThan(0.99);
      } finally {
        inf.close();
        mem.close();
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      }
    }, 240_000);
  });
});
