/**
 * The message path: each frame is checked (size, rate limit), decoded while its buffer is
 * valid, dispatched to the command table in per-connection order, and answered. Handlers
 * never take the process down: whatever they throw becomes an error reply (`internal` with
 * a correlation id when it is not a ProtocolError). Replies and events respect the send
 * buffer bound (slow consumers lose events, never replies out of order).
 *
 * This is the hot path (hundreds of thousands of small requests a second): no allocation
 * or indirection here that the work does not need.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import {
  CLOSE_CODES,
  ERROR_MESSAGES,
  ProtocolError,
  decodeRequest,
  encodeMessage,
  errorReply,
  event,
  success,
  type ErrorReply,
  type Reply,
  type Request,
  type RequestId,
} from '../../protocol/index.js';
import type { ServerMetrics } from '../metrics.js';
import type { ResolvedOptions } from '../options.js';
import { countRejection, takeBudget } from '../rate-limit.js';
import type { UwsWebSocket } from '../uws.js';
import { CommandNames, peekEnvelope, plainRequest } from './peek.js';
import { endSocket, stateOf, type Connection, type ConnState, type ConnectionHost } from './connection.js';

/** Handles one command; the returned value (or resolved value) is the reply's `data`. Throw ProtocolError for error replies. */
export type CommandHandler = (conn: Connection, request: Request) => unknown;

export function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

/** The reply's `type` and `id`, as the request gave them. */
function idType(request: Request): { type: string; id?: string | number } {
  return request.id !== undefined ? { type: request.type, id: request.id } : { type: request.type };
}

/** A fresh correlation id for an `internal` error (logged with the cause, sent to the client). */
export function correlationId(): string {
  return randomBytes(6).toString('hex');
}

export class Dispatcher implements ConnectionHost {
  /** False once shutdown began: new requests are answered `unavailable`. */
  accepting = false;
  /** Requests received and not yet answered, over all connections. */
  private inFlight = 0;
  private idleWaiters: Array<() => void> = [];
  /** The socket whose uWS message callback is running (already corked by uWS), else null. */
  private inCallbackOf: UwsWebSocket<ConnState> | null = null;
  /** The command names for plainRequest, rebuilt when a command is registered. */
  private names: CommandNames | null = null;
  private namesFor = -1;

  constructor(
    private readonly options: Readonly<ResolvedOptions>,
    private readonly metrics: ServerMetrics,
    private readonly logger: Logger,
    private readonly commands: Map<string, CommandHandler>,
    private readonly fallback: CommandHandler | undefined,
  ) {}

  /** The uWS `message` callback. */
  readonly onMessage = (ws: UwsWebSocket<ConnState>, message: ArrayBuffer, isBinary: boolean): void => {
    // uWS corks the socket for the duration of its callbacks: replies sent inline go
    // straight out with the rest of this read's replies (no cork call of our own).
    this.inCallbackOf = ws;
    try {
      this.receive(ws, message, isBinary);
    } finally {
      this.inCallbackOf = null;
    }
  };

