/**
 * MemoryClient: a typed method per memory-server command (docs/protocol.md), with
 * client-assigned store ids (a store replayed after a reconnect cannot
 * duplicate) and subscriptions that resume with `since_seq` after a reconnect.
 */
import type {
  DeleteReply,
  Filter,
  ListReply,
  MemoryEventName,
  MemoryStatsReply,
  NamespacesReply,
  RetrieveReply,
  StoreBatchReply,
  StoreReply,
  SubscribeReply,
  WireMemory,
} from '../protocol/memory.js';
import { BaseClient, type ConnectionEvents, type ConnectionOptions } from './connection.js';
import { DEFAULTS } from './defaults.js';
import { randomId } from './ids.js';
import { reviveVectors, type VectorInput } from './vectors.js';

/** The three memory events, in the server's order (a local copy: protocol/memory.ts pulls zod in). */
export const MEMORY_EVENT_NAMES = ['memory_added', 'memory_updated', 'memory_removed'] as const satisfies readonly MemoryEventName[];

export type { MemoryEventName, WireMemory };

export interface MemoryEvent {
  type: MemoryEventName;
  namespace: string;
  /** The memory (without embedding); for `memory_removed` only `{ id, namespace }`. */
  memory: WireMemory | { id: string; namespace: string };
  seq: number;
  /** `memory_removed` only: `deleted` (a delete) or `expired` (its TTL passed). */
  reason?: 'deleted' | 'expired';
  /** ISO-8601 time the server sent the event. */
  timestamp: string;
}

export type MemoryEventHandler = (event: MemoryEvent) => void;

export interface MemoryClientEvents extends ConnectionEvents {
  memory_added: (event: MemoryEvent) => void;
  memory_updated: (event: MemoryEvent) => void;
  memory_removed: (event: MemoryEvent) => void;
  /** A subscription was restored after a reconnect; `gap` means events were lost (resync with list()). */
  resubscribed: (reply: SubscribeReply) => void;
}

export interface MemoryClientOptions extends ConnectionOptions {
  /** Namespace used when a call does not give one. Default: the server's (`default`). */
  namespace?: string;
}

export interface NamespaceOption {
  namespace?: string;
}

export interface StoreOptions extends NamespaceOption {
  metadata?: Record<string, unknown>;
  /** 0…1; overrides the computed significance. */
  significance?: number;
  /** Skips server-side embedding. */
  embedding?: VectorInput;
  /** Client key (≤ 256 chars). Default: a random UUID, so a retried store cannot duplicate. */
  id?: string;
  /** Expires after this many seconds. */
  ttl_s?: number;
}

export interface StoreItemInput extends Omit<StoreOptions, 'namespace'> {
  text: string;
}

export interface RetrieveOptions extends NamespaceOption {
  /** Default 5 (1…1000). */
  count?: number;
  min_significance?: number;
  /** Semantic retrieve by text. */
  query?: string;
  /** Semantic retrieve by vector. */
  embedding?: VectorInput;
  min_score?: number;
  /** Shorthand for `filter: { type }`. */
  type?: string;
  filter?: Filter;
  since?: string;
  until?: string;
  recency_half_life_s?: number;
  include_embeddings?: boolean;
}

export interface ListOptions extends NamespaceOption {
  cursor?: string | number | null;
  limit?: number;
  filter?: Filter;
  include_embeddings?: boolean;
}

export interface UpdateChanges {
  /** Replaces the metadata whole. */
  metadata?: Record<string, unknown>;
  significance?: number;
}

export interface SubscribeOptions extends NamespaceOption {
  /** Replay events after this seq first (default: none on the first subscribe). */
  since_seq?: number;
}

interface SubscriptionState {
  events: Set<MemoryEventName>;
  /** Acknowledged by the server at least once (then restored on reconnect). */
  acked: boolean;
  /** since_seq for the next resubscribe: highest event seq seen, else the subscribe reply's seq. */
  lastSeq: number | undefined;
  /**
   * Recently seen events (seq, type and memory id: in a cluster one write — a batch, a delete
   * of several ids — gives several events with the same seq), to drop duplicates after a replay.
   */
  seen: Set<string>;
  seenOrder: string[];
}

const cleaned = <T extends Record<string, unknown>>(o: T): Record<string, unknown> => {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out;
};

export class MemoryClient extends BaseClient<MemoryClientEvents> {
  /** Default namespace for calls that do not give one (undefined → the server's `default`). */
  readonly namespace: string | undefined;
  private readonly subscriptions = new Map<string, SubscriptionState>();
  /** Listeners added by subscribe(…, handler), per namespace, removed by unsubscribe(). */
  private readonly handlerOffs = new Map<string, Array<{ event: MemoryEventName; off: () => void }>>();

  constructor(options: MemoryClientOptions = {}) {
    super('memory', options);
    this.namespace = options.namespace;
  }

