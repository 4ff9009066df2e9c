/**
 * Issue #23 (9): a supervised child that stops answering (kill -STOP) is reported
 * `unresponsive` (status and /healthz), and restarted if it stays so.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlCenter, type ComponentState, type RunningControlCenter } from '../../ts/control/index.js';
import { httpRequest, silentLogger, until } from '../helpers/ws-client.js';
import { ensureBuilt } from '../helpers/build-dist.js';

beforeAll(() => ensureBuilt(), 180_000);

describe('a hung memory child', () => {
  let cc: RunningControlCenter;
  let dataDir: string;
  const stopped: number[] = [];

  beforeAll(async () => {
    dataDir = mkdtempSync(path.join(tmpdir(), 'hardening-hung-'));
    cc = await startControlCenter({
      host: '127.0.0.1',
      port: 0,
      dataDir,
      memory: { port: 0, printListening: false },
      inference: false,
      logLevel: 'warn',
      logger: silentLogger,
      printListening: false,
      statusIntervalMs: 200,
      supervisor: {
        forwardOutput: false,
        restartInitialMs: 100,
        killTimeoutMs: 2_000,
        pingIntervalMs: 100,
        unresponsiveAfterMissed: 3,
        unresponsiveRestartMs: 1_500,
      },
    });
  }, 120_000);

  afterAll(async () => {
    for (const pid of stopped) {
      try {
        process.kill(pid, 'SIGCONT');
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    await cc?.close();
    rmSync(dataDir, { recursive: true, force: true });
  }, 30_000);

  it('goes unresponsive (healthz 503), then is killed and restarted with a new pid', async () => {
    const memory = cc.components.memory!;
    expect(memory.status().state).toBe('running');
    expect((await httpRequest(cc.port, 'GET', '/healthz')).status).toBe(200);
    const pid = memory.status().pid!;
    const seen: ComponentState[] = [];
    const off = memory.onChange((s) => seen.push(s.state));
    try {
      process.kill(pid, 'SIGSTOP');
      stopped.push(pid);
      await until(() => memory.status().state === 'unresponsive', 10_000, 20);
      expect(memory.status().pid).toBe(pid);
      expect(memory.status().error).toMatch(/no answer to \d+ pings/);
      const health = await httpRequest(cc.port, 'GET', '/healthz');
      expect(health.status).toBe(503);
      expect(JSON.parse(health.body)).toMatchObject({ status: 'unresponsive', components: { memory: 'unresponsive' } });
      // Also in the status message the dashboard renders.
      expect(cc.controlCenter.status().components.memory!.state).toBe('unresponsive');

      await until(() => memory.status().state === 'running' && memory.status().pid !== pid, 20_000, 50);
      expect(() => process.kill(pid, 0)).toThrow(); // the stopped one was killed
      expect(seen).toContain('error');
      expect(memory.status().restarts).toBeGreaterThanOrEqual(1);
      expect((await httpRequest(cc.port, 'GET', '/healthz')).status).toBe(200);
    } finally {
      off();
    }
  }, 60_000);

  it('a child that answers again goes back to running without a restart', async () => {
    const memory = cc.components.memory!;
    await until(() => memory.status().state === 'running', 10_000, 50);
    const pid = memory.status().pid!;
    const restarts = memory.status().restarts;
    process.kill(pid, 'SIGSTOP');
    stopped.push(pid);
    await until(() => memory.status().state === 'unresponsive', 10_000, 20);
    process.kill(pid, 'SIGCONT');
    await until(() => memory.status().state === 'running', 10_000, 20);
    expect(memory.status().pid).toBe(pid);
    expect(memory.status().restarts).toBe(restarts);
    expect(memory.status().error).toBeNull();
  }, 60_000);
});
