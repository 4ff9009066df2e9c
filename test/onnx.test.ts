/**
 * The onnx embedder end to end on the committed tiny BERT fixture
 * (test/fixtures/tiny-bert, made by scripts/make-bert-onnx.mjs): token ids against an
 * independent WordPiece written here, pooling against onnxruntime + a JS mean pool,
 * batch invariance, the inference and memory servers on the model, 200 concurrent
 * requests, `overloaded`, devices, and broken model directories.
 */
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEmbedder } from '../ts/embedder.js';
import { ModelTokenizer } from '../ts/native.js';
import { OnnxEmbedder } from '../ts/onnx/embedder.js';
import { InferenceServer } from '../ts/server/inference.js';
import { MemoryServer } from '../ts/server/memory.js';
import { ensureBuilt, root } from './helpers/build-dist.js';
import { connect, silentLogger } from './helpers/ws-client.js';

const FIXTURE = path.join(root, 'test/fixtures/tiny-bert');
const tokenizerJson = JSON.parse(readFileSync(path.join(FIXTURE, 'tokenizer.json'), 'utf8'));
const vocab: Record<string, number> = tokenizerJson.model.vocab;
const dirs: string[] = [];
const tempDir = (): string => {
  const d = mkdtempSync(path.join(tmpdir(), 'memsrv-onnx-'));
  dirs.push(d);
  return d;
};

/** The CPU fallback can only be observed where CUDA cannot load: no NVIDIA device. */
const NVIDIA_GPU = existsSync('/dev/nvidia0');
const GPU_NOTE = 'an NVIDIA GPU is present: device auto picks CUDA, the CPU fallback cannot be observed';

