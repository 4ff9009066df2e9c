/**
 * Applies the write log to this instance's store, in stream order, exactly once.
 *
 * Messages come from an ordered consumer (ts/cluster/index.ts) and are queued here. Runs of
 * consecutive puts are handed to the store together (the store's group commit makes them one
 * fsync, and its results equal applying them one by one); any other write is applied alone.
 * After each step the applied sequence advances, the events go out with the stream sequence,
 * the waiting writer (if the write came through this instance) gets its result, and the
 * checkpoint is written. Because a non-put write is always the last of its step, re-applying
 * the step after a crash before the checkpoint is harmless (puts of existing ids change
 * nothing; a repeated delete or update finds the same state).
 */
import type { Logger } from 'pino';
import type { DeleteResult, MemoryStore, NativeMemory, PutResult } from '../native.js';
import { ProtocolError } from '../protocol/index.js';
import { mapped, toProtocolError } from '../server/memory-convert.js';
import type { MemoryEventLog } from '../server/memory-events.js';
import { writeEvents, type PutRequest } from '../server/write-path.js';
import type { Checkpoint, CheckpointState } from './checkpoint.js';
import { decodeWrite, metaObject, putItemOf, type WriteMessage } from './messages.js';

/** A message of the stream: its sequence and payload. */
export interface LogEntry {
  seq: number;
  data: Uint8Array;
}

type Result = PutResult[] | NativeMemory | DeleteResult;

interface Waiter {
  resolve: (r: Result) => void;
  reject: (e: unknown) => void;
}

/** Puts applied together at most (bounds one step's memory and latency). */
const MAX_PUTS_PER_STEP = 256;
/** Queued messages above which the consumer waits for the applier. */
const MAX_QUEUED = 4096;
/** Errors that every replica meets identically (the write is refused everywhere). */
const DETERMINISTIC = new Set(['invalid_request', 'payload_too_large', 'not_found']);

function isDeterministic(err: unknown): boolean {
  const e = toProtocolError(err);
  return e instanceof ProtocolError && DETERMINISTIC.has(e.code);
}

export class Applier {
  /** The last stream sequence applied to the store. */
  applied: number;
  private readonly queue: LogEntry[] = [];
  private draining: Promise<void> | null = null;
  private readonly waiters = new Map<string, Waiter>();
  private closed = false;
  /** While set, no step starts (a snapshot is being taken). */
  private gate: Promise<void> | null = null;
  private inStep = false;
  /** Steps applied and messages applied (for stats and tests). */
  messages = 0;

  constructor(
    private readonly store: MemoryStore,
    private readonly events: MemoryEventLog,
    private readonly checkpoint: Checkpoint,
    private readonly stream: Omit<CheckpointState, 'applied_seq'>,
    private readonly nodeId: string,
    private readonly logger: Logger,
    fromSeq: number,
  ) {
    this.applied = fromSeq;
  }

  /** Registers the writer waiting for its message `token` (before publishing it). */
  expect(token: string): Promise<Result> {
    return new Promise((resolve, reject) => this.waiters.set(token, { resolve, reject }));
  }

  /** The write was not published (or was a duplicate): nobody waits for `token` any more. */
  forget(token: string): void {
    this.waiters.delete(token);
  }

  /**
   * Runs `f` between two steps, with nothing applied meanwhile: `f` sees the store exactly at
   * sequence `applied` (a snapshot). Writers wait; reads go on.
   */
  async whilePaused<T>(f: (applied: number) => Promise<T>): Promise<T> {
    while (this.gate) await this.gate;
    let open!: () => void;
    this.gate = new Promise<void>((r) => (open = r));
    try {
      // A step under way finishes first (bounded by the step's own work).
      while (this.inStep) await new Promise((r) => setTimeout(r, 2));
      return await f(this.applied);
    } finally {
      this.gate = null;
      open();
    }
  }

  /** The stored memory (a duplicate write's answer). */
  storedMemory(namespace: string, id: string): NativeMemory | null {
    return this.store.get(namespace, id, false);
  }

