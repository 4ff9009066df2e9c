/**
 * Text embedders. The memory server and the inference server both take an
 * `Embedder`; `hash` (built into the core, no model) is the default. An ONNX
 * embedder plugs in by implementing the same interface (and `tokenWindows` so
 * `process` cuts windows in model tokens instead of words).
 */
import { HASH_DIMS, HASH_EMBEDDER_NAME, hashEmbed, hashEmbedAsync, wordWindows, type TextWindow } from './native.js';

export type { TextWindow };

/** A batch tokenized and padded ahead of its run (see `Embedder.prepare`). */
export interface PreparedBatch {
  /** Texts in the batch. */
  readonly size: number;
  /** Padded tokens (batch × sequence length). */
  readonly tokens: number;
}

export interface Embedder {
  /** Model name recorded in the data directory and reported by `stats` (`model`). */
  readonly name: string;
  /** Hash of the model file ('builtin' for the hash embedder); recorded in the data directory. */
  readonly hash: string;
  readonly dims: number;
  /** 'cpu' or 'cuda'. */
  readonly device: string;
  /** Largest batch `embed` should be given at once. */
  readonly maxBatch: number;
  /** Padded-token budget per batch (batch × longest sequence). Default: no token limit beyond maxBatch. */
  readonly maxBatchTokens?: number;
  /** Embeds texts in one run; returns `texts.length × dims` row-major, L2-normalized. */
  embed(texts: string[]): Promise<Float32Array>;
  /** Windows of `maxTokens` tokens overlapping by `stride`, offsets in JS string indices. Default: words. */
  tokenWindows?(text: string, maxTokens: number, stride: number): TextWindow[];
  /** Tokens of each text after truncation (the batcher's token budget and length sort). Default: an estimate. */
  tokenCounts?(texts: string[]): ArrayLike<number>;
  /**
   * Two-phase form for pipelining: `prepare` tokenizes and pads now; `runPrepared` runs it
   * (runs execute one at a time in call order), so the batcher can prepare and queue the
   * next batch while the current one runs. Both or neither.
   */
  prepare?(texts: string[]): PreparedBatch;
  runPrepared?(batch: PreparedBatch): Promise<Float32Array>;
  /**
   * Another instance of this embedder (the same name, hash and vectors) for background work —
   * re-embedding — at a lower CPU priority, so the server's own work goes first. The caller
   * closes it. Without it, background work uses this instance.
   */
  background?(): Promise<Embedder>;
  /** Runs that proceed at once (model sessions side by side). Default 1. */
  readonly concurrentRuns?: number;
  close?(): void | Promise<void>;
}

/** Below this many UTF-16 units in total, embed on the main thread (cheaper than a thread-pool hop). */
const SYNC_CHARS = 8 * 1024;

/** The built-in feature-hashing embedder (384 dims, L2-normalized, deterministic). */
export class HashEmbedder implements Embedder {
  readonly name = HASH_EMBEDDER_NAME;
  readonly hash = 'builtin';
  readonly dims = HASH_DIMS;
  readonly device = 'cpu';
  readonly maxBatch = 256;

  async embed(texts: string[]): Promise<Float32Array> {
    if (texts.length === 0) return new Float32Array(0);
    let chars = 0;
    for (const t of texts) chars += t.length;
    if (chars <= SYNC_CHARS) return hashEmbed(texts, this.dims);
    return hashEmbedAsync(texts, this.dims);
  }

  tokenWindows(text: string, maxTokens: number, stride: number): TextWindow[] {
    return wordWindows(text, maxTokens, stride);
  }
}

export type EmbedderKind = 'hash' | 'onnx';

export interface EmbedderOptions {
  /** Default: onnx when `model` is given, else hash. */
  kind?: EmbedderKind;
  /** onnx: a directory with model.onnx and tokenizer.json, or a hub model id fetched into the Hugging Face cache (docs/models.md). */
  model?: string;
  /** onnx, hub models: branch, tag or commit. Default main. */
  revision?: string;
  /** onnx: use a quantized ONNX variant of the model. */
  quantized?: boolean;
  /** onnx: the ONNX file inside the model directory or repository. Default: model.onnx, onnx/model.onnx. */
  modelFile?: string;
  /** onnx: name recorded in the data directory. Default `onnx:<hub id>` or `onnx:<directory name>`. */
  modelName?: string;
  /** onnx: auto (CUDA if the runtime has it, else CPU) | cpu | cuda. */
  device?: 'auto' | 'cpu' | 'cuda';
  /** onnx: tokens per text after truncation. */
  maxLength?: number;
  /** onnx: onnxruntime intra-op threads. */
  threads?: number;
  /** onnx: texts per run. */
  maxBatch?: number;
  /** Start-up notes (CUDA fallback). */
  log?: (msg: string) => void;
}

/** Creates an embedder by kind; a missing or broken model is a start-up error naming the file. */
export async function createEmbedder(options: EmbedderOptions = {}): Promise<Embedder> {
  const kind = options.kind ?? (options.model ? 'onnx' : 'hash');
  if (kind === 'hash') {
    if (options.model !== undefined) throw new Error('--model is for the onnx embedder; drop --embedder hash or --model');
    return new HashEmbedder();
  }
  if (kind !== 'onnx') throw new Error(`unknown embedder ${String(kind)} (hash | onnx)`);
  if (!options.model) throw new Error('the onnx embedder needs --model DIR (a directory with model.onnx and tokenizer.json)');
  const [{ OnnxEmbedder }, { resolveModel }] = await Promise.all([import('./onnx/embedder.js'), import('./models/resolve.js')]);
  const { kind: _kind, revision, quantized, modelFile, modelName, ...onnx } = options;
  const spec = { model: options.model, ...(revision !== undefined ? { revision } : {}), ...(quantized ? { quantized } : {}), ...(modelFile !== undefined ? { modelFile } : {}) };
  const resolved = await resolveModel(spec, options.log ? { log: options.log } : {});
  return OnnxEmbedder.load({ ...onnx, model: resolved.dir, modelFile: resolved.modelFile, name: modelName ?? resolved.name });
}

/** Row `i` of a row-major matrix (a view, no copy). */
export function row(matrix: Float32Array, dims: number, i: number): Float32Array {
  return matrix.subarray(i * dims, (i + 1) * dims);
}

export function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

export function normalize(v: Float32Array): Float32Array {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i]! * v[i]!;
  const n = Math.sqrt(s);
  if (n > 0) for (let i = 0; i < v.length; i++) v[i]! /= n;
  return v;
}

export function cosine(a: Float32Array, b: Float32Array): number {
  let d = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    d += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return na === 0 || nb === 0 ? 0 : d / Math.sqrt(na * nb);
}
