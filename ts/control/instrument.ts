/**
 * Builds ServerSnapshots from a running MemoryServer / InferenceServer: its connection-layer
 * metrics, with per-command latency histograms (turned on in the server's metrics).
 */
import type { MemoryServer } from '../server/memory.js';
import type { InferenceServer } from '../server/inference.js';
import type { WsServer } from '../server/ws-server.js';
import { LATENCY_BUCKETS_MS, type ServerSnapshot } from './types.js';

/**
 * ServerMetrics keeps only sums per command; Prometheus wants latency buckets too: from now
 * on the server counts them as well. Idempotent.
 */
export function instrumentLatency(ws: WsServer): void {
  ws.metrics.enableLatencyHistograms(LATENCY_BUCKETS_MS);
}

function baseSnapshot(ws: WsServer): ServerSnapshot {
  instrumentLatency(ws);
  const m = ws.metrics;
  const snap = m.snapshot();
  const commands: ServerSnapshot['commands'] = {};
  for (const [type, t] of Object.entries(snap.byType)) commands[type] = { ...t, buckets: m.latencyHistogram(type) };
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
    const reembed = server.reembedProgress();
    if (reembed) snap.reembed = reembed;
    const cluster = server.clusterStatus();
    if (cluster) snap.cluster = cluster;
  } catch {
    // store not open (starting or closing): leave the store figures out
  }
  return snap;
}

export function inferenceSnapshot(server: InferenceServer): ServerSnapshot {
  return baseSnapshot(server.ws);
}
