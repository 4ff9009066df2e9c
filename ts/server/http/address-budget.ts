/**
 * The rate limit of HTTP routes that serve a WebSocket command: the same token buckets and
 * limits as a WebSocket connection (rate-limit.ts, `rateLimit` / `--rate-limit-*`), kept
 * per client address, since an HTTP client has no connection of ours to hang them on (it
 * may open a new one per request). A refused request is answered 429 by the caller; there
 * is no connection to close, so `closeAfterRejected` does not apply.
 *
 * The table is bounded: past `maxAddresses` the oldest-created entry goes. An address that
 * comes back gets full buckets, as a new connection does.
 */
import { takeBudget, type RateBudget, type RateLimitOptions } from '../rate-limit.js';

/** Addresses whose buckets are kept (a few hundred bytes each). */
export const MAX_RATE_LIMITED_ADDRESSES = 10_000;

export class AddressBudgets {
  private readonly budgets = new Map<string, RateBudget>();

  constructor(
    private readonly limits: RateLimitOptions,
    private readonly maxAddresses = MAX_RATE_LIMITED_ADDRESSES,
  ) {}

  /** Takes one request of `bytes` from `address`'s buckets: 0 when within budget, else the ms until it would be. */
  take(address: string, bytes: number, now: number = performance.now()): number {
    let b = this.budgets.get(address);
    if (b === undefined) {
      if (this.budgets.size >= this.maxAddresses) {
        const oldest = this.budgets.keys().next().value;
        if (oldest !== undefined) this.budgets.delete(oldest);
      }
      b = { msgTokens: this.limits.messagesBurst, byteTokens: this.limits.bytesBurst, tokensAt: now };
      this.budgets.set(address, b);
    }
    return takeBudget(b, this.limits, bytes, now);
  }

  get size(): number {
    return this.budgets.size;
  }
}
