/**
 * Cluster membership (ts/cluster/membership.ts) against a real nats-server. The snapshot
 * writer's lease: a holder
 * keeps it through a renewal that got no answer, and through one that landed but whose
 * answer was lost; a holder that cannot renew at all stops acting as the writer before its
 * key can expire, and another instance takes the lease after that — never two writers at once.
 * The member list: cut when its listing never ends, each member once.
 * Failures are put between the membership and NATS by wrapping its bucket.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node';
import type { KV } from '@nats-io/kv';
import { HEARTBEAT_MS, LEASE_HOLD_MS, LIST_MS, MEMBER_TTL_MS, Membership, type MemberInfo } from '../ts/cluster/membership.js';
import { NATS_SERVER, sleep, startNats, stopAll, until, type NatsCluster } from './helpers/cluster.js';
import { silentLogger } from './helpers/ws-client.js';

/** How the wrapped bucket answers `update` (the lease's renewal) and everything else. */
interface Faults {
  /** Renewals to fail with no answer (nothing written). */
  unanswered: number;
  /** Renewals written whose answer is then lost. */
  answerLost: number;
  /** Every operation fails with no answer (NATS unreachable). */
  down: boolean;
  /** Renewals that went through with their answer. */
  renewed: number;
  /** `create` calls (taking a lease not held). */
  creates: number;
  /** `keys` lists what it finds and then never reports its end (only `stop()` ends it). */
  keysHang?: boolean;
  /** `keys` delivers every key twice (as when a key is written again while the listing runs). */
  keysTwice?: boolean;
}

/** An iterator of `keys` that, like a key listing whose end never comes, ends only when stopped. */
function hangingKeys(keys: string[]): AsyncIterable<string> & { stop(): void } {
  let stop!: () => void;
  const stopped = new Promise<void>((r) => (stop = r));
  return {
    stop,
    async *[Symbol.asyncIterator]() {
      yield* keys;
      await stopped;
    },
  };
}

class FaultyMembership extends Membership {
  constructor(
    nc: NatsConnection,
    bucket: string,
    nodeId: string,
    readonly faults: Faults = { unanswered: 0, answerLost: 0, down: false, renewed: 0, creates: 0 },
  ) {
    super(nc, bucket, 1, (): MemberInfo => ({ node_id: nodeId, url: null, at: new Date().toISOString(), applied_seq: 0, stream_seq: 0, lag: 0 }), silentLogger);
  }

