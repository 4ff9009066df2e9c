/**
 * Test helpers for the client tests: real servers via createServers() on
 * 127.0.0.1 port 0 with a temp data dir, restartable on the same port with the
 * same data, plus a bounded `until` poll.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createServers, type CreateServersOptions, type Servers } from '../../ts/servers.js';
import { silentLogger } from './ws-client.js';

export interface TestServers {
  servers: Servers;
  dataDir: string;
  memoryPort: number;
  inferencePort: number;
  memoryUrl: string;
  inferenceUrl: string;
  /** Closes the servers (clients see 1001). */
  stop(): Promise<void>;
  /**
   * Starts new servers with the same data dir, on the same ports (default) or on new ones
   * (`memoryPort`/`memoryUrl` are updated). Note: a server that closed connections itself
   * leaves TIME_WAIT sockets on its port, and the exclusive listen then fails for ~60 s.
   */
  restart(options?: { samePort?: boolean }): Promise<void>;
}

const dirs: string[] = [];

export function tempDir(prefix = 'memclient-test-'): string {
  const d = mkdtempSync(path.join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

export function removeTempDirs(): void {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

const base = (extra: CreateServersOptions = {}): CreateServersOptions => ({
  host: '127.0.0.1',
  logger: silentLogger,
  printListening: false,
  closeTimeoutMs: 2_000,
  ...extra,
});

export async function startServers(options: { inference?: boolean; extra?: CreateServersOptions } = {}): Promise<TestServers> {
  const dataDir = tempDir();
  const withInference = options.inference ?? true;
  const make = (memPort: number, infPort: number): Promise<Servers> =>
    createServers(
      base({
        ...options.extra,
        memory: { port: memPort, dataDir },
        inference: withInference ? { port: infPort, portRange: 0 } : false,
      }),
    );
  let servers = await make(0, 0);
  const memoryPort = servers.memory!.port;
  const inferencePort = servers.inference?.port ?? 0;
  const t: TestServers = {
    servers,
    dataDir,
    memoryPort,
    inferencePort,
    memoryUrl: `ws://127.0.0.1:${memoryPort}`,
    inferenceUrl: `ws://127.0.0.1:${inferencePort}`,
    stop: () => t.servers.close(),
    async restart({ samePort = true } = {}) {
      if (!samePort) {
        servers = await make(0, 0);
        t.servers = servers;
        t.memoryPort = servers.memory!.port;
        t.inferencePort = servers.inference?.port ?? 0;
        t.memoryUrl = `ws://127.0.0.1:${t.memoryPort}`;
        t.inferenceUrl = `ws://127.0.0.1:${t.inferencePort}`;
        return;
      }
      // The port was just released; retry briefly if the OS has not freed it yet.
      let lastErr: unknown;
      for (let i = 0; i < 20; i++) {
        try {
          servers = await make(t.memoryPort, t.inferencePort);
          t.servers = servers;
          return;
        } catch (err) {
          lastErr = err;
          await sleep(50);
        }
      }
      throw lastErr;
    },
  };
  return t;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `pred` every 10 ms, at most `timeoutMs`. */
export async function until(pred: () => boolean, timeoutMs = 5_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}