  /** Queues a message; resolves when the queue has room again (backpressure on the consumer). */
  async push(entry: LogEntry): Promise<void> {
    // An ordered consumer restarted after a reconnect may deliver what was applied already.
    if (entry.seq <= this.applied || (this.queue.length > 0 && entry.seq <= this.queue[this.queue.length - 1]!.seq)) return;
    this.queue.push(entry);
    this.draining ??= this.drain();
    if (this.queue.length >= MAX_QUEUED) await this.draining;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.draining?.catch(() => undefined);
    for (const w of this.waiters.values()) w.reject(new ProtocolError('unavailable', 'Server is shutting down'));
    this.waiters.clear();
    await this.checkpoint.flush();
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0 && !this.closed) {
        while (this.gate) await this.gate;
        const step = this.nextStep();
        this.inStep = true;
        try {
          await this.applyStep(step);
        } finally {
          this.inStep = false;
        }
      }
    } finally {
      this.draining = null;
    }
  }

  /** The next run of puts, or the next single other write. */
  private nextStep(): Array<{ seq: number; msg: WriteMessage | Error }> {
    const step: Array<{ seq: number; msg: WriteMessage | Error }> = [];
    while (this.queue.length > 0 && step.length < MAX_PUTS_PER_STEP) {
      const e = this.queue[0]!;
      let msg: WriteMessage | Error;
      try {
        msg = decodeWrite(e.data);
      } catch (err) {
        msg = err instanceof Error ? err : new Error(String(err));
      }
      const isPut = !(msg instanceof Error) && msg.op === 'put';
      if (step.length > 0 && !isPut) break;
      this.queue.shift();
      step.push({ seq: e.seq, msg });
      if (!isPut) break;
    }
    return step;
  }

  /** Applies a step, retrying (every second, until closed) on errors that are this instance's own (disk full, I/O). */
  private async applyStep(step: Array<{ seq: number; msg: WriteMessage | Error }>): Promise<void> {
    for (;;) {
      const outcomes = await Promise.allSettled(step.map((s) => this.applyOne(s.msg)));
      const local = outcomes.find((o) => o.status === 'rejected' && !isDeterministic(o.reason));
      if (local === undefined) {
        this.finish(step, outcomes);
        return;
      }
      if (this.closed) return;
      // Puts of the step that did succeed are existing on the retry: nothing applied twice.
      this.logger.error({ err: (local as PromiseRejectedResult).reason, seq: step[0]!.seq }, 'cluster: applying the write log failed; retrying in 1 s');
      await new Promise((r) => setTimeout(r, 1000));
      if (this.closed) return;
    }
  }

  private applyOne(msg: WriteMessage | Error): Promise<Result> {
    if (msg instanceof Error) return Promise.reject(new ProtocolError('invalid_request', `cluster: unreadable write message: ${msg.message}`));
    const s = this.store;
    switch (msg.op) {
      case 'put':
        return mapped(s.put(msg.items.map((it) => putItemOf(msg.ns, it))));
      case 'update':
        return mapped(s.update(msg.ns, msg.id, msg.meta, msg.sig));
      case 'delete':
        return mapped(s.delete(msg.ns, msg.ids));
      case 'delete_where':
        return mapped(s.deleteWhere(msg.ns, msg.filter));
    }
  }

  /** After a step is durable: advance, publish events, answer writers, checkpoint. */
  private finish(step: Array<{ seq: number; msg: WriteMessage | Error }>, outcomes: Array<PromiseSettledResult<Result>>): void {
    for (let i = 0; i < step.length; i++) {
      const { seq, msg } = step[i]!;
      const o = outcomes[i]!;
      this.applied = seq;
      this.messages++;
      if (msg instanceof Error) {
        this.logger.error({ err: msg, seq }, 'cluster: skipped an unreadable write message');
        continue;
      }
      if (o.status === 'fulfilled') this.publishEvents(msg, o.value, seq);
      const w = msg.origin === this.nodeId ? this.waiters.get(msg.token) : undefined;
      if (w) {
        this.waiters.delete(msg.token);
        if (o.status === 'fulfilled') w.resolve(o.value);
        else w.reject(o.reason);
      }
    }
    this.checkpoint.save({ ...this.stream, applied_seq: this.applied }).catch((err: unknown) => this.logger.error({ err }, 'cluster: writing the checkpoint failed'));
  }

  private publishEvents(msg: WriteMessage, r: Result, seq: number): void {
    switch (msg.op) {
      case 'put': {
        const req: PutRequest = {
          namespace: msg.ns,
          puts: msg.items.map((it) => putItemOf(msg.ns, it)),
          metas: msg.items.map(metaObject),
        };
        writeEvents.put(this.events, req, r as PutResult[], seq);
        return;
      }
      case 'update':
        writeEvents.update(this.events, msg.ns, r as NativeMemory, seq);
        return;
      default:
        writeEvents.delete(this.events, msg.ns, r as DeleteResult, seq);
    }
  }
}
