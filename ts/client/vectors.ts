/**
 * JSON replies carry vectors as number arrays; MessagePack replies as float32
 * binary (revived by the codec). The client hands out Float32Array either way.
 */
import type { Vector } from '../protocol/memory.js';

export function toF32(v: unknown): unknown {
  if (v instanceof Float32Array) return v;
  if (Array.isArray(v) && v.every((x) => typeof x === 'number')) return Float32Array.from(v as number[]);
  return v;
}

/** Revives `embedding` / `embeddings` of an object in place. */
export function reviveVectors<T>(obj: T): T {
  if (obj && typeof obj === 'object') {
    const o = obj as Record<string, unknown>;
    if ('embedding' in o) o.embedding = toF32(o.embedding);
    if (Array.isArray(o.embeddings)) o.embeddings = o.embeddings.map(toF32);
  }
  return obj;
}

/** A vector as the client accepts it. */
export type VectorInput = Vector | Float32Array | number[];
