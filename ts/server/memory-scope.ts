/**
 * What a connection limited to some namespaces (JWT `ns` claim) may see of the store: the
 * counts of its own namespaces, never the global totals, the storage size or path, nor
 * server-wide activity (connections, request rates, sequence numbers). Unrestricted
 * connections see everything.
 */
import type { MemoryStatsCounts } from '../protocol/memory.js';
import { isRestricted, type AuthClaims } from './auth.js';

/** The part of the store these counts need. */
export interface CountSource {
  count(namespace: string): number;
}

/** Counts over the namespaces `claims` allow; null when unrestricted (use the global counts). */
export function scopedCounts(claims: AuthClaims, store: CountSource): MemoryStatsCounts | null {
  if (!isRestricted(claims)) return null;
  let total = 0;
  let namespaces = 0;
  for (const ns of new Set(claims.namespaces)) {
    const n = store.count(ns);
    total += n;
    if (n > 0) namespaces++;
  }
  return { total_memories: total, memory_count: total, namespaces };
}

/**
 * The total a reply may call `total_memories` when it means "all memories": the global count
 * for an unrestricted connection, the sum over its own namespaces for a restricted one. For
 * every reply that reports a store-wide total (stats, and the store reply's global total).
 */
export function visibleTotal(claims: AuthClaims, store: CountSource, globalTotal: () => number): number {
  const scoped = scopedCounts(claims, store);
  return scoped === null ? globalTotal() : scoped.total_memories;
}

/** The fixed facts of the `stats` reply a restricted connection still gets. */
export interface ScopedStatsFacts {
  dims: number;
  model: string;
  device: string;
  uptime_s: number;
  fsync: string;
  isa: string;
}

/**
 * `stats` for a restricted connection: its own counts (`namespace` given: that namespace's,
 * with `totals` over its own namespaces) and the server's fixed facts.
 */
export function scopedStatsReply(
  counts: MemoryStatsCounts,
  facts: ScopedStatsFacts,
  namespace: { name: string; total: number } | undefined,
): Record<string, unknown> {
  if (namespace === undefined) return { ...counts, ...facts };
  const n = namespace.total;
  return { total_memories: n, memory_count: n, namespaces: n > 0 ? 1 : 0, ...facts, namespace: namespace.name, totals: counts };
}
