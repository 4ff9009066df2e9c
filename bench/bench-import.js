// #24: `memory-server import` of BENCH_IMPORT_ROWS (default 100,000) JSON lines on each of its
// paths, into an empty data directory, fsync always, the hash embedder (384-d):
// - recorded: export-format lines (significance, associations, timestamp, embedding with 7
//   significant digits, as `export` writes them) → bulk load, no scan. The baseline.
// - scored: a user's own JSONL of texts + embeddings (no id, significance or associations) →
//   the store's batch put, significance and associations computed like `store` (one
//   nearest-neighbour pass per batch of 1,000 over everything stored before it).
// - scored_texts: texts only → embedded by the hash embedder, then as `scored`.
// Each is the CLI end to end (node dist/cli/main.js import), wall time from spawn to exit.
import { spawnSync } from 'node:child_process';
import { createWriteStream, statSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { now, randomVectors, removeDir, rng, saveResult, tempDir } from './common.js';

const ROWS = Number(process.env.BENCH_IMPORT_ROWS ?? 100_000);
const D = 384;
const cli = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli', 'main.js');
const POOL = 8192;
const vecs = randomVectors(POOL, D, 7);
const vec = (i) => Array.from(vecs.subarray((i % POOL) * D, ((i % POOL) + 1) * D), (x) => Number(x.toPrecision(7)));
const WORDS = 'garden invoice travel meeting recipe contract workout library heron violet lake piano lesson thursday budget'.split(' ');

function text(i, r) {
  const w = () => WORDS[Math.floor(r() * WORDS.length)];
  return `Note ${i}: ${w()} ${w()} and ${w()} came up again; remember the ${w()} before the ${w()} on Friday, and tell the team about the ${w()}.`;
}

/** Writes ROWS lines of one kind; resolves with the file's path and size. */
async function writeFile(dir, kind) {
  const file = join(dir, `${kind}.jsonl`);
  const out = createWriteStream(file);
  const r = rng(11);
  const t0 = Date.parse('2025-01-01T00:00:00.000Z');
  for (let i = 0; i < ROWS; i++) {
    const base = { text: text(i, r), metadata: { n: i, topic: WORDS[i % WORDS.length] } };
    let row;
    if (kind === 'recorded') {
      const associations = Array.from({ length: i % 4 }, (_, k) => `m${(i * 7 + k * 13) % ROWS}`);
      row = { namespace: 'default', id: `m${i}`, ...base, significance: Number(r().toPrecision(7)), timestamp: new Date(t0 + i * 1000).toISOString(), associations, embedding: vec(i) };
    } else if (kind === 'scored') row = { ...base, embedding: vec(i) };
    else row = base;
    if (!out.write(JSON.stringify(row) + '\n')) await new Promise((res) => out.once('drain', res));
  }
  await new Promise((res) => out.end(res));
  return { file, bytes: statSync(file).size };
}

async function run(kind) {
  const work = tempDir('ms-bench-import-');
  try {
    const { file, bytes } = await writeFile(work, kind);
    const dataDir = join(work, 'data');
    const t = now();
    const r = spawnSync(process.execPath, [cli, 'import', file, '--data-dir', dataDir, '--fsync', 'always', '--log-level', 'silent'], { encoding: 'utf8' });
    const seconds = (now() - t) / 1000;
    if (r.status !== 0) throw new Error(`import ${kind} failed (${r.status}): ${r.stderr}`);
    console.error(`${kind}: ${r.stdout.trim()} in ${seconds.toFixed(1)} s`);
    return { lines: ROWS, file_bytes: bytes, seconds, lines_per_s: ROWS / seconds, summary: r.stdout.trim().replace(work, '<tmp>') };
  } finally {
    removeDir(work);
  }
}

const recorded = await run('recorded');
const scored = await run('scored');
const scoredTexts = await run('scored_texts');
saveResult('import', {
  setup: { lines: ROWS, dims: D, fsync: 'always', embedder: 'hash', batch: 1000, store: 'empty data directory' },
  recorded_bulk_load: recorded,
  scored_put_with_embeddings: scored,
  scored_put_texts_embedded: scoredTexts,
  scored_vs_recorded_time: scored.seconds / recorded.seconds,
});
