// Issue 3, figure 5: a 2 KB broadcast (MemoryServer.ws.broadcast → uWS pub/sub) reaching all
// of BENCH_BROADCAST_CLIENTS (10,000) clients held by BENCH_LOADGENS (4) processes of their
// own. Latency = last client's receipt − publish, both stamped with
// performance.timeOrigin + performance.now() (server just before publish; clients on receipt).
// BENCH_BROADCASTS (10) broadcasts, BENCH_GAP_MS (500) apart. Only our server (target: within 100 ms).
import { saveResult } from './common.js';
import { connectAll, procCpuUs, startLoadGens, startServer } from './lib/harness.js';
import { call, percentile, sleep, stopAll } from './lib/procs.js';

const N = Number(process.env.BENCH_BROADCAST_CLIENTS ?? 10_000);
const GENS = Math.max(1, Number(process.env.BENCH_LOADGENS ?? 4));
const COUNT = Number(process.env.BENCH_BROADCASTS ?? 10);
const GAP = Number(process.env.BENCH_GAP_MS ?? 500);
const BYTES = Number(process.env.BENCH_BROADCAST_BYTES ?? 2048);
// raw: TCP clients that upgrade by hand and parse frames (cheap per message); ws: `ws` clients.
const CLIENT = process.env.BENCH_CLIENT ?? 'raw';

const server = await startServer({ transport: 'uws', store: 'native', rows: 0, maxConnectionsPerIp: 20_000 }, { fds: N + 500 });
let gens = [];
try {
  gens = await startLoadGens(GENS, { fds: Math.ceil(N / GENS) + 200 });
  const t0 = performance.now();
  const res = await connectAll(gens, server.url, N, { concurrency: 50, timeoutMs: 150_000, raw: CLIENT === 'raw' });
  const connectS = (performance.now() - t0) / 1000;
  await sleep(1000);
  const { connections } = await call(server.child, 'connections');
  const opened = res.reduce((a, r) => a + r.opened, 0);
  if (connections !== N || opened !== N) throw new Error(`server has ${connections} connections, clients opened ${opened}, wanted ${N}`);

  const sent = [];
  // seq 0 is a warm-up broadcast (not counted).
  const cpuMs = (pid) => {
    const c = procCpuUs(pid);
    return (c.user + c.system) / 1000;
  };
  // The server's CPU over one gap with no broadcast (keep-alive sweep etc.), to compare with.
  const i0 = cpuMs(server.child.pid);
  await sleep(GAP);
  const idleCpu = cpuMs(server.child.pid) - i0;
  for (let seq = 0; seq <= COUNT; seq++) {
    const sys0 = procCpuUs(server.child.pid).system;
    const s0 = cpuMs(server.child.pid);
    const g0 = gens.map((g) => cpuMs(g.pid));
    const r = await call(server.child, 'broadcast', { seq, bytes: BYTES });
    await sleep(GAP);
    // CPU each side spent on this broadcast (idle otherwise; /proc resolution 10 ms).
    const serverCpu = cpuMs(server.child.pid) - s0;
    const serverSys = (procCpuUs(server.child.pid).system - sys0) / 1000;
    const genCpu = gens.map((g, i) => cpuMs(g.pid) - g0[i]);
    sent.push({ seq, ...r, serverCpu, serverSys, genCpu });
  }
  await sleep(1000);
  const reports = await Promise.all(gens.map((g) => call(g, 'broadcastReport', {}, 30_000)));
  const rows = [];
  for (const s of sent.slice(1)) {
    let received = 0;
    let last = -Infinity;
    let first = Infinity;
    const perGen = [];
    for (const rep of reports) {
      const b = rep.receipts[s.seq];
      perGen.push(b ? Math.round((b.last - s.t) * 10) / 10 : null);
      if (!b) continue;
      received += b.count;
      last = Math.max(last, b.last);
      first = Math.min(first, b.first);
    }
    rows.push({
      seq: s.seq,
      reached_at_publish: s.reached,
      received,
      publish_call_ms: s.tAfter - s.t,
      first_receipt_ms: first - s.t,
      last_receipt_ms: last - s.t,
      last_receipt_ms_per_generator: perGen,
      server_cpu_ms: s.serverCpu,
      server_cpu_system_ms: s.serverSys,
      load_generator_cpu_ms: s.genCpu,
    });
  }
  const complete = rows.filter((r) => r.received === N);
  const lats = rows.map((r) => (r.received === N ? r.last_receipt_ms : Infinity)).sort((a, b) => a - b);
  const summary = {
    p50_ms: percentile(lats, 50),
    p99_ms: percentile(lats, 99),
    max_ms: lats[lats.length - 1],
  };
  saveResult('broadcast', {
    workload: { client: CLIENT === 'raw' ? 'raw TCP sockets (hand-made upgrade, frame parser)' : 'ws package', clients: N, load_generator_processes: GENS, broadcasts: COUNT, gap_ms: GAP, message_bytes: sent[1]?.bytes, frame: 'JSON text via uWS pub/sub (WsServer.broadcast)' },
    connect_s: connectS,
    broadcasts_complete: `${complete.length}/${rows.length}`,
    publish_to_last_receipt_ms: summary,
    server_cpu_ms_per_broadcast_median: [...rows.map((r) => r.server_cpu_ms)].sort((a, b) => a - b)[Math.floor(rows.length / 2)],
    server_cpu_system_ms_per_broadcast_median: [...rows.map((r) => r.server_cpu_system_ms)].sort((a, b) => a - b)[Math.floor(rows.length / 2)],
    server_cpu_ms_idle_gap: idleCpu,
    load_generators_cpu_ms_per_broadcast_median: [...rows.map((r) => r.load_generator_cpu_ms.reduce((a, b) => a + b, 0))].sort((a, b) => a - b)[Math.floor(rows.length / 2)],
    publish_call_ms_median: [...rows.map((r) => r.publish_call_ms)].sort((a, b) => a - b)[Math.floor(rows.length / 2)],
    target: 'last client within 100 ms',
    meets_target: summary.max_ms <= 100,
    per_broadcast: rows,
    notes: 'Receipt times include the load generators\' own event-loop delay (4 processes share 2 cores with the server), so this is an upper bound on delivery time.',
  });
} finally {
  await stopAll(gens);
  await server.stop();
}
