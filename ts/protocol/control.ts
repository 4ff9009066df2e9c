/**
 * The control center's wire messages (docs/control-center.md): the status message it pushes
 * on connect, every status interval and on every component state change; the `subscribe`
 * filter that narrows it; the REST replies. The control center, the client and the
 * dashboard all use these. Browser-safe: no Node imports.
 */

import type { ReembedProgress } from './memory.js';

export type ComponentName = 'memory' | 'inference';
export const COMPONENT_NAMES: readonly ComponentName[] = ['memory', 'inference'];

/**
 * `unresponsive`: the process lives but has not answered the supervisor's pings (stopped,
 * hung); it is restarted if it stays so.
 */
export type ComponentState = 'stopped' | 'starting' | 'running' | 'unresponsive' | 'stopping' | 'error';

/** One component in the status message. */
export interface ComponentStatus {
  name: string;
  state: ComponentState;
  pid: number | null;
  /** Seconds since the current process became running. */
  uptime: number | null;
  /** Of one core. */
  cpu_percent: number | null;
  /** Resident set size, MB. */
  memory_mb: number | null;
  error: string | null;
  last_updated: string;
  port: number | null;
  connections: number | null;
  restarts: number;
  /** The memory server's re-embedding under way (`--reembed`), as its `stats` reports it. */
  reembed?: ReembedProgress;
  /** The memory server in cluster mode (`--cluster`): its `stats.cluster` (docs/cluster.md). */
  cluster?: ClusterStatus;
}

/** One live cluster member as its heartbeat in the membership bucket reports it. */
export interface ClusterMemberStatus {
  node_id: string;
  /** The member's client URL (null before it listens). */
  url: string | null;
  applied_seq: number;
  stream_seq: number;
  lag: number;
  /** ISO time of its last heartbeat. */
  at: string;
}

/** A cluster member's view of the cluster (`stats.cluster`; the control center's memory card). */
export interface ClusterStatus {
  /** This instance. */
  node_id: string;
  applied_seq: number;
  stream_seq: number;
  /** stream_seq − applied_seq. */
  lag: number;
  /** The NATS server this instance is connected to (its server name). */
  nats_server: string | null;
  /** The live members (this one included), by node id. */
  members: ClusterMemberStatus[];
}

export interface StatusMetrics {
  timestamp: string;
  /** = total memories. */
  total_concepts: number;
  total_associations: number;
  /** Measured on disk from the data directory. */
  storage_size_mb: number;
  /** Both servers, replies/s over the last ~10 s. */
  queries_per_second: number;
  /** Both servers, mean reply latency over the last status interval (0 when idle). */
  avg_latency_ms: number;
  /** Host, of the whole machine. */
  cpu_percent: number;
  /** Host. */
  memory_percent: number;
}

/** The status message: top-level `type: 'status'` (not an envelope with `data`). */
export interface StatusMessage {
  type: 'status';
  timestamp: string;
  components: Record<string, ComponentStatus>;
  metrics: Partial<StatusMetrics> & { timestamp: string };
}

export const METRIC_KEYS = [
  'total_concepts',
  'total_associations',
  'storage_size_mb',
  'queries_per_second',
  'avg_latency_ms',
  'cpu_percent',
  'memory_percent',
] as const;
export type MetricKey = (typeof METRIC_KEYS)[number];

/** Short names accepted for metrics in a subscribe filter (`cpu`, `memory`, `qps`, …). */
const METRIC_ALIASES: Record<string, MetricKey> = {
  concepts: 'total_concepts',
  memories: 'total_concepts',
  total_memories: 'total_concepts',
  associations: 'total_associations',
  storage: 'storage_size_mb',
  qps: 'queries_per_second',
  latency: 'avg_latency_ms',
  cpu: 'cpu_percent',
  memory: 'memory_percent',
};

/** What a `subscribe` request asks for: a list left out means all, an empty list none. */
export interface StatusSubscribeData {
  components?: ComponentName[] | string[];
  /** Keys of `metrics` or their short forms (`qps`, `cpu`, `latency`, …). */
  metrics?: Array<MetricKey | string>;
}

