/**
 * The inference server: `embeddings`, `process` and `stats` (docs/protocol.md), with
 * dynamic batching across all connections (EmbeddingBatcher).
 */
import { DEFAULTS, ProtocolError, parseRequestData, strictEnvelope, type Request } from '../protocol/index.js';
import {
  embeddingsSchema,
  inferenceStatsSchema,
  processSchema,
  type EmbeddingsReply,
  type InferenceStatsReply,
  type ProcessChunk,
} from '../protocol/inference.js';
import { HashEmbedder, dot, normalize, type Embedder, type TextWindow } from '../embedder.js';
import { wordWindows } from '../native.js';
import { EmbeddingBatcher, type BatcherOptions } from './inference-batcher.js';
import { WsServer, type CommandHandler, type Connection, type WsServerOptions } from './ws-server.js';
import { ServerBase } from './server-base.js';
import { VERSION } from '../version.js';
import { JSON_FLOAT_BYTES, jsonStringBytes } from './reply-budget.js';
import { addInferenceServerRoutes } from './http/server-routes.js';
import { DataDirSwitchWatch, embedderServedNow } from './follow-embedder.js';

export interface InferenceServerOptions extends Omit<WsServerOptions, 'commands' | 'onMessage'>, BatcherOptions {
  /** Default: the built-in hash embedder. The caller keeps ownership (close() does not close it). */
  embedder?: Embedder;
  /**
   * The data directory of the memory server beside this one: while a re-embedding of it to
   * `embedder` has not switched, serve the embedder its memories are still served with
   * (ts/server/follow-embedder.ts).
   */
  followDataDir?: string;
  /** With `followDataDir`: the embedder the directory was written with, unless the built-in hash. */
  previousEmbedder?: Embedder;
}

export class InferenceServer extends ServerBase {
  readonly ws: WsServer;
  /** The embedder and batcher serving now (another one until a followed re-embedding switches). */
  private serving!: { embedder: Embedder; batcher: EmbeddingBatcher };
  private readonly batcherOptions: BatcherOptions;
  private switchWatch: DataDirSwitchWatch | null = null;

  constructor(options: InferenceServerOptions = {}) {
    super();
    const { embedder, followDataDir, previousEmbedder, maxBatch, maxQueue, maxWaitMs, maxBatchTokens, runOverheadTokens, log, ...wsOptions } = options;
    const target = embedder ?? new HashEmbedder();
    const b: BatcherOptions = {};
    if (maxBatch !== undefined) b.maxBatch = maxBatch;
    if (maxQueue !== undefined) b.maxQueue = maxQueue;
    if (maxWaitMs !== undefined) b.maxWaitMs = maxWaitMs;
    if (maxBatchTokens !== undefined) b.maxBatchTokens = maxBatchTokens;
    if (runOverheadTokens !== undefined) b.runOverheadTokens = runOverheadTokens;
    b.log = log ?? ((m) => this.ws.logger.warn(m));
    this.batcherOptions = b;
    const userBeforeClose = wsOptions.beforeClose;
    this.ws = new WsServer({
      name: 'inference-server',
      port: DEFAULTS.ports.inference,
      portRange: DEFAULTS.ports.inferencePortRange,
      serviceInfo: () => ({ service: 'inference-server', version: VERSION, model: this.embedder.name, dims: this.embedder.dims }),
      ...wsOptions,
      pipelining: 'concurrent',
      commands: strictEnvelope<Connection, CommandHandler>({
        embeddings: (c, r) => this.embeddings(c, r),
        process: (c, r) => this.process(c, r),
        stats: (c, r) => this.stats(c, r),
      }),
      beforeClose: async () => {
        await userBeforeClose?.();
      },
    });
    const meanwhile = followDataDir === undefined ? null : embedderServedNow(followDataDir, target, previousEmbedder, (m) => b.log!(m));
    const first = meanwhile ?? target;
    this.serving = { embedder: first, batcher: new EmbeddingBatcher(first, b) };
    if (meanwhile && followDataDir !== undefined) {
      this.switchWatch = new DataDirSwitchWatch(followDataDir, target, () => this.useEmbedder(target));
    }
    if (meanwhile) this.ws.logger.info(`inference server: ${meanwhile.name} until the re-embedding of ${followDataDir} to ${target.name} switches`);
    addInferenceServerRoutes(this);
  }

  /** The embedder serving requests now. */
  get embedder(): Embedder {
    return this.serving.embedder;
  }

  /** The dynamic batcher serving requests now. */
  get batcher(): EmbeddingBatcher {
    return this.serving.batcher;
  }

  /** Serves `e` from the next request on; requests already queued finish with the previous one. */
  private useEmbedder(e: Embedder): void {
    const old = this.serving.batcher;
    this.serving = { embedder: e, batcher: new EmbeddingBatcher(e, this.batcherOptions) };
    this.ws.logger.info(`inference server: the re-embedding has switched; now serving ${e.name}`);
    const retire = (): void => {
      if (old.queueDepth === 0) old.close();
      else setTimeout(retire, 50).unref();
    };
    retire();
  }

  /** After the graceful shutdown: stops the batcher (the embedder stays the caller's). */
  protected release(): void {
    this.switchWatch?.close();
    this.serving.batcher.close();
  }

  private embeddings(conn: Connection, req: Request): Promise<EmbeddingsReply> {
    return this.runEmbeddings(req.data, () => conn.closed);
  }

