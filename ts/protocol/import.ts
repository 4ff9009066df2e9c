/**
 * One line of `memory-server import` (the format `export` writes): the `store` item schema —
 * so text, id, metadata, significance and embedding follow exactly the rules of `store` —
 * plus the fields export records: namespace, timestamp, expires_at, associations. Browser-safe.
 *
 * A line with `associations` is a recorded one (export always writes them): it is loaded as
 * recorded and needs its `id` and `significance` too (checked in ts/cli/import.ts). A line
 * without is stored like `store` stores it, so `id` is optional there.
 */
import { z } from 'zod';
import { memoryIdSchema, namespaceSchema, storeItemSchema, vectorSchema } from './memory.js';

/**
 * The instants an import accepts (timestamp, expires_at): 1970-01-01 up to the end of year
 * 9999, as an ISO-8601 string or integer epoch milliseconds. Anything else could not be
 * written back out as an ISO date by `export`.
 */
export const IMPORT_TIME_RANGE = { minMs: 0, maxMs: Date.UTC(9999, 11, 31, 23, 59, 59, 999) } as const;

const instantSchema = z
  .union([z.string(), z.number()], { errorMap: () => ({ message: 'must be an ISO-8601 timestamp or epoch milliseconds' }) })
  .transform((v, ctx) => {
    const ms = typeof v === 'number' ? v : Date.parse(v);
    if (typeof v === 'string' && Number.isNaN(ms)) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'must be an ISO-8601 timestamp or epoch milliseconds' });
      return z.NEVER;
    }
    if (!Number.isSafeInteger(ms) || ms < IMPORT_TIME_RANGE.minMs || ms > IMPORT_TIME_RANGE.maxMs) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        message: `must be between ${new Date(IMPORT_TIME_RANGE.minMs).toISOString()} and ${new Date(IMPORT_TIME_RANGE.maxMs).toISOString()} (integer milliseconds)`,
      });
      return z.NEVER;
    }
    return ms;
  });

/** Most associations a record holds (the log stores their count in one byte). */
export const MAX_IMPORT_ASSOCIATIONS = 255;

export const importRowSchema = storeItemSchema
  .omit({ ttl_s: true })
  .extend({
    namespace: namespaceSchema.optional(),
    id: memoryIdSchema.optional(),
    // export writes [] for a memory read without its vector: embed it again.
    embedding: z.preprocess((v) => (Array.isArray(v) && v.length === 0 ? undefined : v), vectorSchema.optional()),
    timestamp: instantSchema.optional(),
    expires_at: instantSchema.optional(),
    associations: z.array(memoryIdSchema).max(MAX_IMPORT_ASSOCIATIONS).optional(),
    // Written by some exports; the store assigns its own.
    seq: z.number().int().nonnegative().optional(),
  })
  .strict();
export type ImportRow = z.infer<typeof importRowSchema>;
