/**
 * The `onnx` embedder: a sentence-transformers ONNX export (`model.onnx` +
 * `tokenizer.json`, e.g. all-MiniLM-L6-v2) run by onnxruntime-node.
 *
 * - Tokenization (the `tokenizers` crate, following tokenizer.json, with truncation),
 *   padding and attention masks: Rust core, on the calling thread (`prepare`).
 * - The session: an onnxruntime worker thread (onnxruntime-node runs sessions
 *   synchronously on the calling thread, which must not be the event loop).
 * - Pooling (mean over the attention mask, or the first token for CLS models — from the
 *   sentence-transformers Pooling config) and L2 normalization: Rust core, in the worker.
 *
 * `device`: `auto` tries the CUDA execution provider and falls back to CPU with a log
 * line; `cuda` insists; `cpu` never tries. Intra-op threads default to the machine's
 * cores with spinning off, so the memory and inference processes (which both hold the
 * model) do not spin against each other.
 *
 * `sessions` > 1 runs that many sessions side by side, each in its own worker (inter-op
 * rather than intra-op parallelism): `background()` uses one single-threaded session per
 * core for re-embedding, where throughput matters and a latency-bound command may take a
 * core at any moment (docs/embeddings.md, "Changing the embedder").
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ModelTokenizer, NativeError, type TextWindow } from '../native.js';
import type { Embedder, PreparedBatch } from '../embedder.js';
import { readPooling, type Pooling } from '../models/st-config.js';
import { positionLimit, readJson, type PositionLimit } from './model-limits.js';
import { postTransferring, type InitReply, type RunReply, type RunRequest, type WorkerInit } from './messages.js';

export type OnnxDevice = 'auto' | 'cpu' | 'cuda';

export interface OnnxEmbedderOptions {
  /** Directory holding model.onnx and tokenizer.json. */
  model: string;
  /** The ONNX file, relative to `model`. Default model.onnx. */
  modelFile?: string;
  /** Name recorded in the data directory and reported by stats. Default `onnx:<directory name>`. */
  name?: string;
  /** Token states → one vector. Default: the model's sentence-transformers Pooling config, else mean. */
  pooling?: Pooling;
  /** Default auto. */
  device?: OnnxDevice;
  /** Tokens per text after truncation (special tokens included). Default: the model's
   *  sentence_bert_config.json max_seq_length, else its position limit, at most 512. Capped
   *  (with a warning) at the model's position limit (see model-limits.ts). */
  maxLength?: number;
  /** onnxruntime intra-op threads (per session). Default: the machine's cores. */
  threads?: number;
  /**
   * onnxruntime sessions run side by side, each in its own worker thread with `threads`
   * intra-op threads; a batch goes to the session with the fewest runs queued. Default 1.
   */
  sessions?: number;
  /** Texts per run. Default 32. */
  maxBatch?: number;
  /** Keep onnxruntime's threads spinning between runs (lower latency, burns CPU). Default false. */
  allowSpinning?: boolean;
  /** Where warnings go (CUDA fallback, --max-length capped). Default: console.warn. */
  log?: (msg: string) => void;
  /** Raise the niceness of the onnxruntime threads by this much (Linux; `background()` uses it). Default 0. */
  nice?: number;
}

/** Niceness added for a background instance: its threads yield the cores to the server's whenever both have work. */
export const BACKGROUND_NICE = 10;

/** How a background instance runs: `sessions` sessions of `threads` intra-op threads each. */
export interface BackgroundShape {
  sessions: number;
  threads: number;
}

/** One onnxruntime session: its worker thread and the runs queued on it. */
interface Session {
  worker: Worker;
  queued: number;
  /** Runs finished on it. */
  runs: number;
}

/** Cumulative time spent per stage (ms), for stats and the benchmark. */
export interface OnnxTimings {
  runs: number;
  texts: number;
  /** Tokenize + pad on the main thread. */
  prepareMs: number;
  /** Inside session.run. */
  ortMs: number;
  /** Mean pooling + normalization. */
  poolMs: number;
}

interface Prepared extends PreparedBatch {
  req: RunRequest;
}

const DEFAULT_MAX_LENGTH = 256;

/** The length used when no --max-length is given: the model's own, at most 512. */
function defaultMaxLength(dir: string, limit: PositionLimit | null): number {
  const st = readJson(join(dir, 'sentence_bert_config.json'));
  if (st && typeof st.max_seq_length === 'number' && st.max_seq_length > 0) return Math.min(512, st.max_seq_length);
  if (limit) return Math.min(512, limit.tokens);
  return DEFAULT_MAX_LENGTH;
}

