/**
 * The memory server's HTTP API (`/v1/…`, docs/http.md): each route turns a request into
 * the `data` of one command and calls the same handler the WebSocket dispatches to, with the
 * same validation, auth claims, rate limits and metrics. The route table is also what the
 * OpenAPI document is generated from (openapi.ts).
 */
import { z, type ZodTypeAny } from 'zod';
import { ERROR_MESSAGES, ProtocolError, encodeMessage, type Request } from '../../protocol/index.js';
import { NAMESPACE_HEADER } from '../../protocol/http.js';
import {
  deleteReplySchema,
  listReplySchema,
  namespacesReplySchema,
  retrieveReplySchema,
  statsReplySchema,
  storeBatchReplySchema,
  storeReplySchema,
  wireMemorySchema,
} from '../../protocol/http.js';
import { deleteSchema, listSchema, retrieveSchema, storeBatchSchema, storeSingleSchema, updateSchema } from '../../protocol/memory.js';
import type { WsServer } from '../ws-server.js';
import type { CommandHandler } from '../ws/dispatch.js';
import { HttpCaller, httpLimiterOf, type HttpRateLimiter } from './caller.js';
import { httpError, type HttpMethod, type HttpReply, type HttpRequestInfo } from './router.js';

/** A query parameter: its schema (for OpenAPI) and how its text becomes a value of `data`. */
export interface QueryParam {
  schema: ZodTypeAny;
  /** `json`: the parameter holds URL-encoded JSON (a filter). */
  kind: 'string' | 'integer' | 'boolean' | 'json';
  description: string;
}

export interface ApiRoute {
  method: Exclude<HttpMethod, 'any' | 'head' | 'put'>;
  /** uWS pattern (`:id`). */
  pattern: string;
  command: string;
  summary: string;
  /** JSON body schema (a command's data schema), when the route takes a body. */
  body?: ZodTypeAny;
  query?: Record<string, QueryParam>;
  /** The path parameter `:id` becomes `data.id`. */
  idParam?: boolean;
  /** Status → reply schema (errors are added by openapi.ts). */
  responses: Record<number, { description: string; schema: ZodTypeAny }>;
}

const includeEmbeddings: QueryParam = {
  schema: z.boolean(),
  kind: 'boolean',
  description: 'Return each memory with its embedding.',
};

/** The HTTP API of the memory server. */
export const MEMORY_API_ROUTES: readonly ApiRoute[] = [
  {
    method: 'post',
    pattern: '/v1/memories',
    command: 'store',
    summary: 'Store one memory, or a batch under `items` (all or nothing).',
    body: z.union([storeSingleSchema, storeBatchSchema]),
    responses: {
      201: { description: 'Stored (at least one new memory).', schema: z.union([storeReplySchema, storeBatchReplySchema]) },
      200: { description: 'Every memory already existed (same namespace and id): nothing changed.', schema: z.union([storeReplySchema, storeBatchReplySchema]) },
    },
  },
  {
    method: 'post',
    pattern: '/v1/memories/search',
    command: 'retrieve',
    summary: 'Retrieve memories: by similarity to `query` or `embedding`, else by significance.',
    body: retrieveSchema,
    responses: { 200: { description: 'The best memories, best first.', schema: retrieveReplySchema } },
  },
  {
    method: 'get',
    pattern: '/v1/memories',
    command: 'list',
    summary: 'List memories in store order, a page at a time.',
    query: {
      cursor: { schema: z.string(), kind: 'string', description: '`next_cursor` of the previous page.' },
      limit: { schema: listSchema.shape.limit, kind: 'integer', description: 'Memories per page.' },
      filter: { schema: z.record(z.unknown()), kind: 'json', description: 'Metadata filter (docs/protocol.md "Filter language") as URL-encoded JSON.' },
      include_embeddings: includeEmbeddings,
    },
    responses: { 200: { description: 'One page; `next_cursor` is null on the last.', schema: listReplySchema } },
  },
  {
    method: 'get',
    pattern: '/v1/memories/:id',
    command: 'get',
    summary: 'Get one memory by id.',
    idParam: true,
    query: { include_embeddings: includeEmbeddings },
    responses: { 200: { description: 'The memory.', schema: wireMemorySchema } },
  },
  {
    method: 'patch',
    pattern: '/v1/memories/:id',
    command: 'update',
    summary: 'Replace the metadata and/or set the significance of one memory.',
    idParam: true,
    body: updateSchema.omit({ id: true }),
    responses: { 200: { description: 'The updated memory.', schema: wireMemorySchema } },
  },
  {
    method: 'del',
    pattern: '/v1/memories/:id',
    command: 'delete',
    summary: 'Delete one memory by id.',
    idParam: true,
    responses: { 200: { description: 'Deleted.', schema: deleteReplySchema } },
  },
  {
    method: 'post',
    pattern: '/v1/memories/delete',
    command: 'delete',
    summary: 'Delete by `ids`, by `filter`, or everything in the namespace (`all: true`).',
    body: deleteSchema,
    responses: { 200: { description: 'How many were deleted, and the ids not found.', schema: deleteReplySchema } },
  },
  {
    method: 'get',
    pattern: '/v1/namespaces',
    command: 'namespaces',
    summary: 'Namespaces and their counts (those the token allows).',
    responses: { 200: { description: 'The namespaces.', schema: namespacesReplySchema } },
  },
  {
    method: 'get',
    pattern: '/v1/stats',
    command: 'stats',
    summary: "The store's figures; with a namespace, that namespace's counts and the totals.",
    responses: { 200: { description: 'Statistics.', schema: statsReplySchema } },
  },
];

