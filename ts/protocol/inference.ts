/**
 * Inference server commands (docs/protocol.md): zod schemas for every command's `data`,
 * reply types, limits and the command list. Browser-safe.
 */
import { z } from 'zod';

export const INFERENCE_LIMITS = {
  /** Texts per `embeddings` request. */
  maxTexts: 256,
  /** UTF-8 bytes per text (embeddings) — same as a memory's text. */
  maxTextBytes: 64 * 1024,
  /** `process` input: characters. */
  maxProcessChars: 256 * 1024,
  /** `process` context entries. */
  maxContext: 256,
  defaultMaxTokens: 128,
  defaultStride: 32,
  maxMaxTokens: 8192,
} as const;

export const INFERENCE_COMMANDS = ['embeddings', 'process', 'stats'] as const;
export type InferenceCommand = (typeof INFERENCE_COMMANDS)[number];

const text = z.string({ invalid_type_error: 'must be a string' }).max(INFERENCE_LIMITS.maxTextBytes);

export const embeddingsSchema = z
  .object({
    text: text.optional(),
    texts: z.array(text, { invalid_type_error: 'must be an array of strings' }).min(1).max(INFERENCE_LIMITS.maxTexts).optional(),
    config: z
      .object({ normalize: z.boolean().default(true) })
      .strict()
      .default({}),
  })
  .strict()
  .superRefine((v, ctx) => {
    if (v.text === undefined && v.texts === undefined) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['text'], message: 'is required (or texts)' });
    } else if (v.text !== undefined && v.texts !== undefined) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['texts'], message: 'give either text or texts, not both' });
    }
  });
export type EmbeddingsData = z.infer<typeof embeddingsSchema>;

export const processSchema = z
  .object({
    text: z.string({ invalid_type_error: 'must be a string' }).min(1, { message: 'must be a non-empty string' }).max(INFERENCE_LIMITS.maxProcessChars),
    context: z.array(text, { invalid_type_error: 'must be an array of strings' }).max(INFERENCE_LIMITS.maxContext).default([]),
    config: z
      .object({
        max_tokens: z.number().int().min(1).max(INFERENCE_LIMITS.maxMaxTokens).default(INFERENCE_LIMITS.defaultMaxTokens),
        stride: z.number().int().min(0).default(INFERENCE_LIMITS.defaultStride),
      })
      .strict()
      .default({}),
  })
  .strict()
  .superRefine((v, ctx) => {
    if (v.config.stride >= v.config.max_tokens) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['config', 'stride'], message: 'must be smaller than config.max_tokens' });
    }
  });
export type ProcessData = z.infer<typeof processSchema>;

export const inferenceStatsSchema = z.object({}).strict();

export interface EmbeddingsReply {
  embedding?: Float32Array;
  embeddings?: Float32Array[];
  dims: number;
  model: string;
}

export interface ProcessChunk {
  text: string;
  start: number;
  end: number;
  significance: number;
}

export interface ProcessReply {
  embedding: Float32Array;
  significance: number;
  chunks: ProcessChunk[];
  dims: number;
  model: string;
}

export interface InferenceStatsReply {
  model: string;
  device: string;
  dims: number;
  max_batch: number;
  queue_depth: number;
  requests: number;
  batches: number;
  avg_batch_size: number;
  embeddings_per_second: number;
  p50_ms: number;
  p99_ms: number;
  /** Texts skipped because their client left before they ran. */
  skipped: number;
  /** Padded tokens run per real token (1 = no padding; 0 before the first run). */
  padding_ratio: number;
  /** Texts whose run failed on their own (their batch-mates were run without them). */
  failed_texts: number;
  connections: number;
  uptime_s: number;
}
