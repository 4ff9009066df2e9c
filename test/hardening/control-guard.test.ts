/**
 * Issue #23 (15, part): the control center checks `Host` (DNS rebinding) on HTTP and the /ws
 * upgrade, state-changing REST calls need the per-start CSRF token (or credentials), the
 * token is never readable cross-origin, and namespace-limited tokens get nothing. The memory
 * server's HTTP routes check `Host` too when it binds a loopback address.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createControlCenter, inProcessComponents, type ControlCenter, type ComponentHandle } from '../../ts/control/index.js';
import { createServers, type Servers } from '../../ts/servers.js';
import { HostPolicy } from '../../ts/server/host-check.js';
import { signJwtHs256 } from '../../ts/server/auth.js';
import { connect, httpRequest, silentLogger } from '../helpers/ws-client.js';
import { ensureBuilt } from '../helpers/build-dist.js';

// The dashboard page (dist/dashboard) carries the CSRF token.
beforeAll(() => ensureBuilt(), 180_000);

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

interface Setup {
  cc: ControlCenter;
  servers: Servers;
  components: ComponentHandle[];
  close(): Promise<void>;
}

async function setup(extra: Record<string, unknown> = {}): Promise<Setup> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'hardening-guard-'));
  dirs.push(dataDir);
  const common = { host: '127.0.0.1', logger: silentLogger, printListening: false, ...extra };
  const servers = await createServers({ ...common, memory: { port: 0, dataDir }, inference: false });
  const components = inProcessComponents(servers, {
    memory: async () => (await createServers({ ...common, memory: { port: 0, dataDir }, inference: false })).memory!,
  });
  const cc = createControlCenter({ components, port: 0, statusIntervalMs: 200, ...common });
  await cc.listen();
  return {
    cc,
    servers,
    components,
    async close() {
      await cc.close();
      for (const c of components) await c.stop();
      await servers.close();
    },
  };
}

/** A raw WebSocket upgrade request (answered with a plain HTTP status when refused). */
const upgradeHeaders = (host: string): Record<string, string> => ({
  Host: host,
  Connection: 'Upgrade',
  Upgrade: 'websocket',
  'Sec-WebSocket-Version': '13',
  'Sec-WebSocket-Key': Buffer.from('0123456789abcdef').toString('base64'),
});

describe('Host allow-list', () => {
  it('HostPolicy: loopback names, the bind host and extra names, any port; others refused', () => {
    const p = new HostPolicy('10.1.2.3', ['dash.example']);
    for (const ok of ['localhost:9000', 'LOCALHOST', '127.0.0.1:1', '[::1]:9000', '10.1.2.3:9000', 'dash.example:80', 'localhost.', '']) {
      expect(p.allows(ok), ok).toBe(true);
    }
    for (const bad of ['evil.example', 'evil.example:9000', 'localhost.evil.example', '127.0.0.2', '[::2]:9000', 'dash.example.evil']) {
      expect(p.allows(bad), bad).toBe(false);
    }
    expect(new HostPolicy('localhost', ['*']).allows('anything.example')).toBe(true);
  });
});

