// Issue 24 figures (`pnpm bench scale`, or BENCH_ONLY=scale): one namespace of N × 384
// clustered vectors (BENCH_SCALE_ROWS, default 1,000,000; the target is 5,000,000)
// stored durably through batch `put` (significance and associations computed, fsync
// always), then single-query top-10 through the planner's graph plan against the exact pass
// (`exact: true`, the baseline, same run) — unfiltered, with a 1% and a 30% metadata filter
// — recall@10 of each against the exact answer, durable single inserts from 16 concurrent
// writers, PSS, the data directory's size and open → first answered query.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MemoryStore } from '../dist/native.js';
import { now, removeDir, saveResult, tempDir } from './common.js';
import { clusteredData } from './lib/clustered.js';
import { footprintChild, smapsFootprint } from './lib/scale-footprint.js';

// The footprint is measured in a process of its own (this file again, with
// BENCH_SCALE_CHILD set): this one holds the generated vectors, which would count in its PSS.
if (process.env.BENCH_SCALE_CHILD) {
  await footprintChild(process.env.BENCH_SCALE_CHILD);
  process.exit(0);
}

const N = Number(process.env.BENCH_SCALE_ROWS ?? 1_000_000);
const D = 384;
const K = 10;
const NQ = Number(process.env.BENCH_SCALE_QUERIES ?? 200);
// The graph threshold (the store's default is 200,000; 20,000 here, as in the runs so far, so
// a 100k run measures the graph too).
const ANN_MIN_ROWS = Number(process.env.BENCH_SCALE_ANN_MIN_ROWS ?? 20_000);
const BATCH = 1000;
const clustered = clusteredData(N, D);

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))];
};
const dirBytes = (d) => readdirSync(d).reduce((a, f) => a + statSync(join(d, f)).size, 0);
/** Bytes the directory's files occupy on disk (allocated blocks: sparse holes excluded). */
const dirDiskBytes = (d) => readdirSync(d).reduce((a, f) => a + statSync(join(d, f)).blocks * 512, 0);
/** Run this file as a footprint child on `dir`; resolves with its JSON report and spawn time. */
function runChild(mode, dir) {
  const started = Date.now();
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url)], {
    env: { ...process.env, BENCH_SCALE_CHILD: mode, BENCH_SCALE_DIR: dir, BENCH_SCALE_DIMS: String(D), BENCH_SCALE_ANN_MIN_ROWS: String(ANN_MIN_ROWS) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (b) => (out += b));
  return new Promise((resolve, reject) =>
    child.on('exit', (code) => (code === 0 ? resolve({ started, ...JSON.parse(out.trim().split('\n').pop()) }) : reject(new Error(`footprint child exited ${code}`)))),
  );
}
const pssMb = () => {
  const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync('/proc/self/smaps_rollup', 'utf8'));
  return m ? Number(m[1]) / 1024 : null;
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const queries = clustered(0, NQ, 99);
const dir = tempDir('ms-bench-scale-');
let store = MemoryStore.open(dir, { dims: D, fsync: 'always', annMinRows: ANN_MIN_ROWS });

// 1. Durable batch ingest with significance and associations.
console.log(`storing ${N} memories in batches of ${BATCH} (fsync always)…`);
let t = now();
const progress = [];
// The payload the data directory holds: vectors, texts and metadata (JSON), in bytes.
let payloadBytes = 0;
for (let s = 0; s < N; s += BATCH) {
  const items = [];
  const data = clustered(s, Math.min(BATCH, N - s), 7);
  for (let i = s; i < Math.min(N, s + BATCH); i++) {
    // tag: 1% "rare"; group: 30% "g0".
    const metadata = JSON.stringify({ tag: i % 100 === 7 ? 'rare' : 'common', group: i % 10 < 3 ? 'g0' : `g${i % 10}` });
    items.push({ namespace: 'scale', id: `m${i}`, text: `memory ${i}`, metadata, embedding: data.subarray((i - s) * D, (i - s + 1) * D) });
    payloadBytes += D * 4 + Buffer.byteLength(`memory ${i}`) + Buffer.byteLength(metadata);
  }
  await store.put(items);
  if ((s + BATCH) % 100_000 === 0) {
    progress.push({ rows: s + BATCH, s: (now() - t) / 1000 });
    console.log(`  ${s + BATCH} rows: ${((now() - t) / 1000).toFixed(1)} s`);
  }
}
const ingestS = (now() - t) / 1000;
while (store.stats().annPending > 0) await sleep(20);

