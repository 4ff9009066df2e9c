/**
 * The status message (SPEC §5; the seed's top-level shape) and subscribe filters.
 */
import { directorySize, HostSampler } from './host.js';
import type { ComponentHandle, ComponentStatus, ServerSnapshot } from './types.js';

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

/** Short names the seed used (`"cpu"`, `"memory"`) and other obvious ones. */
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

/** `null` = all; `[]` = none. */
export interface StatusFilter {
  components: string[] | null;
  metrics: MetricKey[] | null;
}

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

interface LatencyMark {
  pid: number;
  replies: number;
  latencyMsSum: number;
}

/** Collects the figures for the status message; `refresh()` once per tick, `message()` any time. */
export class StatusCollector {
  private readonly host = new HostSampler();
  private metrics: StatusMetrics;
  private readonly marks = new Map<string, LatencyMark>();

  constructor(
    private readonly components: ReadonlyMap<string, ComponentHandle>,
    private readonly dataDir: string | undefined,
  ) {
    this.metrics = {
      timestamp: new Date().toISOString(),
      total_concepts: 0,
      total_associations: 0,
      storage_size_mb: 0,
      queries_per_second: 0,
      avg_latency_ms: 0,
      cpu_percent: 0,
      memory_percent: this.host.memoryPercent(),
    };
  }

  snapshots(): Map<string, ServerSnapshot> {
    const out = new Map<string, ServerSnapshot>();
    for (const [name, c] of this.components) {
      const s = c.snapshot();
      if (s) out.set(name, s);
    }
    return out;
  }

  /** Recomputes the metrics block (host CPU, disk size, windowed latency). */
  async refresh(): Promise<void> {
    const snaps = this.snapshots();
    let qps = 0;
    let dReplies = 0;
    let dLatency = 0;
    for (const [name, s] of snaps) {
      qps += s.queriesPerSecond;
      const prev = this.marks.get(name);
      if (prev && prev.pid === s.pid && s.replies >= prev.replies) {
        dReplies += s.replies - prev.replies;
        dLatency += s.latencyMsSum - prev.latencyMsSum;
      }
      this.marks.set(name, { pid: s.pid, replies: s.replies, latencyMsSum: s.latencyMsSum });
    }
    const mem = snaps.get('memory');
    const dir = this.dataDir ?? mem?.storagePath;
    let storageBytes = dir ? await directorySize(dir) : 0;
    if (storageBytes === 0 && mem?.storageBytes) storageBytes = mem.storageBytes;
    this.metrics = {
      timestamp: new Date().toISOString(),
      // A stopped memory server keeps its last counts visible (the data is still there).
      total_concepts: mem?.totalMemories ?? this.metrics.total_concepts,
      total_associations: mem?.totalAssociations ?? this.metrics.total_associations,
      storage_size_mb: Math.round((storageBytes / (1024 * 1024)) * 1000) / 1000,
      queries_per_second: Math.round(qps * 100) / 100,
      avg_latency_ms: dReplies > 0 ? Math.round((dLatency / dReplies) * 1000) / 1000 : 0,
      cpu_percent: this.host.cpuPercent(),
      memory_percent: this.host.memoryPercent(),
    };
  }

  message(): StatusMessage {
    const components: Record<string, ComponentStatus> = {};
    for (const [name, c] of this.components) components[name] = c.status();
    return { type: 'status', timestamp: new Date().toISOString(), components, metrics: this.metrics };
  }
}
