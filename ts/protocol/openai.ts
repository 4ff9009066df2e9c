/**
 * The OpenAI-compatible embeddings API of the inference server (docs/embeddings.md "OpenAI-
 * compatible HTTP API"): the request schema, the reply and error shapes OpenAI's clients
 * parse, and OpenAI's error type for each status. Browser-safe.
 *
 * The texts themselves are validated by the `embeddings` command's own schema (the request
 * is handed to the same handler); this schema only covers the OpenAI envelope.
 */
import { z } from 'zod';

export const OPENAI_ENCODING_FORMATS = ['float', 'base64'] as const;
export type OpenAiEncodingFormat = (typeof OPENAI_ENCODING_FORMATS)[number];

export const openAiEmbeddingsSchema = z
  .object({
    input: z.union([z.string(), z.array(z.string(), { invalid_type_error: 'must be a string or an array of strings' })], {
      errorMap: () => ({ message: 'must be a string or an array of strings' }),
    }),
    model: z.string({ invalid_type_error: 'must be a string' }).min(1, { message: 'must be a non-empty string' }),
    encoding_format: z
      .enum(OPENAI_ENCODING_FORMATS, { errorMap: () => ({ message: 'must be "float" or "base64"' }) })
      .default('float'),
    dimensions: z.number({ invalid_type_error: 'must be an integer' }).int({ message: 'must be an integer' }).positive().optional(),
    /** OpenAI's end-user id: accepted and ignored. */
    user: z.string({ invalid_type_error: 'must be a string' }).optional(),
  })
  .strict();
export type OpenAiEmbeddingsRequest = z.infer<typeof openAiEmbeddingsSchema>;

/**
 * Whether `input` is token ids (`[1, 2, 3]` or `[[1, 2], [3]]`), which OpenAI accepts and a
 * text embedder cannot, so the error can say what to send instead. By hand, not zod: a failed
 * zod parse builds an error object, and this runs on every request.
 */
export function isTokenIdInput(input: unknown): boolean {
  if (!Array.isArray(input) || input.length === 0) return false;
  const first: unknown = input[0];
  return typeof first === 'number' || (Array.isArray(first) && typeof first[0] === 'number');
}

export interface OpenAiEmbedding {
  object: 'embedding';
  index: number;
  /** float: numbers; base64: the little-endian float32 bytes, base64-encoded. */
  embedding: number[] | string;
}

export interface OpenAiEmbeddingsReply {
  object: 'list';
  data: OpenAiEmbedding[];
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
}

export interface OpenAiModel {
  id: string;
  object: 'model';
  /** Unix seconds: when the server started serving it. */
  created: number;
  owned_by: string;
}

export interface OpenAiModelList {
  object: 'list';
  data: OpenAiModel[];
}

export type OpenAiErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'server_error';

/** OpenAI's error body: `code` is the server's own error code (docs/protocol.md "Error codes"). */
export interface OpenAiErrorBody {
  error: { message: string; type: OpenAiErrorType; param: string | null; code: string };
}

/** OpenAI's error type for a status (the status of a code is the one table of protocol/http.ts). */
export function openAiErrorType(status: number): OpenAiErrorType {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 429) return 'rate_limit_error';
  return status >= 500 ? 'server_error' : 'invalid_request_error';
}

export function openAiError(message: string, type: OpenAiErrorType, code: string, param: string | null = null): OpenAiErrorBody {
  return { error: { message, type, param, code } };
}
