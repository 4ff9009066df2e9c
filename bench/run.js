// `pnpm bench`: runs every benchmark in its own process and keeps results in bench/results/*.json.
// BENCH_ONLY=search,ingest (or `pnpm bench search ingest`) to pick; BENCH_ROWS to change the store size (default 1,000,000).
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildBenchAddon } from './lib/bench-addon.js';

const here = dirname(fileURLToPath(import.meta.url));
// `pnpm bench cluster search`: names as arguments work like BENCH_ONLY.
const named = process.argv.slice(2).filter(Boolean);
const only = named.length > 0 ? named : process.env.BENCH_ONLY?.split(',').filter(Boolean);
// Long benchmarks that run only when named.
const OPT_IN = ['cluster'];
const files = readdirSync(here)
  .filter((f) => f.startsWith('bench-') && f.endsWith('.js'))
  .filter((f) => (only ? only.includes(f.slice(6, -3)) : !OPT_IN.includes(f.slice(6, -3))))
  .sort();
// Benchmarks that compare against the native baselines need the bench build of the addon.
if (files.some((f) => readFileSync(join(here, f), 'utf8').includes('./lib/bench-addon.js'))) {
  console.log('=== building the bench addon (cargo feature `bench`) into bench/.native/');
  buildBenchAddon();
}
let failed = 0;
for (const f of files) {
  console.log(`\n=== ${f}`);
  const r = spawnSync(process.execPath, ['--expose-gc', join(here, f)], { stdio: 'inherit', env: process.env });
  if (r.status !== 0) {
    failed++;
    console.error(`${f} failed with ${r.status ?? r.signal}`);
  }
}
process.exit(failed ? 1 : 0);
