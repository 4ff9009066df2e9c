// Issue 24, the single-insert budget: what one HNSW insert costs in usearch (the npm package,
// C++ with SIMD kernels) at the graph size of bench-inserts.js, beside our graph's cost from
// `cargo run --release -p memory-core --example ann_insert_bench` (same parameters, same
// kinds of data). Both: m = 16 links (32 on level 0), an insertion beam of 96, int8 vectors
// in the beam (usearch `quantization: 'i8'`), cosine on unit vectors.
//
// `node bench/usearch-insert.js [rows] [inserts]` (100000 4000), BENCH_USEARCH_DATA=random
// (uniform unit vectors, bench-inserts.js's data) or clustered (the scale benchmark's,
// bench/lib/clustered.js: unit vectors around rows ÷ 500 centres, as ann_insert_bench's).
// Builds the index with every core, then adds `inserts`
// vectors one call each on this thread and reports the process CPU time per insert (usearch
// adds a single vector on the calling thread), and recall@10 at expansion 96 against exact
// search on 200 held-out queries. BENCH_USEARCH_QUANT: i8 (default) or f32. Writes
// bench/results/usearch-insert-<data>-<quantization>.json.
import usearch from 'usearch';
import { randomVectors, saveResult } from './common.js';
import { clusteredData } from './lib/clustered.js';

const ROWS = Number(process.argv[2] ?? 100_000);
const INSERTS = Number(process.argv[3] ?? 4000);
const DATA = process.env.BENCH_USEARCH_DATA ?? 'random';
// usearch's i8 scales every component by 127 (it expects values in [−1, 1]): 384-d unit
// vectors (components ~±0.05) keep ~4 bits, which costs it recall; f32 is the fair comparison for recall.
const QUANT = process.env.BENCH_USEARCH_QUANT ?? 'i8';
const D = 384;
const NQ = 200;

const total = ROWS + INSERTS + NQ;
const all = DATA === 'clustered' ? clusteredData(ROWS, D)(0, total, 1) : randomVectors(total, D, 1);
// Copies: usearch 2.26's binding reads a typed array from the start of its buffer, ignoring
// a subarray's offset (a subarray query found row 0's neighbours).
const row = (i) => all.slice(i * D, (i + 1) * D);
const index = new usearch.Index({ dimensions: D, metric: 'ip', quantization: QUANT, connectivity: 16, expansion_add: 96, expansion_search: 96 });

let t = process.hrtime.bigint();
const keys = BigUint64Array.from({ length: ROWS }, (_, i) => BigInt(i));
index.add(keys, all.subarray(0, ROWS * D), 0);
const buildS = Number(process.hrtime.bigint() - t) / 1e9;
console.log(`usearch ${DATA} ${QUANT}: ${ROWS} rows built in ${buildS.toFixed(1)} s (every core)`);

const adds = Array.from({ length: INSERTS }, (_, i) => row(ROWS + i));
const cpu0 = process.cpuUsage();
t = process.hrtime.bigint();
for (let i = 0; i < INSERTS; i++) index.add(BigInt(ROWS + i), adds[i], 1);
const wallUs = Number(process.hrtime.bigint() - t) / 1e3 / INSERTS;
const cpu = process.cpuUsage(cpu0);
const cpuUs = (cpu.user + cpu.system) / INSERTS;
console.log(`${INSERTS} single inserts: ${cpuUs.toFixed(1)} µs CPU, ${wallUs.toFixed(1)} µs wall per insert`);

// Recall@10 against exact search over every vector added.
const n = ROWS + INSERTS;
let hit = 0;
for (let q = 0; q < NQ; q++) {
  const query = row(n + q);
  const want = new Set(usearch.exactSearch(all.subarray(0, n * D), query, D, 10, usearch.MetricKind.IP, 0).keys);
  const got = index.search(query, 10, 1).keys;
  for (const k of got) hit += want.has(k) ? 1 : 0;
}
const recall = hit / (10 * NQ);
console.log(`recall@10 at expansion 96: ${recall.toFixed(4)}`);
saveResult(`usearch-insert-${DATA}-${QUANT}`, { data: DATA, rows: ROWS, inserts: INSERTS, dims: D, connectivity: 16, expansion_add: 96, quantization: QUANT, build_s: buildS, insert_cpu_us: cpuUs, insert_wall_us: wallUs, recall_at_10: recall });
