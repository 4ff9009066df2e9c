// Issue 24, durable single inserts (`BENCH_ONLY=inserts pnpm bench`): 16 WebSocket clients,
// each with one `store` in flight (a 384-float embedding given, so no embedder runs), into a
// namespace already holding BENCH_INSERT_ROWS (100,000) memories, fsync `always` — a store is
// answered only once its bytes are fsynced (group commit lets concurrent stores share one).
// The vectors: BENCH_INSERT_DATA=random (default; uniform unit vectors, the graph's hardest
// case) or clustered (the scale benchmark's, like text embeddings; results in inserts-clustered.json).
//
// Two servers, one after the other, each the real MemoryServer on uWebSockets.js in its own
// process (bench/lib/server-child.js, 127.0.0.1, port 0), preloaded through the bulk-load path:
//   graph  annMinRows 20,000 (the store's default is 200,000): above it each new memory's significance and
//          associations come from the namespace's HNSW graph, and each is inserted into it;
//          measured once the graph covers every preloaded row (stats().annPending = 0);
//   exact  the baseline: annMinRows above the store's size, so no graph — the exact int8
//          significance pass over all 100,000 rows per group, no graph inserts.
// The load comes from bench/load-client (Rust, epoll, one thread) in closed loop, depth 1:
// each reply sends that connection's next store. A Node client on the same two cores would
// cost more CPU than the server's handler; the generator's own CPU is reported.
//
// Reported per server: inserts/s, p50/p99 (from send to reply), fsyncs/s and stores per
// fsync (the store's counters), server CPU per insert — in all, and split by thread: the
// JavaScript thread (uWS, JSON, validation, the handler, replies; its system time is mostly
// the sockets), the writer thread (significance, log append, fsync, state, graph insert), the
// scan pool and the rest — user and system (kernel) time from /proc/<pid>/task/*/stat, the
// totals from schedstat. Bounded: BENCH_INSERT_WINDOW_MS (5,000) after a 1,000 ms warm-up,
// at most BENCH_INSERT_MAX (200,000) requests a run.
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { randomVectors, removeDir, saveResult, tempDir } from './common.js';
import { clusteredData } from './lib/clustered.js';
import { startServer } from './lib/harness.js';
import { buildLoadClient, startLoadClient } from './lib/native-clients.js';
import { call, sleep } from './lib/procs.js';

const env = (k, d) => (process.env[k] === undefined ? d : Number(process.env[k]));
const ROWS = env('BENCH_INSERT_ROWS', 100_000);
const CONNS = env('BENCH_INSERT_CONNECTIONS', 16);
const WARMUP_MS = env('BENCH_INSERT_WARMUP_MS', 1000);
const WINDOW_MS = env('BENCH_INSERT_WINDOW_MS', 5000);
const MAX_REQUESTS = env('BENCH_INSERT_MAX', 200_000);
const GRAPH_WAIT_S = env('BENCH_INSERT_GRAPH_WAIT_S', 600);
const TEMPLATES = 2048;
const D = 384;
const SERVERS = (process.env.BENCH_INSERT_SERVERS ?? 'exact,graph').split(',').filter(Boolean);
// 'random' (uniform unit vectors: no structure, the graph's hardest case) or 'clustered' (the
// scale benchmark's rows, bench/lib/clustered.js, like text embeddings); new memories from the same set.
const DATA = process.env.BENCH_INSERT_DATA ?? 'random';
const TICK_HZ = 100; // USER_HZ: /proc/<pid>/task/*/stat counts in 1/100 s.

/** Per thread of `pid`: name, user and system seconds (stat) and time on CPU (schedstat, s). */
function threadTimes(pid) {
  const out = [];
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const name = stat.slice(stat.indexOf('(') + 1, close);
      const f = stat.slice(close + 2).split(' ');
      const sched = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]) / 1e9;
      out.push({ tid: Number(tid), name, user: Number(f[11]) / TICK_HZ, system: Number(f[12]) / TICK_HZ, sched });
    } catch {
      /* the thread ended */
    }
  }
  return out;
}

/** Which part of the server a thread is: the JS thread, the store's writer, its scan pool, or other. */
function role(pid, t) {
  if (t.tid === pid) return 'js';
  if (t.name === 'memory-writer') return 'writer';
  if (t.name.startsWith('memory-scan')) return 'scan';
  return 'other';
}

/** CPU µs per insert by role (user / system / total) between two threadTimes snapshots. */
function cpuSplit(pid, before, after, inserts) {
  const prev = new Map(before.map((t) => [t.tid, t]));
  const split = {};
  for (const t of after) {
    const p = prev.get(t.tid) ?? { user: 0, system: 0, sched: 0 };
    const r = (split[role(pid, t)] ??= { user_us: 0, system_us: 0, total_us: 0 });
    r.user_us += t.user - p.user;
    r.system_us += t.system - p.system;
    r.total_us += t.sched - p.sched;
  }
  const per = (s) => Number(((s * 1e6) / Math.max(1, inserts)).toFixed(1));
  const all = { user_us: 0, system_us: 0, total_us: 0 };
  for (const r of Object.values(split)) for (const k of Object.keys(all)) all[k] += r[k];
  const perInsert = (r) => ({ user_us: per(r.user_us), system_us: per(r.system_us), total_us: per(r.total_us) });
  return { all: perInsert(all), ...Object.fromEntries(Object.entries(split).map(([k, r]) => [k, perInsert(r)])) };
}

