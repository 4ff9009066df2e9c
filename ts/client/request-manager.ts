/**
 * Tracks requests by id (tRPC requestManager style): the outbound queue of
 * requests not yet written (bounded; when full the OLDEST is rejected with
 * `queue_full`), the in-flight map awaiting replies, one timeout per request
 * (from the call, queue time included), and what happens to in-flight
 * requests when the socket drops (retriable ones go back to the head of the
 * queue in send order, the others are rejected with `disconnected`).
 */
import type { RequestId } from '../protocol/envelope.js';
import { ClientError } from './errors.js';

export interface OutgoingMessage {
  type: string;
  id?: RequestId;
  data?: Record<string, unknown>;
  [key: string]: unknown;
}

export interface RequestEntry {
  readonly id: RequestId;
  readonly message: OutgoingMessage;
  /** Safe to send again after a reconnect (the server's answer would be the same). */
  readonly retriable: boolean;
  /** Internal requests (resubscribe, heartbeat probe) do not count against the queue bound. */
  readonly internal: boolean;
  /** The frame kind for this request (MessagePack when true); undefined = the connection's. */
  readonly binary: boolean | undefined;
  resolve(data: unknown): void;
  reject(err: ClientError): void;
}

interface Tracked extends RequestEntry {
  timer: ReturnType<typeof setTimeout> | null;
  settled: boolean;
}

export interface RequestManagerOptions {
  timeoutMs: number;
  maxQueued: number;
  /** Prefix of generated ids (ids stay unique across reconnects). */
  idPrefix?: string;
}

export interface CreateOptions {
  retriable?: boolean;
  internal?: boolean;
  timeoutMs?: number;
  /** Send this request as MessagePack (true) or JSON (false) whatever the connection's `binary` option. */
  binary?: boolean;
}

export class RequestManager {
  private readonly queue: Tracked[] = [];
  private readonly inflight = new Map<RequestId, Tracked>();
  private counter = 0;

  constructor(private readonly options: RequestManagerOptions) {}

  get queuedCount(): number {
    return this.queue.length;
  }

  get inflightCount(): number {
    return this.inflight.size;
  }

  nextId(): string {
    return `${this.options.idPrefix ?? 'c'}${++this.counter}`;
  }

  /** Creates a tracked request; the caller then calls `sent()` or `enqueue()`. */
  create<T>(message: Omit<OutgoingMessage, 'id'>, options: CreateOptions = {}): { entry: RequestEntry; promise: Promise<T> } {
    const id = this.nextId();
    let resolve!: (v: unknown) => void;
    let reject!: (e: ClientError) => void;
    const promise = new Promise<T>((res, rej) => {
      resolve = res as (v: unknown) => void;
      reject = rej;
    });
    const type = String(message.type);
    const entry: Tracked = {
      id,
      message: { ...message, id } as OutgoingMessage,
      retriable: options.retriable ?? true,
      internal: options.internal ?? false,
      binary: options.binary,
      timer: null,
      settled: false,
      resolve: (v) => {
        if (this.settle(entry)) resolve(v);
      },
      reject: (e) => {
        if (this.settle(entry)) reject(e);
      },
    };
    const timeoutMs = options.timeoutMs ?? this.options.timeoutMs;
    if (timeoutMs > 0 && Number.isFinite(timeoutMs)) {
      entry.timer = setTimeout(() => {
        entry.timer = null;
        entry.reject(new ClientError('timeout', `${type}: no reply within ${timeoutMs} ms`, { type, data: { timeout_ms: timeoutMs } }));
      }, timeoutMs);
    }
    return { entry, promise };
  }

  /** The request was written to the socket: wait for its reply. */
  sent(entry: RequestEntry): void {
    const t = entry as Tracked;
    if (!t.settled) this.inflight.set(t.id, t);
  }

  /** Holds a request until the connection opens. */
  enqueue(entry: RequestEntry): void {
    const t = entry as Tracked;
    if (t.settled) return;
    this.queue.push(t);
    this.enforceBound();
  }

  /** Removes and returns every queued request, oldest first. */
  drainQueue(): RequestEntry[] {
    return this.queue.splice(0, this.queue.length);
  }

  /** Settles the request a reply answers; false if no request has that id (late reply after timeout, or an event). */
  handleReply(id: RequestId | undefined, settle: (entry: RequestEntry) => void): boolean {
    if (id === undefined) return false;
    const t = this.inflight.get(id);
    if (!t) return false;
    settle(t);
    return true;
  }

  /**
   * The socket dropped: retriable in-flight requests go back to the head of the
   * queue (in the order they were sent), the others are rejected with `disconnected`
   * (their outcome is unknown).
   */
  requeueInflight(reason: string): void {
    const retry: Tracked[] = [];
    for (const t of this.inflight.values()) {
      if (t.retriable) retry.push(t);
      else t.reject(new ClientError('disconnected', `${t.message.type}: connection lost before the reply (${reason}); it may or may not have taken effect`, { type: t.message.type }));
    }
    this.inflight.clear();
    this.queue.unshift(...retry);
    this.enforceBound();
  }

  /** Rejects everything queued and in flight. */
  rejectAll(make: (entry: RequestEntry) => ClientError): void {
    const all = [...this.inflight.values(), ...this.queue];
    this.inflight.clear();
    this.queue.length = 0;
    for (const t of all) t.reject(make(t));
  }

  private enforceBound(): void {
    let excess = this.queue.filter((t) => !t.internal).length - this.options.maxQueued;
    for (let i = 0; excess > 0 && i < this.queue.length; ) {
      const t = this.queue[i]!;
      if (t.internal) {
        i++;
        continue;
      }
      this.queue.splice(i, 1);
      excess--;
      t.reject(
        new ClientError('queue_full', `${t.message.type}: dropped, more than ${this.options.maxQueued} requests queued while disconnected`, {
          type: t.message.type,
          data: { max_queued: this.options.maxQueued },
        }),
      );
    }
  }

  /** Marks settled and forgets the request; false if it was already settled. */
  private settle(t: Tracked): boolean {
    if (t.settled) return false;
    t.settled = true;
    if (t.timer !== null) clearTimeout(t.timer);
    t.timer = null;
    this.inflight.delete(t.id);
    const i = this.queue.indexOf(t);
    if (i >= 0) this.queue.splice(i, 1);
    return true;
  }
}
