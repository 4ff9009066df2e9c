// Re-embedding (issue #21, `--reembed`): a data directory written by the hash embedder,
// reopened with the MiniLM-L6-shaped ONNX model (scripts/make-bert-onnx.mjs, generated into
// bench/.cache on first use), re-embedded in the background while queries keep coming.
//
// Measured in one run, every baseline in the same process:
// - the embedder's own batch throughput: OnnxEmbedder.embed on pages of 512 of the same
//   texts, back to back (what the re-embedding asks of it), on a sample of the memories, as
//   the server runs it for its own batches (one session, intra-op threads = cores) — the
//   figure the target compares with; and the same for both shapes of its background instance
//   (`background()`, niceness +10): one single-threaded session per core side by side (what
//   the re-embedding runs on) and one session with the model's threads (the shape before);
//   on a loaded machine the niced instances get less of the CPU; and the model's own shape
//   on pages sorted by length (less padding, as the re-embedding cuts its batches);
// - re-embedding throughput: memories / wall time from the server's start to the switch (a
//   run stopped at BENCH_REEMBED_MAX_SECONDS: memories copied / time at the last progress
//   sample, with `finished: false`);
// - query latency: a fixed-rate `retrieve` load (text query, top 10; 4 connections,
//   BENCH_REEMBED_QPS in total), first against the same server and store with no
//   re-embedding (idle), then during the re-embedding; p50 / p99 of each.
// BENCH_REEMBED_ROWS (default 100,000) memories; BENCH_REEMBED_MODEL=hash-variant swaps the
// model for a permuted hash embedder (a quick check of the path, not the figure);
// BENCH_REEMBED_BG=intra re-embeds on the one-session shape instead (the A/B);
// BENCH_REEMBED_SAMPLE texts (default 4,096) for each model-alone figure.
// Load: `ws` clients in this process; bounded in count and time.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { MemoryStore, hashEmbed, HASH_DIMS } from '../dist/native.js';
import { OnnxEmbedder } from '../dist/onnx/embedder.js';
import { MemoryServer } from '../dist/server/memory.js';
import { writeModelDir } from '../scripts/make-bert-onnx.mjs';
import { removeDir, rng, saveResult, tempDir } from './common.js';

const here = dirname(fileURLToPath(import.meta.url));
const MODEL_DIR = join(here, '.cache', 'minilm-l6-random');
const ROWS = Number(process.env.BENCH_REEMBED_ROWS ?? 100_000);
const QPS = Number(process.env.BENCH_REEMBED_QPS ?? 50);
const IDLE_SECONDS = Number(process.env.BENCH_REEMBED_IDLE_SECONDS ?? 10);
const MODEL = process.env.BENCH_REEMBED_MODEL ?? 'minilm';
/** The longest a re-embedding may run before the benchmark gives up. */
const MAX_SECONDS = Number(process.env.BENCH_REEMBED_MAX_SECONDS ?? 3600);
/** The background instance's shape: `sessions` (one single-threaded session per core) or `intra` (one session, the model's threads). */
const BG = process.env.BENCH_REEMBED_BG ?? 'sessions';
/** Texts of the model-alone measurements (each baseline runs on the same sample). */
const SAMPLE = Number(process.env.BENCH_REEMBED_SAMPLE ?? (MODEL === 'minilm' ? 4096 : 100_000));
if (BG !== 'sessions' && BG !== 'intra') throw new Error(`BENCH_REEMBED_BG must be sessions or intra, got ${BG}`);

const WORDS = (
  'the memory server stores text with metadata and an embedding then finds similar ideas fast ' +
  'people remember small details about places friends music books weather food travel work ' +
  'a quick brown fox jumps over lazy dogs while rain falls softly on quiet city streets tonight'
).split(' ');
function sentences(n, seed = 11) {
  const r = rng(seed);
  const out = [];
  for (let i = 0; i < n; i++) {
    const len = 10 + Math.floor(r() * 7);
    const w = [];
    for (let j = 0; j < len; j++) w.push(WORDS[Math.floor(r() * WORDS.length)]);
    out.push(`${w.join(' ')} (${i}).`);
  }
  return out;
}

