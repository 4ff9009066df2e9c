/**
 * The rate limiter: two token buckets per connection, one on messages and one on bytes,
 * refilled lazily on use. A frame takes one message token and its size in byte tokens
 * (at most a full byte bucket, so a frame larger than the burst can still pass), from both
 * buckets or from neither.
 *
 * The buckets are three numbers in the connection's own state (`RateBudget`), not objects:
 * at tens of thousands of idle connections two bucket objects each cost more memory than
 * the three numbers, and the message path reads them without an extra hop.
 */

export interface RateLimitOptions {
  messagesPerSecond: number;
  messagesBurst: number;
  bytesPerSecond: number;
  bytesBurst: number;
  /** Consecutive rate-limited frames after which the connection is closed with 1008. */
  closeAfterRejected: number;
}

/** A connection's two buckets: tokens left and when they were last refilled (performance.now() ms). */
export interface RateBudget {
  msgTokens: number;
  byteTokens: number;
  tokensAt: number;
}

/** Milliseconds until `need` tokens are there at `perSecond` (at least 1; infinite when the bucket never refills). */
function waitMs(have: number, need: number, perSecond: number): number {
  return perSecond <= 0 ? Number.POSITIVE_INFINITY : Math.max(1, Math.ceil(((need - have) * 1000) / perSecond));
}

/**
 * Takes the budget of one frame of `size` bytes at `now`: 0 when it is within budget
 * (tokens taken), else the ms until it would be (nothing taken).
 */
export function takeBudget(b: RateBudget, limits: RateLimitOptions, size: number, now: number): number {
  const dt = now - b.tokensAt;
  if (dt > 0) {
    b.msgTokens = Math.min(limits.messagesBurst, b.msgTokens + (dt * limits.messagesPerSecond) / 1000);
    b.byteTokens = Math.min(limits.bytesBurst, b.byteTokens + (dt * limits.bytesPerSecond) / 1000);
    b.tokensAt = now;
  }
  if (b.msgTokens < 1) return waitMs(b.msgTokens, 1, limits.messagesPerSecond);
  const need = Math.min(size, limits.bytesBurst);
  if (b.byteTokens < need) return waitMs(b.byteTokens, need, limits.bytesPerSecond);
  b.msgTokens -= 1;
  b.byteTokens -= need;
  return 0;
}