/** The request's `data` for a route: body, query parameters, path id and namespace, each checked. */
function requestData(route: ApiRoute, req: HttpRequestInfo): Record<string, unknown> {
  let data: Record<string, unknown> = {};
  if (route.body) data = bodyObject(req);
  const params = new URLSearchParams(req.query);
  const seen = new Set<string>();
  let queryNamespace: string | undefined;
  for (const [name, text] of params) {
    if (seen.has(name)) throw invalid(`query.${name}`, 'given more than once');
    seen.add(name);
    if (name === 'token') continue; // auth, read by the router
    if (name === 'namespace') {
      queryNamespace = text;
      continue;
    }
    const spec = route.query?.[name];
    if (!spec) throw invalid(`query.${name}`, `unknown parameter${route.query ? ` (known: ${Object.keys(route.query).join(', ')}, namespace)` : ' (known: namespace)'}`);
    if (data[name] !== undefined) throw invalid(`data.${name}`, 'given both in the body and the query');
    data[name] = queryValue(name, text, spec);
  }
  if (route.idParam) {
    if (data.id !== undefined) throw invalid('data.id', 'is given by the path (/v1/memories/{id})');
    data.id = pathId(req.params[0] ?? '');
  }
  const headerNamespace = req.headers[NAMESPACE_HEADER];
  for (const [where, ns] of [['query.namespace', queryNamespace], [`header ${NAMESPACE_HEADER}`, headerNamespace]] as const) {
    if (ns === undefined) continue;
    if (data.namespace !== undefined && data.namespace !== ns) {
      throw invalid('data.namespace', `${where} says "${ns}" but the request already names "${String(data.namespace)}"`);
    }
    data.namespace = ns;
  }
  return data;
}

function invalid(field: string, rule: string): ProtocolError {
  return new ProtocolError('invalid_request', `${field}: ${rule}`, { field });
}

const JSON_TYPE = /^application\/json\s*(;|$)/i;

/** The JSON object of the body; an empty body is `{}`. */
function bodyObject(req: HttpRequestInfo): Record<string, unknown> {
  if (req.body.length === 0) return {};
  const type = req.headers['content-type'];
  if (!type || !JSON_TYPE.test(type)) throw new UnsupportedMediaType(type);
  const value = req.json();
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid('data', 'the body must be a JSON object');
  return value as Record<string, unknown>;
}

