/**
 * The padding-aware batch former (ts/server/batch-former.ts) and the batcher's latency
 * budget: the cheapest partition against brute force, the padded/real token ratio against
 * arrival order on a realistic mix of lengths, the oldest text always in the next run, and
 * `maxWaitMs` kept (fake timers: no wall-clock assertion).
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Embedder } from '../ts/embedder.js';
import { nextBatch, paddingRatio, planRuns, runsCost, type BatchFormOptions } from '../ts/server/batch-former.js';
import { EmbeddingBatcher } from '../ts/server/inference-batcher.js';

/** Deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Token counts of chat messages and notes: log-normal around 35 tokens, 5…250. */
function mixedLengths(n: number, seed: number): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => {
    const gauss = Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
    return Math.max(5, Math.min(250, Math.round(Math.exp(Math.log(35) + 0.8 * gauss))));
  });
}

/** Every partition of `items` into runs allowed by `o` (brute force, small inputs only). */
function* partitions(items: number[], o: BatchFormOptions, tokens: number[]): Generator<number[][]> {
  if (items.length === 0) {
    yield [];
    return;
  }
  const [first, ...rest] = items as [number, ...number[]];
  // The run holding `first`: first plus any subset of the rest.
  for (let mask = 0; mask < 1 << rest.length; mask++) {
    const run = [first, ...rest.filter((_, i) => mask & (1 << i))];
    const longest = Math.max(...run.map((i) => tokens[i]!));
    if (run.length > o.maxBatch || (run.length > 1 && run.length * longest > o.maxBatchTokens)) continue;
    for (const more of partitions(rest.filter((_, i) => !(mask & (1 << i))), o, tokens)) yield [run, ...more];
  }
}

const lengthsOf = (runs: number[][], tokens: number[]): number[][] => runs.map((r) => r.map((i) => tokens[i]!));

describe('batch former', () => {
  it('plans the cheapest partition into runs (brute force on small queues)', () => {
    const r = rng(11);
    for (let trial = 0; trial < 200; trial++) {
      const m = 1 + Math.floor(r() * 7);
      const tokens = Array.from({ length: m }, () => 2 + Math.floor(r() * 60));
      const o: BatchFormOptions = { maxBatch: 1 + Math.floor(r() * 4), maxBatchTokens: 40 + Math.floor(r() * 150), runOverheadTokens: Math.floor(r() * 40) };
      let bruteBest = Infinity;
      for (const p of partitions(tokens.map((_, i) => i), o, tokens)) bruteBest = Math.min(bruteBest, runsCost(lengthsOf(p, tokens), o.runOverheadTokens));
      const plan = planRuns(tokens, o);
      expect(plan.flat().sort((a, b) => a - b)).toEqual(tokens.map((_, i) => i)); // every text exactly once
      expect(runsCost(lengthsOf(plan, tokens), o.runOverheadTokens)).toBe(bruteBest);
    }
  });

  it('cuts the padded/real token ratio far below arrival order on mixed lengths, oldest text always first', () => {
    const o: BatchFormOptions = { maxBatch: 32, maxBatchTokens: 32 * 256, runOverheadTokens: 64 };
    const lengths = mixedLengths(256, 5);
    const arrival: number[][] = [];
    for (let i = 0; i < lengths.length; i += 32) arrival.push(lengths.slice(i, i + 32));
    // Drain the queue the way the batcher does: the run holding the oldest text, again and again.
    let queue = lengths.map((tokens, arrived) => ({ tokens, arrived }));
    const formed: number[][] = [];
    while (queue.length > 0) {
      const pick = nextBatch(queue.map((q) => q.tokens), o);
      expect(pick).toContain(0); // the oldest waiting text goes now
      expect(pick.length).toBeLessThanOrEqual(o.maxBatch);
      const run = pick.map((i) => queue[i]!.tokens);
      expect(Math.max(...run) * run.length).toBeLessThanOrEqual(o.maxBatchTokens);
      formed.push(run);
      const taken = new Set(pick);
      queue = queue.filter((_, i) => !taken.has(i));
    }
    expect(formed.flat().length).toBe(256);
    const before = paddingRatio(arrival);
    const after = paddingRatio(formed);
    expect(before).toBeGreaterThan(2.5); // one long text in almost every arrival-order batch
    expect(after).toBeLessThan(1.2);
    expect(runsCost(formed, o.runOverheadTokens)).toBeLessThan(runsCost(arrival, o.runOverheadTokens) / 2);
  });

  it('splits a run only when that saves more padding than a run costs', () => {
    const o = (runOverheadTokens: number): BatchFormOptions => ({ maxBatch: 8, maxBatchTokens: 10_000, runOverheadTokens });
    const tokens = [10, 10, 10, 10, 200];
    expect(nextBatch(tokens, o(64))).toEqual([0, 1, 2, 3]); // 4×10 + 200 + 2 runs < 5×200 + 1 run
    expect(nextBatch(tokens, o(5000))).toEqual([0, 1, 2, 3, 4]); // a run costing more than the padding: one run
    expect(nextBatch([7], o(64))).toEqual([0]);
    expect(nextBatch([], o(64))).toEqual([]);
    // A text longer than the token budget runs alone rather than never.
    expect(nextBatch([300, 4, 4], { maxBatch: 8, maxBatchTokens: 100, runOverheadTokens: 0 })).toEqual([0]);
  });
});

