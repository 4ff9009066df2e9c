/**
 * The connection layer shared by the memory server, the inference server and the control
 * center: a uWebSockets.js app whose parts live one role per file (see docs/connection.md
 * and docs/architecture.md):
 *
 * - ws/upgrade.ts     who may connect: origin, token/JWT, connection limits
 * - ws/connection.ts  per-connection state (uWS user data) and the handlers' Connection
 * - ws/dispatch.ts    the message path: limits, decode, ordered dispatch, error boundary, replies, events
 * - ws/keepalive.ts   ping/pong sweep
 * - rate-limit.ts     the token buckets
 * - pubsub.ts         live connections by id, topics, broadcast
 * - http/             plain HTTP routes and CORS
 * - lifecycle.ts      listen, RUNNING → CLOSING → CLOSED shutdown
 *
 * This file wires them into one `WsServer` and holds its public API.
 */
import { pino, type Logger } from 'pino';
import { CLOSE_CODES, DEFAULTS, PROTOCOL_VERSION } from '../protocol/index.js';
import { HttpRouter, type HttpHandler, type HttpMethod, type HttpRouteOptions } from './http/router.js';
import { Lifecycle, type ListenInfo, type ServerState } from './lifecycle.js';
import { ServerMetrics, type MetricsSnapshot } from './metrics.js';
import { resolveOptions, type ResolvedOptions, type ServiceInfo, type WsServerOptions } from './options.js';
import { OriginPolicy } from './origin.js';
import { HostPolicy, defaultHostCheck } from './host-check.js';
import { ConnectionRegistry } from './pubsub.js';
import { uWS, type TemplatedApp, type UwsWebSocket } from './uws.js';
import { BROADCAST_TOPIC, stateOf, type Connection, type ConnState } from './ws/connection.js';
import { Dispatcher, type CommandHandler } from './ws/dispatch.js';
import { Admission } from './ws/upgrade.js';

export type { ServerState, ListenInfo } from './lifecycle.js';
export type { ServiceInfo, WsServerOptions, SharedServerOptions } from './options.js';
export { SHARED_SERVER_OPTIONS, ENDPOINT_OPTIONS } from './options.js';
export type { RateLimitOptions } from './rate-limit.js';
export type { HttpMethod, HttpRequestInfo, HttpReply, HttpHandler, HttpRouteOptions } from './http/router.js';
export { Connection, BROADCAST_TOPIC, type ConnState } from './ws/connection.js';
export type { CommandHandler } from './ws/dispatch.js';

export class WsServer {
  readonly options: Readonly<ResolvedOptions>;
  readonly metrics = new ServerMetrics();
  readonly logger: Logger;
  private readonly opts: WsServerOptions;
  private readonly origins: OriginPolicy;
  private readonly commands: Map<string, CommandHandler>;
  private readonly registry: ConnectionRegistry;
  private readonly dispatcher: Dispatcher;
  private readonly admission: Admission;
  private readonly router: HttpRouter;
  private readonly lifecycle: Lifecycle;

  constructor(options: WsServerOptions = {}) {
    this.opts = options;
    this.options = resolveOptions(options);
    this.logger =
      options.logger ??
      pino({ name: this.options.name, level: options.logLevel ?? DEFAULTS.logLevel });
    this.origins = new OriginPolicy(options.origins ?? DEFAULTS.origins);
    this.commands = new Map(Object.entries(options.commands ?? {}));
    this.registry = new ConnectionRegistry(this.options.compression);
    const hostCheck = options.hostCheck ?? defaultHostCheck(this.options.host);
    const hosts = hostCheck === 'off' ? null : new HostPolicy(this.options.host, options.allowedHosts);
    this.dispatcher = new Dispatcher(this.options, this.metrics, this.logger, this.commands, options.onMessage);
    this.admission = new Admission({
      options: this.options,
      origins: this.origins,
      hosts: hostCheck === 'all' ? hosts : null,
      auth: options,
      logger: this.logger,
      metrics: this.metrics,
      registry: this.registry,
      host: this.dispatcher,
      running: () => this.lifecycle.state === 'running',
      onOpen: options.onOpen,
      onClose: options.onClose,
    });
    this.router = new HttpRouter({
      origins: this.origins,
      hosts,
      auth: options,
      maxBodyBytes: this.options.maxFrameBytes,
      logger: this.logger,
      remoteIp: (res) => this.admission.remoteIp(res),
    });
    this.lifecycle = new Lifecycle({
      options: this.options,
      logger: this.logger,
      dispatcher: this.dispatcher,
      registry: this.registry,
      tls: Boolean(options.tlsCert),
      beforeClose: options.beforeClose,
      released: () => this.admission.clear(),
    });
  }

  get state(): ServerState {
    return this.lifecycle.state;
  }

  /** The bound port (after listen). */
  get port(): number {
    return this.lifecycle.port;
  }

  /** Registers (or replaces) a command handler. */
  command(type: string, handler: CommandHandler): this {
    this.commands.set(type, handler);
    return this;
  }

  /** Registers an HTTP route; must be called before listen(). Routes registered here win over the defaults. */
  http(method: HttpMethod, pattern: string, handler: HttpHandler, options: HttpRouteOptions = {}): this {
    if (this.state !== 'idle') throw new Error('http routes must be registered before listen()');
    this.router.add(method, pattern, handler, options);
    return this;
  }

  /**
   * Marks a request served by another transport (HTTP) as in flight until the returned function
   * is called: shutdown answers it before closing (as it does WebSocket requests).
   */
  beginRequest(): () => void {
    return this.dispatcher.begin();
  }

