/**
 * The memory server's events (`memory_added`, `memory_updated`, `memory_removed`): published
 * per namespace and name on a uWS topic, and kept in a bounded log so that a client that
 * subscribes with `since_seq` gets the ones it missed (or learns that some were evicted).
 */
import { event, type SuccessReply } from '../protocol/index.js';
import type { MemoryEventData, MemoryEventName, WireMemory } from '../protocol/memory.js';
import type { WsServer } from './ws-server.js';

/** Why a memory was removed (`memory_removed`'s `reason`). */
export type RemovedReason = NonNullable<MemoryEventData['reason']>;

export interface LoggedEvent {
  seq: number;
  namespace: string;
  name: MemoryEventName;
  message: SuccessReply;
}

/** The pub/sub topic of one event name in one namespace. */
export const topicOf = (namespace: string, name: MemoryEventName): string => `mem\u0000${namespace}\u0000${name}`;

export class MemoryEventLog {
  private readonly events: LoggedEvent[] = [];
  private head = 0;
  /** Events with seq ≤ floor are not in the log (before start, or evicted). */
  floor = 0;

  constructor(
    private readonly ws: WsServer,
    private readonly size: number,
  ) {}

  /**
   * Logs the event (evicting the oldest when full) and publishes it to its topic's subscribers.
   * `reason` goes with `memory_removed`: `deleted` (a `delete`) or `expired` (its TTL passed).
   */
  publish(namespace: string, name: MemoryEventName, memory: WireMemory | { id: string; namespace: string }, seq: number, reason?: RemovedReason): void {
    const message = event(name, reason === undefined ? { memory, seq } : { memory, seq, reason });
    const entry: LoggedEvent = { seq, namespace, name, message };
    if (this.events.length < this.size) {
      this.events.push(entry);
    } else {
      const old = this.events[this.head]!;
      this.floor = Math.max(this.floor, old.seq);
      this.events[this.head] = entry;
      this.head = (this.head + 1) % this.size;
    }
    const topic = topicOf(namespace, name);
    if (this.ws.subscriberCount(topic) > 0) this.ws.publish(topic, message);
  }

  /** Logged events in order (oldest first). */
  *logged(): Generator<LoggedEvent> {
    const n = this.events.length;
    for (let i = 0; i < n; i++) yield this.events[(this.head + i) % n]!;
  }
}
