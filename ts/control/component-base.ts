/**
 * What every supervised component shares, forked or in-process: one queue of transitions
 * (start/stop/restart settle in the order they were asked), the state with its last change
 * time, the restart count, and change listeners.
 */
import type { ComponentHandle, ComponentName, ComponentState, ComponentStatus, ServerSnapshot } from './types.js';

export abstract class ComponentLifecycle implements ComponentHandle {
  abstract readonly name: ComponentName;
  protected _state: ComponentState;
  protected lastUpdated = new Date().toISOString();
  protected restarts = 0;
  private readonly listeners = new Set<(s: ComponentStatus) => void>();
  /** Serializes start/stop/restart so REST calls settle in order. */
  private chain: Promise<void> = Promise.resolve();

  constructor(initial: ComponentState) {
    this._state = initial;
  }

  abstract status(): ComponentStatus;
  abstract snapshot(): ServerSnapshot | null;
  protected abstract doStart(): Promise<void>;
  protected abstract doStop(): Promise<void>;

  onChange(listener: (s: ComponentStatus) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
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

  protected enqueue(op: () => Promise<void>): Promise<void> {
    const p = this.chain.then(op);
    this.chain = p.catch(() => undefined);
    return p;
  }

  protected setState(state: ComponentState): void {
    this._state = state;
    this.lastUpdated = new Date().toISOString();
    const s = this.status();
    for (const l of this.listeners) {
      try {
        l(s);
      } catch {
        /* a listener's failure is not the component's */
      }
    }
  }
}