class UnsupportedMediaType extends Error {
  constructor(readonly given: string | undefined) {
    super(`Content-Type must be application/json${given ? ` (got ${given})` : ' (none given)'}`);
  }
}

function queryValue(name: string, text: string, spec: QueryParam): unknown {
  switch (spec.kind) {
    case 'integer':
      // Left as text when not an integer: the command's schema then names the field and rule.
      return /^-?\d{1,15}$/.test(text) ? Number(text) : text;
    case 'boolean':
      return text === 'true' ? true : text === 'false' ? false : text;
    case 'json':
      try {
        return JSON.parse(text) as unknown;
      } catch {
        throw invalid(`data.${name}`, 'must be URL-encoded JSON');
      }
    default:
      return text;
  }
}

function pathId(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw invalid('data.id', 'is not valid percent-encoded UTF-8');
  }
}

/** Options of the API: the command table it serves and the server whose limits and metrics it shares. */
export interface MemoryApiTarget {
  readonly ws: WsServer;
  readonly commands: Readonly<Record<string, CommandHandler>>;
}

/** Registers MEMORY_API_ROUTES on the server's HTTP router. */
export function addMemoryApiRoutes(target: MemoryApiTarget): void {
  const { ws, commands } = target;
  const limiter = httpLimiterOf(ws);
  for (const route of MEMORY_API_ROUTES) {
    const handler = commands[route.command];
    if (!handler) throw new Error(`no handler for ${route.command}`);
    ws.http(route.method, route.pattern, (req) => serveCommand(ws, limiter, route, handler, req));
  }
}

async function serveCommand(
  ws: WsServer,
  limiter: HttpRateLimiter | null,
  route: ApiRoute,
  handler: CommandHandler,
  req: HttpRequestInfo,
): Promise<HttpReply> {
  const received = performance.now();
  const metrics = ws.metrics;
  metrics.messages++;
  metrics.bytesIn += req.body.length;
  if (ws.state !== 'running') {
    metrics.recordReply(route.command, performance.now() - received, true);
    return httpError('unavailable', ERROR_MESSAGES.shuttingDown, { reason: 'shutting_down' });
  }
  if (limiter) {
    const wait = limiter.take(req.ip, req.body.length, received);
    if (wait > 0) {
      metrics.rateLimited++;
      metrics.recordReply(route.command, performance.now() - received, true);
      const ms = Number.isFinite(wait) ? wait : 60_000;
      return httpError('rate_limited', ERROR_MESSAGES.rateLimited, { retry_after_ms: ms }, { 'Retry-After': String(Math.ceil(ms / 1000)) });
    }
  }
  let reply: HttpReply;
  const done = ws.beginRequest();
  try {
    const request: Request = { type: route.command, data: requestData(route, req) };
    const caller = new HttpCaller(req.ip, req.origin, req.auth, req.path, req.aborted);
    const out: unknown = await handler(caller.asConnection(), request);
    const existingOnly = route.command === 'store' && allExisting(out);
    reply = {
      status: route.command === 'store' && !existingOnly ? 201 : 200,
      headers: { 'Content-Type': 'application/json' },
      // The WebSocket's encoder: vectors (Float32Array) as number arrays.
      body: encodeMessage(out ?? {}, false) as string,
    };
  } catch (err) {
    if (err instanceof UnsupportedMediaType) {
      reply = httpError('unsupported_media_type', err.message, { field: 'content-type' });
    } else if (err instanceof ProtocolError) {
      reply = httpError(err.code, err.message, err.data, err.code === 'overloaded' ? { 'Retry-After': '1' } : undefined);
    } else {
      metrics.recordReply(route.command, performance.now() - received, true);
      throw err; // the router's boundary: 500 with a correlation id, logged
    }
  } finally {
    done();
  }
  metrics.recordReply(route.command, performance.now() - received, (reply.status ?? 200) >= 400);
  return reply;
}

function allExisting(out: unknown): boolean {
  const o = out as { existing?: boolean; items?: Array<{ existing: boolean }> };
  if (Array.isArray(o.items)) return o.items.every((i) => i.existing);
  return o.existing === true;
}
