/**
 * Re-embedding (`--reembed`, docs/embeddings.md): a data directory written by one embedder,
 * opened with another, has every memory embedded again from its text in the background.
 *
 * The new vectors go into a second store beside the live one (`<data-dir>/reembed/`),
 * through the ordinary durable `put` in the live store's sequence order, so significance
 * and associations are computed again in the new embedding space, exactly as if the
 * memories had been stored one by one; each copy keeps its id, namespace, text, metadata,
 * time and expiry. After each batch is durable, the last copied sequence number is saved
 * (`reembed.json`): a restart resumes after it, and a batch copied twice is answered
 * `existing` by the store, so nothing is duplicated.
 *
 * The model and store work gives way to commands (reembed-lane.ts): a batch is handed to the
 * model, and a group put into the new store, only when no command is in flight, and a model
 * embedder re-embeds on its background instance (lower CPU priority), closed at the end.
 *
 * Meanwhile the live store serves every command with the old embedder: new stores are
 * embedded the old way and copied later by their sequence numbers; updates and deletes are
 * applied to the copy too. When the copy has caught up, writes are held, the last ones are
 * copied, the copy is checked against the live store (a delete or update a crash kept from
 * the copy is applied again), every command is held for the moment the stores are closed
 * and their files switched (reembed-files.ts), and the server goes on with the new store
 * and embedder.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { ReembedProgress } from '../protocol/memory.js';
import type { Embedder } from '../embedder.js';
import { HashEmbedder } from '../embedder.js';
import { HASH_DIMS, HASH_EMBEDDER_NAME, MemoryStore, lockDataDir, type NativeMemory, type PutItem } from '../native.js';
import type { CommandGate } from './reembed-gate.js';
import { BackgroundLane } from './reembed-lane.js';
import {
  SHADOW_DIR,
  describeIdentity,
  discardShadow,
  finishSwitch,
  identityOf,
  readState,
  recordedIdentity,
  sameIdentity,
  saveState,
  type ReembedState,
} from './reembed-files.js';

/** Memories read from the live store per step (several model batches, so runs queue back to back). */
const PAGE = 512;
/**
 * Memories per `put` into the new store. The significance pass scores a group's memories
 * against the stored rows together (blocks of rows in cache for every memory of the group),
 * so larger groups cost less per memory, while each also compares with the group's earlier
 * ones (the square of the group). 30,000 puts of clustered vectors (cos 0.92–0.99, the
 * benchmark model's spread) took 6.9 s of CPU in groups of 32, 5.4 s in groups of 128 and of
 * 512, with the same significance; 128 keeps one put short for a query that waits on the CPU.
 */
const PUT_CHUNK = 128;
/** Shadow memories checked per reconciliation page. */
const RECONCILE_PAGE = 1000;
const LOG_EVERY_MS = 5000;

export type { ReembedProgress };

export interface ReembedPlan {
  /** The embedder the directory was written with: queries use it until the switch. */
  previous: Embedder;
  state: ReembedState;
}

/**
 * Decides, before the data directory opens, whether this start re-embeds. Finishes a
 * switch a crash interrupted; refuses a mismatch without `reembed`.
 */
export async function planReembed(dataDir: string, target: Embedder, reembed: boolean, previous?: Embedder): Promise<ReembedPlan | null> {
  if (!existsSync(dataDir)) return null;
  // Nothing here may touch a directory another server has open.
  const lock = lockDataDir(dataDir);
  try {
    return await plan(dataDir, target, reembed, previous);
  } finally {
    lock.release();
  }
}

