// Baseline store: plain JavaScript, the way one would write it without the native core.
// - vectors in a growable Float32Array per namespace, scanned with a JS dot-product loop
//   (retrieve by embedding = full scan + top-k; significance + associations at store time =
//   full scan over the namespace, SPEC §3 formula);
// - durability: every put() appends its records as JSON lines with fs.writeSync and calls
//   fs.fdatasyncSync before acknowledging — one fsync per store request, no group commit.
// Duck-types the subset of MemoryStore (dist/native.js) that MemoryServer uses, so it can be
// passed as `new MemoryServer({ store })`.
import { closeSync, fdatasyncSync, fstatSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';

const ASSOC_MIN = 0.8;
const ASSOC_MAX = 3;
const SURPRISE_WINDOW = 32;

function dot(a, ao, b, bo, d) {
  let s = 0;
  for (let j = 0; j < d; j++) s += a[ao + j] * b[bo + j];
  return s;
}

function normalize(v) {
  let s = 0;
  for (let j = 0; j < v.length; j++) s += v[j] * v[j];
  const out = new Float32Array(v.length);
  const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
  for (let j = 0; j < v.length; j++) out[j] = v[j] * inv;
  return out;
}

class Namespace {
  constructor(dims) {
    this.dims = dims;
    this.n = 0;
    this.vecs = new Float32Array(1024 * dims);
    this.rows = []; // memory records, row i ↔ vecs[i*dims…]
    this.byId = new Map();
  }
  push(vec, mem) {
    const d = this.dims;
    if ((this.n + 1) * d > this.vecs.length) {
      const bigger = new Float32Array(Math.max(this.vecs.length * 2, (this.n + 1) * d));
      bigger.set(this.vecs.subarray(0, this.n * d));
      this.vecs = bigger;
    }
    this.vecs.set(vec, this.n * d);
    this.rows.push(mem);
    this.byId.set(mem.id, this.n);
    this.n++;
  }
}

export class JsMemoryStore {
  constructor(dir, { dims, fsync = 'always' } = {}) {
    this.dims = dims;
    this.fsyncPolicy = fsync;
    this.path = join(dir, 'memories.jsonl');
    this.fd = openSync(this.path, 'a');
    this.spaces = new Map();
    this.seq = 0;
    this.fsyncs = 0;
    this.totalAssociations = 0;
  }

  space(ns) {
    let s = this.spaces.get(ns);
    if (!s) this.spaces.set(ns, (s = new Namespace(this.dims)));
    return s;
  }

  /** Bulk load (records as recorded, no scan, no per-record fsync) — only to build the 100k-memory store. */
  async bulkLoad(records) {
    for (const r of records) {
      const s = this.space(r.namespace);
      if (s.byId.has(r.id)) continue;
      this.seq++;
      const mem = {
        id: r.id,
        namespace: r.namespace,
        text: r.text,
        metadata: r.metadata ?? '{}',
        significance: r.significance,
        timestamp: r.timestamp,
        associations: r.associations ?? [],
        seq: this.seq,
      };
      s.push(normalize(r.embedding), mem);
    }
    return records.length;
  }

  async put(items) {
    const results = [];
    let lines = '';
    for (const it of items) {
      const ns = it.namespace;
      const s = this.space(ns);
      if (it.id !== undefined && s.byId.has(it.id)) {
        const m = s.rows[s.byId.get(it.id)];
        results.push({ id: m.id, seq: m.seq, significance: m.significance, timestamp: m.timestamp, associations: m.associations, existing: true });
        continue;
      }
      const v = normalize(it.embedding);
      const d = this.dims;
      // One scan: max cosine (novelty), top associations; then mean over the last 32 (surprise).
      let maxCos = 0;
      const assoc = []; // [cos, row] sorted descending, ≤ 3
      for (let i = 0; i < s.n; i++) {
        const c = dot(v, 0, s.vecs, i * d, d);
        if (c > maxCos) maxCos = c;
        if (c >= ASSOC_MIN && (assoc.length < ASSOC_MAX || c > assoc[assoc.length - 1][0])) {
          assoc.push([c, i]);
          assoc.sort((a, b) => b[0] - a[0]);
          if (assoc.length > ASSOC_MAX) assoc.pop();
        }
      }
      let sum = 0;
      const from = Math.max(0, s.n - SURPRISE_WINDOW);
      for (let i = from; i < s.n; i++) sum += Math.max(0, dot(v, 0, s.vecs, i * d, d));
      const empty = s.n === 0;
      const novelty = empty ? 1 : 1 - maxCos;
      const surprise = empty ? 1 : 1 - sum / (s.n - from);
      let importance = 0.5;
      if (it.metadata) {
        try {
          const imp = JSON.parse(it.metadata).importance;
          if (typeof imp === 'number') importance = imp;
        } catch {
          /* not an object */
        }
      }
      const significance = it.significance ?? Math.min(1, Math.max(0, 0.5 * novelty + 0.3 * surprise + 0.2 * importance));
      this.seq++;
      const mem = {
        id: it.id ?? `m${this.seq}`,
        namespace: ns,
        text: it.text,
        metadata: it.metadata ?? '{}',
        significance,
        timestamp: Date.now(),
        associations: assoc.map(([, row]) => s.rows[row].id),
        seq: this.seq,
      };
      if (it.ttlMs !== undefined) mem.expiresAt = mem.timestamp + it.ttlMs;
      this.totalAssociations += mem.associations.length;
      s.push(v, mem);
      lines += JSON.stringify({ ...mem, embedding: Array.from(v) }) + '\n';
      results.push({ id: mem.id, seq: mem.seq, significance, timestamp: mem.timestamp, associations: mem.associations, existing: false });
    }
    if (lines) {
      writeSync(this.fd, lines);
      if (this.fsyncPolicy === 'always') {
        fdatasyncSync(this.fd);
        this.fsyncs++;
      }
    }
    return results;
  }

  /** Retrieve by embedding: a JS scan with a dot-product loop, top-k by insertion. */
  async searchBatched(query, opts) {
    return this.searchSync(query, 1, opts)[0];
  }

  searchSync(queries, nq, opts) {
    const out = [];
    const s = this.spaces.get(opts.namespace);
    const d = this.dims;
    for (let q = 0; q < nq; q++) {
      const qv = normalize(queries.subarray(q * d, (q + 1) * d));
      const k = opts.k;
      const minSig = opts.minSignificance ?? 0;
      const minScore = opts.minScore ?? -Infinity;
      const top = []; // [score, row] descending
      if (s) {
        for (let i = 0; i < s.n; i++) {
          const c = dot(qv, 0, s.vecs, i * d, d);
          if (c < minScore || (top.length === k && c <= top[k - 1][0])) continue;
          if (s.rows[i].significance < minSig) continue;
          let p = top.length < k ? top.length : k - 1;
          if (top.length < k) top.push(null);
          while (p > 0 && top[p - 1][0] < c) {
            top[p] = top[p - 1];
            p--;
          }
          top[p] = [c, i];
        }
      }
      out.push(top.map(([c, i]) => ({ ...s.rows[i], score: c })));
    }
    return out;
  }

  top(opts) {
    const s = this.spaces.get(opts.namespace);
    if (!s) return [];
    const minSig = opts.minSignificance ?? 0;
    return s.rows
      .filter((m) => m.significance >= minSig)
      .sort((a, b) => b.significance - a.significance || b.timestamp - a.timestamp)
      .slice(0, opts.k);
  }

  get(ns, id) {
    const s = this.spaces.get(ns);
    const i = s?.byId.get(id);
    return i === undefined ? null : s.rows[i];
  }

  count(ns) {
    return this.spaces.get(ns)?.n ?? 0;
  }

  namespaces() {
    return [...this.spaces].map(([name, s]) => ({ name, totalMemories: s.n }));
  }

  /** The changing counters the server reads per reply (as `MemoryStore.counters()` in ts/native.ts). */
  counters() {
    let total = 0;
    for (const s of this.spaces.values()) total += s.n;
    const st = { totalMemories: total, namespaces: this.spaces.size, storageBytes: 0, totalAssociations: this.totalAssociations };
    return { ...st, lastSeq: this.seq, fsyncs: this.fsyncs, liveBytes: 0, garbageBytes: 0, compactions: 0 };
  }

  stats() {
    let total = 0;
    for (const s of this.spaces.values()) total += s.n;
    return {
      totalMemories: total,
      dims: this.dims,
      storageBytes: fstatSync(this.fd).size,
      storagePath: this.path,
      fsync: this.fsyncPolicy,
      namespaces: this.spaces.size,
      rows: total,
      deadRows: 0,
      totalAssociations: this.totalAssociations,
      lastSeq: this.seq,
      fsyncs: this.fsyncs,
      groups: this.fsyncs,
      records: this.seq,
      isa: 'javascript',
    };
  }

  async flush() {
    fdatasyncSync(this.fd);
  }

  close() {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}
