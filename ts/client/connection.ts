/**
 * The base of the three clients: resolves a WebSocket
 * implementation, encodes/decodes frames with the protocol codec (JSON text or
 * MessagePack), sends requests through the RequestManager, queues while
 * disconnected, reconnects per policy, runs the heartbeat, and reports
 * connection-state events. Subclasses add typed commands and server events.
 */
import { decodeMessage, encodeMessage } from '../protocol/codec.js';
import { ERROR_MESSAGES, type ErrorCode } from '../protocol/errors.js';
import type { RequestId } from '../protocol/envelope.js';
import { ClientError } from './errors.js';
import { TypedEmitter, type EventMap } from './emitter.js';
import { Heartbeat, type HeartbeatOptions } from './heartbeat.js';
import { ReconnectScheduler, shouldReconnect, type ReconnectOptions } from './reconnect.js';
import { RequestManager, type CreateOptions, type OutgoingMessage, type RequestEntry } from './request-manager.js';
import { DEFAULTS } from './defaults.js';

/** The subset of the browser WebSocket API the client uses (`ws` in Node provides it too). */
export interface WebSocketLike {
  readonly readyState: number;
  binaryType: string;
  send(data: string | ArrayBufferLike | ArrayBufferView): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onclose: ((ev: { code: number; reason: string; wasClean?: boolean }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
}

/**
 * Any WebSocket constructor: `globalThis.WebSocket`, `import WebSocket from 'ws'`, or a
 * compatible one. The third argument is passed only when `wsOptions` is given (Node `ws`:
 * headers, agent, …).
 */
// `any` options: each implementation types its third argument its own way (or not at all).
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type WebSocketConstructor = new (url: string, protocols?: string | string[], options?: any) => unknown;

export type ConnectionState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface CloseInfo {
  code: number;
  reason: string;
}

export interface ConnectionEvents extends EventMap {
  /** A socket is being opened (`attempt` 0 for the first connect). */
  connecting: (info: { attempt: number; url: string }) => void;
  /** The socket is open; queued requests were flushed. */
  open: (info: { url: string; reconnected: boolean }) => void;
  /** The socket dropped; a new attempt follows after `delayMs`. */
  reconnecting: (info: { attempt: number; delayMs: number; code: number; reason: string }) => void;
  /** For good: client close(), close 1000/1008, or reconnect attempts exhausted. */
  closed: (info: CloseInfo & { reconnectAttempts: number }) => void;
  /** Socket errors and server error replies that answer no pending request. */
  error: (error: ClientError) => void;
  /** Every state change. */
  state: (state: ConnectionState, previous: ConnectionState) => void;
  /** Any decoded message not consumed as a reply or a known event. */
  message: (message: Record<string, unknown>) => void;
}

export interface ConnectionOptions {
  /** Server URL (`ws://` or `wss://`). */
  url?: string;
  /**
   * Several URLs of equivalent servers (cluster members, docs/cluster.md): the client uses
   * the first and moves to the next one each time the connection drops. Overrides `url`.
   */
  urls?: string[];
  /** WebSocket implementation; default `globalThis.WebSocket`. In Node 20 pass `ws`. */
  WebSocket?: WebSocketConstructor;
  /** Third constructor argument for Node `ws` (e.g. `{ headers: { authorization: 'Bearer …' } }`). */
  wsOptions?: unknown;
  protocols?: string | string[];
  /** Auth token sent as `?token=` (browsers cannot set headers on an upgrade). */
  token?: string;
  /** MessagePack frames (vectors as float32 binary). Default false (JSON). */
  binary?: boolean;
  requestTimeoutMs?: number;
  /** Requests held while disconnected. Default 1000. */
  maxQueued?: number;
  /** `false` disables reconnecting; an object overrides parts of the policy. */
  reconnect?: boolean | Partial<ReconnectOptions>;
  /** `false` disables the heartbeat; an object overrides parts of it. */
  heartbeat?: boolean | Partial<HeartbeatOptions>;
  /** Connect on construction (in a microtask, so listeners can be added first). Default true. */
  autoConnect?: boolean;
  /** How long close() waits for the close handshake before cutting the socket. Default 3000. */
  closeTimeoutMs?: number;
  /** Randomness for jitter (tests). */
  random?: () => number;
}

const OPEN = 1;

type Kind = 'memory' | 'inference' | 'control';

function merge<T extends object>(base: T, over: boolean | Partial<T> | undefined): T {
  if (over === false) return { ...base, enabled: false };
  if (over === true || over === undefined) return { ...base };
  return { ...base, ...over };
}

function resolveWebSocket(option: WebSocketConstructor | undefined): WebSocketConstructor {
  const ctor = option ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (typeof ctor !== 'function') {
    throw new ClientError(
      'no_websocket',
      'No WebSocket implementation: pass one as the `WebSocket` option (in Node: `import WebSocket from "ws"`) or run where globalThis.WebSocket exists',
    );
  }
  return ctor;
}

function withToken(url: string, token: string | undefined): string {
  if (token === undefined) return url;
  const hashAt = url.indexOf('#');
  const base = hashAt >= 0 ? url.slice(0, hashAt) : url;
  return `${base}${base.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;
}

export abstract class BaseClient<E extends ConnectionEvents = ConnectionEvents> extends TypedEmitter<E> {
  /** The server URLs, tried in turn (one unless `urls` was given). */
  readonly urls: readonly string[];
  private urlIndex = 0;
  private readonly urlToken: string | undefined;
  protected readonly binary: boolean;
  protected readonly requests: RequestManager;
  private readonly WebSocketImpl: WebSocketConstructor;
  private readonly wsOptions: unknown;
  private readonly protocols: string | string[] | undefined;
  private readonly reconnector: ReconnectScheduler;
  private readonly heartbeat: Heartbeat;
  private socket: WebSocketLike | null = null;
  private _state: ConnectionState = 'idle';
  private everOpened = false;
  private closeRequested: CloseInfo | null = null;
  /** The server refused the upgrade (HTTP 401/403): retrying cannot help. */
  private refused: string | null = null;
  private readonly closeTimeoutMs: number;
  private waiters: Array<{ resolve: () => void; reject: (e: ClientError) => void }> = [];
  private closedWaiters: Array<() => void> = [];

  protected constructor(kind: Kind, options: ConnectionOptions) {
    super();
    this.urls = options.urls !== undefined && options.urls.length > 0 ? [...options.urls] : [options.url ?? DEFAULTS.urls[kind]];
    this.urlToken = options.token;
    this.WebSocketImpl = resolveWebSocket(options.WebSocket);
    this.wsOptions = options.wsOptions;
    this.protocols = options.protocols;
    this.binary = options.binary ?? DEFAULTS.binary;
    this.closeTimeoutMs = options.closeTimeoutMs ?? DEFAULTS.closeTimeoutMs;
    this.requests = new RequestManager({
      timeoutMs: options.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs,
      maxQueued: options.maxQueued ?? DEFAULTS.maxQueued,
    });
    this.reconnector = new ReconnectScheduler(merge(DEFAULTS.reconnect[kind], options.reconnect), options.random);
    this.heartbeat = new Heartbeat(merge(DEFAULTS.heartbeat[kind], options.heartbeat), {
      probe: this.heartbeatProbe(),
      onDead: () => this.dropSocket(4000, 'heartbeat timeout'),
    });
    if (options.autoConnect ?? true) {
      queueMicrotask(() => {
        if (this._state === 'idle') this.connect().catch(() => undefined);
      });
    }
  }

  /** The URL in use (or being tried). */
  get url(): string {
    return this.urls[this.urlIndex]!;
  }

  get state(): ConnectionState {
    return this._state;
  }

  /** Requests waiting for the connection. */
  get queued(): number {
    return this.requests.queuedCount;
  }

  /** Requests sent and awaiting their reply. */
  get inflight(): number {
    return this.requests.inflightCount;
  }

  /**
   * Opens the connection (a no-op when open or opening); resolves once open, rejects with
   * `disconnected` if the client ends up closed first. After a final close, starts afresh.
   */
  connect(): Promise<void> {
    if (this._state === 'open') return Promise.resolve();
    const p = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (this._state === 'idle' || this._state === 'closed') {
      this.closeRequested = null;
      this.reconnector.reset();
      this.openSocket(0);
    }
    return p;
  }

  /**
   * Closes with 1000 (no reconnect); queued and in-flight requests reject with
   * `disconnected`. Resolves once the socket is closed.
   */
  close(code = 1000, reason = ''): Promise<void> {
    if (this._state === 'closed' || this._state === 'idle') {
      this.closeRequested = { code, reason };
      if (this._state === 'idle') this.finalClose({ code, reason });
      return Promise.resolve();
    }
    if (this.closeRequested) return new Promise<void>((resolve) => this.closedWaiters.push(resolve));
    this.closeRequested = { code, reason };
    this.reconnector.cancel();
    const done = new Promise<void>((resolve) => this.closedWaiters.push(resolve));
    const socket = this.socket;
    if (socket && (socket.readyState === 0 || socket.readyState === OPEN)) {
      try {
        socket.close(code, reason);
        // A peer that never finishes the close handshake must not hold close() up.
        const timer = setTimeout(() => {
          if (this.socket === socket) this.dropSocket(code, reason);
        }, this.closeTimeoutMs);
        this.closedWaiters.push(() => clearTimeout(timer));
      } catch {
        this.detach(socket);
        this.finalClose({ code, reason });
      }
    } else {
      if (socket) this.detach(socket);
      this.finalClose({ code, reason });
    }
    return done;
  }

  /** Sends a request and resolves with the reply's `data` (rejects with ClientError). */
  request<T = unknown>(type: string, data?: Record<string, unknown>, options: CreateOptions = {}): Promise<T> {
    const message: Omit<OutgoingMessage, 'id'> = data === undefined ? { type } : { type, data };
    const { entry, promise } = this.requests.create<T>(message, options);
    if (this._state === 'closed') {
      entry.reject(new ClientError('disconnected', `${type}: the client is closed (call connect() to reopen)`, { type }));
      return promise;
    }
    if (!this.trySend(entry)) this.requests.enqueue(entry);
    return promise;
  }

  /** Writes a message that expects no reply, or returns false when the socket is not open. */
  protected sendRaw(message: Record<string, unknown>): boolean {
    const socket = this.socket;
    if (!socket || socket.readyState !== OPEN || this._state !== 'open') return false;
    socket.send(encodeMessage(message, this.binary) as string | Uint8Array);
    return true;
  }

  /** Called once a socket is open, before the queue is flushed: restore subscriptions here. */
  protected onReopen(_reconnected: boolean): void {}

  /** Handles a decoded message that is not a reply to a pending request; true if consumed. */
  protected handleEvent(_message: Record<string, unknown>): boolean {
    return false;
  }

  /** The heartbeat's probe (a cheap request); undefined = silence detection only. */
  protected heartbeatProbe(): (() => void) | undefined {
    return () => {
      this.request('stats', undefined, { internal: true, retriable: false }).catch(() => undefined);
    };
  }

  /** Turns a reply's `data` into the typed value (e.g. number[] vectors → Float32Array). */
  protected reviveReply(_type: string, data: unknown): unknown {
    return data;
  }

  // ------------------------------------------------------------ internals

  /** emit() for the base events (E extends ConnectionEvents, which TypeScript cannot narrow here). */
  private fire<K extends keyof ConnectionEvents>(event: K, ...args: Parameters<ConnectionEvents[K]>): void {
    (this.emit as (event: string, ...args: unknown[]) => void).call(this, event as string, ...args);
  }

  private setState(next: ConnectionState): void {
    const prev = this._state;
    if (prev === next) return;
    this._state = next;
    this.fire('state', next, prev);
  }

  private trySend(entry: RequestEntry): boolean {
    const socket = this.socket;
    if (!socket || socket.readyState !== OPEN || this._state !== 'open') return false;
    try {
      socket.send(encodeMessage(entry.message, this.binary) as string | Uint8Array);
    } catch {
      return false;
    }
    this.requests.sent(entry);
    return true;
  }

  private openSocket(attempt: number): void {
    this.refused = null;
    this.setState('connecting');
    this.fire('connecting', { attempt, url: this.url });
    let socket: WebSocketLike;
    const connectUrl = withToken(this.url, this.urlToken);
    try {
      const Ctor = this.WebSocketImpl;
      socket = (
        this.wsOptions !== undefined
          ? new Ctor(connectUrl, this.protocols, this.wsOptions)
          : this.protocols !== undefined
            ? new Ctor(connectUrl, this.protocols)
            : new Ctor(connectUrl)
      ) as WebSocketLike;
    } catch (err) {
      this.fire('error', new ClientError('socket_error', `Cannot open ${this.url}: ${(err as Error).message ?? String(err)}`));
      this.afterDrop({ code: 1006, reason: 'connect failed' });
      return;
    }
    this.socket = socket;
    socket.binaryType = 'arraybuffer';
    socket.onopen = () => this.onSocketOpen(socket);
    socket.onmessage = (ev) => this.onSocketMessage(ev.data);
    socket.onerror = (ev) => {
      const msg = (ev as { message?: string; error?: Error }).message ?? (ev as { error?: Error }).error?.message;
      // Node `ws` names the HTTP status of a refused upgrade; browsers do not expose it.
      const refused = msg ? /Unexpected server response: (401|403)\b/.exec(msg) : null;
      if (refused && socket.readyState !== OPEN) this.refused = `HTTP ${refused[1]}`;
      this.fire('error', new ClientError('socket_error', `WebSocket error on ${this.url}${msg ? `: ${msg}` : ''}`));
    };
    socket.onclose = (ev) => {
      this.detach(socket);
      this.afterDrop({ code: ev.code, reason: ev.reason ?? '' });
    };
  }

  private onSocketOpen(socket: WebSocketLike): void {
    if (socket !== this.socket) return;
    const reconnected = this.everOpened;
    this.everOpened = true;
    this.reconnector.reset();
    this.setState('open');
    this.heartbeat.start();
    this.onReopen(reconnected);
    for (const entry of this.requests.drainQueue()) {
      if (!this.trySend(entry)) {
        this.requests.enqueue(entry);
      }
    }
    const waiters = this.waiters.splice(0);
    for (const w of waiters) w.resolve();
    this.fire('open', { url: this.url, reconnected });
  }

  private onSocketMessage(raw: unknown): void {
    this.heartbeat.touch();
    let msg: Record<string, unknown>;
    try {
      if (typeof raw === 'string') msg = decodeMessage(raw, false);
      else if (raw instanceof ArrayBuffer) msg = decodeMessage(raw, true);
      else if (ArrayBuffer.isView(raw)) msg = decodeMessage(new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength), true);
      else return;
    } catch {
      this.fire('error', new ClientError('invalid_json', 'Undecodable frame from the server'));
      return;
    }
    if (typeof msg !== 'object' || msg === null) return;
    const id = msg.id as RequestId | undefined;
    const consumed = this.requests.handleReply(id, (entry) => {
      // A server in graceful shutdown refuses new work, then closes with 1001: leave a
      // retriable request in flight so it is replayed (in order) after the reconnect.
      if (msg.status === 'error' && entry.retriable && isShuttingDown(msg)) return;
      if (msg.status === 'error') entry.reject(toClientError(msg, entry.message.type));
      else entry.resolve(this.reviveReply(entry.message.type, msg.data));
    });
    if (consumed) return;
    if (this.handleEvent(msg)) return;
    if (msg.status === 'error' && id === undefined) {
      this.fire('error', toClientError(msg, typeof msg.type === 'string' ? msg.type : undefined));
      return;
    }
    this.fire('message', msg);
  }

  /** Drops the socket at once (no close handshake wait) and handles it as a lost connection. */
  private dropSocket(code: number, reason: string): void {
    const socket = this.socket;
    if (!socket) return;
    this.detach(socket);
    try {
      const s = socket as WebSocketLike & { terminate?: () => void };
      if (typeof s.terminate === 'function') s.terminate();
      else socket.close(code, reason);
    } catch {
      // already closed
    }
    this.afterDrop({ code, reason });
  }

  private detach(socket: WebSocketLike): void {
    socket.onopen = null;
    socket.onmessage = null;
    socket.onclose = null;
    socket.onerror = () => undefined; // ws emits 'error' after terminate(); keep a no-op listener
    if (this.socket === socket) this.socket = null;
    this.heartbeat.stop();
  }

  private afterDrop(info: CloseInfo): void {
    if (this.closeRequested) {
      this.finalClose(this.closeRequested);
      return;
    }
    if (this.refused !== null) {
      // Auth/origin refusal before the upgrade: a policy failure, like close 1008.
      const reason = this.refused;
      this.refused = null;
      this.finalClose({ code: 1008, reason });
      return;
    }
    if (!shouldReconnect(info.code)) {
      this.finalClose(info);
      return;
    }
    this.requests.requeueInflight(`close ${info.code}${info.reason ? ` ${info.reason}` : ''}`);
    // Fail over: the next attempt goes to the next server.
    this.urlIndex = (this.urlIndex + 1) % this.urls.length;
    const next = this.reconnector.schedule(() => this.openSocket(this.reconnector.attempt));
    if (!next) {
      this.finalClose(info);
      return;
    }
    this.setState('reconnecting');
    this.fire('reconnecting', { attempt: next.attempt, delayMs: next.delayMs, code: info.code, reason: info.reason });
  }

  private finalClose(info: CloseInfo): void {
    const attempts = this.reconnector.attempt;
    this.reconnector.cancel();
    this.heartbeat.stop();
    const why = this.closeRequested
      ? 'the client was closed'
      : !shouldReconnect(info.code)
        ? `the server closed the connection with ${info.code}${info.reason ? ` (${info.reason})` : ''}`
        : `the connection was lost (${info.code}) and ${attempts} reconnect attempts failed`;
    this.requests.rejectAll((e) => new ClientError('disconnected', `${e.message.type}: ${why}`, { type: e.message.type, data: { close_code: info.code } }));
    const waiters = this.waiters.splice(0);
    for (const w of waiters) w.reject(new ClientError('disconnected', `Cannot connect to ${this.url}: ${why}`, { data: { close_code: info.code } }));
    const wasClosed = this._state === 'closed';
    this.setState('closed');
    if (!wasClosed) this.fire('closed', { code: info.code, reason: info.reason, reconnectAttempts: attempts });
    for (const r of this.closedWaiters.splice(0)) r();
  }
}

/** A server error reply → ClientError with the server's code, message and data. */
export function toClientError(msg: Record<string, unknown>, type?: string): ClientError {
  const code = (typeof msg.code === 'string' ? msg.code : 'internal') as ErrorCode;
  const message =
    typeof msg.message === 'string' ? msg.message : typeof msg.error === 'string' ? msg.error : `Server error ${code}`;
  const options: { data?: Record<string, unknown>; type?: string } = {};
  if (msg.data && typeof msg.data === 'object') options.data = msg.data as Record<string, unknown>;
  if (type !== undefined) options.type = type;
  return new ClientError(code, message, options);
}

function isShuttingDown(msg: Record<string, unknown>): boolean {
  return msg.code === 'unavailable' && (msg.message === ERROR_MESSAGES.shuttingDown || (msg.data as { reason?: unknown } | undefined)?.reason === 'shutting_down');
}
