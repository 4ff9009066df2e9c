/**
 * Model limits on the committed tiny BERT (512 positions): `--max-length` capped at the
 * model's position limit with a warning (from config.json, or from the graph when there is
 * none); a text that makes onnxruntime fail fails only its own request while its
 * batch-mates get their embeddings; onnxruntime prints nothing of its own on stderr.
 *
 * The real failure: a copy of the model whose tokenizer.json maps one word (`zzfail`) to
 * id 5000, past the model's 2,000-row word-embedding table — a tokenizer and model that
 * do not match, as happens with a hand-assembled model directory. onnxruntime's Gather
 * rejects the index for any batch holding that word.
 */
import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { positionLimit, positionTableRows } from '../ts/onnx/model-limits.js';
import { OnnxEmbedder } from '../ts/onnx/embedder.js';
import { InferenceServer } from '../ts/server/inference.js';
import { MemoryServer } from '../ts/server/memory.js';
import { ensureBuilt, root } from './helpers/build-dist.js';
import { connect, silentLogger } from './helpers/ws-client.js';

const FIXTURE = path.join(root, 'test/fixtures/tiny-bert');
const FAILING_WORD = 'zzfail';
const dirs: string[] = [];
const tempDir = (): string => {
  const d = mkdtempSync(path.join(tmpdir(), 'memsrv-limits-'));
  dirs.push(d);
  return d;
};

/** The fixture's model.onnx (and config.json unless `config` is false) with a tokenizer that maps FAILING_WORD past the vocabulary. */
function mismatchedModelDir(config = true): string {
  const dir = tempDir();
  copyFileSync(path.join(FIXTURE, 'model.onnx'), path.join(dir, 'model.onnx'));
  if (config) copyFileSync(path.join(FIXTURE, 'config.json'), path.join(dir, 'config.json'));
  const tok = JSON.parse(readFileSync(path.join(FIXTURE, 'tokenizer.json'), 'utf8'));
  tok.model.vocab[FAILING_WORD] = 5000;
  writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tok));
  return dir;
}

const longText = (words: number): string => Array.from({ length: words }, (_, i) => `word${i % 50}`).join(' ');