  private receive(ws: UwsWebSocket<ConnState>, message: ArrayBuffer, isBinary: boolean): void {
    const st = stateOf(ws);
    if (st.closed) return;
    const size = message.byteLength;
    st.awaitingPong = false; // any frame proves the peer alive
    if (size > this.options.maxFrameBytes) {
      const limit = this.options.maxFrameBytes;
      this.logger.warn({ id: st.id, size, limit }, 'frame too big (raise maxFrameBytes / --max-frame-bytes if such frames are expected)');
      // The close reason (≤ 123 bytes) tells the client which limit it hit and how it is raised.
      this.endSocket(ws, st, CLOSE_CODES.MESSAGE_TOO_BIG, `Message too big: ${size} bytes > ${limit} (maxFrameBytes, --max-frame-bytes)`);
      return;
    }
    const received = performance.now();
    this.metrics.messages++;
    this.metrics.bytesIn += size;
    st.binary = isBinary;

    const rl = this.options.rateLimit;
    if (rl) {
      // Before decoding: a refused frame costs a bucket check and a peek, never a parse.
      const retryAfter = takeBudget(st, rl, size, received);
      if (retryAfter > 0) {
        this.metrics.rateLimited++;
        if (countRejection(st, rl, received)) {
          this.logger.warn({ id: st.id, ip: st.ip }, 'closing abusive connection (sustained rate-limit excess)');
          this.endSocket(ws, st, CLOSE_CODES.POLICY_VIOLATION, 'Rate limit exceeded');
          return;
        }
        const { type, id } = peekEnvelope(message, isBinary);
        this.enqueueReady(ws, st, errorReply('rate_limited', ERROR_MESSAGES.rateLimited, {
          ...(type !== undefined ? { type } : {}),
          ...(id !== undefined ? { id } : {}),
          data: { retry_after_ms: Number.isFinite(retryAfter) ? retryAfter : 60_000 },
        }), isBinary, received, undefined);
        return;
      }
    }
    // Decode synchronously: the ArrayBuffer is only valid during this callback. A plain
    // `{"type","id"}` text frame is read without JSON.parse (the same request; see plainRequest).
    const plain = isBinary ? null : plainRequest(message, this.commandNames());
    const decoded = plain !== null ? { ok: true as const, request: plain as Request } : decodeRequest(message, isBinary);

    if (!decoded.ok) {
      const { error: e, type, id } = decoded;
      this.enqueueReady(ws, st, errorReply(e.code, e.message, {
        ...(type !== undefined ? { type } : {}),
        ...(id !== undefined ? { id } : {}),
        ...(e.data ? { data: e.data } : {}),
      }), isBinary, received, undefined);
      return;
    }
    const request = decoded.request;
    if (!this.accepting) {
      this.enqueueReady(ws, st, errorReply('unavailable', ERROR_MESSAGES.shuttingDown, { ...idType(request), data: { reason: 'shutting_down' } }), isBinary, received, request.type);
      return;
    }
    const handler = this.commands.get(request.type) ?? this.fallback;
    if (!handler) {
      this.enqueueReady(ws, st, errorReply('unknown_type', ERROR_MESSAGES.unknownType(request.type), idType(request)), isBinary, received, undefined);
      return;
    }
    const conn = st.conn!;
    const overlapping = this.options.overlapping.has(request.type);
    if (st.queued === 0) {
      // Fast path: nothing ahead of this request on the connection.
      st.gate = overlapping ? null : undefined;
      const out = this.invoke(handler, conn, request);
      if (!isThenable(out)) {
        this.sendReply(ws, st, out as Reply, isBinary, received, request.type);
        return;
      }
      this.chain(ws, st, () => out as Promise<Reply>, isBinary, received, request.type);
      return;
    }
    if (this.options.pipelining === 'concurrent') {
      const out = this.invoke(handler, conn, request);
      this.chain(ws, st, () => out, isBinary, received, request.type);
    } else if (overlapping && st.gate !== undefined) {
      // Joins the run of overlapping requests ahead of it: starts when the run's first did
      // (callbacks on one promise run in order, so handlers start in request order).
      const gate = st.gate;
      const start = (): Reply | Promise<Reply> =>
        st.closed ? errorReply('unavailable', 'Client disconnected', idType(request)) : this.invoke(handler, conn, request);
      const out = gate === null ? start() : gate.then(start);
      this.chain(ws, st, () => out, isBinary, received, request.type);
    } else {
      st.gate = overlapping ? st.tail : undefined;
      // Serial: the handler starts once the previous reply went out; skipped if the client left meanwhile.
      this.chain(
        ws,
        st,
        () => (st.closed ? errorReply('unavailable', 'Client disconnected', idType(request)) : this.invoke(handler, conn, request)),
        isBinary,
        received,
        request.type,
      );
    }
  }

  private commandNames(): CommandNames {
    if (this.namesFor !== this.commands.size) {
      this.names = new CommandNames(this.commands.keys());
      this.namesFor = this.commands.size;
    }
    return this.names!;
  }

  /** Runs a handler; returns the reply, or a promise of it. Never throws. */
  private invoke(handler: CommandHandler, conn: Connection, request: Request): Reply | Promise<Reply> {
    try {
      const out = handler(conn, request);
      if (isThenable(out)) {
        return Promise.resolve(out).then(
          (data) => success(request.type, request.id, data === undefined ? {} : data),
          (err: unknown) => this.errorFor(err, request, conn),
        );
      }
      return success(request.type, request.id, out === undefined ? {} : out);
    } catch (err) {
      return this.errorFor(err, request, conn);
    }
  }

  private errorFor(err: unknown, request: Request, conn: Connection | null): Reply {
    if (err instanceof ProtocolError) {
      return errorReply(err.code, err.message, { ...idType(request), ...(err.data ? { data: err.data } : {}) });
    }
    return this.internalError(err, 'handler failed', { type: request.type, id: conn?.id }, request);
  }

  /** An `internal` error reply (to `to`'s type and id) with a fresh correlation id, logged with its cause. */
  private internalError(err: unknown, what: string, context: Record<string, unknown>, to: { type?: string; id?: RequestId }): ErrorReply {
    const cid = correlationId();
    this.metrics.internalErrors++;
    this.logger.error({ err, correlationId: cid, ...context }, what);
    return errorReply('internal', ERROR_MESSAGES.internal(cid), { type: to.type, id: to.id, data: { correlation_id: cid } });
  }

  /** Sends an already-built reply now, or after the replies ahead of it. */
  private enqueueReady(
    ws: UwsWebSocket<ConnState>,
    st: ConnState,
    reply: Reply,
    binary: boolean,
    received: number,
    type: string | undefined,
  ): void {
    if (st.queued === 0) this.sendReply(ws, st, reply, binary, received, type);
    else this.chain(ws, st, () => reply, binary, received, type);
  }

