// Recall@10 against latency per graph candidate list (`ef`) on a data directory kept by
// `pnpm bench scale` (BENCH_SCALE_KEEP_DIR=1): the benchmark's own queries (bench/lib/clustered.js,
// so ROWS must be the BENCH_SCALE_ROWS that built the directory), the exact answers from the
// same store (`exact: true`), then per ef the top 10 of every query, one at a time, with that
// `ef`, and the planner's own choice (no `ef`). Unfiltered, with the 30% filter `{group: "g0"}`
// and the 1% filter `{tag: "rare"}` of the benchmark (the planner's choice only: it goes
// exact). Each list runs every query twice, the second time measured. Only searches: nothing
// is stored (closing the store may rewrite its derived files).
//
//   node bench/ann-sweep.js DIR ROWS
//   ANN_SWEEP_EFS=64,96,128 ANN_SWEEP_FILTERED_EFS=480,960 ANN_SWEEP_QUERIES=200 \
//   ANN_SWEEP_CASES=unfiltered,filter_30pct ANN_SWEEP_OUT=ann-sweep-5m node bench/ann-sweep.js DIR ROWS
//
// Results: bench/results/<ANN_SWEEP_OUT, default ann-sweep>.json.
import { MemoryStore } from '../dist/native.js';
import { now, saveResult } from './common.js';
import { clusteredData } from './lib/clustered.js';

const [dir, rowsArg] = process.argv.slice(2);
if (!dir || !rowsArg) {
  console.error('usage: node bench/ann-sweep.js DIR ROWS (the BENCH_SCALE_ROWS that built DIR)');
  process.exit(2);
}
const D = 384;
const K = 10;
const ROWS = Number(rowsArg);
const NQ = Number(process.env.ANN_SWEEP_QUERIES ?? 200);
const list = (v, d) => (v ?? d).split(',').filter(Boolean);
const EFS = list(process.env.ANN_SWEEP_EFS, '64,96,128,192,256,384,512,768,1024,1536,2048').map(Number);
const FILTERED_EFS = list(process.env.ANN_SWEEP_FILTERED_EFS, '480,960,1518,2048,3395,4096,6144').map(Number);
const CASES = list(process.env.ANN_SWEEP_CASES, 'unfiltered,filter_30pct,filter_1pct');
const FILTERS = { unfiltered: null, filter_30pct: { group: 'g0' }, filter_1pct: { tag: 'rare' } };

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))];
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const queries = clusteredData(ROWS, D)(0, NQ, 99);

let t = now();
const store = MemoryStore.open(dir, { dims: D, annMinRows: Number(process.env.ANN_SWEEP_ANN_MIN_ROWS ?? 20_000) });
const openS = (now() - t) / 1000;
// The graph's int8 codes are encoded when the writer is first idle: until then traversals
// score on the f32 rows, which is not what is being measured.
t = now();
while (store.stats().annPending > 0 && now() - t < 600_000) await sleep(50);
const idleS = (now() - t) / 1000;
const stats = store.stats();
console.log(`opened ${dir}: ${stats.rows} rows in ${openS.toFixed(1)} s, idle work ${idleS.toFixed(1)} s, annPending ${stats.annPending}`);

/** Every query once, one at a time: ids, and ms per query. */
function run(opts) {
  const ms = [];
  const ids = [];
  for (let q = 0; q < NQ; q++) {
    const t0 = now();
    const r = store.searchSync(queries.subarray(q * D, (q + 1) * D), 1, opts);
    ms.push(now() - t0);
    ids.push(r[0].map((m) => m.id));
  }
  return { ms, ids };
}
const recall = (got, want) => {
  let hit = 0;
  let total = 0;
  got.forEach((g, q) => {
    hit += g.filter((id) => want[q].includes(id)).length;
    total += want[q].length;
  });
  return total ? hit / total : 1;
};

const cases = {};
for (const name of CASES) {
  const base = { namespace: 'scale', k: K };
  if (FILTERS[name]) base.filter = JSON.stringify(FILTERS[name]);
  const exact = run({ ...base, exact: true });
  const rowsOut = [];
  // The 1% filter is sent to the exact pass whatever the list (a selective filter): the
  // planner's choice is all there is to check.
  const efs = { unfiltered: EFS, filter_30pct: FILTERED_EFS, filter_1pct: [] }[name];
  for (const ef of [undefined, ...efs]) {
    const opts = ef === undefined ? base : { ...base, ef };
    run(opts); // warm: the pages this list touches
    const got = run(opts);
    // The plan and the nodes scored, summed over every query in one explained call.
    const plan = (await store.searchExplained(queries, NQ, opts)).plan;
    const row = {
      ef: ef ?? 'planner',
      plan: plan.plan,
      plan_ef: plan.ef,
      reason: plan.reason,
      recall_at_10: recall(got.ids, exact.ids),
      p50_ms: pct(got.ms, 0.5),
      p99_ms: pct(got.ms, 0.99),
      scored_per_query: plan.scored / NQ,
    };
    rowsOut.push(row);
    console.log(name, JSON.stringify(row));
  }
  cases[name] = { exact_p50_ms: pct(exact.ms, 0.5), exact_p99_ms: pct(exact.ms, 0.99), by_ef: rowsOut };
}
store.close();

saveResult(process.env.ANN_SWEEP_OUT ?? 'ann-sweep', {
  note: 'figures depend on the machine and its load; recall against the exact pass of the same store',
  dir,
  rows: stats.rows,
  built_rows: ROWS,
  queries: NQ,
  open_s: openS,
  idle_work_s: idleS,
  cases,
});
