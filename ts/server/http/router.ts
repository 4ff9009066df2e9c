/**
 * Plain HTTP routes beside the WebSocket paths: origin check and CORS, token/JWT auth
 * (unless the route is public; a refusal is answered before the body is read), a bounded
 * request body read with uWS `onData` (a declared Content-Length over the limit is refused
 * before any byte is read), `onAborted`, 405 with `Allow` for a known path with another
 * method, and an error boundary: a ProtocolError becomes the status of its code
 * (protocol/http.ts), anything else 500 with a correlation id. Every error body is
 * `{ status: "error", code, message, error, data? }`.
 */
import type { Logger } from 'pino';
import { ERROR_MESSAGES, ProtocolError, decodeValue } from '../../protocol/index.js';
import { httpErrorBody, httpStatusOf, type HttpErrorCode } from '../../protocol/http.js';
import { authenticate, extractToken, type AuthClaims, type AuthOptions, type AuthResult } from '../auth.js';
import type { OriginPolicy } from '../origin.js';
import type { HostPolicy } from '../host-check.js';
import type { TemplatedApp, UwsHttpRequest, UwsHttpResponse } from '../uws.js';
import { correlationId, isThenable } from '../ws/dispatch.js';
import { answerNotFound, answerPreflight, writeHttp } from './response.js';

export type HttpMethod = 'get' | 'post' | 'put' | 'del' | 'patch' | 'head' | 'any';

export interface HttpRequestInfo {
  method: string;
  path: string;
  query: string;
  /** Route parameters (`:name` segments), in order. */
  params: string[];
  /** Lower-cased header names. */
  headers: Record<string, string>;
  ip: string;
  origin: string;
  auth: AuthClaims;
  body: Buffer;
  /** Parses the body as JSON (throws ProtocolError('invalid_json'), also for bytes that are not UTF-8). */
  json<T = unknown>(): T;
  /** Whether the client has gone (uWS `onAborted`): its answer will never be sent. */
  aborted(): boolean;
}

export interface HttpReply {
  status?: number;
  headers?: Record<string, string>;
  /** Objects are sent as JSON. */
  body?: string | Uint8Array | object;
}

export type HttpHandler = (req: HttpRequestInfo) => HttpReply | Promise<HttpReply>;

export interface HttpRouteOptions {
  /** Skip token/JWT auth for this route. Default false (auth applies when configured). */
  public?: boolean;
  /**
   * Reshapes every error reply (status ≥ 400) sent on this route, the router's own (401, 403,
   * 413, a ProtocolError's 4xx, 500) included, for routes that speak another API's error
   * format (the OpenAI-compatible routes). Gets the status and the body as built.
   */
  errorBody?: (status: number, body: unknown) => object;
}

interface RouteEntry {
  method: HttpMethod;
  pattern: string;
  handler: HttpHandler;
  options: HttpRouteOptions;
}

/** What the router needs from its server. */
export interface RouterContext {
  readonly origins: OriginPolicy;
  /** `Host` allow-list (DNS rebinding guard); null: not checked. */
  readonly hosts: HostPolicy | null;
  readonly auth: AuthOptions;
  /** Largest accepted request body. */
  readonly maxBodyBytes: number;
  readonly logger: Logger;
  /** The client's address (interned) of a request. */
  remoteIp(res: UwsHttpResponse): string;
}

/** The part of a request read synchronously (uWS HttpRequest is only valid during the callback). */
type RequestHead = Omit<HttpRequestInfo, 'auth' | 'body' | 'json' | 'aborted'>;

function readHead(res: UwsHttpResponse, req: UwsHttpRequest, paramCount: number, ctx: RouterContext): RequestHead {
  const headers: Record<string, string> = {};
  req.forEach((k, v) => {
    headers[k] = v;
  });
  const params: string[] = [];
  for (let i = 0; i < paramCount; i++) params.push(req.getParameter(i) ?? '');
  return {
    method: req.getMethod(),
    path: req.getUrl(),
    query: req.getQuery() ?? '',
    params,
    headers,
    ip: ctx.remoteIp(res),
    origin: headers.origin ?? '',
  };
}

function requestInfo(head: RequestHead, auth: AuthClaims, body: Buffer, aborted: () => boolean): HttpRequestInfo {
  return {
    ...head,
    auth,
    body,
    json<T>(): T {
      // The WebSocket's JSON decoder: strict UTF-8, keys such as __proto__ kept as data.
      return decodeValue(body, false) as T;
    },
    aborted,
  };
}