/** A stand-in model: the hash embedder with its dimensions permuted (another identity, same cost). */
class HashVariant {
  name = 'hash-variant';
  hash = 'perm7';
  dims = HASH_DIMS;
  device = 'cpu';
  maxBatch = 256;
  async embed(texts) {
    const h = hashEmbed(texts);
    const out = new Float32Array(h.length);
    for (let r = 0; r < texts.length; r++) for (let i = 0; i < HASH_DIMS; i++) out[r * HASH_DIMS + i] = h[r * HASH_DIMS + ((i * 7 + 3) % HASH_DIMS)];
    return out;
  }
  close() {}
}

async function loadModel() {
  if (MODEL === 'hash-variant') return new HashVariant();
  if (!existsSync(join(MODEL_DIR, 'model.onnx'))) {
    console.log(`generating the MiniLM-shaped model into ${MODEL_DIR}`);
    await writeModelDir(MODEL_DIR, 'minilm');
  }
  return OnnxEmbedder.load({ model: MODEL_DIR, device: 'cpu' });
}

/** The data directory as the hash embedder writes it, filled through the store's durable put. */
async function seed(dir, texts) {
  const store = MemoryStore.open(dir, { dims: HASH_DIMS, fsync: 'off', embedderName: 'hash-v1', embedderHash: 'builtin' });
  for (let i = 0; i < texts.length; i += 1000) {
    const part = texts.slice(i, i + 1000);
    const v = hashEmbed(part);
    await store.put(part.map((text, j) => ({ namespace: 'default', id: `m${i + j}`, text, embedding: v.subarray(j * HASH_DIMS, (j + 1) * HASH_DIMS) })));
  }
  await store.flush();
  store.close();
}

/**
 * The embedder alone on pages of 512 texts (the re-embedding's call shape); `sorted`: each
 * page sorted by length first (as the re-embedding cuts its batches), less padding.
 */
async function embedderAlone(embedder, texts, sorted = false) {
  await embedder.embed(texts.slice(0, 64)); // warm-up
  const t0 = performance.now();
  for (let i = 0; i < texts.length; i += 512) {
    let page = texts.slice(i, i + 512);
    if (sorted) page.sort((a, b) => a.length - b.length);
    await embedder.embed(page);
  }
  const s = (performance.now() - t0) / 1000;
  return { texts: texts.length, seconds: s, texts_per_s: texts.length / s };
}

function openClients(url, n) {
  return Promise.all(
    Array.from({ length: n }, () => new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: false });
      ws.once('open', () => resolve(ws));
      ws.once('error', reject);
    })),
  );
}

/** Fixed-rate `retrieve` load over 4 connections until `done()` (or `maxSeconds`); latencies in ms. */
async function queryLoad(port, queries, done, maxSeconds) {
  const clients = await openClients(`ws://127.0.0.1:${port}`, 4);
  const lat = [];
  const sentAt = new Map();
  let errors = 0;
  let id = 0;
  for (const ws of clients) {
    ws.on('message', (buf) => {
      const m = JSON.parse(buf.toString());
      const t = sentAt.get(m.id);
      if (t === undefined) return;
      sentAt.delete(m.id);
      if (m.status !== 'success') errors++;
      else lat.push(performance.now() - t);
    });
  }
  const t0 = performance.now();
  const interval = 1000 / QPS;
  await new Promise((resolve) => {
    const tick = () => {
      const elapsed = performance.now() - t0;
      if (done() || elapsed > maxSeconds * 1000) return resolve();
      // Catch up to the schedule (open loop): requests are sent when due, whatever the replies.
      while (id < (elapsed / interval) + 1) {
        const ws = clients[id % clients.length];
        sentAt.set(++id, performance.now());
        ws.send(JSON.stringify({ type: 'retrieve', id, data: { query: queries[id % queries.length], count: 10 } }));
      }
      setTimeout(tick, Math.max(1, interval / 2));
    };
    tick();
  });
  // Replies still out: wait for them (bounded).
  const end = performance.now() + 10_000;
  while (sentAt.size > 0 && performance.now() < end) await new Promise((r) => setTimeout(r, 10));
  for (const ws of clients) ws.close();
  lat.sort((a, b) => a - b);
  const pct = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] : null);
  return { requests: lat.length, errors, unanswered: sentAt.size, seconds: (performance.now() - t0) / 1000, p50_ms: pct(0.5), p99_ms: pct(0.99), max_ms: lat.at(-1) ?? null };
}