async function plan(dataDir: string, target: Embedder, reembed: boolean, previous?: Embedder): Promise<ReembedPlan | null> {
  let state = readState(dataDir);
  if (state && state.phase !== 'copying') {
    // The new store was complete when the switch began: finish it whatever this start asks.
    await finishSwitch(dataDir, state);
    state = null;
  }
  const recorded = recordedIdentity(dataDir);
  const want = identityOf(target);
  if (!recorded || sameIdentity(recorded, want)) return null;
  if (!reembed) {
    const underway = state && sameIdentity(state.to, want) ? `; a re-embedding to it is under way, and --reembed resumes it` : '';
    throw new Error(
      `data directory ${dataDir} was written by embedder ${describeIdentity(recorded)}, not ${describeIdentity(want)}${underway}; ` +
        `start with --reembed to re-embed its memories with the new embedder (in the background), or use another --data-dir`,
    );
  }
  const old = previousEmbedder(recorded, previous);
  if (state && !(sameIdentity(state.to, want) && sameIdentity(state.from, recorded))) {
    await discardShadow(dataDir);
    state = null;
  }
  if (!state) {
    state = { format: 1, from: recorded, to: want, cursor: 0, phase: 'copying', started_at: new Date().toISOString() };
    await saveState(dataDir, state);
  }
  return { previous: old, state };
}

function previousEmbedder(recorded: ReturnType<typeof identityOf>, given: Embedder | undefined): Embedder {
  if (given && sameIdentity(identityOf(given), recorded)) return given;
  const hash = new HashEmbedder();
  if (sameIdentity(identityOf(hash), recorded)) return hash;
  throw new Error(
    `re-embedding a data directory written by ${describeIdentity(recorded)} needs that embedder to answer queries until the switch; ` +
      `only ${HASH_EMBEDDER_NAME} (${HASH_DIMS} dims) is built in (library: pass it as previousEmbedder)`,
  );
}

export interface ReembedderOptions {
  dataDir: string;
  live: MemoryStore;
  target: Embedder;
  state: ReembedState;
  gate: CommandGate;
  logger: Logger;
  /** After the switch on disk, with every command held: the server opens the directory with the target embedder and serves it. */
  switchServer(): Promise<MemoryStore>;
}

/** One re-embedding run: the copy loop, the mirror of updates and deletes, the switch. */
export class Reembedder {
  private shadow!: MemoryStore;
  /** The model and store work of the run, giving way to commands (reembed-lane.ts). */
  private lane!: BackgroundLane;
  /** The target's background instance, when it has one: closed when the run ends. */
  private backgroundModel: Embedder | null = null;
  private stopped = false;
  private failed: string | null = null;
  private switching = false;
  private readonly startedAt = Date.now();
  private copiedHere = 0;
  private lastLog = 0;
  /** Memories whose significance an update set during this run: their copies keep it. */
  private readonly pinned = new Set<string>();
  /** Settles when the run ends (switched, failed or stopped). */
  finished!: Promise<void>;

  private constructor(private readonly o: ReembedderOptions) {}

  /** Opens (or reopens, resuming) the new embedder's store and starts copying in the background. */
  static async start(o: ReembedderOptions): Promise<Reembedder> {
    const r = new Reembedder(o);
    r.shadow = await MemoryStore.openAsync(path.join(o.dataDir, SHADOW_DIR), {
      dims: o.target.dims,
      // Made durable once per page (flush) before the cursor moves past it.
      fsync: 'off',
      embedderName: o.target.name,
      embedderHash: o.target.hash,
    });
    try {
      r.backgroundModel = o.target.background ? await o.target.background() : null;
    } catch (err) {
      // Not fatal: the run uses the target itself, at its normal priority.
      o.logger.warn({ err }, 're-embedding: no background instance of the new embedder; using it directly');
    }
    r.lane = new BackgroundLane(r.backgroundModel ?? o.target, o.gate);
    o.gate.counting = true;
    o.logger.info({ reembed: r.progress() }, `re-embedding ${o.state.cursor > 0 ? 'resumes' : 'starts'}: ${o.state.from.name} → ${o.state.to.name}`);
    r.finished = r.run().finally(() => {
      r.lane.close();
      return r.closeBackgroundModel();
    });
    return r;
  }

