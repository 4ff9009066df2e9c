/**
 * Memory server commands (docs/protocol.md): zod schemas for every command's `data`,
 * the reply types, limits and the command/event name lists. Browser-safe.
 *
 * Validate with `parseRequestData(schema, req.data, req.type)`: error messages
 * name the wire field (`data.text: is required`, `data.items[3].text: …`).
 */
import { z } from 'zod';
import { ProtocolError } from './errors.js';
import { filterProblem } from './filter.js';

export { FIELD_OPERATORS, LOGICAL_OPERATORS, MAX_FILTER_DEPTH } from './filter.js';

export const MEMORY_LIMITS = {
  /** UTF-8 bytes of `text`. */
  maxTextBytes: 64 * 1024,
  /** UTF-8 bytes of `metadata` serialized as JSON. */
  maxMetadataBytes: 16 * 1024,
  maxIdChars: 256,
  maxNamespaceChars: 256,
  maxBatchItems: 1000,
  maxCount: 1000,
  defaultCount: 5,
  maxListLimit: 1000,
  defaultListLimit: 100,
  maxDeleteIds: 1000,
  /** Largest accepted `ttl_s` (100 years). */
  maxTtlS: 100 * 365 * 24 * 3600,
  /** Events kept for `since_seq` replay. */
  eventLogSize: 10_000,
  /** Largest `ef` of `retrieve` (the graph's candidate list; the core's `plan::MAX_EF`). */
  maxEf: 16_384,
} as const;

export const DEFAULT_NAMESPACE = 'default';

export const MEMORY_COMMANDS = [
  'store',
  'retrieve',
  'list',
  'get',
  'update',
  'delete',
  'namespaces',
  'subscribe',
  'unsubscribe',
  'stats',
] as const;
export type MemoryCommand = (typeof MEMORY_COMMANDS)[number];

export const MEMORY_EVENTS = ['memory_added', 'memory_updated', 'memory_removed'] as const;
export type MemoryEventName = (typeof MEMORY_EVENTS)[number];

export { parseRequestData } from './validate.js';

// ---------------------------------------------------------------- field schemas

/** A vector: number[] (JSON) or Float32Array (MessagePack float32 bin, revived by the codec). */
// A plain loop, not a zod check per element: a 384-number vector would otherwise cost
// more to validate than to search with.
export const vectorSchema = z.custom<Float32Array | number[]>(
  (v) => {
    if (v instanceof Float32Array) return v.length > 0;
    if (!Array.isArray(v) || v.length === 0) return false;
    for (let i = 0; i < v.length; i++) {
      const x = v[i];
      if (typeof x !== 'number' || !Number.isFinite(x)) return false;
    }
    return true;
  },
  { message: 'must be a non-empty array of finite numbers (or float32 binary in MessagePack)' },
);
export type Vector = z.infer<typeof vectorSchema>;

export const namespaceSchema = z
  .string()
  .min(1, { message: 'must be a non-empty string' })
  .max(MEMORY_LIMITS.maxNamespaceChars);

export const memoryIdSchema = z.string().min(1, { message: 'must be a non-empty string' }).max(MEMORY_LIMITS.maxIdChars);

/**
 * A JSON object, passed through as decoded: not copied, because a copy made by assignment
 * (as z.record does) turns a `__proto__` key into the copy's prototype and loses it.
 */
const plainObject = (v: unknown): v is Record<string, unknown> => {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || ArrayBuffer.isView(v)) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
};
const objectSchema = z.custom<Record<string, unknown>>(plainObject, { message: 'must be an object' });

const metadataSchema = objectSchema;

const significanceSchema = z.number().min(0).max(1);

/**
 * The filter language (docs/protocol.md "Filter language"): its operators and nesting are
 * checked here (filter.ts), operands in detail by the core.
 */
export const filterSchema = objectSchema.superRefine((f, ctx) => {
  const problem = filterProblem(f);
  if (problem) ctx.addIssue({ code: z.ZodIssueCode.custom, path: problem.path, message: problem.message });
});
export type Filter = Record<string, unknown>;

const isoSchema = z
  .string()
  .refine((s) => !Number.isNaN(Date.parse(s)), { message: 'must be an ISO-8601 timestamp' });

const base = { namespace: namespaceSchema.optional() };

// Every command schema is strict: an unknown field is `invalid_request` naming it (a
// misplaced field, e.g. a per-item `namespace`, would otherwise be dropped silently).
export const storeItemSchema = z
  .object({
    text: z.string({ invalid_type_error: 'must be a string' }).min(1, { message: 'must be a non-empty string' }),
    metadata: metadataSchema.optional(),
    significance: significanceSchema.optional(),
    embedding: vectorSchema.optional(),
    id: memoryIdSchema.optional(),
    ttl_s: z.number().positive().max(MEMORY_LIMITS.maxTtlS).optional(),
  })
  .strict();
export type StoreItem = z.infer<typeof storeItemSchema>;

