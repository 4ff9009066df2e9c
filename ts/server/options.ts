/**
 * The connection layer's options: what a caller may give (`WsServerOptions`), what the
 * server runs with (`ResolvedOptions`, every default filled in from protocol DEFAULTS), and
 * the one list of options every server shares (`SharedServerOptions`).
 */
import type { Logger } from 'pino';
import { DEFAULTS } from '../protocol/index.js';
import type { RateLimitOptions } from './rate-limit.js';
import type { CommandHandler } from './ws/dispatch.js';
import type { Connection } from './ws/connection.js';

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
  /**
   * `Host` names accepted besides localhost, 127.0.0.1, [::1] and `host` (DNS rebinding
   * guard, see host-check.ts); `*` accepts any.
   */
  allowedHosts?: readonly string[];
  /**
   * Which requests must carry an allowed `Host` (else 403): `all` (HTTP and upgrades), `http`
   * (plain HTTP routes), `off`. Default `http` when `host` is a loopback address, else `off`.
   */
  hostCheck?: 'all' | 'http' | 'off';
  pingIntervalMs?: number;
  pongTimeoutMs?: number;
  /** Budget for graceful shutdown (waiting for in-flight replies) before force-closing. */
  closeTimeoutMs?: number;
  maxFrameBytes?: number;
  maxBufferedBytes?: number;
  /**
   * Byte budget of one reply's memories: `list` and `retrieve` stop at it (a cursor or
   * `truncated: true` says so). Default 1 MiB; keep it well under maxBufferedBytes so a
   * client may have a few replies in flight.
   */
  maxReplyBytes?: number;
  maxQueuedRequests?: number;
  maxConnections?: number;
  maxConnectionsPerIp?: number;
  /** Token-bucket limits; `false` disables rate limiting. */
  rateLimit?: Partial<RateLimitOptions> | false;
  /** Shared-secret auth. */
  token?: string;
  /** HS256 JWT auth. */
  jwtSecret?: string;
  /** Refuse JWTs without `exp`. Default false. */
  jwtRequireExp?: boolean;
  /** Required JWT `aud` (one of these). */
  jwtAudience?: string | string[];
  /** Required JWT `iss` (one of these). */
  jwtIssuer?: string | string[];
  /** Clock skew allowed on JWT `exp`/`nbf`, seconds. Default 5. */
  jwtClockToleranceS?: number;
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

/** Where a server listens and who may talk to it: the options a control center passes on to the servers it starts. */
export const ENDPOINT_OPTIONS = [
  'host',
  'origins',
  'allowedHosts',
  'token',
  'jwtSecret',
  'jwtRequireExp',
  'jwtAudience',
  'jwtIssuer',
  'jwtClockToleranceS',
  'tlsCert',
  'tlsKey',
  'tlsPassphrase',
  'compression',
] as const satisfies ReadonlyArray<keyof WsServerOptions>;

/**
 * The options every server takes alike (memory, inference, control center), and that
 * `createServers()`, the control center and the CLI pass on to each of them.
 */
export const SHARED_SERVER_OPTIONS = [
  ...ENDPOINT_OPTIONS,
  'logger',
  'logLevel',
  'maxConnections',
  'maxConnectionsPerIp',
  'maxFrameBytes',
  'maxBufferedBytes',
  'maxReplyBytes',
  'rateLimit',
  'pingIntervalMs',
  'pongTimeoutMs',
  'closeTimeoutMs',
  'printListening',
] as const satisfies ReadonlyArray<keyof WsServerOptions>;

/** Options shared by every server (each can be overridden per server). */
export type SharedServerOptions = Pick<WsServerOptions, (typeof SHARED_SERVER_OPTIONS)[number]>;

/** The options a WsServer runs with: every default filled in. */
export interface ResolvedOptions {
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
  maxReplyBytes: number;
  maxQueuedRequests: number;
  maxConnections: number;
  maxConnectionsPerIp: number;
  rateLimit: RateLimitOptions | false;
  compression: boolean;
  pipelining: 'serial' | 'concurrent';
  overlapping: ReadonlySet<string>;
  printListening: boolean;
}

export function resolveOptions(options: WsServerOptions): ResolvedOptions {
  const rl = options.rateLimit;
  return {
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
    maxReplyBytes: options.maxReplyBytes ?? DEFAULTS.maxReplyBytes,
    maxQueuedRequests: options.maxQueuedRequests ?? DEFAULTS.maxQueuedRequests,
    maxConnections: options.maxConnections ?? DEFAULTS.maxConnections,
    maxConnectionsPerIp: options.maxConnectionsPerIp ?? DEFAULTS.maxConnectionsPerIp,
    rateLimit: rl === false ? false : { ...DEFAULTS.rateLimit, ...(rl ?? {}) },
    compression: options.compression ?? DEFAULTS.compression,
    pipelining: options.pipelining ?? 'serial',
    overlapping: new Set(options.overlapping ?? []),
    printListening: options.printListening ?? true,
  };
}
