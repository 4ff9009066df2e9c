/**
 * The only import of the Rust addon (crates/memory-node, built by `napi build` into
 * native/). Everything else in ts/ goes through this module.
 *
 * Native errors carry a `[code] ` prefix in their message; `nativeError()` turns that into a
 * `NativeError` with a stable `code` (invalid_request, payload_too_large, not_found,
 * unavailable, storage_full, corrupt, locked, io, internal).
 */
import { createRequire } from 'node:module';
import { glibcVersion } from './platform.js';
import type * as Addon from '../native/index.cjs';

const require = createRequire(import.meta.url);

/**
 * The addon could not be loaded: no prebuilt package for this platform, or its `.node` is
 * missing or corrupt. One message naming the platform and the way out; never a stack trace
 * from the CLI (which prints `message` alone).
 */
export class NativeLoadError extends Error {
  readonly code = 'native_unavailable';
  constructor(message: string) {
    super(message);
    this.name = 'NativeLoadError';
  }
}

/** napi-rs's name for this platform's package suffix (linux-x64-gnu, darwin-arm64, …). */
export function platformTriple(): string {
  const { platform, arch } = process;
  if (platform !== 'linux') return `${platform}-${arch}`;
  const abi = glibcVersion() ? 'gnu' : 'musl';
  return `${platform}-${arch}-${abi}${arch === 'arm' ? 'eabihf' : ''}`;
}

function loadAddon(): typeof Addon {
  try {
    return require('../native/index.cjs') as typeof Addon;
  } catch (e) {
    // The napi-rs loader throws one error whose `cause` chain holds every attempt; the local
    // ./memory-node.*.node of a source build is always tried first and is noise here.
    const reasons: string[] = [];
    for (let c: unknown = (e as { cause?: unknown }).cause ?? e; c; c = (c as { cause?: unknown }).cause) {
      const m = c instanceof Error ? c.message.split('\n')[0]! : String(c);
      if (!/^Cannot find module '\.\/memory-node\./.test(m)) reasons.unshift(m);
      if (!(c instanceof Error)) break;
    }
    const triple = platformTriple();
    throw new NativeLoadError(
      `memory-server has no working native addon for ${triple} (Node ${process.version}). ` +
        `Prebuilt packages: memory-server-linux-x64-gnu, memory-server-linux-arm64-gnu; npm installs the one ` +
        `for this platform (check that optional dependencies were not omitted, and reinstall if its .node is damaged). ` +
        `Elsewhere, build from source: clone the repository and run \`pnpm install && pnpm build\` (needs Rust). ` +
        `Details: ${reasons.join('; ') || 'none'}`,
    );
  }
}

const addon: typeof Addon = loadAddon();

// Put results and memories are built here, from positional fields, rather than by the
// addon's object conversion (several times slower per object; see
// crates/memory-node/src/factory.rs). Absent optional fields are `undefined`.
addon.setPutResultFactory((id, seq, significance, timestamp, associations, existing, namespaceTotal) => ({
  id,
  seq,
  significance,
  timestamp,
  associations,
  existing,
  namespaceTotal,
}));
addon.setMemoryFactory((id, namespace, text, metadata, significance, timestamp, associations, seq, expiresAt, embedding, score) => ({
  id,
  namespace,
  text,
  metadata,
  significance,
  timestamp,
  associations,
  seq,
  expiresAt,
  embedding,
  score,
}));

export type {
  BulkRecord,
  CompactResult,
  CompactionInfo,
  DeleteResult,
  ExpiredMemory,
  EncodedBatch,
  KernelInfo,
  ListPage,
  LostRange,
  Memory as NativeMemory,
  NamespaceCount,
  OpenOptions,
  PutItem,
  PutResult,
  RepairResult,
  SearchOptions,
  StoreStats,
  TextWindow,
} from '../native/index.cjs';

export type NativeErrorCode =
  | 'invalid_request'
  | 'payload_too_large'
  | 'not_found'
  | 'unavailable'
  | 'storage_full'
  | 'corrupt'
  | 'locked'
  | 'io'
  | 'model_error'
  | 'internal';

export class NativeError extends Error {
  readonly code: NativeErrorCode;
  constructor(code: NativeErrorCode, message: string) {
    super(message);
    this.name = 'NativeError';
    this.code = code;
  }
}

const PREFIX = /^\[([a-z_]+)\] ([\s\S]*)$/;

/** Turn an error thrown or rejected by the addon into a NativeError with a code. */
export function nativeError(e: unknown): Error {
  if (e instanceof NativeError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  const m = PREFIX.exec(msg);
  if (m) return new NativeError(m[1] as NativeErrorCode, m[2]);
  // napi argument conversion errors (wrong JS types) are caller bugs or bad input.
  return new NativeError('invalid_request', msg);
}

function wrapSync<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw nativeError(e);
  }
}

const closedError = (): NativeError => new NativeError('unavailable', 'the store is closed');

function rethrowNative(e: unknown): never {
  throw nativeError(e);
}

const one = <T>(x: T): T[] => [x];

