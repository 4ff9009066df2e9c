// Issue 3, figure 4: durable `store` throughput (fsync always) from BENCH_CONNECTIONS (16)
// connections with BENCH_DEPTH (4) requests in flight each (JSON text frames, texts of 8–32
// words, embedded by the built-in hash embedder in both variants).
//  (a) into an EMPTY store: ours (native store, group commit: concurrent stores share one
//      fsync) vs one-fsync-per-store — the same MemoryServer, same 16 connections, with the
//      store swapped for bench/baselines/js-store.js (JSONL append with fs.writeSync +
//      fs.fdatasyncSync per store request; its significance scan is negligible on an empty store);
//      also reported: our native store opened with groupCommit: false, same server and load;
//  (b) into a store of BENCH_STORE_ROWS (100,000) memories built by bulk load: ours vs the same
//      plain-JavaScript baseline (JS significance/association scan over JS arrays + per-store
//      append + fdatasync).
// Memories per fsync (store stats().fsyncs delta) is reported as the group-commit factor.
// Env: BENCH_STORE_ROWS, BENCH_CONNECTIONS, BENCH_DEPTH, BENCH_SECONDS (5), BENCH_WARMUP_MS (1000).
import { saveResult } from './common.js';
import { call, stopAll } from './lib/procs.js';
import { connectAll, measuredPipeline, startLoadGens, startServer } from './lib/harness.js';

const ROWS = Number(process.env.BENCH_STORE_ROWS ?? 100_000);
const CONNS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const DEPTH = Number(process.env.BENCH_DEPTH ?? 4);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const WARMUP = Number(process.env.BENCH_WARMUP_MS ?? 1000);

async function runVariant(store, rows, { groupCommit = true } = {}) {
  const server = await startServer({ transport: 'uws', store, rows, fsync: 'always', groupCommit });
  let gens = [];
  try {
    gens = await startLoadGens(1);
    const [c] = await connectAll(gens, server.url, CONNS);
    if (c.opened !== CONNS) throw new Error(`${store}: opened ${c.opened}/${CONNS} connections`);
    const before = await call(server.child, 'storeStats');
    const r = await measuredPipeline(server, gens[0], {
      kind: 'store',
      depth: DEPTH,
      warmupMs: WARMUP,
      durationMs: SECONDS * 1000,
      validateEvery: 7,
      drain: store === 'native',
      maxRequests: 1_000_000,
    });
    const after = await call(server.child, 'storeStats', {}, 120_000);
    if (r.load.errors || r.load.id_mismatches) throw new Error(`${store}: ${r.load.errors} errors, ${r.load.id_mismatches} mismatches: ${r.load.first_error}`);
    const n = r.load.window_replies;
    const stored = after.totalMemories - before.totalMemories;
    const fsyncs = after.fsyncs - before.fsyncs;
    return {
      store,
      store_memories_before: before.totalMemories,
      store_memories_after: after.totalMemories,
      acknowledged_in_window: n,
      window_s: r.load.window_s,
      stores_per_s: r.load.replies_per_s,
      latency_ms: r.load.latency_ms,
      server_cpu_us_per_store: r.procCpu.total_us / n,
      // Over the whole run (warm-up, window, drain): every memory written vs fsyncs issued.
      memories_stored_total: stored,
      fsyncs_total: fsyncs,
      memories_per_fsync: fsyncs > 0 ? stored / fsyncs : null,
      memories_per_fsync_in_window: r.storeAfter.fsyncs > r.storeBefore.fsyncs ? (r.storeAfter.totalMemories - r.storeBefore.totalMemories) / (r.storeAfter.fsyncs - r.storeBefore.fsyncs) : null,
      validated_replies: r.load.validated,
    };
  } finally {
    await stopAll(gens);
    await server.stop();
  }
}

const results = {};
for (const [label, rows] of [['empty', 0], ['large', ROWS]]) {
  const ours = await runVariant('native', rows);
  console.log(`${label} ours: ${ours.stores_per_s.toFixed(0)} stores/s, ${ours.memories_per_fsync?.toFixed(2)} memories/fsync`);
  const baseline = await runVariant('js', rows);
  console.log(`${label} baseline: ${baseline.stores_per_s.toFixed(1)} stores/s`);
  results[label] = { store_memories: rows, ours, baseline, speedup_ours_over_baseline: ours.stores_per_s / baseline.stores_per_s };
  if (rows === 0) {
    // Second one-fsync-per-store reference: our native store opened with groupCommit: false.
    const noGroup = await runVariant('native', rows, { groupCommit: false });
    console.log(`${label} native without group commit: ${noGroup.stores_per_s.toFixed(1)} stores/s, ${noGroup.memories_per_fsync?.toFixed(2)} memories/fsync`);
    results[label].native_without_group_commit = noGroup;
    results[label].speedup_ours_over_native_without_group_commit = ours.stores_per_s / noGroup.stores_per_s;
  }
}
saveResult('store', {
  workload: { command: 'store { text (8–32 words), metadata.importance }', fsync: 'always', connections: CONNS, in_flight_per_connection: DEPTH, window_s: SECONDS, store_built_by: 'bulkLoad' },
  a_empty_vs_fsync_per_store: {
    ...results.empty,
    baseline_is: 'same MemoryServer (uWS), same 16 connections; store = bench/baselines/js-store.js: one writeSync + fdatasyncSync per store request (no group commit). Also reported: our native store opened with groupCommit: false (native_without_group_commit)',
    target: '≥ 20×',
    meets_target: results.empty.speedup_ours_over_baseline >= 20,
  },
  b_large_vs_plain_js: {
    ...results.large,
    baseline_is: 'same MemoryServer (uWS); store = bench/baselines/js-store.js: JS significance + association scan over JS Float32Array + per-store JSONL append + fdatasyncSync',
    target: '≥ 20×',
    meets_target: results.large.speedup_ours_over_baseline >= 20,
  },
  notes: 'Requests on one connection take effect in order (serial pipelining), so at most BENCH_CONNECTIONS stores can be in one group commit.',
});
