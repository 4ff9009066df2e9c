/**
 * The memory server: the memory commands (store, retrieve, list, get, update, delete,
 * namespaces, subscribe, unsubscribe, stats; docs/protocol.md) over the native MemoryStore,
 * on the shared connection layer (WsServer).
 */
import path from 'node:path';
import { DEFAULTS, JSON_TEXT, ProtocolError, parseRequestData, strictEnvelope, type Request } from '../protocol/index.js';
import { namesAField } from '../protocol/filter.js';
import {
  DEFAULT_NAMESPACE,
  IMMUTABLE_FIELDS,
  MEMORY_EVENTS,
  MEMORY_LIMITS,
  checkTextSize,
  deleteSchema,
  getSchema,
  listSchema,
  metadataJson,
  namespacesSchema,
  retrieveSchema,
  statsSchema,
  storeBatchSchema,
  storeSingleSchema,
  subscribeSchema,
  unsubscribeSchema,
  updateSchema,
  type MemoryStatsCounts,
  type RetrievePlan,
  type StoreItem,
  type StoreResult,
  type StoreStats,
  type WireMemory,
} from '../protocol/memory.js';
import { MemoryStore, type NativeMemory, type PutItem, type PutResult, type SearchOptions } from '../native.js';
import { fittingPrefix } from './reply-budget.js';
import { retrieveWithMode, searchExplained } from './retrieve-modes.js';
import { HashEmbedder, type Embedder } from '../embedder.js';
import { EmbeddingBatcher } from './inference-batcher.js';
import { WsServer, type CommandHandler, type Connection, type ListenInfo, type WsServerOptions } from './ws-server.js';
import { ServerBase } from './server-base.js';
import { MemoryEventLog, topicOf } from './memory-events.js';
import { statsJsonText, type GlobalStatsReply } from './stats-text.js';
import { compactionSummary, f32, isoOf, isoToMs, mapped, startupError, storeTuning, toWireMemory, type StoreTuning } from './memory-convert.js';
import { VERSION } from '../version.js';
import { authRequired } from './auth.js';
import { scopedCounts, scopedStatsReply, visibleTotal } from './memory-scope.js';
import { CommandGate } from './reembed-gate.js';
import { Reembedder, planReembed, type ReembedProgress } from './reembed.js';
import type { ReembedState } from './reembed-files.js';
import type { ClusterStatus, CompactionSummary } from '../protocol/control.js';
import { registerMcpRoute } from './mcp-route.js';
import { addMemoryServerRoutes } from './http/server-routes.js';
import { LocalWritePath, toClusterStatus, type WritePath } from './write-path.js';
import type { ClusterOptions } from '../cluster/options.js';
// Files only (no NATS): finishes a restore switch a crash interrupted, on any start.
import { finishRestoreSwitch } from '../cluster/restore.js';

/** How long `min_seq` waits for this instance to apply the sequence before `unavailable`. */
export const MIN_SEQ_WAIT_MS = 5000;

export type FsyncPolicy = 'always' | 'interval' | 'off';

export interface MemoryServerOptions extends Omit<WsServerOptions, 'commands' | 'beforeClose' | 'onMessage'> {
  /** Data directory. Default `./memory-data`. */
  dataDir?: string;
  /** Default `always`. */
  fsync?: FsyncPolicy;
  /** Default: the built-in hash embedder. */
  embedder?: Embedder;
  /** Re-embed a directory written by another embedder, in the background (ts/server/reembed.ts); else it is refused. */
  reembed?: boolean;
  /** The embedder such a directory was written with, unless the built-in hash: it answers queries until the switch. */
  previousEmbedder?: Embedder;
  /** Events kept for `since_seq` replay. Default 10,000. */
  eventLogSize?: number;
  /**
   * Automatic compaction (docs/storage.md): once `garbageRatio` of the log (default 0.5) is
   * garbage and the log holds at least `minBytes` (default 1 MiB). `false` or a ratio of 0:
   * only when asked (`compact()`, the control center, `memory-server compact`).
   */
  compaction?: { garbageRatio?: number; minBytes?: number } | false;
  /** Namespaces of at least this many memories get an ANN graph (default 200,000; docs/search.md). */
  annMinRows?: number;
  /**
   * An already-open store to serve instead of opening `dataDir` (e.g. a benchmark's
   * store-like baseline with the same methods). The server closes it on close().
   */
  store?: MemoryStore;
  /** Join a cluster on NATS JetStream (docs/cluster.md); NATS is loaded only with this. */
  cluster?: ClusterOptions;
}

