/**
 * The CLI (`dist/cli/main.js`) as a real process, for the data-directory hardening tests:
 * one-shot runs (`run`) and a server kept running until the test stops it (`startCli`).
 */
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import path from 'node:path';
import { afterEach } from 'vitest';
import { ensureBuilt, root } from '../helpers/build-dist.js';

export const bin = path.join(root, 'dist/cli/main.js');

/** dist/ up to date (ts/cli included) before any child is spawned. */
export const buildCli = (): void => ensureBuilt();

/** One CLI run to its end (bounded: killed after `timeoutMs`). */
export function run(args: string[], timeoutMs = 20_000): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: timeoutMs });
}

export interface RunningCli {
  child: ChildProcess;
  memoryPort: number;
  stderr: () => string;
  /** SIGTERM (graceful: the store is flushed and closed) and wait for the exit code. */
  stop: () => Promise<number | null>;
}

// Every CLI a test starts is killed afterwards, even when the test failed midway.
const started: ChildProcess[] = [];
afterEach(() => {
  for (const c of started.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/** `memory-server` with only the memory server, in this process's child; resolves once it listens. */
export async function startCli(dataDir: string): Promise<RunningCli> {
  const args = ['--host', '127.0.0.1', '--port', '0', '--no-inference', '--no-control', '--data-dir', dataDir, '--log-level', 'silent'];
  const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  started.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const deadline = Date.now() + 20_000;
  while (!stdout.includes('Ctrl-C to stop')) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`CLI did not start: ${stdout}\n${stderr}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  const port = /memory server\s+ws:\/\/[^\s]+:(\d+)/.exec(stdout);
  if (!port) throw new Error(`no memory server port in: ${stdout}`);
  return {
    child,
    memoryPort: Number(port[1]),
    stderr: () => stderr,
    stop: () => {
      child.kill('SIGTERM');
      return exit;
    },
  };
}
