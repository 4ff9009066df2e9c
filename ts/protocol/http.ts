/**
 * The HTTP face of the protocol (docs/http.md): how error codes become HTTP statuses, the
 * error body, the namespace header, and zod schemas of the memory server's replies (the
 * OpenAPI document's responses and the tests' response checks are generated from these; the
 * requests use the command schemas of memory.ts themselves). Browser-safe.
 */
import { z } from 'zod';
import type { ErrorCode } from './errors.js';
import type {
  DeleteReply,
  ListReply,
  MemoryStatsCounts,
  NamespacesReply,
  RetrieveReply,
  StoreBatchReply,
  StoreReply,
  StoreResult,
  StoreStats,
  WireMemory,
} from './memory.js';

/** The one table from a protocol error code to the HTTP status that carries it. */
export const HTTP_STATUS_OF_CODE: Readonly<Record<ErrorCode, number>> = {
  invalid_json: 400,
  unknown_type: 404,
  invalid_request: 400,
  payload_too_large: 413,
  rate_limited: 429,
  not_found: 404,
  overloaded: 503,
  unavailable: 503,
  internal: 500,
};

/** Codes only HTTP has (the WebSocket refuses these before the upgrade, or never meets them). */
export const HTTP_ONLY_ERROR_CODES = [
  'unauthorized',
  'forbidden',
  'route_not_found',
  'method_not_allowed',
  'unsupported_media_type',
] as const;
export type HttpOnlyErrorCode = (typeof HTTP_ONLY_ERROR_CODES)[number];
export type HttpErrorCode = ErrorCode | HttpOnlyErrorCode;

/** Status of each HTTP-only code. */
export const HTTP_STATUS_OF_HTTP_CODE: Readonly<Record<HttpOnlyErrorCode, number>> = {
  unauthorized: 401,
  forbidden: 403,
  route_not_found: 404,
  method_not_allowed: 405,
  unsupported_media_type: 415,
};

export function httpStatusOf(code: HttpErrorCode): number {
  return (HTTP_STATUS_OF_CODE as Record<string, number>)[code] ?? (HTTP_STATUS_OF_HTTP_CODE as Record<string, number>)[code] ?? 500;
}

/** An HTTP error body: the WebSocket error reply without `type`/`id` (`error` repeats `message`). */
export interface HttpErrorBody {
  status: 'error';
  code: HttpErrorCode;
  message: string;
  error: string;
  data?: Record<string, unknown>;
}

export function httpErrorBody(code: HttpErrorCode, message: string, data?: Record<string, unknown>): HttpErrorBody {
  return data === undefined ? { status: 'error', code, message, error: message } : { status: 'error', code, message, error: message, data };
}

/** Request header naming the namespace (as `data.namespace` does on the WebSocket); `?namespace=` works too. */
export const NAMESPACE_HEADER = 'x-namespace';

// ---------------------------------------------------------------- reply schemas

export const httpErrorSchema = z
  .object({
    status: z.literal('error'),
    code: z.string(),
    message: z.string(),
    error: z.string(),
    data: z.record(z.unknown()).optional(),
  })
  .strict();

const signalScoreSchema = z.object({ rank: z.number().int(), score: z.number() }).strict();

export const wireMemorySchema = z
  .object({
    id: z.string(),
    namespace: z.string(),
    text: z.string(),
    metadata: z.record(z.unknown()),
    significance: z.number(),
    timestamp: z.string(),
    associations: z.array(z.string()),
    expires_at: z.string().optional(),
    embedding: z.array(z.number()).optional(),
    score: z.number().optional(),
    signals: z
      .object({ vector: signalScoreSchema.optional(), text: signalScoreSchema.optional() })
      .strict()
      .optional()
      .describe('With a retrieve `mode`: the rankings that scored this memory (1-based rank and that ranking\'s score: cosine, or BM25).'),
  })
  .strict();

const storeResultSchema = z
  .object({ id: z.string(), significance: z.number(), timestamp: z.string(), associations: z.array(z.string()), existing: z.boolean() })
  .strict();
