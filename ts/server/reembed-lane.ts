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

export class BackgroundLane {
  private running = 0;
  private readonly slotWaiters: Array<() => void> = [];

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
   * Embeds `texts` one model batch at a time, each submitted once a slot is free and no
   * command is in flight, each tokenized in its own turn of the event loop. Calls queue in
   * the order they are made (slots are handed out first come, first served).
   */
  async embed(texts: string[]): Promise<Float32Array> {
    const { model } = this;
    const dims = model.dims;
    const step = Math.max(1, model.maxBatch);
    const out = new Float32Array(texts.length * dims);
    const runs: Array<Promise<void>> = [];
    for (let i = 0; i < texts.length; i += step) {
      await this.slot();
      try {
        await this.giveWay();
      } catch (err) {
        this.free();
        throw err;
      }
      const run = model
        .embed(texts.slice(i, i + step))
        .then((v) => out.set(v, i * dims))
        .finally(() => this.free());
      run.catch(() => undefined); // rejected before Promise.all below: still handled
      runs.push(run);
    }
    await Promise.all(runs);
    return out;
  }

  private slot(): Promise<void> {
    if (this.running < IN_FLIGHT && this.slotWaiters.length === 0) {
      this.running++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.slotWaiters.push(resolve));
  }

  /** A batch is done: its slot passes to the next waiter (in its own turn, so its tokenization is not inside this reply's callback). */
  private free(): void {
    const next = this.slotWaiters.shift();
    if (next) setImmediate(next);
    else this.running--;
  }
}
