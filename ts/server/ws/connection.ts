/**
 * Per-connection state: `ConnState`, kept in the uWS user data of each socket (typed
 * `getUserData()`, never fields glued onto the socket), and `Connection`, the view of it
 * that command handlers get.
 */
import type { Logger } from 'pino';
import { CLOSE_CODES, event } from '../../protocol/index.js';
import { allowsNamespace, type AuthClaims } from '../auth.js';
import type { RateBudget, RejectionCount } from '../rate-limit.js';
import type { UwsWebSocket } from '../uws.js';

/** Per-connection state: the uWS user data of each socket. */
export interface ConnState extends RateBudget, RejectionCount {
  id: string;
  ip: string;
  origin: string;
  path: string;
  auth: AuthClaims;
  openedAt: number;
  /** Set by the close handler; after it the socket must never be touched. */
  closed: boolean;
  /** Counted in the registry (false for sockets refused at open with 1013). */
  registered: boolean;
  rejectReason: string | null;
  /** Last frame kind the client used; events follow it. */
  binary: boolean;
  lastPingAt: number;
  pingSentAt: number;
  awaitingPong: boolean;
  /** Requests received and not yet answered. */
  queued: number;
  tail: Promise<void> | null;
  /**
   * Serial pipelining with `overlapping` types: while the latest requests form a run of
   * overlapping types, the promise the run's first request waited for (null: it started at
   * once); undefined when the latest request was of another type.
   */
  gate: Promise<void> | null | undefined;
  congested: boolean;
  droppedEvents: number;
  droppedSinceCongested: number;
  conn: Connection | null;
}

/** Sentinel topic every socket is subscribed to, for broadcast(). */
export const BROADCAST_TOPIC = '__broadcast__';

/** The connection state of a socket (stored in its user data as `{ st }`, see the upgrade). */
export function stateOf(ws: UwsWebSocket<ConnState>): ConnState {
  return (ws.getUserData() as unknown as { st: ConnState }).st;
}

// Connection ids: unique per process, short and flat (a UUID string per socket costs ~450 B).
let connectionCounter = 0;
const connectionIdPrefix = `${process.pid.toString(36)}${Date.now().toString(36)}`;
export function nextConnectionId(): string {
  return `${connectionIdPrefix}-${(++connectionCounter).toString(36)}`;
}

/** Ends a socket with a close frame, once; never touches a closed socket. */
export function endSocket(ws: UwsWebSocket<ConnState>, st: ConnState, code: number, reason: string, logger: Logger): void {
  if (st.closed) return;
  st.closed = true;
  try {
    ws.end(code, reason);
  } catch (err) {
    logger.debug({ err, id: st.id }, 'end on a closing socket');
  }
}

/** What a Connection needs from its server: pushing events and ending the socket. */
export interface ConnectionHost {
  /** Event push with the slow-consumer policy; false if dropped or closed. */
  sendEventTo(ws: UwsWebSocket<ConnState>, st: ConnState, message: unknown): boolean;
  endSocket(ws: UwsWebSocket<ConnState>, st: ConnState, code: number, reason: string): void;
}

/** The handler-facing view of one live connection. */
export class Connection {
  private _locals: Map<string, unknown> | null = null;
  /** Handler-owned per-connection state (e.g. the memory server's namespace); created on first use. */
  get locals(): Map<string, unknown> {
    return (this._locals ??= new Map<string, unknown>());
  }

  constructor(
    private readonly server: ConnectionHost,
    private readonly ws: UwsWebSocket<ConnState>,
    private readonly st: ConnState,
  ) {}

  get id(): string {
    return this.st.id;
  }
  get ip(): string {
    return this.st.ip;
  }
  get origin(): string {
    return this.st.origin;
  }
  get path(): string {
    return this.st.path;
  }
  get auth(): AuthClaims {
    return this.st.auth;
  }
  get openedAt(): number {
    return this.st.openedAt;
  }
  get closed(): boolean {
    return this.st.closed;
  }
  /** Whether the client last spoke MessagePack (events are then sent binary). */
  get binary(): boolean {
    return this.st.binary;
  }
  get droppedEvents(): number {
    return this.st.droppedEvents;
  }

  /** Namespaces allowed by the connection's JWT `ns` claim (undefined = any). */
  allowsNamespace(namespace: string): boolean {
    return allowsNamespace(this.st.auth, namespace);
  }

  /** Pushes an event (subject to the slow-consumer policy). Returns false if dropped or closed. */
  send(message: unknown): boolean {
    return this.server.sendEventTo(this.ws, this.st, message);
  }

  /** Sends `event(name, data)`. */
  emit(name: string, data: unknown): boolean {
    return this.send(event(name, data));
  }

  subscribe(topic: string): boolean {
    if (this.st.closed) return false;
    return this.ws.subscribe(topic);
  }
  unsubscribe(topic: string): boolean {
    if (this.st.closed) return false;
    return this.ws.unsubscribe(topic);
  }
  isSubscribed(topic: string): boolean {
    return !this.st.closed && this.ws.isSubscribed(topic);
  }
  topics(): string[] {
    return this.st.closed ? [] : this.ws.getTopics().filter((t) => t !== BROADCAST_TOPIC);
  }
  bufferedAmount(): number {
    return this.st.closed ? 0 : this.ws.getBufferedAmount();
  }
  close(code: number = CLOSE_CODES.NORMAL, reason = ''): void {
    this.server.endSocket(this.ws, this.st, code, reason);
  }
}
