/**
 * The control center's guard around its HTTP routes (a wrapper of `server.http`, so route
 * files stay as they are):
 *
 * - A token limited to namespaces (JWT `ns`) may not use the control center: its status
 *   carries global figures and its actions stop whole servers (403).
 * - State-changing requests (anything but GET/HEAD) need proof that they come from the
 *   dashboard or a program, not from some other page the browser happens to show: real
 *   credentials (`Authorization: Bearer`/`?token=`, when auth is configured), or the
 *   per-start CSRF token in `X-CSRF-Token`. The dashboard finds that token in its page
 *   (`<meta name="csrf-token">`), programs at `GET /api/csrf`.
 * - The responses carrying the CSRF token (`/`, `/api/csrf`) are refused to cross-origin
 *   readers (an `Origin` other than the page's own), so no other page can learn it.
 *
 * The `Host` check against DNS rebinding is the connection layer's (`hostCheck: 'all'`).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { isRestricted } from '../server/auth.js';
import type { HttpHandler, HttpMethod, HttpReply, HttpRequestInfo, HttpRouteOptions, WsServer } from '../server/ws-server.js';
import { CSRF_HEADER as CSRF_HEADER_NAME } from '../protocol/control.js';

/** Lower-cased, as the router hands headers over. */
const CSRF_HEADER = CSRF_HEADER_NAME.toLowerCase();

/** Routes whose answer carries the CSRF token. */
const TOKEN_BEARING = new Set(['/', '/api/csrf']);

/** A fresh CSRF token (one per control-center start). */
export function newCsrfToken(): string {
  return randomBytes(32).toString('base64url');
}

function sameValue(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

/** Whether a browser `Origin` (if any) is the page's own: same host and port as `Host`. */
export function sameOrigin(req: HttpRequestInfo): boolean {
  if (!req.origin) return true;
  try {
    return new URL(req.origin).host.toLowerCase() === (req.headers.host ?? '').toLowerCase();
  } catch {
    return false; // `null` (sandboxed frames, file://) and junk
  }
}

const forbidden = (error: string): HttpReply => ({ status: 403, body: { success: false, error } });

/** Wraps one handler with the checks above. */
export function guardHandler(method: HttpMethod, pattern: string, handler: HttpHandler, options: HttpRouteOptions, csrfToken: string): HttpHandler {
  const mutating = method !== 'get' && method !== 'head';
  return (req) => {
    if (!options.public && isRestricted(req.auth)) return forbidden('Forbidden: a token limited to namespaces cannot use the control center');
    if (TOKEN_BEARING.has(pattern) && !sameOrigin(req)) return forbidden('Forbidden: cross-origin read');
    if (mutating && (req.auth.method === 'none' || options.public)) {
      const presented = req.headers[CSRF_HEADER];
      if (!presented || !sameValue(presented, csrfToken)) {
        return forbidden(`Forbidden: missing or wrong ${CSRF_HEADER} header (the dashboard page carries it; programs: GET /api/csrf)`);
      }
    }
    return handler(req);
  };
}

/** The `http` registration of `server`, every route guarded. */
export function guardedRoutes(server: WsServer, csrfToken: string): Pick<WsServer, 'http'> {
  const guarded = {
    http(method: HttpMethod, pattern: string, handler: HttpHandler, options: HttpRouteOptions = {}) {
      server.http(method, pattern, guardHandler(method, pattern, handler, options, csrfToken), options);
      return server;
    },
  };
  guarded.http('get', '/api/csrf', () => ({ headers: { 'Cache-Control': 'no-store' }, body: { csrf_token: csrfToken } }));
  return guarded;
}
