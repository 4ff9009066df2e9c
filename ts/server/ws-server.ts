/**
 * The connection layer shared by the memory server, the inference server and
 * the control center: uWebSockets.js app, origin/auth checks before upgrade,
 * per-connection typed user data, ordered dispatch to a command table,
 * keep-alive sweep, limits, rate limiting, registry (pub/sub broadcast),
 * HTTP routes with CORS, and a graceful RUNNING → CLOSING → CLOSED shutdown.
 * See docs/connection.md.
 */
import { randomBytes } from 'node:crypto';
import { pino, type Logger } from 'pino';
import {
  CLOSE_CODES,
  DEFAULTS,
  ERROR_MESSAGES,
  PROTOCOL_VERSION,
  ProtocolError,
  decodeRequest,
  encodeMessage,
  errorReply,
  event,
  success,
  type Reply,
  type Request,
} from '../protocol/index.js';
import { authenticate, extractToken, type AuthClaims } from './auth.js';
import { ServerMetrics, type MetricsSnapshot } from './metrics.js';
import { CORS_ALLOW_HEADERS, CORS_ALLOW_METHODS, CORS_MAX_AGE, OriginPolicy } from './origin.js';
import {
  LISTEN_EXCLUSIVE,
  uWS,
  type TemplatedApp,
  type UwsHttpRequest,
  type UwsHttpResponse,
  type UwsWebSocket,
  type us_listen_socket,
} from './uws.js';

export type ServerState = 'idle' | 'running' | 'closing' | 'closed';

/** Handles one command; the returned value (or resolved value) is the reply's `data`. Throw ProtocolError for error replies. */
export type CommandHandler = (conn: Connection, request: Request) => unknown;

export interface RateLimitOptions {
  messagesPerSecond: number;
  messagesBurst: number;
  bytesPerSecond: number;
  bytesBurst: number;
  /** Consecutive rate-limited frames after which the connection is closed with 1008. */
  closeAfterRejected: number;
}

export interface ServiceInfo {
  service: string;
  version: string;
  protocol?: number;
  status?: string;
  [key: string]: unknown;
}

export interface WsServerOptions {
  /** Service name, used in logs and the default `GET /` info. */
  name?: string;
  /** Default `localhost` (binds 127.0.0.1). */
  host?: string;
  /** Default 0 (ephemeral). */
  port?: number;
  /** Also try port+1 … port+portRange when the port is taken. Default 0. */
  portRange?: number;
  /** Upgrade paths. Default ['/', '/ws']. */
  wsPaths?: readonly string[];
  /** Origin allow-list; `*` allows all. Requests without Origin are always allowed. */
  origins?: readonly string[];
  pingIntervalMs?: number;
  pongTimeoutMs?: number;
  /** Budget for graceful shutdown (waiting for in-flight replies) before force-closing. */
  closeTimeoutMs?: number;
  maxFrameBytes?: number;
  maxBufferedBytes?: number;
  maxQueuedRequests?: number;
  maxConnections?: number;
  maxConnectionsPerIp?: number;
  /** Token-bucket limits; `false` disables rate limiting. */
  rateLimit?: Partial<RateLimitOptions> | false;
  /** Shared-secret auth. */
  token?: string;
  /** HS256 JWT auth. */
  jwtSecret?: string;
  /** PEM file paths: serve wss:// / https://. */
  tlsCert?: string;
  tlsKey?: string;
  tlsPassphrase?: string;
  /** permessage-deflate with uWS SHARED_COMPRESSOR. */
  compression?: boolean;
  /** `GET /` JSON; a function is called per request; `false` serves no `GET /` (e.g. the control center's dashboard route instead). */
  serviceInfo?: ServiceInfo | (() => ServiceInfo) | false;
  /** The command table. */
  commands?: Record<string, CommandHandler>;
  /** Fallback for types missing from `commands` (throw ProtocolError('unknown_type') to refuse). */
  onMessage?: CommandHandler;
  onOpen?: (conn: Connection) => void;
  onClose?: (conn: Connection, code: number) => void;
  /** Called during shutdown after in-flight replies were sent and before clients are closed (flush the store here). */
  beforeClose?: () => void | Promise<void>;
  /**
   * `serial` (default): a request's handler starts only after the previous request on the
   * same connection was answered (requests take effect in order). `concurrent`: handlers run
   * at once, replies are still sent in request order (e.g. inference, for batching).
   */
  pipelining?: 'serial' | 'concurrent';
  /**
   * Serial pipelining only: request types whose consecutive requests on one connection may
   * run at once (they start together; replies still go out in order). Any other request
   * waits for everything before it, and the next of these waits for it. The memory server
   * uses it for `store`: a connection's pipelined stores reach the store together (one
   * group commit, one shared nearest-neighbour pass) and in request order.
   */
  overlapping?: readonly string[];
  logger?: Logger;
  logLevel?: string;
  /** Print `WebSocket server listening on <host>:<port>` on stdout. Default true. */
  printListening?: boolean;
}

export interface ListenInfo {
  host: string;
  port: number;
  url: string;
}

export type HttpMethod = 'get' | 'post' | 'put' | 'del' | 'patch' | 'head' | 'any';

export interface HttpRequestInfo {
  method: string;
  path: string;
  query: string;
  /** Route parameters (`:name` segments), in order. */
  params: string[];
  /** Lower-cased header names. */
  headers: Record<string, string>;
  ip: string;
  origin: string;
  auth: AuthClaims;
  body: Buffer;
  /** Parses the body as JSON (throws ProtocolError('invalid_json')). */
  json<T = unknown>(): T;
}

