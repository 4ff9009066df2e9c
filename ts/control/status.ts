/**
 * Collects what the status message reports: component states, the memory server's counts,
 * the data directory's size, windowed latency, host CPU and memory.
 */
import type { ComponentStatus, StatusMessage, StatusMetrics } from '../protocol/control.js';
import { directorySize, HostSampler } from './host.js';
import type { ComponentHandle, ServerSnapshot } from './types.js';

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
