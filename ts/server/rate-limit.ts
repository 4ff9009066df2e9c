/**
 * The rate limiter: two token buckets per connection, one on messages and one on bytes,
 * refilled lazily on use. A frame takes one message token and its size in byte tokens
 * (at most a full byte bucket, so a frame larger than the burst can still pass), from both
 * buckets or from neither. The check comes before the frame is decoded: a refused frame
 * costs no parse. Rejections are counted per window (`countRejection`); too many close the
 * connection.
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
  /** Rate-limited frames within `rejectWindowMs` after which the connection is closed with 1008. */
  closeAfterRejected: number;
  /**
   * The window over which rejections are counted. Accepted frames do not reset the count
   * (they used to: a client just over the rate, one rejection per refilled token, was never
   * closed).
   */
  rejectWindowMs: number;
}

/** A connection's two buckets: tokens left and when they were last refilled (performance.now() ms). */
export interface RateBudget {
  msgTokens: number;
  byteTokens: number;
  tokensAt: number;
}

/** A connection's rate-limited frames in the current window. */
export interface RejectionCount {
  /** performance.now() ms at which the current window began. */
  rejectedSince: number;
  rejected: number;
}

/** Counts one rejected frame at `now`; true when the connection has now earned its close (1008). */
export function countRejection(c: RejectionCount, limits: RateLimitOptions, now: number): boolean {
  if (now - c.rejectedSince > limits.rejectWindowMs) {
    c.rejectedSince = now;
    c.rejected = 0;
  }
  return ++c.rejected > limits.closeAfterRejected;
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
