/**
 * The dynamic batcher on a scripted two-phase embedder: length-sorted batches, token
 * budget, pipelining (the next batch is prepared while one runs), departed clients
 * skipped, `overloaded`, a failing text confined to its own request (the run retried in
 * halves), the latency budget.
 */
import { describe, expect, it } from 'vitest';
import type { Embedder, PreparedBatch } from '../ts/embedder.js';
import { EmbeddingBatcher } from '../ts/server/inference-batcher.js';

const DIMS = 4;

/** Embeds text t as [len(t), first char code, 0, 1]; tokens = words + 2; runs complete when released. */
class ScriptedEmbedder implements Embedder {
  readonly name = 'scripted';
  readonly hash = 'x';
  readonly dims = DIMS;
  readonly device = 'cpu';
  readonly maxBatch: number;
  readonly maxBatchTokens?: number;
  /** Texts of each prepared batch, in order. */
  prepared: string[][] = [];
  /** Events: 'prepare:N' / 'run-start:N' / 'run-end:N'. */
  events: string[] = [];
  private waiting: Array<() => void> = [];
  running = 0;
  maxRunning = 0;
  failNext = false;
  /** A run holding this text fails (like a text onnxruntime cannot run). */
  poison: string | null = null;
  /** Error code of the failures (the batcher does not retry `unavailable`). */
  failCode: string | undefined;
  autoRelease = true;

  constructor(maxBatch: number, maxBatchTokens?: number) {
    this.maxBatch = maxBatch;
    if (maxBatchTokens !== undefined) this.maxBatchTokens = maxBatchTokens;
  }

  tokenCounts(texts: string[]): number[] {
    return texts.map((t) => t.split(' ').length + 2);
  }

  embed(texts: string[]): Promise<Float32Array> {
    return this.runPrepared(this.prepare(texts));
  }

  prepare(texts: string[]): PreparedBatch & { texts: string[]; n: number } {
    this.prepared.push(texts);
    const n = this.prepared.length;
    this.events.push(`prepare:${n}`);
    return { size: texts.length, tokens: 0, texts, n };
  }

  async runPrepared(p: PreparedBatch): Promise<Float32Array> {
    const { texts, n } = p as PreparedBatch & { texts: string[]; n: number };
    const fail = this.failNext;
    this.failNext = false;
    // Runs execute one at a time, in order (like the onnx worker).
    while (this.running > 0) await new Promise<void>((r) => this.waiting.push(r));
    this.running++;
    this.events.push(`run-start:${n}`);
    await new Promise((r) => setTimeout(r, 5));
    this.running--;
    this.events.push(`run-end:${n}`);
    this.waiting.shift()?.();
    if (fail || (this.poison !== null && texts.includes(this.poison))) {
      throw Object.assign(new Error('model exploded'), { code: this.failCode });
    }
    const out = new Float32Array(texts.length * DIMS);
    texts.forEach((t, i) => out.set([t.length, t.charCodeAt(0), 0, 1], i * DIMS));
    return out;
  }
}

const words = (n: number, c = 'w'): string => Array.from({ length: n }, () => c).join(' ');