async function wrapAsync<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw nativeError(e);
  }
}

type Store = Addon.MemoryStore;

export interface StoreCounters {
  totalMemories: number;
  namespaces: number;
  storageBytes: number;
  totalAssociations: number;
  lastSeq: number;
  fsyncs: number;
  /** Log bytes of live rows / of what a compaction would drop; compactions so far. */
  liveBytes: number;
  garbageBytes: number;
  compactions: number;
  /** Searches answered by the exact pass / by an ANN graph (docs/search.md). */
  plansExact: number;
  plansGraph: number;
}

/**
 * A durable memory store over one data directory. Thin wrapper that maps errors; see the
 * addon's generated index.d.cts for field docs.
 */
export class MemoryStore {
  /** Reused by counters() (filled in place by the addon: no allocation per call). */
  private readonly countersBuf = new Float64Array(15);
  private closed = false;
  private constructor(private readonly s: Store) {}

  /** Reads of a closed store fail (its memory is gone) rather than answering from nothing. */
  private live(): void {
    if (this.closed) throw closedError();
  }

  static open(dir: string, options: Addon.OpenOptions): MemoryStore {
    return new MemoryStore(wrapSync(() => addon.MemoryStore.open(dir, options)));
  }

  static async openAsync(dir: string, options: Addon.OpenOptions): Promise<MemoryStore> {
    return new MemoryStore(await wrapAsync(() => addon.MemoryStore.openAsync(dir, options)));
  }

  get dims(): number {
    return this.s.dims;
  }

  put(items: Addon.PutItem[]): Promise<Addon.PutResult[]> {
    if (items.length === 1 && items[0]?.timestampMs === undefined && items[0]?.expiresAtMs === undefined) {
      // The common case (one store) takes positional arguments: no native property lookups.
      let p: Promise<Addon.PutResult>;
      try {
        const it = items[0]!;
        p = this.s.putOne(it.namespace, it.id, it.text, it.metadata, it.significance, it.ttlMs, it.embedding);
      } catch (e) {
        return Promise.reject(nativeError(e));
      }
      return p.then(one, rethrowNative);
    }
    return wrapAsync(() => this.s.put(items));
  }
  update(namespace: string, id: string, metadata?: string | null, significance?: number | null): Promise<Addon.Memory> {
    return wrapAsync(() => this.s.update(namespace, id, metadata ?? undefined, significance ?? undefined));
  }
  delete(namespace: string, ids: string[]): Promise<Addon.DeleteResult> {
    return wrapAsync(() => this.s.delete(namespace, ids));
  }
  deleteWhere(namespace: string, filter?: string | null): Promise<Addon.DeleteResult> {
    return wrapAsync(() => this.s.deleteWhere(namespace, filter ?? undefined));
  }
  bulkLoad(records: Addon.BulkRecord[]): Promise<number> {
    return wrapAsync(() => this.s.bulkLoad(records));
  }
  /** Compacts now (or joins the compaction running); resolves after the switch. */
  compact(): Promise<Addon.CompactResult> {
    return wrapAsync(() => this.s.compact());
  }
  /** Live and garbage log bytes, compactions so far and the last one. */
  compactionInfo(): Addon.CompactionInfo {
    this.live();
    return wrapSync(() => this.s.compactionInfo());
  }
  /** The memories the expiry sweep deletes next; rejects (`unavailable`) once the store closes. */
  nextExpired(): Promise<Addon.ExpiredMemory[]> {
    if (this.closed) return Promise.reject(closedError());
    return wrapAsync(() => this.s.nextExpired());
  }
  flush(): Promise<void> {
    return wrapAsync(() => this.s.flush());
  }
  /** Flush and close. The memory is freed at once; every later call fails with `unavailable`. */
  close(): void {
    this.closed = true;
    wrapSync(() => this.s.close());
  }
  get(namespace: string, id: string, withEmbedding = false): Addon.Memory | null {
    this.live();
    return wrapSync(() => this.s.get(namespace, id, withEmbedding)) ?? null;
  }
  search(queries: Float32Array, nq: number, options: Addon.SearchOptions): Promise<Addon.Memory[][]> {
    if (this.closed) return Promise.reject(closedError());
    return wrapAsync(() => this.s.search(queries, nq, options));
  }
  /** `search` and the plan that answered it (`retrieve`'s `explain`). */
  searchExplained(queries: Float32Array, nq: number, options: Addon.SearchOptions): Promise<Addon.ExplainedSearch> {
    if (this.closed) return Promise.reject(closedError());
    return wrapAsync(() => this.s.searchExplained(queries, nq, options));
  }
  searchSync(queries: Float32Array, nq: number, options: Addon.SearchOptions): Addon.Memory[][] {
    this.live();
    return wrapSync(() => this.s.searchSync(queries, nq, options));
  }
  searchBatched(query: Float32Array, options: Addon.SearchOptions): Promise<Addon.Memory[]> {
    if (this.closed) return Promise.reject(closedError());
    return wrapAsync(() => this.s.searchBatched(query, options));
  }
  /** BM25 over the namespace's text index (off the JS thread); `score` is the BM25 score. */
  searchText(query: string, options: Addon.SearchOptions): Promise<Addon.Memory[]> {
    if (this.closed) return Promise.reject(closedError());
    return wrapAsync(() => this.s.searchText(query, options));
  }
  top(options: Addon.SearchOptions): Addon.Memory[] {
    this.live();
    return wrapSync(() => this.s.top(options));
  }
  /** `maxBytes`: the page also stops once its memories' bytes pass it (and one more memory is returned; see the addon's docs). */
  list(namespace: string, afterSeq: number, limit: number, filter?: string | null, maxBytes?: number): Addon.ListPage {
    this.live();
    return wrapSync(() => this.s.list(namespace, afterSeq, limit, filter ?? undefined, maxBytes));
  }
  export(afterSeq: number, limit: number): Addon.Memory[] {
    this.live();
    return wrapSync(() => this.s.export(afterSeq, limit));
  }
  namespaces(): Addon.NamespaceCount[] {
    this.live();
    return this.s.namespaces();
  }
  count(namespace: string): number {
    this.live();
    return this.s.count(namespace);
  }
  stats(): Addon.StoreStats {
    this.live();
    return this.s.stats();
  }
  /** The changing counters without building a stats object (see {@link StoreCounters}). */
  counters(): StoreCounters {
    this.live();
    const c = this.countersBuf;
    this.s.countersInto(c);
    return {
      totalMemories: c[0]!,
      namespaces: c[1]!,
      storageBytes: c[2]!,
      totalAssociations: c[3]!,
      lastSeq: c[4]!,
      fsyncs: c[5]!,
      liveBytes: c[10]!,
      garbageBytes: c[11]!,
      compactions: c[12]!,
      plansExact: c[13]!,
      plansGraph: c[14]!,
    };
  }
}

