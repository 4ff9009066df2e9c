/**
 * ChildComponent: runs the memory or inference server as a forked child process
 * (ts/control/child.ts) and keeps its status: real pid, CPU % of one core (from
 * the child's process.cpuUsage() deltas), RSS, uptime, port, connections.
 *
 * States: stopped → starting → running → stopping → stopped; a child that exits
 * unasked goes to `error` (reason: exit code / signal / stderr tail) and is
 * restarted after a backoff of 1 s doubling to 30 s (reset once a child has run
 * `stableAfterMs`). Stop = SIGTERM, then SIGKILL after `killTimeoutMs`.
 *
 * A running child is pinged over IPC every `pingIntervalMs`; after
 * `unresponsiveAfterMissed` unanswered pings in a row (a stopped or hung process: its
 * clients time out, yet it has not exited) it is `unresponsive`; an answer makes it
 * `running` again, and one still unresponsive after `unresponsiveRestartMs` is killed
 * (SIGKILL) and restarted like a crashed one.
 */
import type { EmbedderOptions } from '../embedder.js';
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ComponentLifecycle } from './component-base.js';
import type { CompactionSummary } from '../protocol/control.js';
import {
  CONTROL_DEFAULTS,
  type ChildStartMessage,
  type ChildToParent,
  type ComponentName,
  type ParentToChild,
  type ComponentState,
  type ComponentStatus,
  type ServerSnapshot,
} from './types.js';

export interface ChildComponentOptions {
  name: ComponentName;
  /** Display name (default "Memory Server" / "Inference Server"). */
  displayName?: string;
  /** Server options sent down over IPC (structured clone: no functions, no logger). */
  serverOptions?: Record<string, unknown>;
  embedder?: Omit<EmbedderOptions, 'log'>;
  logLevel?: string;
  /** Path of the compiled child entry (default: child.js next to this module). */
  childPath?: string;
  /** Extra node flags for the child. */
  execArgv?: string[];
  env?: NodeJS.ProcessEnv;
  /** Copy the child's stdout/stderr to ours (the CLI wants this); the stderr tail is kept either way. */
  forwardOutput?: boolean;
  metricsIntervalMs?: number;
  restartInitialMs?: number;
  restartMaxMs?: number;
  stableAfterMs?: number;
  killTimeoutMs?: number;
  startTimeoutMs?: number;
  /** Restart after a crash (default true). */
  autoRestart?: boolean;
  /** IPC ping period of a running child. */
  pingIntervalMs?: number;
  /** Unanswered pings in a row before the child is `unresponsive`. */
  unresponsiveAfterMissed?: number;
  /** An `unresponsive` child is killed and restarted after this long. */
  unresponsiveRestartMs?: number;
}

const DISPLAY: Record<ComponentName, string> = { memory: 'Memory Server', inference: 'Inference Server' };

/** child.js next to this module; from the TypeScript sources (tests), the compiled one in dist/. */
export const DEFAULT_CHILD_PATH = ((): string => {
  const here = fileURLToPath(new URL('./child.js', import.meta.url));
  return existsSync(here) ? here : fileURLToPath(new URL('../../dist/control/child.js', import.meta.url));
})();

interface Waiter {
  resolve(): void;
  reject(err: Error): void;
}

export class ChildComponent extends ComponentLifecycle {
  readonly name: ComponentName;
  private readonly opts: Required<
    Pick<
      ChildComponentOptions,
      | 'metricsIntervalMs'
      | 'restartInitialMs'
      | 'restartMaxMs'
      | 'stableAfterMs'
      | 'killTimeoutMs'
      | 'startTimeoutMs'
      | 'autoRestart'
      | 'pingIntervalMs'
      | 'unresponsiveAfterMissed'
      | 'unresponsiveRestartMs'
    >
  > &
    ChildComponentOptions;
  private child: ChildProcess | null = null;
  private pid: number | null = null;
  private port: number | null = null;
  private error: string | null = null;
  private runningSince = 0;
  private backoffMs: number;
  private restartTimer: NodeJS.Timeout | null = null;
  private startTimer: NodeJS.Timeout | null = null;
  private stderrTail = '';
  private fatalMessage: string | null = null;
  private last: ServerSnapshot | null = null;
  private cpuPercent: number | null = null;
  private startWaiters: Waiter[] = [];
  /** `compact` requests sent to the child, by id, until it answers or exits. */
  private compactions = new Map<number, { resolve(c: CompactionSummary): void; reject(err: Error): void }>();
  private nextCompactId = 1;
  private exitWaiters: Array<() => void> = [];
  private pingTimer: NodeJS.Timeout | null = null;
  private unresponsiveTimer: NodeJS.Timeout | null = null;
  private pingsSent = 0;
  private lastPong = 0;
  private missedPings = 0;

