/**
 * Membership and health in a JetStream KV bucket (`memory_<name>_members`): each instance
 * puts `member.<node id>` = { node_id, url, applied_seq, stream_seq, lag, at } every
 * HEARTBEAT_MS; the bucket's TTL drops an instance that stopped heartbeating.
 *
 * The same bucket holds the snapshot writer's lease, `snapshotter`: an instance takes it with
 * `create` (which fails while another holds it) and keeps it by `update` at the revision it
 * last wrote; once the holder stops, the key expires with the TTL and another instance takes
 * it. One elected writer, no consensus of our own: JetStream's compare-and-set does it.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import type { Logger } from 'pino';
import type { ClusterStats } from '../server/write-path.js';

export const HEARTBEAT_MS = 2000;
/** An instance is gone after this long without a heartbeat (and its lease with it). */
export const MEMBER_TTL_MS = 10_000;
const LEASE_KEY = 'snapshotter';

export interface MemberInfo extends ClusterStats {
  url: string | null;
  /** ISO time of the heartbeat. */
  at: string;
}

/** A KV key for a node id (KV keys allow letters, digits, `-`, `_`, `=`, `.`, `/`). */
const memberKey = (nodeId: string): string => `member.${nodeId.replace(/[^A-Za-z0-9_=-]/g, '_')}`;

export class Membership {
  private kv: KV | null = null;
  private timer: NodeJS.Timeout | null = null;
  private leaseRevision = 0;
  private beating: Promise<void> | null = null;

  constructor(
    private readonly nc: NatsConnection,
    private readonly bucket: string,
    private readonly replicas: number,
    private readonly self: () => MemberInfo,
    private readonly logger: Logger,
  ) {}

  /** Whether this instance holds the snapshot writer's lease (as of its last heartbeat). */
  get leader(): boolean {
    return this.leaseRevision > 0;
  }

  async start(): Promise<void> {
    this.kv = await new Kvm(this.nc).create(this.bucket, { history: 1, ttl: MEMBER_TTL_MS, replicas: this.replicas });
    await this.heartbeat();
    this.timer = setInterval(() => {
      this.beating ??= this.heartbeat().finally(() => (this.beating = null));
    }, HEARTBEAT_MS);
    this.timer.unref();
  }

  private async heartbeat(): Promise<void> {
    const kv = this.kv;
    if (!kv) return;
    const me = this.self();
    try {
      await kv.put(memberKey(me.node_id), JSON.stringify(me));
      this.leaseRevision = this.leaseRevision > 0 ? await kv.update(LEASE_KEY, me.node_id, this.leaseRevision) : await kv.create(LEASE_KEY, me.node_id);
    } catch (err) {
      // Someone else holds the lease (or NATS is unreachable): not the snapshot writer now.
      if (this.leaseRevision > 0) this.logger.info({ err: (err as Error).message }, 'cluster: gave up the snapshot lease');
      this.leaseRevision = 0;
    }
  }

  /** The live members (heartbeat within the TTL), by node id. */
  async members(): Promise<MemberInfo[]> {
    const kv = this.kv;
    if (!kv) return [];
    const out: MemberInfo[] = [];
    for await (const key of await kv.keys('member.>')) {
      const e = await kv.get(key);
      if (e && e.operation === 'PUT' && e.value.length > 0) out.push(e.json<MemberInfo>());
    }
    return out.sort((a, b) => (a.node_id < b.node_id ? -1 : a.node_id > b.node_id ? 1 : 0));
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.beating;
    const kv = this.kv;
    this.kv = null;
    if (!kv) return;
    // Leaving: others need not wait for the TTL.
    await kv.delete(memberKey(this.self().node_id)).catch(() => undefined);
    if (this.leaseRevision > 0) await kv.delete(LEASE_KEY, { previousSeq: this.leaseRevision }).catch(() => undefined);
    this.leaseRevision = 0;
  }
}
