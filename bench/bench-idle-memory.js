// Issue 3, figure 2: memory per idle connection — RSS growth of the server process from 0 to
// BENCH_IDLE_CONNECTIONS (10,000) open idle connections, divided by their number. Ours
// (MemoryServer on uWebSockets.js) vs the `ws` baseline serving the same handlers
// (bench/baselines/ws-memory-server.js). Clients are `ws` clients in BENCH_LOADGENS (4)
// processes of their own (a process may hold at most 20,000 fds); the server's per-IP
// connection limit is raised to 20,000 for the run. RSS is read inside the server process
// after two forced GCs (node --expose-gc), before and after, once connections settled.
// Env: BENCH_IDLE_CONNECTIONS (10000), BENCH_LOADGENS (4), BENCH_SETTLE_MS (1500).
import { saveResult } from './common.js';
import { connectAll, startLoadGens, startServer } from './lib/harness.js';
import { call, openFileLimit, sleep, stopAll } from './lib/procs.js';

const N = Number(process.env.BENCH_IDLE_CONNECTIONS ?? 10_000);
const GENS = Math.max(1, Number(process.env.BENCH_LOADGENS ?? 4));
const SETTLE = Number(process.env.BENCH_SETTLE_MS ?? 1500);
const perGenFds = Math.ceil(N / GENS) + 200;

async function runVariant(transport) {
  const server = await startServer({ transport, store: 'native', rows: 0, maxConnectionsPerIp: 20_000 }, { fds: N + 500 });
  let gens = [];
  try {
    gens = await startLoadGens(GENS, { fds: perGenFds });
    // Warm the server's code paths with a few connections first, then measure from 0.
    const warm = await connectAll(gens, server.url, Math.min(GENS * 10, N));
    for (const g of gens) await call(g, 'closeAll');
    await sleep(500);
    const m0 = await call(server.child, 'mem');
    if (m0.connections !== 0) throw new Error(`${transport}: ${m0.connections} connections still open before measuring`);
    const t0 = performance.now();
    const res = await connectAll(gens, server.url, N, { concurrency: 50, timeoutMs: 150_000 });
    const connectS = (performance.now() - t0) / 1000;
    await sleep(SETTLE);
    const m1 = await call(server.child, 'mem');
    const opened = res.reduce((a, r) => a + r.opened, 0);
    const open = (await Promise.all(gens.map((g) => call(g, 'open')))).reduce((a, r) => a + r.open, 0);
    if (m1.connections !== N || open !== N) {
      throw new Error(`${transport}: server counts ${m1.connections} connections, clients ${open} open (${opened} opened, wanted ${N})`);
    }
    const d = (k) => m1[k] - m0[k];
    return {
      transport,
      connections: m1.connections,
      warmup_connections: warm.reduce((a, r) => a + r.opened, 0),
      connect_s: connectS,
      rss_before_bytes: m0.rss,
      rss_after_bytes: m1.rss,
      rss_growth_bytes: d('rss'),
      rss_bytes_per_connection: d('rss') / N,
      heap_used_bytes_per_connection: d('heapUsed') / N,
      external_bytes_per_connection: d('external') / N,
    };
  } finally {
    await stopAll(gens);
    await server.stop();
  }
}

console.log(`open-file soft limit here: ${openFileLimit()}; ${N} connections over ${GENS} load generators`);
const ours = await runVariant('uws');
console.log(`ours: ${ours.rss_bytes_per_connection.toFixed(0)} B RSS/connection`);
const baseline = await runVariant('ws');
console.log(`ws baseline: ${baseline.rss_bytes_per_connection.toFixed(0)} B RSS/connection`);
const ratio = ours.rss_bytes_per_connection / baseline.rss_bytes_per_connection;
saveResult('idle-memory', {
  workload: { idle_connections: N, load_generator_processes: GENS, settle_ms: SETTLE, max_connections_per_ip: 20_000 },
  ours: { ...ours, server: 'MemoryServer on uWebSockets.js (log level warn)' },
  baseline: { ...baseline, server: 'bench/baselines/ws-memory-server.js: same MemoryServer.commands over `ws` (per connection: a ws socket + a Connection-like object)' },
  rss_per_connection_ratio_ours_over_baseline: ratio,
  target: 'ratio ≤ 1/3 (0.333)',
  meets_target: ratio <= 1 / 3,
  notes: 'RSS = process.memoryUsage().rss of the server process after 2× global.gc(); growth from 0 open connections (after a small warm-up set was opened and closed) to N open idle connections.',
});
