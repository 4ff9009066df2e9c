// Issue 25 figures for full-text search over N memories of ~20 words (BENCH_TEXT_ROWS,
// default 1,000,000; bench/lib/text-corpus.js) with 384-dim vectors:
//  - text-only query (BM25, top 10) p50 through the addon (searchText), one at a time;
//  - hybrid query (what retrieve mode "hybrid" runs: the vector ranking and the text ranking
//    50 deep at once, fused by RRF) against the vector query alone (searchBatched, top 10);
//  - reopen of the N-memory store with the text index (loaded from its file) and without
//    (same directory); also the open that rebuilds it and the close that writes the file;
//  - durable store throughput (fsync always, BENCH_TEXT_INFLIGHT puts in flight, one memory
//    each) with the text index on and off, alternating in the same run.
import fs from 'node:fs';
import path from 'node:path';
import { MemoryStore } from '../dist/native.js';
import { fuseRrf, HYBRID_DEPTH } from '../dist/server/retrieve-modes.js';
import { median, now, randomVectors, removeDir, saveResult, tempDir } from './common.js';
import { textQuery, textSource } from './lib/text-corpus.js';

const N = Number(process.env.BENCH_TEXT_ROWS ?? 1_000_000);
const D = 384;
const QUERIES = 200;
const INFLIGHT = Number(process.env.BENCH_TEXT_INFLIGHT ?? 64);
const PUT_SECONDS = Number(process.env.BENCH_TEXT_PUT_SECONDS ?? 3);

const nextText = textSource();
const dir = tempDir('ms-bench-text-');
let store = MemoryStore.open(dir, { dims: D, fsync: 'off', textIndex: false });
console.log(`bulk loading ${N} memories of ~20 words…`);
const BATCH = 20_000;
const t0 = Date.now() - N;
for (let s = 0; s < N; s += BATCH) {
  const n = Math.min(BATCH, N - s);
  const vecs = randomVectors(n, D, 1 + s);
  const recs = [];
  for (let i = 0; i < n; i++) recs.push({ namespace: 'default', id: `m${s + i}`, text: nextText(), significance: 0.5, timestamp: t0 + s + i, embedding: vecs.subarray(i * D, (i + 1) * D) });
  await store.bulkLoad(recs);
}
await store.flush();
store.close();

const open = (textIndex) => {
  const t = now();
  const s = MemoryStore.open(dir, { dims: D, fsync: 'always', textIndex });
  return { s, seconds: (now() - t) / 1000 };
};
const closeTimed = (s) => {
  const t = now();
  s.close();
  return (now() - t) / 1000;
};
// The bulk load ran without the index, so the first open with it builds it from the log
// (what any open does when the index file is missing or does not fit), and its close
// writes the index file (text-<gen>.idx) that the later opens load.
const first = open(true);
const rebuildOpen = first.seconds;
const closeWritingIndex = closeTimed(first.s);
const indexFileBytes = fs
  .readdirSync(dir)
  .filter((f) => f.startsWith('text-'))
  .reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);
// Reopen twice each way, alternating (warm page cache), the median of each.
const reopenWith = [];
const reopenWithout = [];
for (let r = 0; r < 2; r++) {
  for (const [on, xs] of [[false, reopenWithout], [true, reopenWith]]) {
    const o = open(on);
    xs.push(o.seconds);
    if (o.s.count('default') !== N) throw new Error(`reopened store holds ${o.s.count('default')}, expected ${N}`);
    o.s.close();
  }
}
store = open(true).s;