describe('EmbeddingBatcher', () => {
  it('splits rows back per request in order', async () => {
    const e = new ScriptedEmbedder(8);
    const b = new EmbeddingBatcher(e, { maxWaitMs: 1 });
    const [a, c] = await Promise.all([b.embed(['a', 'bb', 'ccc']), b.embed(['dddd'])]);
    expect(Array.from(a)).toEqual([1, 97, 0, 1, 2, 98, 0, 1, 3, 99, 0, 1]);
    expect(Array.from(c)).toEqual([4, 100, 0, 1]);
    expect(b.batches).toBe(1);
  });

  it('sorts the queue by token length so batches hold similar lengths, oldest text first', async () => {
    const e = new ScriptedEmbedder(4);
    const b = new EmbeddingBatcher(e, { maxWaitMs: 50 });
    // Two full batches occupy the runtime (one running, one queued on it) ...
    const busy = [b.embed(['p1', 'p2', 'p3', 'p4']), b.embed(['p5', 'p6', 'p7', 'p8'])];
    // ... while interleaved short (1 word) and long (40 words) texts queue up.
    const texts: string[] = [];
    for (let i = 0; i < 8; i++) texts.push(i % 2 === 0 ? `s${i}` : `l${i} ${words(39)}`);
    await Promise.all([...busy, ...texts.map((t) => b.embed([t]))]);
    // The next batch holds the oldest text (short) and only short ones; long ones go together.
    expect(e.prepared.length).toBe(4);
    expect(e.prepared[2]).toContain('s0');
    for (const batch of e.prepared) expect(new Set(batch.map((t) => t[0])).size).toBe(1);
    expect(b.paddedTokens).toBe(b.realTokens); // no padding at all
  });

  it('keeps padded tokens (texts × longest) within the token budget', async () => {
    const e = new ScriptedEmbedder(64, 100);
    const b = new EmbeddingBatcher(e, { maxWaitMs: 20 });
    const texts = Array.from({ length: 30 }, (_, i) => words(1 + (i % 20)));
    await Promise.all(texts.map((t) => b.embed([t])));
    for (const batch of e.prepared) {
      const longest = Math.max(...e.tokenCounts(batch));
      expect(batch.length * longest).toBeLessThanOrEqual(100);
    }
    expect(e.prepared.flat().sort()).toEqual([...texts].sort());
  });

  it('prepares and queues the next full batch while one runs', async () => {
    const e = new ScriptedEmbedder(4);
    const b = new EmbeddingBatcher(e, { maxWaitMs: 1 });
    await Promise.all(Array.from({ length: 12 }, (_, i) => b.embed([`t${i}`])));
    // Batch 2 was prepared before batch 1 finished running.
    expect(e.events.indexOf('prepare:2')).toBeLessThan(e.events.indexOf('run-end:1'));
    expect(e.prepared.map((x) => x.length)).toEqual([4, 4, 4]);
  });

  it('does not pipeline a partial batch: it waits for the runtime and takes late arrivals', async () => {
    const e = new ScriptedEmbedder(4);
    const b = new EmbeddingBatcher(e, { maxWaitMs: 0 });
    const first = b.embed(['a', 'b', 'c', 'd']); // full: runs at once
    const late = [b.embed(['e']), b.embed(['f'])];
    await new Promise((r) => setTimeout(r, 1));
    late.push(b.embed(['g']));
    await Promise.all([first, ...late]);
    expect(e.prepared).toEqual([['a', 'b', 'c', 'd'], ['e', 'f', 'g']]);
  });

  it('skips texts of requests whose client left', async () => {
    const e = new ScriptedEmbedder(2);
    const b = new EmbeddingBatcher(e, { maxWaitMs: 1 });
    let gone = false;
    // One batch running and one queued on the runtime: later texts wait in the batcher.
    const keep = [b.embed(['k1', 'k2']), b.embed(['k3', 'k4'])];
    const left = b.embed(['x1', 'x2', 'x3'], { cancelled: () => gone });
    keep.push(b.embed(['k5']));
    gone = true;
    await expect(left).rejects.toMatchObject({ code: 'unavailable' });
    await Promise.all(keep);
    expect(e.prepared.flat().sort()).toEqual(['k1', 'k2', 'k3', 'k4', 'k5']);
    expect(b.skipped).toBe(3);
  });

  it('overloaded past maxQueue, with the queue unchanged', async () => {
    const e = new ScriptedEmbedder(2);
    const b = new EmbeddingBatcher(e, { maxQueue: 5, maxWaitMs: 5 });
    const busy = [b.embed(['p1', 'p2']), b.embed(['p3', 'p4'])]; // runtime occupied
    const ok = b.embed(['a', 'b', 'c']);
    expect(b.queueDepth).toBe(3);
    await expect(b.embed(['d', 'e', 'f'])).rejects.toMatchObject({ code: 'overloaded', data: { queue_depth: 3, max_queue: 5 } });
    expect(b.queueDepth).toBe(3);
    await Promise.all([...busy, ok]);
  });

  it('a text that makes the run fail fails only its own request: the run is retried in halves', async () => {
    const e = new ScriptedEmbedder(16);
    const logged: string[] = [];
    const b = new EmbeddingBatcher(e, { maxWaitMs: 1, log: (m) => logged.push(m) });
    e.poison = 'bad';
    const texts = ['a', 'b', 'c', 'bad', 'd', 'e', 'f'];
    const doomedMulti = b.embed(['g', 'bad']); // a request holding the bad text fails as a whole
    const results = await Promise.allSettled([...texts.map((t) => b.embed([t])), doomedMulti]);
    expect(e.prepared[0]!.length).toBe(9); // one run of all nine first
    for (let i = 0; i < texts.length; i++) {
      const r = results[i]!;
      if (texts[i] === 'bad') {
        expect(r.status).toBe('rejected');
        expect((r as PromiseRejectedResult).reason.message).toBe('model exploded');
      } else {
        expect(r.status).toBe('fulfilled');
        expect(Array.from((r as PromiseFulfilledResult<Float32Array>).value)).toEqual([texts[i]!.length, texts[i]!.charCodeAt(0), 0, 1]);
      }
    }
    expect(results[texts.length]!.status).toBe('rejected');
    expect(b.retriedRuns).toBeGreaterThan(0);
    expect(b.retriedRuns).toBeLessThanOrEqual(2 * Math.ceil(Math.log2(9))); // bisection, not one by one
    expect(b.failedTexts).toBeGreaterThanOrEqual(1);
    expect(b.embedded).toBe(7); // every other text ran once in a successful run
    expect(logged.some((m) => /failed .*halves/.test(m))).toBe(true);
    // The batcher keeps serving.
    expect(Array.from(await b.embed(['zz']))).toEqual([2, 122, 0, 1]);
  });

  it('an unavailable embedder fails the whole run without retrying', async () => {
    const e = new ScriptedEmbedder(4);
    const b = new EmbeddingBatcher(e, { maxWaitMs: 1 });
    e.failNext = true;
    e.failCode = 'unavailable';
    const all = await Promise.allSettled([b.embed(['a', 'b']), b.embed(['c'])]);
    expect(all.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(e.prepared.length).toBe(1);
    expect(b.retriedRuns).toBe(0);
  });

  it('close() fails queued requests with unavailable and refuses new ones', async () => {
    const e = new ScriptedEmbedder(1);
    const b = new EmbeddingBatcher(e, { maxWaitMs: 1 });
    const running = [b.embed(['a']), b.embed(['b'])]; // one running, one queued on the runtime
    const queued = b.embed(['c']);
    b.close();
    await expect(queued).rejects.toMatchObject({ code: 'unavailable' });
    await expect(b.embed(['d'])).rejects.toMatchObject({ code: 'unavailable' });
    await Promise.all(running); // in-flight runs still complete
  });
});
