/** A tiny command table on the connection layer, with short timeouts, for tests. */
import { ProtocolError } from '../../ts/protocol/index.js';
import { WsServer, type CommandHandler, type WsServerOptions } from '../../ts/server/index.js';
import { silentLogger } from './ws-client.js';

export const testCommands: Record<string, CommandHandler> = {
  echo: (_conn, req) => ({ echo: req.data ?? null }),
  whoami: (conn) => ({ id: conn.id, ip: conn.ip, auth: conn.auth }),
  delay: async (_conn, req) => {
    const ms = Number((req.data as { ms?: number } | undefined)?.ms ?? 0);
    await new Promise((r) => setTimeout(r, ms));
    return { ms };
  },
  fail: () => {
    throw new Error('boom');
  },
  fail_async: async () => {
    throw new TypeError('async boom');
  },
  missing: () => {
    throw new ProtocolError('not_found', 'Memory not found: x', { id: 'x' });
  },
  vector: (_conn, req) => {
    const v = (req.data as { embedding?: unknown } | undefined)?.embedding;
    return {
      received: v instanceof Float32Array ? 'float32' : Array.isArray(v) ? 'array' : typeof v,
      embedding: v instanceof Float32Array ? v : Float32Array.from((v as number[]) ?? []),
    };
  },
  subscribe: (conn, req) => {
    const topic = String((req.data as { topic?: string } | undefined)?.topic ?? 'events');
    conn.subscribe(topic);
    return { topic };
  },
};

export async function startTestServer(options: WsServerOptions = {}): Promise<{ server: WsServer; port: number; url: string }> {
  const server = new WsServer({
    name: 'test-server',
    host: '127.0.0.1',
    port: 0,
    logger: silentLogger,
    printListening: false,
    pingIntervalMs: 60_000,
    pongTimeoutMs: 60_000,
    closeTimeoutMs: 2_000,
    serviceInfo: { service: 'test-server', version: '9.9.9' },
    commands: testCommands,
    ...options,
  });
  const info = await server.listen();
  return { server, port: info.port, url: `ws://127.0.0.1:${info.port}` };
}
