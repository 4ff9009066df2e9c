/**
 * Where the memory server's write commands (store, update, delete) send a validated,
 * embedded write. The handlers in memory.ts are the one implementation of each command;
 * they hand the write to a WritePath and build the reply from what it resolves with.
 *
 * - `LocalWritePath` (a single server): applies the write to the local store and publishes
 *   its events with the store's log sequence numbers.
 * - The cluster write path (ts/cluster/, loaded only with `--cluster`): publishes the write to
 *   the JetStream stream and resolves once this instance has applied it from the stream;
 *   events carry the stream sequence (docs/cluster.md).
 *
 * Both resolve only after the write is durable and visible on this instance, so a writer
 * reads its own write.
 */
import type { WireMemory } from '../protocol/memory.js';
import type { ClusterStatus } from '../protocol/control.js';
import { ProtocolError } from '../protocol/index.js';
import type { DeleteResult, MemoryStore, NativeMemory, PutItem, PutResult } from '../native.js';
import { isoOf, mapped, toWireMemory, f32 } from './memory-convert.js';
import type { MemoryEventLog } from './memory-events.js';

/** One put of a `store` request: the store's items plus what the `memory_added` event shows. */
export interface PutRequest {
  namespace: string;
  /** Embedded: every item has its embedding. */
  puts: PutItem[];
  /** Each item's metadata object (the event's `metadata`). */
  metas: Array<Record<string, unknown>>;
}

/** The cluster figures of `stats` (`cluster`); absent on a single server. */
export interface ClusterStats {
  node_id: string;
  applied_seq: number;
  stream_seq: number;
  lag: number;
  /** The live members as last read from the membership bucket (docs/cluster.md). */
  members?: Array<ClusterStats & { url: string | null; at: string }>;
  /** The NATS server this instance is connected to. */
  nats_server?: string | null;
}

/** `stats.cluster` as the control center's status carries it (ts/protocol/control.ts), or null on a single server. */
export function toClusterStatus(c: ClusterStats | undefined): ClusterStatus | null {
  if (!c) return null;
  const { node_id, applied_seq, stream_seq, lag } = c;
  const members = (c.members ?? []).map((m) => ({ node_id: m.node_id, url: m.url, applied_seq: m.applied_seq, stream_seq: m.stream_seq, lag: m.lag, at: m.at }));
  return { node_id, applied_seq, stream_seq, lag, nats_server: c.nats_server ?? null, members };
}

export interface WritePath {
  /**
   * Stores the items (all-or-nothing) in request order: called synchronously in the order the
   * requests must take effect, it fixes that order before returning the promise.
   */
  put(req: PutRequest): Promise<PutResult[]>;
  update(namespace: string, id: string, metadata: string | undefined, significance: number | undefined): Promise<NativeMemory>;
  delete(namespace: string, ids: string[]): Promise<DeleteResult>;
  /** `filter`: JSON text; undefined deletes the whole namespace. */
  deleteWhere(namespace: string, filter: string | undefined): Promise<DeleteResult>;
  /** The sequence number events and `subscribe` replies count in (log or stream sequence). */
  lastSeq(): number;
  /** Resolves once `seq` is applied here; fails with `unavailable` after `timeoutMs`. */
  waitApplied(seq: number, timeoutMs: number): Promise<void>;
  /** `stats.cluster`, or undefined on a single server. */
  clusterStats(): ClusterStats | undefined;
  /** Stops replicating (the cluster path); the store stays open. */
  close(): Promise<void>;
}

/** The `memory_added` event's memory of a put item that was stored. */
export function addedMemory(namespace: string, put: PutItem, meta: Record<string, unknown>, r: PutResult): WireMemory {
  const memory: WireMemory = {
    id: r.id,
    namespace,
    text: put.text,
    metadata: meta,
    significance: f32(r.significance),
    timestamp: isoOf(r.timestamp),
    associations: r.associations,
  };
  if (put.ttlMs !== undefined) memory.expires_at = isoOf(r.timestamp + put.ttlMs);
  return memory;
}

/**
 * Publishes the events of an applied write (`seq`: the sequence they carry; undefined = each
 * change's own log sequence number).
 */
export const writeEvents = {
  put(events: MemoryEventLog, req: PutRequest, results: PutResult[], seq?: number): void {
    for (let i = 0; i < results.length; i++) {
      const r = results[i]!;
      if (!r.existing) events.publish(req.namespace, 'memory_added', addedMemory(req.namespace, req.puts[i]!, req.metas[i]!, r), seq ?? r.seq);
    }
  },
  update(events: MemoryEventLog, namespace: string, m: NativeMemory, seq?: number): void {
    events.publish(namespace, 'memory_updated', toWireMemory(m), seq ?? m.seq);
  },
  delete(events: MemoryEventLog, namespace: string, result: DeleteResult, seq?: number): void {
    for (const x of result.deleted) events.publish(namespace, 'memory_removed', { id: x.id, namespace }, seq ?? x.seq, 'deleted');
  },
};

/** Polls (every 5 ms, bounded by `timeoutMs`) until `applied()` reaches `seq`. */
export async function waitUntilApplied(applied: () => number, seq: number, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (applied() < seq) {
    if (Date.now() >= end) {
      throw new ProtocolError('unavailable', `Sequence ${seq} not applied here within ${timeoutMs} ms (applied: ${applied()})`, {
        reason: 'min_seq_timeout',
        min_seq: seq,
        applied_seq: applied(),
      });
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A single server: writes go straight to the local store. */
export class LocalWritePath implements WritePath {
  constructor(
    private readonly store: () => MemoryStore,
    private readonly events: MemoryEventLog,
  ) {}

  put(req: PutRequest): Promise<PutResult[]> {
    return mapped(this.store().put(req.puts)).then((results) => {
      writeEvents.put(this.events, req, results);
      return results;
    });
  }

  async update(namespace: string, id: string, metadata: string | undefined, significance: number | undefined): Promise<NativeMemory> {
    const m = await mapped(this.store().update(namespace, id, metadata, significance));
    writeEvents.update(this.events, namespace, m);
    return m;
  }

  async delete(namespace: string, ids: string[]): Promise<DeleteResult> {
    const r = await mapped(this.store().delete(namespace, ids));
    writeEvents.delete(this.events, namespace, r);
    return r;
  }

  async deleteWhere(namespace: string, filter: string | undefined): Promise<DeleteResult> {
    const r = await mapped(this.store().deleteWhere(namespace, filter));
    writeEvents.delete(this.events, namespace, r);
    return r;
  }

  lastSeq(): number {
    return this.store().stats().lastSeq;
  }

  waitApplied(seq: number, timeoutMs: number): Promise<void> {
    return waitUntilApplied(() => this.store().counters().lastSeq, seq, timeoutMs);
  }

  clusterStats(): undefined {
    return undefined;
  }

  async close(): Promise<void> {}
}
