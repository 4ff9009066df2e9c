/**
 * How a re-embedding hands its work to the model and the store without holding up the
 * commands the server answers meanwhile (bench/README.md, "Re-embedding").
 *
 * Commands go first: a model batch is submitted, and a group of memories put into the new
 * store, only when no command is in flight (CommandGate.quiet) — so a query waits at most
 * for the batch and the put already under way, never for a page's worth queued ahead of it.
 * When no command comes, this costs nothing: one batch more than the model runs at once
 * (`concurrentRuns` + QUEUED_AHEAD) is queued on it, so one is tokenized and posted while the
 * others run and the model never idles between them.
 * A load that never pauses still lets one step through per `FAIRNESS` commands finished.
 *
 * The model itself is a background instance where the embedder offers one
 * (`Embedder.background`: the onnx embedder as one single-threaded session per core, at a
 * lower CPU priority), so a batch already running gives a core to the event loop and the
 * scan threads while a command runs, and the other sessions go on.
 */
import type { Embedder } from '../embedder.js';
import type { CommandGate } from './reembed-gate.js';

/**
 * Model batches submitted at once beyond the runs the model makes side by side (its
 * `concurrentRuns`): each of its sessions runs one while this many more wait, tokenized.
 */
export const QUEUED_AHEAD = 1;
/** Under a load that never pauses, one background step per this many finished commands. */
export const FAIRNESS = 64;

interface Batch {
  texts: string[];
  resolve(v: Float32Array): void;
  reject(err: unknown): void;
}

export class BackgroundLane {
  /** Batches not submitted yet, in the order `embed` was called. */
  private readonly queue: Batch[] = [];
  private running = 0;
  private pumping = false;
  /** Batches submitted to the model at a time. */
  private readonly inFlight: number;
  /** Wakes the pump when a running batch ends. */
  private wake: (() => void) | null = null;

  constructor(
    /** The embedder the re-embedding writes with (its background instance, when it has one). */
    readonly model: Embedder,
    private readonly gate: Pick<CommandGate, 'quiet'>,
  ) {
    this.inFlight = Math.max(1, model.concurrentRuns ?? 1) + QUEUED_AHEAD;
  }

  /** Resolves when no command is in flight (or FAIRNESS have finished meanwhile). */
  giveWay(): Promise<void> {
    return this.gate.quiet(FAIRNESS);
  }

  /**
   * Embeds `texts` one model batch at a time, each submitted once fewer than `inFlight` are out
   * and no command is in flight, each tokenized in its own turn of the event loop. Calls are
   * served in the order they are made (a page's batches all before the next page's). The
   * batches are cut from the texts sorted by length, so a run pads little (every text of a
   * run is padded to its longest); the vectors come back in the order of `texts`.
   */
  embed(texts: string[]): Promise<Float32Array> {
    const { dims } = this.model;
    const out = new Float32Array(texts.length * dims);
    const runs: Array<Promise<void>> = [];
    for (const indices of this.batches(texts)) {
      const run = new Promise<Float32Array>((resolve, reject) => this.queue.push({ texts: indices.map((i) => texts[i]!), resolve, reject }));
      runs.push(run.then((v) => indices.forEach((i, k) => out.set(v.subarray(k * dims, (k + 1) * dims), i * dims))));
    }
    this.pump();
    return Promise.all(runs).then(() => out);
  }

  /**
   * The model batches for `texts` (indices into it): `maxBatch` at a time from the texts
   * sorted by length. Length in UTF-16 units stands in for tokens: counting tokens for a page
   * of 512 took 25–30 ms of the event loop (MiniLM's tokenizer), which a query arriving then
   * would wait for; a string's length costs nothing and sorts nearly the same.
   */
  private batches(texts: string[]): number[][] {
    const maxBatch = Math.max(1, this.model.maxBatch);
    const order = Array.from(texts.keys()).sort((a, b) => texts[a]!.length - texts[b]!.length || a - b);
    const out: number[][] = [];
    for (let i = 0; i < order.length; i += maxBatch) out.push(order.slice(i, i + maxBatch));
    return out;
  }

  /** The run has stopped: batches not submitted yet are dropped (their pages are never copied). */
  close(): void {
    for (const b of this.queue.splice(0)) b.reject(new Error('re-embedding stopped'));
  }

  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    void this.submitQueued().finally(() => {
      this.pumping = false;
    });
  }

  private async submitQueued(): Promise<void> {
    while (this.queue.length > 0) {
      while (this.running >= this.inFlight) await new Promise<void>((r) => (this.wake = r));
      // Its own turn: this batch's tokenization does not run inside another reply's callback.
      await new Promise<void>((r) => setImmediate(r));
      // Then no I/O comes between the check for commands in flight and the submission.
      await this.giveWay();
      const b = this.queue.shift();
      if (!b) break;
      this.running++;
      let run: Promise<Float32Array>;
      try {
        run = this.model.embed(b.texts);
      } catch (err) {
        run = Promise.reject(err);
      }
      run.then(b.resolve, b.reject).finally(() => {
        this.running--;
        const w = this.wake;
        this.wake = null;
        w?.();
      });
    }
  }
}