/** An error reply of the router itself (before or around a handler). */
export function httpError(code: HttpErrorCode, message: string, data?: Record<string, unknown>, headers?: Record<string, string>): HttpReply {
  return { status: httpStatusOf(code), body: httpErrorBody(code, message, data), ...(headers ? { headers } : {}) };
}

const METHOD_NAMES: Record<HttpMethod, string> = {
  get: 'GET',
  post: 'POST',
  put: 'PUT',
  del: 'DELETE',
  patch: 'PATCH',
  head: 'HEAD',
  any: '*',
};

/** Collects the request body (copied: uWS neuters each chunk on return); over `limit` bytes → `tooBig` once. */
function readBody(res: UwsHttpResponse, limit: number, done: (body: Buffer) => void, tooBig: () => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let over = false;
  res.onData((chunk, isLast) => {
    if (over) return;
    size += chunk.byteLength;
    if (size > limit) {
      over = true;
      tooBig();
      return;
    }
    chunks.push(Buffer.from(chunk.slice(0)));
    if (isLast) done(Buffer.concat(chunks));
  });
}

function unauthorized(reason: string): HttpReply {
  return httpError('unauthorized', `Unauthorized: ${reason}`, undefined, { 'WWW-Authenticate': 'Bearer' });
}

function tooBig(limit: number): HttpReply {
  return httpError('payload_too_large', `Body exceeds the limit of ${limit} bytes`, { field: 'body', limit });
}

export class HttpRouter {
  private readonly routes: RouteEntry[] = [];

  constructor(private readonly ctx: RouterContext) {}

  add(method: HttpMethod, pattern: string, handler: HttpHandler, options: HttpRouteOptions = {}): void {
    this.routes.push({ method, pattern, handler, options });
  }

  /** Whether a route of ours answers `GET /`. */
  servesRoot(): boolean {
    return this.routes.some((r) => (r.method === 'get' || r.method === 'any') && r.pattern === '/');
  }

  /**
   * Registers the CORS preflight, the routes (first), `defaultRoot` as a public `GET /` when
   * given and no route serves it, 405 (with `Allow`) for the other methods of each route's
   * path, and the 404 for everything else.
   */
  attach(app: TemplatedApp, defaultRoot: HttpHandler | null): void {
    app.options('/*', (res, req) => answerPreflight(res, req, this.ctx.origins));
    for (const route of this.routes) this.attachRoute(app, route);
    if (defaultRoot && !this.servesRoot()) {
      this.attachRoute(app, { method: 'get', pattern: '/', options: { public: true }, handler: defaultRoot });
    }
    const methods = new Map<string, Set<string>>();
    for (const r of this.routes) {
      if (r.method === 'any') continue;
      const set = methods.get(r.pattern) ?? new Set<string>();
      set.add(METHOD_NAMES[r.method]);
      methods.set(r.pattern, set);
    }
    // 405 for the other methods of a route's path. Registered per method, not with `any`:
    // uWS builds differ in how `any` of a pattern ranks against `any('/*')` and against a
    // parametric route of the request's method (20.30 and 20.57 answered differently), while
    // a route of the request's own method on a static path wins in both. Methods without
    // a uWS verb here (and any build's leftovers) reach the catch-all, which matches the path
    // against the same patterns.
    const allowed: Array<{ match: RegExp; allow: string }> = [];
    const verbs = ['get', 'post', 'put', 'del', 'patch'] as const;
    for (const [pattern, set] of methods) {
      if (this.routes.some((r) => r.pattern === pattern && r.method === 'any')) continue;
      const allow = [...set].sort().join(', ');
      allowed.push({ match: patternRegExp(pattern), allow });
      for (const verb of verbs) {
        if (!set.has(METHOD_NAMES[verb])) app[verb](pattern, (res, req) => this.notAllowed(res, req, allow));
      }
    }
    app.any('/*', (res, req) => {
      const url = req.getUrl();
      const hit = allowed.find((a) => a.match.test(url));
      if (!hit) return answerNotFound(res, req, this.ctx.origins);
      this.notAllowed(res, req, hit.allow);
    });
  }

