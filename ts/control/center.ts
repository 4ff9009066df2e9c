/**
 * The control center (SPEC §5): a WsServer on /ws broadcasting component status,
 * REST to start/stop/restart components, Prometheus metrics, and the dashboard.
 */
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Buffer } from 'node:buffer';
import { ProtocolError } from '../protocol/index.js';
import { WsServer, type Connection, type ListenInfo, type SharedServerOptions, type WsServerOptions } from '../server/ws-server.js';
import { VERSION } from '../version.js';
import { createPrometheusRegistry } from './prometheus.js';
import {
  ALL,
  FilterError,
  applyFilter,
  filterKey,
  parseFilter,
  type ComponentStatus,
  type StatusFilter,
  type StatusMessage,
} from '../protocol/control.js';
import { StatusCollector } from './status.js';
import { CONTROL_DEFAULTS, type ComponentHandle } from './types.js';

/** The control center's own server options: the ones every server shares, and its port. */
export type ControlServerOptions = SharedServerOptions & Pick<WsServerOptions, 'port'>;

export interface ControlCenterOptions extends ControlServerOptions {
  /** The supervised components (forked children or in-process servers), by name. */
  components: ComponentHandle[] | Record<string, ComponentHandle>;
  /** Status broadcast period. Default 2,000 ms. */
  statusIntervalMs?: number;
  /** Data directory whose size is reported as storage_size_mb (default: the memory server's store path). */
  dataDir?: string;
  /** Directory holding the built dashboard (index.html, app.js, app.css). Default: dist/dashboard. */
  dashboardDir?: string;
}

export interface ControlCenter {
  readonly server: WsServer;
  readonly components: ReadonlyMap<string, ComponentHandle>;
  /** Bound port (after listen). */
  readonly port: number;
  listen(): Promise<ListenInfo>;
  /** The current full status message. */
  status(): StatusMessage;
  /** Recomputes metrics and broadcasts now (also what the interval does). */
  tick(): Promise<void>;
  /** Stops broadcasting and closes the server (clients get 1001). Components are not stopped. */
  close(): Promise<void>;
}

const TOPIC_PREFIX = 'status:';
const ACTIONS = ['start', 'stop', 'restart'] as const;
type Action = (typeof ACTIONS)[number];

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

function loadDashboard(dir: string): Map<string, Buffer> | null {
  if (!existsSync(path.join(dir, 'index.html'))) return null;
  const files = new Map<string, Buffer>();
  for (const [route, file] of Object.entries(ASSETS)) {
    const p = path.join(dir, file);
    if (existsSync(p)) files.set(route, readFileSync(p));
  }
  return files;
}