/**
 * `maxLength` within the model's position limit: a longer one would make every text past
 * the limit fail in onnxruntime, so it is capped, with a warning.
 */
function cappedMaxLength(requested: number, limit: PositionLimit | null, explicit: boolean, log: (msg: string) => void): number {
  if (!limit || requested <= limit.tokens) return requested;
  const what = explicit ? `--max-length ${requested}` : `the model's max_seq_length (${requested})`;
  log(`${what} is above the model's position limit of ${limit.tokens} tokens (${limit.source}); using ${limit.tokens}`);
  return limit.tokens;
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** worker.js next to this module; from the TypeScript sources (tests), the compiled one in dist/. */
/**
 * onnxruntime-node is an optional peer dependency (a hash-only install downloads nothing
 * for it); it is looked for only when a model is used, from where the worker will import it.
 */
function assertOnnxRuntimeInstalled(): void {
  try {
    createRequire(workerPath()).resolve('onnxruntime-node');
  } catch {
    throw new Error(
      '--model needs onnxruntime-node, an optional peer dependency of memory-server that is not installed: ' +
        'run `npm install onnxruntime-node` (or `pnpm add onnxruntime-node`) in your project',
    );
  }
}

function workerPath(): string {
  const here = fileURLToPath(new URL('./worker.js', import.meta.url));
  return existsSync(here) ? here : fileURLToPath(new URL('../../dist/onnx/worker.js', import.meta.url));
}

/** Starts one session's worker and waits for its start-up reply (the probe run). */
async function startWorker(init: WorkerInit): Promise<{ worker: Worker; reply: InitReply }> {
  const worker = new Worker(workerPath(), { workerData: init });
  const reply = await new Promise<InitReply>((res, rej) => {
    const onExit = (code: number) => rej(new Error(`onnxruntime worker exited during start-up (code ${code})`));
    worker.once('error', rej);
    worker.once('exit', onExit);
    worker.once('message', (m: InitReply) => {
      worker.off('error', rej);
      worker.off('exit', onExit);
      res(m);
    });
  }).catch((e: unknown) => ({ ok: false as const, error: e instanceof Error ? e.message : String(e) }));
  return { worker, reply };
}

export class OnnxEmbedder implements Embedder {
  readonly name: string;
  readonly hash: string;
  readonly dims: number;
  readonly device: 'cpu' | 'cuda';
  readonly maxBatch: number;
  readonly maxBatchTokens: number;
  readonly maxLength: number;
  readonly modelDir: string;
  /** Runs that proceed at once: one per session. */
  readonly concurrentRuns: number;
  /** onnxruntime intra-op threads of each session. */
  readonly threads: number;
  readonly timings: OnnxTimings = { runs: 0, texts: 0, prepareMs: 0, ortMs: 0, poolMs: 0 };
  private readonly tokenizer: ModelTokenizer;
  private readonly sessions: Session[];
  private readonly pending = new Map<number, { resolve: (v: Float32Array) => void; reject: (e: Error) => void; texts: number; session: Session }>();
  private nextId = 1;
  /** The options this instance was loaded with (resolved directory), for `background()`. */
  private loadOptions!: OnnxEmbedderOptions;
  private broken: Error | null = null;
  private closed = false;

  private constructor(init: {
    name: string;
    hash: string;
    dims: number;
    device: 'cpu' | 'cuda';
    maxBatch: number;
    maxLength: number;
    modelDir: string;
    tokenizer: ModelTokenizer;
    workers: Worker[];
    threads: number;
  }) {
    this.name = init.name;
    this.hash = init.hash;
    this.dims = init.dims;
    this.device = init.device;
    this.maxBatch = init.maxBatch;
    this.maxLength = init.maxLength;
    this.maxBatchTokens = init.maxBatch * init.maxLength;
    this.modelDir = init.modelDir;
    this.tokenizer = init.tokenizer;
    this.threads = init.threads;
    this.concurrentRuns = init.workers.length;
    this.sessions = init.workers.map((worker) => ({ worker, queued: 0, runs: 0 }));
    for (const { worker } of this.sessions) {
      worker.on('message', (m: RunReply) => this.onReply(m));
      worker.on('error', (e) => this.fail(new Error(`onnxruntime worker failed: ${e.message}`)));
      worker.on('exit', (code) => {
        if (!this.closed) this.fail(new Error(`onnxruntime worker exited (code ${code})`));
      });
      worker.unref();
    }
  }

  /** Loads and checks a model directory; every problem is a start-up error naming the file. */
  static async load(options: OnnxEmbedderOptions, knownHash?: string): Promise<OnnxEmbedder> {
    const dir = resolve(options.model);
    if (!existsSync(dir) || !statSync(dir).isDirectory()) {
      throw new Error(`Model directory not found: ${dir} (expected a directory with model.onnx and tokenizer.json)`);
    }
    const modelFile = options.modelFile ?? 'model.onnx';
    const modelPath = join(dir, modelFile);
    const tokPath = join(dir, 'tokenizer.json');
    for (const [p, what] of [
      [modelPath, modelFile],
      [tokPath, 'tokenizer.json'],
    ] as const) {
      if (!existsSync(p)) throw new Error(`Model directory ${dir} has no ${what} (expected model.onnx and tokenizer.json of a sentence-transformers ONNX export)`);
    }
    assertOnnxRuntimeInstalled();
    const device = options.device ?? 'auto';
    if (!['auto', 'cpu', 'cuda'].includes(device)) throw new Error(`device must be auto, cpu or cuda, got ${String(device)}`);
    const pooling = options.pooling ?? readPooling(dir);
    const log = options.log ?? ((m: string) => console.warn(m));
    if (options.maxLength !== undefined && (!Number.isInteger(options.maxLength) || options.maxLength < 2 || options.maxLength > 8192)) {
      throw new Error(`maxLength must be an integer in 2…8192, got ${options.maxLength}`);
    }
    const limit = await positionLimit(dir, modelPath);
    const maxLength = cappedMaxLength(options.maxLength ?? defaultMaxLength(dir, limit), limit, options.maxLength !== undefined, log);
    const maxBatch = options.maxBatch ?? 32;
    if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new Error(`maxBatch must be a positive integer, got ${maxBatch}`);
    const threads = options.threads ?? availableParallelism();
    if (!Number.isInteger(threads) || threads < 1) throw new Error(`threads must be a positive integer, got ${threads}`);

    let tokenizer: ModelTokenizer;
    try {
      tokenizer = new ModelTokenizer(tokPath, maxLength);
    } catch (e) {
      throw new Error(`${tokPath}: cannot load the tokenizer: ${(e as Error).message}`, { cause: e });
    }
    const probe = tokenizer.encodeBatch(['hello world']);
    const probeIds = Array.from(probe.inputIds.subarray(0, probe.lengths[0]!), (v) => Number(v));
    // `knownHash`: background() loads the file this instance has hashed already.
    const hash = knownHash ?? `sha256:${await sha256File(modelPath)}`;

    const nice = options.nice ?? 0;
    if (!Number.isInteger(nice) || nice < 0 || nice > 19) throw new Error(`nice must be an integer in 0…19, got ${nice}`);
    const sessions = options.sessions ?? 1;
    if (!Number.isInteger(sessions) || sessions < 1 || sessions > 64) throw new Error(`sessions must be an integer in 1…64, got ${sessions}`);
    const init: WorkerInit = { modelPath, device, intraOpThreads: threads, allowSpinning: options.allowSpinning ?? false, probeIds, pooling, nice };
    const started = await Promise.all(Array.from({ length: sessions }, () => startWorker(init)));
    const failed = started.find((w) => !w.reply.ok);
    if (failed && !failed.reply.ok) {
      await Promise.all(started.map((w) => w.worker.terminate()));
      throw new Error(`${modelPath}: onnxruntime cannot run this model: ${failed.reply.error}`);
    }
    const reply = started[0]!.reply as Extract<InitReply, { ok: true }>;
    for (const n of reply.notes) log(`onnx embedder: ${n}`);
    const embedder = new OnnxEmbedder({
      name: options.name ?? `onnx:${basename(dir)}`,
      hash,
      dims: reply.dims,
      device: reply.device,
      maxBatch,
      maxLength,
      modelDir: dir,
      tokenizer,
      workers: started.map((w) => w.worker),
      threads,
    });
    embedder.loadOptions = { ...options, model: dir, maxLength, log, threads, sessions };
    return embedder;
  }

  /**
   * Another instance of this model for background work (re-embedding): the same name, hash
   * and vectors, its onnxruntime threads at a lower CPU priority (BACKGROUND_NICE). On the
   * CPU it runs one single-threaded session per thread this instance uses, side by side
   * (inter-op parallelism): a multi-threaded session waits at every operator for its
   * slowest thread, so a command that takes one core stalls the whole run, while
   * single-threaded sessions lose only the core that was taken. `shape` overrides that (the
   * benchmark's A/B). The caller closes it.
   */
  background(shape?: BackgroundShape): Promise<OnnxEmbedder> {
    const cores = this.threads * this.concurrentRuns;
    const { sessions, threads } = shape ?? (this.device === 'cuda' ? { sessions: 1, threads: this.threads } : { sessions: cores, threads: 1 });
    const nice = Math.min(19, (this.loadOptions.nice ?? 0) + BACKGROUND_NICE);
    return OnnxEmbedder.load({ ...this.loadOptions, sessions, threads, nice }, this.hash);
  }

  /** Runs finished by each session, in session order. */
  runsPerSession(): number[] {
    return this.sessions.map((s) => s.runs);
  }

  tokenCounts(texts: string[]): Uint32Array {
    return this.tokenizer.tokenCounts(texts);
  }

  tokenWindows(text: string, maxTokens: number, stride: number): TextWindow[] {
    return this.tokenizer.tokenWindows(text, maxTokens, stride);
  }

  /** Tokenizes and pads `texts` now (main thread); `runPrepared` queues it on the worker. */
  prepare(texts: string[]): Prepared {
    const t0 = performance.now();
    const e = this.tokenizer.encodeBatch(texts);
    this.timings.prepareMs += performance.now() - t0;
    return {
      size: texts.length,
      tokens: e.batch * e.seqLen,
      req: {
        id: 0,
        inputIds: e.inputIds,
        attentionMask: e.attentionMask,
        tokenTypeIds: e.tokenTypeIds,
        batch: e.batch,
        seqLen: e.seqLen,
      },
    };
  }

  /**
   * Runs a prepared batch on the session with the fewest runs queued; a session runs its
   * batches one at a time, in the order given (with one session: every batch in order).
   */
  runPrepared(p: PreparedBatch): Promise<Float32Array> {
    if (this.broken) return Promise.reject(new NativeError('unavailable', this.broken.message));
    if (this.closed) return Promise.reject(new NativeError('unavailable', 'the onnx embedder is closed'));
    const req = (p as Prepared).req;
    const id = this.nextId++;
    let session = this.sessions[0]!;
    for (const s of this.sessions) if (s.queued < session.queued) session = s;
    return new Promise<Float32Array>((res, rej) => {
      if (session.queued++ === 0) session.worker.ref(); // keep the process alive while a run is out
      this.pending.set(id, { resolve: res, reject: rej, texts: p.size, session });
      const msg: RunRequest = { ...req, id };
      postTransferring(session.worker, msg, [msg.inputIds.buffer, msg.attentionMask.buffer, msg.tokenTypeIds.buffer]);
    });
  }

  async embed(texts: string[]): Promise<Float32Array> {
    if (texts.length === 0) return new Float32Array(0);
    if (texts.length <= this.maxBatch) return this.runPrepared(this.prepare(texts));
    const out = new Float32Array(texts.length * this.dims);
    const runs: Promise<void>[] = [];
    for (let i = 0; i < texts.length; i += this.maxBatch) {
      const part = texts.slice(i, i + this.maxBatch);
      runs.push(this.runPrepared(this.prepare(part)).then((rows) => out.set(rows, i * this.dims)));
    }
    await Promise.all(runs);
    return out;
  }

  private onReply(m: RunReply): void {
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    if (--p.session.queued === 0) p.session.worker.unref();
    if (!m.ok) {
      p.reject(new NativeError('internal', `onnxruntime: ${m.error}`));
      return;
    }
    this.timings.runs++;
    p.session.runs++;
    this.timings.texts += p.texts;
    this.timings.ortMs += m.ortMs;
    this.timings.poolMs += m.poolMs;
    p.resolve(m.embeddings);
  }

  private fail(e: Error): void {
    this.broken ??= e;
    for (const p of this.pending.values()) p.reject(new NativeError('unavailable', e.message));
    this.pending.clear();
    for (const s of this.sessions) {
      if (s.queued > 0) s.worker.unref();
      s.queued = 0;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.fail(new Error('the onnx embedder is closed'));
    await Promise.all(this.sessions.map((s) => s.worker.terminate()));
  }
}
