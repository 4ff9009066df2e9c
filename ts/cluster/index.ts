/**
 * Cluster mode on NATS JetStream (docs/cluster.md), loaded by dynamic import only when the
 * memory server is given `cluster` options.
 *
 * The JetStream stream is the write log. A write is validated and embedded by the instance
 * that received it (memory.ts, unchanged), published to the stream with a message id for
 * de-duplication, and answered once JetStream acknowledged it (on a quorum of a replicated
 * stream) and this instance applied it. Every instance applies the whole stream, in order,
 * to its own store (applier.ts) and serves reads from it.
 */
import { randomBytes, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import type { Logger } from 'pino';
import { connect, credsAuthenticator, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import { DeliverPolicy, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager, type ConsumerMessages } from '@nats-io/jetstream';
import type { Embedder } from '../embedder.js';
import type { DeleteResult, MemoryStore, NativeMemory, PutResult } from '../native.js';
import { ProtocolError } from '../protocol/index.js';
import type { MemoryEventLog } from '../server/memory-events.js';
import { waitUntilApplied, type ClusterStats, type PutRequest, type WritePath } from '../server/write-path.js';
import { Applier } from './applier.js';
import { Checkpoint } from './checkpoint.js';
import { encodeWrite, putItemMessage, type WriteMessage } from './messages.js';
import { Membership, type MemberInfo } from './membership.js';
import { Snapshots, type SnapshotInfo } from './snapshot.js';
import { replaceStoreFromSnapshot, type StoreFiles } from './restore.js';
import { clusterNames, type ClusterOptions } from './options.js';

export type { ClusterOptions } from './options.js';

export interface JoinOptions {
  store: MemoryStore;
  events: MemoryEventLog;
  logger: Logger;
  dataDir: string;
  embedder: Embedder;
  options: ClusterOptions;
  /** Whether the store fsyncs every write (then the checkpoint is fsynced too). */
  fsyncAlways?: boolean;
  /** This instance's client URL once it listens (for the membership bucket). */
  url?: () => string | null;
  /** Lets a long-absent member replace its store by the latest snapshot (restore.ts); without it such a member is refused. */
  storeFiles?: StoreFiles;
}

/** A consumer that delivered nothing for this long while the stream has more is restarted. */
const STALL_MS = 5000;

/** How long a writer waits for its own instance to apply its acknowledged write. */
const APPLY_WAIT_FACTOR = 6;

export function natsConnectionOptions(o: ClusterOptions, nodeId: string): ConnectionOptions {
  const opts: ConnectionOptions = {
    servers: o.servers,
    name: `memory-server ${nodeId}`,
    // Keep trying: the instance serves reads meanwhile, and writes fail with `unavailable`.
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    pingInterval: 5000,
  };
  if (o.user !== undefined) opts.user = o.user;
  if (o.pass !== undefined) opts.pass = o.pass;
  if (o.token !== undefined) opts.token = o.token;
  if (o.credsFile !== undefined) {
    const file = o.credsFile;
    opts.authenticator = credsAuthenticator(() => readFileSync(file));
  }
  if (o.tlsCa !== undefined || o.tlsCert !== undefined) {
    opts.tls = {
      ...(o.tlsCa !== undefined ? { caFile: o.tlsCa } : {}),
      ...(o.tlsCert !== undefined ? { certFile: o.tlsCert } : {}),
      ...(o.tlsKey !== undefined ? { keyFile: o.tlsKey } : {}),
    };
  }
  return opts;
}

export const defaultNodeId = (): string => `${os.hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;

/** Connects, makes sure the stream exists, starts applying it, and returns the write path. */
export async function joinCluster(j: JoinOptions): Promise<ClusterWritePath> {
  const o = j.options;
  if (o.servers.length === 0) throw new Error('cluster: no NATS server URL given');
  const nodeId = o.nodeId ?? defaultNodeId();
  const names = clusterNames(o.name);
  let nc: NatsConnection;
  try {
    nc = await connect(natsConnectionOptions(o, nodeId));
  } catch (err) {
    throw new Error(`cluster: cannot connect to NATS at ${o.servers.join(', ')}: ${(err as Error).message}`, { cause: err });
  }
  let started: ClusterWritePath | null = null;
  try {
    const jsm = await retrying(() => jetstreamManager(nc, { timeout: o.publishTimeoutMs ?? 5000 }), STARTUP_RETRY_MS, j.logger);
    const replicas = o.replicas ?? (o.servers.length >= 3 ? 3 : 1);
    const info = await retrying(() => ensureStream(jsm, names.stream, names.subject, replicas), STARTUP_RETRY_MS, j.logger);
    const checkpoint = new Checkpoint(j.dataDir, j.fsyncAlways ?? true);
    const streamId = { stream: names.stream, created: info.created };
    const saved = checkpoint.read();
    const snapshots = new Snapshots(nc, names.snapshotsBucket, replicas, j.logger);
    await retrying(() => snapshots.open(), STARTUP_RETRY_MS, j.logger);
    let store = j.store;
    let from = 0;
    const ofThisStream = (snap: SnapshotInfo | null): snap is SnapshotInfo => snap !== null && snap.stream === streamId.stream && snap.created === streamId.created && snap.seq > 0;
    if (saved && saved.stream === streamId.stream && saved.created === streamId.created) {
      from = saved.applied_seq;
      if (info.firstSeq > from + 1) {
        // Long absent: the writes after its checkpoint were purged. The latest snapshot covers
        // them when it reaches the stream's first sequence; it replaces the store (restore.ts).
        const snap = await snapshots.latest();
        if (ofThisStream(snap) && snap.seq + 1 >= info.firstSeq && j.storeFiles) {
          j.logger.info({ applied_seq: from, first_seq: info.firstSeq, snapshot_seq: snap.seq }, 'cluster: this instance is behind the purged stream; restoring the latest snapshot');
          const replaced = await replaceStoreFromSnapshot(j.dataDir, streamId, j.storeFiles, async (fresh) => {
            const got = await snapshots.restore(fresh, (x) => ofThisStream(x) && x.seq + 1 >= info.firstSeq);
            if (!got) throw new Error('cluster: the latest snapshot changed while it was being restored; start again');
            return got.seq;
          });
          store = replaced.store;
          from = replaced.seq;
        }
      }
    } else if (store.counters().totalMemories > 0) {
      throw new Error(
        `cluster: the data directory ${j.dataDir} holds memories that are not in the cluster's write log (stream ${names.stream}); ` +
          'start a cluster member on an empty data directory (import existing memories through a member)',
      );
    } else {
      // A new member: the latest snapshot of this stream, then the stream after it.
      const snap = await snapshots.latest();
      if (ofThisStream(snap)) {
        const got = await snapshots.restore(store, ofThisStream);
        if (got) {
          from = got.seq;
          await checkpoint.save({ ...streamId, applied_seq: from });
        }
      }
    }
    if (info.firstSeq > from + 1) {
      throw new Error(`cluster: the stream starts at sequence ${info.firstSeq} but this instance has applied only ${from}, and no snapshot of this stream reaches sequence ${info.firstSeq - 1}`);
    }
    j.events.floor = from;
    const applier = new Applier(store, j.events, checkpoint, streamId, nodeId, j.logger, from);
    const path = new ClusterWritePath(nc, jetstream(nc), jsm, applier, names, nodeId, o, j.logger);
    started = path;
    await retrying(() => path.start(info.lastSeq), STARTUP_RETRY_MS, j.logger);
    const membership = new Membership(nc, names.membersBucket, replicas, () => ({ ...path.ownStats(), url: o.advertiseUrl ?? j.url?.() ?? null, at: new Date().toISOString() }), j.logger);
    await retrying(() => membership.start(), STARTUP_RETRY_MS, j.logger);
    path.startSnapshots(membership, snapshots, store, streamId, (o.snapshotIntervalS ?? 300) * 1000);
    j.logger.info({ node_id: nodeId, stream: names.stream, replicas: info.replicas, applied_seq: from, stream_seq: info.lastSeq }, 'joined the cluster');
    return path;
  } catch (err) {
    // Stops the consume loop too (it would otherwise retry on a closed connection).
    await started?.close().catch(() => undefined);
    await nc.close().catch(() => undefined);
    throw err;
  }
}