export function createControlCenter(options: ControlCenterOptions): ControlCenter {
  const {
    components: compOpt,
    statusIntervalMs = CONTROL_DEFAULTS.statusIntervalMs,
    dataDir,
    dashboardDir = DEFAULT_DASHBOARD_DIR,
    ...wsOptions
  } = options;
  const components = new Map<string, ComponentHandle>();
  if (Array.isArray(compOpt)) for (const c of compOpt) components.set(c.name, c);
  else for (const [k, c] of Object.entries(compOpt)) components.set(k, c);
  const names = [...components.keys()];

  const collector = new StatusCollector(components, dataDir ? path.resolve(dataDir) : undefined);
  const filters = new Map<string, StatusFilter>([['all', ALL]]);
  const connTopic = new WeakMap<Connection, string>();
  const dashboard = loadDashboard(dashboardDir);
  const registry = createPrometheusRegistry(components, collector);

  const serialize = (msg: StatusMessage, f: StatusFilter): string => JSON.stringify(applyFilter(msg, f));

  const subscribe = (conn: Connection, f: StatusFilter): void => {
    const key = filterKey(f);
    const topic = TOPIC_PREFIX + key;
    const old = connTopic.get(conn);
    if (old && old !== topic) conn.unsubscribe(old);
    filters.set(key, f);
    conn.subscribe(topic);
    connTopic.set(conn, topic);
    // The client gets its view at once, after the subscribe reply.
    setImmediate(() => {
      if (!conn.closed) conn.send(serialize(collector.message(), f));
    });
  };

  const server = new WsServer({
    name: 'control-center',
    port: 9000,
    ...wsOptions,
    wsPaths: ['/ws'],
    serviceInfo: false,
    onOpen: (conn) => {
      conn.subscribe(TOPIC_PREFIX + 'all');
      connTopic.set(conn, TOPIC_PREFIX + 'all');
      conn.send(JSON.stringify(collector.message()));
    },
    commands: {
      subscribe: (conn, req) => {
        // The lists may come inside `data` or, as in the seed protocol, at the top level.
        const data = req.data ?? {};
        const top = req.extra ?? {};
        const inData = 'components' in data || 'metrics' in data;
        const source = inData ? data : 'components' in top || 'metrics' in top ? top : null;
        let f: StatusFilter = ALL;
        if (source) {
          try {
            f = parseFilter(source, names);
          } catch (err) {
            throw new ProtocolError('invalid_request', `${inData ? 'data.' : ''}${(err as FilterError).message}`);
          }
        }
        subscribe(conn, f);
        // null = all (the shape the client library reads)
        return { components: f.components, metrics: f.metrics };
      },
      status: () => collector.message(),
    },
  });

  // ----------------------------------------------------------------- broadcast
  let publishScheduled = false;
  const publishAll = (): void => {
    publishScheduled = false;
    const msg = collector.message();
    for (const [key, f] of filters) {
      const topic = TOPIC_PREFIX + key;
      if (server.subscriberCount(topic) === 0) {
        if (key !== 'all') filters.delete(key);
        continue;
      }
      // One serialization per distinct filter per tick, published to all its subscribers by uWS.
      server.publish(topic, serialize(msg, f));
    }
  };
  const schedulePublish = (): void => {
    if (publishScheduled || server.state !== 'running') return;
    publishScheduled = true;
    setImmediate(publishAll);
  };
  const unsubscribers = [...components.values()].map((c) => c.onChange(() => schedulePublish()));

  let refreshing: Promise<void> | null = null;
  const tick = async (): Promise<void> => {
    if (!refreshing) {
      refreshing = collector.refresh().finally(() => {
        refreshing = null;
      });
    }
    await refreshing;
    if (server.state === 'running') publishAll();
  };
  let timer: NodeJS.Timeout | null = null;

  // ----------------------------------------------------------------- REST
  const componentsBody = (): Record<string, ComponentStatus> => {
    const out: Record<string, ComponentStatus> = {};
    for (const [k, c] of components) out[k] = c.status();
    return out;
  };
  server.http('get', '/api/status', () => ({ body: collector.message() }));
  server.http('get', '/api/components', () => ({ body: { success: true, components: componentsBody() } }));
  server.http('post', '/api/components/:name/:action', async (req) => {
    const [name = '', action = ''] = req.params;
    const c = components.get(name);
    if (!c) return { status: 404, body: { success: false, error: `Unknown component: ${name}` } };
    if (!(ACTIONS as readonly string[]).includes(action)) {
      return { status: 404, body: { success: false, error: `Unknown action: ${action} (start, stop, restart)` } };
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
      const states: Record<string, string> = {};
      for (const [k, c] of components) states[k] = c.status().state;
      return { body: { status: 'ok', version: VERSION, components: states } };
    },
    { public: true },
  );
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

  let closed: Promise<void> | null = null;
  return {
    server,
    components,
    get port() {
      return server.port;
    },
    async listen() {
      await collector.refresh();
      const info = await server.listen();
      timer = setInterval(() => void tick().catch(() => undefined), statusIntervalMs);
      timer.unref?.();
      return info;
    },
    status: () => collector.message(),
    tick,
    close() {
      closed ??= (async () => {
        if (timer) clearInterval(timer);
        timer = null;
        for (const u of unsubscribers) u();
        await server.close();
      })();
      return closed;
    },
  };
}

