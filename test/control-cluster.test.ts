/**
 * The control center shows the cluster (docs/cluster.md, "Membership"): `memory-server
 * --cluster …` with the control center passes the cluster options to its supervised memory
 * child, whose status carries `cluster` (node id, applied seq, lag, members, NATS server);
 * REST `/api/status`, Prometheus `/metrics` and the dashboard's memory card show it.
 * One nats-server (R1); a second member runs in this process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryServer } from '../ts/server/memory.js';
import type { ClusterStatus, StatusMessage } from '../ts/protocol/control.js';
import { clusterRows, clusterSummary } from '../ts/dashboard/cluster-view.js';
import { NATS_SERVER, freePort, startNats, until, type NatsCluster } from './helpers/cluster.js';
import { connect, httpRequest, silentLogger } from './helpers/ws-client.js';
import { ensureBuilt, root } from './helpers/build-dist.js';
import { CHROMIUM, hasChromium } from './helpers/client-browser.js';

describe('the dashboard\'s cluster table (rows as shown)', () => {
  const c: ClusterStatus = {
    node_id: 'a',
    applied_seq: 7,
    stream_seq: 9,
    lag: 2,
    nats_server: 'n0',
    members: [
      { node_id: 'a', url: 'ws://h:1', applied_seq: 7, stream_seq: 9, lag: 2, at: '2026-01-01T00:00:00.000Z' },
      { node_id: 'b', url: null, applied_seq: 9, stream_seq: 9, lag: 0, at: '2026-01-01T00:00:00.000Z' },
    ],
  };
  it('one row per member with node id, URL, applied seq and lag; this instance marked', () => {
    expect(clusterRows(c)).toEqual([
      ['a (this)', 'ws://h:1', '7', '2'],
      ['b', '—', '9', '0'],
    ]);
    expect(clusterSummary(c)).toBe('NATS server n0 · stream seq 9 · lag 2 · 2 members');
  });
  it('before the first membership read: this instance alone', () => {
    expect(clusterRows({ ...c, members: [] })).toEqual([['a (this)', '—', '7', '2']]);
  });
});

describe.skipIf(!NATS_SERVER)('control center with a cluster member as its memory child', () => {
  let nats: NatsCluster;
  let proc: ChildProcess;
  let output = '';
  let controlPort: number;
  let b: MemoryServer;
  const dirs: string[] = [];
  const tempDir = (): string => {
    const d = mkdtempSync(path.join(tmpdir(), 'control-cluster-'));
    dirs.push(d);
    return d;
  };
  const status = async (): Promise<StatusMessage> => JSON.parse((await httpRequest(controlPort, 'GET', '/api/status')).body) as StatusMessage;

  beforeAll(async () => {
    ensureBuilt({ dashboard: true });
    nats = await startNats(1);
    controlPort = await freePort();
    const args = [path.join(root, 'dist/cli/main.js'), '--no-inference', '--host', '127.0.0.1', '--port', String(await freePort()), '--control-port', String(controlPort)];
    args.push('--data-dir', tempDir(), '--status-interval-ms', '200', '--log-level', 'warn', '--rate-limit', '0');
    args.push('--cluster', nats.urls.join(','), '--cluster-name', 'ctl', '--node-id', 'cc-a');
    proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    await until(() => {
      if (proc.exitCode !== null) throw new Error(`memory-server exited: ${output}`);
      return output.includes('control center');
    }, 60_000, 'the control center to listen').catch((err: Error) => {
      throw new Error(`${err.message}\n${output}`);
    });
    b = new MemoryServer({ dataDir: tempDir(), host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false, rateLimit: false, cluster: { servers: nats.urls, nodeId: 'cc-b', name: 'ctl' } });
    await b.listen();
  }, 120_000);

  afterAll(async () => {
    await b?.close();
    if (proc?.pid && proc.exitCode === null) {
      const exited = new Promise((r) => proc.once('exit', r));
      process.kill(proc.pid, 'SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (proc.exitCode === null && proc.signalCode === null) process.kill(proc.pid, 'SIGKILL');
    }
    nats?.cleanup();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }, 30_000);

  it('/api/status: the memory component carries its cluster view (members with URLs, applied seq, lag, NATS server)', async () => {
    const st = await until(async () => {
      const s = await status();
      const c = s.components.memory?.cluster;
      return c && c.members.length === 2 && c.members.every((m) => m.url !== null) ? s : null;
    }, 30_000, 'both members in the status', 200);
    const c = st.components.memory!.cluster!;
    expect(c).toMatchObject({ node_id: 'cc-a', nats_server: expect.any(String), applied_seq: expect.any(Number), stream_seq: expect.any(Number), lag: expect.any(Number) });
    expect(c.nats_server).toBe(b.clusterStatus()!.nats_server);
    expect(c.members.map((m) => m.node_id)).toEqual(['cc-a', 'cc-b']);
    expect(c.members[1]!.url).toBe(b.url);
    // A write through B reaches the supervised child: its applied seq follows, lag back to 0.
    const cb = await connect(b.url);
    try {
      for (let i = 0; i < 3; i++) expect((await cb.request('store', { text: `through b ${i}` })).status).toBe('success');
    } finally {
      cb.close();
    }
    const top = b.clusterStatus()!.applied_seq;
    expect(top).toBeGreaterThanOrEqual(3);
    const after = await until(async () => {
      const m = (await status()).components.memory!.cluster!;
      return m.applied_seq === top && m.lag === 0 ? m : null;
    }, 15_000, 'the child to apply the writes', 200);
    expect(after.stream_seq).toBe(top);
  }, 60_000);

  it('/metrics: cluster gauges for lag, sequences and members', async () => {
    const top = b.clusterStatus()!.applied_seq;
    const text = await until(async () => {
      const body = (await httpRequest(controlPort, 'GET', '/metrics')).body;
      return body.includes(`memory_server_cluster_applied_seq{node_id="cc-a"} ${top}`) ? body : null;
    }, 15_000, 'the cluster gauges', 200);
    expect(text).toContain('# TYPE memory_server_cluster_lag gauge');
    expect(text).toContain('memory_server_cluster_lag{node_id="cc-a"} 0');
    expect(text).toContain(`memory_server_cluster_stream_seq{node_id="cc-a"} ${top}`);
    expect(text).toMatch(/memory_server_cluster_members\{node_id="cc-a",nats_server="[^"]+"\} 2/);
    expect(text).toMatch(/memory_server_cluster_member_lag\{member="cc-b"\} 0/);
    // A member's own /metrics has the same families for itself.
    const own = await until(async () => {
      const body = (await httpRequest(b.port, 'GET', '/metrics')).body;
      return body.includes(`memory_server_cluster_applied_seq{node_id="cc-b"} ${top}`) ? body : null;
    }, 15_000, "B's own cluster gauges", 200);
    expect(own).toContain('memory_server_cluster_lag{node_id="cc-b"} 0');
  });

  it.skipIf(!hasChromium())('the dashboard\'s memory card shows the NATS server and one row per member', async () => {
    const userDataDir = tempDir();
    const browser = await chromium.launchPersistentContext(userDataDir, { executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'] });
    try {
      const page = browser.pages()[0] ?? (await browser.newPage());
      await page.goto(`http://127.0.0.1:${controlPort}/`);
      const rows = page.getByTestId('memory-cluster-members').locator('tbody tr');
      const cells = () => rows.evaluateAll((trs) => trs.map((tr) => Array.from(tr.querySelectorAll('td'), (td) => td.textContent)));
      const top = b.clusterStatus()!.applied_seq;
      // Members' figures come from their heartbeats (every 2 s): poll until both show the top.
      await expect
        .poll(cells, { timeout: 15_000 })
        .toEqual([
          ['cc-a (this)', expect.stringMatching(/^ws:\/\/127\.0\.0\.1:\d+$/), String(top), '0'],
          ['cc-b', b.url, String(top), '0'],
        ]);
      expect(await page.getByTestId('memory-cluster-summary').textContent()).toContain(`NATS server ${b.clusterStatus()!.nats_server}`);
    } finally {
      await browser.close();
    }
  }, 60_000);
});
