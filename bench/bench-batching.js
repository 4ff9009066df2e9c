// Padding-aware batching (issue #21) on the MiniLM-L6-shaped model (scripts/make-bert-onnx.mjs,
// generated into bench/.cache on first use), texts of mixed lengths.
//
// Workload: a stream of texts whose token counts (with [CLS]/[SEP]) follow a log-normal
// around 35 tokens (sigma 0.8), clamped to 5…250 — chat messages and notes, a few paragraphs.
// Each text is built from single-token vocabulary words, so its length is exact.
//
// Measured in one run, the baselines in the same process:
// - arrival order: onnxruntime alone, the stream cut into batches of 32 as it arrives
//   (each padded to its longest), pre-tokenized, in a tight loop (the server's session options);
// - sorted: onnxruntime alone on the same texts sorted by length in batches of 32 — what
//   removing padding can give at most;
// - ours: the inference server, 64 and 256 concurrent clients, one text per request, each
//   client sending its next text when the reply arrives: texts/s, p50/p99, the padded/real
//   token ratio (`stats.padding_ratio`) and the mean run size.
// BENCH_BATCHING_SECONDS (default 10) per measurement; every loop is bounded in count and time.
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { ModelTokenizer } from '../dist/native.js';
import { OnnxEmbedder } from '../dist/onnx/embedder.js';
import { InferenceServer } from '../dist/server/inference.js';
import { rng, saveResult } from './common.js';
import { MODEL_DIR, ensureModel, openClients } from './lib/onnx-model.js';

const SECONDS = Number(process.env.BENCH_BATCHING_SECONDS ?? 10);
const THREADS = availableParallelism();
const MAX_LENGTH = 256;
const BATCH = 32;
const MIN_RUNS = 16;

/** Token counts of the stream: log-normal around 35, 5…250. */
function streamLengths(n, seed = 21) {
  const r = rng(seed);
  return Array.from({ length: n }, () => {
    const gauss = Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
    return Math.max(5, Math.min(250, Math.round(Math.exp(Math.log(35) + 0.8 * gauss))));
  });
}

/** Texts of exactly those token counts, from whole-word single-token vocabulary entries. */
function textsOfLengths(lengths, tok) {
  const vocab = Object.keys(JSON.parse(tok).model.vocab).filter((w) => /^[a-z]{3,}$/.test(w));
  const r = rng(5);
  return lengths.map((n) => Array.from({ length: n - 2 }, () => vocab[Math.floor(r() * vocab.length)]).join(' '));
}

async function session() {
  return ort.InferenceSession.create(join(MODEL_DIR, 'model.onnx'), {
    executionProviders: ['cpu'],
    intraOpNumThreads: THREADS,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
    logSeverityLevel: 4,
  });
}

/** onnxruntime alone on `texts` in consecutive batches of BATCH, cycling, for SECONDS. */
async function ortAlone(texts, label) {
  const tok = new ModelTokenizer(join(MODEL_DIR, 'tokenizer.json'), MAX_LENGTH);
  const s = await session();
  const batches = [];
  let padded = 0;
  let real = 0;
  for (let i = 0; i + BATCH <= texts.length; i += BATCH) {
    const e = tok.encodeBatch(texts.slice(i, i + BATCH));
    padded += e.batch * e.seqLen;
    for (const l of e.lengths) real += l;
    batches.push({
      input_ids: new ort.Tensor('int64', e.inputIds, [e.batch, e.seqLen]),
      attention_mask: new ort.Tensor('int64', e.attentionMask, [e.batch, e.seqLen]),
      token_type_ids: new ort.Tensor('int64', e.tokenTypeIds, [e.batch, e.seqLen]),
    });
  }
  // A time-bounded loop runs only some batches: take them in a shuffled order so those are a
  // fair sample of the stream's lengths (from the front of the sorted list they would all be short).
  const r = rng(99);
  for (let i = batches.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [batches[i], batches[j]] = [batches[j], batches[i]];
  }
  await s.run(batches[0]); // warm-up
  let runs = 0;
  const t0 = performance.now();
  // At least MIN_RUNS batches (a sample of the lengths), within 4 × SECONDS.
  const more = (ms) => (ms < SECONDS * 1000 || runs < MIN_RUNS) && ms < 4 * SECONDS * 1000 && runs < 100_000;
  while (more(performance.now() - t0)) {
    await s.run(batches[runs % batches.length]);
    runs++;
  }
  const sec = (performance.now() - t0) / 1000;
  await s.release();
  const res = { order: label, batch: BATCH, runs, seconds: sec, texts_per_s: (runs * BATCH) / sec, padding_ratio: padded / real };
  console.log(res);
  return res;
}

