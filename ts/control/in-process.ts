/**
 * InProcessComponent: a memory or inference server running in this process
 * (library use, `createServers()`), with the same status shape as a forked child.
 * pid, CPU and memory are this process's (shared by everything in it).
 */
import type { MemoryServer } from '../server/memory.js';
import type { InferenceServer } from '../server/inference.js';
import { inferenceSnapshot, memorySnapshot } from './instrument.js';
import type { ComponentHandle, ComponentName, ComponentState, ComponentStatus, ServerSnapshot } from './types.js';

type AnyServer = MemoryServer | InferenceServer;

export interface InProcessComponentOptions<S extends AnyServer> {
  name: ComponentName;
  displayName?: string;
  /** Creates and starts a new server (used by start / restart). */
  create?: () => Promise<S>;
  /** An already running server to adopt. */
  server?: S | null;
}

export class InProcessComponent<S extends AnyServer = AnyServer> implements ComponentHandle {
  readonly name: ComponentName;
  private server: S | null;
  private readonly create: (() => Promise<S>) | undefined;
  private readonly displayName: string;
  private _state: ComponentState;
  private error: string | null = null;
  private runningSince: number;
  private lastUpdated = new Date().toISOString();
  private restarts = 0;
  private prevCpu: { at: number; us: number } | null = null;
  private cpuPercent: number | null = null;
  private readonly listeners = new Set<(s: ComponentStatus) => void>();
  private chain: Promise<void> = Promise.resolve();

  constructor(options: InProcessComponentOptions<S>) {
    this.name = options.name;
    this.server = options.server ?? null;
    this.create = options.create;
    this.displayName = options.displayName ?? (options.name === 'memory' ? 'Memory Server' : 'Inference Server');
    this._state = this.server ? 'running' : 'stopped';
    this.runningSince = this.server ? Date.now() : 0;
  }

  /** The live server, if running. */
  get current(): S | null {
    return this.server;
  }

  snapshot(): ServerSnapshot | null {
    const s = this.server;
    if (!s || this._state !== 'running') return null;
    const snap = this.name === 'memory' ? memorySnapshot(s as MemoryServer) : inferenceSnapshot(s as InferenceServer);
    const us = snap.cpuUserUs + snap.cpuSystemUs;
    if (this.prevCpu && snap.at - this.prevCpu.at >= 200) {
      this.cpuPercent = Math.round(((us - this.prevCpu.us) / 1000 / (snap.at - this.prevCpu.at)) * 1000) / 10;
      this.prevCpu = { at: snap.at, us };
    } else if (!this.prevCpu) this.prevCpu = { at: snap.at, us };
    return snap;
  }

  status(): ComponentStatus {
    const snap = this.snapshot();
    return {
      name: this.displayName,
      state: this._state,
      pid: this._state === 'running' || this._state === 'stopping' || this._state === 'starting' ? process.pid : null,
      uptime: this._state === 'running' ? Math.round((Date.now() - this.runningSince) / 100) / 10 : null,
      cpu_percent: snap ? this.cpuPercent : null,
      memory_mb: snap ? Math.round((snap.rssBytes / (1024 * 1024)) * 10) / 10 : null,
      error: this.error,
      last_updated: this.lastUpdated,
      port: snap ? snap.port : null,
      connections: snap ? snap.connections : null,
      restarts: this.restarts,
    };
  }

  onChange(listener: (s: ComponentStatus) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private setState(state: ComponentState): void {
    this._state = state;
    this.lastUpdated = new Date().toISOString();
    const s = this.status();
    for (const l of this.listeners) {
      try {
        l(s);
      } catch {
        /* ignore */
      }
    }
  }

  private enqueue(op: () => Promise<void>): Promise<void> {
    const p = this.chain.then(op);
    this.chain = p.catch(() => undefined);
    return p;
  }

  start(): Promise<void> {
    return this.enqueue(() => this.doStart());
  }

  stop(): Promise<void> {
    return this.enqueue(() => this.doStop());
  }

  restart(): Promise<void> {
    return this.enqueue(async () => {
      await this.doStop();
      this.restarts++;
      await this.doStart();
    });
  }

  private async doStart(): Promise<void> {
    if (this._state === 'running') return;
    if (!this.create) throw new Error(`${this.name}: no factory to start it in-process`);
    this.setState('starting');
    try {
      this.server = await this.create();
    } catch (err) {
      this.error = err instanceof Error ? err.message : String(err);
      this.setState('error');
      throw err;
    }
    this.error = null;
    this.runningSince = Date.now();
    this.prevCpu = null;
    this.cpuPercent = null;
    this.setState('running');
  }

  private async doStop(): Promise<void> {
    const s = this.server;
    if (!s) {
      if (this._state !== 'stopped') this.setState('stopped');
      return;
    }
    this.setState('stopping');
    try {
      await s.close();
    } finally {
      this.server = null;
      this.setState('stopped');
    }
  }
}