/** Parsed with a branch chosen by the presence of `items` (clearer errors than a zod union). */
export const storeSingleSchema = storeItemSchema.extend(base);
export const storeBatchSchema = z.object({
  ...base,
  items: z.array(storeItemSchema, { invalid_type_error: 'must be an array' }).min(1).max(MEMORY_LIMITS.maxBatchItems),
}).strict();
export type StoreData = z.infer<typeof storeSingleSchema> | z.infer<typeof storeBatchSchema>;

/** The `mode`s of `retrieve` (docs/search.md). */
export const RETRIEVE_MODES = ['vector', 'text', 'hybrid'] as const;
export type RetrieveMode = (typeof RETRIEVE_MODES)[number];

export const retrieveSchema = z.object({
  ...base,
  count: z.number().int().min(1).max(MEMORY_LIMITS.maxCount).default(MEMORY_LIMITS.defaultCount),
  min_significance: z.number().min(0).max(1).default(0),
  query: z.string().min(1, { message: 'must be a non-empty string' }).max(MEMORY_LIMITS.maxTextBytes).optional(),
  embedding: vectorSchema.optional(),
  min_score: z.number().min(-1).max(1).optional(),
  type: z.string().optional(),
  filter: filterSchema.optional(),
  since: isoSchema.optional(),
  until: isoSchema.optional(),
  recency_half_life_s: z.number().positive().optional(),
  include_embeddings: z.boolean().optional(),
  /** Force the exact pass even where the namespace's ANN graph would serve (docs/search.md). */
  exact: z.boolean().optional(),
  /** The ANN graph's candidate list for this query instead of the planner's (docs/search.md): larger finds more of the true top `count`, slower; ignored by the exact pass. */
  ef: z
    .number({ invalid_type_error: `must be an integer from 1 to ${MEMORY_LIMITS.maxEf}` })
    .int({ message: `must be an integer from 1 to ${MEMORY_LIMITS.maxEf}` })
    .min(1, { message: `must be an integer from 1 to ${MEMORY_LIMITS.maxEf}` })
    .max(MEMORY_LIMITS.maxEf, { message: `must be an integer from 1 to ${MEMORY_LIMITS.maxEf}` })
    .optional(),
  /** Add `plan` to the reply: which plan answered (`exact` | `graph`) and why. */
  explain: z.boolean().optional(),
  /** How `query` ranks (docs/search.md): by embedding (`vector`, the default), BM25 over the texts (`text`), or both fused (`hybrid`). */
  mode: z.enum(RETRIEVE_MODES, { errorMap: () => ({ message: `must be one of ${RETRIEVE_MODES.join(', ')}` }) }).optional(),
  /** Wait (bounded) until this instance has applied at least this sequence (docs/cluster.md). */
  min_seq: z.number().int().nonnegative().optional(),
}).strict();
export type RetrieveData = z.infer<typeof retrieveSchema>;

export const listSchema = z.object({
  ...base,
  cursor: z.union([z.string(), z.number().int().nonnegative(), z.null()]).optional(),
  limit: z.number().int().min(1).max(MEMORY_LIMITS.maxListLimit).default(MEMORY_LIMITS.defaultListLimit),
  filter: filterSchema.optional(),
  include_embeddings: z.boolean().optional(),
}).strict();
export type ListData = z.infer<typeof listSchema>;

export const getSchema = z.object({
  ...base,
  id: memoryIdSchema,
  include_embeddings: z.boolean().optional(),
  /** As retrieve's `min_seq`. */
  min_seq: z.number().int().nonnegative().optional(),
}).strict();
export type GetData = z.infer<typeof getSchema>;

export const updateSchema = z.object({
  ...base,
  id: memoryIdSchema,
  metadata: metadataSchema.optional(),
  significance: significanceSchema.optional(),
}).strict();
export type UpdateData = z.infer<typeof updateSchema>;
/** Fields an update may not carry (delete and store instead). */
export const IMMUTABLE_FIELDS = ['text', 'embedding'] as const;

export const deleteSchema = z.object({
  ...base,
  id: memoryIdSchema.optional(),
  ids: z.array(memoryIdSchema).min(1).max(MEMORY_LIMITS.maxDeleteIds).optional(),
  filter: filterSchema.optional(),
  all: z.boolean().optional(),
}).strict();
export type DeleteData = z.infer<typeof deleteSchema>;

export const namespacesSchema = z.object({}).strict();

export const subscribeSchema = z.object({
  ...base,
  events: z.array(z.enum(MEMORY_EVENTS)).optional(),
  since_seq: z.number().int().nonnegative().optional(),
}).strict();
export type SubscribeData = z.infer<typeof subscribeSchema>;

export const unsubscribeSchema = z.object({ ...base }).strict();

export const statsSchema = z.object({ ...base }).strict();

// ---------------------------------------------------------------- replies

/** A memory on the wire. */
export interface WireMemory {
  id: string;
  namespace: string;
  text: string;
  metadata: Record<string, unknown>;
  significance: number;
  /** ISO-8601. */
  timestamp: string;
  associations: string[];
  /** ISO-8601, present when the memory has a TTL. */
  expires_at?: string;
  /** Only with `include_embeddings`. */
  embedding?: Float32Array;
  /** Only for retrieve with a query. */
  score?: number;
  /** Only for retrieve with a `mode`: which rankings scored this memory, and how. */
  signals?: RetrieveSignals;
}

