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

// Baseline: the same 64 concurrent writers, but every put committed with its own fsync.
const perPut = await run(64, 10, false);
const single = await run(1, 300);
const many = await run(64, 60);
saveResult('ingest', {
  store: { initial_memories: 0, dims: D, fsync: 'always', embedder: 'precomputed random 384-d vectors' },
  baseline_one_fsync_per_put_64_writers: perPut,
  single_writer: single,
  group_commit_64_writers: many,
  speedup_vs_one_fsync_per_put: many.puts_per_s / perPut.puts_per_s,
  speedup_vs_single_writer: many.puts_per_s / single.puts_per_s,
});
