/**
 * A controllable WebSocket implementation for client tests: wraps `ws` with the
 * browser-style API the client uses, and lets a test
 * - hold new connections behind a gate (`gate.close()` / `gate.open()`),
 * - swallow the reply to a request and cut the connection (a reply lost in a drop),
 * - cut every live socket (`dropAll()`, like a network failure: close 1006).
 */
import WebSocket from 'ws';

type Handler<T = unknown> = ((ev: T) => void) | null;

export interface ControlledWebSocket {
  /** Pass as the client's `WebSocket` option. */
  WebSocket: new (url: string, protocols?: string | string[]) => unknown;
  gate: { open(): void; close(): void; readonly isOpen: boolean };
  /** Sockets created so far (including gated ones). */
  readonly created: number;
  /** The next reply whose request matches `pred` is swallowed and the socket cut (1006). */
  loseReplyAndDrop(pred: (request: Record<string, unknown>) => boolean): void;
  /** Cuts every live socket at once. */
  dropAll(): void;
  /** Requests sent (decoded JSON text frames only). */
  readonly sent: Array<Record<string, unknown>>;
}

export function controlledWebSocket(): ControlledWebSocket {
  let gateOpen = true;
  let waiting: Array<() => void> = [];
  const live = new Set<Wrapped>();
  const sent: Array<Record<string, unknown>> = [];
  let lose: ((r: Record<string, unknown>) => boolean) | null = null;
  const loseIds = new Set<unknown>();
  let created = 0;

  class Wrapped {
    readyState = 0;
    binaryType = 'arraybuffer';
    onopen: Handler = null;
    onclose: Handler<{ code: number; reason: string }> = null;
    onerror: Handler = null;
    onmessage: Handler<{ data: unknown }> = null;
    private inner: WebSocket | null = null;
    private closedEarly = false;

    constructor(readonly url: string) {
      created++;
      const start = (): void => {
        if (this.closedEarly) return;
        const ws = new WebSocket(url);
        this.inner = ws;
        ws.binaryType = 'arraybuffer';
        live.add(this);
        ws.on('open', () => {
          this.readyState = 1;
          this.onopen?.({});
        });
        ws.on('message', (data, isBinary) => {
          const payload = isBinary ? data : data.toString();
          if (typeof payload === 'string' && loseIds.size > 0) {
            const msg = JSON.parse(payload) as { id?: unknown };
            if (loseIds.has(msg.id)) {
              loseIds.delete(msg.id);
              ws.terminate();
              return;
            }
          }
          this.onmessage?.({ data: payload });
        });
        ws.on('error', (err) => this.onerror?.({ message: err.message }));
        ws.on('close', (code, reason) => {
          live.delete(this);
          this.readyState = 3;
          this.onclose?.({ code, reason: reason.toString() });
        });
      };
      if (gateOpen) start();
      else waiting.push(start);
    }

    send(data: string | Uint8Array): void {
      if (typeof data === 'string') {
        const msg = JSON.parse(data) as Record<string, unknown>;
        sent.push(msg);
        if (lose && lose(msg)) {
          lose = null;
          loseIds.add(msg.id);
        }
      }
      this.inner?.send(data);
    }

    close(code?: number, reason?: string): void {
      if (!this.inner) {
        this.closedEarly = true;
        this.readyState = 3;
        queueMicrotask(() => this.onclose?.({ code: 1006, reason: '' }));
        return;
      }
      this.readyState = 2;
      this.inner.close(code, reason);
    }

    terminate(): void {
      this.inner?.terminate();
    }
  }

  return {
    WebSocket: Wrapped,
    gate: {
      open() {
        gateOpen = true;
        const w = waiting;
        waiting = [];
        for (const f of w) f();
      },
      close() {
        gateOpen = false;
      },
      get isOpen() {
        return gateOpen;
      },
    },
    get created() {
      return created;
    },
    loseReplyAndDrop(pred) {
      lose = pred;
    },
    dropAll() {
      for (const w of live) w.terminate();
    },
    sent,
  };
}