export const repair = (dir: string): Addon.RepairResult => wrapSync(() => addon.repair(dir));
/**
 * Locks a data directory (which must exist) while its files are switched around with no
 * store open; refused (`locked`) while a store of any process has it open.
 */
export function lockDataDir(dir: string): { release(): void } {
  const lock = wrapSync(() => addon.DataDirLock.acquire(dir));
  return { release: () => lock.release() };
}
export const hashEmbed = (texts: string[], dims?: number): Float32Array => wrapSync(() => addon.hashEmbed(texts, dims));
export const hashEmbedAsync = (texts: string[], dims?: number): Promise<Float32Array> =>
  wrapAsync(() => addon.hashEmbedAsync(texts, dims));
export const wordWindows = (text: string, maxTokens: number, stride: number): Addon.TextWindow[] =>
  wrapSync(() => addon.wordWindows(text, maxTokens, stride));
export const tokenWindows = (text: string, ranges: number[], maxTokens: number, stride: number): Addon.TextWindow[] =>
  wrapSync(() => addon.tokenWindows(text, ranges, maxTokens, stride));
/**
 * A model tokenizer (`tokenizer.json`, e.g. of a sentence-transformers ONNX export): truncation to
 * `maxLength` tokens (special tokens kept), padding to the longest text of a batch. Errors are
 * NativeErrors: `model_error` (file missing/unreadable/invalid, tokenizer failure) or
 * `invalid_request` (bad arguments).
 */
export class ModelTokenizer {
  private readonly t: Addon.ModelTokenizer;
  constructor(path: string, maxLength: number) {
    this.t = wrapSync(() => new addon.ModelTokenizer(path, maxLength));
  }
  /** Tokenize with special tokens, truncate, pad to the longest text (row-major `[batch, seqLen]`). */
  encodeBatch(texts: string[]): Addon.EncodedBatch {
    return wrapSync(() => this.t.encodeBatch(texts));
  }
  /** Tokens per text as fed to the model (special tokens included, after truncation). */
  tokenCounts(texts: string[]): Uint32Array {
    return wrapSync(() => this.t.tokenCounts(texts));
  }
  /** Windows of `maxTokens` model tokens overlapping by `stride` (same shape as `wordWindows`). */
  tokenWindows(text: string, maxTokens: number, stride: number): Addon.TextWindow[] {
    return wrapSync(() => this.t.tokenWindows(text, maxTokens, stride));
  }
  get vocabSize(): number {
    return this.t.vocabSize;
  }
  get padId(): number {
    return this.t.padId;
  }
  get maxLength(): number {
    return this.t.maxLength;
  }
}
/** Mean pooling of `[batch, seqLen, dims]` hidden states over the attention mask (+ L2 normalization). */
export const meanPool = (
  hidden: Float32Array,
  attentionMask: BigInt64Array,
  batch: number,
  seqLen: number,
  dims: number,
  normalize: boolean,
): Float32Array => wrapSync(() => addon.meanPool(hidden, attentionMask, batch, seqLen, dims, normalize));
export const kernelInfo = (): Addon.KernelInfo => addon.kernelInfo();
/** Dimensions of the built-in `hash` embedder. */
export const HASH_DIMS = 384;
export const HASH_EMBEDDER_NAME = 'hash-v1';
