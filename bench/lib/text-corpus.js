// Synthetic memory texts for the text-search benchmarks: ~20 words each from a 50,000-word
// vocabulary with Zipf(1) frequencies (a few words in most texts, most words rare, as in
// natural language), deterministic. Word i is spelled from syllables (base 16).
import { rng } from '../common.js';

const SYL = ['ka', 'lo', 'mi', 'ne', 'ru', 'sa', 'ti', 'vo', 'zen', 'dor', 'pel', 'quin', 'bar', 'fy', 'gro', 'hex'];
export const VOCAB = 50_000;

export function word(i) {
  let w = '';
  do {
    w += SYL[i % 16];
    i = Math.floor(i / 16);
  } while (i > 0);
  return w;
}

/** `next()` → the next ~20-word text (the same sequence for the same seed). */
export function textSource(seed = 4242, words = 20) {
  const cdf = new Float64Array(VOCAB);
  let s = 0;
  for (let r = 1; r <= VOCAB; r++) cdf[r - 1] = s += 1 / r;
  const vocab = Array.from({ length: VOCAB }, (_, i) => word(i));
  const r = rng(seed);
  const pick = () => {
    const u = r() * s;
    let lo = 0;
    let hi = VOCAB - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    return vocab[lo];
  };
  return () => {
    const out = new Array(words);
    for (let k = 0; k < words; k++) out[k] = pick();
    return out.join(' ');
  };
}

/** Query q of a sequence: two mid-frequency words and a rare one, as users type names. */
export function textQuery(q) {
  return `${word(50 + (q % 400))} ${word(500 + ((q * 7) % 5000))} ${word(20_000 + ((q * 13) % 29_000))}`;
}
