/**
 * InProcessComponent: a memory or inference server running in this process
 * (library use, `createServers()`), with the same status shape as a forked child.
 * pid, CPU and memory are this process's (shared by everything in it).
 */
import type { MemoryServer } from '../server/memory.js';
import type { InferenceServer } from '../server/inference.js';
import { ComponentLifecycle } from './component-base.js';
import { inferenceSnapshot, memorySnapshot } from './instrument.js';
import type { ComponentName, ComponentStatus, ServerSnapshot } from './types.js';
import type { CompactionSummary } from '../protocol/control.js';

type AnyServer = MemoryServer | InferenceServer;

export interface InProcessComponentOptions<S extends AnyServer> {
  name: ComponentName;
  displayName?: string;
  /** Creates and starts a new server (used by start / restart). */
  create?: () => Promise<S>;
  /** An already running server to adopt. */
  server?: S | null;
}

export class InProcessComponent<S extends AnyServer = AnyServer> extends ComponentLifecycle {
  readonly name: ComponentName;
  private server: S | null;
  private readonly create: (() => Promise<S>) | undefined;
  private readonly displayName: string;
  private error: string | null = null;
  private runningSince: number;
  private prevCpu: { at: number; us: number } | null = null;
  private cpuPercent: number | null = null;

  constructor(options: InProcessComponentOptions<S>) {
    super(options.server ? 'running' : 'stopped');
    this.name = options.name;
    this.server = options.server ?? null;
    this.create = options.create;
    this.displayName = options.displayName ?? (options.name === 'memory' ? 'Memory Server' : 'Inference Server');
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
      ...(snap?.reembed ? { reembed: snap.reembed } : {}),
      ...(snap?.cluster ? { cluster: snap.cluster } : {}),
    };
  }

  async compact(): Promise<CompactionSummary> {
    const s = this.server;
    if (this.name !== 'memory' || !s || this._state !== 'running') throw new Error(`${this.name} is not a running memory server`);
    return (s as MemoryServer).compact();
  }

  protected async doStart(): Promise<void> {
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

  protected async doStop(): Promise<void> {
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