/** `concurrency` clients, one text in flight each, texts taken from the stream in arrival order. */
async function load(server, texts, concurrency) {
  const clients = await openClients(`ws://127.0.0.1:${server.port}`, concurrency);
  const b = server.batcher;
  const before = { padded: b.paddedTokens, real: b.realTokens, batches: b.batches, embedded: b.embedded };
  const lat = [];
  let sent = 0;
  let errors = 0;
  let stop = false;
  const t0 = performance.now();
  await Promise.all(
    clients.map(
      (ws) =>
        new Promise((resolve) => {
          let started = 0;
          const next = () => {
            if (stop || sent >= 200_000) return resolve();
            const text = texts[sent++ % texts.length];
            started = performance.now();
            ws.send(JSON.stringify({ type: 'embeddings', id: sent, data: { text } }));
          };
          ws.on('message', (buf) => {
            if (JSON.parse(buf.toString()).status === 'error') errors++;
            else lat.push(performance.now() - started);
            next();
          });
          next();
        }),
    ),
    new Promise((r) => setTimeout(r, SECONDS * 1000)).then(() => (stop = true)),
  );
  const sec = (performance.now() - t0) / 1000;
  for (const ws of clients) ws.close();
  lat.sort((a, c) => a - c);
  const pct = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))];
  const runs = b.batches - before.batches;
  const r = {
    concurrency,
    requests: lat.length,
    errors,
    seconds: sec,
    texts_per_s: lat.length / sec,
    p50_ms: pct(0.5),
    p99_ms: pct(0.99),
    runs,
    avg_batch: runs ? (b.embedded - before.embedded) / runs : 0,
    padding_ratio: (b.paddedTokens - before.padded) / (b.realTokens - before.real),
  };
  console.log(r);
  return r;
}

await ensureModel();
const lengths = streamLengths(4096);
const texts = textsOfLengths(lengths, readFileSync(join(MODEL_DIR, 'tokenizer.json'), 'utf8'));
const sorted = texts.map((t, i) => [lengths[i], t]).sort((a, c) => a[0] - c[0]).map((x) => x[1]);

console.log(`onnxruntime alone, batches of ${BATCH} in arrival order …`);
const arrival = await ortAlone(texts, 'arrival');
console.log(`onnxruntime alone, batches of ${BATCH} sorted by length …`);
const sortedRes = await ortAlone(sorted, 'sorted');

const embedder = await OnnxEmbedder.load({ model: MODEL_DIR, device: 'cpu', maxBatch: BATCH, maxLength: MAX_LENGTH, threads: THREADS });
const server = new InferenceServer({ host: '127.0.0.1', port: 0, portRange: 0, logLevel: 'silent', printListening: false, embedder, rateLimit: 0, maxQueue: 8192 });
await server.listen();
const levels = {};
for (const c of [64, 256]) {
  console.log(`inference server, ${c} concurrent single-text clients …`);
  levels[c] = await load(server, texts, c);
}
await server.close();
await embedder.close();

const mean = lengths.reduce((a, c) => a + c, 0) / lengths.length;
saveResult('batching', {
  model: { shape: 'MiniLM-L6 (6 layers, hidden 384, 12 heads, FFN 1536, vocab 30522), random weights', threads: THREADS, device: 'cpu', max_length: MAX_LENGTH },
  workload: { texts: texts.length, tokens: 'log-normal around 35 (sigma 0.8), 5…250', mean_tokens: mean, seconds_per_measurement: SECONDS },
  ort_arrival_order_32: arrival,
  ort_sorted_32: sortedRes,
  server: levels,
  speedup_256_vs_arrival_order: levels[256].texts_per_s / arrival.texts_per_s,
  speedup_64_vs_arrival_order: levels[64].texts_per_s / arrival.texts_per_s,
  sorted_ceiling_vs_arrival_order: sortedRes.texts_per_s / arrival.texts_per_s,
});
process.exit(0);