/** How long joining keeps retrying while JetStream is not ready (a NATS cluster still electing its leader). */
const STARTUP_RETRY_MS = 30_000;

async function retrying<T>(f: () => Promise<T>, forMs: number, logger: Logger): Promise<T> {
  const end = Date.now() + forMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return await f();
    } catch (err) {
      if (Date.now() >= end) throw err;
      if (attempt === 1) logger.info({ err: (err as Error).message }, 'cluster: JetStream not ready yet; retrying');
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

interface StreamFacts {
  created: string;
  firstSeq: number;
  lastSeq: number;
  replicas: number;
}

/** The stream as it is, creating it when missing (whichever instance comes first). */
async function ensureStream(jsm: JetStreamManager, name: string, subject: string, replicas: number): Promise<StreamFacts> {
  let si;
  try {
    si = await jsm.streams.info(name);
  } catch (err) {
    if (!/not found/i.test((err as Error).message)) throw err;
    try {
      si = await jsm.streams.add({
        name,
        subjects: [subject],
        num_replicas: replicas,
        // The log is kept whole: every write since the cluster began (docs/cluster.md "Retention").
        max_msgs: -1,
        max_bytes: -1,
        max_age: 0,
        duplicate_window: 120 * 1e9,
      });
    } catch (e) {
      // Another instance created it at the same moment.
      if (!/already in use|exists/i.test((e as Error).message)) throw e;
      si = await jsm.streams.info(name);
    }
  }
  return { created: si.created, firstSeq: si.state.first_seq, lastSeq: si.state.last_seq, replicas: si.config.num_replicas };
}

/** Publishes writes to the stream and waits until this instance applied them. */
export class ClusterWritePath implements WritePath {
  private counter = 0;
  private readonly tokenPrefix = randomBytes(6).toString('hex');
  private streamSeq = 0;
  private messages: ConsumerMessages | null = null;
  /** When a message last arrived (or the consumer started, or nothing was missing). */
  private progressAt = Date.now();
  private watchedApplied = -1;
  private consuming: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly publishTimeoutMs: number;
  private membership: Membership | null = null;
  private members: MemberInfo[] = [];
  private snapshotTimer: NodeJS.Timeout | null = null;
  private snapshotting: Promise<unknown> | null = null;
  /** The sequence of the last snapshot this instance wrote. */
  lastSnapshotSeq = 0;

  constructor(
    readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    readonly jsm: JetStreamManager,
    readonly applier: Applier,
    readonly names: ReturnType<typeof clusterNames>,
    readonly nodeId: string,
    readonly options: ClusterOptions,
    private readonly logger: Logger,
  ) {
    this.publishTimeoutMs = options.publishTimeoutMs ?? 5000;
  }

  /** Starts the ordered consumer from the applied sequence, and the stream-sequence poll. */
  async start(streamSeq: number): Promise<void> {
    this.streamSeq = streamSeq;
    // The first consumer is created here, so that joining fails when it cannot be.
    const first = await this.openConsumer();
    this.consuming = this.consumeLoop(first);
    // The stream's last sequence, for `lag` while nothing arrives, and the stall watchdog
    // (bounded requests, unref'd timer).
    this.timer = setInterval(() => {
      this.jsm.streams
        .info(this.names.stream)
        .then((si) => {
          if (si.state.last_seq > this.streamSeq) this.streamSeq = si.state.last_seq;
        })
        .catch(() => undefined);
      this.watchdog();
    }, 1000);
    this.timer.unref();
  }

  /** An ordered consumer from the sequence after the applied one. */
  private async openConsumer(): Promise<ConsumerMessages> {
    const from = this.applier.applied;
    const consumer = await this.js.consumers.get(
      this.names.stream,
      from === 0 ? { deliver_policy: DeliverPolicy.All } : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: from + 1 },
    );
    // Short pull requests: the ordered consumer notices a lost server consumer (its NATS
    // server died) after two missed heartbeats of half this, and recreates it from the last
    // sequence it delivered — seconds, not the default minute.
    const messages = await consumer.consume({ max_messages: 1024, expires: 2000 });
    this.messages = messages;
    this.progressAt = Date.now();
    return messages;
  }

  /**
   * Feeds the applier until closed. When the consumer ends (an error, or the watchdog
   * stopped it), a new one starts after the applied sequence: the write log is never left
   * unread, and nothing is applied twice (the applier drops what it has).
   */
  private async consumeLoop(first: ConsumerMessages): Promise<void> {
    let messages: ConsumerMessages | null = first;
    while (!this.closed) {
      try {
        messages ??= await this.openConsumer();
        for await (const m of messages) {
          const top = m.seq + m.info.pending;
          if (top > this.streamSeq) this.streamSeq = top;
          this.progressAt = Date.now();
          await this.applier.push({ seq: m.seq, data: m.data });
        }
      } catch (err) {
        if (!this.closed) this.logger.warn({ err: (err as Error).message }, 'cluster: the write log consumer failed; starting a new one');
      }
      messages = null;
      if (!this.closed) await new Promise((r) => setTimeout(r, 250));
    }
  }

  /**
   * The stream has writes this instance has not received for STALL_MS: its consumer is
   * stuck (e.g. its NATS server went away without the client noticing yet). Stop it; the
   * consume loop starts a new one after the applied sequence.
   */
  private watchdog(): void {
    // Applying counts as progress too (a long backlog, a snapshot pause).
    if (this.streamSeq <= this.applier.applied || this.applier.applied !== this.watchedApplied) {
      this.watchedApplied = this.applier.applied;
      this.progressAt = Date.now();
      return;
    }
    if (Date.now() - this.progressAt < STALL_MS) return;
    this.logger.warn({ applied_seq: this.applier.applied, stream_seq: this.streamSeq }, 'cluster: no write received for a while; restarting the consumer');
    this.progressAt = Date.now();
    this.messages?.stop();
  }

  /**
   * Heartbeats keep the member list fresh (for `stats.cluster.members`); the lease holder
   * writes a snapshot every `intervalMs` when the stream moved since its last one.
   */
  startSnapshots(membership: Membership, snapshots: Snapshots, store: MemoryStore, stream: { stream: string; created: string }, intervalMs: number): void {
    this.membership = membership;
    const tick = async (): Promise<void> => {
      this.members = await membership.members().catch(() => this.members);
      if (intervalMs <= 0 || !membership.leader || this.applier.applied <= this.lastSnapshotSeq || this.closed) return;
      const seq = await this.applier.whilePaused(async (applied) => {
        await snapshots.write(store, stream, applied);
        return applied;
      });
      this.lastSnapshotSeq = seq;
    };
    let last = Date.now();
    this.snapshotTimer = setInterval(() => {
      if (this.snapshotting) return;
      const due = Date.now() - last >= intervalMs;
      this.snapshotting = (due ? tick().then(() => (last = Date.now())) : membership.members().then((m) => (this.members = m)))
        .catch((err: unknown) => this.logger.error({ err }, 'cluster: snapshot failed'))
        .finally(() => (this.snapshotting = null));
    }, Math.min(1000, Math.max(100, intervalMs)));
    this.snapshotTimer.unref();
  }

  private nextToken(): string {
    return `${this.tokenPrefix}-${++this.counter}`;
  }

  /**
   * Publishes a write and resolves with this instance's result of applying it. Fails with
   * `unavailable` when JetStream does not acknowledge in time (no quorum, NATS down): then the
   * write may or may not be in the log — a retry with the same memory id is safe.
   */
  private async replicate<T>(msg: WriteMessage, msgID: string): Promise<T | { duplicateOf: number }> {
    if (this.closed) throw new ProtocolError('unavailable', 'Server is shutting down');
    const data = encodeWrite(msg);
    // One write is one message, so that it is applied all-or-nothing at one stream position:
    // it must fit the NATS servers' max_payload (1 MiB unless configured).
    const limit = this.nc.info?.max_payload;
    if (limit !== undefined && data.length > limit) {
      throw new ProtocolError(
        'payload_too_large',
        `data: this write is ${data.length} bytes as a cluster message, over the NATS servers' max_payload of ${limit} bytes (store fewer items per batch, or raise max_payload in the nats-server configuration)`,
        { field: msg.op === 'put' ? 'data.items' : 'data', limit },
      );
    }
    const applied = this.applier.expect(msg.token);
    // Not left unhandled when the publish fails first.
    applied.catch(() => undefined);
    let ack;
    try {
      ack = await this.js.publish(this.names.subject, data, { msgID, timeout: this.publishTimeoutMs, retries: 1 });
    } catch (err) {
      this.applier.forget(msg.token);
      throw new ProtocolError('unavailable', `Cluster write log unavailable: ${(err as Error).message}`, { reason: 'cluster_unavailable' });
    }
    if (ack.seq > this.streamSeq) this.streamSeq = ack.seq;
    if (ack.duplicate) {
      this.applier.forget(msg.token);
      await this.waitApplied(ack.seq, this.publishTimeoutMs * APPLY_WAIT_FACTOR);
      return { duplicateOf: ack.seq };
    }
    const timeout = this.publishTimeoutMs * APPLY_WAIT_FACTOR;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.applier.forget(msg.token);
        reject(
          new ProtocolError('unavailable', `Write ${ack.seq} is in the cluster's log but not yet applied here`, {
            reason: 'apply_timeout',
            seq: ack.seq,
            applied_seq: this.applier.applied,
          }),
        );
      }, timeout);
    });
    try {
      return (await Promise.race([applied, late])) as T;
    } finally {
      clearTimeout(timer);
    }
  }

  put(req: PutRequest): Promise<PutResult[]> {
    const ts = Date.now();
    const token = this.nextToken();
    const clientIds = req.puts.every((p) => p.id !== undefined);
    const items = req.puts.map((p) => putItemMessage({ ...p, id: p.id ?? randomId() }, ts));
    // A client's ids make a retry (after a failover, say) the same message: JetStream drops it
    // within its duplicate window, and the store's existing-id rule covers it after that.
    const msgID = clientIds ? `put:${digest([req.namespace, ...items.map((i) => i.id)])}` : `${this.nodeId}:${token}`;
    const msg: WriteMessage = { op: 'put', ns: req.namespace, items, origin: this.nodeId, token };
    return this.replicate<PutResult[]>(msg, msgID).then((r) => {
      if (!('duplicateOf' in r)) return r;
      // Already in the log: answer with what is stored, as for any existing memory.
      return items.map((it) => {
        const m = this.applier.storedMemory(req.namespace, it.id);
        return { id: it.id, seq: m?.seq ?? 0, significance: m?.significance ?? 0, timestamp: m?.timestamp ?? ts, associations: m?.associations ?? [], existing: true, namespaceTotal: -1 };
      });
    });
  }

  async update(namespace: string, id: string, metadata: string | undefined, significance: number | undefined): Promise<NativeMemory> {
    const token = this.nextToken();
    const msg: WriteMessage = { op: 'update', ns: namespace, id, origin: this.nodeId, token };
    if (metadata !== undefined) msg.meta = metadata;
    if (significance !== undefined) msg.sig = significance;
    return this.single<NativeMemory>(msg);
  }

  delete(namespace: string, ids: string[]): Promise<DeleteResult> {
    const token = this.nextToken();
    return this.single<DeleteResult>({ op: 'delete', ns: namespace, ids, origin: this.nodeId, token });
  }

  deleteWhere(namespace: string, filter: string | undefined): Promise<DeleteResult> {
    const token = this.nextToken();
    const msg: WriteMessage = { op: 'delete_where', ns: namespace, origin: this.nodeId, token };
    if (filter !== undefined) msg.filter = filter;
    return this.single<DeleteResult>(msg);
  }

  /** A write that is not de-duplicated (repeating an update or a delete is harmless). */
  private async single<T>(msg: WriteMessage): Promise<T> {
    const r = await this.replicate<T>(msg, `${this.nodeId}:${msg.token}`);
    if (r !== null && typeof r === 'object' && 'duplicateOf' in r) throw new ProtocolError('internal', 'cluster: a unique write was reported as a duplicate');
    return r as T;
  }

  lastSeq(): number {
    return this.applier.applied;
  }

  waitApplied(seq: number, timeoutMs: number): Promise<void> {
    return waitUntilApplied(() => this.applier.applied, seq, timeoutMs);
  }

  /** This instance's figures (as heartbeated). */
  ownStats(): ClusterStats {
    const applied = this.applier.applied;
    const streamSeq = Math.max(this.streamSeq, applied);
    return { node_id: this.nodeId, applied_seq: applied, stream_seq: streamSeq, lag: streamSeq - applied };
  }

  /** `stats.cluster`: own figures, the live members (from the KV bucket) and the NATS server this instance talks to. */
  clusterStats(): ClusterStats {
    return { ...this.ownStats(), members: this.members, nats_server: this.nc.info?.server_name ?? null };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (this.snapshotTimer) clearInterval(this.snapshotTimer);
    await this.snapshotting;
    await this.membership?.stop();
    this.messages?.stop();
    await this.consuming;
    await this.applier.close();
    await this.nc.close().catch(() => undefined);
  }
}

function digest(parts: string[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\u0000');
  return h.digest('base64url');
}

/** A memory id for a store without one (the same on every replica: it travels in the message). */
function randomId(): string {
  return randomBytes(12).toString('hex');
}
