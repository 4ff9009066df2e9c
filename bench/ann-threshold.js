// Where the ANN graph starts to pay for writes (docs/search.md, "Where the graph pays"):
// durable batch `put` of 1,000 clustered 384-d vectors at a time (the data of bench-scale.js),
// seconds per 10,000 stored, for one graph threshold. Run it twice, e.g.
//   node bench/ann-threshold.js 200000 1000000000   (no graph: the exact significance pass)
//   node bench/ann-threshold.js 200000 20000        (a graph from 20,000 rows)
import { MemoryStore } from '../dist/native.js';
import { now, removeDir, rng, tempDir } from './common.js';
const N = Number(process.argv[2] ?? 50000);
const D = 384;
const K = 10;
const BATCH = 1000;
const CENTRES = Math.max(10, Math.floor(N / 500));

const centres = (() => {
  const rc = rng(1);
  const c = new Float32Array(CENTRES * D);
  for (let i = 0; i < c.length; i++) c[i] = rc() * 2 - 1;
  return c;
})();

/** Clustered unit vectors (like text embeddings): rows `start`…`start + n − 1`, each a centre
 * (row × 7919 mod CENTRES) plus noise. Made a batch at a time (the generator is seeded per
 * batch) so that 5M × 384 (7.7 GB) is never held in JS next to the store's copy. */
function clustered(start, n, seed) {
  // A well-mixed seed per batch (murmur3's finalizer): nearby seeds would give xorshift
  // streams that start alike.
  let h = (seed * 0x9e3779b1 + start) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  const r = rng((h ^ (h >>> 16)) >>> 0);
  const out = new Float32Array(n * D);
  for (let k = 0; k < n; k++) {
    const c = (((start + k) * 7919) % CENTRES) * D;
    let s = 0;
    for (let j = 0; j < D; j++) {
      const v = centres[c + j] + 0.6 * (r() * 2 - 1);
      out[k * D + j] = v;
      s += v * v;
    }
    const inv = 1 / Math.sqrt(s);
    for (let j = 0; j < D; j++) out[k * D + j] *= inv;
  }
  return out;
}
const annMinRows = Number(process.argv[3] ?? 20000);
const dir = tempDir('ms-ab-');
const store = MemoryStore.open(dir, { dims: D, fsync: 'always', annMinRows });
let t = now(), t10 = now();
for (let s = 0; s < N; s += BATCH) {
  const items = [];
  const data = clustered(s, BATCH, 7);
  for (let i = s; i < s + BATCH; i++) items.push({ namespace: 'scale', id: 'm' + i, text: 'memory ' + i, metadata: '{}', embedding: data.subarray((i - s) * D, (i - s + 1) * D) });
  await store.put(items);
  if ((s + BATCH) % 10000 === 0) { console.log(s + BATCH, ((now() - t10) / 1000).toFixed(2) + ' s'); t10 = now(); }
}
console.log('annMinRows', annMinRows, 'total', ((now() - t) / 1000).toFixed(1), 's', JSON.stringify(store.stats().annPending));
store.close?.(); removeDir(dir);
