// The benchmarks' own build of the native addon: the product's code plus the baselines the
// benchmarks compare against (`benchReadBandwidth`, `benchPeakFlops`: cargo feature `bench`,
// never in the product's native/). It is built into bench/.native/ (gitignored) by
// `pnpm run build:bench-native`, which bench/run.js runs first; a bench file run on its own
// needs that build once.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BENCH_NATIVE_DIR = join(root, 'bench', '.native');
const loader = join(BENCH_NATIVE_DIR, 'index.cjs');

/** Build (or bring up to date: cargo skips what is fresh) the addon with the `bench` feature. */
export function buildBenchAddon() {
  const r = spawnSync('pnpm', ['run', '--silent', 'build:bench-native'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`building the bench addon failed (${r.error?.message ?? `exit ${r.status ?? r.signal}`})`);
}

/** The bench build of the addon (throws, saying how to build it, when it is missing). */
export function loadBenchAddon() {
  if (!existsSync(loader)) {
    throw new Error(`${loader} is missing: run \`pnpm run build:bench-native\` (bench/run.js does it)`);
  }
  return createRequire(import.meta.url)(loader);
}
