// Baseline transport: the SAME MemoryServer command handlers (server.commands) served over the
// `ws` package instead of uWebSockets.js. Same envelope decode/encode (dist/protocol), same
// per-connection ordering (a request's handler starts after the previous reply, like
// WsServer's `serial` pipelining), same ProtocolError → error reply mapping. What it leaves
// out (so the comparison is, if anything, kind to it): rate limiting, keep-alive sweep,
// per-reply metrics, origin/auth checks.
import { randomUUID } from 'node:crypto';
import { WebSocketServer } from 'ws';
import { ProtocolError, decodeRequest, encodeMessage, errorReply, success } from '../../dist/protocol/index.js';

/** A Connection-like object for the handlers (the subset MemoryServer uses). */
class WsConnection {
  constructor(socket, ip) {
    this.socket = socket;
    this.id = randomUUID();
    this.ip = ip;
    this.origin = '';
    this.path = '/';
    this.auth = { method: 'none' };
    this.openedAt = Date.now();
    this.closed = false;
    this.binary = false;
    this.locals = new Map();
    this.topics_ = new Set();
    this.tail = null;
    this.queued = 0;
  }
  allowsNamespace() {
    return true;
  }
  send(message) {
    if (this.closed) return false;
    const payload = typeof message === 'string' ? message : encodeMessage(message, this.binary);
    this.socket.send(payload, { binary: typeof payload !== 'string' });
    return true;
  }
  subscribe(topic) {
    this.topics_.add(topic);
    return true;
  }
  unsubscribe(topic) {
    return this.topics_.delete(topic);
  }
  isSubscribed(topic) {
    return this.topics_.has(topic);
  }
  topics() {
    return [...this.topics_];
  }
  close(code = 1000, reason = '') {
    this.socket.close(code, reason);
  }
}

const idType = (r) => (r.id !== undefined ? { type: r.type, id: r.id } : { type: r.type });

function errorFor(err, request) {
  if (err instanceof ProtocolError) return errorReply(err.code, err.message, { ...idType(request), ...(err.data ? { data: err.data } : {}) });
  console.error(err);
  return errorReply('internal', 'Internal error', idType(request));
}

function invoke(handler, conn, request) {
  try {
    const out = handler(conn, request);
    if (out && typeof out.then === 'function') {
      return Promise.resolve(out).then(
        (data) => success(request.type, request.id, data === undefined ? {} : data),
        (err) => errorFor(err, request),
      );
    }
    return success(request.type, request.id, out === undefined ? {} : out);
  } catch (err) {
    return errorFor(err, request);
  }
}

/**
 * Serves `memoryServer.commands` over `ws` on host:port (port 0 = ephemeral).
 * Resolves with `{ port, wss, connectionCount(), broadcast(msg), close() }`.
 */
export function startWsMemoryServer(memoryServer, { host = '127.0.0.1', port = 0, maxPayload = 1 << 20 } = {}) {
  const commands = memoryServer.commands;
  const conns = new Set();
  const wss = new WebSocketServer({ host, port, maxPayload, perMessageDeflate: false, clientTracking: false });
  wss.on('connection', (socket, req) => {
    const conn = new WsConnection(socket, req.socket.remoteAddress ?? '');
    conns.add(conn);
    const sendReply = (reply, binary) => {
      if (conn.closed) return;
      socket.send(encodeMessage(reply, binary), { binary });
    };
    socket.on('message', (data, isBinary) => {
      conn.binary = isBinary;
      const decoded = decodeRequest(data, isBinary);
      let produce;
      if (!decoded.ok) {
        const e = decoded.error;
        const reply = errorReply(e.code, e.message, {
          ...(decoded.type !== undefined ? { type: decoded.type } : {}),
          ...(decoded.id !== undefined ? { id: decoded.id } : {}),
        });
        produce = () => reply;
      } else {
        const request = decoded.request;
        const handler = commands[request.type];
        if (!handler) {
          const reply = errorReply('unknown_type', `Unknown command type: ${request.type}`, idType(request));
          produce = () => reply;
        } else produce = () => invoke(handler, conn, request);
      }
      if (conn.queued === 0) {
        const out = produce();
        if (!(out && typeof out.then === 'function')) return sendReply(out, isBinary);
        produce = () => out;
      }
      conn.queued++;
      const next = (conn.tail ?? Promise.resolve())
        .then(produce)
        .then((reply) => sendReply(reply, isBinary))
        .catch((err) => console.error(err))
        .finally(() => {
          conn.queued--;
          if (conn.tail === next) conn.tail = null;
        });
      conn.tail = next;
    });
    socket.on('close', () => {
      conn.closed = true;
      conns.delete(conn);
    });
    socket.on('error', () => {});
  });
  return new Promise((resolve, reject) => {
    wss.once('error', reject);
    wss.once('listening', () => {
      resolve({
        port: wss.address().port,
        wss,
        connectionCount: () => conns.size,
        /** A JavaScript loop over the sockets (what uWS pub/sub replaces). */
        broadcast(message) {
          const payload = typeof message === 'string' ? message : encodeMessage(message, false);
          for (const c of conns) c.socket.send(payload);
          return conns.size;
        },
        close: () =>
          new Promise((r) => {
            for (const c of conns) c.socket.terminate();
            wss.close(() => r());
          }),
      });
    });
  });
}