  constructor(options: ChildComponentOptions) {
    super('stopped');
    this.name = options.name;
    this.opts = {
      metricsIntervalMs: CONTROL_DEFAULTS.metricsIntervalMs,
      restartInitialMs: CONTROL_DEFAULTS.restartInitialMs,
      restartMaxMs: CONTROL_DEFAULTS.restartMaxMs,
      stableAfterMs: CONTROL_DEFAULTS.stableAfterMs,
      killTimeoutMs: CONTROL_DEFAULTS.killTimeoutMs,
      startTimeoutMs: CONTROL_DEFAULTS.startTimeoutMs,
      autoRestart: true,
      pingIntervalMs: CONTROL_DEFAULTS.pingIntervalMs,
      unresponsiveAfterMissed: CONTROL_DEFAULTS.unresponsiveAfterMissed,
      unresponsiveRestartMs: CONTROL_DEFAULTS.unresponsiveRestartMs,
      ...options,
    };
    this.backoffMs = this.opts.restartInitialMs;
  }

  get state(): ComponentState {
    return this._state;
  }

  status(): ComponentStatus {
    const running = this._state === 'running';
    const snap = running ? this.last : null;
    return {
      name: this.opts.displayName ?? DISPLAY[this.name],
      state: this._state,
      pid: this.pid,
      uptime: running ? Math.round((Date.now() - this.runningSince) / 100) / 10 : null,
      cpu_percent: snap ? this.cpuPercent : null,
      memory_mb: snap ? Math.round((snap.rssBytes / (1024 * 1024)) * 10) / 10 : null,
      error: this.error,
      last_updated: this.lastUpdated,
      port: this.port,
      connections: snap ? snap.connections : null,
      restarts: this.restarts,
      ...(snap?.reembed ? { reembed: snap.reembed } : {}),
      ...(snap?.cluster ? { cluster: snap.cluster } : {}),
    };
  }

  snapshot(): ServerSnapshot | null {
    return this._state === 'running' ? this.last : null;
  }

  /** Asks the memory child to compact its store's log; resolves with the compaction. */
  compact(): Promise<CompactionSummary> {
    const child = this.child;
    if (this.name !== 'memory' || !child || this._state !== 'running') {
      return Promise.reject(new Error(`${this.name} is not a running memory server`));
    }
    const id = this.nextCompactId++;
    return new Promise<CompactionSummary>((resolve, reject) => {
      this.compactions.set(id, { resolve, reject });
      child.send({ type: 'compact', id } satisfies ParentToChild);
    });
  }

  protected doStart(): Promise<void> {
    if (this.restartTimer) {
      clearTimeout(this.restartTimer);
      this.restartTimer = null;
    }
    // An unresponsive child is still started: it recovers, or is killed and restarted.
    if (this._state === 'running' || this._state === 'unresponsive') return Promise.resolve();
    if (this.child && this._state === 'starting') return this.waitStarted();
    this.spawn();
    return this.waitStarted();
  }

  private waitStarted(): Promise<void> {
    return new Promise<void>((resolve, reject) => this.startWaiters.push({ resolve, reject }));
  }

  private settleStart(err: Error | null): void {
    const waiters = this.startWaiters;
    this.startWaiters = [];
    for (const w of waiters) {
      if (err) w.reject(err);
      else w.resolve();
    }
  }