  async listen(): Promise<ListenInfo> {
    if (this.state !== 'idle') throw new Error(`cannot listen: server is ${this.state}`);
    return this.lifecycle.listen(this.createApp());
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
    const { admission, dispatcher } = this;
    for (const path of o.wsPaths) {
      app.ws<ConnState>(path, {
        // Above the limit so that over-limit frames reach message() and get 1009
        // (uWS itself closes frames over maxPayloadLength with 1006).
        maxPayloadLength: Math.max(o.maxFrameBytes * 2, o.maxFrameBytes + 64 * 1024),
        // Twice our own bound (checked in JS before every reply and event): the reply that
        // fills the buffer may take it past the bound, and the 1013 close frame that follows
        // must still be queued — uWS drops any send, the close frame included, over this.
        // Pub/sub subscribers are skipped over it too.
        maxBackpressure: o.maxBufferedBytes * 2,
        closeOnBackpressureLimit: 0,
        // Keep-alive is our JS sweep (ws/keepalive.ts).
        idleTimeout: 0,
        sendPingsAutomatically: false,
        compression: o.compression ? uWS.SHARED_COMPRESSOR : uWS.DISABLED,
        upgrade: (res, req, context) => admission.upgrade(res, req, context, path),
        open: (ws) => admission.open(ws),
        message: dispatcher.onMessage,
        drain: dispatcher.onDrain,
        pong: (ws) => {
          stateOf(ws).awaitingPong = false;
        },
        close: (ws, code, message) => {
          // uWS cuts a frame over its own maxPayloadLength (2 × maxFrameBytes) without a close
          // frame: the client sees only 1006, so the operator at least learns which limit.
          if (code === 1006 && message.byteLength > 0 && Buffer.from(message).toString() === 'Received too big message') {
            this.logger.warn(
              { id: stateOf(ws).id, limit: o.maxFrameBytes },
              'frame over twice maxFrameBytes: connection dropped (1006); raise maxFrameBytes / --max-frame-bytes if such frames are expected',
            );
          }
          admission.close(ws, code);
        },
      });
    }
    const root = this.opts.serviceInfo === false ? null : (): { body: ServiceInfo } => ({ body: this.serviceInfo() });
    this.router.attach(app, root);
    return app;
  }

  private serviceInfo(): ServiceInfo {
    const si = this.opts.serviceInfo;
    const base: ServiceInfo =
      typeof si === 'function' ? si() : si && typeof si === 'object' ? si : { service: this.options.name, version: '0.0.0' };
    return {
      ...base,
      protocol: base.protocol ?? PROTOCOL_VERSION,
      status: base.status ?? (this.state === 'running' ? 'ok' : this.state),
    };
  }

  /** Ends a socket with a close frame, once; never touches a closed socket. */
  endSocket(ws: UwsWebSocket<ConnState>, st: ConnState, code: number, reason: string): void {
    this.dispatcher.endSocket(ws, st, code, reason);
  }

  /** Event push with the slow-consumer policy: dropped (and counted) when the send buffer is over the bound. */
  sendEventTo(ws: UwsWebSocket<ConnState>, st: ConnState, message: unknown): boolean {
    return this.dispatcher.sendEventTo(ws, st, message);
  }

  // ------------------------------------------------------------ connections

  /** Ids of live connections. */
  connections(): string[] {
    return this.registry.ids();
  }

  connectionCount(): number {
    return this.registry.size;
  }

  connection(id: string): Connection | undefined {
    return this.registry.connection(id);
  }

  /** Sends a message (object → encoded per the client's last frame kind) to one connection. */
  send(id: string, message: unknown): boolean {
    const ws = this.registry.socket(id);
    if (!ws) return false;
    return this.dispatcher.sendEventTo(ws, stateOf(ws), message);
  }

  /** Broadcasts to every connection via uWS pub/sub (JSON text); returns the number of subscribers reached. */
  broadcast(message: unknown): number {
    return this.registry.publish(BROADCAST_TOPIC, message);
  }

  /**
   * Publishes to a topic via uWS pub/sub (JSON text frame, or binary if `message` is bytes).
   * Slow consumers over maxBufferedBytes are skipped by uWS (the event is dropped for them).
   * Returns the number of subscribers at publish time.
   */
  publish(topic: string, message: unknown): number {
    return this.registry.publish(topic, message);
  }

  subscriberCount(topic: string): number {
    return this.registry.subscriberCount(topic);
  }

  /** `close()`: graceful shutdown (see shutdown()). */
  close(): Promise<void>;
  /** `close(id, code?, reason?)`: closes one connection with a close frame; false if unknown. */
  close(id: string, code?: number, reason?: string): boolean;
  close(id?: string, code: number = CLOSE_CODES.NORMAL, reason = ''): boolean | Promise<void> {
    if (id === undefined) return this.shutdown();
    const ws = this.registry.socket(id);
    if (!ws) return false;
    this.endSocket(ws, stateOf(ws), code, reason);
    return true;
  }

  metricsSnapshot(): MetricsSnapshot {
    return this.metrics.snapshot();
  }

  /**
   * Graceful shutdown: stop listening, refuse upgrades, answer in-flight requests
   * (new ones get `unavailable`), run beforeClose, close clients with 1001.
   * Idempotent; resolves when no connection remains.
   */
  shutdown(): Promise<void> {
    return this.lifecycle.shutdown();
  }
}

/** Creates a WsServer (not yet listening). */
export function createWsServer(options: WsServerOptions = {}): WsServer {
  return new WsServer(options);
}