  progress(): ReembedProgress {
    const p: ReembedProgress = {
      state: this.failed !== null ? 'failed' : this.switching ? 'switching' : 'copying',
      from: this.o.state.from.name,
      to: this.o.state.to.name,
      done: this.count(this.shadow),
      total: this.count(this.o.live),
      per_second: Math.round((this.copiedHere / Math.max(0.001, (Date.now() - this.startedAt) / 1000)) * 10) / 10,
      started_at: this.o.state.started_at,
    };
    if (this.failed !== null) p.error = this.failed;
    return p;
  }

  private count(s: MemoryStore): number {
    try {
      return s.counters().totalMemories;
    } catch {
      return 0; // closed by the switch
    }
  }

  /** An update the live store made: the copy takes it too (a memory not copied yet is read fresh when it is). */
  mirrorUpdate(namespace: string, id: string, metadata: string | undefined, significance: number | undefined): void {
    if (this.switching && !this.shadowOpen()) return;
    if (significance !== undefined) this.pinned.add(`${namespace}\u0000${id}`);
    this.shadow.update(namespace, id, metadata, significance).catch(() => undefined);
  }

  /** Deletes the live store made. */
  mirrorDelete(namespace: string, ids: string[]): void {
    if (ids.length === 0 || (this.switching && !this.shadowOpen())) return;
    this.shadow.delete(namespace, ids).catch(() => undefined);
  }

  private shadowOpen(): boolean {
    try {
      this.shadow.counters();
      return true;
    } catch {
      return false;
    }
  }

  /** Stops copying (server shutdown) and closes the new store; the next start resumes. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.finished;
    if (this.shadowOpen()) this.shadow.close();
  }

  private async run(): Promise<void> {
    try {
      let pending: Promise<void> = Promise.resolve();
      let current = this.read(this.o.state.cursor);
      for (;;) {
        if (this.stopped) return await pending;
        if (current.page.length === 0) {
          await pending;
          if (this.stopped) return;
          // Stored since that read? Copy on; else every memory is in the new store: switch.
          current = this.read(this.o.state.cursor);
          if (current.page.length > 0) continue;
          await this.switchOver();
          return;
        }
        // The next page is read now and queued behind this one, so the embedder never waits
        // for the store; one page is written while the next is embedded.
        const next = this.read(current.page[current.page.length - 1]!.seq);
        const vectors = await current.vectors;
        await pending;
        if (this.stopped) return;
        pending = this.copy(current.page, vectors);
        this.logProgress();
        current = next;
        // Let queued queries and replies run between pages.
        await new Promise<void>((r) => setImmediate(r));
      }
    } catch (err) {
      this.failed = err instanceof Error ? err.message : String(err);
      this.o.logger.error({ err }, 're-embedding failed: queries go on with the previous embedder; restart with --reembed to retry');
      this.o.gate.release();
    }
  }

  /** The next page of live memories after `after`, its embedding started. */
  private read(after: number): { page: NativeMemory[]; vectors: Promise<Float32Array> } {
    const page = this.o.live.export(after, PAGE);
    const vectors = this.embedPage(page.map((m) => m.text));
    // Awaited later, or dropped when the run stops or fails: never an unhandled rejection.
    vectors.catch(() => undefined);
    return { page, vectors };
  }

  /** Embeds a page through the lane: one model batch at a time, commands first. */
  private embedPage(texts: string[]): Promise<Float32Array> {
    return this.lane.embed(texts);
  }

  private async closeBackgroundModel(): Promise<void> {
    const m = this.backgroundModel;
    this.backgroundModel = null;
    await m?.close?.();
  }