  protected override async openBucket(): Promise<KV> {
    const kv = await super.openBucket();
    const f = this.faults;
    const timeout = (): Promise<never> => Promise.reject(new Error('TIMEOUT'));
    return new Proxy(kv, {
      get(target, prop, receiver) {
        const real = Reflect.get(target, prop, receiver) as unknown;
        if (typeof real !== 'function') return real;
        return (...args: unknown[]) => {
          if (f.down) return timeout();
          if (prop === 'create') f.creates++;
          if (prop === 'keys' && (f.keysHang || f.keysTwice)) {
            return (real as (...a: unknown[]) => Promise<AsyncIterable<string>>).apply(target, args).then(async (it) => {
              const found: string[] = [];
              for await (const k of it) found.push(k);
              if (f.keysTwice) return found.flatMap((k) => [k, k]);
              return hangingKeys(found);
            });
          }
          if (prop === 'update') {
            if (f.unanswered > 0) {
              f.unanswered--;
              return timeout();
            }
            if (f.answerLost > 0) {
              f.answerLost--;
              return (real as (...a: unknown[]) => Promise<number>).apply(target, args).then(timeout);
            }
            return (real as (...a: unknown[]) => Promise<number>).apply(target, args).then((rev) => {
              f.renewed++;
              return rev;
            });
          }
          return (real as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
  }
}

describe.skipIf(!NATS_SERVER)('cluster membership: the snapshot writer lease and the member list', () => {
  let nats: NatsCluster;
  let nc: NatsConnection;
  let bucketNo = 0;
  const started: Membership[] = [];

  beforeAll(async () => {
    nats = await startNats(1);
    nc = await natsConnect({ servers: nats.urls });
  }, 60_000);
  afterAll(async () => {
    for (const m of started) await m.stop().catch(() => undefined);
    await nc?.close();
    stopAll();
    nats?.cleanup();
  });

  /** Holder `a` (started first: it takes the lease) and `b`, on a bucket of their own. */
  async function pair(): Promise<[FaultyMembership, FaultyMembership]> {
    const bucket = `lease_test_${++bucketNo}`;
    const a = new FaultyMembership(nc, bucket, 'a');
    await a.start();
    const b = new FaultyMembership(nc, bucket, 'b');
    await b.start();
    started.push(a, b);
    expect(a.leader).toBe(true);
    expect(b.leader).toBe(false);
    return [a, b];
  }

  /** Samples both every 50 ms until `done` resolves: never two writers; how often `b` was one. */
  async function watch(a: Membership, b: Membership, done: Promise<unknown>): Promise<{ bLeader: number }> {
    let finished = false;
    void done.finally(() => (finished = true));
    const seen = { bLeader: 0 };
    while (!finished) {
      expect(a.leader && b.leader).toBe(false);
      seen.bLeader += Number(b.leader);
      await sleep(50);
    }
    await done;
    return seen;
  }

  /**
   * `fault` once on a's next renewal; then until a renewal goes through: a never took the lease
   * again with `create` (it never gave it up), b was never the writer, a is.
   */
  async function keepsLeaseThrough(fault: 'unanswered' | 'answerLost'): Promise<void> {
    const [a, b] = await pair();
    const before = a.faults.renewed;
    const creates = a.faults.creates;
    a.faults[fault] = 1;
    const seen = await watch(a, b, until(() => a.faults[fault] === 0 && a.faults.renewed > before, 4 * HEARTBEAT_MS + 5000, `a renewal after the ${fault} one`));
    expect(a.faults.creates).toBe(creates);
    expect(seen.bLeader).toBe(0);
    expect(a.leader).toBe(true);
  }

  // The failed renewal, then one that goes through (the same revision: JetStream accepts it).
  it('a renewal that got no answer does not give the lease up: the holder renews at the same revision next time', () => keepsLeaseThrough('unanswered'), 30_000);

  // Next renewal: refused (the revision moved), the key is still a's: a takes its revision and renews at it.
  it('a renewal that landed but whose answer was lost: the holder finds the key still its own and keeps the lease', () => keepsLeaseThrough('answerLost'), 30_000);

  it('a listing of the members whose end never comes is cut: the members found so far, within LIST_MS', async () => {
    const [a] = await pair();
    a.faults.keysHang = true;
    const t0 = performance.now();
    const members = await a.members();
    expect(performance.now() - t0).toBeGreaterThanOrEqual(LIST_MS - 50);
    expect(members.map((m) => m.node_id)).toEqual(['a', 'b']);
    a.faults.keysHang = false;
  }, 30_000);

  it('a key the listing delivers twice is one member', async () => {
    const [a] = await pair();
    a.faults.keysTwice = true;
    expect((await a.members()).map((m) => m.node_id)).toEqual(['a', 'b']);
    a.faults.keysTwice = false;
  }, 30_000);

  it('a holder that cannot renew stops being the writer before its key expires; another takes the lease after', async () => {
    const [a, b] = await pair();
    a.faults.down = true;
    // a's last renewal was at most one heartbeat before the cut; its key expires 4 s after it steps down.
    await watch(a, b, until(() => !a.leader, LEASE_HOLD_MS + HEARTBEAT_MS + 5000, 'a to stop acting as the writer'));
    expect(b.leader).toBe(false);
    await watch(a, b, until(() => b.leader, MEMBER_TTL_MS + 2 * HEARTBEAT_MS + 10_000, 'b to take the lease'));
    expect(a.leader).toBe(false);
    a.faults.down = false;
    // Back: a finds the key b's and does not take it.
    const renewedB = b.faults.renewed;
    await watch(a, b, until(() => b.faults.renewed > renewedB + 1, 4 * HEARTBEAT_MS + 5000, 'b to renew twice'));
    expect(a.leader).toBe(false);
    expect(b.leader).toBe(true);
  }, 60_000);
});