  private chain(
    ws: UwsWebSocket<ConnState>,
    st: ConnState,
    produce: () => Reply | Promise<Reply>,
    binary: boolean,
    received: number,
    type: string | undefined,
  ): void {
    if (st.queued >= this.options.maxQueuedRequests) {
      this.logger.warn({ id: st.id, queued: st.queued }, 'request queue full');
      this.endSocket(ws, st, CLOSE_CODES.TRY_AGAIN_LATER, 'Too many queued requests');
      return;
    }
    st.queued++;
    this.inFlight++;
    const prev = st.tail ?? Promise.resolve();
    const next: Promise<void> = prev
      .then(produce)
      .then((reply) => this.sendReply(ws, st, reply, binary, received, type))
      .catch((err: unknown) => this.logger.error({ err, id: st.id }, 'reply pipeline failed'))
      .finally(() => {
        st.queued--;
        if (st.tail === next) st.tail = null;
        this.inFlight--;
        if (this.inFlight === 0) this.wakeIdle();
      });
    st.tail = next;
  }

  private sendReply(
    ws: UwsWebSocket<ConnState>,
    st: ConnState,
    reply: Reply,
    binary: boolean,
    received: number,
    type: string | undefined,
  ): void {
    this.metrics.recordReply(type, performance.now() - received, reply.status === 'error');
    if (st.closed) return; // the client left: never touch the socket
    if (ws.getBufferedAmount() > this.options.maxBufferedBytes) {
      this.closeSlowConsumer(ws, st);
      return;
    }
    let payload: string | Uint8Array;
    try {
      payload = encodeMessage(reply, binary);
    } catch (err) {
      payload = encodeMessage(this.internalError(err, 'reply encoding failed', { id: st.id, type }, reply), binary);
    }
    let status = 0;
    if (this.inCallbackOf === ws) {
      status = ws.send(payload, binary, this.options.compression);
    } else {
      ws.cork(() => {
        status = ws.send(payload, binary, this.options.compression);
      });
    }
    if (status === 2) this.closeSlowConsumer(ws, st);
  }

  /**
   * The output-buffer limit (Redis' client-output-buffer-limit, NATS' slow consumer): a
   * client that does not read its replies is closed with 1013, once, counted and logged. The
   * close frame is queued behind what is buffered (a client that resumes reading gets it);
   * a client that never reads is cut by uWS a few seconds after the close, which frees the
   * buffer.
   */
  private closeSlowConsumer(ws: UwsWebSocket<ConnState>, st: ConnState): void {
    this.metrics.slowConsumersClosed++;
    this.logger.warn({ id: st.id, ip: st.ip, buffered: ws.getBufferedAmount(), limit: this.options.maxBufferedBytes }, 'send buffer full: closing slow consumer');
    this.endSocket(ws, st, CLOSE_CODES.TRY_AGAIN_LATER, 'Send buffer full');
  }

  /** Event push with the slow-consumer policy: dropped (and counted) when the send buffer is over the bound. */
  sendEventTo(ws: UwsWebSocket<ConnState>, st: ConnState, message: unknown): boolean {
    if (st.closed) return false;
    if (ws.getBufferedAmount() > this.options.maxBufferedBytes) {
      this.dropEvent(st);
      return false;
    }
    const payload = typeof message === 'string' ? message : encodeMessage(message, st.binary);
    let status = 0;
    ws.cork(() => {
      status = ws.send(payload, typeof payload !== 'string', this.options.compression);
    });
    if (status === 2) {
      this.dropEvent(st);
      return false;
    }
    return true;
  }

  private dropEvent(st: ConnState): void {
    st.congested = true;
    st.droppedEvents++;
    st.droppedSinceCongested++;
    this.metrics.droppedEvents++;
  }

  /** The uWS `drain` callback: a congested client that caught up learns how many events it missed. */
  readonly onDrain = (ws: UwsWebSocket<ConnState>): void => {
    const st = stateOf(ws);
    if (st.closed || !st.congested) return;
    if (ws.getBufferedAmount() > this.options.maxBufferedBytes / 2) return;
    st.congested = false;
    const dropped = st.droppedSinceCongested;
    st.droppedSinceCongested = 0;
    if (dropped > 0) {
      // Tell the client it missed events so it can resync (e.g. subscribe with since_seq).
      this.sendEventTo(ws, st, event('events_dropped', { count: dropped }));
    }
  };

  endSocket(ws: UwsWebSocket<ConnState>, st: ConnState, code: number, reason: string): void {
    endSocket(ws, st, code, reason, this.logger);
  }

  /**
   * Counts a request served outside the WebSocket path (an HTTP command) as in flight until
   * the returned function is called, so that a graceful shutdown waits for it too.
   */
  begin(): () => void {
    this.inFlight++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.inFlight--;
      if (this.inFlight === 0) this.wakeIdle();
    };
  }

  /** Requests received and not yet answered, over all connections. */
  get pending(): number {
    return this.inFlight;
  }

  private wakeIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  /** Resolves true once no request is in flight, or false after `timeoutMs`. */
  waitIdle(timeoutMs: number): Promise<boolean> {
    if (this.inFlight === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }
}