  /**
   * Puts a page into the new store with its new vectors and saves the cursor once that is
   * durable. A memory deleted (or deleted and stored again) since it was read is skipped;
   * the metadata is read again now, so an update made meanwhile is kept.
   */
  private async copy(page: NativeMemory[], vectors: Float32Array, saveCursor = true): Promise<void> {
    const dims = this.o.target.dims;
    const items: PutItem[] = [];
    const now = Date.now();
    for (let i = 0; i < page.length; i++) {
      const m = page[i]!;
      const cur = this.o.live.get(m.namespace, m.id, false);
      if (!cur || cur.seq !== m.seq || (cur.expiresAt != null && cur.expiresAt <= now)) continue;
      const item: PutItem = {
        namespace: m.namespace,
        id: m.id,
        text: m.text,
        metadata: cur.metadata,
        embedding: vectors.slice(i * dims, (i + 1) * dims),
        timestampMs: m.timestamp,
      };
      if (cur.expiresAt != null) item.expiresAtMs = cur.expiresAt;
      if (this.pinned.has(`${m.namespace}\u0000${m.id}`)) item.significance = cur.significance;
      items.push(item);
    }
    for (let i = 0; i < items.length; i += PUT_CHUNK) {
      // Commands first: a query arriving meanwhile waits for at most this one put's pass.
      await this.lane.giveWay();
      await this.shadow.put(items.slice(i, i + PUT_CHUNK));
    }
    this.copiedHere += items.length;
    if (!saveCursor) return;
    await this.shadow.flush();
    const cursor = page[page.length - 1]!.seq;
    this.o.state.cursor = cursor;
    await saveState(this.o.dataDir, { ...this.o.state, cursor });
  }

  private logProgress(force = false): void {
    const t = Date.now();
    if (!force && t - this.lastLog < LOG_EVERY_MS) return;
    this.lastLog = t;
    const p = this.progress();
    this.o.logger.info({ reembed: p }, `re-embedding: ${p.done} of ${p.total} memories (${p.per_second}/s)`);
  }

  /** Holds writes, copies the last ones, reconciles, then switches stores with every command held. */
  private async switchOver(): Promise<void> {
    const { gate, live, dataDir } = this.o;
    this.switching = true;
    await gate.holdWrites();
    for (;;) {
      const page = live.export(this.o.state.cursor, PAGE);
      if (page.length === 0) break;
      await this.copy(page, await this.embedPage(page.map((m) => m.text)));
    }
    await this.reconcile();
    await this.shadow.flush();
    this.logProgress(true);
    await gate.holdAll();
    try {
      const state: ReembedState = { ...this.o.state, phase: 'switching' };
      await saveState(dataDir, state);
      live.close();
      this.shadow.close();
      const lock = lockDataDir(dataDir);
      try {
        await finishSwitch(dataDir, state);
      } finally {
        lock.release();
      }
      this.o.gate.counting = false;
      const store = await this.o.switchServer();
      this.o.logger.info({ memories: store.counters().totalMemories }, `re-embedding done: the server now uses ${this.o.state.to.name}`);
    } finally {
      gate.release();
    }
  }

  /**
   * With writes held: every memory of the new store must be in the live store with the
   * same text and metadata (a delete or update mirrored just before a crash may be
   * missing), and every live memory in the new store.
   */
  private async reconcile(): Promise<void> {
    const { live } = this.o;
    for (const { name } of this.shadow.namespaces()) {
      let after = 0;
      for (;;) {
        const page = this.shadow.list(name, after, RECONCILE_PAGE);
        const gone: string[] = [];
        for (const m of page.memories) {
          const cur = live.get(name, m.id, false);
          if (!cur || cur.text !== m.text) gone.push(m.id);
          else if (cur.metadata !== m.metadata) await this.shadow.update(name, m.id, cur.metadata);
        }
        if (gone.length > 0) await this.shadow.delete(name, gone);
        if (page.nextCursor === null || page.nextCursor === undefined) break;
        after = page.nextCursor;
      }
    }
    if (this.count(this.shadow) === this.count(live)) return;
    // Live memories the copy lacks (a text changed by delete-and-store-again, above).
    for (const { name } of live.namespaces()) {
      let after = 0;
      for (;;) {
        const page = live.list(name, after, RECONCILE_PAGE);
        const missing = page.memories.filter((m) => !this.shadow.get(name, m.id, false));
        if (missing.length > 0) {
          const vectors = await this.embedPage(missing.map((m) => m.text));
          await this.copy(missing, vectors, false);
        }
        if (page.nextCursor === null || page.nextCursor === undefined) break;
        after = page.nextCursor;
      }
    }
  }
}
