/**
 * Writing HTTP responses on uWS: status line, CORS headers for allowed origins, a body
 * typed by what it is (text, bytes, or JSON for objects), all in one cork.
 */
import { httpErrorBody } from '../../protocol/http.js';
import type { OriginPolicy } from '../origin.js';
import { CORS_ALLOW_HEADERS, CORS_ALLOW_METHODS, CORS_MAX_AGE } from '../origin.js';
import type { UwsHttpRequest, UwsHttpResponse } from '../uws.js';

const HTTP_STATUS: Record<number, string> = {
  200: 'OK',
  201: 'Created',
  202: 'Accepted',
  204: 'No Content',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

export type HttpBody = string | Uint8Array | object | undefined;

function writeCors(res: UwsHttpResponse, origin: string): void {
  res.writeHeader('Access-Control-Allow-Origin', origin);
  res.writeHeader('Vary', 'Origin');
}

/** Writes a full HTTP response (corked). `corsOrigin` adds CORS headers. */
export function writeHttp(
  res: UwsHttpResponse,
  corsOrigin: string | null,
  status: number,
  headers: Record<string, string>,
  body: HttpBody,
): void {
  let payload: string | Uint8Array | undefined;
  let contentType: string | undefined;
  if (body === undefined) payload = undefined;
  else if (typeof body === 'string') {
    payload = body;
    contentType = 'text/plain; charset=utf-8';
  } else if (body instanceof Uint8Array) {
    payload = body;
    contentType = 'application/octet-stream';
  } else {
    payload = JSON.stringify(body);
    contentType = 'application/json';
  }
  res.cork(() => {
    res.writeStatus(`${status} ${HTTP_STATUS[status] ?? 'Unknown'}`);
    if (corsOrigin) writeCors(res, corsOrigin);
    const hasType = Object.keys(headers).some((h) => h.toLowerCase() === 'content-type');
    if (contentType && !hasType) res.writeHeader('Content-Type', contentType);
    for (const [k, v] of Object.entries(headers)) res.writeHeader(k, v);
    if (payload === undefined) res.end();
    else res.end(payload);
  });
}

/** `OPTIONS /*`: the CORS preflight answer for allowed origins, 403 for others. */
export function answerPreflight(res: UwsHttpResponse, req: UwsHttpRequest, origins: OriginPolicy): void {
  const origin = req.getHeader('origin');
  if (!origins.allows(origin)) {
    writeHttp(res, null, 403, {}, httpErrorBody('forbidden', 'Origin not allowed'));
    return;
  }
  res.cork(() => {
    res.writeStatus('204 No Content');
    if (origin) writeCors(res, origin);
    res.writeHeader('Access-Control-Allow-Methods', CORS_ALLOW_METHODS);
    res.writeHeader('Access-Control-Allow-Headers', CORS_ALLOW_HEADERS);
    res.writeHeader('Access-Control-Max-Age', CORS_MAX_AGE);
    res.endWithoutBody();
  });
}

/** Any path no route serves: 404 (with CORS headers) for allowed origins, 403 for others. */
export function answerNotFound(res: UwsHttpResponse, req: UwsHttpRequest, origins: OriginPolicy): void {
  const origin = req.getHeader('origin');
  const allowed = origins.allows(origin);
  const body = allowed
    ? httpErrorBody('route_not_found', `Not found: no route for ${req.getMethod().toUpperCase()} ${req.getUrl()}`)
    : httpErrorBody('forbidden', 'Origin not allowed');
  writeHttp(res, allowed && origin ? origin : null, allowed ? 404 : 403, {}, body);
}
