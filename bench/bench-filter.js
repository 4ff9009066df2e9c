// Issue 25 figures: filtered reads over N × 384 (default 1,000,000; BENCH_ROWS) with the filter
// language's logical and array operators. Filters the posting lists answer ($or of
// equalities, $contains, $not inside an $and) against the unfiltered f32 scan and against
// a filter of the same selectivity that must be checked row by row (an $or with a range
// branch), for a search, a retrieve without query (top 10 by significance) and a list page.
import { MemoryStore } from '../dist/native.js';
import { median, now, randomVectors, removeDir, saveResult, tempDir } from './common.js';

const N = Number(process.env.BENCH_ROWS ?? 1_000_000);
const D = 384;
const K = 10;

console.log(`generating ${N} × ${D} vectors…`);
const data = randomVectors(N, D, 11);
const query = randomVectors(1, D, 12);

const dir = tempDir('ms-bench-filter-');
const store = MemoryStore.open(dir, { dims: D, fsync: 'off' });
const t0 = Date.now() - N;
console.log('bulk loading…');
const BATCH = 20000;
for (let s = 0; s < N; s += BATCH) {
  const recs = [];
  for (let i = s; i < Math.min(N, s + BATCH); i++) {
    // 1% of memories are "rare", half of them kind a and half kind b, a third tagged t1.
    const block = Math.floor(i / 100);
    const metadata =
      i % 100 === 7
        ? { tag: 'rare', n: i % 1000, kind: block % 2 ? 'a' : 'b', tags: [`t${block % 3}`, 'x'] }
        : { tag: 'common', n: i % 1000, kind: 'c', tags: ['y'] };
    recs.push({ namespace: 'default', id: `m${i}`, text: `memory ${i}`, metadata: JSON.stringify(metadata), significance: (i % 1000) / 1000, timestamp: t0 + i, embedding: data.subarray(i * D, (i + 1) * D) });
  }
  await store.bulkLoad(recs);
}

const FILTERS = {
  // Answered exactly by the posting lists (no per-row check).
  or_1pct: { $or: [{ kind: 'a' }, { kind: 'b' }] },
  // A superset from the posting lists (a scalar equal to t1 would be indexed alike), checked per candidate.
  contains_0_33pct: { tags: { $contains: 't1' } },
  // A complement within the namespace, intersected with an equality.
  and_not_0_5pct: { tag: 'rare', $not: { kind: 'a' } },
  // The same rows as and_not, but a range branch in the $or: every row is checked.
  or_with_range_branch_0_5pct: { $or: [{ kind: 'b' }, { n: { $lt: 0 } }] },
};

const time = (fn, reps) => {
  fn(); // warm
  const xs = [];
  for (let r = 0; r < reps; r++) {
    const t = now();
    fn();
    xs.push((now() - t) / 1000);
  }
  return median(xs);
};
const opts = { namespace: 'default', k: K, f32Scan: true };
const unfiltered = time(() => store.searchSync(query, 1, opts), 9);
const unfilteredTop = time(() => store.top({ namespace: 'default', k: K }), 9);

const figures = {};
for (const [name, f] of Object.entries(FILTERS)) {
  const filter = JSON.stringify(f);
  const hits = store.searchSync(query, 1, { ...opts, filter })[0].length;
  if (hits !== K) throw new Error(`${name}: ${hits} hits, expected ${K}`);
  const search = time(() => store.searchSync(query, 1, { ...opts, filter }), 9);
  const top = time(() => store.top({ namespace: 'default', k: K, filter }), 9);
  const list = time(() => store.list('default', 0, 100, filter), 9);
  figures[name] = {
    filter: f,
    search_top10_ms: search * 1000,
    search_speedup_vs_unfiltered_f32_scan: unfiltered / search,
    retrieve_without_query_top10_ms: top * 1000,
    list_100_ms: list * 1000,
  };
  console.log(`${name}: search ${(search * 1000).toFixed(2)} ms, top ${(top * 1000).toFixed(2)} ms, list ${(list * 1000).toFixed(2)} ms`);
}
store.close();
removeDir(dir);

saveResult('filter', {
  store: { memories: N, dims: D },
  unfiltered_f32_scan_top10_ms: unfiltered * 1000,
  unfiltered_retrieve_without_query_top10_ms: unfilteredTop * 1000,
  filters: figures,
  notes: 'searchSync with f32Scan (filtered searches take the f32 scan), top = retrieve without query, list = first page of 100; medians of 9 after a warm-up. or_with_range_branch selects the same share of rows as and_not but cannot use the posting lists, so it shows what the fast path saves.',
});
