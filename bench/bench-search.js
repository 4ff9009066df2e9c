// Issue 2 figures: exact search over N × 384 f32 (default 1,000,000) against the machine's
// measured read bandwidth and peak FP32 rate, the npm package `usearch` (exact search on the
// same data, same run), 64 queries in one pass, and reopen time of the N-memory store.
import { execSync } from 'node:child_process';
import usearch from 'usearch';
import { MemoryStore, kernelInfo } from '../dist/native.js';
import { median, now, randomVectors, removeDir, saveResult, tempDir } from './common.js';
import { loadBenchAddon } from './lib/bench-addon.js';

// The baselines come from the bench build of the addon (cargo feature `bench`); the store
// measured is the product's.
const { benchPeakFlops, benchReadBandwidth } = loadBenchAddon();

const N = Number(process.env.BENCH_ROWS ?? 1_000_000);
const D = 384;
const K = 10;
const bytes = N * D * 4;
const GB = 1e9;

console.log(`generating ${N} × ${D} vectors…`);
const data = randomVectors(N, D, 7);
const queries = randomVectors(64, D, 99);

const dir = tempDir('ms-bench-search-');
let store = MemoryStore.open(dir, { dims: D, fsync: 'always' });
const t0 = Date.now() - N;
console.log('bulk loading…');
let tl = now();
const BATCH = 20000;
for (let s = 0; s < N; s += BATCH) {
  const recs = [];
  for (let i = s; i < Math.min(N, s + BATCH); i++) {
    // 1% of memories carry metadata, for the selective-filter figures.
    const metadata = i % 100 === 7 ? JSON.stringify({ tag: 'rare', n: i % 1000 }) : undefined;
    recs.push({ namespace: 'default', id: `m${i}`, text: `memory ${i}`, metadata, significance: (i % 1000) / 1000, timestamp: t0 + i, embedding: data.subarray(i * D, (i + 1) * D) });
  }
  await store.bulkLoad(recs);
}
const loadS = (now() - tl) / 1000;
const storageBytes = store.stats().storageBytes;
store.close();

// Reopen with a warm page cache (the log was just written).
const reopen = [];
// Rows whose vectors each open mapped from the vectors file (the writer appends to it while
// idle, so right after the bulk load it may not hold every row yet; the rest are copied).
const reopenMapped = [];
for (let r = 0; r < 2; r++) {
  const t = now();
  store = MemoryStore.open(dir, { dims: D, fsync: 'always' });
  reopen.push((now() - t) / 1000);
  reopenMapped.push(store.stats().mappedRows);
  if (r === 0) store.close();
}
if (store.count('default') !== N) throw new Error(`reopened store holds ${store.count('default')} memories, expected ${N}`);
// After open the writer gives every row its int8 codes in the background (the pre-pass of
// multi-query searches); wait for that before measuring, and report how long it took.
const waitInt8 = () => {
  const t = now();
  if (!kernelInfo().int8) return null;
  while (store.stats().int8Rows < N) {
    if (now() - t > 120_000) throw new Error('int8 codes did not catch up within 120 s');
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
  }
  return (now() - t) / 1000;
};
const int8Warm = waitInt8();
// Cold page cache too, where the machine lets us drop it (root on Linux).
let reopenCold = null;
store.close();
try {
  execSync('sync; echo 3 > /proc/sys/vm/drop_caches', { stdio: 'ignore', shell: '/bin/sh' });
  const t = now();
  store = MemoryStore.open(dir, { dims: D, fsync: 'always' });
  reopenCold = (now() - t) / 1000;
  reopenMapped.push(store.stats().mappedRows);
} catch {
  store = MemoryStore.open(dir, { dims: D, fsync: 'always' });
}

const int8Cold = waitInt8();

// Baselines measured in this run.
const peak = benchPeakFlops(20_000_000);

// A single query two ways: the f32 scan (asked for with f32Scan: every row's 1,536 bytes,
// the memory-bound pass the read-bandwidth figure is about) and the default path (where the
// CPU has the int8 kernel: the exact int8 pre-pass, 384 bytes a row, then f32 rescoring of
// the rows that may still be in the top 10). Both alternate with the summing kernel, 15
// passes each, and each figure is the median of its passes: this VM's two-core read
// bandwidth drifts by tens of percent from minute to minute, so all three are sampled over
// the same stretch of time.
const opts = { namespace: 'default', k: K };
const f32Opts = { ...opts, f32Scan: true };
store.searchSync(queries.subarray(0, D), 1, opts); // warm
store.searchSync(queries.subarray(0, D), 1, f32Opts);
benchReadBandwidth(N * D, 1); // allocate and warm the summed buffer
const single = [];
const singleF32 = [];
const sums = [];
for (let q = 0; q < 15; q++) {
  const query = queries.subarray((q % 64) * D, (q % 64 + 1) * D);
  sums.push(benchReadBandwidth(N * D, 1));
  let t = now();
  store.searchSync(query, 1, f32Opts);
  singleF32.push((now() - t) / 1000);
  t = now();
  store.searchSync(query, 1, opts);
  single.push((now() - t) / 1000);
}
benchReadBandwidth(0, 1); // free it
const bandwidth = bytes / median(sums);
const t1 = median(single);
const t1f = median(singleF32);
// Same answers both ways?
const sameTop10 = queries.length / D >= 8 && [0, 1, 2, 3, 4, 5, 6, 7].every((q) => {
  const query = queries.subarray(q * D, (q + 1) * D);
  const a = store.searchSync(query, 1, opts)[0].map((m) => m.id).join();
  const b = store.searchSync(query, 1, f32Opts)[0].map((m) => m.id).join();
  return a === b;
});
const multi = [];
for (let r = 0; r < 3; r++) {
  const t = now();
  store.searchSync(queries, 64, opts);
  multi.push((now() - t) / 1000);
}
const t64 = median(multi);

