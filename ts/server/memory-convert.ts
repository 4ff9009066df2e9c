/**
 * Between the native store and the wire: memories in their wire form (ISO timestamps,
 * metadata objects, float32 values printed short) and NativeErrors as the protocol errors
 * (or start-up errors) a client or operator should see.
 */
import { ProtocolError } from '../protocol/index.js';
import type { CompactionSummary } from '../protocol/control.js';
import type { WireMemory } from '../protocol/memory.js';
import { NativeError, type CompactResult, type NativeMemory } from '../native.js';

/** Converts a native memory (metadata JSON text, ms timestamps) to the wire form. */
export function toWireMemory(m: NativeMemory, includeEmbedding = false): WireMemory {
  const out: WireMemory = {
    id: m.id,
    namespace: m.namespace,
    text: m.text,
    metadata: parseMetadata(m.metadata),
    significance: f32(m.significance),
    timestamp: isoOf(m.timestamp),
    associations: m.associations,
  };
  if (m.expiresAt !== undefined && m.expiresAt !== null) out.expires_at = isoOf(m.expiresAt);
  if (m.score !== undefined && m.score !== null) out.score = f32(m.score);
  if (includeEmbedding && m.embedding) out.embedding = m.embedding;
  return out;
}

/** JavaScript's Date range: ±8.64e15 ms around the epoch. */
const MAX_DATE_MS = 8.64e15;

/**
 * Milliseconds since the epoch as an ISO string, clamped into JavaScript's Date range: a
 * stored value outside it (the core keeps any i64) must not make a read or an export throw
 * "Invalid time value".
 */
export function isoOf(ms: number): string {
  const t = Number.isFinite(ms) ? Math.max(-MAX_DATE_MS, Math.min(MAX_DATE_MS, ms)) : ms > 0 ? MAX_DATE_MS : -MAX_DATE_MS;
  return new Date(t).toISOString();
}

/** Float32 values from the core as the shortest decimal that round-trips in float32 (0.4, not 0.4000000059604645). */
export const f32 = (x: number): number => (Number.isFinite(x) ? Number(x.toPrecision(7)) : x);

function parseMetadata(json: string): Record<string, unknown> {
  if (!json) return {};
  try {
    const v: unknown = JSON.parse(json);
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** Maps a NativeError to the protocol error a client should see. */
export function toProtocolError(err: unknown): unknown {
  if (!(err instanceof NativeError)) return err;
  switch (err.code) {
    case 'invalid_request':
    case 'payload_too_large':
      return new ProtocolError(err.code, /^filter\b/.test(err.message) ? `data.${err.message}` : err.message);
    case 'not_found':
      return new ProtocolError('not_found', err.message);
    case 'storage_full':
      return new ProtocolError('unavailable', `Storage is full: ${err.message}`, { reason: 'storage_full' });
    case 'unavailable':
      return new ProtocolError('unavailable', err.message);
    default:
      return err; // corrupt, io, locked, internal → `internal` with a correlation id
  }
}

/** Awaits a store call (or runs a sync one), mapping its NativeError to a ProtocolError. */
export async function mapped<T>(p: Promise<T> | (() => T)): Promise<T> {
  try {
    return typeof p === 'function' ? p() : await p;
  } catch (err) {
    throw toProtocolError(err);
  }
}

export function isoToMs(iso: string | undefined): number | undefined {
  return iso === undefined ? undefined : Date.parse(iso);
}

/** The error `listen()` reports when the data directory cannot be opened. */
export function startupError(err: unknown, dir: string): Error {
  if (err instanceof NativeError) {
    switch (err.code) {
      case 'locked':
        return new Error(`Data directory ${dir} is locked: another memory server is using it (${err.message})`);
      case 'corrupt':
        return new Error(`Data directory ${dir} is corrupt: ${err.message}. Run \`memory-server repair --data-dir ${dir}\``);
      default:
        return new Error(`Cannot open data directory ${dir}: ${err.message}`);
    }
  }
  return err instanceof Error ? err : new Error(String(err));
}

/** A native compaction report in its wire form. */
export function compactionSummary(r: CompactResult): CompactionSummary {
  return {
    at: isoOf(r.finishedAt),
    duration_ms: r.durationMs,
    bytes_before: r.bytesBefore,
    bytes_after: r.bytesAfter,
    rows_before: r.rowsBefore,
    rows_after: r.rowsAfter,
    start_seq: r.startSeq,
    automatic: r.automatic,
  };
}

/** The store options that tune it: automatic compaction and the ANN graph threshold. */
export interface StoreTuning {
  compactGarbageRatio?: number;
  compactMinBytes?: number;
  annMinRows?: number;
}

/** The memory server's `compaction` and `annMinRows` options as store options. */
export function storeTuning(compaction: { garbageRatio?: number; minBytes?: number } | false | undefined, annMinRows: number | undefined): StoreTuning {
  const t: StoreTuning = {};
  if (compaction === false) t.compactGarbageRatio = 0;
  else {
    if (compaction?.garbageRatio !== undefined) t.compactGarbageRatio = compaction.garbageRatio;
    if (compaction?.minBytes !== undefined) t.compactMinBytes = compaction.minBytes;
  }
  if (annMinRows !== undefined) t.annMinRows = annMinRows;
  return t;
}