/** The filter as the control center applies it (`null` = all; `[]` = none); also the `subscribe` reply. */
export interface StatusFilter {
  components: string[] | null;
  metrics: MetricKey[] | null;
}
export type StatusSubscribeReply = StatusFilter;

export const ALL: StatusFilter = { components: null, metrics: null };

export class FilterError extends Error {}

function list(value: unknown, field: string): string[] | null {
  if (value === undefined || value === null) return null;
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) {
    throw new FilterError(`${field}: must be an array of strings`);
  }
  return value as string[];
}

/** Parses a subscribe request's lists; unknown names are an error naming them. */
export function parseFilter(src: { components?: unknown; metrics?: unknown }, componentNames: readonly string[]): StatusFilter {
  const comps = list(src.components, 'components');
  const mets = list(src.metrics, 'metrics');
  if (comps) {
    const bad = comps.filter((c) => !componentNames.includes(c));
    if (bad.length) throw new FilterError(`components: unknown component ${bad.join(', ')} (known: ${componentNames.join(', ')})`);
  }
  let metrics: MetricKey[] | null = null;
  if (mets) {
    metrics = [];
    for (const m of mets) {
      const k = (METRIC_KEYS as readonly string[]).includes(m) ? (m as MetricKey) : METRIC_ALIASES[m];
      if (!k) throw new FilterError(`metrics: unknown metric ${m} (known: ${METRIC_KEYS.join(', ')})`);
      if (!metrics.includes(k)) metrics.push(k);
    }
  }
  return {
    components: comps ? [...new Set(comps)].sort() : null,
    metrics: metrics ? metrics.sort() : null,
  };
}

/** Canonical key of a filter (one pub/sub topic per distinct key). */
export function filterKey(f: StatusFilter): string {
  if (!f.components && !f.metrics) return 'all';
  return `c=${f.components ? f.components.join(',') : '*'};m=${f.metrics ? f.metrics.join(',') : '*'}`;
}

export function applyFilter(msg: StatusMessage, f: StatusFilter): StatusMessage {
  if (!f.components && !f.metrics) return msg;
  const components: Record<string, ComponentStatus> = {};
  for (const [k, v] of Object.entries(msg.components)) if (!f.components || f.components.includes(k)) components[k] = v;
  let metrics: StatusMessage['metrics'] = msg.metrics;
  if (f.metrics) {
    const m: Record<string, unknown> = { timestamp: msg.metrics.timestamp };
    for (const k of f.metrics) m[k] = msg.metrics[k];
    metrics = m as StatusMessage['metrics'];
  }
  return { type: 'status', timestamp: msg.timestamp, components, metrics };
}

// ------------------------------------------------------------------ REST replies

/** A compaction of the memory server's log (`stats.last_compaction`, the `compact` action). */
export interface CompactionSummary {
  /** When it finished (ISO). */
  at: string;
  duration_ms: number;
  bytes_before: number;
  bytes_after: number;
  rows_before: number;
  rows_after: number;
  /** The store's last sequence number when it started: every change up to it is merged (a memory deleted by then is gone from disk). */
  start_seq: number;
  /** Started by the automatic policy rather than asked for. */
  automatic: boolean;
}

/** `POST /api/components/:name/:action` (start, stop, restart; compact for memory). */
export interface ComponentActionReply {
  success: boolean;
  component?: ComponentStatus;
  /** The `compact` action's compaction. */
  compaction?: CompactionSummary;
  error?: string;
}

/** `GET /api/components`. */
export interface ComponentsReply {
  success: boolean;
  components: Record<string, ComponentStatus>;
}

/** Name of the `<meta>` element of the dashboard page holding the control center's CSRF token. */
export const CSRF_META = 'csrf-token';
/** The header state-changing control-center requests carry it in (unless they carry credentials). */
export const CSRF_HEADER = 'X-CSRF-Token';

/** `GET /api/csrf` (same-origin or non-browser clients only). */
export interface CsrfReply {
  csrf_token: string;
}

/** `GET /healthz`: `{ status: 'ok', version, components: { memory: 'running', … } }`; `status: 'unresponsive'` (HTTP 503) while a component is. */
export interface HealthReply {
  status: string;
  version?: string;
  components?: Record<string, ComponentState>;
  [k: string]: unknown;
}
