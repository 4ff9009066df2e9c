// Issue 2 figure: durable ingest under fsync=always with 64 concurrent writers vs one
// fsync per put (a single writer awaiting each put), into an empty store, same run.
import { MemoryStore } from '../dist/native.js';
import { now, randomVectors, removeDir, saveResult, tempDir } from './common.js';

const D = 384;
const vecs = randomVectors(8192, D, 3);
const v = (i) => vecs.subarray((i % 8192) * D, (i % 8192 + 1) * D);

async function run(writers, perWriter, groupCommit = true) {
  const dir = tempDir('ms-bench-ingest-');
  const store = MemoryStore.open(dir, { dims: D, fsync: 'always', groupCommit });
  const before = store.stats().fsyncs;
  const t = now();
  await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      for (let i = 0; i < perWriter; i++) {
        const n = w * perWriter + i;
        await store.put([{ namespace: 'default', id: `w${w}-${i}`, text: `memory ${n}`, embedding: v(n) }]);
      }
    }),
  );
  const s = (now() - t) / 1000;
  const st = store.stats();
  store.close();
  removeDir(dir);
  const puts = writers * perWriter;
  return { writers, group_commit: groupCommit, puts, seconds: s, puts_per_s: puts / s, fsyncs: st.fsyncs - before, memories_per_fsync: puts / (st.fsyncs - before) };
}

// Each run is short (a fresh store, well under a second), so each figure is the median of
// REPEATS runs, alternating between the configurations; every run is kept in the JSON.
const REPEATS = 9;
const median = (runs) => [...runs].sort((a, b) => a.puts_per_s - b.puts_per_s)[runs.length >> 1];
const runs = { perPut: [], single: [], many: [] };
for (let r = 0; r < REPEATS; r++) {
  // Baseline: the same 64 concurrent writers, but every put committed with its own fsync.
  runs.perPut.push(await run(64, 10, false));
  runs.single.push(await run(1, 300));
  runs.many.push(await run(64, 60));
}
const perPut = median(runs.perPut);
const single = median(runs.single);
const many = median(runs.many);
const rates = (rs) => rs.map((x) => Math.round(x.puts_per_s));
saveResult('ingest', {
  store: { initial_memories: 0, dims: D, fsync: 'always', embedder: 'precomputed random 384-d vectors' },
  repeats: REPEATS,
  baseline_one_fsync_per_put_64_writers: perPut,
  single_writer: single,
  group_commit_64_writers: many,
  all_runs_puts_per_s: { baseline_one_fsync_per_put_64_writers: rates(runs.perPut), single_writer: rates(runs.single), group_commit_64_writers: rates(runs.many) },
  speedup_vs_one_fsync_per_put: many.puts_per_s / perPut.puts_per_s,
  speedup_vs_single_writer: many.puts_per_s / single.puts_per_s,
});
