/**
 * Optional connection auth: a shared-secret token, or an HS256 JWT whose `exp`
 * is checked and whose `ns` claim limits the namespaces the connection may use.
 * Tiny on purpose (no jose dependency): only HS256 is accepted, never `none`.
 */
import { createHmac, createHash, timingSafeEqual } from 'node:crypto';

export interface AuthOptions {
  /** Shared secret: clients present it as the bearer token. */
  token?: string;
  /** HS256 key: clients present a JWT signed with it. */
  jwtSecret?: string;
}

export interface AuthClaims {
  method: 'none' | 'token' | 'jwt';
  /** JWT `sub`, when present. */
  subject?: string;
  /** Namespaces this connection may use; undefined = all. */
  namespaces?: string[];
  /** JWT `exp` (seconds since epoch), when present. */
  expiresAt?: number;
  /** All JWT claims. */
  claims?: Record<string, unknown>;
}

export type AuthResult = { ok: true; claims: AuthClaims } | { ok: false; reason: string };

function b64urlDecode(s: string): Buffer {
  return Buffer.from(s, 'base64url');
}

function b64urlJson(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

function safeEqual(a: string | Buffer, b: string | Buffer): boolean {
  // Hash both sides so lengths match and the comparison stays constant-time.
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

/** Signs an HS256 JWT (used by tests and tooling). */
export function signJwtHs256(payload: Record<string, unknown>, secret: string): string {
  const head = b64urlJson({ alg: 'HS256', typ: 'JWT' });
  const body = b64urlJson(payload);
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

/** Verifies an HS256 JWT: signature, `exp` and `nbf` (seconds), shape of `ns`. */
export function verifyJwtHs256(token: string, secret: string, nowMs = Date.now()): AuthResult {
  const parts = token.split('.');
  if (parts.length !== 3) return { ok: false, reason: 'malformed token' };
  const [head, body, sig] = parts as [string, string, string];
  let header: Record<string, unknown>;
  let payload: Record<string, unknown>;
  try {
    header = JSON.parse(b64urlDecode(head).toString('utf8'));
    payload = JSON.parse(b64urlDecode(body).toString('utf8'));
  } catch {
    return { ok: false, reason: 'malformed token' };
  }
  if (typeof header !== 'object' || header === null || header.alg !== 'HS256') {
    return { ok: false, reason: 'unsupported algorithm' };
  }
  const expected = createHmac('sha256', secret).update(`${head}.${body}`).digest();
  if (!safeEqual(expected, b64urlDecode(sig))) return { ok: false, reason: 'bad signature' };
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    return { ok: false, reason: 'malformed claims' };
  }
  const nowS = nowMs / 1000;
  if (payload.exp !== undefined && (typeof payload.exp !== 'number' || payload.exp <= nowS)) {
    return { ok: false, reason: 'token expired' };
  }
  if (payload.nbf !== undefined && (typeof payload.nbf !== 'number' || payload.nbf > nowS)) {
    return { ok: false, reason: 'token not yet valid' };
  }
  const claims: AuthClaims = { method: 'jwt', claims: payload };
  if (typeof payload.sub === 'string') claims.subject = payload.sub;
  if (typeof payload.exp === 'number') claims.expiresAt = payload.exp;
  if (payload.ns !== undefined) {
    const ns = typeof payload.ns === 'string' ? [payload.ns] : payload.ns;
    if (!Array.isArray(ns) || !ns.every((x) => typeof x === 'string')) {
      return { ok: false, reason: 'ns claim must be a list of namespaces' };
    }
    claims.namespaces = ns as string[];
  }
  return { ok: true, claims };
}

/** Extracts the presented token from `Authorization: Bearer …` or `?token=`. */
export function extractToken(authorizationHeader: string, query: string): string | undefined {
  const m = /^\s*Bearer\s+(\S+)\s*$/i.exec(authorizationHeader);
  if (m) return m[1];
  if (query) {
    const t = new URLSearchParams(query).get('token');
    if (t) return t;
  }
  return undefined;
}

/** Authenticates a request; with neither option set every request passes. */
// Shared by every connection of a server without auth (claims are never mutated).
const NO_AUTH: AuthResult = Object.freeze({ ok: true, claims: Object.freeze({ method: 'none' }) }) as AuthResult;

export function authenticate(options: AuthOptions, presented: string | undefined): AuthResult {
  if (!options.token && !options.jwtSecret) return NO_AUTH;
  if (!presented) return { ok: false, reason: 'missing token' };
  if (options.token && safeEqual(presented, options.token)) return { ok: true, claims: { method: 'token' } };
  if (options.jwtSecret) return verifyJwtHs256(presented, options.jwtSecret);
  return { ok: false, reason: 'bad token' };
}

/** Whether claims allow a namespace. */
export function allowsNamespace(claims: AuthClaims, namespace: string): boolean {
  return claims.namespaces === undefined || claims.namespaces.includes(namespace);
}
