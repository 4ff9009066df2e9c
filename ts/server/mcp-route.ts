/**
 * `/mcp` on the memory server: MCP over streamable HTTP (docs/mcp.md), through the HTTP
 * router (origin and Host checks, the same token/JWT auth as the WebSocket, a body bounded by
 * maxFrameBytes, onAborted), and the per-address rate limit the `/v1` API uses (one budget
 * shared by both; a POST is one request of its size). Each tool call is counted in the
 * server's metrics as the command it runs. Each POST is served statelessly by a fresh SDK server and
 * web-standard transport in JSON-response mode: every tool answers with one reply, so there
 * is nothing to stream and no session to keep; GET (a server-to-client stream) and DELETE (a
 * session end) are answered 405, which the protocol allows and SDK clients expect.
 * The SDK is loaded on the first request, so servers that never see one do not pay for it.
 */
import type { Logger } from 'pino';
import type { HttpReply, HttpRequestInfo, WsServer, CommandHandler } from './ws-server.js';
import { ERROR_MESSAGES } from '../protocol/index.js';
import { httpLimiterOf } from './http/caller.js';
import { httpError } from './http/router.js';

export const MCP_PATH = '/mcp';

/** What the route needs from the memory server. */
export interface McpHost {
  readonly ws: WsServer;
  readonly commands: Readonly<Record<string, CommandHandler>>;
  readonly logger: Logger;
}

/** Request headers the web Request must not carry over (the connection's, not the message's). */
const HOP_HEADERS = new Set(['host', 'connection', 'content-length', 'transfer-encoding', 'keep-alive', 'upgrade']);

function webRequest(req: HttpRequestInfo): Request {
  const headers = new Headers();
  for (const [k, v] of Object.entries(req.headers)) if (!HOP_HEADERS.has(k)) headers.set(k, v);
  const url = `http://localhost${req.path}${req.query ? `?${req.query}` : ''}`;
  return new Request(url, { method: req.method.toUpperCase(), headers, body: req.body.byteLength > 0 ? req.body.toString('utf8') : null });
}

/** The MCP modules, imported on the first request and kept. */
type McpModules = [
  typeof import('../mcp/server.js'),
  typeof import('../mcp/backend.js'),
  typeof import('@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js'),
];
let modules: Promise<McpModules> | null = null;
const loadMcp = (): Promise<McpModules> =>
  (modules ??= Promise.all([
    import('../mcp/server.js'),
    import('../mcp/backend.js'),
    import('@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js'),
  ]));

async function serveMcpPost(host: McpHost, req: HttpRequestInfo): Promise<HttpReply> {
  const metrics = host.ws.metrics;
  const wait = httpLimiterOf(host.ws)?.take(req.ip, req.body.length) ?? 0;
  if (wait > 0) {
    metrics.rateLimited++;
    const ms = Number.isFinite(wait) ? wait : 60_000;
    return httpError('rate_limited', ERROR_MESSAGES.rateLimited, { retry_after_ms: ms }, { 'Retry-After': String(Math.ceil(ms / 1000)) });
  }
  metrics.messages++;
  metrics.bytesIn += req.body.length;
  const [{ createMemoryMcpServer }, { commandBackend }, { WebStandardStreamableHTTPServerTransport }] = await loadMcp();
  // The caller's claims (JWT `ns`) scope the commands, as on a WebSocket connection.
  const mcp = createMemoryMcpServer(commandBackend(host.commands, req.auth, host.logger, metrics));
  const transport = new WebStandardStreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
  try {
    await mcp.connect(transport);
    const response = await transport.handleRequest(webRequest(req));
    const headers: Record<string, string> = {};
    response.headers.forEach((value, key) => {
      headers[key] = value;
    });
    const text = await response.text();
    return { status: response.status, headers, ...(text.length > 0 ? { body: text } : {}) };
  } finally {
    await mcp.close();
  }
}

const notAllowed = (): HttpReply => ({
  status: 405,
  headers: { Allow: 'POST' },
  body: { jsonrpc: '2.0', error: { code: -32000, message: 'Method not allowed: this server answers POST only (no SSE stream, no sessions)' }, id: null },
});

/** Registers `/mcp` (before listen). */
export function registerMcpRoute(host: McpHost): void {
  host.ws.http('post', MCP_PATH, (req) => serveMcpPost(host, req));
  host.ws.http('get', MCP_PATH, notAllowed);
  host.ws.http('del', MCP_PATH, notAllowed);
}
