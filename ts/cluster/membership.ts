/**
 * Membership and health in a JetStream KV bucket (`memory_<name>_members`): each instance
 * puts `member.<node id>` = { node_id, url, applied_seq, stream_seq, lag, at } every
 * HEARTBEAT_MS; the bucket's TTL drops an instance that stopped heartbeating.
 *
 * The same bucket holds the snapshot writer's lease, `snapshotter`: an instance takes it with
 * `create` (which fails while another holds it) and keeps it by `update` at the revision it
 * last wrote; once the holder stops, the key expires with the TTL and another instance takes
 * it. One elected writer, no consensus of our own: JetStream's compare-and-set does it.
 *
 * A renewal that fails for want of an answer (NATS slow or unreachable) does not give the
 * lease up: the key is still the holder's, and nobody else could take it before it expires,
 * so the holder renews at the same revision on its next heartbeat. Only a renewal that
 * JetStream refuses (the key moved: another holder, or expired) gives it up — unless the key
 * is still this instance's (an earlier write landed but its answer was lost; the holder then
 * takes that revision). And a holder that could not renew for LEASE_HOLD_MS stops acting as
 * the writer, well before its key can expire and another instance take it.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { Logger } from 'pino';
import type { ClusterStats } from '../server/write-path.js';

export const HEARTBEAT_MS = 2000;
/** An instance is gone after this long without a heartbeat (and its lease with it). */
export const MEMBER_TTL_MS = 10_000;
/** A lease holder that has not renewed for this long stops acting as the snapshot writer (its key expires at MEMBER_TTL_MS). */
export const LEASE_HOLD_MS = MEMBER_TTL_MS - 2 * HEARTBEAT_MS;
const LEASE_KEY = 'snapshotter';
/** Longest a listing of the members may wait for its end (`Membership.members`). */
export const LIST_MS = HEARTBEAT_MS;

/** Whether JetStream refused a write because the key's revision was not the one given. */
const isWrongRevision = (err: unknown): boolean =>
  err instanceof JetStreamApiError && (err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown);

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
  /** When the lease was last written (performance.now()). */
  private leaseAt = 0;
  private beating: Promise<void> | null = null;

  constructor(
    private readonly nc: NatsConnection,
    private readonly bucket: string,
    private readonly replicas: number,
    private readonly self: () => MemberInfo,
    private readonly logger: Logger,
  ) {}

  /** Whether this instance holds the snapshot writer's lease, renewed within LEASE_HOLD_MS. */
  get leader(): boolean {
    return this.leaseRevision > 0 && performance.now() - this.leaseAt < LEASE_HOLD_MS;
  }

  /** The bucket (a method so that tests can stand between the membership and NATS). */
  protected openBucket(): Promise<KV> {
    return new Kvm(this.nc).create(this.bucket, { history: 1, ttl: MEMBER_TTL_MS, replicas: this.replicas });
  }

  async start(): Promise<void> {
    this.kv = await this.openBucket();
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
    // The member entry and the lease apart: a failed member write says nothing of the lease.
    await kv.put(memberKey(me.node_id), JSON.stringify(me)).catch((err: unknown) => this.logger.debug({ err: (err as Error).message }, 'cluster: heartbeat not written'));
    await this.renewLease(kv, me.node_id);
  }

  /**
   * Takes the lease when free, or renews it at the revision this instance last wrote.
   * `adopted`: the revision was just taken from the key (a write of ours whose answer was lost).
   */
  private async renewLease(kv: KV, nodeId: string, adopted = false): Promise<void> {
    try {
      this.leaseRevision = this.leaseRevision > 0 ? await kv.update(LEASE_KEY, nodeId, this.leaseRevision) : await kv.create(LEASE_KEY, nodeId);
      this.leaseAt = performance.now();
    } catch (err) {
      // No answer: the key is as it was; renew at the same revision next time (`leader` lapses if that goes on).
      if (!isWrongRevision(err)) return;
      // Refused: the key moved. Still ours if a write of ours landed without its answer reaching us:
      // renew at its revision now (once), not a heartbeat later.
      const e = adopted ? null : await kv.get(LEASE_KEY).catch(() => null);
      if (e?.operation === 'PUT' && e.string() === nodeId) {
        this.leaseRevision = e.revision;
        return this.renewLease(kv, nodeId, true);
      }
      if (this.leaseRevision > 0) this.logger.warn({ err: (err as Error).message }, 'cluster: gave up the snapshot lease');
      this.leaseRevision = 0;
    }
  }

  /** The live members (heartbeat within the TTL), by node id. */
  async members(): Promise<MemberInfo[]> {
    const kv = this.kv;
    if (!kv) return [];
    const keys = await kv.keys('member.>');
    // The listing ends when its last key says nothing is pending, or at the consumer's idle
    // heartbeat. Keys that expire between its count and their delivery (a member gone) leave
    // it waiting for that heartbeat, and a consumer lost with a NATS server may not end it at
    // all — and the snapshot writer's tick waits on this list. So it is cut at LIST_MS: the
    // keys listed so far now, the rest at the next refresh.
    const cut = setTimeout(() => keys.stop(), LIST_MS);
    // A set: the listing's consumer also delivers puts made while it runs (a heartbeat), so a
    // key can come twice (seen: a member counted twice in `memory_server_cluster_members`).
    const names = new Set<string>();
    try {
      for await (const key of keys) names.add(key);
    } finally {
      clearTimeout(cut);
    }
    const out: MemberInfo[] = [];
    for (const key of names) {
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