export interface HttpReply {
  status?: number;
  headers?: Record<string, string>;
  /** Objects are sent as JSON. */
  body?: string | Uint8Array | object;
}

export type HttpHandler = (req: HttpRequestInfo) => HttpReply | Promise<HttpReply>;

export interface HttpRouteOptions {
  /** Skip token/JWT auth for this route. Default false (auth applies when configured). */
  public?: boolean;
}

/** Per-connection state: the uWS user data of each socket. */
export interface ConnState {
  id: string;
  ip: string;
  origin: string;
  path: string;
  auth: AuthClaims;
  openedAt: number;
  /** Set by the close handler; after it the socket must never be touched. */
  closed: boolean;
  /** Counted in the registry (false for sockets refused at open with 1013). */
  registered: boolean;
  rejectReason: string | null;
  /** Last frame kind the client used; events follow it. */
  binary: boolean;
  lastPingAt: number;
  pingSentAt: number;
  awaitingPong: boolean;
  /** Rate-limit token buckets, inline (two objects per connection cost more than three numbers). */
  msgTokens: number;
  byteTokens: number;
  tokensAt: number;
  rejectedStreak: number;
  /** Requests received and not yet answered. */
  queued: number;
  tail: Promise<void> | null;
  /**
   * Serial pipelining with `overlapping` types: while the latest requests form a run of
   * overlapping types, the promise the run's first request waited for (null: it started at
   * once); undefined when the latest request was of another type.
   */
  gate: Promise<void> | null | undefined;
  congested: boolean;
  droppedEvents: number;
  droppedSinceCongested: number;
  conn: Connection | null;
}

/** The connection state of a socket (stored in its user data as `{ st }`, see the upgrade). */
function stateOf(ws: UwsWebSocket<ConnState>): ConnState {
  return (ws.getUserData() as unknown as { st: ConnState }).st;
}

// Connection ids: unique per process, short and flat (a UUID string per socket costs ~450 B).
let connectionCounter = 0;
const connectionIdPrefix = `${process.pid.toString(36)}${Date.now().toString(36)}`;
function nextConnectionId(): string {
  return `${connectionIdPrefix}-${(++connectionCounter).toString(36)}`;
}

/** Sentinel topic every socket is subscribed to, for broadcast(). */
export const BROADCAST_TOPIC = '__broadcast__';

