/**
 * `--model <hub id>` against a loopback hub (test/helpers/fake-hub.ts) serving the tiny BERT
 * fixture in the hub's URL layout: the Hugging Face cache layout, reuse of cached and
 * Python-written snapshots, offline mode, a cut transfer resumed with Range, corrupted
 * bytes refused, 404s, a gated model, revision pins, the quantized variant, and pooling
 * read from the sentence-transformers config. Never the internet.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createEmbedder } from '../ts/embedder.js';
import { listCachedModels, removeCachedModel } from '../ts/models/cache.js';
import { createProgress, type Progress } from '../ts/models/progress.js';
import type { HubClientOptions } from '../ts/models/hub.js';
import { resolveModel, type ModelSpec } from '../ts/models/resolve.js';
import { ModelTokenizer } from '../ts/native.js';
import type { OnnxEmbedder } from '../ts/onnx/embedder.js';
import { ensureBuilt, root } from './helpers/build-dist.js';
import { commitId, gitBlobId, sha256, startFakeHub, type FakeHub, type FakeRepo } from './helpers/fake-hub.js';

const FIXTURE = path.join(root, 'test/fixtures/tiny-bert');
const read = (f: string): Buffer => readFileSync(path.join(FIXTURE, f));
const MODEL = read('model.onnx');
const TOKENIZER = read('tokenizer.json');
const CONFIG = read('config.json');
const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));
const MODULES = json([
  { idx: 0, name: '0', path: '', type: 'sentence_transformers.models.Transformer' },
  { idx: 1, name: '1', path: '1_Pooling', type: 'sentence_transformers.models.Pooling' },
  { idx: 2, name: '2', path: '2_Normalize', type: 'sentence_transformers.models.Normalize' },
]);
const pooling = (mode: string): Buffer => json({ word_embedding_dimension: 64, [`pooling_mode_${mode}`]: true });

const dirs: string[] = [];
const tempDir = (): string => {
  const d = mkdtempSync(path.join(tmpdir(), 'memsrv-hub-'));
  dirs.push(d);
  return d;
};

let QUANTIZED: Buffer; // a second valid model (another seed) standing in for the quantized export
let hub: FakeHub;
const COMMIT_MAIN = commitId('tiny-st main');
const COMMIT_V1 = commitId('tiny-st v1');

function stFiles(extra: Record<string, Buffer> = {}): Record<string, Buffer> {
  return {
    'onnx/model.onnx': MODEL,
    'tokenizer.json': TOKENIZER,
    'config.json': CONFIG,
    'modules.json': MODULES,
    '1_Pooling/config.json': pooling('mean_tokens'),
    'sentence_bert_config.json': json({ max_seq_length: 128, do_lower_case: false }),
    'README.md': Buffer.from('# tiny\n'),
    ...extra,
  };
}

function repos(): Record<string, FakeRepo> {
  return {
    'acme/tiny-st': {
      revisions: {
        main: { commit: COMMIT_MAIN, files: stFiles({ 'onnx/model_quantized.onnx': QUANTIZED }) },
        v1: { commit: COMMIT_V1, files: { 'model.onnx': MODEL, 'tokenizer.json': TOKENIZER, 'config.json': CONFIG } },
      },
    },
    'acme/tiny-cls': { revisions: { main: { commit: commitId('cls'), files: stFiles({ '1_Pooling/config.json': pooling('cls_token') }) } } },
    'acme/tiny-max': { revisions: { main: { commit: commitId('max'), files: stFiles({ '1_Pooling/config.json': pooling('max_tokens') }) } } },
    'acme/no-onnx': { revisions: { main: { commit: commitId('no-onnx'), files: { 'tokenizer.json': TOKENIZER, 'pytorch_model.bin': Buffer.from('x') } } } },
    'acme/old-name': { renamedTo: 'acme/tiny-st', revisions: {} },
    'acme/gated': { gatedToken: 'hf_test_token', revisions: { main: { commit: commitId('gated'), files: stFiles() } } },
  };
}

const silent: Progress = { start: () => undefined, update: () => undefined, end: () => undefined };

/** Resolves against the loopback hub with a fresh or given cache. */
function resolveWith(spec: ModelSpec, cache: string, env: Record<string, string> = {}, notes: string[] = [], hubOptions: HubClientOptions = {}) {
  return resolveModel(spec, {
    env: { HF_ENDPOINT: hub.endpoint, HF_HUB_CACHE: cache, ...env },
    log: (m) => notes.push(m),
    progress: silent,
    hub: hubOptions,
  });
}

