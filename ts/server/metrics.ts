/** Counters the servers expose (stats command, control center, Prometheus). */
export interface TypeMetrics {
  count: number;
  errors: number;
  latencyMsSum: number;
}

export interface MetricsSnapshot {
  startedAt: number;
  uptimeS: number;
  connections: number;
  connectionsOpened: number;
  connectionsRejected: number;
  messages: number;
  bytesIn: number;
  errors: number;
  internalErrors: number;
  rateLimited: number;
  droppedEvents: number;
  /** Connections closed (1013) because their send buffer passed maxBufferedBytes. */
  slowConsumersClosed: number;
  /** Replies completed over the last ~10 s, per second. */
  queriesPerSecond: number;
  /** Mean reply latency (receipt → reply queued), ms, over all replies. */
  avgLatencyMs: number;
  byType: Record<string, TypeMetrics>;
}

const WINDOW_S = 10;

export class ServerMetrics {
  readonly startedAt = Date.now();
  connections = 0;
  connectionsOpened = 0;
  connectionsRejected = 0;
  messages = 0;
  bytesIn = 0;
  errors = 0;
  internalErrors = 0;
  rateLimited = 0;
  droppedEvents = 0;
  slowConsumersClosed = 0;
  replies = 0;
  latencyMsSum = 0;
  readonly byType = new Map<string, TypeMetrics>();
  /** Upper bounds (ms) of the latency histogram, once enabled (see enableLatencyHistograms). */
  private latencyBounds: readonly number[] | null = null;
  private readonly histograms = new Map<string, number[]>();
  // Per-second ring of completed replies for a cheap QPS figure.
  private readonly ring = new Uint32Array(WINDOW_S);
  private ringSecond = Math.floor(Date.now() / 1000);

  private advance(nowS: number): void {
    if (nowS === this.ringSecond) return;
    const steps = Math.min(WINDOW_S, nowS - this.ringSecond);
    for (let i = 1; i <= steps; i++) this.ring[(this.ringSecond + i) % WINDOW_S] = 0;
    this.ringSecond = nowS;
  }

  /** Records one answered request. `type` is undefined for undecodable frames. */
  recordReply(type: string | undefined, latencyMs: number, isError: boolean): void {
    this.replies++;
    this.latencyMsSum += latencyMs;
    if (isError) this.errors++;
    const nowS = Math.floor(Date.now() / 1000);
    this.advance(nowS);
    this.ring[nowS % WINDOW_S]!++;
    if (type === undefined) return;
    let t = this.byType.get(type);
    if (!t) {
      // Bound the table: unknown types are not keyed (clients could invent any number).
      if (this.byType.size >= 256) return;
      t = { count: 0, errors: 0, latencyMsSum: 0 };
      this.byType.set(type, t);
    }
    t.count++;
    t.latencyMsSum += latencyMs;
    if (isError) t.errors++;
    if (this.latencyBounds !== null) this.countLatency(type, latencyMs, this.latencyBounds);
  }

  /**
   * From now on, also counts each reply's latency per type into buckets with these upper
   * bounds (ms, ascending) plus one overflow bucket (what Prometheus histograms need; sums
   * alone are all the `stats` command needs, so this is off until someone asks). Only the
   * first call's bounds count.
   */
  enableLatencyHistograms(boundsMs: readonly number[]): void {
    this.latencyBounds ??= [...boundsMs];
  }

  /** Non-cumulative counts per bound plus the overflow slot, for one type (zeros when it has none). */
  latencyHistogram(type: string): number[] {
    const h = this.histograms.get(type);
    return h ? [...h] : new Array<number>((this.latencyBounds?.length ?? 0) + 1).fill(0);
  }

  private countLatency(type: string, latencyMs: number, bounds: readonly number[]): void {
    let h = this.histograms.get(type);
    if (!h) {
      h = new Array<number>(bounds.length + 1).fill(0);
      this.histograms.set(type, h);
    }
    let i = 0;
    while (i < bounds.length && latencyMs > bounds[i]!) i++;
    h[i]!++;
  }

  queriesPerSecond(): number {
    const nowS = Math.floor(Date.now() / 1000);
    this.advance(nowS);
    let sum = 0;
    // Exclude the current, partial second.
    for (let i = 1; i < WINDOW_S; i++) sum += this.ring[(nowS - i + WINDOW_S * 2) % WINDOW_S]!;
    return sum / (WINDOW_S - 1);
  }

  snapshot(): MetricsSnapshot {
    const byType: Record<string, TypeMetrics> = {};
    for (const [k, v] of this.byType) byType[k] = { ...v };
    return {
      startedAt: this.startedAt,
      uptimeS: (Date.now() - this.startedAt) / 1000,
      connections: this.connections,
      connectionsOpened: this.connectionsOpened,
      connectionsRejected: this.connectionsRejected,
      messages: this.messages,
      bytesIn: this.bytesIn,
      errors: this.errors,
      internalErrors: this.internalErrors,
      rateLimited: this.rateLimited,
      droppedEvents: this.droppedEvents,
      slowConsumersClosed: this.slowConsumersClosed,
      queriesPerSecond: this.queriesPerSecond(),
      avgLatencyMs: this.replies === 0 ? 0 : this.latencyMsSum / this.replies,
      byType,
    };
  }
}
