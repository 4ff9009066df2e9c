// Clustered unit vectors (like text embeddings) for the scale benchmarks: `rows / 500`
// centres (at least 10), each row a centre (row × 7919 mod centres) plus uniform noise 0.6.
import { rng } from '../common.js';

/** A generator of the clustered rows of an N-row data set, `dims` wide. */
export function clusteredData(rows, dims) {
  const centreCount = Math.max(10, Math.floor(rows / 500));
  const rc = rng(1);
  const centres = new Float32Array(centreCount * dims);
  for (let i = 0; i < centres.length; i++) centres[i] = rc() * 2 - 1;
  /** Rows `start`…`start + n − 1`. Made a batch at a time (the generator is seeded per batch)
   * so that 5M × 384 (7.7 GB) is never held in JS next to the store's copy. */
  return function clustered(start, n, seed) {
    // A well-mixed seed per batch (murmur3's finalizer): nearby seeds would give xorshift
    // streams that start alike.
    let h = (seed * 0x9e3779b1 + start) >>> 0;
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    const r = rng((h ^ (h >>> 16)) >>> 0);
    const out = new Float32Array(n * dims);
    for (let k = 0; k < n; k++) {
      const c = (((start + k) * 7919) % centreCount) * dims;
      let s = 0;
      for (let j = 0; j < dims; j++) {
        const v = centres[c + j] + 0.6 * (r() * 2 - 1);
        out[k * dims + j] = v;
        s += v * v;
      }
      const inv = 1 / Math.sqrt(s);
      for (let j = 0; j < dims; j++) out[k * dims + j] *= inv;
    }
    return out;
  };
}