const texts = sentences(ROWS);
const queries = sentences(512, 99).map((q) => q.slice(0, 60));
const dir = tempDir('memsrv-bench-reembed-');
try {
  console.log(`seeding ${ROWS} memories with the hash embedder …`);
  await seed(dir, texts);
  const model = await loadModel();
  console.log(`${model.name} alone on pages of 512 …`);
  const sample = texts.slice(0, Math.min(texts.length, SAMPLE));
  const alone = await embedderAlone(model, sample);
  console.log(alone);
  const aloneSorted = await embedderAlone(model, sample, true);
  console.log('pages sorted by length:', aloneSorted);
  const shapes = model.background
    ? { sessions: { sessions: model.threads * model.concurrentRuns, threads: 1 }, intra: { sessions: 1, threads: model.threads } }
    : null;
  const aloneShapes = {};
  for (const [name, shape] of Object.entries(shapes ?? {})) {
    console.log(`${model.name}'s background instance (${shape.sessions} session(s) × ${shape.threads} thread(s)) alone on pages of 512 …`);
    const bg = await model.background(shape);
    aloneShapes[name] = { ...shape, ...(await embedderAlone(bg, sample)) };
    await bg.close();
    console.log(aloneShapes[name]);
  }
  // The re-embedding runs on the chosen shape.
  if (shapes) {
    const background = model.background.bind(model);
    model.background = () => background(shapes[BG]);
  }
  const aloneBackground = aloneShapes[BG] ?? null;

  console.log(`idle: ${QPS} retrieve/s for ${IDLE_SECONDS} s, no re-embedding …`);
  let server = new MemoryServer({ dataDir: dir, host: '127.0.0.1', port: 0, logLevel: 'silent', printListening: false, rateLimit: 0 });
  let info = await server.listen();
  const idleStart = performance.now();
  const idle = await queryLoad(info.port, queries, () => performance.now() - idleStart > IDLE_SECONDS * 1000, IDLE_SECONDS + 5);
  console.log(idle);
  await server.close();

  console.log(`re-embedding ${ROWS} memories with ${model.name} under the same query load …`);
  const t0 = performance.now();
  server = new MemoryServer({ dataDir: dir, host: '127.0.0.1', port: 0, logLevel: 'silent', printListening: false, rateLimit: 0, embedder: model, reembed: true });
  info = await server.listen();
  const samples = [];
  const sampler = setInterval(() => {
    const p = server.reembedProgress();
    if (p) samples.push({ t_s: Math.round(performance.now() - t0) / 1000, done: p.done, total: p.total });
  }, 5000);
  const during = await queryLoad(info.port, queries, () => server.reembedProgress() === null, MAX_SECONDS);
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  const finished = server.reembedProgress() === null && server.embedder.name === model.name;
  console.log(during);
  await server.close();
  await model.close?.();

  // A run stopped at BENCH_REEMBED_MAX_SECONDS: the rate up to its last progress sample.
  const last = samples.at(-1);
  const reembedPerS = finished ? ROWS / seconds : last ? last.done / last.t_s : 0;
  saveResult('reembed', {
    model: MODEL === 'minilm' ? { shape: 'MiniLM-L6 (6 layers, hidden 384), random weights', dir: MODEL_DIR, device: 'cpu' } : { name: model.name },
    rows: ROWS,
    query_load: { qps: QPS, connections: 4, query: 'retrieve, text query, top 10', idle_seconds: IDLE_SECONDS },
    finished,
    background_shape: shapes ? { name: BG, ...shapes[BG] } : null,
    embedder_alone: alone,
    embedder_alone_sorted_pages: aloneSorted,
    embedder_alone_background: aloneBackground,
    embedder_alone_background_shapes: aloneShapes,
    reembed: { seconds, texts_per_s: reembedPerS, progress: samples },
    fraction_of_embedder: reembedPerS / alone.texts_per_s,
    fraction_of_embedder_sorted_pages: reembedPerS / aloneSorted.texts_per_s,
    fraction_of_background_embedder: aloneBackground ? reembedPerS / aloneBackground.texts_per_s : null,
    queries_idle: idle,
    queries_during: during,
    p99_during_over_idle: during.p99_ms / idle.p99_ms,
  });
} finally {
  removeDir(dir);
}
process.exit(0);
