/**
 * `GET /metrics`: Prometheus text format via prom-client, fed by the servers'
 * snapshots (IPC for children). Counters mirror the servers' cumulative counts,
 * so they reset when a component restarts (which Prometheus treats as a counter reset).
 */
import { Registry, collectDefaultMetrics } from 'prom-client';
import type { StatusCollector } from './status.js';
import { LATENCY_BUCKETS_MS, type ComponentHandle, type ServerSnapshot } from './types.js';

type Labels = Record<string, string | number>;
interface Value {
  value: number;
  labels: Labels;
  metricName?: string;
}

/** A metric computed at scrape time (what prom-client calls `get()`). */
function computed(name: string, help: string, type: 'counter' | 'gauge' | 'histogram', values: () => Value[]) {
  return {
    name,
    help,
    type,
    aggregator: 'sum' as const,
    get: async () => ({ name, help, type, aggregator: 'sum', values: values() }),
    reset: () => undefined,
  };
}

/** One component's latest snapshot, as a metric family reads it. */
export interface ComponentSample {
  component: string;
  snapshot: ServerSnapshot | null;
}

/**
 * The per-component families (connections, rates, commands, latency, RSS) and the memory
 * store's gauges, from `samples()`: the control center reads every component's snapshot, a
 * memory or inference server its own (its `/metrics`), so both expose the same names.
 */
export function registerComponentMetrics(registry: Registry, samples: () => ComponentSample[]): void {
  const each = (fn: (name: string, s: ServerSnapshot) => Value[]): (() => Value[]) => () =>
    samples().flatMap(({ component, snapshot }) => (snapshot ? fn(component, snapshot) : []));
  const reg = (m: ReturnType<typeof computed>): void => registry.registerMetric(m as never);
  reg(computed('memory_server_component_resident_memory_bytes', 'Component resident set size.', 'gauge', each((name, s) => [
    { value: s.rssBytes, labels: { component: name } },
  ])));
  reg(computed('memory_server_connections', 'Open WebSocket connections.', 'gauge', each((name, s) => [
    { value: s.connections, labels: { component: name } },
  ])));
  reg(computed('memory_server_queries_per_second', 'Replies per second over the last ~10 s.', 'gauge', each((name, s) => [
    { value: s.queriesPerSecond, labels: { component: name } },
  ])));
  reg(computed('memory_server_commands', 'Commands answered, per component and command type.', 'counter', each((name, s) =>
    Object.entries(s.commands).map(([type, t]) => ({ value: t.count, labels: { component: name, command: type } })),
  )));
  reg(computed('memory_server_command_errors', 'Commands answered with an error, per component and command type.', 'counter', each((name, s) =>
    Object.entries(s.commands).map(([type, t]) => ({ value: t.errors, labels: { component: name, command: type } })),
  )));
  const hname = 'memory_server_command_latency_seconds';
  reg(computed(hname, 'Reply latency (frame received → reply queued), per component and command type.', 'histogram', each((name, s) => {
    const out: Value[] = [];
    for (const [type, t] of Object.entries(s.commands)) {
      const labels = { component: name, command: type };
      let acc = 0;
      LATENCY_BUCKETS_MS.forEach((le, i) => {
        acc += t.buckets[i] ?? 0;
        out.push({ value: acc, labels: { ...labels, le: le / 1000 }, metricName: `${hname}_bucket` });
      });
      acc += t.buckets[LATENCY_BUCKETS_MS.length] ?? 0;
      out.push({ value: acc, labels: { ...labels, le: '+Inf' }, metricName: `${hname}_bucket` });
      out.push({ value: t.latencyMsSum / 1000, labels, metricName: `${hname}_sum` });
      out.push({ value: t.count, labels, metricName: `${hname}_count` });
    }
    return out;
  })));
  const memory = (): ServerSnapshot | null => samples().find((x) => x.component === 'memory')?.snapshot ?? null;
  reg(computed('memory_server_memories', 'Memories stored (all namespaces).', 'gauge', () => {
    const s = memory();
    return s?.totalMemories === undefined ? [] : [{ value: s.totalMemories, labels: {} }];
  }));
  reg(computed('memory_server_associations', 'Associations between memories.', 'gauge', () => {
    const s = memory();
    return s?.totalAssociations === undefined ? [] : [{ value: s.totalAssociations, labels: {} }];
  }));
  // Cluster mode (docs/cluster.md): this instance's replication figures and the live members.
  const cluster = (f: (c: NonNullable<ServerSnapshot['cluster']>) => Value[]) => (): Value[] => {
    const c = memory()?.cluster;
    return c ? f(c) : [];
  };
  reg(computed('memory_server_cluster_lag', 'Stream writes not yet applied by this cluster member (stream_seq - applied_seq).', 'gauge', cluster((c) => [
    { value: c.lag, labels: { node_id: c.node_id } },
  ])));
  reg(computed('memory_server_cluster_applied_seq', 'The last stream sequence this cluster member applied.', 'gauge', cluster((c) => [
    { value: c.applied_seq, labels: { node_id: c.node_id } },
  ])));
  reg(computed('memory_server_cluster_stream_seq', 'The stream\'s last sequence as this cluster member last saw it.', 'gauge', cluster((c) => [
    { value: c.stream_seq, labels: { node_id: c.node_id } },
  ])));
  reg(computed('memory_server_cluster_members', 'Live cluster members (heartbeating in the membership bucket).', 'gauge', cluster((c) => [
    { value: c.members.length, labels: { node_id: c.node_id, nats_server: c.nats_server ?? '' } },
  ])));
  reg(computed('memory_server_cluster_member_lag', 'Each live member\'s lag as it last heartbeated.', 'gauge', cluster((c) =>
    c.members.map((m) => ({ value: m.lag, labels: { member: m.node_id } })),
  )));
  reg(computed('memory_server_storage_bytes', 'Bytes of the memory store on disk.', 'gauge', () => {
    const s = memory();
    return s?.storageBytes === undefined ? [] : [{ value: s.storageBytes, labels: {} }];
  }));
}

export function createPrometheusRegistry(components: ReadonlyMap<string, ComponentHandle>, collector: StatusCollector): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'memory_server_control_' });
  const each = (fn: (name: string, c: ComponentHandle) => Value[]): (() => Value[]) => () =>
    [...components].flatMap(([name, c]) => fn(name, c));
  const reg = (m: ReturnType<typeof computed>): void => registry.registerMetric(m as never);

  reg(computed('memory_server_component_up', 'Whether the component is running (1) or not (0).', 'gauge', each((name, c) => [
    { value: c.status().state === 'running' ? 1 : 0, labels: { component: name } },
  ])));
  reg(computed('memory_server_component_restarts', 'Times the component has been restarted (crash or request).', 'gauge', each((name, c) => [
    { value: c.status().restarts, labels: { component: name } },
  ])));
  reg(computed('memory_server_component_cpu_percent', 'Component CPU use, percent of one core.', 'gauge', each((name, c) => {
    const v = c.status().cpu_percent;
    return v === null ? [] : [{ value: v, labels: { component: name } }];
  })));
  registerComponentMetrics(registry, () => [...collector.snapshots()].map(([component, snapshot]) => ({ component, snapshot })));
  return registry;
}