const HTTP_STATUS: Record<number, string> = {
  200: 'OK',
  201: 'Created',
  202: 'Accepted',
  204: 'No Content',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Payload Too Large',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

const textOf = (ab: ArrayBuffer): string => Buffer.from(ab).toString('utf8');

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

/** The handler-facing view of one live connection. */
export class Connection {
  private _locals: Map<string, unknown> | null = null;
  /** Handler-owned per-connection state (e.g. the memory server's namespace); created on first use. */
  get locals(): Map<string, unknown> {
    return (this._locals ??= new Map<string, unknown>());
  }

  constructor(
    private readonly server: WsServer,
    private readonly ws: UwsWebSocket<ConnState>,
    private readonly st: ConnState,
  ) {}

  get id(): string {
    return this.st.id;
  }
  get ip(): string {
    return this.st.ip;
  }
  get origin(): string {
    return this.st.origin;
  }
  get path(): string {
    return this.st.path;
  }
  get auth(): AuthClaims {
    return this.st.auth;
  }
  get openedAt(): number {
    return this.st.openedAt;
  }
  get closed(): boolean {
    return this.st.closed;
  }
  /** Whether the client last spoke MessagePack (events are then sent binary). */
  get binary(): boolean {
    return this.st.binary;
  }
  get droppedEvents(): number {
    return this.st.droppedEvents;
  }

  /** Namespaces allowed by the connection's JWT `ns` claim (undefined = any). */
  allowsNamespace(namespace: string): boolean {
    return this.st.auth.namespaces === undefined || this.st.auth.namespaces.includes(namespace);
  }

  /** Pushes an event (subject to the slow-consumer policy). Returns false if dropped or closed. */
  send(message: unknown): boolean {
    return this.server.sendEventTo(this.ws, this.st, message);
  }

  /** Sends `event(name, data)`. */
  emit(name: string, data: unknown): boolean {
    return this.send(event(name, data));
  }

  subscribe(topic: string): boolean {
    if (this.st.closed) return false;
    return this.ws.subscribe(topic);
  }
  unsubscribe(topic: string): boolean {
    if (this.st.closed) return false;
    return this.ws.unsubscribe(topic);
  }
  isSubscribed(topic: string): boolean {
    return !this.st.closed && this.ws.isSubscribed(topic);
  }
  topics(): string[] {
    return this.st.closed ? [] : this.ws.getTopics().filter((t) => t !== BROADCAST_TOPIC);
  }
  bufferedAmount(): number {
    return this.st.closed ? 0 : this.ws.getBufferedAmount();
  }
  close(code: number = CLOSE_CODES.NORMAL, reason = ''): void {
    this.server.endSocket(this.ws, this.st, code, reason);
  }
}

interface Resolved {
  name: string;
  host: string;
  port: number;
  portRange: number;
  wsPaths: readonly string[];
  pingIntervalMs: number;
  pongTimeoutMs: number;
  closeTimeoutMs: number;
  maxFrameBytes: number;
  maxBufferedBytes: number;
  maxQueuedRequests: number;
  maxConnections: number;
  maxConnectionsPerIp: number;
  rateLimit: RateLimitOptions | false;
  compression: boolean;
  pipelining: 'serial' | 'concurrent';
  overlapping: ReadonlySet<string>;
  printListening: boolean;
}

interface RouteEntry {
  method: HttpMethod;
  pattern: string;
  handler: HttpHandler;
  options: HttpRouteOptions;
}

export class WsServer {
  readonly options: Readonly<Resolved>;
  readonly metrics = new ServerMetrics();
  readonly logger: Logger;
  private readonly opts: WsServerOptions;
  private readonly originPolicy: OriginPolicy;
  private readonly commands: Map<string, CommandHandler>;
  private readonly registry = new Map<string, UwsWebSocket<ConnState>>();
  private readonly perIp = new Map<string, number>();
  /** One string per client address (connections from one address share it). */
  private readonly ipNames = new Map<string, string>();
  private readonly routes: RouteEntry[] = [];
  private app: TemplatedApp | null = null;
  private listenSocket: us_listen_socket | null = null;
  private sweepTimer: ReturnType<typeof setInterval> | null = null;
  private _state: ServerState = 'idle';
  private _port = 0;
  private inFlight = 0;
  /** The socket whose uWS message callback is running (already corked by uWS), else null. */
  private inCallbackOf: UwsWebSocket<ConnState> | null = null;
  private idleWaiters: Array<() => void> = [];
  private closePromise: Promise<void> | null = null;

  constructor(options: WsServerOptions = {}) {
    this.opts = options;
    const rl = options.rateLimit;
    this.options = {
      name: options.name ?? 'memory-server',
      host: options.host ?? DEFAULTS.host,
      port: options.port ?? 0,
      portRange: options.portRange ?? 0,
      wsPaths: options.wsPaths ?? DEFAULTS.wsPaths,
      pingIntervalMs: options.pingIntervalMs ?? DEFAULTS.pingIntervalMs,
      pongTimeoutMs: options.pongTimeoutMs ?? DEFAULTS.pongTimeoutMs,
      closeTimeoutMs: options.closeTimeoutMs ?? DEFAULTS.closeTimeoutMs,
      maxFrameBytes: options.maxFrameBytes ?? DEFAULTS.maxFrameBytes,
      maxBufferedBytes: options.maxBufferedBytes ?? DEFAULTS.maxBufferedBytes,
      maxQueuedRequests: options.maxQueuedRequests ?? DEFAULTS.maxQueuedRequests,
      maxConnections: options.maxConnections ?? DEFAULTS.maxConnections,
      maxConnectionsPerIp: options.maxConnectionsPerIp ?? DEFAULTS.maxConnectionsPerIp,
      rateLimit: rl === false ? false : { ...DEFAULTS.rateLimit, ...(rl ?? {}) },
      compression: options.compression ?? DEFAULTS.compression,
      pipelining: options.pipelining ?? 'serial',
      overlapping: new Set(options.overlapping ?? []),
      printListening: options.printListening ?? true,
    };
    this.logger =
      options.logger ??
      pino({ name: this.options.name, level: options.logLevel ?? DEFAULTS.logLevel });
    this.originPolicy = new OriginPolicy(options.origins ?? DEFAULTS.origins);
    this.commands = new Map(Object.entries(options.commands ?? {}));
  }

  get state(): ServerState {
    return this._state;
  }

  /** The bound port (after listen). */
  get port(): number {
    return this._port;
  }

  /** Registers (or replaces) a command handler. */
  command(type: string, handler: CommandHandler): this {
    this.commands.set(type, handler);
    return this;
  }

  /** Registers an HTTP route; must be called before listen(). Routes registered here win over the defaults. */
  http(method: HttpMethod, pattern: string, handler: HttpHandler, options: HttpRouteOptions = {}): this {
    if (this._state !== 'idle') throw new Error('http routes must be registered before listen()');
    this.routes.push({ method, pattern, handler, options });
    return this;
  }

  // ---------------------------------------------------------------- listen

  async listen(): Promise<ListenInfo> {
    if (this._state !== 'idle') throw new Error(`cannot listen: server is ${this._state}`);
    const app = this.createApp();
    this.app = app;
    const { host, port, portRange } = this.options;
    const bindHost = host === 'localhost' ? '127.0.0.1' : host;
    const last = port === 0 ? 0 : Math.min(65535, port + portRange);
    for (let p = port; p <= last; p++) {
      const ls = await new Promise<us_listen_socket | false>((resolve) => {
        // (host, port, options, cb): exclusive port, no SO_REUSEPORT sharing.
        (app.listen as unknown as (h: string, p: number, o: number, cb: (s: us_listen_socket | false) => void) => void)(
          bindHost,
          p,
          LISTEN_EXCLUSIVE,
          resolve,
        );
      });
      if (ls) {
        this.listenSocket = ls;
        this._port = uWS.us_socket_local_port(ls as unknown as Parameters<typeof uWS.us_socket_local_port>[0]);
        this._state = 'running';
        this.startSweep();
        const scheme = this.opts.tlsCert ? 'wss' : 'ws';
        const url = `${scheme}://${host.includes(':') ? `[${host}]` : host}:${this._port}`;
        this.logger.info({ host, port: this._port }, 'listening');
        if (this.options.printListening) process.stdout.write(`WebSocket server listening on ${host}:${this._port}\n`);
        return { host, port: this._port, url };
      }
    }
    this.app = null;
    if (portRange > 0) throw new Error('No available ports found');
    throw new Error(`Could not listen on ${host}:${port} (address in use or not permitted)`);
  }

  private createApp(): TemplatedApp {
    const { tlsCert, tlsKey, tlsPassphrase } = this.opts;
    let app: TemplatedApp;
    if (tlsCert || tlsKey) {
      if (!tlsCert || !tlsKey) throw new Error('TLS needs both tlsCert and tlsKey');
      const sslOptions: { cert_file_name: string; key_file_name: string; passphrase?: string } = {
        cert_file_name: tlsCert,
        key_file_name: tlsKey,
      };
      if (tlsPassphrase) sslOptions.passphrase = tlsPassphrase;
      app = uWS.SSLApp(sslOptions);
    } else {
      app = uWS.App();
    }
    const o = this.options;
    for (const path of o.wsPaths) {
      app.ws<ConnState>(path, {
        // Above the limit so that over-limit frames reach message() and get 1009
        // (uWS itself closes frames over maxPayloadLength with 1006).
        maxPayloadLength: Math.max(o.maxFrameBytes * 2, o.maxFrameBytes + 64 * 1024),
        maxBackpressure: o.maxBufferedBytes,
        closeOnBackpressureLimit: 0,
        // Keep-alive is our JS sweep (uWS idle timeouts move in 4 s steps).
        idleTimeout: 0,
        sendPingsAutomatically: false,
        compression: o.compression ? uWS.SHARED_COMPRESSOR : uWS.DISABLED,
        upgrade: (res, req, context) => this.onUpgrade(res, req, context, path),
        open: (ws) => this.onOpen(ws),
        message: (ws, message, isBinary) => {
          // uWS corks the socket for the duration of its callbacks: replies sent inline go
          // straight out with the rest of this read's replies (no cork call of our own).
          this.inCallbackOf = ws;
          try {
            this.onWsMessage(ws, message, isBinary);
          } finally {
            this.inCallbackOf = null;
          }
        },
        drain: (ws) => this.onDrain(ws),
        pong: (ws) => {
          const st = stateOf(ws);
          st.awaitingPong = false;
        },
        close: (ws, code) => this.onWsClose(ws, code),
      });
    }
    app.options('/*', (res, req) => {
      const origin = req.getHeader('origin');
      if (!this.originPolicy.allows(origin)) {
        this.writeHttp(res, null, 403, {}, { error: 'Origin not allowed' });
        return;
      }
      res.cork(() => {
        res.writeStatus('204 No Content');
        if (origin) this.writeCors(res, origin);
        res.writeHeader('Access-Control-Allow-Methods', CORS_ALLOW_METHODS);
        res.writeHeader('Access-Control-Allow-Headers', CORS_ALLOW_HEADERS);
        res.writeHeader('Access-Control-Max-Age', CORS_MAX_AGE);
        res.endWithoutBody();
      });
    });
    const userGetRoot = this.routes.some((r) => (r.method === 'get' || r.method === 'any') && r.pattern === '/');
    for (const route of this.routes) this.attachRoute(app, route);
    if (this.opts.serviceInfo !== false && !userGetRoot) {
      this.attachRoute(app, {
        method: 'get',
        pattern: '/',
        options: { public: true },
        handler: () => ({ body: this.serviceInfo() }),
      });
    }
    app.any('/*', (res, req) => {
      const origin = req.getHeader('origin');
      const allowed = this.originPolicy.allows(origin);
      this.writeHttp(res, allowed && origin ? origin : null, allowed ? 404 : 403, {}, {
        error: allowed ? 'Not found' : 'Origin not allowed',
      });
    });
    return app;
  }

  private serviceInfo(): ServiceInfo {
    const si = this.opts.serviceInfo;
    const base: ServiceInfo =
      typeof si === 'function' ? si() : si && typeof si === 'object' ? si : { service: this.options.name, version: '0.0.0' };
    return {
      ...base,
      protocol: base.protocol ?? PROTOCOL_VERSION,
      status: base.status ?? (this._state === 'running' ? 'ok' : this._state),
    };
  }

  // ------------------------------------------------------------------ HTTP

  private writeCors(res: UwsHttpResponse, origin: string): void {
    res.writeHeader('Access-Control-Allow-Origin', origin);
    res.writeHeader('Vary', 'Origin');
  }

  /** Writes a full HTTP response (corked). `corsOrigin` adds CORS headers. */
  private writeHttp(
    res: UwsHttpResponse,
    corsOrigin: string | null,
    status: number,
    headers: Record<string, string>,
    body: string | Uint8Array | object | undefined,
  ): void {
    let payload: string | Uint8Array | undefined;
    let contentType: string | undefined;
    if (body === undefined) payload = undefined;
    else if (typeof body === 'string') {
      payload = body;
      contentType = 'text/plain; charset=utf-8';
    } else if (body instanceof Uint8Array) {
      payload = body;
      contentType = 'application/octet-stream';
    } else {
      payload = JSON.stringify(body);
      contentType = 'application/json';
    }
    res.cork(() => {
      res.writeStatus(`${status} ${HTTP_STATUS[status] ?? 'Unknown'}`);
      if (corsOrigin) this.writeCors(res, corsOrigin);
      const hasType = Object.keys(headers).some((h) => h.toLowerCase() === 'content-type');
      if (contentType && !hasType) res.writeHeader('Content-Type', contentType);
      for (const [k, v] of Object.entries(headers)) res.writeHeader(k, v);
      if (payload === undefined) res.end();
      else res.end(payload);
    });
  }

  private attachRoute(app: TemplatedApp, route: RouteEntry): void {
    const paramCount = (route.pattern.match(/\/:/g) ?? []).length;
    const handler = (res: UwsHttpResponse, req: UwsHttpRequest): void => {
      // Register onAborted before any async work (uWS requirement).
      let aborted = false;
      res.onAborted(() => {
        aborted = true;
      });
      // HttpRequest is stack-allocated: read everything now.
      const headers: Record<string, string> = {};
      req.forEach((k, v) => {
        headers[k] = v;
      });
      const method = req.getMethod();
      const path = req.getUrl();
      const query = req.getQuery() ?? '';
      const params: string[] = [];
      for (let i = 0; i < paramCount; i++) params.push(req.getParameter(i) ?? '');
      const origin = headers.origin ?? '';
      const ip = this.internIp(textOf(res.getRemoteAddressAsText()));
      const corsOrigin = origin && this.originPolicy.allows(origin) ? origin : null;
      const respond = (reply: HttpReply): void => {
        if (aborted) return;
        this.writeHttp(res, corsOrigin, reply.status ?? 200, reply.headers ?? {}, reply.body);
      };
      if (!this.originPolicy.allows(origin)) return respond({ status: 403, body: { error: 'Origin not allowed' } });
      const auth = route.options.public
        ? ({ ok: true, claims: { method: 'none' } } as const)
        : authenticate(this.opts, extractToken(headers.authorization ?? '', query));
      if (!auth.ok) return respond({ status: 401, body: { error: `Unauthorized: ${auth.reason}` } });

      const run = (body: Buffer): void => {
        const info: HttpRequestInfo = {
          method,
          path,
          query,
          params,
          headers,
          ip,
          origin,
          auth: auth.claims,
          body,
          json<T>(): T {
            try {
              return JSON.parse(body.toString('utf8')) as T;
            } catch {
              throw new ProtocolError('invalid_json', ERROR_MESSAGES.invalidJson);
            }
          },
        };
        const fail = (err: unknown): void => {
          if (err instanceof ProtocolError) {
            respond({ status: err.code === 'not_found' ? 404 : 400, body: { success: false, error: err.message, code: err.code } });
            return;
          }
          const correlationId = randomBytes(6).toString('hex');
          this.logger.error({ err, correlationId, path }, 'http handler failed');
          respond({ status: 500, body: { success: false, error: ERROR_MESSAGES.internal(correlationId) } });
        };
        try {
          const out = route.handler(info);
          if (isThenable(out)) (out as Promise<HttpReply>).then(respond, fail);
          else respond(out);
        } catch (err) {
          fail(err);
        }
      };

      if (method === 'get' || method === 'head' || method === 'options') {
        run(Buffer.alloc(0));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      let tooBig = false;
      res.onData((chunk, isLast) => {
        if (tooBig) return;
        size += chunk.byteLength;
        if (size > this.options.maxFrameBytes) {
          tooBig = true;
          respond({ status: 413, body: { error: `Body exceeds ${this.options.maxFrameBytes} bytes` } });
          return;
        }
        chunks.push(Buffer.from(chunk.slice(0))); // copy: uWS neuters the chunk on return
        if (isLast) run(Buffer.concat(chunks));
      });
    };
    switch (route.method) {
      case 'get':
        app.get(route.pattern, handler);
        break;
      case 'post':
        app.post(route.pattern, handler);
        break;
      case 'put':
        app.put(route.pattern, handler);
        break;
      case 'del':
        app.del(route.pattern, handler);
        break;
      case 'patch':
        app.patch(route.pattern, handler);
        break;
      case 'head':
        app.head(route.pattern, handler);
        break;
      case 'any':
        app.any(route.pattern, handler);
        break;
    }
  }

  // ------------------------------------------------------------- WebSocket

  private internIp(ip: string): string {
    const known = this.ipNames.get(ip);
    if (known !== undefined) return known;
    if (this.ipNames.size < 100_000) this.ipNames.set(ip, ip);
    return ip;
  }

  private onUpgrade(res: UwsHttpResponse, req: UwsHttpRequest, context: unknown, path: string): void {
    // Everything below is synchronous, but register onAborted first in case that changes.
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    const origin = req.getHeader('origin');
    const key = req.getHeader('sec-websocket-key');
    const protocol = (req.getHeader('sec-websocket-protocol') ?? '').split(',')[0]?.trim() ?? '';
    const extensions = req.getHeader('sec-websocket-extensions');
    const authorization = req.getHeader('authorization');
    const query = req.getQuery() ?? '';
    const ip = this.internIp(textOf(res.getRemoteAddressAsText()));
    const corsOrigin = origin && this.originPolicy.allows(origin) ? origin : null;

    if (this._state !== 'running') {
      this.writeHttp(res, corsOrigin, 503, {}, { error: 'Server is shutting down' });
      return;
    }
    if (!this.originPolicy.allows(origin)) {
      this.logger.warn({ ip, origin }, 'upgrade refused: origin not allowed');
      this.writeHttp(res, null, 403, {}, { error: 'Origin not allowed' });
      return;
    }
    const auth = authenticate(this.opts, extractToken(authorization, query));
    if (!auth.ok) {
      this.logger.warn({ ip, reason: auth.reason }, 'upgrade refused: unauthorized');
      this.writeHttp(res, corsOrigin, 401, {}, { error: `Unauthorized: ${auth.reason}` });
      return;
    }
    if (aborted) return;
    const now = performance.now();
    const rl = this.options.rateLimit;
    const st: ConnState = {
      id: nextConnectionId(),
      ip,
      origin,
      path,
      auth: auth.claims,
      openedAt: Date.now(),
      closed: false,
      registered: false,
      rejectReason: null,
      binary: false,
      lastPingAt: now,
      pingSentAt: 0,
      awaitingPong: false,
      msgTokens: rl ? rl.messagesBurst : 0,
      byteTokens: rl ? rl.bytesBurst : 0,
      tokensAt: now,
      rejectedStreak: 0,
      queued: 0,
      tail: null,
      gate: undefined,
      congested: false,
      droppedEvents: 0,
      droppedSinceCongested: 0,
      conn: null,
    };
    res.cork(() => {
      // uWS copies the user-data object it is given into a slow dictionary-mode object; hand it
      // a one-field holder so the connection state keeps its fast (and smaller) shape.
      res.upgrade({ st } as unknown as ConnState, key, protocol, extensions, context as Parameters<UwsHttpResponse['upgrade']>[4]);
    });
  }

  private onOpen(ws: UwsWebSocket<ConnState>): void {
    const st = stateOf(ws);
    const o = this.options;
    // Limits are checked at open: the upgrade completes and the socket is closed at once with 1013.
    if (this._state !== 'running') st.rejectReason = 'Server is shutting down';
    else if (this.registry.size >= o.maxConnections) st.rejectReason = 'Too many connections';
    else if ((this.perIp.get(st.ip) ?? 0) >= o.maxConnectionsPerIp) st.rejectReason = 'Too many connections from this address';
    if (st.rejectReason) {
      this.metrics.connectionsRejected++;
      this.logger.warn({ id: st.id, ip: st.ip, reason: st.rejectReason }, 'connection refused');
      const code = this._state === 'running' ? CLOSE_CODES.TRY_AGAIN_LATER : CLOSE_CODES.GOING_AWAY;
      ws.end(code, st.rejectReason);
      return;
    }
    st.registered = true;
    this.registry.set(st.id, ws);
    this.perIp.set(st.ip, (this.perIp.get(st.ip) ?? 0) + 1);
    this.metrics.connections = this.registry.size;
    this.metrics.connectionsOpened++;
    ws.subscribe(BROADCAST_TOPIC);
    st.conn = new Connection(this, ws, st);
    this.logger.info({ id: st.id, remoteAddress: st.ip, origin: st.origin || undefined, path: st.path }, 'connection established');
    if (this.opts.onOpen) {
      try {
        this.opts.onOpen(st.conn);
      } catch (err) {
        this.logger.error({ err, id: st.id }, 'onOpen hook failed');
      }
    }
  }

  private onWsClose(ws: UwsWebSocket<ConnState>, code: number): void {
    const st = stateOf(ws);
    st.closed = true;
    if (!st.registered) return;
    st.registered = false;
    this.registry.delete(st.id);
    const n = (this.perIp.get(st.ip) ?? 1) - 1;
    if (n <= 0) {
      this.perIp.delete(st.ip);
      this.ipNames.delete(st.ip);
    }
    else this.perIp.set(st.ip, n);
    this.metrics.connections = this.registry.size;
    this.logger.info({ id: st.id, code }, 'connection closed');
    if (this.opts.onClose && st.conn) {
      try {
        this.opts.onClose(st.conn, code);
      } catch (err) {
        this.logger.error({ err, id: st.id }, 'onClose hook failed');
      }
    }
    this.logger.info({ id: st.id, queued: st.queued, droppedEvents: st.droppedEvents }, 'connection cleanup');
  }

  /** Ends a socket with a close frame, once; never touches a closed socket. */
  endSocket(ws: UwsWebSocket<ConnState>, st: ConnState, code: number, reason: string): void {
    if (st.closed) return;
    st.closed = true;
    try {
      ws.end(code, reason);
    } catch (err) {
      this.logger.debug({ err, id: st.id }, 'end on a closing socket');
    }
  }

  private onWsMessage(ws: UwsWebSocket<ConnState>, message: ArrayBuffer, isBinary: boolean): void {
    const st = stateOf(ws);
    if (st.closed) return;
    const size = message.byteLength;
    st.awaitingPong = false; // any frame proves the peer alive
    if (size > this.options.maxFrameBytes) {
      this.logger.warn({ id: st.id, size, limit: this.options.maxFrameBytes }, 'frame too big');
      this.endSocket(ws, st, CLOSE_CODES.MESSAGE_TOO_BIG, 'Message too big');
      return;
    }
    const received = performance.now();
    this.metrics.messages++;
    this.metrics.bytesIn += size;
    st.binary = isBinary;

    const retryAfter = this.takeBudget(st, size, received);
    // Decode synchronously: the ArrayBuffer is only valid during this callback.
    const decoded = decodeRequest(message, isBinary);
    const type = decoded.ok ? decoded.request.type : decoded.type;
    const id = decoded.ok ? decoded.request.id : decoded.id;
    const rl = this.options.rateLimit;

    if (retryAfter > 0 && rl) {
      this.metrics.rateLimited++;
      st.rejectedStreak++;
      if (st.rejectedStreak > rl.closeAfterRejected) {
        this.logger.warn({ id: st.id, ip: st.ip }, 'closing abusive connection (sustained rate-limit excess)');
        this.endSocket(ws, st, CLOSE_CODES.POLICY_VIOLATION, 'Rate limit exceeded');
        return;
      }
      this.enqueueReady(ws, st, errorReply('rate_limited', ERROR_MESSAGES.rateLimited, {
        ...(type !== undefined ? { type } : {}),
        ...(id !== undefined ? { id } : {}),
        data: { retry_after_ms: Number.isFinite(retryAfter) ? retryAfter : 60_000 },
      }), isBinary, received, undefined);
      return;
    }
    st.rejectedStreak = 0;

    if (!decoded.ok) {
      const e = decoded.error;
      this.enqueueReady(ws, st, errorReply(e.code, e.message, {
        ...(type !== undefined ? { type } : {}),
        ...(id !== undefined ? { id } : {}),
        ...(e.data ? { data: e.data } : {}),
      }), isBinary, received, undefined);
      return;
    }
    const request = decoded.request;
    if (this._state !== 'running') {
      this.enqueueReady(ws, st, errorReply('unavailable', ERROR_MESSAGES.shuttingDown, { ...idType(request), data: { reason: 'shutting_down' } }), isBinary, received, request.type);
      return;
    }
    const handler = this.commands.get(request.type) ?? this.opts.onMessage;
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

  /**
   * Token buckets on messages and bytes: 0 when the frame is within budget (tokens taken),
   * else the ms until it would be (nothing taken).
   */
  private takeBudget(st: ConnState, size: number, now: number): number {
    const rl = this.options.rateLimit;
    if (!rl) return 0;
    const dt = now - st.tokensAt;
    if (dt > 0) {
      st.msgTokens = Math.min(rl.messagesBurst, st.msgTokens + (dt * rl.messagesPerSecond) / 1000);
      st.byteTokens = Math.min(rl.bytesBurst, st.byteTokens + (dt * rl.bytesPerSecond) / 1000);
      st.tokensAt = now;
    }
    const wait = (have: number, need: number, perSecond: number): number =>
      perSecond <= 0 ? Number.POSITIVE_INFINITY : Math.max(1, Math.ceil(((need - have) * 1000) / perSecond));
    if (st.msgTokens < 1) return wait(st.msgTokens, 1, rl.messagesPerSecond);
    const need = Math.min(size, rl.bytesBurst);
    if (st.byteTokens < need) return wait(st.byteTokens, need, rl.bytesPerSecond);
    st.msgTokens -= 1;
    st.byteTokens -= need;
    return 0;
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
    const correlationId = randomBytes(6).toString('hex');
    this.metrics.internalErrors++;
    this.logger.error({ err, correlationId, type: request.type, id: conn?.id }, 'handler failed');
    return errorReply('internal', ERROR_MESSAGES.internal(correlationId), {
      ...idType(request),
      data: { correlation_id: correlationId },
    });
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
      this.logger.warn({ id: st.id, buffered: ws.getBufferedAmount() }, 'send buffer full: reply cannot be queued');
      this.endSocket(ws, st, CLOSE_CODES.TRY_AGAIN_LATER, 'Send buffer full');
      return;
    }
    let payload: string | Uint8Array;
    try {
      payload = encodeMessage(reply, binary);
    } catch (err) {
      const correlationId = randomBytes(6).toString('hex');
      this.metrics.internalErrors++;
      this.logger.error({ err, correlationId, id: st.id, type }, 'reply encoding failed');
      payload = encodeMessage(
        errorReply('internal', ERROR_MESSAGES.internal(correlationId), {
          ...(reply.type !== undefined ? { type: reply.type } : {}),
          ...(reply.id !== undefined ? { id: reply.id } : {}),
          data: { correlation_id: correlationId },
        }),
        binary,
      );
    }
    let status = 0;
    if (this.inCallbackOf === ws) {
      status = ws.send(payload, binary, this.options.compression);
    } else {
      ws.cork(() => {
        status = ws.send(payload, binary, this.options.compression);
      });
    }
    if (status === 2) this.endSocket(ws, st, CLOSE_CODES.TRY_AGAIN_LATER, 'Send buffer full');
  }

  /** Event push with the slow-consumer policy: dropped (and counted) when the send buffer is over the bound. */
  sendEventTo(ws: UwsWebSocket<ConnState>, st: ConnState, message: unknown): boolean {
    if (st.closed) return false;
    if (ws.getBufferedAmount() > this.options.maxBufferedBytes) {
      st.congested = true;
      st.droppedEvents++;
      st.droppedSinceCongested++;
      this.metrics.droppedEvents++;
      return false;
    }
    const payload = typeof message === 'string' ? message : encodeMessage(message, st.binary);
    let status = 0;
    ws.cork(() => {
      status = ws.send(payload, typeof payload !== 'string', this.options.compression);
    });
    if (status === 2) {
      st.congested = true;
      st.droppedEvents++;
      st.droppedSinceCongested++;
      this.metrics.droppedEvents++;
      return false;
    }
    return true;
  }

  private onDrain(ws: UwsWebSocket<ConnState>): void {
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
  }

  // ------------------------------------------------------------ keep-alive

  private startSweep(): void {
    const o = this.options;
    const period = Math.max(10, Math.min(1000, Math.floor(Math.min(o.pingIntervalMs, o.pongTimeoutMs) / 4)));
    this.sweepTimer = setInterval(() => this.sweep(), period);
    this.sweepTimer.unref();
  }

  private sweep(): void {
    const now = performance.now();
    const o = this.options;
    for (const ws of this.registry.values()) {
      const st = stateOf(ws);
      if (st.closed) continue;
      if (st.awaitingPong) {
        if (now - st.pingSentAt >= o.pongTimeoutMs) {
          this.logger.info({ id: st.id }, 'pong timeout: dropping connection');
          st.closed = true;
          ws.close(); // hard cut: the peer is not answering, a close handshake would not finish either
        }
      } else if (now - st.lastPingAt >= o.pingIntervalMs) {
        st.lastPingAt = now;
        st.pingSentAt = now;
        st.awaitingPong = true;
        ws.cork(() => ws.ping());
      }
    }
  }

  // -------------------------------------------------------------- registry

  /** Ids of live connections. */
  connections(): string[] {
    return [...this.registry.keys()];
  }

  connectionCount(): number {
    return this.registry.size;
  }

  connection(id: string): Connection | undefined {
    return (this.registry.has(id) ? stateOf(this.registry.get(id)!).conn : null) ?? undefined;
  }

  /** Sends a message (object → encoded per the client's last frame kind) to one connection. */
  send(id: string, message: unknown): boolean {
    const ws = this.registry.get(id);
    if (!ws) return false;
    return this.sendEventTo(ws, stateOf(ws), message);
  }

  /** Broadcasts to every connection via uWS pub/sub (JSON text); returns the number of subscribers reached. */
  broadcast(message: unknown): number {
    return this.publish(BROADCAST_TOPIC, message);
  }

  /**
   * Publishes to a topic via uWS pub/sub (JSON text frame, or binary if `message` is bytes).
   * Slow consumers over maxBufferedBytes are skipped by uWS (the event is dropped for them).
   * Returns the number of subscribers at publish time.
   */
  publish(topic: string, message: unknown): number {
    if (!this.app || this._state === 'closed' || this._state === 'idle') return 0;
    const n = this.app.numSubscribers(topic);
    if (n === 0) return 0;
    const binary = message instanceof Uint8Array;
    const payload = typeof message === 'string' || binary ? (message as string | Uint8Array) : encodeMessage(message, false);
    this.app.publish(topic, payload, binary, this.options.compression);
    return n;
  }

  subscriberCount(topic: string): number {
    return this.app ? this.app.numSubscribers(topic) : 0;
  }

  /** `close()`: graceful shutdown (see shutdown()). */
  close(): Promise<void>;
  /** `close(id, code?, reason?)`: closes one connection with a close frame; false if unknown. */
  close(id: string, code?: number, reason?: string): boolean;
  close(id?: string, code: number = CLOSE_CODES.NORMAL, reason = ''): boolean | Promise<void> {
    if (id === undefined) return this.shutdown();
    const ws = this.registry.get(id);
    if (!ws) return false;
    this.endSocket(ws, stateOf(ws), code, reason);
    return true;
  }

  metricsSnapshot(): MetricsSnapshot {
    return this.metrics.snapshot();
  }

  // -------------------------------------------------------------- shutdown

  private wakeIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  private waitIdle(timeoutMs: number): Promise<boolean> {
    if (this.inFlight === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /**
   * Graceful shutdown: stop listening, refuse upgrades, answer in-flight requests
   * (new ones get `unavailable`), run beforeClose, close clients with 1001.
   * Idempotent; resolves when no connection remains.
   */
  shutdown(): Promise<void> {
    if (this.closePromise) return this.closePromise;
    this.closePromise = this.doShutdown();
    return this.closePromise;
  }

  private async doShutdown(): Promise<void> {
    if (this._state === 'idle') {
      this._state = 'closed';
      return;
    }
    this._state = 'closing';
    this.logger.info({ connections: this.registry.size, inFlight: this.inFlight }, 'shutting down');
    if (this.listenSocket) {
      uWS.us_listen_socket_close(this.listenSocket);
      this.listenSocket = null;
    }
    const budget = this.options.closeTimeoutMs;
    const drained = await this.waitIdle(budget);
    if (!drained) this.logger.warn({ inFlight: this.inFlight }, 'shutdown: in-flight requests did not finish in time');
    if (this.opts.beforeClose) {
      try {
        await this.opts.beforeClose();
      } catch (err) {
        this.logger.error({ err }, 'beforeClose hook failed');
      }
    }
    for (const ws of [...this.registry.values()]) {
      this.endSocket(ws, stateOf(ws), CLOSE_CODES.GOING_AWAY, 'Server shutting down');
    }
    // ws.end() runs the close handler synchronously, so the registry is empty now;
    // anything left (should not happen) is force-closed.
    for (const ws of [...this.registry.values()]) {
      try {
        ws.close();
      } catch {
        /* already closed */
      }
    }
    this.registry.clear();
    this.perIp.clear();
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    this._state = 'closed';
    this.logger.info('closed');
  }
}

function idType(request: Request): { type: string; id?: string | number } {
  return request.id !== undefined ? { type: request.type, id: request.id } : { type: request.type };
}

/** Creates a WsServer (not yet listening). */
export function createWsServer(options: WsServerOptions = {}): WsServer {
  return new WsServer(options);
}
