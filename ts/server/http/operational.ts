/**
 * `/healthz` (liveness), `/readyz` (readiness) and `/metrics` (Prometheus, prom-client) on a
 * memory or inference server's own port: what an orchestrator or scraper needs without the
 * control center. `/metrics` has the control center's metric names (registerComponentMetrics),
 * for this one component. The two health routes are public (probes carry no token);
 * `/metrics` needs the token when one is configured, and is refused (403) to a token limited to
 * some namespaces, as on the control center.
 */
import { Registry } from 'prom-client';
import type { ServerHealthReply } from '../../protocol/http.js';
import { registerComponentMetrics } from '../../control/prometheus.js';
import type { ServerSnapshot } from '../../control/types.js';
import { VERSION } from '../../version.js';
import { isRestricted } from '../auth.js';
import { httpError } from './router.js';
import type { WsServer } from '../ws-server.js';

export interface OperationalTarget {
  readonly ws: WsServer;
  /** `memory` or `inference`: the `component` label of the metrics. */
  readonly component: string;
  /** Named readiness checks, each true when passed. */
  readiness(): Record<string, boolean>;
  /** The server's metric snapshot (control/instrument.ts). */
  snapshot(): ServerSnapshot;
}

/** Registers GET /healthz, /readyz and /metrics. */
export function addOperationalRoutes(target: OperationalTarget): void {
  const { ws, component } = target;
  const service = ws.options.name;
  ws.http(
    'get',
    '/healthz',
    () => {
      // Alive while the event loop answers; a closing server is still alive (finishing work).
      const body: ServerHealthReply = { status: 'ok', service, version: VERSION };
      return { body };
    },
    { public: true },
  );
  ws.http(
    'get',
    '/readyz',
    () => {
      const checks: Record<string, boolean> = { listening: ws.state === 'running', ...target.readiness() };
      const ready = Object.values(checks).every(Boolean);
      const body: ServerHealthReply = { status: ready ? 'ok' : 'not_ready', service, version: VERSION, checks };
      return { status: ready ? 200 : 503, body };
    },
    { public: true },
  );
  ws.http('get', '/metrics', async (req) => {
    // Store-wide figures: not for a token limited to some namespaces (as on the control center).
    if (isRestricted(req.auth)) return httpError('forbidden', 'Forbidden: a token limited to namespaces cannot read /metrics');
    // A registry per scrape (a few objects) around one snapshot every family reads.
    const snapshot = target.snapshot();
    const registry = new Registry();
    registerComponentMetrics(registry, () => [{ component, snapshot }]);
    return { headers: { 'Content-Type': registry.contentType }, body: await registry.metrics() };
  });
}
