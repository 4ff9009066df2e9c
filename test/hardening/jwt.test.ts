/**
 * Issue #23 (11): JWTs are verified strictly (jose, HS256 only, canonical base64url), `exp`
 * can be required, `aud`/`iss` can be pinned, and a connection ends when its token expires.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { signJwtHs256, type WsServer, type WsServerOptions } from '../../ts/server/index.js';
import { startTestServer } from '../helpers/echo-server.js';
import { connect, upgradeStatus, type TestClient } from '../helpers/ws-client.js';

const secret = 'hardening-jwt-key';
const nowS = (): number => Math.floor(Date.now() / 1000);

let server: WsServer | null = null;
const clients: TestClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await server?.close();
  server = null;
});

async function start(options: WsServerOptions = {}): Promise<string> {
  const s = await startTestServer({ jwtSecret: secret, ...options });
  server = s.server;
  return s.url;
}

const bearer = (token: string) => ({ headers: { Authorization: `Bearer ${token}` } });

describe('JWT verification', () => {
  it('refuses a valid token with junk appended or a non-canonical last character (401)', async () => {
    const url = await start();
    const good = signJwtHs256({ exp: nowS() + 60 }, secret);
    expect(await upgradeStatus(url, bearer(good))).toBe(101);
    for (const junk of ['==', '!!', '=', '.', '%']) {
      expect(await upgradeStatus(url, bearer(good + junk)), `junk ${junk}`).toBe(401);
    }
    // The last character of a 32-byte signature carries 2 spare bits: another letter decodes
    // to the same bytes under a lax decoder.
    const last = good.at(-1)!;
    const twin = good.slice(0, -1) + String.fromCharCode(last.charCodeAt(0) ^ 1);
    expect(await upgradeStatus(url, bearer(twin))).toBe(401);
    // Also through ?token= (the other way to present a token).
    expect(await upgradeStatus(`${url}/?token=${good}==`)).toBe(401);
  });

  it('refuses expired tokens and other algorithms', async () => {
    const url = await start({ jwtClockToleranceS: 0 });
    expect(await upgradeStatus(url, bearer(signJwtHs256({ exp: nowS() - 2 }, secret)))).toBe(401);
    const head = Buffer.from(JSON.stringify({ alg: 'HS512', typ: 'JWT' })).toString('base64url');
    const body = Buffer.from(JSON.stringify({ exp: nowS() + 60 })).toString('base64url');
    expect(await upgradeStatus(url, bearer(`${head}.${body}.${'A'.repeat(86)}`))).toBe(401);
  });

  it('accepts a token without exp by default and refuses it with jwtRequireExp', async () => {
    const noExp = signJwtHs256({ sub: 'forever' }, secret);
    let url = await start();
    expect(await upgradeStatus(url, bearer(noExp))).toBe(101);
    await server!.close();
    url = await start({ jwtRequireExp: true });
    expect(await upgradeStatus(url, bearer(noExp))).toBe(401);
    expect(await upgradeStatus(url, bearer(signJwtHs256({ exp: nowS() + 60 }, secret)))).toBe(101);
  });

  it('checks aud and iss when configured', async () => {
    const url = await start({ jwtAudience: 'memory', jwtIssuer: 'issuer-a' });
    const exp = nowS() + 60;
    expect(await upgradeStatus(url, bearer(signJwtHs256({ exp, aud: 'memory', iss: 'issuer-a' }, secret)))).toBe(101);
    expect(await upgradeStatus(url, bearer(signJwtHs256({ exp, aud: 'other', iss: 'issuer-a' }, secret)))).toBe(401);
    expect(await upgradeStatus(url, bearer(signJwtHs256({ exp, aud: 'memory', iss: 'issuer-b' }, secret)))).toBe(401);
    expect(await upgradeStatus(url, bearer(signJwtHs256({ exp }, secret)))).toBe(401);
  });
});

describe('JWT expiry on a live connection', () => {
  it('closes the connection with 1008 when its token expires (and not before)', async () => {
    const url = await start({ jwtClockToleranceS: 0 });
    const exp = nowS() + 2;
    const c = await connect(url, bearer(signJwtHs256({ exp }, secret)));
    clients.push(c);
    expect((await c.request('echo', { x: 1 })).data).toEqual({ echo: { x: 1 } });
    const timeout = new Promise<'still open'>((r) => setTimeout(() => r('still open'), 8_000).unref());
    const closed = await Promise.race([c.closed, timeout]);
    expect(closed).toEqual({ code: 1008, reason: 'Token expired' });
    // Not closed early: exp is whole seconds, so the close came at or after it.
    expect(Date.now()).toBeGreaterThanOrEqual(exp * 1000);
    expect(server!.connectionCount()).toBe(0);
  });

  it('a token-free or no-exp connection is not closed by the expiry timer', async () => {
    const url = await start();
    const c = await connect(url, bearer(signJwtHs256({ sub: 'no-exp' }, secret)));
    clients.push(c);
    expect((await c.request('echo', { y: 2 })).data).toEqual({ echo: { y: 2 } });
    expect(server!.connectionCount()).toBe(1);
  });
});
