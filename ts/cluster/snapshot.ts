/**
 * Snapshots in a JetStream object store (`memory_<name>_snapshots`, object `latest`): every
 * memory of one instance's store at one applied stream sequence, so that a new instance
 * restores it and applies the stream from that sequence on, instead of replaying the whole
 * stream.
 *
 * Format: frames of `[u32 little-endian length][MessagePack page]`, a page being up to
 * PAGE memories `{ ns, id, text, meta, sig, ts, assoc, exp?, emb }` (emb: float32 bytes).
 * The object's metadata holds the stream, its creation time and the sequence.
 * The snapshot is taken with the applier paused (ts/cluster/applier.ts `whilePaused`), so it
 * is exactly the store at that sequence; reads go on meanwhile.
 */
import { pack, unpack } from 'msgpackr';
import type { NatsConnection } from '@nats-io/transport-node';
import { Objm, type ObjectStore } from '@nats-io/obj';
import type { Logger } from 'pino';
import type { BulkRecord, MemoryStore, NativeMemory } from '../native.js';
import { mapped } from '../server/memory-convert.js';
import type { CheckpointState } from './checkpoint.js';

const OBJECT = 'latest';
const PAGE = 1000;

interface SnapshotRow {
  ns: string;
  id: string;
  text: string;
  meta: string;
  sig: number;
  ts: number;
  assoc: string[];
  exp?: number;
  emb: Uint8Array;
}

export interface SnapshotInfo extends Omit<CheckpointState, 'applied_seq'> {
  seq: number;
}

function rowOf(m: NativeMemory): SnapshotRow {
  const e = m.embedding!;
  const r: SnapshotRow = { ns: m.namespace, id: m.id, text: m.text, meta: m.metadata, sig: m.significance, ts: m.timestamp, assoc: m.associations, emb: new Uint8Array(e.buffer, e.byteOffset, e.byteLength) };
  if (m.expiresAt !== undefined && m.expiresAt !== null) r.exp = m.expiresAt;
  return r;
}

function recordOf(r: SnapshotRow): BulkRecord {
  const rec: BulkRecord = { namespace: r.ns, id: r.id, text: r.text, metadata: r.meta, significance: r.sig, timestamp: r.ts, associations: r.assoc, embedding: new Float32Array(new Uint8Array(r.emb).buffer) };
  if (r.exp !== undefined) rec.expiresAt = r.exp;
  return rec;
}

function frame(page: SnapshotRow[]): Uint8Array {
  const body = pack(page);
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length, true);
  out.set(body, 4);
  return out;
}

export class Snapshots {
  private os: ObjectStore | null = null;

  constructor(
    private readonly nc: NatsConnection,
    private readonly bucket: string,
    private readonly replicas: number,
    private readonly logger: Logger,
  ) {}

  async open(): Promise<void> {
    this.os = await new Objm(this.nc).create(this.bucket, { replicas: this.replicas });
  }

  /** The latest snapshot's facts, or null. */
  async latest(): Promise<SnapshotInfo | null> {
    const info = await this.os!.info(OBJECT);
    if (!info || info.deleted || !info.metadata?.seq) return null;
    const md = info.metadata;
    return { stream: md.stream ?? '', created: md.created ?? '', seq: Number(md.seq) };
  }

  /**
   * Writes every memory of `store` as the snapshot at `seq`. Called with the applier paused;
   * pages are read from the store as the upload pulls them.
   */
  async write(store: MemoryStore, stream: Omit<CheckpointState, 'applied_seq'>, seq: number): Promise<SnapshotInfo> {
    let after = 0;
    let count = 0;
    let done = false;
    const rs = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (done) {
          controller.close();
          return;
        }
        const page = store.export(after, PAGE);
        if (page.length === 0) {
          done = true;
          controller.close();
          return;
        }
        after = page[page.length - 1]!.seq;
        count += page.length;
        controller.enqueue(frame(page.map(rowOf)));
      },
    });
    await this.os!.put({ name: OBJECT, metadata: { stream: stream.stream, created: stream.created, seq: String(seq) } }, rs);
    this.logger.info({ seq, count }, 'cluster: snapshot written');
    return { ...stream, seq };
  }

  /**
   * Loads the latest snapshot into an empty store (bulk load: significance, associations and
   * timestamps as recorded). Its facts and its bytes come from one `get`, so they belong to
   * the same object even while the snapshot writer replaces it. Loads nothing (null) when
   * there is none or `accept` refuses its facts.
   */
  async restore(store: MemoryStore, accept: (info: SnapshotInfo) => boolean = () => true): Promise<SnapshotInfo | null> {
    const r = await this.os!.get(OBJECT);
    if (!r || r.info.deleted || !r.info.metadata?.seq) return null;
    const md = r.info.metadata;
    const info: SnapshotInfo = { stream: md.stream ?? '', created: md.created ?? '', seq: Number(md.seq) };
    if (!accept(info)) {
      await r.data.cancel().catch(() => undefined);
      return null;
    }
    const [err, blob] = await Promise.all([r.error, new Response(r.data).arrayBuffer().then((b) => new Uint8Array(b))]);
    if (err) throw err;
    const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
    let at = 0;
    let loaded = 0;
    while (at < blob.length) {
      const n = view.getUint32(at, true);
      const page = unpack(blob.subarray(at + 4, at + 4 + n)) as SnapshotRow[];
      at += 4 + n;
      loaded += await mapped(store.bulkLoad(page.map(recordOf)));
    }
    this.logger.info({ seq: info.seq, loaded }, 'cluster: restored a snapshot');
    return info;
  }
}
