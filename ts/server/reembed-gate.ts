/**
 * Holds commands back while a re-embedding switches stores: writes first (so the new store
 * can catch up with a live store that no longer changes), then every command for the
 * moment the stores are closed and renamed. Outside a switch a command passes straight
 * through; only while a re-embedding runs are commands in flight counted.
 */
import type { Request } from '../protocol/index.js';

type Handler<C> = (conn: C, request: Request) => unknown;

/** A gate: a promise and the function that opens it. */
interface Barrier {
  promise: Promise<void>;
  open: () => void;
}

const barrier = (): Barrier => {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
};

/** In-flight commands of one class, and who waits for them to finish. */
class InFlight {
  n = 0;
  private waiters: Array<() => void> = [];
  constructor(private readonly onDone: () => void) {}
  done(): void {
    if (--this.n === 0) for (const w of this.waiters.splice(0)) w();
    this.onDone();
  }
  drained(): Promise<void> {
    return this.n === 0 ? Promise.resolve() : new Promise((r) => this.waiters.push(r));
  }
}

export class CommandGate {
  /** Count commands in flight (only while a re-embedding runs: the hot path stays one check). */
  counting = false;
  private writes: Barrier | null = null;
  private all: Barrier | null = null;
  private readonly writing = new InFlight(() => this.commandDone());
  private readonly reading = new InFlight(() => this.commandDone());
  /** Commands finished while counting. */
  private finished = 0;
  /** Background work waiting for a quiet moment: resolved when none is in flight, or at `until` finished. */
  private quietWaiters: Array<{ until: number; resolve: () => void }> = [];

  /** Commands in flight now (counted only while a re-embedding runs). */
  get inFlight(): number {
    return this.writing.n + this.reading.n;
  }

  /**
   * Resolves when no command is in flight — at once if none is — or once `fairness` more
   * commands have finished, so a load that never pauses still lets background work through
   * (one step per `fairness` commands). Counting commands, not time: the order of a command
   * and the background step after it does not depend on the machine's speed.
   */
  quiet(fairness: number): Promise<void> {
    if (!this.counting || this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.quietWaiters.push({ until: this.finished + Math.max(1, fairness), resolve }));
  }

  private commandDone(): void {
    this.finished++;
    if (this.quietWaiters.length === 0) return;
    const idle = this.inFlight === 0;
    const keep: typeof this.quietWaiters = [];
    for (const w of this.quietWaiters) {
      if (idle || this.finished >= w.until) w.resolve();
      else keep.push(w);
    }
    this.quietWaiters = keep;
  }

  /** The command table with every handler behind the gate; `writeTypes` change the store. */
  wrap<C, H extends Handler<C>>(table: Record<string, H>, writeTypes: ReadonlySet<string>): Record<string, H> {
    const out: Record<string, H> = {};
    for (const [type, handler] of Object.entries(table)) {
      const inFlight = writeTypes.has(type) ? this.writing : this.reading;
      const isWrite = writeTypes.has(type);
      const run = (conn: C, request: Request): unknown => {
        if (!this.counting) return handler(conn, request);
        inFlight.n++;
        let result: unknown;
        try {
          result = handler(conn, request);
        } catch (err) {
          inFlight.done();
          throw err;
        }
        if (result instanceof Promise) return result.finally(() => inFlight.done());
        inFlight.done();
        return result;
      };
      out[type] = ((conn: C, request: Request) => {
        const held = this.all ?? (isWrite ? this.writes : null);
        if (held === null) return run(conn, request);
        return held.promise.then(() => run(conn, request));
      }) as H;
    }
    return out;
  }

  /** New writes wait; resolves once the writes in flight have finished. */
  holdWrites(): Promise<void> {
    this.writes ??= barrier();
    return this.writing.drained();
  }

  /** Every new command waits; resolves once every command in flight has finished. */
  async holdAll(): Promise<void> {
    this.all ??= barrier();
    await Promise.all([this.writing.drained(), this.reading.drained()]);
  }

  /** Lets every held command run (against whatever store is installed by then), and any background work waiting for quiet. */
  release(): void {
    for (const w of this.quietWaiters.splice(0)) w.resolve();
    const { writes, all } = this;
    this.writes = null;
    this.all = null;
    all?.open();
    writes?.open();
  }
}
