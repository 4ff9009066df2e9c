// Where the ANN graph starts to pay for writes (docs/search.md, "Where the graph pays"):
// durable batch `put` of 1,000 clustered 384-d vectors at a time (the data of bench-scale.js),
// seconds per 10,000 stored, for one graph threshold. Run it twice, e.g.
//   node bench/ann-threshold.js 200000 1000000000   (no graph: the exact significance pass)
//   node bench/ann-threshold.js 200000 20000        (a graph from 20,000 rows)
import { MemoryStore } from '../dist/native.js';
import { now, removeDir, tempDir } from './common.js';
import { clusteredData } from './lib/clustered.js';
const N = Number(process.argv[2] ?? 50000);
const D = 384;
const BATCH = 1000;
const clustered = clusteredData(N, D);
const annMinRows = Number(process.argv[3] ?? 20000);
const dir = tempDir('ms-ab-');
const store = MemoryStore.open(dir, { dims: D, fsync: 'always', annMinRows });
const t = now();
let t10 = now();
for (let s = 0; s < N; s += BATCH) {
  const items = [];
  const data = clustered(s, BATCH, 7);
  for (let i = s; i < s + BATCH; i++) items.push({ namespace: 'scale', id: 'm' + i, text: 'memory ' + i, metadata: '{}', embedding: data.subarray((i - s) * D, (i - s + 1) * D) });
  await store.put(items);
  if ((s + BATCH) % 10000 === 0) {
    console.log(`${s + BATCH} rows: ${((now() - t10) / 1000).toFixed(2)} s for the last 10,000`);
    t10 = now();
  }
}
console.log(`annMinRows ${annMinRows}: ${N} rows in ${((now() - t) / 1000).toFixed(1)} s (rows waiting for the graph: ${store.stats().annPending})`);
store.close();
removeDir(dir);