  private spawn(): void {
    this.stderrTail = '';
    this.fatalMessage = null;
    this.last = null;
    this.cpuPercent = null;
    this.port = null;
    const child = fork(this.opts.childPath ?? DEFAULT_CHILD_PATH, [], {
      serialization: 'advanced',
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      execArgv: this.opts.execArgv ?? [],
      env: this.opts.env ?? process.env,
    });
    this.child = child;
    this.pid = child.pid ?? null;
    child.stdout?.on('data', (chunk: Buffer) => {
      if (this.opts.forwardOutput) process.stdout.write(chunk);
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      if (this.opts.forwardOutput) process.stderr.write(chunk);
      const max = CONTROL_DEFAULTS.stderrTailBytes;
      this.stderrTail = (this.stderrTail + chunk.toString('utf8')).slice(-max);
    });
    child.on('message', (m: unknown) => this.onMessage(child, m as ChildToParent));
    child.on('error', (err) => {
      // spawn failure or IPC failure; 'exit' may or may not follow
      this.stderrTail = (this.stderrTail + `\n${err.message}`).slice(-CONTROL_DEFAULTS.stderrTailBytes);
      if (child.exitCode === null && child.signalCode === null && child.pid === undefined) this.onExit(child, null, null);
    });
    child.on('exit', (code, signal) => this.onExit(child, code, signal));
    const start: ChildStartMessage = {
      type: 'start',
      component: this.name,
      options: this.opts.serverOptions ?? {},
      metricsIntervalMs: this.opts.metricsIntervalMs,
    };
    if (this.opts.embedder) start.embedder = this.opts.embedder;
    if (this.opts.logLevel) start.logLevel = this.opts.logLevel;
    child.send(start);
    this.startTimer = setTimeout(() => {
      if (this.child === child && this._state === 'starting') {
        this.fatalMessage = `did not report ready within ${this.opts.startTimeoutMs} ms`;
        child.kill('SIGKILL');
      }
    }, this.opts.startTimeoutMs);
    this.setState('starting');
  }

  private onMessage(child: ChildProcess, msg: ChildToParent): void {
    if (child !== this.child) return;
    switch (msg.type) {
      case 'ready':
        if (this.startTimer) clearTimeout(this.startTimer);
        this.startTimer = null;
        this.port = msg.port;
        this.pid = msg.pid;
        this.error = null;
        this.runningSince = Date.now();
        this.setState('running');
        this.settleStart(null);
        this.startPinging(child);
        break;
      case 'pong':
        this.lastPong = Math.max(this.lastPong, msg.n);
        this.missedPings = 0;
        if (this._state === 'unresponsive') {
          if (this.unresponsiveTimer) clearTimeout(this.unresponsiveTimer);
          this.unresponsiveTimer = null;
          this.error = null;
          this.setState('running');
        }
        break;
      case 'metrics': {
        const prev = this.last;
        const s = msg.snapshot;
        if (prev && s.at > prev.at) {
          const cpuUs = s.cpuUserUs + s.cpuSystemUs - (prev.cpuUserUs + prev.cpuSystemUs);
          this.cpuPercent = Math.round((cpuUs / 1000 / (s.at - prev.at)) * 1000) / 10;
        }
        this.last = s;
        if (this.runningSince && Date.now() - this.runningSince >= this.opts.stableAfterMs) this.backoffMs = this.opts.restartInitialMs;
        break;
      }
      case 'fatal':
        this.fatalMessage = msg.message;
        break;
      case 'stopping':
        break;
      case 'compacted': {
        const p = this.compactions.get(msg.id);
        this.compactions.delete(msg.id);
        if (msg.compaction) p?.resolve(msg.compaction);
        else p?.reject(new Error(msg.error ?? 'compaction failed'));
        break;
      }
    }
  }

