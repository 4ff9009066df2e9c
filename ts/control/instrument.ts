/**
 * Builds ServerSnapshots from a running MemoryServer / InferenceServer and adds
 * per-command latency histograms to its connection-layer metrics.
 */
import type { MemoryServer } from '../server/memory.js';
import type { InferenceServer } from '../server/inference.js';
import type { WsServer } from '../server/ws-server.js';
import { LATENCY_BUCKETS_MS, type ServerSnapshot } from './types.js';

type Histograms = Map<string, number[]>;
const instrumented = new WeakMap<WsServer, Histograms>();

/**
 * ServerMetrics keeps only sums per command; Prometheus wants latency buckets too.
 * Wraps `recordReply` on this server's metrics instance (the reply path calls it
 * once per answered request) to count buckets as well. Idempotent.
 */
export function instrumentLatency(ws: WsServer): Histograms {
  let h = instrumented.get(ws);
  if (h) return h;
  const hist: Histograms = new Map();
  h = hist;
  instrumented.set(ws, hist);
  const metrics = ws.metrics;
  const original = metrics.recordReply.bind(metrics);
  metrics.recordReply = (type: string | undefined, latencyMs: number, isError: boolean): void => {
    original(type, latencyMs, isError);
    if (type === undefined || !metrics.byType.has(type)) return;
    let b = hist.get(type);
    if (!b) {
      b = new Array<number>(LATENCY_BUCKETS_MS.length + 1).fill(0);
      hist.set(type, b);
    }
    let i = 0;
    while (i < LATENCY_BUCKETS_MS.length && latencyMs > LATENCY_BUCKETS_MS[i]!) i++;
    b[i]!++;
  };
  return hist;
}

function baseSnapshot(ws: WsServer): ServerSnapshot {
  const hist = instrumentLatency(ws);
  const m = ws.metrics;
  const snap = m.snapshot();
  const commands: ServerSnapshot['commands'] = {};
  for (const [type, t] of Object.entries(snap.byType)) {
    commands[type] = { ...t, buckets: [...(hist.get(type) ?? new Array<number>(LATENCY_BUCKETS_MS.length + 1).fill(0))] };
  }
  const cpu = process.cpuUsage();
  return {
    at: Date.now(),
    pid: process.pid,
    port: ws.port,
    connections: ws.connectionCount(),
    queriesPerSecond: snap.queriesPerSecond,
    replies: m.replies,
    latencyMsSum: m.latencyMsSum,
    commands,
    cpuUserUs: cpu.user,
    cpuSystemUs: cpu.system,
    rssBytes: process.memoryUsage.rss(),
  };
}

export function memorySnapshot(server: MemoryServer): ServerSnapshot {
  const snap = baseSnapshot(server.ws);
  try {
    const st = server.store.stats();
    snap.totalMemories = st.totalMemories;
    snap.totalAssociations = st.totalAssociations;
    snap.storageBytes = st.storageBytes;
    snap.storagePath = st.storagePath;
  } catch {
    // store not open (starting or closing): leave the store figures out
  }
  return snap;
}

export function inferenceSnapshot(server: InferenceServer): ServerSnapshot {
  return baseSnapshot(server.ws);
}