// 2. Single queries: exact (baseline) and the planner's choice.
function run(filter, exact) {
  const opts = { namespace: 'scale', k: K, exact };
  if (filter) opts.filter = JSON.stringify(filter);
  const ms = [];
  const ids = [];
  for (let q = 0; q < NQ; q++) {
    const v = queries.subarray(q * D, (q + 1) * D);
    const t0 = now();
    const r = store.searchSync(v, 1, opts);
    ms.push(now() - t0);
    ids.push(r[0].map((m) => m.id));
  }
  return { ms, ids };
}
async function planOf(filter) {
  const opts = { namespace: 'scale', k: K };
  if (filter) opts.filter = JSON.stringify(filter);
  return (await store.searchExplained(queries.subarray(0, D), 1, opts)).plan;
}
const cases = {};
for (const [name, filter] of [['unfiltered', null], ['filter_1pct', { tag: 'rare' }], ['filter_30pct', { group: 'g0' }]]) {
  const exact = run(filter, true);
  const planned = run(filter, false);
  let hit = 0;
  let total = 0;
  planned.ids.forEach((got, q) => {
    const want = exact.ids[q];
    hit += got.filter((id) => want.includes(id)).length;
    total += want.length;
  });
  cases[name] = {
    plan: await planOf(filter),
    recall_at_10: hit / total,
    p50_ms: pct(planned.ms, 0.5),
    p99_ms: pct(planned.ms, 0.99),
    exact_p50_ms: pct(exact.ms, 0.5),
    exact_p99_ms: pct(exact.ms, 0.99),
  };
  console.log(name, JSON.stringify(cases[name]));
}
const pss = pssMb();
const stats = store.stats();

// 3. Durable single inserts from 16 concurrent writers (in process; each awaits its put).
const WRITERS = 16;
const INSERT_S = 5;
let inserted = 0;
t = now();
const extra = clustered(0, 20_000, 555);
await Promise.all(
  Array.from({ length: WRITERS }, async (_, w) => {
    for (let i = w; now() - t < INSERT_S * 1000 && i < 20_000; i += WRITERS) {
      await store.put([{ namespace: 'scale', id: `x${i}`, text: 'x', embedding: extra.subarray(i * D, (i + 1) * D) }]);
      inserted++;
      payloadBytes += D * 4 + 1;
    }
  }),
);
const insertsPerS = inserted / ((now() - t) / 1000);
store.close();

// 4. Open → first answered query (the graph is loaded from the file written at close:
// the first query already takes the graph plan, and no rows wait to be indexed).
// Then the footprint of a process that only serves the store: a fresh process opens the
// directory, answers a query, waits until its idle work (int8 codes, graph) is done,
// answers NQ queries and reports its PSS; a bare process with the addon loaded gives the
// runtime's own share.
t = now();
store = MemoryStore.open(dir, { dims: D, fsync: 'always', annMinRows: ANN_MIN_ROWS });
store.searchSync(queries.subarray(0, D), 1, { namespace: 'scale', k: K });
const firstQueryS = (now() - t) / 1000;
const reopenPlan = await planOf(null);
const reopenPending = store.stats().annPending;
store.close();
console.log('footprint: reopening in a process of its own…');
const baseline = await runChild('baseline', dir);
const served = await runChild('serve', dir);
const dataDirBytes = dirBytes(dir);
const dataDirDiskBytes = dirDiskBytes(dir);
// BENCH_SCALE_KEEP_DIR=1 keeps the data directory (its path is printed) for search
// experiments on the same graph, e.g. crates/memory-core/examples/ef_sweep.rs.
if (process.env.BENCH_SCALE_KEEP_DIR) console.log(`kept the data directory: ${dir}`);
else removeDir(dir);
const fp = smapsFootprint(served, baseline, D);
console.log('footprint', JSON.stringify(fp));

saveResult('scale', {
  note: 'figures depend on the machine and its load; the exact path is the baseline of the same run',
  rows: N,
  dims: D,
  ingest: { batch: BATCH, seconds: ingestS, per_s: N / ingestS, progress },
  queries: cases,
  single_inserts_16_writers_per_s: insertsPerS,
  pss_mb: pss,
  f32_vectors_mb: (N * D * 4) / 2 ** 20,
  ann_graph_mb: stats.annBytes / 2 ** 20,
  data_dir_mb: dataDirBytes / 2 ** 20,
  open_to_first_query_s: firstQueryS,
  reopen_first_plan: reopenPlan?.plan,
  reopen_ann_pending: reopenPending,
  footprint: {
    ...fp,
    data_dir_bytes: dataDirBytes,
    data_dir_disk_bytes: dataDirDiskBytes,
    payload_bytes: payloadBytes,
    data_dir_over_payload: dataDirDiskBytes / payloadBytes,
    files: served.files,
    process_start_to_first_query_s: (served.firstAnswerAt - served.started) / 1000,
    open_to_first_query_s: served.openToFirstQueryMs / 1000,
  },
  plans: { exact: stats.plansExact, graph: stats.plansGraph },
});