const storeStatsSchema = z.object({ total_memories: z.number().int(), namespace_total: z.number().int() }).strict();

export const storeReplySchema = storeResultSchema.extend({ stats: storeStatsSchema }).strict();
export const storeBatchReplySchema = z.object({ items: z.array(storeResultSchema), stats: storeStatsSchema }).strict();
export const retrieveReplySchema = z.object({ memories: z.array(wireMemorySchema), truncated: z.literal(true).optional() }).strict();
export const listReplySchema = z.object({ memories: z.array(wireMemorySchema), next_cursor: z.string().nullable() }).strict();
export const deleteReplySchema = z.object({ deleted: z.number().int(), not_found: z.array(z.string()) }).strict();
export const namespacesReplySchema = z
  .object({ namespaces: z.array(z.object({ name: z.string(), total_memories: z.number().int() }).strict()) })
  .strict();

const statsCountsSchema = z.object({ total_memories: z.number().int(), memory_count: z.number().int(), namespaces: z.number().int() }).strict();
const compactionSchema = z
  .object({
    at: z.string(),
    duration_ms: z.number(),
    bytes_before: z.number(),
    bytes_after: z.number(),
    rows_before: z.number(),
    rows_after: z.number(),
    start_seq: z.number(),
    automatic: z.boolean(),
  })
  .strict();
/**
 * `stats`: the global figures are left out for a token limited to some namespaces
 * (docs/protocol.md "stats"), hence optional here.
 */
export const statsReplySchema = statsCountsSchema
  .extend({
    namespace: z.string().optional(),
    totals: statsCountsSchema.optional(),
    dims: z.number().int(),
    model: z.string(),
    device: z.string(),
    uptime_s: z.number(),
    fsync: z.string(),
    isa: z.string(),
    storage_bytes: z.number().optional(),
    storage_path: z.string().optional(),
    connections: z.number().optional(),
    queries_per_second: z.number().optional(),
    avg_latency_ms: z.number().optional(),
    total_associations: z.number().optional(),
    fsyncs: z.number().optional(),
    last_seq: z.number().optional(),
    live_bytes: z.number().optional(),
    garbage_bytes: z.number().optional(),
    last_compaction: compactionSchema.nullable().optional(),
    // Searches answered per vector plan since start (docs/search.md, "The planner").
    plans: z.object({ exact: z.number(), graph: z.number() }).strict().optional(),
  })
  .strict();

/** `GET /healthz` and `GET /readyz` on the memory and inference servers. */
export const healthReplySchema = z
  .object({
    status: z.enum(['ok', 'not_ready']),
    service: z.string(),
    version: z.string(),
    checks: z.record(z.boolean()).optional(),
  })
  .strict();
export type ServerHealthReply = z.infer<typeof healthReplySchema>;

// The reply schemas above restate reply interfaces of memory.ts (which the handlers and clients
// use); these checks fail the build when the two name different fields.
type SameKeys<A, B> = [Exclude<keyof A, keyof B>, Exclude<keyof B, keyof A>] extends [never, never] ? true : never;
const sameFields: [
  SameKeys<z.infer<typeof wireMemorySchema>, WireMemory>,
  SameKeys<z.infer<typeof storeReplySchema>, StoreReply>,
  SameKeys<z.infer<typeof storeResultSchema>, StoreResult>,
  SameKeys<z.infer<typeof storeStatsSchema>, StoreStats>,
  SameKeys<z.infer<typeof storeBatchReplySchema>, StoreBatchReply>,
  SameKeys<z.infer<typeof retrieveReplySchema>, RetrieveReply>,
  SameKeys<z.infer<typeof listReplySchema>, ListReply>,
  SameKeys<z.infer<typeof deleteReplySchema>, DeleteReply>,
  SameKeys<z.infer<typeof namespacesReplySchema>, NamespacesReply>,
  SameKeys<z.infer<typeof statsCountsSchema>, MemoryStatsCounts>,
] = [true, true, true, true, true, true, true, true, true, true];
void sameFields;