let mismatched: string;
let emb: OnnxEmbedder;
beforeAll(async () => {
  ensureBuilt(); // the onnxruntime worker runs from dist/onnx/worker.js
  mismatched = mismatchedModelDir();
  emb = await OnnxEmbedder.load({ model: mismatched, device: 'cpu', threads: 1, log: () => {} });
}, 180_000);
afterAll(async () => {
  await emb?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('max length within the model position limit', () => {
  it('reads the limit from config.json and from the graph; the smaller wins; RoBERTa loses two', async () => {
    expect(await positionTableRows(path.join(FIXTURE, 'model.onnx'))).toBe(512);
    expect(await positionLimit(FIXTURE, path.join(FIXTURE, 'model.onnx'))).toMatchObject({ tokens: 512, source: expect.stringMatching(/config.json/) });
    const noConfig = mismatchedModelDir(false);
    expect(await positionLimit(noConfig, path.join(noConfig, 'model.onnx'))).toEqual({ tokens: 512, source: 'the position-embedding table of model.onnx' });
    const lying = mismatchedModelDir(false);
    writeFileSync(path.join(lying, 'config.json'), JSON.stringify({ max_position_embeddings: 2048 }));
    expect((await positionLimit(lying, path.join(lying, 'model.onnx')))!.tokens).toBe(512);
    const roberta = tempDir();
    writeFileSync(path.join(roberta, 'config.json'), JSON.stringify({ model_type: 'roberta', max_position_embeddings: 514 }));
    expect((await positionLimit(roberta, path.join(roberta, 'model.onnx')))!.tokens).toBe(512); // no model.onnx: config only
    expect(await positionLimit(tempDir(), '/nonexistent/model.onnx')).toBeNull();
  });

  it('caps --max-length above the limit with a warning, and a text past the limit embeds (truncated)', async () => {
    for (const [dir, source] of [
      [FIXTURE, /config\.json max_position_embeddings/],
      [mismatchedModelDir(false), /position-embedding table of model\.onnx/],
    ] as const) {
      const lines: string[] = [];
      const e = await OnnxEmbedder.load({ model: dir, device: 'cpu', threads: 1, maxLength: 1024, log: (m) => lines.push(m) });
      try {
        expect(e.maxLength).toBe(512);
        const warning = lines.find((l) => l.includes('position limit'));
        expect(warning).toMatch(/--max-length 1024 is above the model's position limit of 512 tokens/);
        expect(warning).toMatch(source);
        const text = longText(700);
        expect(e.tokenCounts([text])[0]).toBe(512);
        const rows = await e.embed([text, 'short one']);
        expect(rows.length).toBe(2 * e.dims);
        expect(rows.every(Number.isFinite)).toBe(true);
      } finally {
        await e.close();
      }
    }
    // Within the limit: no warning, the value kept.
    const lines: string[] = [];
    const e = await OnnxEmbedder.load({ model: FIXTURE, device: 'cpu', threads: 1, maxLength: 300, log: (m) => lines.push(m) });
    expect(e.maxLength).toBe(300);
    expect(lines.filter((l) => l.includes('position limit'))).toEqual([]);
    await e.close();
  });
});

describe('a failing text fails alone', () => {
  it('the embedder itself rejects a batch holding the failing word (the failure is real)', async () => {
    await expect(emb.embed([`a ${FAILING_WORD} b`, 'fine'])).rejects.toMatchObject({ code: 'internal', message: /onnxruntime: .*out of data bounds/ });
  });

  it('inference: in a batch of 12 concurrent requests only the failing one gets an error; stats report it', async () => {
    const warnings: string[] = [];
    const server = new InferenceServer({ host: '127.0.0.1', port: 0, portRange: 0, logger: silentLogger, printListening: false, embedder: emb, rateLimit: false, maxWaitMs: 50, log: (m) => warnings.push(m) });
    const info = await server.listen();
    try {
      const clients = await Promise.all(Array.from({ length: 12 }, () => connect(`ws://127.0.0.1:${info.port}`)));
      const texts = clients.map((_, i) => (i === 5 ? `text five has ${FAILING_WORD} in it` : `text ${i} ${'more words '.repeat(i)}`));
      const replies = await Promise.all(clients.map((c, i) => c.request('embeddings', { text: texts[i] })));
      expect(server.batcher.retriedRuns).toBeGreaterThan(0); // it shared a run with others
      for (let i = 0; i < texts.length; i++) {
        if (i === 5) {
          expect(replies[i].status).toBe('error');
          expect(replies[i].code).toBe('internal');
          continue;
        }
        expect(replies[i].status).toBe('success');
        const alone = await emb.embed([texts[i]!]);
        const got = replies[i].data.embedding as number[];
        expect(Math.max(...got.map((v, k) => Math.abs(v - alone[k]!)))).toBeLessThan(1e-5);
      }
      const s = (await clients[0]!.request('stats')).data;
      expect(s.failed_texts).toBe(1);
      expect(s.padding_ratio).toBeGreaterThanOrEqual(1);
      expect(warnings.some((w) => /out of data bounds/.test(w))).toBe(true);
      // The server keeps serving.
      expect((await clients[1]!.request('embeddings', { text: 'after the failure' })).status).toBe('success');
      for (const c of clients) c.close();
    } finally {
      await server.close();
    }
  });

  it('memory: concurrent stores with one failing text store every other one', async () => {
    const mem = new MemoryServer({ host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false, embedder: emb, dataDir: tempDir() });
    const info = await mem.listen();
    try {
      const c = await connect(`ws://127.0.0.1:${info.port}`);
      const texts = Array.from({ length: 8 }, (_, i) => (i === 3 ? `note ${FAILING_WORD}` : `note number ${i}`));
      const replies = await Promise.all(texts.map((text) => c.request('store', { text })));
      expect(replies.map((r) => r.status)).toEqual(texts.map((_, i) => (i === 3 ? 'error' : 'success')));
      const st = (await c.request('stats')).data;
      expect(st.total_memories).toBe(7);
      c.close();
    } finally {
      await mem.close();
    }
  });
});

describe('CLI', () => {
  it('warns about the cap through its logger and prints nothing of onnxruntime on stderr', async () => {
    const bin = path.join(root, 'dist/cli/main.js');
    const dir = tempDir();
    const child = spawn(
      process.execPath,
      [bin, 'start', '--no-control', '--model', mismatched, '--device', 'cpu', '--max-length', '1024', '--host', '127.0.0.1', '--port', '0', '--inference-port', '0', '--data-dir', path.join(dir, 'data'), '--log-level', 'warn'],
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
      const port = Number(/inference server\s+ws:\/\/[^\s]+:(\d+)/.exec(stdout)![1]);
      const inf = await connect(`ws://127.0.0.1:${port}`);
      const [bad, good] = await Promise.all([
        inf.request('embeddings', { text: `this one has ${FAILING_WORD}` }),
        inf.request('embeddings', { text: 'this one is fine' }),
      ]);
      expect(bad.code).toBe('internal');
      expect(good.status).toBe('success');
      inf.close();
      // Every stderr line is one of our JSON log lines; the cap warning is among them.
      const lines = stderr.split('\n').filter(Boolean);
      for (const l of lines) expect(() => JSON.parse(l), l).not.toThrow();
      expect(stderr).not.toContain('\u001b['); // no coloured onnxruntime line
      const logged = lines.map((l) => JSON.parse(l) as { level: number; msg: string });
      expect(logged.some((l) => l.level === 40 && /--max-length 1024 is above the model's position limit of 512/.test(l.msg))).toBe(true);
      expect(logged.some((l) => /out of data bounds/.test(l.msg))).toBe(true);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
    }
  }, 90_000);
});