// Selective filters (1% of rows match): through the inverted index (equality) and through
// the in-scan check (a range operator), against the unfiltered single-query time.
const timeIt = (o, reps = 7) => {
  const xs = [];
  for (let r = 0; r < reps; r++) {
    const t = now();
    store.searchSync(queries.subarray(0, D), 1, o);
    xs.push((now() - t) / 1000);
  }
  return median(xs);
};
// (Filtered searches take the f32 scan, so they are compared with the unfiltered f32 scan.)
const tEq = timeIt({ ...opts, filter: JSON.stringify({ tag: 'rare' }) });
const tRange = timeIt({ ...opts, filter: JSON.stringify({ n: { $gte: 0 } }) });
const tOrdered = (() => {
  const xs = [];
  for (let r = 0; r < 50; r++) {
    const t = now();
    store.top({ namespace: 'default', k: 10, minSignificance: 0.5 });
    xs.push((now() - t) / 1000);
  }
  return median(xs);
})();

// usearch exact search (inner product on normalized vectors = cosine), same data.
const q0 = queries.subarray(0, D);
usearch.exactSearch(data, q0, D, K, usearch.MetricKind.IP, 0);
const us = [];
for (let r = 0; r < 5; r++) {
  const t = now();
  usearch.exactSearch(data, queries.subarray((r % 64) * D, (r % 64 + 1) * D), D, K, usearch.MetricKind.IP, 0);
  us.push((now() - t) / 1000);
}
const tUs = median(us);
let tUs64 = null;
{
  const t = now();
  usearch.exactSearch(data, queries, D, K, usearch.MetricKind.IP, 0);
  tUs64 = (now() - t) / 1000;
}

// Same answers? Compare top-10 ids for one query.
const ours = store.searchSync(q0, 1, opts)[0].map((m) => Number(m.id.slice(1)));
const theirs = Array.from(usearch.exactSearch(data, q0, D, K, usearch.MetricKind.IP, 0).keys, Number);
const agree = ours.filter((x) => theirs.includes(x)).length;
store.close();
removeDir(dir);

const flops64 = (64 * N * D * 2) / t64;
saveResult('search', {
  store: { memories: N, dims: D, storage_bytes: storageBytes, vector_bytes: bytes },
  kernel: kernelInfo(),
  baseline_read_bandwidth_GBps: bandwidth / GB,
  peak_fp32_GFLOPs: peak / GB,
  single_query_f32_scan_ms: t1f * 1000,
  single_query_f32_scan_runs_ms: singleF32.map((x) => x * 1000),
  single_query_effective_GBps: bytes / t1f / GB,
  single_query_fraction_of_bandwidth: bytes / t1f / bandwidth,
  single_query_top10_ms: t1 * 1000,
  single_query_path: kernelInfo().int8 ? 'exact int8 pre-pass + f32 rescoring' : 'f32 scan',
  single_query_speedup_over_f32_scan: t1f / t1,
  single_query_same_top10_both_paths: sameTop10,
  usearch_exact_single_query_ms: tUs * 1000,
  speed_vs_usearch_single: tUs / t1,
  speed_vs_usearch_single_f32_scan: tUs / t1f,
  batch64_ms: t64 * 1000,
  batch64_queries_per_s: 64 / t64,
  single_queries_per_s: 1 / t1,
  batch64_speedup_over_single: 64 / t64 / (1 / t1),
  batch64_speedup_over_f32_scan: 64 / t64 / (1 / t1f),
  batch64_GFLOPs: flops64 / GB,
  batch64_fraction_of_peak: flops64 / peak,
  usearch_exact_batch64_ms: tUs64 * 1000,
  filter_eq_1pct_ms: tEq * 1000,
  filter_range_1pct_ms: tRange * 1000,
  filter_eq_speedup_vs_unfiltered: t1f / tEq,
  filter_range_speedup_vs_unfiltered: t1f / tRange,
  retrieve_without_query_top10_ms: tOrdered * 1000,
  top10_agreement_with_usearch: `${agree}/${K}`,
  bulk_load_s: loadS,
  bulk_load_memories_per_s: N / loadS,
  reopen_warm_s: reopen,
  reopen_cold_s: reopenCold,
  reopen_rows_mapped_from_vectors_file: reopenMapped,
  int8_codes_after_reopen_s: { warm: int8Warm, cold: int8Cold },
  single_query_runs_ms: single.map((x) => x * 1000),
  read_bandwidth_runs_GBps: sums.map((x) => bytes / x / GB),
  notes: 'searchSync on both cores (rayon); single query two ways, alternating with the summing pass (medians of 15 each): the f32 scan (f32Scan: true; the bandwidth figure) and the default path; the default path and multi-query passes = exact int8 pre-pass (AVX-512 VNNI dots, or Intel AMX tiles where the CPU and OS have them: kernel.int8Kernel) + f32 rescoring where the CPU has it (kernel.int8); filtered searches take the f32 scan and are compared with it; bandwidth baseline = SIMD sum over an equal-size buffer on both cores, mapped with 4 KB pages like the store\'s vectors, with the scan\'s kernel table (software prefetch on Intel: kernel.prefetch); usearch threads=0 (its default pool).',
});
