// Shared helpers for benchmarks: timing, results as JSON, deterministic data.
import { mkdirSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { tmpdir, cpus } from 'node:os';
import { fileURLToPath } from 'node:url';

export const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), 'results');

export function saveResult(name, result) {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const out = {
    bench: name,
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version },
    ...result,
  };
  writeFileSync(join(RESULTS_DIR, `${name}.json`), JSON.stringify(out, null, 2) + '\n');
  console.log(JSON.stringify(out, null, 2));
  return out;
}

export function tempDir(prefix) {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function removeDir(d) {
  rmSync(d, { recursive: true, force: true });
}

/** xorshift32 PRNG so every run uses the same data. */
export function rng(seed = 12345) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 4294967296;
  };
}

/** n × dims random vectors in [-1, 1), L2-normalized rows. */
export function randomVectors(n, dims, seed = 1) {
  const r = rng(seed);
  const out = new Float32Array(n * dims);
  for (let i = 0; i < n; i++) {
    let s = 0;
    const o = i * dims;
    for (let j = 0; j < dims; j++) {
      const v = r() * 2 - 1;
      out[o + j] = v;
      s += v * v;
    }
    const inv = 1 / Math.sqrt(s);
    for (let j = 0; j < dims; j++) out[o + j] *= inv;
  }
  return out;
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

export function now() {
  return performance.now();
}
