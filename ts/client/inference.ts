/**
 * InferenceClient: embeddings, process and stats (docs/protocol.md). Vectors come back
 * as Float32Array in both JSON and MessagePack modes.
 */
import type { EmbeddingsReply, InferenceStatsReply, ProcessChunk, ProcessReply } from '../protocol/inference.js';
import { BaseClient, type ConnectionEvents, type ConnectionOptions } from './connection.js';
import { reviveVectors } from './vectors.js';

export type { EmbeddingsReply, InferenceStatsReply, ProcessChunk, ProcessReply };

export interface EmbeddingsConfig {
  /** Default true. */
  normalize?: boolean;
  [key: string]: unknown;
}

export interface ProcessConfig {
  /** Tokens per window. Default 128. */
  max_tokens?: number;
  /** Overlap between consecutive windows. Default 32. */
  stride?: number;
  [key: string]: unknown;
}

export type SingleEmbeddingReply = Required<Pick<EmbeddingsReply, 'embedding'>> & Pick<EmbeddingsReply, 'dims' | 'model'>;
export type BatchEmbeddingsReply = Required<Pick<EmbeddingsReply, 'embeddings'>> & Pick<EmbeddingsReply, 'dims' | 'model'>;

export type InferenceClientOptions = ConnectionOptions;
export type InferenceClientEvents = ConnectionEvents;

export class InferenceClient extends BaseClient<InferenceClientEvents> {
  constructor(options: InferenceClientOptions = {}) {
    super('inference', options);
  }

  /** One text → `{ embedding }`; several (≤ 256) → `{ embeddings }` (batched on the server). */
  embeddings(text: string, config?: EmbeddingsConfig): Promise<SingleEmbeddingReply>;
  embeddings(texts: string[], config?: EmbeddingsConfig): Promise<BatchEmbeddingsReply>;
  embeddings(input: string | string[], config?: EmbeddingsConfig): Promise<SingleEmbeddingReply | BatchEmbeddingsReply> {
    const data: Record<string, unknown> = Array.isArray(input) ? { texts: input } : { text: input };
    if (config !== undefined) data.config = config;
    return this.request('embeddings', data);
  }

  /** Chunks `text` into overlapping token windows, embeds them, and scores novelty against `context`. */
  process(text: string, context?: string[], config?: ProcessConfig): Promise<ProcessReply> {
    const data: Record<string, unknown> = { text };
    if (context !== undefined) data.context = context;
    if (config !== undefined) data.config = config;
    return this.request<ProcessReply>('process', data);
  }

  stats(): Promise<InferenceStatsReply> {
    return this.request<InferenceStatsReply>('stats');
  }

  protected override reviveReply(_type: string, data: unknown): unknown {
    return reviveVectors(data);
  }
}
