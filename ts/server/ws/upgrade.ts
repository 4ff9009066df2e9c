/**
 * Who may connect: at the HTTP upgrade the server state, the browser Origin and the
 * token/JWT are checked (refusals are plain HTTP answers: 503, 403, 401); at open the
 * connection limits (total, per client address, and the process's share of its open-file
 * limit: ts/server/fd-limit.ts) are, and a refused socket is closed at once with 1013 (1001
 * while shutting down). Admitted sockets are registered, and released on close; one made
 * with an expiring JWT is closed with 1008 when the token expires.
 */
import type { Logger } from 'pino';
import { CLOSE_CODES } from '../../protocol/index.js';
import { authenticate, extractToken, type AuthOptions, type AuthResult } from '../auth.js';
import { writeHttp } from '../http/response.js';
import type { ServerMetrics } from '../metrics.js';
import { processConnectionCap, processSockets } from '../fd-limit.js';
import type { ResolvedOptions } from '../options.js';
import type { OriginPolicy } from '../origin.js';
import type { HostPolicy } from '../host-check.js';
import type { ConnectionRegistry } from '../pubsub.js';
import type { UwsHttpRequest, UwsHttpResponse, UwsWebSocket } from '../uws.js';
import { Connection, nextConnectionId, stateOf, type ConnState, type ConnectionHost } from './connection.js';

const textOf = (ab: ArrayBuffer): string => Buffer.from(ab).toString('utf8');

const MAX_TIMER_MS = 2 ** 31 - 1;

/** What the upgrade keeps of its request (uWS's request is only valid during the callback). */
interface UpgradeHead {
  origin: string;
  key: string;
  protocol: string;
  extensions: string;
  ip: string;
  corsOrigin: string | null;
  path: string;
}

export interface AdmissionContext {
  readonly options: Readonly<ResolvedOptions>;
  readonly origins: OriginPolicy;
  /** `Host` allow-list for upgrades (DNS rebinding guard); null: not checked. */
  readonly hosts: HostPolicy | null;
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
  /** Per connection made with an expiring JWT: the timer that ends it at expiry. */
  private readonly expiryTimers = new Map<string, NodeJS.Timeout>();

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
    const { origins, logger } = this.ctx;
    // Everything, the JWT check included, happens inside this callback (auth.ts says why);
    // onAborted is registered as uWS requires of a response that may be answered.
    const abort = { aborted: false };
    res.onAborted(() => {
      abort.aborted = true;
    });
    const origin = req.getHeader('origin');
    const head: UpgradeHead = {
      origin,
      key: req.getHeader('sec-websocket-key'),
      protocol: (req.getHeader('sec-websocket-protocol') ?? '').split(',')[0]?.trim() ?? '',
      extensions: req.getHeader('sec-websocket-extensions'),
      ip: this.remoteIp(res),
      corsOrigin: origin && origins.allows(origin) ? origin : null,
      path,
    };

    if (!this.ctx.running()) {
      writeHttp(res, head.corsOrigin, 503, {}, { error: 'Server is shutting down' });
      return;
    }
    if (this.ctx.hosts && !this.ctx.hosts.allows(req.getHeader('host'))) {
      logger.warn({ ip: head.ip, host: req.getHeader('host') }, 'upgrade refused: host not allowed');
      writeHttp(res, null, 403, {}, { error: 'Host not allowed' });
      return;
    }
    if (!origins.allows(origin)) {
      logger.warn({ ip: head.ip, origin }, 'upgrade refused: origin not allowed');
      writeHttp(res, null, 403, {}, { error: 'Origin not allowed' });
      return;
    }
    // Synchronous (auth.ts): the upgrade completes inside this callback.
    const auth = authenticate(this.ctx.auth, extractToken(req.getHeader('authorization'), req.getQuery() ?? ''));
    this.admit(res, context, head, auth, abort);
  }

  /** Completes (or refuses with 401) an upgrade once its credentials were checked. */
  private admit(res: UwsHttpResponse, context: unknown, head: UpgradeHead, auth: AuthResult, abort: { aborted: boolean }): void {
    if (abort.aborted) return;
    const { options, logger } = this.ctx;
    if (!auth.ok) {
      logger.warn({ ip: head.ip, reason: auth.reason }, 'upgrade refused: unauthorized');
      writeHttp(res, head.corsOrigin, 401, {}, { error: `Unauthorized: ${auth.reason}` });
      return;
    }
    if (!this.ctx.running()) {
      writeHttp(res, head.corsOrigin, 503, {}, { error: 'Server is shutting down' });
      return;
    }
    const now = performance.now();
    const rl = options.rateLimit;
    const st: ConnState = {
      id: nextConnectionId(),
      ip: head.ip,
      origin: head.origin,
      path: head.path,
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
      rejectedSince: now,
      rejected: 0,
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
      res.upgrade({ st } as unknown as ConnState, head.key, head.protocol, head.extensions, context as Parameters<UwsHttpResponse['upgrade']>[4]);
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
    else if (processSockets.open >= processConnectionCap().maxConnections) st.rejectReason = 'Too many connections (open-file limit)';
    else if ((this.perIp.get(st.ip) ?? 0) >= o.maxConnectionsPerIp) st.rejectReason = 'Too many connections from this address';
    if (st.rejectReason) {
      metrics.connectionsRejected++;
      logger.warn({ id: st.id, ip: st.ip, reason: st.rejectReason }, 'connection refused');
      ws.end(running ? CLOSE_CODES.TRY_AGAIN_LATER : CLOSE_CODES.GOING_AWAY, st.rejectReason);
      return;
    }
    st.registered = true;
    processSockets.open++;
    registry.add(st, ws);
    this.perIp.set(st.ip, (this.perIp.get(st.ip) ?? 0) + 1);
    metrics.connections = registry.size;
    metrics.connectionsOpened++;
    st.conn = new Connection(this.ctx.host, ws, st);
    if (st.auth.validUntilMs !== undefined) this.armExpiry(ws, st);
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
    const timer = this.expiryTimers.get(st.id);
    if (timer) {
      clearTimeout(timer);
      this.expiryTimers.delete(st.id);
    }
    if (!st.registered) return;
    st.registered = false;
    processSockets.open--;
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

  /**
   * Ends a connection with 1008 `Token expired` once its JWT would no longer be accepted
   * (a token checked only at the upgrade would otherwise work for as long as the socket lives).
   */
  private armExpiry(ws: UwsWebSocket<ConnState>, st: ConnState): void {
    const left = (st.auth.validUntilMs ?? 0) - Date.now();
    if (left <= 0) {
      this.expiryTimers.delete(st.id);
      this.ctx.logger.info({ id: st.id }, 'token expired: closing connection');
      this.ctx.host.endSocket(ws, st, CLOSE_CODES.POLICY_VIOLATION, 'Token expired');
      return;
    }
    // setTimeout fires at once beyond 2^31-1 ms (~24.8 days): far expiries re-arm in steps.
    const timer = setTimeout(() => this.armExpiry(ws, st), Math.min(left, MAX_TIMER_MS));
    timer.unref();
    this.expiryTimers.set(st.id, timer);
  }

  /** Forgets the per-address counts (after shutdown closed every connection). */
  clear(): void {
    this.perIp.clear();
    for (const t of this.expiryTimers.values()) clearTimeout(t);
    this.expiryTimers.clear();
  }
}
