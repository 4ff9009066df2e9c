/**
 * Status to the control center's WebSocket clients: each client is subscribed to the topic of
 * its filter (all, until it sends `subscribe`), and every tick or component state change is
 * serialized once per distinct filter and published to that topic by uWS.
 */
import { ProtocolError, type Request } from '../protocol/index.js';
import { ALL, FilterError, applyFilter, filterKey, parseFilter, type StatusFilter, type StatusMessage, type StatusSubscribeReply } from '../protocol/control.js';
import type { Connection, WsServer } from '../server/ws-server.js';
import type { StatusCollector } from './status.js';

const TOPIC_PREFIX = 'status:';
const ALL_TOPIC = `${TOPIC_PREFIX}all`;

const serialize = (msg: StatusMessage, f: StatusFilter): string => JSON.stringify(applyFilter(msg, f));

export class StatusBroadcaster {
  /** The filters in use, by key (`all` always). */
  private readonly filters = new Map<string, StatusFilter>([['all', ALL]]);
  private readonly connTopic = new WeakMap<Connection, string>();
  private publishScheduled = false;
  /** Set once the server exists (the server's options need this broadcaster's handlers). */
  server: WsServer | null = null;

  constructor(
    private readonly collector: StatusCollector,
    private readonly componentNames: readonly string[],
  ) {}

  /** A new client: subscribed to everything, sent the current status at once. */
  readonly onOpen = (conn: Connection): void => {
    conn.subscribe(ALL_TOPIC);
    this.connTopic.set(conn, ALL_TOPIC);
    conn.send(JSON.stringify(this.collector.message()));
  };

  /** The `subscribe` command: narrows what this client receives; replies with the filter applied. */
  readonly subscribeCommand = (conn: Connection, req: Request): StatusSubscribeReply => {
    // The lists may come inside `data` or at the top level of the request.
    const data = req.data ?? {};
    const top = req.extra ?? {};
    const inData = 'components' in data || 'metrics' in data;
    const source = inData ? data : 'components' in top || 'metrics' in top ? top : null;
    let f: StatusFilter = ALL;
    if (source) {
      try {
        f = parseFilter(source, this.componentNames);
      } catch (err) {
        throw new ProtocolError('invalid_request', `${inData ? 'data.' : ''}${(err as FilterError).message}`);
      }
    }
    this.subscribe(conn, f);
    // null = all (the shape the client library reads)
    return { components: f.components, metrics: f.metrics };
  };

  private subscribe(conn: Connection, f: StatusFilter): void {
    const key = filterKey(f);
    const topic = TOPIC_PREFIX + key;
    const old = this.connTopic.get(conn);
    if (old && old !== topic) conn.unsubscribe(old);
    this.filters.set(key, f);
    conn.subscribe(topic);
    this.connTopic.set(conn, topic);
    // The client gets its view at once, after the subscribe reply.
    setImmediate(() => {
      if (!conn.closed) conn.send(serialize(this.collector.message(), f));
    });
  }

  /** Publishes the current status to every filter's subscribers (forgetting filters nobody uses). */
  publishAll(): void {
    this.publishScheduled = false;
    const server = this.server;
    if (!server) return;
    const msg = this.collector.message();
    for (const [key, f] of this.filters) {
      const topic = TOPIC_PREFIX + key;
      if (server.subscriberCount(topic) === 0) {
        if (key !== 'all') this.filters.delete(key);
        continue;
      }
      // One serialization per distinct filter per tick, published to all its subscribers by uWS.
      server.publish(topic, serialize(msg, f));
    }
  }

  /** publishAll() soon (once, however many changes come in this turn), while the server runs. */
  schedulePublish(): void {
    if (this.publishScheduled || this.server?.state !== 'running') return;
    this.publishScheduled = true;
    setImmediate(() => this.publishAll());
  }
}