let emb: OnnxEmbedder;
beforeAll(async () => {
  ensureBuilt(); // the onnxruntime worker runs from dist/onnx/worker.js
  emb = await OnnxEmbedder.load({ model: FIXTURE, device: 'cpu', threads: 1 });
}, 180_000);
afterAll(async () => {
  await emb?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Independent uncased BERT WordPiece for ASCII text (basic split + greedy longest match). */
function referenceIds(text: string, maxLength = Infinity): number[] {
  const words: string[] = [];
  for (const w of text.toLowerCase().split(/\s+/).filter(Boolean)) {
    let cur = '';
    for (const ch of w) {
      const c = ch.charCodeAt(0);
      const punct = (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
      if (punct) {
        if (cur) words.push(cur);
        words.push(ch);
        cur = '';
      } else cur += ch;
    }
    if (cur) words.push(cur);
  }
  const ids: number[] = [];
  for (const w of words) {
    const pieces: number[] = [];
    let start = 0;
    let bad = false;
    while (start < w.length) {
      let end = w.length;
      let found = -1;
      while (end > start) {
        const sub = (start > 0 ? '##' : '') + w.slice(start, end);
        if (sub in vocab) {
          found = vocab[sub]!;
          break;
        }
        end--;
      }
      if (found < 0) {
        bad = true;
        break;
      }
      pieces.push(found);
      start = end;
    }
    ids.push(...(bad ? [vocab['[UNK]']!] : pieces));
  }
  const body = ids.slice(0, Math.max(0, maxLength - 2));
  return [vocab['[CLS]']!, ...body, vocab['[SEP]']!];
}

function normalize(v: Float32Array): Float32Array {
  let s = 0;
  for (const x of v) s += x * x;
  const n = Math.sqrt(s);
  return v.map((x) => x / n);
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

const SAMPLES = [
  'Hello, world!',
  'The quick brown fox jumps over the lazy dog.',
  'unbelievable tokenization of zyxwv qqq',
  "memory-server's store: 42 items (ok?)",
];

describe('tokenizer (tokenizers crate, following tokenizer.json)', () => {
  it('gives the token ids of an independent WordPiece', () => {
    const tok = new ModelTokenizer(path.join(FIXTURE, 'tokenizer.json'), 128);
    expect(vocab['hello']).toBeDefined(); // the fixture has whole words …
    for (const s of SAMPLES) {
      const e = tok.encodeBatch([s]);
      const ids = Array.from(e.inputIds.subarray(0, e.lengths[0]!), Number);
      expect(ids).toEqual(referenceIds(s));
    }
    // … and splits unknown words into ## pieces rather than [UNK].
    const e = tok.encodeBatch(['zyxwv']);
    expect(e.lengths[0]).toBeGreaterThan(3);
    expect(Array.from(e.inputIds.subarray(0, e.lengths[0]!), Number)).not.toContain(vocab['[UNK]']);
  });

  it('pads a batch to its longest text with an attention mask, and truncates keeping [CLS]/[SEP]', () => {
    const tok = new ModelTokenizer(path.join(FIXTURE, 'tokenizer.json'), 8);
    const e = tok.encodeBatch(['a b', 'one two three four five six seven eight nine']);
    expect(e.batch).toBe(2);
    expect(e.seqLen).toBe(8);
    expect(Array.from(e.lengths)).toEqual([4, 8]);
    expect(Array.from(e.attentionMask, Number)).toEqual([1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]);
    const second = Array.from(e.inputIds.subarray(8, 16), Number);
    expect(second).toEqual(referenceIds('one two three four five six seven eight nine', 8));
    expect(second[7]).toBe(vocab['[SEP]']);
    expect(Array.from(tok.tokenCounts(['a b', 'one two three four five six seven eight nine']))).toEqual([4, 8]);
  });
});

describe('onnx embedder', () => {
  it('takes dims from the model and reports name, hash and device', () => {
    const cfg = JSON.parse(readFileSync(path.join(FIXTURE, 'config.json'), 'utf8'));
    expect(emb.dims).toBe(cfg.hidden_size ?? cfg.hidden);
    expect(emb.device).toBe('cpu');
    expect(emb.name).toBe('onnx:tiny-bert');
    expect(emb.hash).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  it('mean pooling + normalization match a reference computed from onnxruntime in the test', async () => {
    const session = await ort.InferenceSession.create(path.join(FIXTURE, 'model.onnx'));
    try {
      for (const s of SAMPLES) {
        const ids = referenceIds(s);
        const n = ids.length;
        const out = await session.run({
          input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, n]),
          attention_mask: new ort.Tensor('int64', new BigInt64Array(n).fill(1n), [1, n]),
          token_type_ids: new ort.Tensor('int64', new BigInt64Array(n), [1, n]),
        });
        const hidden = out[session.outputNames[0]!]!.data as Float32Array;
        const d = emb.dims;
        const mean = new Float32Array(d);
        for (let t = 0; t < n; t++) for (let k = 0; k < d; k++) mean[k]! += hidden[t * d + k]! / n;
        const ours = await emb.embed([s]);
        expect(maxDiff(ours, normalize(mean))).toBeLessThan(1e-5);
      }
    } finally {
      await session.release();
    }
  });

  it('a text gives the same embedding alone and inside a padded batch (1e-5)', async () => {
    const batch = await emb.embed(SAMPLES);
    for (let i = 0; i < SAMPLES.length; i++) {
      const alone = await emb.embed([SAMPLES[i]!]);
      expect(maxDiff(alone, batch.subarray(i * emb.dims, (i + 1) * emb.dims))).toBeLessThan(1e-5);
      let norm = 0;
      for (const x of alone) norm += x * x;
      expect(Math.sqrt(norm)).toBeCloseTo(1, 5);
    }
    // Different texts give different embeddings.
    expect(maxDiff(batch.subarray(0, emb.dims), batch.subarray(emb.dims, 2 * emb.dims))).toBeGreaterThan(1e-3);
  });

  it('cuts token windows with offsets into the JS string', () => {
    const text = 'héllo wörld 😀 and some more words to cut into windows';
    const w = emb.tokenWindows(text, 4, 1);
    expect(w.length).toBeGreaterThan(2);
    for (const x of w) expect(text.slice(x.start, x.end)).toBe(x.text);
    expect(w[0]!.start).toBe(0);
    expect(w.at(-1)!.end).toBe(text.length);
  });

  it('device auto falls back to CPU with a log line; cuda without CUDA is a clear error', async (ctx) => {
    ctx.skip(NVIDIA_GPU, GPU_NOTE);
    const lines: string[] = [];
    const auto = await OnnxEmbedder.load({ model: FIXTURE, device: 'auto', threads: 1, log: (m) => lines.push(m) });
    try {
      expect(auto.device).toBe('cpu');
      expect(lines.join('\n')).toMatch(/CUDA execution provider unavailable.*using CPU/);
    } finally {
      await auto.close();
    }
    await expect(OnnxEmbedder.load({ model: FIXTURE, device: 'cuda', threads: 1 })).rejects.toThrow(/CUDA execution provider unavailable/);
  });

  it('a missing or broken model directory fails with a message naming the problem', async () => {
    await expect(createEmbedder({ model: '/nonexistent/model-dir' })).rejects.toThrow('Model directory not found: /nonexistent/model-dir');
    const noTok = tempDir();
    copyFileSync(path.join(FIXTURE, 'model.onnx'), path.join(noTok, 'model.onnx'));
    await expect(createEmbedder({ model: noTok })).rejects.toThrow(`Model directory ${noTok} has no tokenizer.json`);
    const noModel = tempDir();
    copyFileSync(path.join(FIXTURE, 'tokenizer.json'), path.join(noModel, 'tokenizer.json'));
    await expect(createEmbedder({ model: noModel })).rejects.toThrow(`Model directory ${noModel} has no model.onnx`);
    const brokenModel = tempDir();
    copyFileSync(path.join(FIXTURE, 'tokenizer.json'), path.join(brokenModel, 'tokenizer.json'));
    writeFileSync(path.join(brokenModel, 'model.onnx'), Buffer.from('this is not an onnx model'));
    await expect(createEmbedder({ model: brokenModel, device: 'cpu' })).rejects.toThrow(`${path.join(brokenModel, 'model.onnx')}: onnxruntime cannot run this model`);
    const brokenTok = tempDir();
    copyFileSync(path.join(FIXTURE, 'model.onnx'), path.join(brokenTok, 'model.onnx'));
    writeFileSync(path.join(brokenTok, 'tokenizer.json'), '{"not": "a tokenizer"}');
    await expect(createEmbedder({ model: brokenTok })).rejects.toThrow(`${path.join(brokenTok, 'tokenizer.json')}: cannot load the tokenizer`);
    await expect(createEmbedder({ kind: 'onnx' })).rejects.toThrow('needs --model');
  });
});

describe('servers on the onnx embedder', () => {
  it('inference: 200 concurrent requests from 20 connections, each equal to its solo embedding, in batches', async () => {
    const server = new InferenceServer({ host: '127.0.0.1', port: 0, portRange: 0, logger: silentLogger, printListening: false, embedder: emb, rateLimit: false });
    const info = await server.listen();
    try {
      const clients = await Promise.all(Array.from({ length: 20 }, () => connect(`ws://127.0.0.1:${info.port}`)));
      const texts = Array.from({ length: 200 }, (_, i) => `request number ${i} about ${SAMPLES[i % SAMPLES.length]}`);
      const replies = await Promise.all(texts.map((text, i) => clients[i % 20]!.request('embeddings', { text })));
      for (let i = 0; i < texts.length; i += 37) {
        const alone = await emb.embed([texts[i]!]);
        expect(maxDiff(Float32Array.from(replies[i].data.embedding as number[]), alone)).toBeLessThan(1e-5);
      }
      for (const r of replies) {
        expect(r.status).toBe('success');
        expect(r.data.dims).toBe(emb.dims);
        expect(r.data.model).toBe('onnx:tiny-bert');
      }
      const s = (await clients[0]!.request('stats')).data;
      expect(s.device).toBe('cpu');
      expect(s.model).toBe('onnx:tiny-bert');
      expect(s.max_batch).toBe(32);
      expect(s.requests).toBeGreaterThanOrEqual(200);
      expect(s.batches).toBeLessThan(200 / 2);
      expect(s.avg_batch_size).toBeGreaterThan(2);
      for (const c of clients) c.close();
    } finally {
      await server.close();
    }
  });

  it('inference: overloaded when the queue is full; the rest succeed', async () => {
    const server = new InferenceServer({ host: '127.0.0.1', port: 0, portRange: 0, logger: silentLogger, printListening: false, embedder: emb, rateLimit: false, maxQueue: 4, maxBatch: 2 });
    const info = await server.listen();
    try {
      const c = await connect(`ws://127.0.0.1:${info.port}`);
      const replies = await Promise.all(Array.from({ length: 120 }, (_, i) => c.request('embeddings', { text: `text ${i} ${SAMPLES[1]}` })));
      const over = replies.filter((r) => r.status !== 'success');
      expect(over.length).toBeGreaterThan(0);
      for (const r of over) {
        expect(r.code).toBe('overloaded');
        expect(r.message).toMatch(/queue is full/);
      }
      expect(replies.filter((r) => r.status === 'success').length).toBeGreaterThan(4);
      c.close();
    } finally {
      await server.close();
    }
  });

  it('inference: process cuts windows in model tokens and embeds them in one run', async () => {
    const server = new InferenceServer({ host: '127.0.0.1', port: 0, portRange: 0, logger: silentLogger, printListening: false, embedder: emb });
    const info = await server.listen();
    try {
      const c = await connect(`ws://127.0.0.1:${info.port}`);
      const text = 'one two three four five six seven eight nine ten eleven twelve';
      const before = emb.timings.runs;
      const r = await c.request('process', { text, context: ['numbers counting'], config: { max_tokens: 5, stride: 2 } });
      expect(emb.timings.runs - before).toBe(1);
      const tokens = new ModelTokenizer(path.join(FIXTURE, 'tokenizer.json'), 512).tokenCounts([text])[0]! - 2; // without [CLS]/[SEP]
      expect(tokens).toBeGreaterThan(5);
      expect(r.data.chunks.length).toBe(Math.ceil((tokens - 5) / 3) + 1); // windows of 5 tokens stepping by 3
      for (const ch of r.data.chunks) {
        expect(text.slice(ch.start, ch.end)).toBe(ch.text);
        expect(ch.significance).toBeGreaterThanOrEqual(0);
        expect(ch.significance).toBeLessThanOrEqual(1);
      }
      expect(r.data.embedding.length).toBe(emb.dims);
      c.close();
    } finally {
      await server.close();
    }
  });

  it('memory: embeds with the model; a retrieve by query finds the stored text; the directory remembers the model', async () => {
    const dataDir = tempDir();
    const mem = new MemoryServer({ host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false, embedder: emb, dataDir });
    const info = await mem.listen();
    try {
      const c = await connect(`ws://127.0.0.1:${info.port}`);
      for (const s of SAMPLES) expect((await c.request('store', { text: s })).type).toBe('store');
      const r = await c.request('retrieve', { query: SAMPLES[1], count: 2 });
      expect(r.data.memories[0].text).toBe(SAMPLES[1]);
      expect(r.data.memories[0].score).toBeCloseTo(1, 4);
      const st = (await c.request('stats')).data;
      expect(st.model).toBe('onnx:tiny-bert');
      expect(st.dims).toBe(emb.dims);
      c.close();
    } finally {
      await mem.close();
    }
    // The hash embedder (384 dims) cannot open a directory written with the 64-dim model.
    const other = new MemoryServer({ host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false, dataDir });
    await expect(other.listen()).rejects.toThrow(/dim/i);
    await other.close();
  });

  it('CLI: --model runs both supervised children on the model (auto device falls back to CPU)', async (ctx) => {
    ctx.skip(NVIDIA_GPU, GPU_NOTE);
    const bin = path.join(root, 'dist/cli/main.js');
    const dir = tempDir();
    const child = spawn(
      process.execPath,
      [bin, 'start', '--model', FIXTURE, '--host', '127.0.0.1', '--port', '0', '--inference-port', '0', '--control-port', '0', '--data-dir', path.join(dir, 'data'), '--log-level', 'warn'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    try {
      const deadline = Date.now() + 60_000;
      while (!stdout.includes('Ctrl-C to stop')) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`CLI did not start: ${stdout}\n${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const port = (name: string): number => Number(new RegExp(`${name}\\s+ws://[^\\s]+:(\\d+)`).exec(stdout)![1]);
      expect(stdout).toMatch(/embedder onnx .*tiny-bert, device auto/);
      const mem = await connect(`ws://127.0.0.1:${port('memory server')}`);
      const inf = await connect(`ws://127.0.0.1:${port('inference server')}`);
      await mem.request('store', { text: SAMPLES[0] });
      await mem.request('store', { text: SAMPLES[1] });
      const r = await mem.request('retrieve', { query: SAMPLES[1], count: 1 });
      expect(r.data.memories[0].text).toBe(SAMPLES[1]);
      const ms = (await mem.request('stats')).data;
      const is = (await inf.request('stats')).data;
      for (const st of [ms, is]) {
        expect(st.model).toBe('onnx:tiny-bert');
        expect(st.device).toBe('cpu');
        expect(st.dims).toBe(emb.dims);
      }
      // Each child reported the CUDA fallback in one log line.
      expect(stderr).toMatch(/CUDA execution provider unavailable.*using CPU/);
      mem.close();
      inf.close();
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
    }
  }, 90_000);

  it('CLI: a broken --model fails start-up with a clear message, in-process and supervised', () => {
    const bin = path.join(root, 'dist/cli/main.js');
    const bad = tempDir();
    mkdirSync(path.join(bad, 'model'));
    for (const extra of [['--no-control'], []]) {
      const r = spawnSync(
        process.execPath,
        [bin, 'start', '--model', path.join(bad, 'model'), '--host', '127.0.0.1', '--port', '0', '--inference-port', '0', '--control-port', '0', '--data-dir', path.join(bad, 'data'), ...extra],
        { encoding: 'utf8', timeout: 60_000 },
      );
      expect(r.status).toBe(1);
      expect(r.stderr).toContain(`has no model.onnx`);
    }
  });
});
