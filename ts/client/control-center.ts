/**
 * ControlCenterClient: status messages (one on connect, then every 2 s and on every
 * component state change), a `subscribe` filter that is re-sent after every reconnect,
 * `status()` on demand, and REST helpers over `fetch`. The message types are
 * protocol/control.ts (type-only imports: nothing of the server is bundled).
 * Reconnect: from 3 s doubling, capped at 60 s, 10 tries.
 */
import type {
  ComponentActionReply,
  ComponentName,
  ComponentState,
  ComponentStatus,
  ComponentsReply,
  CsrfReply,
  HealthReply,
  MetricKey,
  StatusMessage,
  StatusMetrics,
  StatusSubscribeData,
  StatusSubscribeReply,
} from '../protocol/control.js';
import { BaseClient, type ConnectionEvents, type ConnectionOptions } from './connection.js';
import { ClientError } from './errors.js';

/** = CSRF_HEADER of protocol/control.ts (kept literal: only types are imported from there). */
const CSRF_HEADER = 'X-CSRF-Token';

export type { ComponentName, ComponentState, ComponentStatus, StatusMessage, StatusMetrics as SystemMetrics, MetricKey, ComponentActionReply };

/** Which parts of the status message to receive. */
export type StatusFilter = StatusSubscribeData;

/** The control center's answer to `subscribe`: the filter it applies (null = all). */
export type SubscribeStatusReply = StatusSubscribeReply;

export interface ControlCenterClientEvents extends ConnectionEvents {
  status: (status: StatusMessage) => void;
}

type FetchLike = (input: string, init?: { method?: string; headers?: Record<string, string>; body?: string }) => Promise<{
  ok: boolean;
  status: number;
  text(): Promise<string>;
}>;

export interface ControlCenterClientOptions extends ConnectionOptions {
  /** Base URL of the REST API; default derived from `url` (ws→http, without `/ws`). */
  httpUrl?: string;
  /** `fetch` implementation; default `globalThis.fetch`. */
  fetch?: FetchLike;
}

export class ControlCenterClient extends BaseClient<ControlCenterClientEvents> {
  readonly httpUrl: string;
  private filter: StatusFilter | null = null;
  private _lastStatus: StatusMessage | null = null;
  private readonly fetchImpl: FetchLike | undefined;
  private readonly token: string | undefined;

  constructor(options: ControlCenterClientOptions = {}) {
    super('control', options);
    this.httpUrl = (options.httpUrl ?? this.url.replace(/^ws(s?):/, 'http$1:').replace(/\/ws\/?(\?.*)?$/, '')).replace(/\/$/, '');
    this.fetchImpl = options.fetch ?? (globalThis as { fetch?: FetchLike }).fetch?.bind(globalThis);
    this.token = options.token;
  }

  /** The latest status message received. */
  get lastStatus(): StatusMessage | null {
    return this._lastStatus;
  }

  /**
   * Restricts the status messages to some components/metrics (a list left out means all,
   * an empty list none); resolves with the filter the control center applies. The filter
   * is kept and re-sent after every reconnect.
   */
  subscribe(filter: StatusFilter): Promise<SubscribeStatusReply> {
    const wanted = { ...filter };
    // Kept (for reconnects) only once accepted: a refused filter is not replayed.
    return this.request<SubscribeStatusReply>('subscribe', filterData(wanted)).then((reply) => {
      this.filter = wanted;
      return reply;
    });
  }

  /** The current status message, on demand. */
  status(): Promise<StatusMessage> {
    return this.request<StatusMessage>('status');
  }

  /** Resolves with the next status message. */
  nextStatus(): Promise<StatusMessage> {
    return new Promise((resolve) => this.once('status', resolve));
  }

  // ------------------------------------------------------------ REST

  /** `GET /api/status`: the status message. */
  getStatus(): Promise<StatusMessage> {
    return this.http('GET', '/api/status');
  }

  /** `GET /api/components`. */
  getComponents(): Promise<ComponentsReply> {
    return this.http('GET', '/api/components');
  }

  startComponent(name: ComponentName): Promise<ComponentActionReply> {
    return this.http('POST', `/api/components/${name}/start`);
  }

  stopComponent(name: ComponentName): Promise<ComponentActionReply> {
    return this.http('POST', `/api/components/${name}/stop`);
  }

  restartComponent(name: ComponentName): Promise<ComponentActionReply> {
    return this.http('POST', `/api/components/${name}/restart`);
  }

  /** Prometheus text format. */
  metrics(): Promise<string> {
    return this.http('GET', '/metrics', true);
  }

  /** `GET /healthz`: `{ status: 'ok', version, components: { memory: 'running', … } }`. */
  healthz(): Promise<HealthReply> {
    return this.http('GET', '/healthz');
  }

  // ------------------------------------------------------------ internals

  protected override onReopen(reconnected: boolean): void {
    if (!reconnected || !this.filter) return;
    this.request('subscribe', filterData(this.filter), { internal: true }).catch((err: ClientError) => this.emit('error', err));
  }

  protected override handleEvent(msg: Record<string, unknown>): boolean {
    if (msg.type !== 'status' || msg.status === 'error') return false;
    // The status message has its fields at the top level; also accept them in an envelope's `data`.
    const status = (msg.components === undefined && msg.data && typeof msg.data === 'object' ? { ...(msg.data as object), type: 'status' } : msg) as unknown as StatusMessage;
    this._lastStatus = status;
    this.emit('status', status);
    return true;
  }

  /** The heartbeat (off by default: status arrives every 2 s) probes with `status`. */
  protected override heartbeatProbe(): () => void {
    return () => {
      this.request('status', undefined, { internal: true, retriable: false }).catch(() => undefined);
    };
  }


  private csrfToken: Promise<string> | null = null;

  private async http<T>(method: string, path: string, text = false): Promise<T> {
    if (!this.fetchImpl) throw new ClientError('no_fetch', 'No fetch implementation: pass the `fetch` option');
    const headers: Record<string, string> = { accept: text ? 'text/plain' : 'application/json' };
    if (this.token !== undefined) headers.authorization = `Bearer ${this.token}`;
    else if (method !== 'GET') {
      // Without credentials, actions carry the control center's CSRF token (fetched once).
      this.csrfToken ??= this.http<CsrfReply>('GET', '/api/csrf').then((r) => r.csrf_token);
      try {
        headers[CSRF_HEADER] = await this.csrfToken;
      } catch (err) {
        this.csrfToken = null;
        throw err;
      }
    }
    const res = await this.fetchImpl(`${this.httpUrl}${path}`, { method, headers });
    const body = await res.text();
    if (text && res.ok) return body as T;
    let parsed: unknown = body;
    try {
      parsed = JSON.parse(body);
    } catch {
      // not JSON
    }
    if (!res.ok) {
      const err = parsed && typeof parsed === 'object' ? (parsed as { error?: unknown }).error : undefined;
      throw new ClientError('http_error', `${method} ${path}: HTTP ${res.status}${typeof err === 'string' ? ` ${err}` : ''}`, {
        data: { status: res.status, body: parsed },
      });
    }
    return parsed as T;
  }
}

function filterData(filter: StatusFilter): Record<string, unknown> {
  const d: Record<string, unknown> = {};
  if (filter.components !== undefined) d.components = filter.components;
  if (filter.metrics !== undefined) d.metrics = filter.metrics;
  return d;
}