  /**
   * The `embeddings` command, whatever carried it (a WebSocket frame, the OpenAI-compatible
   * `POST /v1/embeddings`): validation, the shared batcher, the reply. `cancelled` says the
   * client has gone (its texts are skipped if not yet run).
   */
  async runEmbeddings(data: unknown, cancelled: () => boolean): Promise<EmbeddingsReply> {
    const d = parseRequestData(embeddingsSchema, data, 'embeddings');
    const texts = d.texts ?? [d.text!];
    // One embedder for the whole request, even if a followed re-embedding switches meanwhile.
    const { embedder, batcher } = this.serving;
    const dims = embedder.dims;
    const rows = await batcher.embed(texts, { cancelled });
    const vecs: Float32Array[] = [];
    for (let i = 0; i < texts.length; i++) {
      const v = rows.slice(i * dims, (i + 1) * dims);
      // Embedders return L2-normalized rows; `normalize: false` keeps the raw output.
      vecs.push(d.config.normalize ? normalize(v) : v);
    }
    const base = { dims, model: embedder.name };
    return d.texts ? { embeddings: vecs, ...base } : { embedding: vecs[0]!, ...base };
  }

  private windows(embedder: Embedder, text: string, maxTokens: number, stride: number): TextWindow[] {
    const w = embedder.tokenWindows
      ? embedder.tokenWindows(text, maxTokens, stride)
      : wordWindows(text, maxTokens, stride);
    return w.length > 0 ? w : [{ start: 0, end: text.length, text }];
  }

  /**
   * Each chunk repeats its window's text, so overlapping windows multiply the reply: a 256 KiB
   * text with `max_tokens: 8192, stride: 8160` was a 63 MB reply (seconds of embedding and
   * JSON encoding). Refused before any embedding when the estimate passes the larger of
   * `maxReplyBytes` and PROCESS_REPLY_TEXT_FACTOR × the text's own JSON size (the default
   * windows repeat ~1.3× of the text; a multibyte 256 Ki-character text may pass 1 MiB).
   */
  private checkProcessReply(text: string, windows: readonly TextWindow[], dims: number): void {
    const allowed = Math.max(this.ws.options.maxReplyBytes, PROCESS_REPLY_TEXT_FACTOR * jsonStringBytes(text));
    let bytes = PROCESS_REPLY_OVERHEAD_BYTES + 2 * dims * JSON_FLOAT_BYTES;
    for (const w of windows) {
      bytes += jsonStringBytes(w.text) + CHUNK_OVERHEAD_BYTES;
      if (bytes > allowed) {
        const field = 'data.config.stride';
        throw new ProtocolError(
          'invalid_request',
          `${field}: the reply (${windows.length} overlapping windows) would pass ${allowed} bytes ` +
            `(the larger of maxReplyBytes and ${PROCESS_REPLY_TEXT_FACTOR}× the text); lower stride or raise max_tokens`,
          { field },
        );
      }
    }
  }

  private async process(conn: Connection, req: Request): Promise<unknown> {
    const d = parseRequestData(processSchema, req.data, req.type);
    const { embedder, batcher } = this.serving;
    const windows = this.windows(embedder, d.text, d.config.max_tokens, d.config.stride);
    const dims = embedder.dims;
    this.checkProcessReply(d.text, windows, dims);
    const rows = await batcher.embed([...windows.map((w) => w.text), ...d.context], { cancelled: () => conn.closed });
    const chunkRows = windows.map((_, i) => normalize(rows.slice(i * dims, (i + 1) * dims)));
    const ctxRows = d.context.map((_, j) => normalize(rows.slice((windows.length + j) * dims, (windows.length + j + 1) * dims)));
    const novelty = (v: Float32Array): number => {
      if (ctxRows.length === 0) return 0.5;
      let best = 0;
      for (const c of ctxRows) best = Math.max(best, dot(v, c));
      return Math.min(1, Math.max(0, 1 - best));
    };
    const mean = new Float32Array(dims);
    for (const r of chunkRows) for (let k = 0; k < dims; k++) mean[k]! += r[k]!;
    const embedding = normalize(mean);
    const chunks: ProcessChunk[] = windows.map((w, i) => ({
      text: w.text,
      start: w.start,
      end: w.end,
      significance: novelty(chunkRows[i]!),
    }));
    return { embedding, significance: novelty(embedding), chunks, dims, model: embedder.name };
  }

  private stats(_conn: Connection, req: Request): InferenceStatsReply {
    parseRequestData(inferenceStatsSchema, req.data, req.type);
    const b = this.batcher;
    const m = this.ws.metricsSnapshot();
    return {
      model: this.embedder.name,
      device: this.embedder.device,
      dims: this.embedder.dims,
      max_batch: b.maxBatch,
      queue_depth: b.queueDepth,
      requests: b.requests,
      batches: b.batches,
      avg_batch_size: b.batches === 0 ? 0 : b.embedded / b.batches,
      embeddings_per_second: b.embeddingsPerSecond(),
      p50_ms: b.percentile(50),
      p99_ms: b.percentile(99),
      skipped: b.skipped,
      padding_ratio: Math.round(b.paddingRatio * 1000) / 1000,
      failed_texts: b.failedTexts,
      connections: m.connections,
      uptime_s: Math.round(m.uptimeS * 1000) / 1000,
    };
  }
}

/** How many times its own JSON size a `process` reply may repeat of the text (overlapping windows). */
export const PROCESS_REPLY_TEXT_FACTOR = 4;
/** `{"text":,"start":…,"end":…,"significance":…}` of one chunk: an upper bound. */
const CHUNK_OVERHEAD_BYTES = 96;
/** The reply's other keys, model name and numbers: an upper bound. */
const PROCESS_REPLY_OVERHEAD_BYTES = 256;

/** Creates an inference server and starts listening (5005…5014 by default). */
export async function createInferenceServer(options: InferenceServerOptions = {}): Promise<InferenceServer> {
  const server = new InferenceServer(options);
  await server.listen();
  return server;
}
