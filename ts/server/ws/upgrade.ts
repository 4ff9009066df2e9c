/**
 * Who may connect: at the HTTP upgrade the server state, the browser Origin and the
 * token/JWT are checked (refusals are plain HTTP answers: 503, 403, 401); at open the
 * connection limits (total and per client address) are, and a refused socket is closed at
 * once with 1013 (1001 while shutting down). Admitted sockets are registered, and released
 * on close.
 */
import type { Logger } from 'pino';
import { CLOSE_CODES } from '../../protocol/index.js';
import { authenticate, extractToken, type AuthOptions } from '../auth.js';
import { writeHttp } from '../http/response.js';
import type { ServerMetrics } from '../metrics.js';
import type { ResolvedOptions } from '../options.js';
import type { OriginPolicy } from '../origin.js';
import type { ConnectionRegistry } from '../pubsub.js';
import type { UwsHttpRequest, UwsHttpResponse, UwsWebSocket } from '../uws.js';
import { Connection, nextConnectionId, stateOf, type ConnState, type ConnectionHost } from './connection.js';

const textOf = (ab: ArrayBuffer): string => Buffer.from(ab).toString('utf8');

export interface AdmissionContext {
  readonly options: Readonly<ResolvedOptions>;
  readonly origins: OriginPolicy;
  readonly auth: AuthOptions;
  readonly logger: Logger;
  readonly metrics: ServerMetrics;
  readonly registry: ConnectionRegistry;
  /** Pushes events to and ends the sockets of the Connections made here. */
  readonly host: ConnectionHost;
  /** Whether the server is running (not yet listening, or shutting down, refuses). */
  running(): boolean;
  onOpen?: ((conn: Connection) => void) | undefined;
  onClose?: ((conn: Connection, code: number) => void) | undefined;
}

export class Admission {
  private readonly perIp = new Map<string, number>();
  /** One string per client address (connections from one address share it). */
  private readonly ipNames = new Map<string, string>();

  constructor(private readonly ctx: AdmissionContext) {}

  /** The client address of a request, interned. */
  remoteIp(res: UwsHttpResponse): string {
    const ip = textOf(res.getRemoteAddressAsText());
    const known = this.ipNames.get(ip);
    if (known !== undefined) return known;
    if (this.ipNames.size < 100_000) this.ipNames.set(ip, ip);
    return ip;
  }

  /** The uWS `upgrade` callback of the WebSocket path `path`. */
  upgrade(res: UwsHttpResponse, req: UwsHttpRequest, context: unknown, path: string): void {
    const { options, origins, logger } = this.ctx;
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
    const ip = this.remoteIp(res);
    const corsOrigin = origin && origins.allows(origin) ? origin : null;

    if (!this.ctx.running()) {
      writeHttp(res, corsOrigin, 503, {}, { error: 'Server is shutting down' });
      return;
    }
    if (!origins.allows(origin)) {
      logger.warn({ ip, origin }, 'upgrade refused: origin not allowed');
      writeHttp(res, null, 403, {}, { error: 'Origin not allowed' });
      return;
    }
    const auth = authenticate(this.ctx.auth, extractToken(authorization, query));
    if (!auth.ok) {
      logger.warn({ ip, reason: auth.reason }, 'upgrade refused: unauthorized');
      writeHttp(res, corsOrigin, 401, {}, { error: `Unauthorized: ${auth.reason}` });
      return;
    }
    if (aborted) return;
    const now = performance.now();
    const rl = options.rateLimit;
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

  /** The uWS `open` callback: connection limits, then registration. */
  open(ws: UwsWebSocket<ConnState>): void {
    const { options: o, logger, metrics, registry } = this.ctx;
    const st = stateOf(ws);
    const running = this.ctx.running();
    // Limits are checked at open: the upgrade completes and the socket is closed at once with 1013.
    if (!running) st.rejectReason = 'Server is shutting down';
    else if (registry.size >= o.maxConnections) st.rejectReason = 'Too many connections';
    else if ((this.perIp.get(st.ip) ?? 0) >= o.maxConnectionsPerIp) st.rejectReason = 'Too many connections from this address';
    if (st.rejectReason) {
      metrics.connectionsRejected++;
      logger.warn({ id: st.id, ip: st.ip, reason: st.rejectReason }, 'connection refused');
      ws.end(running ? CLOSE_CODES.TRY_AGAIN_LATER : CLOSE_CODES.GOING_AWAY, st.rejectReason);
      return;
    }
    st.registered = true;
    registry.add(st, ws);
    this.perIp.set(st.ip, (this.perIp.get(st.ip) ?? 0) + 1);
    metrics.connections = registry.size;
    metrics.connectionsOpened++;
    st.conn = new Connection(this.ctx.host, ws, st);
    logger.info({ id: st.id, remoteAddress: st.ip, origin: st.origin || undefined, path: st.path }, 'connection established');
    if (this.ctx.onOpen) {
      try {
        this.ctx.onOpen(st.conn);
      } catch (err) {
        logger.error({ err, id: st.id }, 'onOpen hook failed');
      }
    }
  }

  /** The uWS `close` callback: unregisters an admitted socket. */
  close(ws: UwsWebSocket<ConnState>, code: number): void {
    const { logger, metrics, registry } = this.ctx;
    const st = stateOf(ws);
    st.closed = true;
    if (!st.registered) return;
    st.registered = false;
    registry.delete(st.id);
    const n = (this.perIp.get(st.ip) ?? 1) - 1;
    if (n <= 0) {
      this.perIp.delete(st.ip);
      this.ipNames.delete(st.ip);
    } else this.perIp.set(st.ip, n);
    metrics.connections = registry.size;
    logger.info({ id: st.id, code }, 'connection closed');
    if (this.ctx.onClose && st.conn) {
      try {
        this.ctx.onClose(st.conn, code);
      } catch (err) {
        logger.error({ err, id: st.id }, 'onClose hook failed');
      }
    }
    logger.info({ id: st.id, queued: st.queued, droppedEvents: st.droppedEvents }, 'connection cleanup');
  }

  /** Forgets the per-address counts (after shutdown closed every connection). */
  clear(): void {
    this.perIp.clear();
  }
}