  /** Stores one memory. The id is client-assigned (random UUID unless given), so a replay after reconnect returns `existing: true`. */
  store(text: string, options?: StoreOptions): Promise<StoreReply>;
  store(item: StoreItemInput & NamespaceOption): Promise<StoreReply>;
  store(textOrItem: string | (StoreItemInput & NamespaceOption), options: StoreOptions = {}): Promise<StoreReply> {
    const item = typeof textOrItem === 'string' ? { ...options, text: textOrItem } : textOrItem;
    const { namespace, ...rest } = item;
    return this.request<StoreReply>('store', this.withNs({ ...rest, id: rest.id ?? randomId() }, namespace));
  }

  /** Stores a batch (≤ 1000; all-or-nothing, one fsync). Items get client-assigned ids. */
  storeMany(items: Array<string | StoreItemInput>, options: NamespaceOption = {}): Promise<StoreBatchReply> {
    const wire = items.map((it) => {
      const item = typeof it === 'string' ? { text: it } : it;
      return cleaned({ ...item, id: item.id ?? randomId() });
    });
    return this.request<StoreBatchReply>('store', this.withNs({ items: wire }, options.namespace));
  }

  /**
   * Retrieves memories: by significance (highest first), or semantically with `query`/`embedding`.
   * Shorthand: `retrieve(5, 0.7)` = the 5 most significant with significance ≥ 0.7.
   */
  retrieve(options?: RetrieveOptions): Promise<RetrieveReply>;
  retrieve(count: number, minSignificance?: number, options?: RetrieveOptions): Promise<RetrieveReply>;
  retrieve(a?: number | RetrieveOptions, b?: number, c: RetrieveOptions = {}): Promise<RetrieveReply> {
    const opts: RetrieveOptions = typeof a === 'number' ? { ...c, count: a, ...(b === undefined ? {} : { min_significance: b }) } : (a ?? {});
    const { namespace, ...rest } = opts;
    return this.request<RetrieveReply>('retrieve', this.withNs(rest, namespace));
  }

  /** Semantic retrieve: memories most similar to `query` (highest `score` first). */
  search(query: string, options: Omit<RetrieveOptions, 'query' | 'embedding'> = {}): Promise<RetrieveReply> {
    return this.retrieve({ ...options, query });
  }

  /** Memories in store order, a page at a time (`next_cursor` null at the end). */
  list(options: ListOptions = {}): Promise<ListReply> {
    const { namespace, ...rest } = options;
    return this.request<ListReply>('list', this.withNs(rest, namespace));
  }

  /** Iterates every memory of a namespace (pages of `limit`). */
  async *listAll(options: Omit<ListOptions, 'cursor'> = {}): AsyncGenerator<WireMemory> {
    let cursor: string | number | null | undefined;
    for (;;) {
      const page = await this.list({ ...options, ...(cursor === undefined || cursor === null ? {} : { cursor }) });
      yield* page.memories;
      if (page.next_cursor === null || page.next_cursor === undefined || page.memories.length === 0) return;
      cursor = page.next_cursor;
    }
  }

  get(id: string, options: NamespaceOption & { include_embeddings?: boolean } = {}): Promise<WireMemory> {
    const { namespace, ...rest } = options;
    return this.request<WireMemory>('get', this.withNs({ ...rest, id }, namespace));
  }

  /** Replaces metadata and/or significance; text, embedding and namespace cannot change. */
  update(id: string, changes: UpdateChanges, options: NamespaceOption = {}): Promise<WireMemory> {
    return this.request<WireMemory>('update', this.withNs({ ...changes, id }, options.namespace));
  }

  /**
   * Deletes one memory (an unknown id is a `not_found` error). Not replayed after a
   * reconnect if it was already sent: it then rejects with `disconnected`.
   */
  delete(id: string, options: NamespaceOption = {}): Promise<DeleteReply> {
    return this.request<DeleteReply>('delete', this.withNs({ id }, options.namespace), { retriable: false });
  }

  /** Deletes by ids (unknown ones listed in `not_found`), or by filter (`{ filter: {}, all: true }` empties the namespace). */
  deleteMany(target: string[] | { filter?: Filter; all?: boolean }, options: NamespaceOption = {}): Promise<DeleteReply> {
    const data = Array.isArray(target) ? { ids: target } : cleaned({ filter: target.filter ?? {}, all: target.all });
    return this.request<DeleteReply>('delete', this.withNs(data, options.namespace), { retriable: false });
  }

  namespaces(): Promise<NamespacesReply> {
    return this.request<NamespacesReply>('namespaces');
  }

