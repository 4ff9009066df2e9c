/**
 * A server's life: idle → running (listening on the first free port of its range) →
 * closing → closed. Shutdown stops listening and refuses new upgrades, answers the requests
 * in flight (new ones get `unavailable`) within the close budget, runs `beforeClose`,
 * closes every client with 1001, and resolves when none remains.
 */
import type { Logger } from 'pino';
import { CLOSE_CODES } from '../protocol/index.js';
import { processConnectionCap } from './fd-limit.js';
import type { ResolvedOptions } from './options.js';
import type { ConnectionRegistry } from './pubsub.js';
import { LISTEN_EXCLUSIVE, uWS, type TemplatedApp, type us_listen_socket } from './uws.js';
import { stateOf } from './ws/connection.js';
import type { Dispatcher } from './ws/dispatch.js';
import { startKeepAlive } from './ws/keepalive.js';

export type ServerState = 'idle' | 'running' | 'closing' | 'closed';

export interface ListenInfo {
  host: string;
  port: number;
  url: string;
}

/** Listens on `port`, or the first free one up to `port + portRange` (exclusive ports: no SO_REUSEPORT sharing). */
async function listenOnFreePort(app: TemplatedApp, host: string, port: number, portRange: number): Promise<us_listen_socket> {
  const bindHost = host === 'localhost' ? '127.0.0.1' : host;
  const last = port === 0 ? 0 : Math.min(65535, port + portRange);
  for (let p = port; p <= last; p++) {
    const ls = await new Promise<us_listen_socket | false>((resolve) => {
      // (host, port, options, cb): the typings lack the options overload.
      (app.listen as unknown as (h: string, p: number, o: number, cb: (s: us_listen_socket | false) => void) => void)(
        bindHost,
        p,
        LISTEN_EXCLUSIVE,
        resolve,
      );
    });
    if (ls) return ls;
  }
  if (portRange > 0) throw new Error('No available ports found');
  throw new Error(`Could not listen on ${host}:${port} (address in use or not permitted)`);
}

export interface LifecycleParts {
  readonly options: Readonly<ResolvedOptions>;
  readonly logger: Logger;
  readonly dispatcher: Dispatcher;
  readonly registry: ConnectionRegistry;
  /** Serving wss:// (for the URL). */
  readonly tls: boolean;
  beforeClose?: (() => void | Promise<void>) | undefined;
  /** After every connection was closed. */
  released(): void;
}

export class Lifecycle {
  private _state: ServerState = 'idle';
  private _port = 0;
  private listenSocket: us_listen_socket | null = null;
  private sweepTimer: ReturnType<typeof setInterval> | null = null;
  private closePromise: Promise<void> | null = null;

  constructor(private readonly parts: LifecycleParts) {}

  get state(): ServerState {
    return this._state;
  }

  /** The bound port (after listen). */
  get port(): number {
    return this._port;
  }

  /** idle → running: binds `app` (built by the caller), starts the keep-alive sweep. */
  async listen(app: TemplatedApp): Promise<ListenInfo> {
    if (this._state !== 'idle') throw new Error(`cannot listen: server is ${this._state}`);
    const { options, logger, dispatcher, registry } = this.parts;
    const { host, port, portRange } = options;
    const ls = await listenOnFreePort(app, host, port, portRange);
    this.listenSocket = ls;
    this._port = uWS.us_socket_local_port(ls as unknown as Parameters<typeof uWS.us_socket_local_port>[0]);
    this._state = 'running';
    dispatcher.accepting = true;
    registry.app = app;
    this.sweepTimer = startKeepAlive(registry, options, logger);
    const scheme = this.parts.tls ? 'wss' : 'ws';
    const url = `${scheme}://${host.includes(':') ? `[${host}]` : host}:${this._port}`;
    logger.info({ host, port: this._port }, 'listening');
    const fd = processConnectionCap();
    if (fd.maxConnections < options.maxConnections) {
      logger.info(
        { maxConnections: fd.maxConnections, configured: options.maxConnections, openFileLimit: fd.openFileLimit, openFiles: fd.openFiles },
        `connection limit capped at ${fd.maxConnections} by the open-file limit (${fd.openFileLimit}); raise it with ulimit -n`,
      );
    }
    if (options.printListening) process.stdout.write(`WebSocket server listening on ${host}:${this._port}\n`);
    return { host, port: this._port, url };
  }

  /** Graceful shutdown (see the top of this file). Idempotent; resolves when no connection remains. */
  shutdown(): Promise<void> {
    this.closePromise ??= this.runShutdown();
    return this.closePromise;
  }

  private async runShutdown(): Promise<void> {
    if (this._state === 'idle') {
      this._state = 'closed';
      return;
    }
    const { options, logger, dispatcher, registry } = this.parts;
    this._state = 'closing';
    dispatcher.accepting = false;
    logger.info({ connections: registry.size, inFlight: dispatcher.pending }, 'shutting down');
    if (this.listenSocket) {
      uWS.us_listen_socket_close(this.listenSocket);
      this.listenSocket = null;
    }
    const drained = await dispatcher.waitIdle(options.closeTimeoutMs);
    if (!drained) logger.warn({ inFlight: dispatcher.pending }, 'shutdown: in-flight requests did not finish in time');
    if (this.parts.beforeClose) {
      try {
        await this.parts.beforeClose();
      } catch (err) {
        logger.error({ err }, 'beforeClose hook failed');
      }
    }
    for (const ws of [...registry.sockets()]) {
      dispatcher.endSocket(ws, stateOf(ws), CLOSE_CODES.GOING_AWAY, 'Server shutting down');
    }
    // ws.end() runs the close handler synchronously, so the registry is empty now;
    // anything left (should not happen) is force-closed.
    for (const ws of [...registry.sockets()]) {
      try {
        ws.close();
      } catch {
        /* already closed */
      }
    }
    registry.clear();
    this.parts.released();
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    this._state = 'closed';
    registry.app = null;
    logger.info('closed');
  }
}