/** An address nothing listens on: a port just released. */
async function closedPortUrl(): Promise<string> {
  const server = http.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return `http://127.0.0.1:${port}`;
}

const repoDir = (cache: string, repo: string): string => path.join(cache, `models--${repo.replace('/', '--')}`);

beforeAll(async () => {
  ensureBuilt(); // the onnxruntime worker runs from dist/onnx/worker.js
  const q = tempDir();
  const r = spawnSync(process.execPath, [path.join(root, 'scripts/make-bert-onnx.mjs'), '--out', q, '--preset', 'tiny', '--seed', '7'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  QUANTIZED = readFileSync(path.join(q, 'model.onnx'));
  hub = await startFakeHub(repos());
}, 180_000);
beforeEach(() => {
  hub.requests.length = 0;
  hub.truncateOnce.clear();
  hub.corrupt.clear();
});
afterAll(async () => {
  await hub?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('hub models', () => {
  it('fetches a hub id into the Hugging Face cache layout (refs, blobs by sha256 / git sha1, relative snapshot links)', async () => {
    const cache = tempDir();
    const m = await resolveWith({ model: 'acme/tiny-st' }, cache);
    const repo = repoDir(cache, 'acme/tiny-st');
    expect(m).toMatchObject({ source: 'hub', repo: 'acme/tiny-st', revision: 'main', commit: COMMIT_MAIN, modelFile: 'onnx/model.onnx', name: 'onnx:acme/tiny-st' });
    expect(m.dir).toBe(path.join(repo, 'snapshots', COMMIT_MAIN));
    expect(readFileSync(path.join(repo, 'refs/main'), 'utf8')).toBe(COMMIT_MAIN);
    const pointer = path.join(m.dir, 'onnx/model.onnx');
    expect(lstatSync(pointer).isSymbolicLink()).toBe(true);
    expect(readlinkSync(pointer)).toBe(`../../../blobs/${sha256(MODEL)}`);
    expect(readFileSync(path.join(repo, 'blobs', sha256(MODEL))).equals(MODEL)).toBe(true);
    expect(readlinkSync(path.join(m.dir, 'tokenizer.json'))).toBe(`../../blobs/${gitBlobId(TOKENIZER)}`);
    for (const f of ['config.json', 'modules.json', '1_Pooling/config.json', 'sentence_bert_config.json']) expect(existsSync(path.join(m.dir, f))).toBe(true);
    // Only what the embedder needs: not the quantized variant, not the README.
    expect(existsSync(path.join(m.dir, 'onnx/model_quantized.onnx'))).toBe(false);
    expect(existsSync(path.join(m.dir, 'README.md'))).toBe(false);
    expect(readdirSync(path.join(repo, 'blobs')).some((b) => b.endsWith('.incomplete'))).toBe(false);
    // The ONNX file came through the CDN redirect.
    expect(hub.requests.filter((r) => r.server === 'cdn' && r.method === 'GET')).toHaveLength(1);
  });

  it('sends HF_TOKEN to the hub only, never to the CDN it redirects to', async () => {
    await resolveWith({ model: 'acme/tiny-st' }, tempDir(), { HF_TOKEN: 'hf_secret' });
    const hubReqs = hub.requests.filter((r) => r.server === 'hub');
    expect(hubReqs.length).toBeGreaterThan(0);
    for (const r of hubReqs) expect(r.authorization).toBe('Bearer hf_secret');
    const cdnReqs = hub.requests.filter((r) => r.server === 'cdn');
    expect(cdnReqs.length).toBe(1);
    expect(cdnReqs[0]!.authorization).toBeUndefined();
  });

  it('a second resolve asks the hub for the commit only and downloads nothing', async () => {
    const cache = tempDir();
    await resolveWith({ model: 'acme/tiny-st' }, cache);
    hub.requests.length = 0;
    const again = await resolveWith({ model: 'acme/tiny-st' }, cache);
    expect(again.commit).toBe(COMMIT_MAIN);
    expect(hub.requests.map((r) => `${r.server} ${r.method} ${r.url.split('?')[0]}`)).toEqual([`hub GET /api/models/acme/tiny-st/revision/main`]);
  });

  it('HF_HUB_OFFLINE=1 uses the cache without a request, and fails clearly when the model is not cached', async () => {
    const cache = tempDir();
    await resolveWith({ model: 'acme/tiny-st' }, cache);
    hub.requests.length = 0;
    const m = await resolveWith({ model: 'acme/tiny-st' }, cache, { HF_HUB_OFFLINE: '1' });
    expect(m.commit).toBe(COMMIT_MAIN);
    await expect(resolveWith({ model: 'acme/tiny-cls' }, cache, { HF_HUB_OFFLINE: '1' })).rejects.toThrow(
      /HF_HUB_OFFLINE is set and acme\/tiny-cls \(revision main\) is not in the cache .*memory-server models fetch acme\/tiny-cls/,
    );
    // The cached model, but a revision never fetched: not guessed.
    await expect(resolveWith({ model: 'acme/tiny-st', revision: 'v1' }, cache, { HF_HUB_OFFLINE: '1' })).rejects.toThrow(/revision v1\) is not in the cache/);
    expect(hub.requests).toEqual([]);
  });

  it('uses a snapshot huggingface_hub wrote (its layout built by hand): offline, and online without downloading', async () => {
    const cache = tempDir();
    const repo = repoDir(cache, 'acme/tiny-st');
    const files: Record<string, Buffer> = { 'onnx/model.onnx': MODEL, 'tokenizer.json': TOKENIZER };
    mkdirSync(path.join(repo, 'blobs'), { recursive: true });
    mkdirSync(path.join(repo, 'refs'), { recursive: true });
    writeFileSync(path.join(repo, 'refs/main'), COMMIT_MAIN);
    for (const [f, b] of Object.entries(files)) {
      const blob = path.join(repo, 'blobs', f.endsWith('.onnx') ? sha256(b) : gitBlobId(b));
      writeFileSync(blob, b);
      const pointer = path.join(repo, 'snapshots', COMMIT_MAIN, f);
      mkdirSync(path.dirname(pointer), { recursive: true });
      symlinkSync(path.relative(path.dirname(pointer), blob), pointer);
    }
    const offline = await resolveWith({ model: 'acme/tiny-st' }, cache, { HF_HUB_OFFLINE: '1' });
    expect(offline).toMatchObject({ dir: path.join(repo, 'snapshots', COMMIT_MAIN), modelFile: 'onnx/model.onnx' });
    await resolveWith({ model: 'acme/tiny-st' }, cache);
    // The settings files Python had not fetched are added; the model and tokenizer are not fetched again.
    expect(hub.requests.filter((r) => r.url.includes('model.onnx') || r.url.includes('tokenizer.json') || r.server === 'cdn')).toEqual([]);
    expect(existsSync(path.join(repo, 'snapshots', COMMIT_MAIN, 'modules.json'))).toBe(true);
  });

  it('resumes a transfer cut halfway with a Range request and stores the verified file', async () => {
    const cache = tempDir();
    hub.truncateOnce.add(sha256(MODEL));
    const m = await resolveWith({ model: 'acme/tiny-st' }, cache);
    const gets = hub.requests.filter((r) => r.server === 'cdn' && r.method === 'GET');
    expect(gets).toHaveLength(2);
    expect(gets[0]!.range).toBeUndefined();
    expect(gets[1]!.range).toMatch(/^bytes=[1-9]\d*-$/);
    expect(readFileSync(path.join(m.dir, 'onnx/model.onnx')).equals(MODEL)).toBe(true);
  });

  it('a transfer that stalls is abandoned after the timeout and resumed', async () => {
    const cache = tempDir();
    hub.stallOnce.add(sha256(MODEL));
    const m = await resolveWith({ model: 'acme/tiny-st' }, cache, {}, [], { stallMs: 1000 });
    const ranges = hub.requests.filter((r) => r.server === 'cdn' && r.method === 'GET').map((r) => r.range);
    expect(ranges[0]).toBeUndefined();
    expect(ranges).toContain(`bytes=${MODEL.length >> 1}-`);
    expect(readFileSync(path.join(m.dir, 'onnx/model.onnx')).equals(MODEL)).toBe(true);
  });

  it('keeps a cut download and resumes it in the next run', async () => {
    const cache = tempDir();
    hub.truncateOnce.add(sha256(MODEL));
    await expect(resolveWith({ model: 'acme/tiny-st' }, cache, {}, [], { attempts: 1 })).rejects.toThrow(/download interrupted at \d+ of \d+ bytes .*the next fetch resumes it/);
    // (one attempt: the run gives up after the cut)
    const partial = path.join(repoDir(cache, 'acme/tiny-st'), 'blobs', `${sha256(MODEL)}.incomplete`);
    const have = statSync(partial).size;
    expect(have).toBeGreaterThan(0);
    expect(have).toBeLessThan(MODEL.length);
    expect(listCachedModels(cache)[0]!.partialBytes).toBe(have);
    hub.requests.length = 0;
    const m = await resolveWith({ model: 'acme/tiny-st' }, cache);
    expect(hub.requests.filter((r) => r.server === 'cdn').map((r) => r.range)).toEqual([`bytes=${have}-`]);
    expect(readFileSync(path.join(m.dir, 'onnx/model.onnx')).equals(MODEL)).toBe(true);
    expect(existsSync(partial)).toBe(false);
  });

  it('refuses bytes that fail the sha256 check: nothing stored, nothing linked', async () => {
    const cache = tempDir();
    hub.corrupt.add(sha256(MODEL));
    await expect(resolveWith({ model: 'acme/tiny-st' }, cache)).rejects.toThrow(`sha256 mismatch (expected ${sha256(MODEL)}`);
    const repo = repoDir(cache, 'acme/tiny-st');
    expect(readdirSync(path.join(repo, 'blobs')).filter((b) => b.startsWith(sha256(MODEL)))).toEqual([]);
    expect(existsSync(path.join(repo, 'snapshots', COMMIT_MAIN, 'onnx/model.onnx'))).toBe(false);
    expect(existsSync(path.join(repo, 'refs/main'))).toBe(false);
  });

  it('404s and missing pieces are clear errors', async () => {
    const cache = tempDir();
    await expect(resolveWith({ model: 'acme/nope' }, cache)).rejects.toThrow(/acme\/nope \(revision main\): no such model or revision on http:\/\/127\.0\.0\.1:\d+ \(HTTP 404\); there is no local directory/);
    await expect(resolveWith({ model: 'acme/tiny-st', revision: 'v9' }, cache)).rejects.toThrow('no revision v9');
    await expect(resolveWith({ model: 'acme/no-onnx' }, cache)).rejects.toThrow('acme/no-onnx (revision main) has no ONNX export at onnx/model.onnx, model.onnx');
    await expect(resolveWith({ model: 'acme/tiny-st', modelFile: 'onnx/other.onnx' }, cache)).rejects.toThrow(/no ONNX export at onnx\/other\.onnx; its \.onnx files: onnx\/model\.onnx, onnx\/model_quantized\.onnx/);
    await expect(resolveWith({ model: 'acme/tiny-st', modelFile: '../x.onnx' }, cache)).rejects.toThrow('--model-file must be a relative path');
    await expect(resolveWith({ model: 'acme/tiny-st', revision: '../../etc' }, cache)).rejects.toThrow('not a revision');
    expect(listCachedModels(cache)).toEqual([]);
  });

  it('follows a renamed repository\'s relative redirects (API and resolve), caching under the name asked for', async () => {
    const cache = tempDir();
    const m = await resolveWith({ model: 'acme/old-name' }, cache);
    expect(m).toMatchObject({ commit: COMMIT_MAIN, name: 'onnx:acme/old-name', dir: path.join(repoDir(cache, 'acme/old-name'), 'snapshots', COMMIT_MAIN) });
    expect(readFileSync(path.join(m.dir, 'onnx/model.onnx')).equals(MODEL)).toBe(true);
    expect(hub.requests.some((r) => r.url.startsWith('/api/models/acme/tiny-st/'))).toBe(true);
    expect(hub.requests.some((r) => r.method === 'HEAD' && r.url.startsWith('/acme/tiny-st/resolve/'))).toBe(true);
  });

  it('a gated model needs HF_TOKEN; with it, it is fetched', async () => {
    const cache = tempDir();
    await expect(resolveWith({ model: 'acme/gated' }, cache)).rejects.toThrow(/access denied .*\(HTTP 401\): a gated or private model needs HF_TOKEN/);
    await expect(resolveWith({ model: 'acme/gated' }, cache, { HF_TOKEN: 'wrong' })).rejects.toThrow(/HF_TOKEN is set but was refused/);
    const m = await resolveWith({ model: 'acme/gated' }, cache, { HF_TOKEN: 'hf_test_token' });
    expect(m.commit).toBe(commitId('gated'));
  });

  it('a revision pin resolves a tag or a commit, records refs/<tag>, and keeps both snapshots', async () => {
    const cache = tempDir();
    const v1 = await resolveWith({ model: 'acme/tiny-st', revision: 'v1' }, cache);
    expect(v1).toMatchObject({ commit: COMMIT_V1, modelFile: 'model.onnx' });
    expect(readFileSync(path.join(repoDir(cache, 'acme/tiny-st'), 'refs/v1'), 'utf8')).toBe(COMMIT_V1);
    const byCommit = await resolveWith({ model: 'acme/tiny-st', revision: COMMIT_MAIN }, cache);
    expect(byCommit.dir).toBe(path.join(repoDir(cache, 'acme/tiny-st'), 'snapshots', COMMIT_MAIN));
    expect(existsSync(path.join(repoDir(cache, 'acme/tiny-st'), 'refs', COMMIT_MAIN))).toBe(false);
    // The same bytes at two commits are one blob.
    expect(readdirSync(path.join(repoDir(cache, 'acme/tiny-st'), 'blobs')).filter((b) => b === sha256(MODEL))).toHaveLength(1);
    expect(listCachedModels(cache)[0]!.snapshots.sort()).toEqual([COMMIT_MAIN, COMMIT_V1].sort());
  });

  it('--quantized picks the quantized export', async () => {
    const notes: string[] = [];
    const m = await resolveWith({ model: 'acme/tiny-st', quantized: true }, tempDir(), {}, notes);
    expect(m.modelFile).toBe('onnx/model_quantized.onnx');
    expect(readFileSync(path.join(m.dir, m.modelFile)).equals(QUANTIZED)).toBe(true);
    expect(notes).toContain('acme/tiny-st: using the quantized onnx/model_quantized.onnx');
  });

  it('an unreachable hub falls back to a cached snapshot with a note, and otherwise names the endpoint', async () => {
    const cache = tempDir();
    await resolveWith({ model: 'acme/tiny-st' }, cache);
    const dead = await closedPortUrl();
    const notes: string[] = [];
    const m = await resolveWith({ model: 'acme/tiny-st' }, cache, { HF_ENDPOINT: dead }, notes);
    expect(m.commit).toBe(COMMIT_MAIN);
    expect(notes.join('\n')).toContain(`${dead} unreachable (cannot reach ${dead} (ECONNREFUSED)); using the cached acme/tiny-st at ${COMMIT_MAIN}`);
    await expect(resolveWith({ model: 'acme/tiny-cls' }, cache, { HF_ENDPOINT: dead })).rejects.toThrow(`cannot reach ${dead} (ECONNREFUSED); there is no local directory`);
  });

  it('removes one model from the cache and leaves the others', async () => {
    const cache = tempDir();
    await resolveWith({ model: 'acme/tiny-st' }, cache);
    await resolveWith({ model: 'acme/tiny-cls' }, cache);
    expect(listCachedModels(cache).map((m) => m.repo)).toEqual(['acme/tiny-cls', 'acme/tiny-st']);
    expect(removeCachedModel(cache, 'acme/tiny-st')!.bytes).toBeGreaterThan(MODEL.length);
    expect(listCachedModels(cache).map((m) => m.repo)).toEqual(['acme/tiny-cls']);
    expect(removeCachedModel(cache, 'acme/tiny-st')).toBeNull();
  });
});

describe('download progress', () => {
  const fakeStream = (isTTY: boolean, writes: string[]) => ({ isTTY, write: (s: string) => writes.push(s) > 0 }) as unknown as NodeJS.WriteStream;

  it('a terminal gets a bar redrawn in place; otherwise (or with HF_HUB_DISABLE_PROGRESS_BARS) one line per file', () => {
    const writes: string[] = [];
    const lines: string[] = [];
    const bar = createProgress(fakeStream(true, writes), (m) => lines.push(m), {});
    bar.start('acme/x/model.onnx', 2048);
    bar.update(1024, 2048);
    bar.update(2048, 2048);
    bar.end();
    expect(lines).toEqual([]);
    expect(writes[0]).toMatch(/^\racme\/x\/model\.onnx \[\.{24}\] {3}0% 0 B\/2\.0 KB/);
    expect(writes[1]).toMatch(/^\racme\/x\/model\.onnx \[#{12}\.{12}\] {2}50% 1\.0 KB\/2\.0 KB/);
    expect(writes[2]).toMatch(/\[#{24}\] 100% 2\.0 KB\/2\.0 KB/);
    expect(writes.at(-1)).toBe('\n');

    for (const [tty, env] of [
      [false, {}],
      [true, { HF_HUB_DISABLE_PROGRESS_BARS: '1' }],
    ] as const) {
      const w: string[] = [];
      const l: string[] = [];
      const p = createProgress(fakeStream(tty, w), (m) => l.push(m), env);
      p.start('acme/x/model.onnx', 3 * 1024 * 1024);
      p.update(1024, 3 * 1024 * 1024);
      p.end();
      expect(l).toEqual(['fetching acme/x/model.onnx (3.0 MB)']);
      expect(w).toEqual([]);
    }
  });
});

describe('hub models in the embedder', () => {
  const env = (cache: string): Record<string, string | undefined> => ({ ...process.env, HF_ENDPOINT: hub.endpoint, HF_HUB_CACHE: cache });

  /** Runs the fixture in onnxruntime directly: the hidden states of one text. */
  async function hiddenStates(text: string): Promise<{ hidden: Float32Array; n: number; d: number }> {
    const tok = new ModelTokenizer(path.join(FIXTURE, 'tokenizer.json'), 128);
    const e = tok.encodeBatch([text]);
    const n = e.seqLen;
    const session = await ort.InferenceSession.create(path.join(FIXTURE, 'model.onnx'));
    try {
      const out = await session.run({
        input_ids: new ort.Tensor('int64', e.inputIds, [1, n]),
        attention_mask: new ort.Tensor('int64', e.attentionMask, [1, n]),
        token_type_ids: new ort.Tensor('int64', e.tokenTypeIds, [1, n]),
      });
      const t = out[session.outputNames[0]!]!;
      return { hidden: t.data as Float32Array, n, d: t.dims[2]! };
    } finally {
      await session.release();
    }
  }
  const unit = (v: Float32Array): Float32Array => {
    const s = Math.sqrt(v.reduce((a, x) => a + x * x, 0));
    return v.map((x) => x / s);
  };
  const maxDiff = (a: Float32Array, b: Float32Array): number => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);

  it('CLS pooling from 1_Pooling/config.json gives the first token state; mean pooling the mean', async () => {
    const cache = tempDir();
    const saved = { ...process.env };
    Object.assign(process.env, env(cache));
    const text = 'the quick brown fox';
    try {
      const { hidden, n, d } = await hiddenStates(text);
      const cls = await createEmbedder({ model: 'acme/tiny-cls', device: 'cpu', threads: 1, log: () => undefined });
      const mean = await createEmbedder({ model: 'acme/tiny-st', device: 'cpu', threads: 1, log: () => undefined });
      try {
        expect(cls.name).toBe('onnx:acme/tiny-cls');
        // max_seq_length from the repo's sentence_bert_config.json (the fixture's config.json alone says 512).
        expect((mean as OnnxEmbedder).maxLength).toBe(128);
        expect(maxDiff(await cls.embed([text]), unit(hidden.slice(0, d)))).toBeLessThan(1e-5);
        const avg = new Float32Array(d);
        for (let t = 0; t < n; t++) for (let k = 0; k < d; k++) avg[k]! += hidden[t * d + k]! / n;
        expect(maxDiff(await mean.embed([text]), unit(avg))).toBeLessThan(1e-5);
      } finally {
        await cls.close?.();
        await mean.close?.();
      }
      await expect(createEmbedder({ model: 'acme/tiny-max', device: 'cpu', log: () => undefined })).rejects.toThrow(
        /1_Pooling\/config\.json: pooling max is not supported \(this server pools by mean or cls\)/,
      );
    } finally {
      process.env = saved;
    }
  });
});
