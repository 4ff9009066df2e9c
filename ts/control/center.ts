/**
 * The control center (docs/control-center.md): a WsServer on /ws broadcasting component
 * status (broadcast.ts), REST to start/stop/restart components, Prometheus metrics and the
 * dashboard (routes.ts).
 */
import path from 'node:path';
import type { StatusMessage } from '../protocol/control.js';
import { WsServer, type ListenInfo, type SharedServerOptions, type WsServerOptions } from '../server/ws-server.js';
import { StatusBroadcaster } from './broadcast.js';
import { createPrometheusRegistry } from './prometheus.js';
import { DEFAULT_DASHBOARD_DIR, addApiRoutes, addDashboardRoutes } from './routes.js';
import { StatusCollector } from './status.js';
import { guardedRoutes, newCsrfToken } from './guard.js';
import { isRestricted } from '../server/auth.js';
import { CLOSE_CODES } from '../protocol/index.js';
import { CONTROL_DEFAULTS, type ComponentHandle } from './types.js';

export { DEFAULT_DASHBOARD_DIR } from './routes.js';

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

  const collector = new StatusCollector(components, dataDir ? path.resolve(dataDir) : undefined);
  const broadcaster = new StatusBroadcaster(collector, [...components.keys()]);
  const server = new WsServer({
    name: 'control-center',
    port: 9000,
    ...wsOptions,
    wsPaths: ['/ws'],
    serviceInfo: false,
    // DNS rebinding: every request, the /ws upgrade included, must name us in `Host`.
    hostCheck: 'all',
    onOpen: (conn) => {
      // The status is global: a token limited to namespaces gets none of it.
      if (isRestricted(conn.auth)) conn.close(CLOSE_CODES.POLICY_VIOLATION, 'Token limited to namespaces');
      else broadcaster.onOpen(conn);
    },
    commands: {
      subscribe: broadcaster.subscribeCommand,
      status: () => collector.message(),
    },
  });
  broadcaster.server = server;
  const csrfToken = newCsrfToken();
  const routes = guardedRoutes(server, csrfToken);
  addApiRoutes(routes, components, collector, createPrometheusRegistry(components, collector));
  addDashboardRoutes(routes, dashboardDir, csrfToken);
  const unsubscribers = [...components.values()].map((c) => c.onChange(() => broadcaster.schedulePublish()));

  let refreshing: Promise<void> | null = null;
  const tick = async (): Promise<void> => {
    if (!refreshing) {
      refreshing = collector.refresh().finally(() => {
        refreshing = null;
      });
    }
    await refreshing;
    if (server.state === 'running') broadcaster.publishAll();
  };
  let timer: NodeJS.Timeout | null = null;
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