const opts = { namespace: 'default', k: 10 };
const qv = randomVectors(QUERIES, D, 99);
const vecOf = (q) => qv.subarray((q % QUERIES) * D, ((q % QUERIES) + 1) * D);
await store.searchText(textQuery(0), opts); // warm
const time = async (f) => {
  const xs = [];
  for (let q = 0; q < QUERIES; q++) {
    const t = now();
    await f(q);
    xs.push(now() - t);
  }
  xs.sort((a, b) => a - b);
  return { p50_ms: median(xs), p99_ms: xs[Math.floor(xs.length * 0.99)] };
};
let empty = 0;
const text = await time(async (q) => {
  if ((await store.searchText(textQuery(q), opts)).length === 0) empty++;
});
const deep = { ...opts, k: HYBRID_DEPTH };
// Alternate vector and hybrid query by query so both see the same machine load.
const vecLat = [];
const hybLat = [];
for (let q = 0; q < QUERIES; q++) {
  let t = now();
  await store.searchBatched(vecOf(q), opts);
  vecLat.push(now() - t);
  t = now();
  const [v, x] = await Promise.all([store.searchBatched(vecOf(q), deep), store.searchText(textQuery(q), deep)]);
  fuseRrf(v, x, 10);
  hybLat.push(now() - t);
}
store.close();

// Durable store throughput, text index on vs off, alternating rounds into fresh stores.
async function putRate(textIndex, seed) {
  const d = tempDir('ms-bench-text-put-');
  const s = MemoryStore.open(d, { dims: D, fsync: 'always', textIndex });
  const vecs = randomVectors(1024, D, seed);
  const texts = textSource(seed);
  let done = 0;
  const end = now() + PUT_SECONDS * 1000;
  const worker = async (w) => {
    for (let i = w; now() < end && done < 5_000_000; i += INFLIGHT) {
      await s.put([{ namespace: 'default', text: texts(), embedding: vecs.subarray((i % 1024) * D, ((i % 1024) + 1) * D) }]);
      done++;
    }
  };
  const t = now();
  await Promise.all(Array.from({ length: INFLIGHT }, (_, w) => worker(w)));
  const rate = done / ((now() - t) / 1000);
  s.close();
  removeDir(d);
  return rate;
}
const putOn = [];
const putOff = [];
for (let r = 0; r < 2; r++) {
  putOff.push(await putRate(false, 10 + r));
  putOn.push(await putRate(true, 10 + r));
}
removeDir(dir);

const vector = { p50_ms: median(vecLat), p99_ms: [...vecLat].sort((a, b) => a - b)[Math.floor(QUERIES * 0.99)] };
const hybrid = { p50_ms: median(hybLat), p99_ms: [...hybLat].sort((a, b) => a - b)[Math.floor(QUERIES * 0.99)] };
const storeOn = Math.max(...putOn);
const storeOff = Math.max(...putOff);
const reopenOn = median(reopenWith);
const reopenOff = median(reopenWithout);
saveResult('text', {
  memories: N,
  workload: { words_per_text: 20, vocabulary: 50_000, word_frequencies: 'Zipf(1)', queries: QUERIES, query: 'two mid-frequency words and a rare one', dims: D },
  text_query: { ...text, queries_without_results: empty, target_p50_ms: 5, meets_target: text.p50_ms <= 5 },
  vector_query: vector,
  hybrid_query: { ...hybrid, depth_each: HYBRID_DEPTH, ratio_to_vector_p50: hybrid.p50_ms / vector.p50_ms, target_ratio: 1.5, meets_target: hybrid.p50_ms <= 1.5 * vector.p50_ms },
  store_throughput: {
    fsync: 'always',
    in_flight: INFLIGHT,
    seconds_each: PUT_SECONDS,
    stores_per_s_text_index_on: putOn,
    stores_per_s_text_index_off: putOff,
    ratio_best_on_to_best_off: storeOn / storeOff,
    target_ratio: 0.8,
    meets_target: storeOn >= 0.8 * storeOff,
  },
  reopen: {
    with_text_index_s: reopenWith,
    without_text_index_s: reopenWithout,
    extra_s: reopenOn - reopenOff,
    target_extra_s: 2,
    meets_target: reopenOn - reopenOff <= 2,
    with_text_index_rebuilt_s: rebuildOpen,
    close_writing_text_index_s: closeWritingIndex,
    text_index_file_bytes: indexFileBytes,
  },
});