  /**
   * Subscribes to memory events of a namespace (default all three events). `handler`, if
   * given, is added as a listener for those events of that namespace. The subscription is
   * restored after a reconnect with `since_seq`, so no event is lost.
   */
  subscribe(events?: MemoryEventName[] | null, handler?: MemoryEventHandler, options: SubscribeOptions = {}): Promise<SubscribeReply> {
    const namespace = options.namespace ?? this.namespace ?? 'default';
    const names = events && events.length > 0 ? events : [...MEMORY_EVENT_NAMES];
    let sub = this.subscriptions.get(namespace);
    if (!sub) {
      sub = { events: new Set(), acked: false, lastSeq: options.since_seq, seen: new Set(), seenOrder: [] };
      this.subscriptions.set(namespace, sub);
    }
    for (const n of names) sub.events.add(n);
    if (handler) {
      const offs = this.handlerOffs.get(namespace) ?? [];
      this.handlerOffs.set(namespace, offs);
      for (const n of names) {
        const off = this.on(n, (ev: MemoryEvent) => {
          if (ev.namespace === namespace) handler(ev);
        });
        offs.push({ event: n, off });
      }
    }
    const data = cleaned({ namespace, events: names, since_seq: options.since_seq });
    const state = sub;
    return this.request<SubscribeReply>('subscribe', data).then((reply) => {
      state.acked = true;
      // Events seen since (replays included) move it forward; until then resume from here.
      if (state.lastSeq === undefined) state.lastSeq = reply.seq;
      return reply;
    });
  }

  /** Unsubscribes from some (default all) events of a namespace and removes their listeners. */
  unsubscribe(events?: MemoryEventName[] | null, options: NamespaceOption = {}): Promise<SubscribeReply> {
    const namespace = options.namespace ?? this.namespace ?? 'default';
    const names = events && events.length > 0 ? events : [...MEMORY_EVENT_NAMES];
    const sub = this.subscriptions.get(namespace);
    if (sub) {
      for (const n of names) sub.events.delete(n);
      if (sub.events.size === 0) this.subscriptions.delete(namespace);
    }
    const offs = this.handlerOffs.get(namespace);
    if (offs) {
      const keep = offs.filter((h) => {
        if (!names.includes(h.event)) return true;
        h.off();
        return false;
      });
      if (keep.length > 0) this.handlerOffs.set(namespace, keep);
      else this.handlerOffs.delete(namespace);
    }
    return this.request<SubscribeReply>('unsubscribe', { namespace, events: names });
  }

  /** Server statistics; with a namespace, that namespace's counts (global ones in `totals`). */
  stats(options: NamespaceOption = {}): Promise<MemoryStatsReply> {
    return this.request<MemoryStatsReply>('stats', this.withNs({}, options.namespace ?? undefined));
  }

  /** The seq a resubscribe would resume from, per namespace (for inspection/tests). */
  subscriptionSeq(namespace = this.namespace ?? 'default'): number | undefined {
    return this.subscriptions.get(namespace)?.lastSeq;
  }

  // ------------------------------------------------------------ internals

  protected override onReopen(reconnected: boolean): void {
    if (!reconnected) return;
    for (const [namespace, sub] of this.subscriptions) {
      // Not yet acknowledged: the original subscribe request is itself replayed.
      if (!sub.acked) continue;
      const data = cleaned({ namespace, events: [...sub.events], since_seq: sub.lastSeq });
      this.request<SubscribeReply>('subscribe', data, { internal: true })
        .then((reply) => this.emit('resubscribed', reply))
        .catch((err) => this.emit('error', err));
    }
  }

  protected override handleEvent(msg: Record<string, unknown>): boolean {
    const type = msg.type as MemoryEventName;
    if (msg.status !== 'success' || !(MEMORY_EVENT_NAMES as readonly string[]).includes(type)) return false;
    const data = msg.data as { memory: MemoryEvent['memory']; seq: number; reason?: MemoryEvent['reason'] } | undefined;
    if (!data || typeof data.seq !== 'number' || !data.memory) return true;
    const namespace = data.memory.namespace;
    const sub = this.subscriptions.get(namespace);
    if (sub) {
      const key = `${data.seq}/${type}/${data.memory.id}`;
      if (sub.seen.has(key)) return true; // a replay of an event already delivered
      sub.seen.add(key);
      sub.seenOrder.push(key);
      if (sub.seenOrder.length > DEFAULTS.seenEventWindow) sub.seen.delete(sub.seenOrder.shift()!);
      if (sub.lastSeq === undefined || data.seq > sub.lastSeq) sub.lastSeq = data.seq;
    }
    const event: MemoryEvent = { type, namespace, memory: data.memory, seq: data.seq, timestamp: String(msg.timestamp ?? '') };
    if (data.reason !== undefined) event.reason = data.reason;
    this.emit(type, event);
    return true;
  }

  protected override reviveReply(type: string, data: unknown): unknown {
    if (!data || typeof data !== 'object') return data;
    const d = data as { memories?: unknown[] };
    if (Array.isArray(d.memories)) d.memories.forEach(reviveVectors);
    else if (type === 'get' || type === 'update') reviveVectors(data);
    return data;
  }

  private withNs(data: Record<string, unknown>, namespace: string | undefined): Record<string, unknown> {
    const ns = namespace ?? this.namespace;
    return cleaned(ns === undefined ? data : { ...data, namespace: ns });
  }
}