/** Records batches; a run takes `runMs` (fake timers). Tokens = words + 2. */
class RecordingEmbedder implements Embedder {
  readonly name = 'recording';
  readonly hash = 'x';
  readonly dims = 1;
  readonly device = 'cpu';
  batches: string[][] = [];
  constructor(
    readonly maxBatch: number,
    private readonly runMs: number,
  ) {}
  tokenCounts(texts: string[]): number[] {
    return texts.map((t) => t.split(' ').length + 2);
  }
  async embed(texts: string[]): Promise<Float32Array> {
    this.batches.push(texts);
    await new Promise((r) => setTimeout(r, this.runMs));
    return new Float32Array(texts.length);
  }
}

describe('batcher latency budget', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('an idle runtime holds a partial batch for at most maxWaitMs', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const e = new RecordingEmbedder(8, 5);
    const b = new EmbeddingBatcher(e, { maxWaitMs: 50 });
    const first = b.embed(['one']);
    await vi.advanceTimersByTimeAsync(30);
    const second = b.embed(['two words']); // joins the held batch
    await vi.advanceTimersByTimeAsync(19);
    expect(e.batches).toEqual([]); // 49 ms: still held for company
    await vi.advanceTimersByTimeAsync(1);
    expect(e.batches).toEqual([['one', 'two words']]); // 50 ms after the oldest arrived: cut
    await vi.advanceTimersByTimeAsync(5);
    await Promise.all([first, second]);
  });

  it('under load the oldest waiting text is in every next run, however long it is', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const e = new RecordingEmbedder(4, 10);
    const b = new EmbeddingBatcher(e, { maxWaitMs: 2, runOverheadTokens: 0 });
    const order: string[] = [];
    const all: Promise<Float32Array>[] = [];
    const send = (t: string): void => {
      order.push(t);
      all.push(b.embed([t]));
    };
    for (let i = 0; i < 8; i++) send(`busy${i}`); // two full runs occupy the runtime
    send(`long ${'w '.repeat(60).trim()}`); // the oldest of the queue from here on
    for (let i = 0; i < 12; i++) send(`s${i}`);
    // Short texts keep arriving while the queue drains.
    for (let step = 0; step < 10; step++) {
      await vi.advanceTimersByTimeAsync(10);
      send(`late${step}`);
    }
    await vi.advanceTimersByTimeAsync(500);
    await Promise.all(all);
    const done = new Set<string>();
    for (const batch of e.batches) {
      // The oldest text not yet run when this batch was cut is in it.
      const oldest = order.find((t) => !done.has(t) && e.batches.flat().includes(t))!;
      expect(batch).toContain(oldest);
      for (const t of batch) done.add(t);
    }
    expect(e.batches[2]!).toContain(order[8]); // the long text went right after the busy runs
    expect(e.batches.flat().sort()).toEqual([...order].sort());
  });
});