const bin = buildLoadClient();
const work = tempDir('ms-bench-inserts-');
const templatesFile = join(work, 'store.txt');
{
  // Distinct new vectors (another seed than the preload), 7 significant digits.
  const vecs = DATA === 'clustered' ? clusteredData(ROWS, D)(ROWS, TEMPLATES, 777) : randomVectors(TEMPLATES, D, 777);
  const lines = [];
  for (let i = 0; i < TEMPLATES; i++) {
    const arr = Array.from(vecs.subarray(i * D, (i + 1) * D), (x) => Number(x.toPrecision(7)));
    lines.push(`{"type":"store","id":{ID},"data":{"text":"inserted memory ${i}","metadata":{"n":${i}},"embedding":${JSON.stringify(arr)}}}`);
  }
  writeFileSync(templatesFile, lines.join('\n') + '\n');
}

const load = () => loadavg().map((x) => Number(x.toFixed(2)));
const cpuModel = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpus()[0]?.model;
const results = {};
for (const name of SERVERS) {
  const cfg = { transport: 'uws', rows: ROWS, fsync: 'always', data: DATA, annMinRows: name === 'exact' ? 1_000_000_000 : 20_000 };
  console.log(`${name}: preloading ${ROWS} memories…`);
  const server = await startServer(cfg, { readyTimeoutMs: 600_000 });
  const pid = server.child.pid;
  let client;
  try {
    if (name === 'graph') {
      const t0 = performance.now();
      for (;;) {
        const s = await call(server.child, 'storeStats');
        if (s.annPending === 0 && s.annBytes > 0) break;
        if (performance.now() - t0 > GRAPH_WAIT_S * 1000) throw new Error(`graph: ${s.annPending} rows still not in the graph after ${GRAPH_WAIT_S} s`);
        await sleep(500);
      }
      console.log(`  graph built in ${((performance.now() - t0) / 1000).toFixed(1)} s after the preload`);
    }
    client = await startLoadClient(bin, server.url, CONNS, templatesFile);
    if (client.opened !== CONNS) throw new Error(`${name}: ${client.failed} of ${CONNS} connections failed`);
    const s0 = await call(server.child, 'storeStats');
    const cpu0 = threadTimes(pid);
    const t0 = performance.now();
    const r = await client.run({ depth: 1, warmup_ms: WARMUP_MS, window_ms: WINDOW_MS, tail_ms: 0, drain_ms: 10_000, max_requests: MAX_REQUESTS, server_pid: pid });
    const wallS = (performance.now() - t0) / 1000;
    const cpu1 = threadTimes(pid);
    const s1 = await call(server.child, 'storeStats');
    const reply = JSON.parse(r.sample_reply);
    if (reply.status !== 'success' || reply.type !== 'store' || reply.data.existing !== false) throw new Error(`${name}: unexpected reply ${r.sample_reply.slice(0, 300)}`);
    if (r.errors_in_window > 0) throw new Error(`${name}: ${r.errors_in_window} error replies`);
    const inserts = s1.records - s0.records;
    const fsyncs = s1.fsyncs - s0.fsyncs;
    results[name] = {
      inserts_per_s: r.achieved_per_s,
      latency_ms: { p50: r.latency.p50_us / 1e3, p99: r.latency.p99_us / 1e3, max: r.latency.max_us / 1e3 },
      window_s: r.window_s,
      fsyncs_per_s: fsyncs / wallS,
      inserts_per_fsync: inserts / Math.max(1, fsyncs),
      groups_per_s: (s1.groups - s0.groups) / wallS,
      // Over warm-up + window + drain (the thread counters are read around the whole run).
      server_cpu_us_per_insert: cpuSplit(pid, cpu0, cpu1, inserts),
      // The generator's window figures (server CPU from schedstat, its own from getrusage).
      window_server_cpu_us_per_insert: r.server_cpu.sched_us_per_reply,
      window_server_cpu_utilization: r.server_cpu.utilization,
      load_generator_cpu_us_per_insert: r.client_cpu.us_per_reply,
      load_generator_cpu_utilization: r.client_cpu.utilization,
      other_cpu_utilization: r.other_cpu.utilization,
      memories_after: s1.totalMemories,
      ann_graph_mb: s1.annBytes / 2 ** 20,
    };
    console.log(`  ${name}: ${JSON.stringify(results[name])}`);
  } finally {
    await client?.stop();
    await server.stop();
  }
}
removeDir(work);

const target = 8000;
saveResult(DATA === 'random' ? 'inserts' : `inserts-${DATA}`, {
  note: 'the machine and its load decide these figures (2 cores shared by server and load generator); exact is the baseline of the same run',
  cpu: cpuModel,
  cores: cpus().length,
  load_average_at_end: load(),
  rows: ROWS,
  data: DATA,
  dims: D,
  connections: CONNS,
  in_flight_per_connection: 1,
  fsync: 'always',
  target_inserts_per_s: target,
  met: results.graph ? results.graph.inserts_per_s >= target : null,
  servers: results,
});
