/**
 * Control center (docs/control-center.md) with real forked children: supervisor states, status
 * broadcast and subscribe filters, REST, crash → error → restart, Prometheus, origin checks.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChildComponent, startControlCenter, createControlCenter, inProcessComponents, type ComponentState, type RunningControlCenter, type StatusMessage } from '../ts/control/index.js';
import { createServers } from '../ts/servers.js';
import { connect, httpRequest, silentLogger, until, type TestClient } from './helpers/ws-client.js';
import { ensureBuilt } from './helpers/build-dist.js';

// Children run compiled code: build once for the whole file (tsc can take ~25 s on 2 cores).
beforeAll(() => ensureBuilt(), 180_000);

const dirs: string[] = [];
const tempDir = (): string => {
  const d = mkdtempSync(path.join(tmpdir(), 'control-test-'));
  dirs.push(d);
  return d;
};

const COMPONENT_KEYS = ['name', 'state', 'pid', 'uptime', 'cpu_percent', 'memory_mb', 'error', 'last_updated', 'port', 'connections', 'restarts'].sort();
const METRIC_KEYS = ['timestamp', 'total_concepts', 'total_associations', 'storage_size_mb', 'queries_per_second', 'avg_latency_ms', 'cpu_percent', 'memory_percent'].sort();

const isStatus = (m: any): m is StatusMessage => m && m.type === 'status' && m.status === undefined;

describe('control center with forked children', () => {
  let cc: RunningControlCenter;
  let port: number;
  let client: TestClient;
  const clients: TestClient[] = [];
  const wsUrl = (): string => `ws://127.0.0.1:${port}/ws`;
  // Actions carry the control center's CSRF token (ts/control/guard.ts), as the dashboard's do.
  let csrf = '';
  const api = (method: string, p: string, headers: Record<string, string> = {}) =>
    httpRequest(port, method, p, method === 'POST' ? { 'X-CSRF-Token': csrf, ...headers } : headers);

  beforeAll(async () => {
    cc = await startControlCenter({
      host: '127.0.0.1',
      port: 0,
      dataDir: tempDir(),
      memory: { port: 0, printListening: false },
      inference: { port: 0, printListening: false },
      logLevel: 'warn',
      logger: silentLogger,
      printListening: false,
      statusIntervalMs: 200,
      supervisor: { restartInitialMs: 200, killTimeoutMs: 5_000 },
    });
    port = cc.port;
    csrf = JSON.parse((await httpRequest(port, 'GET', '/api/csrf')).body).csrf_token;
    client = await connect(wsUrl());
    clients.push(client);
  }, 120_000);

  afterAll(async () => {
    for (const c of clients) c.close();
    await cc?.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }, 30_000);

  it('runs both components as child processes with real pids', async () => {
    for (const name of ['memory', 'inference'] as const) {
      const s = cc.components[name]!.status();
      expect(s.state).toBe('running');
      expect(s.pid).toBeGreaterThan(0);
      expect(s.pid).not.toBe(process.pid);
      expect(() => process.kill(s.pid!, 0)).not.toThrow();
      // the pid is really a node running the child entry (configuration came over IPC, not argv)
      const cmdline = readFileSync(`/proc/${s.pid}/cmdline`, 'utf8').split('\0');
      expect(cmdline.some((a) => a.endsWith(path.join('control', 'child.js')))).toBe(true);
      expect(cmdline.join(' ')).not.toMatch(/dataDir|token/);
      expect(s.port).toBeGreaterThan(0);
    }
  });

  it('sends one status message on connect with its top-level shape and real values', async () => {
    const first = client.messages[0] as StatusMessage;
    expect(isStatus(first)).toBe(true);
    expect(Object.keys(first).sort()).toEqual(['components', 'metrics', 'timestamp', 'type']);
    expect(Object.keys(first.components).sort()).toEqual(['inference', 'memory']);
    for (const name of ['memory', 'inference']) {
      const c = first.components[name]!;
      expect(Object.keys(c).sort()).toEqual(COMPONENT_KEYS);
      expect(c.state).toBe('running');
      expect(c.pid).toBe(cc.components[name]!.status().pid);
      expect(c.memory_mb).toBeGreaterThan(10);
      expect(c.uptime).toBeGreaterThanOrEqual(0);
      expect(c.error).toBeNull();
      expect(Number.isNaN(Date.parse(c.last_updated))).toBe(false);
    }
    expect(Object.keys(first.metrics).sort()).toEqual(METRIC_KEYS);
    expect(first.metrics.memory_percent).toBeGreaterThan(0);
    expect(first.metrics.memory_percent).toBeLessThanOrEqual(100);
    expect(Number.isNaN(Date.parse(first.timestamp))).toBe(false);
  });

  it('broadcasts periodically; counts, storage, qps, latency and cpu are measured', async () => {
    const memPort = cc.components.memory!.status().port!;
    const mem = await connect(`ws://127.0.0.1:${memPort}/`);
    clients.push(mem);
    for (let i = 0; i < 20; i++) await mem.request('store', { text: `control center memory number ${i} about topic ${i % 4}` });
    for (let i = 0; i < 20; i++) await mem.request('retrieve', { query: 'topic 2', count: 3 });
    const before = client.messages.length;
    const m = await client.waitFor<StatusMessage>(
      (x) => isStatus(x) && x.metrics.total_concepts === 20 && x.metrics.queries_per_second! > 0 && x.components.memory!.connections === 1,
      10_000,
    );
    expect(client.messages.length).toBeGreaterThan(before);
    expect(m.metrics.storage_size_mb).toBeGreaterThan(0);
    expect(m.metrics.avg_latency_ms).toBeGreaterThanOrEqual(0);
    expect(m.metrics.total_associations).toBeGreaterThanOrEqual(0);
    // CPU % of one core comes from the child's cpuUsage deltas between snapshots
    await client.waitFor<StatusMessage>((x) => isStatus(x) && typeof x.components.memory!.cpu_percent === 'number', 5_000);
    mem.close();
  });

  it('subscribe filters components and metrics (top level and inside data)', async () => {
    const c = await connect(wsUrl());
    clients.push(c);
    c.send({ type: 'subscribe', components: ['memory'], metrics: ['total_concepts', 'cpu'] });
    const ack = await c.waitFor((m) => m.status === 'success' && m.type === 'subscribe', 5_000);
    expect(ack.data).toEqual({ components: ['memory'], metrics: ['cpu_percent', 'total_concepts'] });
    const n = c.messages.length;
    const filtered = await c.waitFor<StatusMessage>((m) => isStatus(m) && c.messages.indexOf(m) >= n, 5_000);
    expect(Object.keys(filtered.components)).toEqual(['memory']);
    expect(Object.keys(filtered.metrics).sort()).toEqual(['cpu_percent', 'timestamp', 'total_concepts']);

    c.send({ type: 'subscribe', id: 's2', data: { components: [], metrics: [] } });
    await c.waitFor((m) => m.id === 's2', 5_000);
    const n2 = c.messages.length;
    const none = await c.waitFor<StatusMessage>((m) => isStatus(m) && c.messages.indexOf(m) >= n2, 5_000);
    expect(none.components).toEqual({});
    expect(Object.keys(none.metrics)).toEqual(['timestamp']);

    c.send({ type: 'subscribe', id: 's3', data: { metrics: ['queries_per_second'] } });
    await c.waitFor((m) => m.id === 's3', 5_000);
    const n3 = c.messages.length;
    const compsOnlyQps = await c.waitFor<StatusMessage>((m) => isStatus(m) && c.messages.indexOf(m) >= n3, 5_000);
    expect(Object.keys(compsOnlyQps.components).sort()).toEqual(['inference', 'memory']);
    expect(Object.keys(compsOnlyQps.metrics).sort()).toEqual(['queries_per_second', 'timestamp']);

    const bad = await c.request('subscribe', { components: ['nope'] });
    expect(bad.status).toBe('error');
    expect(bad.code).toBe('invalid_request');
    // the default subscriber is unaffected
    const all = await client.waitFor<StatusMessage>((m) => isStatus(m) && client.messages.indexOf(m) > client.messages.length - 2, 5_000);
    expect(Object.keys(all.components).sort()).toEqual(['inference', 'memory']);
  });

  it('REST: status and components', async () => {
    const st = await api('GET', '/api/status');
    expect(st.status).toBe(200);
    const body = JSON.parse(st.body) as StatusMessage;
    expect(body.type).toBe('status');
    expect(body.components.memory!.state).toBe('running');
    const comps = await api('GET', '/api/components');
    expect(JSON.parse(comps.body).components.inference.state).toBe('running');
  });

  it('REST: stop, start and restart settle and change the state (seen on the WebSocket too)', async () => {
    const oldPid = cc.components.inference!.status().pid!;
    let r = await api('POST', '/api/components/inference/stop');
    expect(r.status).toBe(200);
    let body = JSON.parse(r.body);
    expect(body).toMatchObject({ success: true, component: { state: 'stopped', pid: null, port: null } });
    await until(() => {
      try {
        process.kill(oldPid, 0);
        return false;
      } catch {
        return true;
      }
    }, 5_000);
    await client.waitFor((m) => isStatus(m) && m.components.inference.state === 'stopped', 5_000);

    r = await api('POST', '/api/components/inference/start');
    body = JSON.parse(r.body);
    expect(body.success).toBe(true);
    expect(body.component.state).toBe('running');
    expect(body.component.pid).toBeGreaterThan(0);
    expect(body.component.pid).not.toBe(oldPid);

    const pid2 = body.component.pid;
    const restarts = body.component.restarts;
    r = await api('POST', '/api/components/inference/restart');
    body = JSON.parse(r.body);
    expect(body.success).toBe(true);
    expect(body.component.state).toBe('running');
    expect(body.component.pid).not.toBe(pid2);
    expect(body.component.restarts).toBe(restarts + 1);
  });

  it('REST: unknown component → 404 { success: false, error }', async () => {
    const r = await api('POST', '/api/components/storage/start');
    expect(r.status).toBe(404);
    const body = JSON.parse(r.body);
    expect(body.success).toBe(false);
    expect(body.error).toMatch(/storage/);
  });

  it('REST POST from a refused Origin → 403; from an allowed one → CORS headers', async () => {
    const bad = await api('POST', '/api/components/memory/restart', { Origin: 'http://evil.example' });
    expect(bad.status).toBe(403);
    expect(cc.components.memory!.status().state).toBe('running');
    const ok = await api('GET', '/api/components', { Origin: 'http://localhost:3000' });
    expect(ok.status).toBe(200);
    expect(ok.headers['access-control-allow-origin']).toBe('http://localhost:3000');
  });

  it('a killed child (kill -9) shows error with the reason, then restarts with backoff', async () => {
    const before = cc.components.memory!.status();
    process.kill(before.pid!, 'SIGKILL');
    const err = await client.waitFor<StatusMessage>((m) => isStatus(m) && m.components.memory!.state === 'error', 5_000);
    expect(err.components.memory!.error).toMatch(/SIGKILL/);
    expect(err.components.memory!.pid).toBeNull();
    const back = await client.waitFor<StatusMessage>(
      (m) => isStatus(m) && m.components.memory!.state === 'running' && client.messages.indexOf(m) > client.messages.indexOf(err),
      20_000,
    );
    expect(back.components.memory!.pid).not.toBe(before.pid);
    expect(back.components.memory!.restarts).toBe(before.restarts + 1);
    expect(back.components.memory!.error).toBeNull();
  }, 30_000);

  it('GET /metrics is Prometheus text with per-command counters and latency histograms', async () => {
    const memPort = cc.components.memory!.status().port!;
    const mem = await connect(`ws://127.0.0.1:${memPort}/`);
    clients.push(mem);
    for (let i = 0; i < 5; i++) await mem.request('store', { text: `prometheus ${i}` });
    await mem.request('stats');
    // snapshots come up every second
    let text = '';
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline) {
      const r = await api('GET', '/metrics');
      expect(r.status).toBe(200);
      expect(r.headers['content-type']).toMatch(/^text\/plain/);
      text = r.body;
      if (/memory_server_commands\{component="memory",command="store"\} 5\b/.test(text)) break;
      await new Promise((res) => setTimeout(res, 200));
    }
    const sample = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.]+(e[-+]?[0-9]+)?|NaN|[+-]Inf)$/;
    for (const line of text.split('\n')) {
      if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue;
      expect(line).toMatch(sample);
    }
    expect(text).toMatch(/# TYPE memory_server_commands counter/);
    expect(text).toMatch(/memory_server_commands\{component="memory",command="store"\} 5\b/);
    expect(text).toMatch(/memory_server_commands\{component="memory",command="stats"\} 1\b/);
    expect(text).toMatch(/# TYPE memory_server_command_latency_seconds histogram/);
    expect(text).toMatch(/memory_server_command_latency_seconds_bucket\{component="memory",command="store",le="\+Inf"\} 5\b/);
    expect(text).toMatch(/memory_server_command_latency_seconds_count\{component="memory",command="store"\} 5\b/);
    expect(text).toMatch(/memory_server_component_up\{component="memory"\} 1/);
    expect(text).toMatch(/memory_server_component_up\{component="inference"\} 1/);
    expect(text).toMatch(/memory_server_component_restarts\{component="memory"\} [1-9]/);
    mem.close();
  });

  it('GET /healthz', async () => {
    const r = await api('GET', '/healthz');
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ status: 'ok', components: { memory: 'running', inference: 'running' } });
  });

  it('upgrades only on /ws; other paths 404', async () => {
    const r = await api('GET', '/nope');
    expect(r.status).toBe(404);
  });
});

describe('control center over in-process servers', () => {
  it('supervises createServers() servers with the same status shape', async () => {
    const dataDir = tempDir();
    const common = { host: '127.0.0.1', logger: silentLogger, printListening: false };
    const servers = await createServers({ ...common, memory: { port: 0, dataDir }, inference: { port: 0 } });
    const components = inProcessComponents(servers, {
      memory: async () => (await createServers({ ...common, memory: { port: 0, dataDir }, inference: false })).memory!,
    });
    const cc = createControlCenter({ components, host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false, statusIntervalMs: 200 });
    await cc.listen();
    try {
      const c = await connect(`ws://127.0.0.1:${cc.port}/ws`);
      const first = await c.waitFor<StatusMessage>(isStatus, 5_000);
      expect(first.components.memory!.pid).toBe(process.pid);
      expect(first.components.memory!.state).toBe('running');
      expect(Object.keys(first.components.memory!).sort()).toEqual(COMPONENT_KEYS);
      const csrf = { 'X-CSRF-Token': JSON.parse((await httpRequest(cc.port, 'GET', '/api/csrf')).body).csrf_token };
      let r = await httpRequest(cc.port, 'POST', '/api/components/memory/restart', csrf);
      expect(JSON.parse(r.body).component).toMatchObject({ state: 'running', restarts: 1 });
      r = await httpRequest(cc.port, 'POST', '/api/components/memory/stop', csrf);
      expect(JSON.parse(r.body).component.state).toBe('stopped');
      await c.waitFor((m) => isStatus(m) && m.components.memory.state === 'stopped', 5_000);
      c.close();
    } finally {
      await cc.close();
      for (const comp of components) await comp.stop();
      await servers.close();
    }
  });
});

describe('supervisor backoff', () => {
  it('a child that cannot start shows error with its reason and is retried with a doubling backoff', async () => {
    const notADir = path.join(tempDir(), 'file');
    writeFileSync(notADir, 'not a directory');
    const c = new ChildComponent({
      name: 'memory',
      serverOptions: { host: '127.0.0.1', port: 0, dataDir: notADir, printListening: false },
      logLevel: 'silent',
      restartInitialMs: 100,
      restartMaxMs: 400,
    });
    const events: Array<{ state: ComponentState; at: number; error: string | null }> = [];
    c.onChange((s) => events.push({ state: s.state, at: Date.now(), error: s.error }));
    await expect(c.start()).rejects.toThrow(/failed to start/);
    expect(c.status().state).toBe('error');
    expect(c.status().error).toMatch(/exited with code 1: .*data directory/i);
    await until(() => events.filter((e) => e.state === 'error').length >= 5, 15_000);
    await c.stop();
    expect(c.status().state).toBe('stopped');
    const countAtStop = events.length;
    // gaps between an error and the next start: 100, 200, 400, 400 ms (setTimeout never fires early)
    const errors = events.filter((e) => e.state === 'error');
    const starts = events.filter((e) => e.state === 'starting');
    const gaps = errors.slice(0, 4).map((e) => starts.find((s) => s.at >= e.at)!.at - e.at);
    [100, 200, 400, 400].forEach((min, i) => expect(gaps[i]).toBeGreaterThanOrEqual(min - 2));
    expect(c.status().restarts).toBeGreaterThanOrEqual(4);
    // stopped means no more retries
    await new Promise((r) => setTimeout(r, 600));
    expect(events.length).toBe(countAtStop);
  }, 30_000);
});

describe('supervisor stop', () => {
  it('stop sends SIGTERM, then SIGKILL after killTimeoutMs to a child that ignores it', async () => {
    const script = path.join(tempDir(), 'stubborn.cjs');
    writeFileSync(
      script,
      `process.on('SIGTERM', () => {});
       process.on('message', (m) => { if (m.type === 'start') process.send({ type: 'ready', port: 1, pid: process.pid }); });
       setInterval(() => {}, 1000);`,
    );
    const c = new ChildComponent({ name: 'inference', childPath: script, killTimeoutMs: 300 });
    await c.start();
    const pid = c.status().pid!;
    expect(c.status().state).toBe('running');
    const t0 = Date.now();
    await c.stop();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    expect(c.status()).toMatchObject({ state: 'stopped', pid: null, error: null });
    expect(() => process.kill(pid, 0)).toThrow();
  });
});