  /** Pings `child` every pingIntervalMs while it is current; counts the pings it leaves unanswered. */
  private startPinging(child: ChildProcess): void {
    this.stopPinging();
    this.pingsSent = 0;
    this.lastPong = 0;
    this.missedPings = 0;
    this.pingTimer = setInterval(() => {
      if (child !== this.child || (this._state !== 'running' && this._state !== 'unresponsive')) return;
      if (this.lastPong < this.pingsSent) this.missedPings++;
      if (this.missedPings >= this.opts.unresponsiveAfterMissed && this._state === 'running') this.markUnresponsive(child);
      try {
        child.send({ type: 'ping', n: ++this.pingsSent }, () => undefined);
      } catch {
        /* channel closed: 'exit' follows */
      }
    }, this.opts.pingIntervalMs);
    this.pingTimer.unref();
  }

  private stopPinging(): void {
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = null;
    if (this.unresponsiveTimer) clearTimeout(this.unresponsiveTimer);
    this.unresponsiveTimer = null;
  }

  private markUnresponsive(child: ChildProcess): void {
    const silentMs = this.missedPings * this.opts.pingIntervalMs;
    this.error = `no answer to ${this.missedPings} pings (~${silentMs} ms)`;
    this.setState('unresponsive');
    this.unresponsiveTimer = setTimeout(() => {
      this.unresponsiveTimer = null;
      if (child !== this.child || this._state !== 'unresponsive') return;
      // SIGTERM would wait for a stopped or blocked process; the exit then restarts it.
      this.fatalMessage = `unresponsive for ${this.opts.unresponsiveRestartMs} ms, killed`;
      child.kill('SIGKILL');
    }, this.opts.unresponsiveRestartMs);
    this.unresponsiveTimer.unref();
  }

  private onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (child !== this.child) return;
    this.child = null;
    this.stopPinging();
    for (const p of this.compactions.values()) p.reject(new Error(`${this.name} exited before its compaction finished`));
    this.compactions.clear();
    if (this.startTimer) clearTimeout(this.startTimer);
    this.startTimer = null;
    const ranMs = this.runningSince ? Date.now() - this.runningSince : 0;
    this.runningSince = 0;
    this.last = null;
    this.cpuPercent = null;
    const waiters = this.exitWaiters;
    this.exitWaiters = [];
    if (this._state === 'stopping') {
      this.pid = null;
      this.port = null;
      this.setState('stopped');
      this.settleStart(new Error(`${this.name} was stopped while starting`));
      for (const w of waiters) w();
      return;
    }
    // Unasked exit: a crash (or a failed start).
    const how = signal ? `killed by ${signal}` : `exited with code ${code}`;
    const tail = this.stderrTail.trim().split('\n').slice(-3).join(' | ');
    const reason = this.fatalMessage ?? tail;
    this.error = `${how}${reason ? `: ${reason}` : ''}`;
    this.pid = null;
    this.port = null;
    this.setState('error');
    this.settleStart(new Error(`${this.name} failed to start: ${this.error}`));
    for (const w of waiters) w();
    if (this.opts.autoRestart) {
      if (ranMs >= this.opts.stableAfterMs) this.backoffMs = this.opts.restartInitialMs;
      const delay = this.backoffMs;
      this.backoffMs = Math.min(this.backoffMs * 2, this.opts.restartMaxMs);
      this.restartTimer = setTimeout(() => {
        this.restartTimer = null;
        if (this._state !== 'error') return;
        this.restarts++;
        this.enqueue(() => this.doStart()).catch(() => undefined); // a failed start schedules the next try itself
      }, delay);
      this.restartTimer.unref?.();
    }
  }

  protected doStop(): Promise<void> {
    if (this.restartTimer) {
      clearTimeout(this.restartTimer);
      this.restartTimer = null;
    }
    this.stopPinging();
    const child = this.child;
    if (!child) {
      if (this._state !== 'stopped') {
        this.pid = null;
        this.port = null;
        this.setState('stopped');
      }
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      this.exitWaiters.push(resolve);
      if (this._state !== 'stopping') this.setState('stopping');
      child.kill('SIGTERM');
      const killTimer = setTimeout(() => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }, this.opts.killTimeoutMs);
      child.once('exit', () => clearTimeout(killTimer));
    });
  }

  /** Stops the child and cancels any pending restart (for shutdown). */
  async close(): Promise<void> {
    await this.stop();
  }
}
