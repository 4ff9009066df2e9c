/**
 * Dynamic batching (docs/protocol.md "Dynamic batching"), modelled on text-embeddings-inference's queue:
 *
 * - one bounded queue of texts from every connection; past `maxQueue` texts a request
 *   fails with `overloaded`;
 * - a batch is cut as soon as a full batch (`maxBatch` texts or `maxBatchTokens` padded
 *   tokens) is waiting, or `maxWaitMs` after the oldest text arrived;
 * - which texts go is decided by batch-former.ts: the waiting texts (up to
 *   `SORT_WINDOW × maxBatch`) sorted by token length and cut into the runs that cost least
 *   (padded tokens plus a fixed cost per run); the run holding the oldest text goes, so
 *   nothing starves. An embedder without token counts (the hash one, which pads nothing)
 *   gets the oldest texts in arrival order;
 * - a run that fails is run again as two halves (recursively), so a text that makes the
 *   model fail fails only its own request and its batch-mates still get their rows;
 * - texts of requests whose client has left (`cancelled()`) are skipped, not run;
 * - with a two-phase embedder (`prepare` / `runPrepared`, the ONNX one), the next full
 *   batch is tokenized and queued on the runtime while the current one runs, so the
 *   runtime never waits for the main thread;
 * - rows are split back per request; latency percentiles, throughput and the padded/real
 *   token ratio for `stats`.
 */
import { ProtocolError } from '../protocol/index.js';
import type { Embedder } from '../embedder.js';
import { nextBatch } from './batch-former.js';

export interface BatcherOptions {
  /** Texts per run. Default: the embedder's maxBatch. */
  maxBatch?: number;
  /** Max texts waiting (not yet running). Default 4096. */
  maxQueue?: number;
  /** How long the oldest queued text waits for company. Default 2 ms. */
  maxWaitMs?: number;
  /** Padded tokens per run (texts × longest). Default: the embedder's, else 64k. */
  maxBatchTokens?: number;
  /**
   * The fixed cost of one run in padded tokens, for the batch former: a run is split in
   * two when that saves more padding than this. Default 64 (MiniLM-L6 on onnxruntime CPU:
   * a run of one 16-token text costs about as much as 30 tokens in a full batch).
   */
  runOverheadTokens?: number;
  /** Where a failed run is reported (it is retried in halves). Default: nowhere. */
  log?: (msg: string) => void;
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
/** How many queue items (× maxBatch, at most MAX_WINDOW) the batch former looks at. */
const SORT_WINDOW = 8;
const MAX_WINDOW = 2048;

export class EmbeddingBatcher {
  readonly maxBatch: number;
  readonly maxQueue: number;
  readonly maxWaitMs: number;
  readonly maxBatchTokens: number;
  readonly runOverheadTokens: number;
  private readonly log: ((msg: string) => void) | undefined;
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
  /** Runs that failed and were retried in halves; texts whose run failed on their own. */
  retriedRuns = 0;
  failedTexts = 0;
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
    this.runOverheadTokens = Math.max(0, options.runOverheadTokens ?? 64);
    this.log = options.log;
    this.maxInFlight = embedder.prepare && embedder.runPrepared ? 2 : 1;
  }

  /** Padded tokens run per real token (1 = no padding); 0 before the first run. */
  get paddingRatio(): number {
    return this.realTokens === 0 ? 0 : this.paddedTokens / this.realTokens;
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
    const windowSize = Math.min(MAX_WINDOW, this.maxBatch * SORT_WINDOW);
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

  /** The run holding the oldest text (w[0]): padding-aware, or in arrival order for an embedder that pads nothing. */
  private choose(w: Item[]): Item[] {
    if (this.embedder.tokenCounts) {
      const picked = nextBatch(
        w.map((it) => it.tokens),
        { maxBatch: this.maxBatch, maxBatchTokens: this.maxBatchTokens, runOverheadTokens: this.runOverheadTokens },
      );
      return picked.map((i) => w[i]!);
    }
    const batch: Item[] = [];
    let longest = 0;
    for (const it of w) {
      const l = Math.max(longest, it.tokens);
      if (batch.length === this.maxBatch || (batch.length > 0 && l * (batch.length + 1) > this.maxBatchTokens)) break;
      batch.push(it);
      longest = l;
    }
    return batch;
  }

  private start(batch: Item[]): void {
    this.inFlight++;
    void this.runItems(batch).finally(() => {
      this.inFlight--;
      this.schedule();
    });
  }

  /** One run of the embedder over `batch` (prepared now when it is two-phase). */
  private runOnce(texts: string[]): Promise<Float32Array> {
    try {
      const e = this.embedder;
      if (e.prepare && e.runPrepared) return e.runPrepared(e.prepare(texts));
      return e.embed(texts);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Runs `batch` and hands each job its rows. A failed run of several texts is run again as
   * two halves (recursively: about 2 × log2(n) extra runs for one bad text among n), so
   * only the request whose text makes the model fail gets the error. An `unavailable`
   * embedder (closed, its worker gone) fails the whole batch at once: halves would too.
   */
  private async runItems(batch: Item[]): Promise<void> {
    const texts = batch.map((it) => it.job.texts[it.index]!);
    let rows: Float32Array;
    try {
      rows = await this.runOnce(texts);
    } catch (err) {
      const live = batch.filter((it) => !it.job.done);
      if (live.length > 1 && (err as { code?: unknown }).code !== 'unavailable') {
        this.retriedRuns++;
        this.log?.(`a run of ${live.length} texts failed (${errorText(err)}); running it again in halves to find the failing text`);
        const mid = live.length >> 1;
        await Promise.all([this.runItems(live.slice(0, mid)), this.runItems(live.slice(mid))]);
        return;
      }
      if (live.length === 1) {
        this.failedTexts++;
        this.log?.(`a text of ${live[0]!.tokens} tokens failed on its own: ${errorText(err)}`);
      }
      for (const { job } of live) {
        if (job.done) continue;
        job.done = true; // its other texts still queued are dropped at the next cut
        job.reject(err);
      }
      return;
    }
    this.noteRun(batch);
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
  }

  private noteRun(batch: Item[]): void {
    let longest = 0;
    for (const it of batch) {
      longest = Math.max(longest, it.tokens);
      this.realTokens += it.tokens;
    }
    this.paddedTokens += longest * batch.length;
    this.batches++;
    this.embedded += batch.length;
    this.noteEmbedded(batch.length);
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

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
