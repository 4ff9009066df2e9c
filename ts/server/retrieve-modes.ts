/**
 * `retrieve` with a `mode` (docs/search.md): `vector` ranks by embedding, `text` by BM25 over
 * the stored texts (the core's text index; no embedding involved), `hybrid` fuses both
 * rankings by reciprocal rank fusion. Every result carries `signals`: its rank and score in
 * each ranking that found it. The memory server's retrieve handler calls this for every
 * interface (WebSocket, HTTP, MCP), so there is one implementation of the modes.
 */
import { ProtocolError } from '../protocol/index.js';
import { MEMORY_LIMITS, type RetrieveData, type RetrievePlan, type RetrieveMode, type RetrieveSignals, type WireMemory } from '../protocol/memory.js';
import type { MemoryStore, NativeMemory, SearchOptions } from '../native.js';
import { f32, mapped, toWireMemory } from './memory-convert.js';
import { memoryReplyBytes } from './reply-budget.js';

/**
 * The RRF constant: a memory at rank r in a ranking gets 1 / (RRF_K + r). 60 is the value of
 * Cormack, Clarke and Büttcher's RRF paper and the default of Elasticsearch and OpenSearch:
 * it keeps one ranking's top few from swamping what both rankings agree on.
 */
export const RRF_K = 60;
/** How deep each ranking is read for fusion: at least this many, and at least `count`. */
export const HYBRID_DEPTH = 50;
/** Upper bound of the JSON bytes `signals` adds to a memory (two ranks, two scores, keys). */
const SIGNALS_REPLY_BYTES = 100;

export interface ModeRequest {
  mode: RetrieveMode;
  data: RetrieveData;
  /** The options of the plain vector retrieve (namespace, k = count, filters, budget). */
  opts: SearchOptions;
  /** The query vector: `data.embedding`, or `data.query` embedded (not called in `text` mode). */
  queryVector: () => Promise<Float32Array | undefined>;
}

interface Ranked {
  m: NativeMemory;
  score: number;
  signals: RetrieveSignals;
}

/** Check the fields a mode needs or refuses (invalid_request naming the field). */
function check(mode: RetrieveMode, d: RetrieveData): void {
  const bad = (field: string, message: string): never => {
    throw new ProtocolError('invalid_request', `data.${field}: ${message}`, { field: `data.${field}` });
  };
  if (mode === 'vector') {
    if (d.query === undefined && d.embedding === undefined) bad('query', 'mode "vector" needs a query or an embedding');
    if (d.query !== undefined && d.embedding !== undefined) bad('embedding', 'give either query or embedding, not both');
    return;
  }
  if (d.query === undefined) bad('query', `mode "${mode}" needs a query (its words are matched against the stored texts)`);
  if (mode === 'text') {
    if (d.embedding !== undefined) bad('embedding', 'mode "text" ranks by the query text alone; use mode "hybrid" to add an embedding');
    if (d.min_score !== undefined) bad('min_score', 'applies to cosine scores; mode "text" ranks by BM25');
  }
}

/** A ranking as results: rank i+1, the ranking's own score. */
function ranked(rows: NativeMemory[], signal: 'vector' | 'text'): Ranked[] {
  return rows.map((m, i) => ({ m, score: m.score ?? 0, signals: { [signal]: { rank: i + 1, score: f32(m.score ?? 0) } } }));
}

/**
 * Reciprocal rank fusion of two rankings of the same namespace (memories keyed by id): each
 * memory scores the sum of 1 / (RRF_K + rank) over the rankings it is in. Ties keep the
 * order of first appearance, vector ranking first.
 */
export function fuseRrf(vector: NativeMemory[], text: NativeMemory[], count: number): Ranked[] {
  const byId = new Map<string, Ranked>();
  const add = (rows: NativeMemory[], signal: 'vector' | 'text'): void => {
    rows.forEach((m, i) => {
      const rank = i + 1;
      let r = byId.get(m.id);
      if (!r) {
        r = { m, score: 0, signals: {} };
        byId.set(m.id, r);
      }
      r.score += 1 / (RRF_K + rank);
      r.signals[signal] = { rank, score: f32(m.score ?? 0) };
    });
  };
  add(vector, 'vector');
  add(text, 'text');
  // Array.prototype.sort is stable: equal fused scores keep first-appearance order.
  return [...byId.values()].sort((a, b) => b.score - a.score).slice(0, count);
}

/** Run a retrieve with a mode; returns the reply (`memories`, `truncated` when the byte budget cut it). */
export async function retrieveWithMode(store: MemoryStore, req: ModeRequest): Promise<{ memories: WireMemory[]; truncated?: true }> {
  const { mode, data: d, opts } = req;
  check(mode, d);
  const include = d.include_embeddings ?? false;
  const budget = opts.maxBytes ?? Infinity;
  let results: Ranked[];
  if (mode === 'text') {
    const textOpts: SearchOptions = { ...opts };
    delete textOpts.minScore;
    results = ranked(await mapped(store.searchText(d.query!, textOpts)), 'text');
  } else {
    const vector = await req.queryVector();
    if (vector === undefined) throw new ProtocolError('internal', 'retrieve: no query vector');
    const vecOpts: SearchOptions = { ...opts };
    if (d.min_score !== undefined) vecOpts.minScore = d.min_score;
    if (d.recency_half_life_s !== undefined) vecOpts.recencyHalfLifeS = d.recency_half_life_s;
    if (mode === 'vector') {
      results = ranked(await mapped(store.searchBatched(vector, vecOpts)), 'vector');
    } else {
      // Both rankings read deeper than `count`, without the byte budget (cut after fusion).
      const depth = Math.min(MEMORY_LIMITS.maxCount, Math.max(d.count, HYBRID_DEPTH));
      const textOpts: SearchOptions = { ...opts, k: depth };
      delete textOpts.minScore;
      delete textOpts.maxBytes;
      Object.assign(vecOpts, { k: depth });
      delete vecOpts.maxBytes;
      const [v, t] = await Promise.all([mapped(store.searchBatched(vector, vecOpts)), mapped(store.searchText(d.query!, textOpts))]);
      results = fuseRrf(v, t, d.count);
    }
  }
  // The best that fit the reply byte budget (at least one), counting the signals too.
  let n = 0;
  let bytes = 0;
  for (; n < results.length; n++) {
    bytes += memoryReplyBytes(results[n]!.m, include) + SIGNALS_REPLY_BYTES;
    if (bytes > budget && n > 0) break;
  }
  const memories = results.slice(0, n).map((r) => {
    const w = toWireMemory(r.m, include);
    w.score = mode === 'hybrid' ? r.score : f32(r.score);
    w.signals = r.signals;
    return w;
  });
  return n < results.length ? { memories, truncated: true } : { memories };
}

/** A vector search with the plan that answered it (`explain: true`): the same planner and
 * search as `searchBatched`, one query on the thread pool. */
export async function searchExplained(store: MemoryStore, query: Float32Array, opts: SearchOptions): Promise<{ rows: NativeMemory[]; plan: RetrievePlan }> {
  const out = await mapped(store.searchExplained(query, 1, opts));
  const p = out.plan;
  const plan: RetrievePlan = { plan: p.plan as RetrievePlan['plan'], reason: p.reason, ef: p.ef, scored: p.scored };
  if (p.filterCandidates !== undefined && p.filterCandidates !== null) plan.filter_candidates = p.filterCandidates;
  return { rows: out.results[0] ?? [], plan };
}