describe('control center guard', () => {
  let s: Setup;
  let port: number;
  beforeAll(async () => {
    s = await setup();
    port = s.cc.port;
  }, 60_000);
  afterAll(async () => {
    await s?.close();
  });

  it('refuses a foreign Host (DNS rebinding) on REST, metrics, the page and the /ws upgrade', async () => {
    const evil = `rebind.evil.example:${port}`;
    for (const p of ['/api/status', '/api/components', '/metrics', '/', '/api/csrf']) {
      const r = await httpRequest(port, 'GET', p, { Host: evil });
      expect(r.status, p).toBe(403);
      expect(r.body).not.toContain('total_concepts');
    }
    expect((await httpRequest(port, 'POST', '/api/components/memory/stop', { Host: evil })).status).toBe(403);
    expect((await httpRequest(port, 'GET', '/ws', upgradeHeaders(evil))).status).toBe(403);
    expect(s.components[0]!.status().state).toBe('running');
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`]) {
      expect((await httpRequest(port, 'GET', '/api/status', { Host: host })).status, host).toBe(200);
    }
    const c = await connect(`ws://127.0.0.1:${port}/ws`);
    expect(await c.waitFor((m) => m.type === 'status', 5_000)).toBeTruthy();
    c.close();
  });

  it('refuses start/stop/restart without the CSRF token, also from an allowed localhost Origin', async () => {
    const memory = s.components[0]!;
    const attempts: Array<Record<string, string>> = [
      {},
      { 'X-CSRF-Token': 'guess' },
      { Origin: 'http://localhost:3000' },
      { Origin: 'http://localhost:3000', 'Content-Type': 'text/plain' },
    ];
    for (const headers of attempts) {
      const r = await httpRequest(port, 'POST', '/api/components/memory/stop', headers);
      expect(r.status, JSON.stringify(headers)).toBe(403);
      expect(JSON.parse(r.body)).toMatchObject({ success: false });
    }
    expect(memory.status().state).toBe('running');
  });

  it('the dashboard page and GET /api/csrf carry the token, only to same-origin readers; with it actions work', async () => {
    const csrf = await httpRequest(port, 'GET', '/api/csrf');
    expect(csrf.status).toBe(200);
    const token = JSON.parse(csrf.body).csrf_token as string;
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const page = await httpRequest(port, 'GET', '/');
    expect(page.status).toBe(200);
    expect(page.body).toContain(`<meta name="csrf-token" content="${token}">`);
    // Another page (an allowed Origin for CORS) cannot read either.
    for (const p of ['/', '/api/csrf']) {
      const r = await httpRequest(port, 'GET', p, { Origin: 'http://localhost:3000' });
      expect(r.status, p).toBe(403);
      expect(r.body).not.toContain(token);
    }
    // Same origin (the dashboard's own fetch) may.
    const own = await httpRequest(port, 'GET', '/api/csrf', { Origin: `http://127.0.0.1:${port}` });
    expect(own.status).toBe(200);

    let r = await httpRequest(port, 'POST', '/api/components/memory/restart', { 'X-CSRF-Token': token });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).component).toMatchObject({ state: 'running', restarts: 1 });
    r = await httpRequest(port, 'POST', '/api/components/memory/stop', { 'X-CSRF-Token': token });
    expect(JSON.parse(r.body).component.state).toBe('stopped');
    r = await httpRequest(port, 'POST', '/api/components/memory/start', { 'X-CSRF-Token': token });
    expect(JSON.parse(r.body).component.state).toBe('running');
  });
});

describe('control center with JWT auth', () => {
  const secret = 'guard-secret';
  const exp = Math.floor(Date.now() / 1000) + 600;
  let s: Setup;
  let port: number;
  beforeAll(async () => {
    s = await setup({ jwtSecret: secret });
    port = s.cc.port;
  }, 60_000);
  afterAll(async () => {
    await s?.close();
  });

  it('a namespace-limited token gets no status, metrics, actions or /ws', async () => {
    const limited = { Authorization: `Bearer ${signJwtHs256({ ns: ['mine'], exp }, secret)}` };
    for (const p of ['/api/status', '/api/components', '/metrics']) {
      expect((await httpRequest(port, 'GET', p, limited)).status, p).toBe(403);
    }
    expect((await httpRequest(port, 'POST', '/api/components/memory/stop', limited)).status).toBe(403);
    expect(s.components[0]!.status().state).toBe('running');
    const c = await connect(`ws://127.0.0.1:${port}/ws`, { headers: limited });
    expect((await c.closed).code).toBe(1008);
    expect(c.messages.filter((m: any) => m.type === 'status')).toHaveLength(0);
  });

  it('an unrestricted token needs no CSRF token (credentials are not ambient)', async () => {
    const admin = { Authorization: `Bearer ${signJwtHs256({ sub: 'admin', exp }, secret)}` };
    expect((await httpRequest(port, 'GET', '/api/status', admin)).status).toBe(200);
    const r = await httpRequest(port, 'POST', '/api/components/memory/restart', admin);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).component.state).toBe('running');
  });
});

describe('memory server HTTP on a loopback address', () => {
  it('GET / refuses a foreign Host; WebSocket clients are not affected', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'hardening-guard-mem-'));
    dirs.push(dataDir);
    const servers = await createServers({ host: '127.0.0.1', logger: silentLogger, printListening: false, memory: { port: 0, dataDir }, inference: false });
    try {
      const port = servers.memory!.port;
      expect((await httpRequest(port, 'GET', '/', { Host: `rebind.evil.example:${port}` })).status).toBe(403);
      expect((await httpRequest(port, 'GET', '/')).status).toBe(200);
      const c = await connect(`ws://127.0.0.1:${port}/`, { headers: { Host: `memory.example:${port}` } });
      expect((await c.request('stats')).status).toBe('success');
      c.close();
    } finally {
      await servers.close();
    }
  });
});
