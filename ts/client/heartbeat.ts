/**
 * Client-side dead-peer detection. Browsers cannot see WebSocket ping frames, so
 * liveness is "any frame received": after `intervalMs` of silence the heartbeat
 * calls `probe` (a cheap request), and if still nothing arrives within
 * `timeoutMs` it calls `onDead` (the connection drops the socket and reconnects).
 */

export interface HeartbeatOptions {
  enabled: boolean;
  intervalMs: number;
  timeoutMs: number;
}

export interface HeartbeatHooks {
  /** Sends something the server answers; optional (a silent probe only waits). */
  probe?: () => void;
  onDead: () => void;
}

export class Heartbeat {
  private timer: ReturnType<typeof setTimeout> | null = null;
  private running = false;

  constructor(
    private readonly options: HeartbeatOptions,
    private readonly hooks: HeartbeatHooks,
  ) {}

  start(): void {
    if (!this.options.enabled) return;
    this.running = true;
    this.arm();
  }

  /** A frame arrived: the peer is alive. */
  touch(): void {
    if (this.running) this.arm();
  }

  stop(): void {
    this.running = false;
    this.clear();
  }

  private clear(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private arm(): void {
    this.clear();
    this.timer = unref(
      setTimeout(() => {
        this.hooks.probe?.();
        this.timer = unref(
          setTimeout(() => {
            this.timer = null;
            this.running = false;
            this.hooks.onDead();
          }, this.options.timeoutMs),
        );
      }, this.options.intervalMs),
    );
  }
}

/** Node timers keep the process alive; a heartbeat alone should not. No-op in browsers. */
function unref<T>(t: T): T {
  (t as { unref?: () => void }).unref?.();
  return t;
}