export { toWireMemory, f32, toProtocolError } from './memory-convert.js';

export type { CompactionSummary };
export { compactionSummary };

/** The memory server. `listen()` opens the store and starts serving; `close()` shuts down gracefully and closes the store. */
export class MemoryServer extends ServerBase {
  readonly ws: WsServer;
  /** What stores and queries use: during a re-embedding, the embedder the directory was written with (set by useEmbedder). */
  embedder!: Embedder;
  /** The configured embedder (also `embedder` once a re-embedding has switched). */
  private readonly target: Embedder;
  private batcher: EmbeddingBatcher | null = null;
  private readonly gate = new CommandGate(); // holds commands while a re-embedding switches stores
  private reembedder: Reembedder | null = null;
  /** Per connection: resolves once its latest store was handed to the store (request order). */
  private readonly putTurns = new WeakMap<Connection, Promise<void>>();
  readonly dataDir: string;
  readonly fsync: FsyncPolicy;
  private _store: MemoryStore | null = null;
  private statsFixed: { dims: number; storage_path: string; fsync: string; isa: string } | null = null;
  /** The global `stats` reply's JSON text, rebuilt only where it changed (stats-text.ts). */
  private readonly statsJson = statsJsonText();
  private readonly events: MemoryEventLog;
  /** `--reembed`, and the embedder a directory to re-embed was written with (options.previousEmbedder). */
  private readonly reembed: { on: boolean; from: Embedder | undefined };
  /** Store options from `compaction` and `annMinRows`. */
  private readonly tuning: StoreTuning;
  private readonly clusterOptions: ClusterOptions | undefined;
  /** Where the write commands send a validated write: the local store, or the cluster's stream. */
  private writes: WritePath;
  /** The last compaction's summary, rebuilt only when another one happened. */
  private lastCompaction: { count: number; summary: CompactionSummary | null } = { count: 0, summary: null };
  /**
   * The command table (type → handler), transport-independent: the WsServer dispatches to it,
   * and a handler can be called with any Connection-like object (e.g. a benchmark's `ws` baseline).
   */
  readonly commands: Readonly<Record<string, CommandHandler>>;

  constructor(options: MemoryServerOptions = {}) {
    super();
    const { dataDir, fsync, embedder, reembed, previousEmbedder, eventLogSize, store, compaction, annMinRows, cluster, ...wsOptions } = options;
    this.clusterOptions = cluster;
    this.tuning = storeTuning(compaction, annMinRows);
    this.dataDir = path.resolve(dataDir ?? './memory-data');
    this.fsync = fsync ?? 'always';
    this.target = embedder ?? new HashEmbedder();
    this.useEmbedder(this.target);
    this.reembed = { on: reembed ?? false, from: previousEmbedder };
    if (store) this._store = store;
    const table = strictEnvelope<Connection, CommandHandler>({
      store: (c, r) => this.store_(c, r),
      retrieve: (c, r) => this.retrieve(c, r),
      list: (c, r) => this.list(c, r),
      get: (c, r) => this.get(c, r),
      update: (c, r) => this.update(c, r),
      delete: (c, r) => this.delete_(c, r),
      namespaces: (c, r) => this.namespaces(c, r),
      subscribe: (c, r) => this.subscribe(c, r),
      unsubscribe: (c, r) => this.unsubscribe(c, r),
      stats: (c, r) => this.stats(c, r),
    });
    this.commands = this.gate.wrap<Connection, CommandHandler>(table, new Set(['store', 'update', 'delete']));
    this.ws = new WsServer({
      name: 'memory-server',
      port: DEFAULTS.ports.memory,
      serviceInfo: () => ({
        service: 'memory-server',
        version: VERSION,
        model: this.embedder.name,
        dims: this.embedder.dims,
        // Public (no credentials): with auth configured, counts are for authenticated `stats` only.
        ...(authRequired(wsOptions) ? {} : { total_memories: this._store?.stats().totalMemories ?? 0 }),
      }),
      ...wsOptions,
      pipelining: 'serial',
      // A connection's pipelined stores go to the store together (one group commit, one
      // shared nearest-neighbour pass), in request order; anything else waits for them.
      overlapping: ['store'],
      commands: this.commands,
      beforeClose: async () => {
        if (this._store) await this._store.flush().catch((err: unknown) => this.ws.logger.error({ err }, 'store flush failed'));
      },
    });
    // MCP over streamable HTTP at /mcp: the same commands, auth and limits (docs/mcp.md).
    registerMcpRoute(this);
    addMemoryServerRoutes(this);
    this.events = new MemoryEventLog(this.ws, Math.max(1, eventLogSize ?? MEMORY_LIMITS.eventLogSize));
    this.writes = new LocalWritePath(() => this.store, this.events);
    if (store) {
      this.events.floor = store.stats().lastSeq;
      this.watchExpired(store);
    }
  }

