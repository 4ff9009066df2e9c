/**
 * Optional connection auth: a shared-secret token, or an HS256 JWT verified with `jsonwebtoken`
 * (`alg` pinned to HS256, `exp`/`nbf` with a clock tolerance, optional `aud`/`iss`, optionally
 * `exp` required) whose `ns` claim limits the namespaces the connection may use.
 */
import { createHmac, createHash, timingSafeEqual } from 'node:crypto';
// jsonwebtoken, not jose: its verify is synchronous, so a WebSocket upgrade with a JWT is
// answered inside uWS's upgrade callback. Upgrading later, from a promise (jose verifies with
// WebCrypto on the thread pool), made the btc-vision uWebSockets.js build drop a share of the
// new connections under load (close 1006 right after the 101; reproduced in the Debian 13
// root on Node 20, 22 and 24, never with a synchronous upgrade).
import jwt from 'jsonwebtoken';

export interface AuthOptions {
  /** Shared secret: clients present it as the bearer token. */
  token?: string;
  /** HS256 key: clients present a JWT signed with it. */
  jwtSecret?: string;
  /** Refuse JWTs without `exp` (default false: such a token never expires). */
  jwtRequireExp?: boolean;
  /** Required `aud` (one of these). */
  jwtAudience?: string | string[];
  /** Required `iss` (one of these). */
  jwtIssuer?: string | string[];
  /** Clock skew allowed on `exp` and `nbf`, seconds. Default JWT_CLOCK_TOLERANCE_S. */
  jwtClockToleranceS?: number;
}

/** Default clock tolerance on `exp`/`nbf` (issuer and server clocks differ a little). */
export const JWT_CLOCK_TOLERANCE_S = 5;

export interface AuthClaims {
  method: 'none' | 'token' | 'jwt';
  /** JWT `sub`, when present. */
  subject?: string;
  /** Namespaces this connection may use; undefined = all. */
  namespaces?: string[];
  /** JWT `exp` (seconds since epoch), when present. */
  expiresAt?: number;
  /**
   * When the server ends a connection made with this token (ms since epoch): `exp` plus the
   * clock tolerance, the last instant the token would still be accepted.
   */
  validUntilMs?: number;
  /** All JWT claims. */
  claims?: Record<string, unknown>;
}

export type AuthResult = { ok: true; claims: AuthClaims } | { ok: false; reason: string };

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

const SEGMENT = /^[A-Za-z0-9_-]+$/;

/**
 * Whether every segment is canonical unpadded base64url. Base64 decoders (like atob) tolerate padding,
 * whitespace and non-zero spare bits, so `<jwt>=` or a changed last character would still
 * verify: one token must have one spelling.
 */
function strictCompact(token: string): boolean {
  const parts = token.split('.');
  if (parts.length !== 3) return false;
  return parts.every((p) => SEGMENT.test(p) && p.length % 4 !== 1 && Buffer.from(p, 'base64url').toString('base64url') === p);
}

function reasonOf(err: unknown): string {
  if (err instanceof jwt.TokenExpiredError) return 'token expired';
  if (err instanceof jwt.NotBeforeError) return 'token not yet valid';
  const m = err instanceof Error ? err.message : '';
  if (m.startsWith('jwt audience invalid')) return 'bad aud claim';
  if (m.startsWith('jwt issuer invalid')) return 'bad iss claim';
  if (m === 'invalid algorithm') return 'unsupported algorithm';
  if (m === 'invalid signature') return 'bad signature';
  return 'malformed token';
}

/** jsonwebtoken types a list as a non-empty tuple (the options are checked non-empty at start-up). */
function oneOrMore(v: string | string[]): string | [string, ...string[]] {
  return typeof v === 'string' ? v : (v as [string, ...string[]]);
}

/** Verifies an HS256 JWT: signature, `exp` and `nbf` (seconds, with tolerance), `aud`/`iss` if configured, shape of `ns`. Synchronous. */
export function verifyJwtHs256(token: string, secret: string, options: Omit<AuthOptions, 'token' | 'jwtSecret'> = {}, nowMs = Date.now()): AuthResult {
  if (!strictCompact(token)) return { ok: false, reason: 'malformed token' };
  const tolerance = options.jwtClockToleranceS ?? JWT_CLOCK_TOLERANCE_S;
  let payload: Record<string, unknown>;
  try {
    const verified = jwt.verify(token, secret, {
      algorithms: ['HS256'],
      clockTolerance: tolerance,
      clockTimestamp: Math.floor(nowMs / 1000),
      ...(options.jwtAudience !== undefined ? { audience: oneOrMore(options.jwtAudience) } : {}),
      ...(options.jwtIssuer !== undefined ? { issuer: oneOrMore(options.jwtIssuer) } : {}),
    });
    if (typeof verified !== 'object' || verified === null || Array.isArray(verified)) return { ok: false, reason: 'malformed token' };
    payload = verified as Record<string, unknown>;
  } catch (err) {
    return { ok: false, reason: reasonOf(err) };
  }
  if (options.jwtRequireExp && payload.exp === undefined) return { ok: false, reason: 'token has no exp' };
  const claims: AuthClaims = { method: 'jwt', claims: payload };
  if (typeof payload.sub === 'string') claims.subject = payload.sub;
  if (typeof payload.exp === 'number') {
    claims.expiresAt = payload.exp;
    claims.validUntilMs = (payload.exp + tolerance) * 1000;
  }
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

// Shared by every connection of a server without auth (claims are never mutated).
const NO_AUTH: AuthResult = Object.freeze({ ok: true, claims: Object.freeze({ method: 'none' }) }) as AuthResult;

/** Whether any auth is configured. */
export function authRequired(options: AuthOptions): boolean {
  return Boolean(options.token || options.jwtSecret);
}

/**
 * Authenticates a request; with neither option set every request passes. Synchronous.
 */
export function authenticate(options: AuthOptions, presented: string | undefined): AuthResult {
  if (!authRequired(options)) return NO_AUTH;
  if (!presented) return { ok: false, reason: 'missing token' };
  if (options.token && safeEqual(presented, options.token)) return { ok: true, claims: { method: 'token' } };
  if (options.jwtSecret) return verifyJwtHs256(presented, options.jwtSecret, options);
  return { ok: false, reason: 'bad token' };
}

/** Whether claims allow a namespace. */
export function allowsNamespace(claims: AuthClaims, namespace: string): boolean {
  return claims.namespaces === undefined || claims.namespaces.includes(namespace);
}

/** Whether claims limit the connection to some namespaces (it then sees nothing global). */
export function isRestricted(claims: AuthClaims): boolean {
  return claims.namespaces !== undefined;
}