  /** 405 with `Allow` (a foreign Origin gets the 404 it would get anywhere). */
  private notAllowed(res: UwsHttpResponse, req: UwsHttpRequest, allow: string): void {
    const origin = req.getHeader('origin');
    if (!this.ctx.origins.allows(origin)) return answerNotFound(res, req, this.ctx.origins);
    const method = req.getMethod().toUpperCase();
    const reply = httpError('method_not_allowed', `Method ${method} not allowed on ${req.getUrl()} (allowed: ${allow})`, { allow }, { Allow: allow });
    writeHttp(res, origin || null, reply.status!, reply.headers!, reply.body);
  }

  private attachRoute(app: TemplatedApp, route: RouteEntry): void {
    const paramCount = (route.pattern.match(/\/:/g) ?? []).length;
    const handler = (res: UwsHttpResponse, req: UwsHttpRequest): void => this.serve(res, req, route, paramCount);
    app[route.method](route.pattern, handler);
  }

  private serve(res: UwsHttpResponse, req: UwsHttpRequest, route: RouteEntry, paramCount: number): void {
    const ctx = this.ctx;
    // Register onAborted before any async work (uWS requirement).
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    const head = readHead(res, req, paramCount, ctx);
    const corsOrigin = head.origin && ctx.origins.allows(head.origin) ? head.origin : null;
    const reshape = route.options.errorBody;
    const respond = (reply: HttpReply): void => {
      if (aborted) return;
      const status = reply.status ?? 200;
      const body = reshape && status >= 400 ? reshape(status, reply.body) : reply.body;
      writeHttp(res, corsOrigin, status, reply.headers ?? {}, body);
    };
    if (ctx.hosts && !ctx.hosts.allows(head.headers.host)) return respond(httpError('forbidden', 'Host not allowed'));
    if (!ctx.origins.allows(head.origin)) return respond(httpError('forbidden', 'Origin not allowed'));
    const declared = head.headers['content-length'];
    const declaredTooBig = declared !== undefined && Number(declared) > ctx.maxBodyBytes;
    const isAborted = (): boolean => aborted;
    const presented = route.options.public
      ? ({ ok: true, claims: { method: 'none' } } as const)
      : authenticate(ctx.auth, extractToken(head.headers.authorization ?? '', head.query));
    const auth: AuthResult = presented;
    // Refused before the body is read: an unauthenticated client costs no buffering.
    if (!auth.ok) return respond(unauthorized(auth.reason));
    // A declared length over the limit is refused before a byte of the body is read.
    if (declaredTooBig) return respond(tooBig(ctx.maxBodyBytes));
    this.withBody(res, head, respond, (body) => this.run(route, head, auth.claims, body, respond, isAborted));
  }

  /** Reads the request body (none for GET/HEAD/OPTIONS), or answers 413 over the limit. */
  private withBody(res: UwsHttpResponse, head: RequestHead, respond: (r: HttpReply) => void, then: (body: Buffer) => void): void {
    const ctx = this.ctx;
    if (head.method === 'get' || head.method === 'head' || head.method === 'options') {
      then(Buffer.alloc(0));
      return;
    }
    readBody(res, ctx.maxBodyBytes, then, () => respond(tooBig(ctx.maxBodyBytes)));
  }

  /** Runs a route's handler behind the error boundary. */
  private run(
    route: RouteEntry,
    head: RequestHead,
    claims: AuthClaims,
    body: Buffer,
    respond: (r: HttpReply) => void,
    aborted: () => boolean,
  ): void {
    const ctx = this.ctx;
    const fail = (err: unknown): void => {
      if (err instanceof ProtocolError) {
        respond(httpError(err.code, err.message, err.data));
        return;
      }
      const cid = correlationId();
      ctx.logger.error({ err, correlationId: cid, path: head.path }, 'http handler failed');
      respond(httpError('internal', ERROR_MESSAGES.internal(cid), { correlation_id: cid }));
    };
    try {
      const out = route.handler(requestInfo(head, claims, body, aborted));
      if (isThenable(out)) (out as Promise<HttpReply>).then(respond, fail);
      else respond(out);
    } catch (err) {
      fail(err);
    }
  }
}

/** A uWS route pattern (`/v1/memories/:id`, a trailing `*`) as a whole-path RegExp. */
function patternRegExp(pattern: string): RegExp {
  const body = pattern
    .split('/')
    .map((seg) => (seg.startsWith(':') ? '[^/]+' : seg === '*' ? '.*' : seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('/');
  return new RegExp(`^${body}$`);
}
