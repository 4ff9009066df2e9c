/**
 * The control center's HTTP side: REST (`/api/status`, `/api/components`, start/stop/restart),
 * Prometheus `/metrics`, `/healthz`, and the dashboard's static files.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Buffer } from 'node:buffer';
import type { ComponentActionReply, ComponentStatus, ComponentsReply, HealthReply } from '../protocol/control.js';
import type { HttpReply, WsServer } from '../server/ws-server.js';
import { CSRF_META } from '../protocol/control.js';
import { VERSION } from '../version.js';
import type { createPrometheusRegistry } from './prometheus.js';
import type { StatusCollector } from './status.js';
import type { ComponentHandle } from './types.js';

const ACTIONS = ['start', 'stop', 'restart'] as const;
type Action = (typeof ACTIONS)[number];

/** REST, /metrics and /healthz (the only public one: health checks carry no token). */
export function addApiRoutes(
  server: Pick<WsServer, 'http'>,
  components: ReadonlyMap<string, ComponentHandle>,
  collector: StatusCollector,
  registry: ReturnType<typeof createPrometheusRegistry>,
): void {
  const componentsBody = (): Record<string, ComponentStatus> => {
    const out: Record<string, ComponentStatus> = {};
    for (const [k, c] of components) out[k] = c.status();
    return out;
  };
  server.http('get', '/api/status', () => ({ body: collector.message() }));
  server.http('get', '/api/components', () => ({ body: { success: true, components: componentsBody() } satisfies ComponentsReply }));
  server.http('post', '/api/components/:name/:action', async (req): Promise<HttpReply & { body: ComponentActionReply }> => {
    const [name = '', action = ''] = req.params;
    const c = components.get(name);
    if (!c) return { status: 404, body: { success: false, error: `Unknown component: ${name}` } };
    if (action === 'compact' && c.name === 'memory' && c.compact) {
      // The memory server rewrites its log without deleted and expired memories (it keeps
      // serving; writes wait only for the final switch).
      try {
        const compaction = await c.compact();
        return { body: { success: true, component: c.status(), compaction } };
      } catch (err) {
        return { status: 409, body: { success: false, error: (err as Error).message, component: c.status() } };
      }
    }
    if (!(ACTIONS as readonly string[]).includes(action)) {
      return { status: 404, body: { success: false, error: `Unknown action: ${action} (start, stop, restart${c.name === 'memory' ? ', compact' : ''})` } };
    }
    try {
      await c[action as Action]();
    } catch (err) {
      return { status: 500, body: { success: false, error: (err as Error).message, component: c.status() } };
    }
    return { body: { success: true, component: c.status() } };
  });
  server.http('get', '/metrics', async () => ({
    headers: { 'Content-Type': registry.contentType },
    body: await registry.metrics(),
  }));
  server.http(
    'get',
    '/healthz',
    () => {
      const states: Record<string, ComponentStatus['state']> = {};
      for (const [k, c] of components) states[k] = c.status().state;
      // A hung child still has a pid and a port: health checks must see it.
      const hung = Object.values(states).includes('unresponsive');
      const body = { status: hung ? 'unresponsive' : 'ok', version: VERSION, components: states } satisfies HealthReply;
      return hung ? { status: 503, body } : { body };
    },
    { public: true },
  );
}

/** dist/dashboard (built by scripts/build-dashboard.mjs), also when running from the TypeScript sources. */
export const DEFAULT_DASHBOARD_DIR = ((): string => {
  const here = fileURLToPath(new URL('../dashboard/', import.meta.url));
  return existsSync(path.join(here, 'app.js')) ? here : fileURLToPath(new URL('../../dist/dashboard/', import.meta.url));
})();

const ASSETS: Record<string, string> = {
  '/': 'index.html',
  '/app.js': 'app.js',
  '/app.css': 'app.css',
};
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};
const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  // uPlot positions its elements with inline styles
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  // the playground talks to the memory and inference servers on their own ports
  'connect-src * ws: wss:',
].join('; ');

function loadDashboard(dir: string, csrfToken: string): Map<string, Buffer> | null {
  if (!existsSync(path.join(dir, 'index.html'))) return null;
  const files = new Map<string, Buffer>();
  for (const [route, file] of Object.entries(ASSETS)) {
    const p = path.join(dir, file);
    if (existsSync(p)) files.set(route, readFileSync(p));
  }
  // The page carries this start's CSRF token for its POSTs (guard.ts).
  const html = files.get('/')!.toString('utf8').replace('</head>', `<meta name="${CSRF_META}" content="${csrfToken}">\n</head>`);
  files.set('/', Buffer.from(html));
  return files;
}

/** The dashboard's files, read once from `dir` (public: the page asks for the token itself). */
export function addDashboardRoutes(server: Pick<WsServer, 'http'>, dir: string, csrfToken: string): void {
  const dashboard = loadDashboard(dir, csrfToken);
  for (const route of Object.keys(ASSETS)) {
    server.http(
      'get',
      route,
      () => {
        const body = dashboard?.get(route);
        if (!body) {
          return {
            status: route === '/' ? 503 : 404,
            body: route === '/' ? 'Dashboard not built: run `node scripts/build-dashboard.mjs`' : 'Not found',
          };
        }
        return {
          headers: {
            'Content-Type': TYPES[path.extname(ASSETS[route]!)]!,
            'Cache-Control': 'no-cache',
            'Content-Security-Policy': CSP,
            'X-Content-Type-Options': 'nosniff',
          },
          body: new Uint8Array(body.buffer, body.byteOffset, body.byteLength),
        };
      },
      { public: true },
    );
  }
}
