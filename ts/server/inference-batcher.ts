/**
 * Dynamic batching (docs/protocol.md "Dynamic batching"), modelled on text-embeddings-inference's queue:
 *
 * - one bounded queue of texts from every connection; past `maxQueue` texts a request
 *   fails with `overloaded`;
 * - a batch is cut by item count (`maxBatch`) and a padded-token budget (texts ×
 *   the longest text's tokens ≤ `maxBatchTokens`), as soon as a full batch is waiting or
 *   `maxWaitMs` after the oldest text arrived;
 * - to limit padding, a batch is chosen among the oldest `4 × maxBatch` texts sorted by
 *   token length: the oldest text always goes, with its nearest neighbours in length
 *   (so nothing starves);
 * - texts of requests whose client has left (`cancelled()`) are skipped, not run;
 * - with a two-phase embedder (`prepare` / `runPrepared`, the ONNX one), the next full
 *   batch is tokenized and queued on the runtime while the current one runs, so the
 *   runtime never waits for the main thread;
 * - rows are split back per request; latency percentiles and throughput for `stats`.
 */
import { ProtocolError } from '../protocol/index.js';
import type { Embedder } from '../embedder.js';

export interface BatcherOptions {
  /** Texts per run. Default: the embedder's maxBatch. */
  maxBatch?: number;
  /** Max texts waiting (not yet running). Default 4096. */
  maxQueue?: number;
  /** How long the oldest queued text waits for company. Default 2 ms. */
  maxWaitMs?: number;
  /** Padded tokens per run (texts × longest). Default: the embedder's, else 64k. */
  maxBatchTokens?: number;
}

export interface EmbedRequestOptions {
  /** True once nobody waits for the result (the client left): its texts are skipped. */
  cancelled?: () => boolean;
}

interface Job {
  texts: string[];
  out: Float32Array;
  pending: number;
  done: boolean;
  resolve: (v: Float32Array) => void;
  reject: (e: unknown) => void;
  enqueuedAt: number;
  cancelled: (() => boolean) | undefined;
}

interface Item {
  job: Job;
  index: number;
  tokens: number;
  taken: boolean;
}

const LATENCY_RING = 1024;
/** How many queue items (× maxBatch) the length sort looks at. */
const SORT_WINDOW = 4;

