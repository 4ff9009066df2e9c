/**
 * What lets a command handler serve an HTTP request as it serves a WebSocket frame: an
 * `HttpCaller` standing in for the Connection (same auth claims and namespace rule; no
 * events: HTTP has no push), and `HttpRateLimiter`, the WebSocket's token buckets
 * (rate-limit.ts, same limits) kept per client address, since HTTP requests of one client
 * may come over many short connections.
 */
import { allowsNamespace, type AuthClaims } from '../auth.js';
import { takeBudget, type RateBudget, type RateLimitOptions } from '../rate-limit.js';
import type { Connection } from '../ws/connection.js';

let callerCounter = 0;

/** The public surface of a Connection, as command handlers see it. */
type ConnectionSurface = { [K in keyof Connection]: Connection[K] };

/**
 * One request that is not a WebSocket frame (an HTTP request, an MCP tool call) as the
 * caller of a command.
 */
export class HttpCaller implements ConnectionSurface {
  readonly id: string;
  readonly path: string;
  readonly openedAt = Date.now();
  readonly binary = false;
  readonly droppedEvents = 0;
  private _locals: Map<string, unknown> | null = null;

  constructor(
    readonly ip: string,
    readonly origin: string,
    readonly auth: AuthClaims,
    path: string,
    private readonly isAborted: () => boolean,
    /** Names the caller in logs: `http-…`, `mcp-…`. */
    kind = 'http',
  ) {
    this.path = path;
    this.id = `${kind}-${(++callerCounter).toString(36)}`;
  }

  get locals(): Map<string, unknown> {
    return (this._locals ??= new Map<string, unknown>());
  }
  /** True once the client went away: handlers may skip work nobody will read (as for a closed socket). */
  get closed(): boolean {
    return this.isAborted();
  }
  allowsNamespace(namespace: string): boolean {
    return allowsNamespace(this.auth, namespace);
  }
  send(): boolean {
    return false;
  }
  emit(): boolean {
    return false;
  }
  subscribe(): boolean {
    return false;
  }
  unsubscribe(): boolean {
    return false;
  }
  isSubscribed(): boolean {
    return false;
  }
  topics(): string[] {
    return [];
  }
  bufferedAmount(): number {
    return 0;
  }
  close(): void {
    // An HTTP request ends with its response.
  }

  /**
   * The caller as the Connection type of the command table. Sound: it has every public
   * member of Connection (checked by `implements` above), and handlers can reach no other.
   */
  asConnection(): Connection {
    return this as unknown as Connection;
  }
}

interface ClientBudget extends RateBudget {
  lastSeen: number;
}

/** Entries idle this long are dropped once the table is large (their buckets have refilled anyway). */
const IDLE_MS = 60_000;
const SWEEP_AT = 10_000;

/** Token buckets per client address, with the WebSocket's limits. */
export class HttpRateLimiter {
  private readonly clients = new Map<string, ClientBudget>();

  constructor(private readonly limits: RateLimitOptions) {}

  /** Takes one request of `size` bytes from `ip`'s budget: 0 when within it, else ms until it would be. */
  take(ip: string, size: number, now: number = performance.now()): number {
    let b = this.clients.get(ip);
    if (!b) {
      if (this.clients.size >= SWEEP_AT) this.sweep(now);
      b = {
        msgTokens: this.limits.messagesBurst,
        byteTokens: this.limits.bytesBurst,
        tokensAt: now,
        lastSeen: now,
      };
      this.clients.set(ip, b);
    }
    b.lastSeen = now;
    return takeBudget(b, this.limits, size, now);
  }

  get size(): number {
    return this.clients.size;
  }

  private sweep(now: number): void {
    for (const [ip, b] of this.clients) if (now - b.lastSeen > IDLE_MS) this.clients.delete(ip);
  }
}

const limiters = new WeakMap<object, HttpRateLimiter | null>();

/**
 * The one per-address limiter of a server's HTTP routes (the `/v1` API and `/mcp` share a
 * client's budget, as the commands of one WebSocket connection do); null without limits.
 */
export function httpLimiterOf(server: { readonly options: { readonly rateLimit?: RateLimitOptions | false | null } }): HttpRateLimiter | null {
  let l = limiters.get(server);
  if (l === undefined) {
    const limits = server.options.rateLimit;
    l = limits ? new HttpRateLimiter(limits) : null;
    limiters.set(server, l);
  }
  return l;
}
