/**
 * The JSON text of the global `stats` reply, rebuilt only where it changed.
 *
 * `stats` is asked for at hundreds of thousands a second (dashboards, health checks, the
 * transport benchmark), and most of its 21 fields move only when the store does. The text
 * is kept in three parts: the head (`total_memories` … `connections`), the three fields that
 * move on every request (`uptime_s`, `queries_per_second`, `avg_latency_ms`), and the tail
 * (`fsync` … `plans`). Each reply compares its own values with the ones the cached head and
 * tail were built from (a dozen number and string compares) and rebuilds a part only when one
 * differs, so the text is always that reply's own values — exactly JSON.stringify(reply)
 * (test/stats-text.test.ts holds it to that) — while formatting three numbers per request
 * instead of twenty.
 */
import type { MemoryStatsReply } from '../protocol/memory.js';

/** The global `stats` reply object, in the key order the handler builds it. */
export type GlobalStatsReply = MemoryStatsReply & { total_associations: number; fsyncs: number; last_seq: number; isa: string };

/** A finite number as JSON.stringify writes it; anything else (never expected) as null. */
const num = (v: number): string => (Number.isFinite(v) ? '' + v : 'null');

/** One cached JSON part and the values it was built from. */
interface Part {
  text: string;
  values: unknown[];
}

function same(part: Part, values: readonly unknown[]): boolean {
  const old = part.values;
  for (let i = 0; i < values.length; i++) if (old[i] !== values[i]) return false;
  return true;
}

export class StatsText {
  private readonly head: Part = { text: '', values: [] };
  private readonly tail: Part = { text: '', values: [] };
  // Scratch arrays for the comparison (no allocation per reply).
  private readonly headNow: unknown[] = new Array<unknown>(9);
  private readonly tailNow: unknown[] = new Array<unknown>(10);

  /** The reply's JSON text (the same as JSON.stringify(r)). */
  text(r: GlobalStatsReply): string {
    const h = this.headNow;
    h[0] = r.total_memories;
    h[1] = r.memory_count;
    h[2] = r.namespaces;
    h[3] = r.dims;
    h[4] = r.model;
    h[5] = r.device;
    h[6] = r.storage_bytes;
    h[7] = r.storage_path;
    h[8] = r.connections;
    if (!same(this.head, h)) {
      this.head.values = h.slice();
      this.head.text =
        `{"total_memories":${num(r.total_memories)},"memory_count":${num(r.memory_count)},"namespaces":${num(r.namespaces)},` +
        `"dims":${num(r.dims)},"model":${JSON.stringify(r.model)},"device":${JSON.stringify(r.device)},` +
        `"storage_bytes":${num(r.storage_bytes)},"storage_path":${JSON.stringify(r.storage_path)},"connections":${num(r.connections)},"uptime_s":`;
    }
    const plans = r.plans!;
    const t = this.tailNow;
    t[0] = r.fsync;
    t[1] = r.total_associations;
    t[2] = r.fsyncs;
    t[3] = r.last_seq;
    t[4] = r.isa;
    t[5] = r.live_bytes;
    t[6] = r.garbage_bytes;
    // The handler keeps one summary object per compaction: identity says whether it changed.
    t[7] = r.last_compaction;
    t[8] = plans.exact;
    t[9] = plans.graph;
    if (!same(this.tail, t)) {
      this.tail.values = t.slice();
      this.tail.text =
        `,"fsync":${JSON.stringify(r.fsync)},"total_associations":${num(r.total_associations)},"fsyncs":${num(r.fsyncs)},` +
        `"last_seq":${num(r.last_seq)},"isa":${JSON.stringify(r.isa)},"live_bytes":${num(r.live_bytes)},"garbage_bytes":${num(r.garbage_bytes)},` +
        `"last_compaction":${JSON.stringify(r.last_compaction)},"plans":{"exact":${num(plans.exact)},"graph":${num(plans.graph)}}}`;
    }
    return this.head.text + num(r.uptime_s) + ',"queries_per_second":' + num(r.queries_per_second) + ',"avg_latency_ms":' + num(r.avg_latency_ms) + this.tail.text;
  }
}

/** A JSON_TEXT function (protocol/codec.ts) for global `stats` replies, with its own cache. */
export function statsJsonText(): (this: GlobalStatsReply) => string {
  const cache = new StatsText();
  return function (this: GlobalStatsReply): string {
    return cache.text(this);
  };
}
