// Issue 2 figure: durable ingest under fsync=always with 64 concurrent writers vs one
// fsync per put (a single writer awaiting each put), into an empty store, same run.
import { MemoryStore } from '../dist/native.js';
import { now, randomVectors, removeDir, saveResult, tempDir } from './common.js';

const D = 384;
const vecs = randomVectors(8192, D, 3);
const v = (i) => vecs.subarray((i % 8192) * D, (i % 8192 + 1) * D);

async function run(writers, perWriter) {
  const dir = tempDir('ms-bench-ingest-');
  const store = MemoryStore.open(dir, { dims: D, fsync: 'always' });
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
  return { writers, puts, seconds: s, puts_per_s: puts / s, fsyncs: st.fsyncs - before, memories_per_fsync: puts / (st.fsyncs - before) };
}

const one = await run(1, 400);
const many = await run(64, 60);
saveResult('ingest', {
  store: { initial_memories: 0, dims: D, fsync: 'always' },
  one_fsync_per_put: one,
  concurrent_64: many,
  speedup: many.puts_per_s / one.puts_per_s,
});
