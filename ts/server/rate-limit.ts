/** A token bucket: `ratePerSecond` refill, `burst` capacity, lazy refill on use. */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private readonly perMs: number;

  constructor(
    readonly ratePerSecond: number,
    readonly burst: number,
    now = performance.now(),
  ) {
    this.tokens = burst;
    this.last = now;
    this.perMs = ratePerSecond / 1000;
  }

  /**
   * Takes `n` tokens. Returns 0 when granted, else the ms after which `n` tokens
   * will be available (nothing is taken then).
   */
  take(n = 1, now = performance.now()): number {
    if (now > this.last) {
      this.tokens = Math.min(this.burst, this.tokens + (now - this.last) * this.perMs);
      this.last = now;
    }
    if (this.tokens >= n) {
      this.tokens -= n;
      return 0;
    }
    if (this.perMs <= 0) return Number.POSITIVE_INFINITY;
    return Math.max(1, Math.ceil((Math.min(n, this.burst) - this.tokens) / this.perMs));
  }
}
