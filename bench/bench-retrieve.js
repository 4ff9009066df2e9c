// Issue 3, figure 3: `retrieve` by query embedding (JSON `embedding` float array, count 10)
// over a store of BENCH_RETRIEVE_ROWS (100,000) memories × 384 dims built through the bulk-load path,
// from BENCH_CONNECTIONS (16) connections with BENCH_DEPTH (4) requests in flight each.
// Ours: MemoryServer on uWS with the native store (searchBatched: concurrent queries share one
// pass). Baseline: the same server, same protocol, with the store swapped for
// bench/baselines/js-store.js, whose retrieve scans a JS Float32Array with a JS dot-product
// loop (one query at a time). Server and load generator each in their own process.
// Env: BENCH_RETRIEVE_ROWS, BENCH_CONNECTIONS, BENCH_DEPTH, BENCH_SECONDS (6), BENCH_WARMUP_MS (1500).
import { saveResult } from './common.js';
import { connectAll, measuredPipeline, startLoadGens, startServer } from './lib/harness.js';
import { stopAll } from './lib/procs.js';

const ROWS = Number(process.env.BENCH_RETRIEVE_ROWS ?? 100_000);
const CONNS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const DEPTH = Number(process.env.BENCH_DEPTH ?? 4);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 6);
const WARMUP = Number(process.env.BENCH_WARMUP_MS ?? 1500);
const K = 10;

async function runVariant(store) {
  const server = await startServer({ transport: 'uws', store, rows: ROWS });
  let gens = [];
  try {
    gens = await startLoadGens(1);
    const [c] = await connectAll(gens, server.url, CONNS);
    if (c.opened !== CONNS) throw new Error(`${store}: opened ${c.opened}/${CONNS} connections`);
    const r = await measuredPipeline(server, gens[0], {
      kind: 'retrieve',
      count: K,
      depth: DEPTH,
      warmupMs: WARMUP,
      durationMs: SECONDS * 1000,
      validateEvery: 13,
      drain: store === 'native',
      maxRequests: 1_000_000,
    });
    if (r.load.errors || r.load.id_mismatches) throw new Error(`${store}: ${r.load.errors} errors, ${r.load.id_mismatches} mismatches: ${r.load.first_error}`);
    if (r.storeAfter.totalMemories !== ROWS) throw new Error(`${store}: store holds ${r.storeAfter.totalMemories}, expected ${ROWS}`);
    const n = r.load.window_replies;
    return {
      store,
      store_memories: r.storeAfter.totalMemories,
      bulk_load_s: server.ready.loadS,
      requests: n,
      window_s: r.load.window_s,
      queries_per_s: r.load.replies_per_s,
      latency_ms: r.load.latency_ms,
      // /proc ticks read by the parent (the JS baseline blocks its event loop, delaying IPC).
      server_cpu_us_per_query: r.procCpu.total_us / n,
      server_cpu_utilization: r.procCpu.total_us / 1000 / r.procCpu.wall_ms,
      validated_replies: r.load.validated,
    };
  } finally {
    await stopAll(gens);
    await server.stop();
  }
}

const ours = await runVariant('native');
console.log(`ours: ${ours.queries_per_s.toFixed(0)} q/s`);
const baseline = await runVariant('js');
console.log(`JS-scan baseline: ${baseline.queries_per_s.toFixed(1)} q/s`);
const speedup = ours.queries_per_s / baseline.queries_per_s;
saveResult('retrieve', {
  workload: {
    command: 'retrieve { embedding: number[384] (JSON), count: 10 }',
    store_memories: ROWS,
    dims: 384,
    store_built_by: 'bulkLoad (not store)',
    connections: CONNS,
    in_flight_per_connection: DEPTH,
    window_s: SECONDS,
  },
  ours: { ...ours, retrieve: 'native MemoryStore.searchBatched (SIMD scan; concurrent queries share one pass)' },
  baseline: { ...baseline, retrieve: 'bench/baselines/js-store.js: same MemoryServer/uWS/protocol, retrieve = JS dot-product loop over a JS Float32Array, one query at a time' },
  speedup_ours_over_baseline: speedup,
  target: '≥ 30×',
  meets_target: speedup >= 30,
  notes: 'Requests on one connection are served in order (serial pipelining), so at most BENCH_CONNECTIONS queries can share one pass.',
});