/** A memory's place in one ranking: 1-based rank and that ranking's score (cosine, or BM25). */
export interface SignalScore {
  rank: number;
  score: number;
}
/** The rankings that scored a memory of a `retrieve` with a `mode` (docs/search.md). */
export interface RetrieveSignals {
  vector?: SignalScore;
  text?: SignalScore;
}

/** `retrieve`'s `plan` with `explain: true` (docs/search.md). */
export interface RetrievePlan {
  plan: 'exact' | 'graph' | 'significance';
  reason: string;
  filter_candidates?: number;
  ef?: number;
  scored?: number;
}

export interface StoreResult {
  id: string;
  significance: number;
  timestamp: string;
  associations: string[];
  existing: boolean;
}
/** The store reply's counts (docs/protocol.md "store"). */
export interface StoreStats {
  /** Every memory in the store, as `stats` without a namespace (a namespace-limited token: namespace_total). */
  total_memories: number;
  /** The namespace's memories right after this store (a batch: its last item) took effect. */
  namespace_total: number;
}
export interface StoreReply extends StoreResult {
  stats: StoreStats;
}
export interface StoreBatchReply {
  items: StoreResult[];
  stats: StoreStats;
}
export interface RetrieveReply {
  memories: WireMemory[];
  /** Present (true) when the top memories did not all fit the reply byte budget: only the best that fit are sent. */
  truncated?: boolean;
}
export interface ListReply {
  memories: WireMemory[];
  next_cursor: string | null;
}
export interface DeleteReply {
  deleted: number;
  not_found: string[];
}
export interface NamespacesReply {
  namespaces: Array<{ name: string; total_memories: number }>;
}
export interface SubscribeReply {
  events: MemoryEventName[];
  seq: number;
  namespace: string;
  /** How many missed events were replayed before this reply. */
  replayed?: number;
  /** True when `since_seq` is older than the event log: some events were lost (resync with list). */
  gap?: boolean;
}
export interface MemoryEventData {
  memory: WireMemory | { id: string; namespace: string };
  seq: number;
  /** `memory_removed` only: a `delete`, or its TTL passed. */
  reason?: 'deleted' | 'expired';
}
export interface MemoryStatsCounts {
  total_memories: number;
  memory_count: number;
  namespaces: number;
}
export interface MemoryStatsReply extends MemoryStatsCounts {
  namespace?: string;
  dims: number;
  model: string;
  device: string;
  storage_bytes: number;
  storage_path: string;
  connections: number;
  uptime_s: number;
  queries_per_second: number;
  avg_latency_ms: number;
  fsync: string;
  /** Log bytes of the live memories (what a compaction keeps) and the rest. */
  live_bytes: number;
  garbage_bytes: number;
  /** The last compaction since start (see CompactionSummary in control.ts), or null. */
  last_compaction: {
    at: string;
    duration_ms: number;
    bytes_before: number;
    bytes_after: number;
    rows_before: number;
    rows_after: number;
    start_seq: number;
    automatic: boolean;
  } | null;
  /** Vector searches answered per plan since start: the exact pass, an ANN graph. */
  plans?: { exact: number; graph: number };
  totals?: MemoryStatsCounts;
  /** A re-embedding under way (`--reembed`; docs/embeddings.md). */
  reembed?: ReembedProgress;
}

/** A re-embedding's progress (`stats.reembed`, the control center's memory card). */
export interface ReembedProgress {
  state: 'copying' | 'switching' | 'failed';
  /** Embedder names: the directory's, and the one being switched to. */
  from: string;
  to: string;
  /** Memories in the new embedder's store, and in the live one. */
  done: number;
  total: number;
  /** Memories re-embedded per second since this start. */
  per_second: number;
  started_at: string;
  error?: string;
}

// ---------------------------------------------------------------- size checks

/** UTF-8 byte length of a string (no allocation). */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/** payload_too_large when `text` exceeds 64 KiB of UTF-8. */
export function checkTextSize(text: string, field: string, limit: number = MEMORY_LIMITS.maxTextBytes): void {
  if (text.length > limit || (text.length * 3 > limit && utf8Length(text) > limit)) {
    throw new ProtocolError('payload_too_large', `${field}: exceeds the limit of ${limit} bytes`, { field, limit });
  }
}

/** Serializes metadata; payload_too_large when over 16 KiB as JSON. */
export function metadataJson(metadata: Record<string, unknown> | undefined, field: string): string | undefined {
  if (metadata === undefined) return undefined;
  const json = JSON.stringify(metadata);
  const limit = MEMORY_LIMITS.maxMetadataBytes;
  if (utf8Length(json) > limit) {
    throw new ProtocolError('payload_too_large', `${field}: exceeds the limit of ${limit} bytes as JSON`, { field, limit });
  }
  return json;
}
