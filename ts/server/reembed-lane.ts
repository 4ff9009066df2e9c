/**
 * How a re-embedding hands its work to the model and the store without holding up the
 * commands the server answers meanwhile (bench/README.md, "Re-embedding").
 *
 * Commands go first: a model batch is submitted, and a group of memories put into the new
 * store, only when no command is in flight (CommandGate.quiet) — so a query waits at most
 * for the batch and the put already under way, never for a page's worth queued ahead of it.
 * When no command comes, this costs nothing: `IN_FLIGHT` batches are queued on the model, so
 * one is tokenized and posted while the other runs and the model never idles between them.
 * A load that never pauses still lets one step through per `FAIRNESS` commands finished.
 *
 * The model itself is a background instance where the embedder offers one
 * (`Embedder.background`: the onnx embedder's threads at a lower CPU priority), so a batch
 * already running gives the cores to the event loop and the scan threads while a command runs.
 */
import type { Embedder } from '../embedder.js';
import type { CommandGate } from './reembed-gate.js';

/** Model batches submitted at once: one runs while the next waits on the model's thread. */
export const IN_FLIGHT = 2;
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
  /** Wakes the pump when a running batch ends. */
  private wake: (() => void) | null = null;

  constructor(
    /** The embedder the re-embedding writes with (its background instance, when it has one). */
    readonly model: Embedder,
    private readonly gate: Pick<CommandGate, 'quiet'>,
  ) {}

  /** Resolves when no command is in flight (or FAIRNESS have finished meanwhile). */
  giveWay(): Promise<void> {
    return this.gate.quiet(FAIRNESS);
  }

  /**
   * Embeds `texts` one model batch at a time, each submitted once fewer than IN_FLIGHT run
   * and no command is in flight, each tokenized in its own turn of the event loop. Calls are
   * served in the order they are made (a page's batches all before the next page's).
   */
  embed(texts: string[]): Promise<Float32Array> {
    const { dims } = this.model;
    const step = Math.max(1, this.model.maxBatch);
    const out = new Float32Array(texts.length * dims);
    const runs: Array<Promise<void>> = [];
    for (let i = 0; i < texts.length; i += step) {
      const run = new Promise<Float32Array>((resolve, reject) => this.queue.push({ texts: texts.slice(i, i + step), resolve, reject }));
      runs.push(run.then((v) => out.set(v, i * dims)));
    }
    this.pump();
    return Promise.all(runs).then(() => out);
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
      while (this.running >= IN_FLIGHT) await new Promise<void>((r) => (this.wake = r));
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
