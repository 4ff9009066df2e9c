/**
 * The write log's message format: one JetStream message per write, MessagePack (msgpackr).
 * A put carries everything a replica needs to apply it exactly as the receiving instance
 * would — id, timestamp and embedding included — so every replica stores the same memory;
 * significance and associations are computed at apply time from the stream order.
 */
import { pack, unpack } from 'msgpackr';
import type { PutItem } from '../native.js';

/** Bumped when the format changes incompatibly; a replica refuses newer messages. */
export const MESSAGE_VERSION = 1;

export interface WireOrigin {
  /** The receiving instance's node id and its token for this request (answers its waiter). */
  origin: string;
  token: string;
}

export interface PutItemMessage {
  id: string;
  text: string;
  /** Metadata as JSON text (validated by the receiver). */
  meta?: string;
  sig?: number;
  ttl?: number;
  ts: number;
  /** The embedding's little-endian float32 bytes. */
  emb: Uint8Array;
}

export type WriteMessage = WireOrigin &
  (
    | { op: 'put'; ns: string; items: PutItemMessage[] }
    | { op: 'update'; ns: string; id: string; meta?: string; sig?: number }
    | { op: 'delete'; ns: string; ids: string[] }
    | { op: 'delete_where'; ns: string; filter?: string }
  );

export function encodeWrite(m: WriteMessage): Uint8Array {
  return pack({ v: MESSAGE_VERSION, ...m });
}

export class MessageFormatError extends Error {}

export function decodeWrite(data: Uint8Array): WriteMessage {
  const m = unpack(data) as (WriteMessage & { v?: number }) | null;
  if (!m || typeof m !== 'object' || typeof m.op !== 'string') throw new MessageFormatError('not a write message');
  if (m.v !== MESSAGE_VERSION) throw new MessageFormatError(`write message version ${String(m.v)}; this instance reads ${MESSAGE_VERSION}`);
  return m;
}

/** A put item as a message item (the embedding's bytes, not a copy of them). */
export function putItemMessage(p: PutItem & { id: string }, ts: number): PutItemMessage {
  const e = p.embedding;
  const out: PutItemMessage = { id: p.id, text: p.text, ts, emb: new Uint8Array(e.buffer, e.byteOffset, e.byteLength) };
  if (p.metadata !== undefined) out.meta = p.metadata;
  if (p.significance !== undefined) out.sig = p.significance;
  if (p.ttlMs !== undefined) out.ttl = p.ttlMs;
  return out;
}

/** A message item as the store's put item (with the receiver's timestamp). */
export function putItemOf(ns: string, it: PutItemMessage): PutItem {
  // Copied: the decoded bytes may not be 4-byte aligned.
  const emb = new Float32Array(new Uint8Array(it.emb).buffer);
  const p: PutItem = { namespace: ns, id: it.id, text: it.text, embedding: emb, timestampMs: it.ts };
  if (it.meta !== undefined) p.metadata = it.meta;
  if (it.sig !== undefined) p.significance = it.sig;
  if (it.ttl !== undefined) p.ttlMs = it.ttl;
  return p;
}

/** The event's metadata object of a message item. */
export function metaObject(it: PutItemMessage): Record<string, unknown> {
  return it.meta === undefined ? {} : (JSON.parse(it.meta) as Record<string, unknown>);
}