  private useEmbedder(e: Embedder): void {
    this.batcher?.close();
    this.batcher = null;
    this.embedder = e;
    // A model embedder (two-phase, runs on a runtime thread): concurrent stores and
    // queries share its runs through the same dynamic batcher as the inference server.
    if (e.prepare && e.runPrepared) this.batcher = new EmbeddingBatcher(e, { maxWaitMs: 1, log: (m) => this.ws.logger.warn(m) });
  }

  /** A re-embedding under way (`stats.reembed`), or null. */
  reembedProgress(): ReembedProgress | null {
    return this.reembedder?.progress() ?? null;
  }

  /** In cluster mode, `stats.cluster` (members, lag, NATS server) for the control center; else null. */
  clusterStatus(): ClusterStatus | null {
    return toClusterStatus(this.writes.clusterStats());
  }

  get store(): MemoryStore {
    if (!this._store) throw new ProtocolError('unavailable', 'The memory store is not open');
    return this._store;
  }

  /** Opens the data directory (refusing a locked or foreign one with a clear error), then listens. */
  override async listen(): Promise<ListenInfo> {
    await this.open();
    try {
      return await super.listen();
    } catch (err) {
      this.closeStore();
      throw err;
    }
  }

  /** Opens the data directory (if not open yet) without listening: `commands` can then be served over another transport. */
  async open(): Promise<MemoryStore> {
    if (!this._store) {
      // First a cluster member's switch to a restored snapshot that a crash interrupted (ts/cluster/restore.ts).
      const plan = await finishRestoreSwitch(this.dataDir)
        .then(() => planReembed(this.dataDir, this.target, this.reembed.on, this.reembed.from))
        .catch((err: unknown) => {
          throw startupError(err, this.dataDir);
        });
      if (plan && this.clusterOptions) {
        // Every replica must apply the same vectors from the stream: a local re-embedding would
        // make this one differ (docs/cluster.md).
        throw new Error(`${this.dataDir}: --reembed cannot run on a cluster member; re-embed on a single server, then join with the new embedder`);
      }
      if (plan) this.useEmbedder(plan.previous);
      try {
        this._store = await this.openStore();
      } catch (err) {
        throw startupError(err, this.dataDir);
      }
      this.events.floor = this._store.stats().lastSeq;
      this.watchExpired(this._store);
      if (plan) await this.startReembedding(plan.state);
      if (this.clusterOptions) await this.joinCluster(this._store, this.clusterOptions);
    }
    return this._store;
  }

  /** Opens the data directory (or `dir`) with the current embedder's identity. */
  private openStore(dir = this.dataDir): Promise<MemoryStore> {
    return MemoryStore.openAsync(dir, {
      dims: this.embedder.dims,
      fsync: this.fsync,
      embedderName: this.embedder.name,
      embedderHash: this.embedder.hash,
      ...this.tuning,
    });
  }

  private async startReembedding(state: ReembedState): Promise<void> {
    const { dataDir, target, gate } = this;
    const switchServer = () => this.switchToTarget();
    this.reembedder = await Reembedder.start({ dataDir, live: this._store!, target, state, gate, logger: this.ws.logger, switchServer });
  }

  /** A re-embedding has switched the directory's files: serve the new store with the configured embedder. */
  private async switchToTarget(): Promise<MemoryStore> {
    this.reembedder = null;
    this._store = null;
    this.useEmbedder(this.target);
    return this.reopen();
  }

  /** Serves the store opened anew from the data directory (its files were switched). */
  private async reopen(): Promise<MemoryStore> {
    this.statsFixed = null;
    const store = (this._store = await this.openStore());
    // Sequence numbers are the new store's from here on (docs/embeddings.md).
    this.events.floor = store.stats().lastSeq;
    this.watchExpired(store);
    return store;
  }

