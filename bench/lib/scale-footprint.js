// The footprint half of `pnpm bench scale`: a process that only serves the store (no
// generated data in its heap) opens the data directory, answers a first query, lets the
// writer finish its idle work (int8 codes, graph), answers more queries and reports its
// PSS (/proc/self/smaps_rollup) with a breakdown; `baseline` reports a bare process with
// the addon loaded, the runtime's share of any PSS.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { MemoryStore } from '../../dist/native.js';
import { randomVectors } from '../common.js';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Pss, Pss_Anon, Pss_File and Rss of this process in kB. */
function rollup() {
  const text = readFileSync('/proc/self/smaps_rollup', 'utf8');
  const kb = (key) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
  return { pss: kb('Pss'), pss_anon: kb('Pss_Anon'), pss_file: kb('Pss_File'), rss: kb('Rss') };
}

/** Resident kB of the mappings of files whose name matches `re` (from /proc/self/smaps). */
function mappedFileRss(re) {
  let total = 0;
  let current = false;
  for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) current = re.test(head[1]);
    else if (current && line.startsWith('Rss:')) total += Number(/(\d+)/.exec(line)[1]);
  }
  return total;
}

export async function footprintChild(mode) {
  if (mode === 'baseline') {
    await sleep(200);
    console.log(JSON.stringify({ ...rollup() }));
    return;
  }
  const dir = process.env.BENCH_SCALE_DIR;
  const dims = Number(process.env.BENCH_SCALE_DIMS);
  const nq = Number(process.env.BENCH_SCALE_QUERIES ?? 200);
  const settleLimitS = Number(process.env.BENCH_SCALE_SETTLE_S ?? 900);
  const queries = randomVectors(nq, dims, 4242);
  const opts = { namespace: 'scale', k: 10 };
  const t0 = performance.now();
  const store = MemoryStore.open(dir, { dims, fsync: 'always', annMinRows: Number(process.env.BENCH_SCALE_ANN_MIN_ROWS ?? 20_000) });
  store.searchSync(queries.subarray(0, dims), 1, opts);
  const firstAnswerAt = Date.now();
  const openToFirstQueryMs = performance.now() - t0;
  const afterOpen = rollup();
  // Bounded wait for the writer's idle work and the background scrub of the rows the last
  // clean close vouched for; reported, so an unfinished one is visible.
  const settleStart = performance.now();
  let st = store.stats();
  let scrubDoneS = st.scrubPending === 0 ? 0 : null;
  while ((st.int8Rows < st.rows && st.int8Rows > 0) || st.annPending > 0 || st.scrubPending > 0) {
    if (performance.now() - settleStart > settleLimitS * 1000) break;
    await sleep(50);
    st = store.stats();
    if (scrubDoneS === null && st.scrubPending === 0) scrubDoneS = (performance.now() - settleStart) / 1000;
  }
  await sleep(500); // the vectors file's catch-up after the writer's last slice
  const settleS = (performance.now() - settleStart) / 1000;
  // Before any query: the f32 rows the idle work read are released by now.
  const afterSettle = rollup();
  const vectorsFileRssAfterSettleKb = mappedFileRss(/\/vectors-\d+\.f32$/);
  for (let q = 0; q < nq; q++) store.searchSync(queries.subarray(q * dims, (q + 1) * dims), 1, opts);
  st = store.stats();
  const report = {
    firstAnswerAt,
    openToFirstQueryMs,
    settleS,
    afterOpen,
    afterSettle,
    vectorsFileRssAfterSettleKb,
    afterQueries: rollup(),
    vectorsFileRssKb: mappedFileRss(/\/vectors-\d+\.f32$/),
    logRssKb: mappedFileRss(/\/wal-\d+\.log$/),
    scrubDoneS,
    stats: { rows: st.rows, int8Rows: st.int8Rows, mappedRows: st.mappedRows, annBytes: st.annBytes, annPending: st.annPending, scrubbedRows: st.scrubbedRows, scrubMismatches: st.scrubMismatches },
  };
  store.close();
  report.files = Object.fromEntries(readdirSync(dir).map((f) => [f, { bytes: statSync(join(dir, f)).size, disk_bytes: statSync(join(dir, f)).blocks * 512 }]));
  console.log(JSON.stringify(report));
}

/** The footprint figures from a serving child's and a baseline child's reports. */
export function smapsFootprint(served, baseline, dims) {
  const MB = 2 ** 20;
  const { rows, int8Rows, mappedRows, annBytes } = served.stats;
  // Q8Rows: codes padded to 64 dims, plus scale, correction, norm and error (4 bytes each).
  const int8Bytes = int8Rows * (Math.ceil(dims / 64) * 64 + 16);
  // f32 rows in RAM: the vectors file's resident pages in this process, and every row not
  // backed by the file (anonymous chunks; counted whole, an upper bound).
  const f32InRam = served.vectorsFileRssKb * 1024 + (rows - mappedRows) * dims * 4;
  const budget = int8Bytes + annBytes + f32InRam;
  const pss = served.afterQueries.pss * 1024;
  return {
    pss_after_queries_mb: pss / MB,
    pss_after_open_mb: (served.afterOpen.pss * 1024) / MB,
    // After the writer's idle work, before any query: what the process keeps without
    // the f32 rows the queries' rescoring and graph traversal fault in.
    pss_after_idle_work_mb: (served.afterSettle.pss * 1024) / MB,
    f32_resident_after_idle_work_mb: (served.vectorsFileRssAfterSettleKb * 1024) / MB,
    pss_anon_mb: (served.afterQueries.pss_anon * 1024) / MB,
    pss_file_mb: (served.afterQueries.pss_file * 1024) / MB,
    runtime_pss_mb: (baseline.pss * 1024) / MB,
    int8_codes_mb: int8Bytes / MB,
    graph_mb: annBytes / MB,
    f32_in_ram_mb: f32InRam / MB,
    f32_all_rows_mb: (rows * dims * 4) / MB,
    mapped_rows: mappedRows,
    rows,
    log_rss_mb: (served.logRssKb * 1024) / MB,
    settle_s: served.settleS,
    // From the first answer until the background scrub had checked every row vouched for.
    scrub_done_s: served.scrubDoneS,
    scrubbed_rows: served.stats.scrubbedRows,
    scrub_mismatches: served.stats.scrubMismatches,
    pss_over_budget: pss / budget,
    pss_less_runtime_over_budget: (pss - baseline.pss * 1024) / budget,
  };
}
