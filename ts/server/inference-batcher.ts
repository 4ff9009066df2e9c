/**
 * Dynamic batching for the inference server: requests from every connection
 * are queued; a batch is run as soon as `maxBatch` texts are waiting or
 * `maxWaitMs` after the first one arrived (and the previous run finished),
 * with one `embed()` call, and the rows are split back per request.
 * The queue is bounded in texts: past `maxQueue` a request fails with `overloaded`.
 */
import { ProtocolError } from '../protocol/index.js';
import type { Embedder } from '../embedder.js';

export interface BatcherOptions {
  /** Texts per embed call. Default: the embedder's maxBatch (256). */
  maxBatch?: number;
  /** Max texts waiting (not yet running). Default 4096. */
  maxQueue?: number;
  /** How long the first queued text waits for company. Default 2 ms. */
  maxWaitMs?: number;
  /** Token budget per batch (sum of text lengths / 4 as a cheap estimate). Default 64k. */
  maxBatchTokens?: number;
}

interface Job {
  texts: string[];
  /** Next text of this job not yet assigned to a batch. */
  next: number;
  out: Float32Array;
  pending: number;
  resolve: (v: Float32Array) => void;
  reject: (e: unknown) => void;
  enqueuedAt: number;
}

const LATENCY_RING = 1024;

export class EmbeddingBatcher {
  readonly maxBatch: number;
  readonly maxQueue: number;
  readonly maxWaitMs: number;
  readonly maxBatchTokens: number;
  private readonly queue: Job[] = [];
  private queuedTexts = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private running = false;
  private closed = false;
  // Counters.
  requests = 0;
  batches = 0;
  embedded = 0;
  private readonly startedAt = Date.now();
  private readonly latencies = new Float64Array(LATENCY_RING);
  private latencyCount = 0;
  private readonly epsRing: Array<{ t: number; n: number }> = [];

  constructor(
    private readonly embedder: Embedder,
    options: BatcherOptions = {},
  ) {
    this.maxBatch = Math.max(1, options.maxBatch ?? embedder.maxBatch ?? 256);
    this.maxQueue = Math.max(1, options.maxQueue ?? 4096);
    this.maxWaitMs = Math.max(0, options.maxWaitMs ?? 2);
    this.maxBatchTokens = Math.max(1, options.maxBatchTokens ?? 65_536);
  }

  /** Texts waiting to be run. */
  get queueDepth(): number {
    return this.queuedTexts;
  }

  /** Embeds texts (batched with concurrent callers); `texts.length × dims` rows. */
  embed(texts: string[]): Promise<Float32Array> {
    if (this.closed) return Promise.reject(new ProtocolError('unavailable', 'Inference server is shutting down'));
    if (texts.length === 0) return Promise.resolve(new Float32Array(0));
    if (this.queuedTexts + texts.length > this.maxQueue) {
      return Promise.reject(
        new ProtocolError('overloaded', `Embedding queue is full (${this.maxQueue} texts); retry later`, {
          queue_depth: this.queuedTexts,
          max_queue: this.maxQueue,
        }),
      );
    }
    this.requests++;
    return new Promise<Float32Array>((resolve, reject) => {
      this.queue.push({
        texts,
        next: 0,
        out: new Float32Array(texts.length * this.embedder.dims),
        pending: texts.length,
        resolve,
        reject,
        enqueuedAt: performance.now(),
      });
      this.queuedTexts += texts.length;
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.running) return;
    if (this.queuedTexts >= this.maxBatch || this.maxWaitMs === 0) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      queueMicrotask(() => void this.run());
      return;
    }
    if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = null;
        void this.run();
      }, this.maxWaitMs);
    }
  }

  private async run(): Promise<void> {
    if (this.running || this.queue.length === 0) return;
    this.running = true;
    // Assemble one batch: whole or partial jobs, up to maxBatch texts / the token budget.
    const texts: string[] = [];
    const parts: Array<{ job: Job; from: number; count: number }> = [];
    let tokens = 0;
    while (this.queue.length > 0 && texts.length < this.maxBatch) {
      const job = this.queue[0]!;
      const from = job.next;
      let count = 0;
      while (job.next < job.texts.length && texts.length < this.maxBatch) {
        const t = job.texts[job.next]!;
        const est = Math.ceil(t.length / 4) + 2;
        if (texts.length > 0 && tokens + est > this.maxBatchTokens) break;
        tokens += est;
        texts.push(t);
        job.next++;
        count++;
      }
      if (count > 0) parts.push({ job, from, count });
      if (job.next >= job.texts.length) this.queue.shift();
      else break; // budget reached
    }
    this.queuedTexts -= texts.length;
    const dims = this.embedder.dims;
    try {
      const rows = await this.embedder.embed(texts);
      this.batches++;
      this.embedded += texts.length;
      this.noteEmbedded(texts.length);
      let off = 0;
      for (const p of parts) {
        p.job.out.set(rows.subarray(off * dims, (off + p.count) * dims), p.from * dims);
        off += p.count;
        p.job.pending -= p.count;
        if (p.job.pending === 0) {
          this.noteLatency(performance.now() - p.job.enqueuedAt);
          p.job.resolve(p.job.out);
        }
      }
    } catch (err) {
      for (const p of parts) {
        if (p.job.pending > 0) {
          p.job.pending = -1;
          // Drop the rest of a partially assigned job.
          const idx = this.queue.indexOf(p.job);
          if (idx >= 0) {
            this.queuedTexts -= p.job.texts.length - p.job.next;
            this.queue.splice(idx, 1);
          }
          p.job.reject(err);
        }
      }
    } finally {
      this.running = false;
      if (this.queue.length > 0) this.schedule();
    }
  }

  private noteLatency(ms: number): void {
    this.latencies[this.latencyCount % LATENCY_RING] = ms;
    this.latencyCount++;
  }

  private noteEmbedded(n: number): void {
    const t = Date.now();
    this.epsRing.push({ t, n });
    while (this.epsRing.length > 0 && t - this.epsRing[0]!.t > 10_000) this.epsRing.shift();
  }

  /** Percentile (0…100) of request latency over the last 1024 requests, ms. */
  percentile(p: number): number {
    const n = Math.min(this.latencyCount, LATENCY_RING);
    if (n === 0) return 0;
    const sorted = Array.from(this.latencies.subarray(0, n)).sort((a, b) => a - b);
    return sorted[Math.min(n - 1, Math.floor((p / 100) * n))]!;
  }

  embeddingsPerSecond(): number {
    const t = Date.now();
    while (this.epsRing.length > 0 && t - this.epsRing[0]!.t > 10_000) this.epsRing.shift();
    if (this.epsRing.length === 0) return 0;
    const span = Math.max(1, Math.min(10, (t - this.startedAt) / 1000));
    let n = 0;
    for (const e of this.epsRing) n += e.n;
    return n / span;
  }

  /** Fails queued requests and refuses new ones. */
  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const err = new ProtocolError('unavailable', 'Inference server is shutting down');
    for (const j of this.queue.splice(0)) j.reject(err);
    this.queuedTexts = 0;
  }
}