  /**
   * Publishes `memory_removed` (`reason: "expired"`) for every memory the store's expiry sweep
   * deletes, until the store closes (which rejects the pending call and ends the loop).
   */
  private watchExpired(store: MemoryStore): void {
    // A store-like baseline given as `store` (benchmarks) may have no expiry sweep.
    if (typeof store.nextExpired !== 'function') return;
    const next = (): void => {
      store.nextExpired().then(
        (list) => {
          // In a cluster every replica expires the memory itself (at the replicated expires_at),
          // so the event carries the applied stream sequence, not a position of its own.
          const cluster = this.writes.clusterStats();
          for (const e of list) this.events.publish(e.namespace, 'memory_removed', { id: e.id, namespace: e.namespace }, cluster ? cluster.applied_seq : e.seq, 'expired');
          next();
        },
        () => undefined,
      );
    };
    next();
  }

  /**
   * Becomes a cluster member: writes go through the JetStream stream, which this instance
   * applies to its store (ts/cluster/, imported only here so a single server never loads NATS).
   */
  private async joinCluster(store: MemoryStore, options: ClusterOptions): Promise<void> {
    const { joinCluster } = await import('../cluster/index.js');
    // A long-absent member replaces its store by the latest snapshot (ts/cluster/restore.ts).
    const storeFiles = { openAt: (dir: string) => this.openStore(dir), close: () => this.closeStore(), reopen: () => this.reopen() };
    try {
      this.writes = await joinCluster({ store, events: this.events, logger: this.ws.logger, dataDir: this.dataDir, embedder: this.embedder, options, fsyncAlways: this.fsync === 'always', url: () => (this.ws.port ? this.url : null), storeFiles });
    } catch (err) {
      // The store served now (joining may have replaced it, or closed it and failed to reopen).
      this.closeStore();
      throw err;
    }
  }

  /** Compacts the store now (or joins the compaction running): deleted and expired memories leave the disk. */
  async compact(): Promise<CompactionSummary> {
    return compactionSummary(await mapped(this.store.compact()));
  }

  /** After the graceful shutdown (in-flight replies finished, store flushed, clients closed with 1001): closes the store. */
  protected async release(): Promise<void> {
    await this.reembedder?.stop();
    this.batcher?.close();
    await this.writes.close().catch((err: unknown) => this.ws.logger.error({ err }, 'leaving the cluster failed'));
    this.closeStore();
  }

  private closeStore(): void {
    try {
      this._store?.close();
    } catch (err) {
      this.ws.logger.error({ err }, 'store close failed');
    }
    this._store = null;
  }

  // ------------------------------------------------------------ helpers

  private embed(texts: string[]): Promise<Float32Array> {
    return this.batcher ? this.batcher.embed(texts) : this.embedder.embed(texts);
  }

  private namespaceOf(conn: Connection, ns: string | undefined): string {
    const namespace = ns ?? DEFAULT_NAMESPACE;
    if (!conn.allowsNamespace(namespace)) {
      throw new ProtocolError('invalid_request', `data.namespace: namespace "${namespace}" is not allowed for this token`, {
        field: 'data.namespace',
      });
    }
    return namespace;
  }

  private vector(v: Float32Array | number[] | undefined, field: string): Float32Array | undefined {
    if (v === undefined) return undefined;
    const f = v instanceof Float32Array ? v : Float32Array.from(v);
    if (f.length !== this.embedder.dims) {
      throw new ProtocolError('invalid_request', `${field}: must have ${this.embedder.dims} dimensions, got ${f.length}`, {
        field,
      });
    }
    return f;
  }

  // ------------------------------------------------------------ commands

