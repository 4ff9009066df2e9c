/**
 * The live connections by id, and publishing to them through uWS pub/sub topics (every
 * socket is subscribed to BROADCAST_TOPIC, for broadcast()).
 */
import { encodeMessage } from '../protocol/index.js';
import type { TemplatedApp, UwsWebSocket } from './uws.js';
import { BROADCAST_TOPIC, stateOf, type Connection, type ConnState } from './ws/connection.js';

export class ConnectionRegistry {
  private readonly byId = new Map<string, UwsWebSocket<ConnState>>();
  /** The uWS app while it can publish (set on listen, cleared on close). */
  app: TemplatedApp | null = null;

  constructor(private readonly compression: boolean) {}

  get size(): number {
    return this.byId.size;
  }

  add(st: ConnState, ws: UwsWebSocket<ConnState>): void {
    this.byId.set(st.id, ws);
    ws.subscribe(BROADCAST_TOPIC);
  }

  delete(id: string): void {
    this.byId.delete(id);
  }

  clear(): void {
    this.byId.clear();
  }

  /** Ids of live connections. */
  ids(): string[] {
    return [...this.byId.keys()];
  }

  socket(id: string): UwsWebSocket<ConnState> | undefined {
    return this.byId.get(id);
  }

  sockets(): IterableIterator<UwsWebSocket<ConnState>> {
    return this.byId.values();
  }

  connection(id: string): Connection | undefined {
    const ws = this.byId.get(id);
    return (ws ? stateOf(ws).conn : null) ?? undefined;
  }

  /**
   * Publishes to a topic via uWS pub/sub (JSON text frame, or binary if `message` is bytes).
   * Slow consumers over maxBufferedBytes are skipped by uWS (the event is dropped for them).
   * Returns the number of subscribers at publish time.
   */
  publish(topic: string, message: unknown): number {
    if (!this.app) return 0;
    const n = this.app.numSubscribers(topic);
    if (n === 0) return 0;
    const binary = message instanceof Uint8Array;
    const payload = typeof message === 'string' || binary ? (message as string | Uint8Array) : encodeMessage(message, false);
    this.app.publish(topic, payload, binary, this.compression);
    return n;
  }

  subscriberCount(topic: string): number {
    return this.app ? this.app.numSubscribers(topic) : 0;
  }
}