export class EmbeddingBatcher {
  readonly maxBatch: number;
  readonly maxQueue: number;
  readonly maxWaitMs: number;
  readonly maxBatchTokens: number;
  private queue: Item[] = [];
  private queuedTokens = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private inFlight = 0;
  private readonly maxInFlight: number;
  private closed = false;
  // Counters.
  requests = 0;
  batches = 0;
  embedded = 0;
  /** Texts dropped because their client left before they ran. */
  skipped = 0;
  /** Padded tokens run, and real tokens among them. */
  paddedTokens = 0;
  realTokens = 0;
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
    this.maxBatchTokens = Math.max(1, options.maxBatchTokens ?? embedder.maxBatchTokens ?? 65_536);
    this.maxInFlight = embedder.prepare && embedder.runPrepared ? 2 : 1;
  }

  /** Texts waiting to be run. */
  get queueDepth(): number {
    return this.queue.length;
  }

  /** Embeds texts (batched with concurrent callers); `texts.length × dims` rows. */
  embed(texts: string[], options: EmbedRequestOptions = {}): Promise<Float32Array> {
    if (this.closed) return Promise.reject(new ProtocolError('unavailable', 'Inference server is shutting down'));
    if (texts.length === 0) return Promise.resolve(new Float32Array(0));
    if (this.queue.length + texts.length > this.maxQueue) {
      return Promise.reject(
        new ProtocolError('overloaded', `Embedding queue is full (${this.maxQueue} texts); retry later`, {
          queue_depth: this.queue.length,
          max_queue: this.maxQueue,
        }),
      );
    }
    const counts = this.tokenCounts(texts);
    this.requests++;
    return new Promise<Float32Array>((resolve, reject) => {
      const job: Job = {
        texts,
        out: new Float32Array(texts.length * this.embedder.dims),
        pending: texts.length,
        done: false,
        resolve,
        reject,
        enqueuedAt: performance.now(),
        cancelled: options.cancelled,
      };
      for (let i = 0; i < texts.length; i++) {
        const tokens = counts[i]!;
        this.queue.push({ job, index: i, tokens, taken: false });
        this.queuedTokens += tokens;
      }
      this.schedule();
    });
  }

  private tokenCounts(texts: string[]): ArrayLike<number> {
    if (this.embedder.tokenCounts) return this.embedder.tokenCounts(texts);
    const est = new Uint32Array(texts.length);
    for (let i = 0; i < texts.length; i++) est[i] = Math.ceil(texts[i]!.length / 4) + 2;
    return est;
  }

  private schedule(): void {
    if (this.closed) return;
    while (this.queue.length > 0 && this.inFlight < this.maxInFlight) {
      const full = this.queue.length >= this.maxBatch || this.queuedTokens >= this.maxBatchTokens;
      if (this.inFlight > 0 && !full) return; // pipeline only full batches; partial ones wait for the runtime
      if (!full && this.inFlight === 0) {
        const waited = performance.now() - this.queue[0]!.job.enqueuedAt;
        if (waited < this.maxWaitMs) {
          this.timer ??= setTimeout(() => {
            this.timer = null;
            this.schedule();
          }, this.maxWaitMs - waited);
          return;
        }
      }
      if (this.timer) {
        clearTimeout(this.timer);
        this.timer = null;
      }
      if (!this.cut()) return;
    }
  }

  /** Drops queued texts of departed clients and failed requests. */
  private dropDeparted(limit: number): void {
    let dropped = false;
    for (let i = 0; i < Math.min(limit, this.queue.length); i++) {
      const it = this.queue[i]!;
      if (it.job.done) {
        it.taken = true;
        dropped = true;
      } else if (it.job.cancelled?.()) {
        it.job.done = true;
        it.job.reject(new ProtocolError('unavailable', 'client left before its texts ran'));
        it.taken = true;
        dropped = true;
      }
      if (it.taken) {
        this.skipped++;
        this.queuedTokens -= it.tokens;
      }
    }
    if (dropped) this.queue = this.queue.filter((it) => !it.taken);
  }

  /** Chooses the next batch and starts it. False when nothing was left to run. */
  private cut(): boolean {
    const windowSize = this.maxBatch * SORT_WINDOW;
    this.dropDeparted(windowSize);
    if (this.queue.length === 0) return false;
    const w = this.queue.slice(0, Math.min(windowSize, this.queue.length));
    const batch = this.choose(w);
    for (const it of batch) {
      it.taken = true;
      this.queuedTokens -= it.tokens;
    }
    this.queue.splice(0, w.length, ...w.filter((it) => !it.taken));
    this.start(batch);
    return true;
  }

  /** The oldest item plus its nearest neighbours in token length, within count and budget. */
  private choose(w: Item[]): Item[] {
    const budget = this.maxBatchTokens;
    // Fast path: the whole window fits.
    if (w.length <= this.maxBatch) {
      let max = 0;
      for (const it of w) max = Math.max(max, it.tokens);
      if (max * w.length <= budget) return w;
    }
    const order = w.map((_, i) => i).sort((a, b) => w[a]!.tokens - w[b]!.tokens || a - b);
    const p = order.indexOf(0);
    let lo = p;
    let hi = p;
    const t0 = w[0]!.tokens;
    let max = t0;
    while (hi - lo + 1 < this.maxBatch) {
      const n = hi - lo + 1;
      const down = lo > 0 ? w[order[lo - 1]!]!.tokens : -1;
      const up = hi + 1 < order.length ? w[order[hi + 1]!]!.tokens : -1;
      const downOk = down >= 0 && Math.max(max, down) * (n + 1) <= budget;
      const upOk = up >= 0 && Math.max(max, up) * (n + 1) <= budget;
      if (!downOk && !upOk) break;
      if (downOk && (!upOk || t0 - down <= up - t0)) {
        lo--;
      } else {
        hi++;
        max = Math.max(max, up);
      }
    }
    const chosen: Item[] = [];
    for (let i = lo; i <= hi; i++) chosen.push(w[order[i]!]!);
    return chosen;
  }

  private start(batch: Item[]): void {
    const texts = batch.map((it) => it.job.texts[it.index]!);
    let maxTokens = 0;
    let realTokens = 0;
    for (const it of batch) {
      maxTokens = Math.max(maxTokens, it.tokens);
      realTokens += it.tokens;
    }
    let run: Promise<Float32Array>;
    try {
      const e = this.embedder;
      if (e.prepare && e.runPrepared) {
        const p = e.prepare(texts);
        run = e.runPrepared(p);
      } else {
        run = e.embed(texts);
      }
    } catch (err) {
      run = Promise.reject(err);
    }
    this.inFlight++;
    run
      .then(
        (rows) => {
          this.batches++;
          this.embedded += texts.length;
          this.paddedTokens += maxTokens * texts.length;
          this.realTokens += realTokens;
          this.noteEmbedded(texts.length);
          const dims = this.embedder.dims;
          for (let k = 0; k < batch.length; k++) {
            const { job, index } = batch[k]!;
            if (job.done) continue;
            job.out.set(rows.subarray(k * dims, (k + 1) * dims), index * dims);
            if (--job.pending === 0) {
              job.done = true;
              this.noteLatency(performance.now() - job.enqueuedAt);
              job.resolve(job.out);
            }
          }
        },
        (err: unknown) => {
          for (const { job } of batch) {
            if (job.done) continue;
            job.done = true; // its other texts still queued are dropped at the next cut
            job.reject(err);
          }
        },
      )
      .finally(() => {
        this.inFlight--;
        this.schedule();
      });
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
    for (const it of this.queue.splice(0)) {
      if (it.job.done) continue;
      it.job.done = true;
      it.job.reject(err);
    }
    this.queuedTokens = 0;
  }
}