  private async store_(conn: Connection, req: Request): Promise<unknown> {
    const raw = req.data ?? {};
    const batch = raw.items !== undefined;
    if (batch && raw.text !== undefined) {
      throw new ProtocolError('invalid_request', 'data.items: give either text or items, not both', { field: 'data.items' });
    }
    let namespace: string;
    let items: StoreItem[];
    if (batch) {
      const d = parseRequestData(storeBatchSchema, raw, req.type);
      namespace = this.namespaceOf(conn, d.namespace);
      items = d.items;
    } else {
      const d = parseRequestData(storeSingleSchema, raw, req.type);
      namespace = this.namespaceOf(conn, d.namespace);
      items = [d];
    }
    const store = this.store;
    const puts: PutItem[] = new Array(items.length);
    const metas: Array<Record<string, unknown>> = new Array(items.length);
    const toEmbed: number[] = [];
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!;
      const p = batch ? `data.items[${i}].` : 'data.';
      checkTextSize(it.text, `${p}text`);
      const metadata = metadataJson(it.metadata, `${p}metadata`);
      const embedding = this.vector(it.embedding, `${p}embedding`);
      if (!embedding) toEmbed.push(i);
      metas[i] = it.metadata ?? {};
      const put: PutItem = { namespace, text: it.text, embedding: embedding ?? new Float32Array(0) };
      if (it.id !== undefined) put.id = it.id;
      if (metadata !== undefined) put.metadata = metadata;
      if (it.significance !== undefined) put.significance = it.significance;
      if (it.ttl_s !== undefined) put.ttlMs = it.ttl_s * 1000;
      puts[i] = put;
    }
    // Pipelined stores of one connection run at once (`overlapping`) but reach the store in
    // request order, whatever order their embeddings finish in: each waits for its
    // predecessor's hand-off (not its durability) before handing its own over.
    const before = this.putTurns.get(conn);
    let handedOver!: () => void;
    const turn = new Promise<void>((r) => (handedOver = r));
    this.putTurns.set(conn, turn);
    let pending: Promise<PutResult[]>;
    try {
      if (toEmbed.length > 0) {
        const dims = this.embedder.dims;
        const rows = await this.embed(toEmbed.map((i) => items[i]!.text));
        toEmbed.forEach((i, j) => {
          puts[i]!.embedding = rows.slice(j * dims, (j + 1) * dims);
        });
      }
      if (before) await before;
      pending = this.writes.put({ namespace, puts, metas });
    } finally {
      handedOver();
      if (this.putTurns.get(conn) === turn) this.putTurns.delete(conn);
    }
    // The write path publishes the `memory_added` events once the puts are applied.
    const results = await mapped(pending);
    const out: StoreResult[] = new Array(results.length);
    for (let i = 0; i < results.length; i++) {
      const r = results[i]!;
      out[i] = { id: r.id, significance: f32(r.significance), timestamp: isoOf(r.timestamp), associations: r.associations, existing: r.existing };
    }
    // namespace_total is exact for pipelined stores sharing a group commit: the count right
    // after this store (a batch: after its last item) took effect. total_memories is global,
    // as in `stats`, except for a connection limited to some namespaces, which must not learn
    // the global count: there it is the sum over its own namespaces (visibleTotal).
    let total = -1;
    for (const r of results) if (typeof r.namespaceTotal === 'number' && r.namespaceTotal > total) total = r.namespaceTotal;
    const namespaceTotal = total >= 0 ? total : store.count(namespace);
    const stats: StoreStats = {
      total_memories: visibleTotal(conn.auth, store, () => store.counters().totalMemories),
      namespace_total: namespaceTotal,
    };
    for (const r of out) {
      if (!r.existing) continue;
      // An existing memory: report what is stored.
      const m = store.get(namespace, r.id, false);
      if (m) Object.assign(r, { significance: f32(m.significance), timestamp: isoOf(m.timestamp), associations: m.associations });
    }
    if (batch) return { items: out, stats };
    return { ...out[0]!, stats };
  }

  private async retrieve(conn: Connection, req: Request): Promise<unknown> {
    const d = parseRequestData(retrieveSchema, req.data, req.type);
    const namespace = this.namespaceOf(conn, d.namespace);
    if (d.query !== undefined && d.embedding !== undefined && d.mode !== 'hybrid') {
      throw new ProtocolError('invalid_request', 'data.embedding: give either query or embedding, not both', { field: 'data.embedding' });
    }
    let filter = d.filter;
    if (d.type !== undefined) filter = { ...(filter ?? {}), type: d.type };
    const since = isoToMs(d.since);
    const until = isoToMs(d.until);
    if (since !== undefined && until !== undefined && since > until) {
      throw new ProtocolError('invalid_request', 'data.until: must not be before data.since', { field: 'data.until' });
    }
    const budget = this.ws.options.maxReplyBytes;
    const opts: SearchOptions = { namespace, k: d.count, minSignificance: d.min_significance, maxBytes: budget };
    if (filter !== undefined) opts.filter = JSON.stringify(filter);
    if (since !== undefined) opts.sinceMs = since;
    if (until !== undefined) opts.untilMs = until;
    if (d.include_embeddings) opts.includeEmbeddings = true;
    if (d.ef !== undefined) opts.ef = d.ef;
    const include = d.include_embeddings ?? false;
    if (d.mode !== undefined) {
      if (d.query !== undefined) checkTextSize(d.query, 'data.query');
      const queryVector = async (): Promise<Float32Array | undefined> =>
        this.vector(d.embedding, 'data.embedding') ?? (d.query === undefined ? undefined : (await this.embed([d.query])).slice(0, this.embedder.dims));
      return retrieveWithMode(this.store, { mode: d.mode, data: d, opts, queryVector });
    }
    let query = this.vector(d.embedding, 'data.embedding');
    if (query === undefined && d.query !== undefined) {
      checkTextSize(d.query, 'data.query');
      query = (await this.embed([d.query])).slice(0, this.embedder.dims);
    }
    // Checked input first: a bad request fails at once, not after the wait.
    if (d.min_seq !== undefined) await this.writes.waitApplied(d.min_seq, MIN_SEQ_WAIT_MS);
    let rows: NativeMemory[], plan: RetrievePlan | undefined;
    if (query === undefined) {
      rows = await mapped(() => this.store.top(opts));
      if (d.explain) plan = { plan: 'significance', reason: 'no query: the significance index' };
    } else {
      if (d.min_score !== undefined) opts.minScore = d.min_score;
      if (d.recency_half_life_s !== undefined) opts.recencyHalfLifeS = d.recency_half_life_s;
      if (d.exact) opts.exact = true;
      if (d.explain) ({ rows, plan } = await searchExplained(this.store, query, opts));
      else rows = await mapped(this.store.searchBatched(query, opts));
    }
    // The best memories that fit the reply byte budget; `truncated` says some were left out.
    const n = fittingPrefix(rows, include, budget);
    const memories = new Array<WireMemory>(n);
    for (let i = 0; i < n; i++) memories[i] = toWireMemory(rows[i]!, include);
    const reply: { memories: WireMemory[]; truncated?: true; plan?: RetrievePlan } = { memories };
    if (n < rows.length) reply.truncated = true;
    if (plan !== undefined) reply.plan = plan;
    return reply;
  }

  private async list(conn: Connection, req: Request): Promise<unknown> {
    const d = parseRequestData(listSchema, req.data, req.type);
    const namespace = this.namespaceOf(conn, d.namespace);
    let after = 0;
    if (d.cursor !== undefined && d.cursor !== null && d.cursor !== '') {
      after = typeof d.cursor === 'number' ? d.cursor : Number(d.cursor);
      if (!Number.isSafeInteger(after) || after < 0) {
        throw new ProtocolError('invalid_request', 'data.cursor: not a valid cursor (use next_cursor from a previous list)', {
          field: 'data.cursor',
        });
      }
    }
    const filter = d.filter !== undefined ? JSON.stringify(d.filter) : undefined;
    const include = d.include_embeddings ?? false;
    const store = this.store;
    // The page stops at `limit` memories or at the reply byte budget, whichever comes first;
    // the store stops building rows at the budget too (see ts/server/reply-budget.ts).
    const budget = this.ws.options.maxReplyBytes;
    const page = await mapped(() => store.list(namespace, after, d.limit, filter, budget));
    const rows = include ? page.memories.map((m) => store.get(namespace, m.id, true) ?? m) : page.memories;
    const n = fittingPrefix(rows, include, budget);
    const memories = new Array<WireMemory>(n);
    for (let i = 0; i < n; i++) memories[i] = toWireMemory(rows[i]!, include);
    // Cut by bytes: continue after the last memory sent.
    const next = n < rows.length ? rows[n - 1]!.seq : page.nextCursor;
    return { memories, next_cursor: next === undefined || next === null ? null : String(next) };
  }

  private get(conn: Connection, req: Request): unknown {
    const d = parseRequestData(getSchema, req.data, req.type);
    const namespace = this.namespaceOf(conn, d.namespace);
    if (d.min_seq !== undefined) return this.writes.waitApplied(d.min_seq, MIN_SEQ_WAIT_MS).then(() => this.getNow(namespace, d));
    return this.getNow(namespace, d);
  }

  private getNow(namespace: string, d: { id: string; include_embeddings?: boolean | undefined }): unknown {
    const m = this.store.get(namespace, d.id, d.include_embeddings ?? false);
    if (!m) throw new ProtocolError('not_found', `Memory not found: ${d.id}`, { id: d.id, namespace });
    return toWireMemory(m, d.include_embeddings ?? false);
  }

  private async update(conn: Connection, req: Request): Promise<unknown> {
    const raw = req.data ?? {};
    for (const f of IMMUTABLE_FIELDS) {
      if (raw[f] !== undefined) {
        throw new ProtocolError('invalid_request', `data.${f}: cannot change (delete the memory and store it again)`, {
          field: `data.${f}`,
        });
      }
    }
    const d = parseRequestData(updateSchema, raw, req.type);
    const namespace = this.namespaceOf(conn, d.namespace);
    if (d.metadata === undefined && d.significance === undefined) {
      throw new ProtocolError('invalid_request', 'data: nothing to update (give metadata and/or significance)', { field: 'data' });
    }
    const metadata = metadataJson(d.metadata, 'data.metadata');
    // In a cluster this replica may not have applied a store another instance has already
    // acknowledged: the stream's order decides there (the update is applied after that store,
    // and a missing memory fails with not_found when the update is applied).
    if (this.clusterOptions === undefined && !this.store.get(namespace, d.id, false)) {
      throw new ProtocolError('not_found', `Memory not found: ${d.id}`, { id: d.id, namespace });
    }
    const m = await this.writes.update(namespace, d.id, metadata, d.significance);
    this.reembedder?.mirrorUpdate(namespace, d.id, metadata, d.significance);
    return toWireMemory(m);
  }

  private async delete_(conn: Connection, req: Request): Promise<unknown> {
    const d = parseRequestData(deleteSchema, req.data, req.type);
    const namespace = this.namespaceOf(conn, d.namespace);
    const modes = [d.id !== undefined, d.ids !== undefined, d.filter !== undefined || d.all === true].filter(Boolean).length;
    if (modes === 0) {
      throw new ProtocolError('invalid_request', 'data.id: is required (or ids, or filter, or all: true)', { field: 'data.id' });
    }
    if (modes > 1) {
      throw new ProtocolError('invalid_request', 'data: give only one of id, ids, filter / all', { field: 'data' });
    }
    let result;
    if (d.id !== undefined) {
      result = await this.writes.delete(namespace, [d.id]);
      if (result.deleted.length === 0) throw new ProtocolError('not_found', `Memory not found: ${d.id}`, { id: d.id, namespace });
    } else if (d.ids !== undefined) {
      result = await this.writes.delete(namespace, d.ids);
    } else {
      const empty = d.filter === undefined || Object.keys(d.filter).length === 0;
      if (!namesAField(d.filter) && d.all !== true) {
        const what = empty ? 'an empty filter deletes everything' : 'a filter that names no field matches every memory or none';
        throw new ProtocolError('invalid_request', `data.filter: ${what}; pass all: true to empty the namespace`, { field: 'data.filter' });
      }
      result = await this.writes.deleteWhere(namespace, empty ? undefined : JSON.stringify(d.filter));
    }
    this.reembedder?.mirrorDelete(namespace, result.deleted.map((x) => x.id));
    return { deleted: result.deleted.length, not_found: result.notFound };
  }

  private namespaces(conn: Connection, req: Request): unknown {
    parseRequestData(namespacesSchema, req.data, req.type);
    const list = this.store
      .namespaces()
      .filter((n) => conn.allowsNamespace(n.name))
      .map((n) => ({ name: n.name, total_memories: n.totalMemories }));
    return { namespaces: list };
  }

  private subscribe(conn: Connection, req: Request): unknown {
    const d = parseRequestData(subscribeSchema, req.data, req.type);
    const namespace = this.namespaceOf(conn, d.namespace);
    const events = d.events && d.events.length > 0 ? [...new Set(d.events)] : [...MEMORY_EVENTS];
    let replayed = 0;
    let gap = false;
    if (d.since_seq !== undefined) {
      gap = d.since_seq < this.events.floor;
      const wanted = new Set(events);
      for (const e of this.events.logged()) {
        if (e.seq > d.since_seq && e.namespace === namespace && wanted.has(e.name)) {
          conn.send(e.message);
          replayed++;
        }
      }
    }
    // Subscribing after the replay, in the same tick: no event can fall between the two.
    for (const name of events) conn.subscribe(topicOf(namespace, name));
    const subscribed = MEMORY_EVENTS.filter((n) => conn.isSubscribed(topicOf(namespace, n)));
    const reply: Record<string, unknown> = { events: subscribed, seq: this.writes.lastSeq(), namespace };
    if (d.since_seq !== undefined) {
      reply.replayed = replayed;
      reply.gap = gap;
    }
    return reply;
  }

  private unsubscribe(conn: Connection, req: Request): unknown {
    const d = parseRequestData(unsubscribeSchema.extend({ events: subscribeSchema.shape.events }), req.data, req.type);
    const namespace = this.namespaceOf(conn, d.namespace);
    const events = d.events && d.events.length > 0 ? d.events : [...MEMORY_EVENTS];
    for (const name of events) conn.unsubscribe(topicOf(namespace, name));
    const remaining = MEMORY_EVENTS.filter((n) => conn.isSubscribed(topicOf(namespace, n)));
    return { events: remaining, seq: this.writes.lastSeq(), namespace };
  }

  private stats(conn: Connection, req: Request): unknown {
    // Called often (dashboards, health checks): no schema parse when there is no data, only
    // the changing counters come from the core (filled in place), the fixed facts are read
    // once, and the reply is one object literal (spreads and late properties cost more than
    // the rest of the handler).
    const d = req.data === undefined ? null : parseRequestData(statsSchema, req.data, req.type);
    const scoped = scopedCounts(conn.auth, this.store);
    if (scoped !== null) return this.scopedStats(conn, d?.namespace, scoped);
    const st = this.store.counters();
    const fixed = (this.statsFixed ??= (() => {
      const s = this.store.stats();
      return { dims: s.dims, storage_path: s.storagePath, fsync: s.fsync, isa: s.isa };
    })());
    const m = this.ws.metrics;
    let total = st.totalMemories;
    let namespaces = st.namespaces;
    let namespace: string | undefined;
    if (d !== null && d.namespace !== undefined) {
      namespace = this.namespaceOf(conn, d.namespace);
      total = this.store.count(namespace);
      namespaces = total > 0 ? 1 : 0;
    }
    // The last compaction's report is a native object: fetched only when the count moves.
    // A store-like baseline given as `store` (benchmarks) may not count compactions.
    if (st.compactions !== this.lastCompaction.count) {
      const last = typeof this.store.compactionInfo === 'function' ? this.store.compactionInfo().last : undefined;
      this.lastCompaction = { count: st.compactions, summary: last ? compactionSummary(last) : null };
    }
    const reply: GlobalStatsReply & { [JSON_TEXT]?: unknown } = {
      total_memories: total,
      memory_count: total,
      namespaces,
      dims: fixed.dims,
      model: this.embedder.name,
      device: this.embedder.device,
      storage_bytes: st.storageBytes,
      storage_path: fixed.storage_path,
      connections: m.connections,
      uptime_s: Math.round(Date.now() - m.startedAt) / 1000,
      // Rounded (to 0.01 request/s and 1 µs): no false precision, and short numbers print fast.
      queries_per_second: Math.round(m.queriesPerSecond() * 100) / 100,
      avg_latency_ms: m.replies === 0 ? 0 : Math.round((m.latencyMsSum / m.replies) * 1000) / 1000,
      fsync: fixed.fsync,
      total_associations: st.totalAssociations,
      fsyncs: st.fsyncs,
      last_seq: st.lastSeq,
      isa: fixed.isa,
      live_bytes: st.liveBytes,
      garbage_bytes: st.garbageBytes,
      last_compaction: this.lastCompaction.summary,
      // Searches per plan since start (exact pass / ANN graph; docs/search.md).
      plans: { exact: st.plansExact ?? 0, graph: st.plansGraph ?? 0 },
    };
    const cluster = this.writes.clusterStats();
    if (cluster !== undefined) Object.assign(reply, { cluster });
    // A re-embedding under way adds its progress (a rare case: the fixed-keys text is skipped).
    const reembed = this.reembedder ? { reembed: this.reembedder.progress() } : null;
    if (namespace === undefined) {
      if (reembed) return { ...reply, ...reembed };
      // The pre-built text holds the single server's keys only.
      if (cluster === undefined) reply[JSON_TEXT] = this.statsJson;
      return reply;
    }
    const totals: MemoryStatsCounts = { total_memories: st.totalMemories, memory_count: st.totalMemories, namespaces: st.namespaces };
    return { ...reply, namespace, totals, ...reembed };
  }

  /** `stats` for a connection limited to some namespaces: only what concerns them (memory-scope.ts). */
  private scopedStats(conn: Connection, ns: string | undefined, counts: MemoryStatsCounts): unknown {
    const s = this.store.stats();
    const uptime_s = Math.round(Date.now() - this.ws.metrics.startedAt) / 1000;
    const facts = { dims: s.dims, model: this.embedder.name, device: this.embedder.device, uptime_s, fsync: s.fsync, isa: s.isa };
    const name = ns === undefined ? undefined : this.namespaceOf(conn, ns);
    return scopedStatsReply(counts, facts, name === undefined ? undefined : { name, total: this.store.count(name) });
  }
}

/** Creates a memory server, opens its store and starts listening. */
export async function createMemoryServer(options: MemoryServerOptions = {}): Promise<MemoryServer> {
  const server = new MemoryServer(options);
  await server.listen();
  return server;
}
