/**
 * Test helpers: connect a `ws` client, send requests and await replies by id,
 * wait for close codes, plain HTTP requests with custom headers.
 */
import http from 'node:http';
import net from 'node:net';
import WebSocket, { type ClientOptions, type RawData } from 'ws';
import { pino } from 'pino';
import { decodeMessage, encodeMessage } from '../../ts/protocol/index.js';

export const silentLogger = pino({ level: 'silent' });

export interface TestClient {
  ws: WebSocket;
  /** Every decoded message received, in order. */
  messages: unknown[];
  /** Sends a request; `binary` uses MessagePack. */
  send(msg: unknown, binary?: boolean): void;
  /** Sends a request with an auto id and resolves with the reply carrying that id. */
  request<T = any>(type: string, data?: unknown, opts?: { binary?: boolean; id?: string | number }): Promise<T>;
  /** Resolves with the next message satisfying `pred` (already received ones included). */
  waitFor<T = any>(pred: (m: any) => boolean, timeoutMs?: number): Promise<T>;
  closed: Promise<{ code: number; reason: string }>;
  close(): void;
}

let seq = 0;

export function connect(url: string, options: ClientOptions = {}): Promise<TestClient> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options);
    const messages: unknown[] = [];
    const waiters: Array<{ pred: (m: any) => boolean; resolve: (m: any) => void }> = [];
    const closed = new Promise<{ code: number; reason: string }>((res) => {
      ws.on('close', (code, reason) => res({ code, reason: reason.toString() }));
    });
    ws.on('message', (raw: RawData, isBinary: boolean) => {
      const buf = Array.isArray(raw) ? Buffer.concat(raw) : Buffer.from(raw as ArrayBuffer);
      const msg = decodeMessage(isBinary ? buf : buf.toString('utf8'), isBinary) as Record<string, unknown>;
      if (msg && typeof msg === 'object') Object.defineProperty(msg, '__binary', { value: isBinary, enumerable: false });
      messages.push(msg);
      for (let i = 0; i < waiters.length; i++) {
        const w = waiters[i]!;
        if (w.pred(msg)) {
          waiters.splice(i, 1);
          i--;
          w.resolve(msg);
        }
      }
    });
    const client: TestClient = {
      ws,
      messages,
      closed,
      send(msg, binary = false) {
        ws.send(typeof msg === 'string' ? msg : encodeMessage(msg, binary), { binary });
      },
      request(type, data, opts = {}) {
        const id = opts.id ?? `r${++seq}`;
        const p = client.waitFor((m) => m && m.id === id);
        client.send(data === undefined ? { type, id } : { type, id, data }, opts.binary ?? false);
        return p;
      },
      waitFor(pred, timeoutMs = 10_000) {
        const found = messages.find((m) => pred(m));
        if (found) return Promise.resolve(found as any);
        return new Promise((res, rej) => {
          const w = {
            pred,
            resolve: (m: any) => {
              clearTimeout(t);
              res(m);
            },
          };
          const t = setTimeout(() => {
            const i = waiters.indexOf(w);
            if (i >= 0) waiters.splice(i, 1);
            rej(new Error('timed out waiting for a message'));
          }, timeoutMs);
          waiters.push(w);
        });
      },
      close() {
        ws.close();
      },
    };
    ws.once('open', () => resolve(client));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
}

/** Attempts an upgrade; resolves with the HTTP status of a refused upgrade, or 101. */
export function upgradeStatus(url: string, options: ClientOptions = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options);
    ws.once('open', () => {
      ws.terminate();
      resolve(101);
    });
    ws.once('unexpected-response', (_req, res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.once('error', (err) => reject(err));
  });
}

export interface HttpResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export function httpRequest(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (body !== undefined) req.end(body);
    else req.end();
  });
}

export const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` until true (bounded); for state the test cannot await directly. */
export async function until(cond: () => boolean, timeoutMs = 5_000, stepMs = 10): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await delay(stepMs);
  }
}

/** A port that was free a moment ago (bind 0 on 127.0.0.1, read it, release it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
