/**
 * Reconnect policy (docs/client.md "Connection states and reconnect"): which close
 * codes end the connection for good, the delay before each attempt (fixed or
 * exponential, capped, with jitter), and a small scheduler that counts attempts.
 */

export interface ReconnectOptions {
  enabled: boolean;
  /** Delay before the first attempt. */
  initialDelayMs: number;
  /** Each further delay is the previous one × factor (1 = fixed interval). */
  factor: number;
  maxDelayMs: number;
  /** Attempts after a drop (or after a failed first connect) before giving up. */
  maxAttempts: number;
  /** ± fraction of the delay drawn at random (0.1 = ±10 %), so clients do not reconnect in lockstep. */
  jitter: number;
}

/** Close codes after which the client never reconnects: 1000 normal, 1008 policy (auth/abuse). */
export const FINAL_CLOSE_CODES: ReadonlySet<number> = new Set([1000, 1008]);

export function shouldReconnect(code: number): boolean {
  return !FINAL_CLOSE_CODES.has(code);
}

/** The delay before attempt `attempt` (1-based), jitter included. */
export function reconnectDelay(attempt: number, o: ReconnectOptions, random: () => number = Math.random): number {
  const base = Math.min(o.maxDelayMs, o.initialDelayMs * Math.pow(Math.max(1, o.factor), Math.max(0, attempt - 1)));
  const jitter = Math.max(0, Math.min(1, o.jitter));
  return Math.max(0, Math.round(base * (1 + jitter * (2 * random() - 1))));
}

export interface ScheduledAttempt {
  attempt: number;
  delayMs: number;
}

/** Counts attempts and runs one timer at a time. `reset()` after a successful open. */
export class ReconnectScheduler {
  private attempts = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly options: ReconnectOptions,
    private readonly random: () => number = Math.random,
  ) {}

  get attempt(): number {
    return this.attempts;
  }

  get pending(): boolean {
    return this.timer !== null;
  }

  /** Schedules the next attempt, or returns null when reconnecting is off or the attempts are used up. */
  schedule(run: () => void): ScheduledAttempt | null {
    if (!this.options.enabled || this.attempts >= this.options.maxAttempts) return null;
    this.cancel();
    this.attempts++;
    const delayMs = reconnectDelay(this.attempts, this.options, this.random);
    this.timer = setTimeout(() => {
      this.timer = null;
      run();
    }, delayMs);
    return { attempt: this.attempts, delayMs };
  }

  cancel(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  reset(): void {
    this.cancel();
    this.attempts = 0;
  }
}
