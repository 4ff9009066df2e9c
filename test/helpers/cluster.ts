/**
 * Cluster test helpers: `nats-server` processes with JetStream (one, or three clustered)
 * and memory-server instances as CLI processes on loopback, each on a free port, each
 * stopped by PID when the test ends. Every wait is bounded.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { root } from './build-dist.js';

export const NATS_SERVER = ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server'].find((p) => existsSync(p)) ?? (spawnSync('which', ['nats-server']).stdout?.toString().trim() || null);

if (!NATS_SERVER) console.warn('nats-server is not installed: the cluster tests are skipped (apt-get install -y nats-server)');

const bin = path.join(root, 'dist/cli/main.js');

/** A free TCP port on 127.0.0.1 (asked of the OS, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `f` every `everyMs` until it returns a truthy value or `timeoutMs` passes. */
/** Whether every thread of process `pid` is stopped (state `T` or `t` in /proc/<pid>/task/<tid>/stat). */
function allThreadsStopped(pid: number): boolean {
  const dir = `/proc/${pid}/task`;
  return readdirSync(dir).every((tid) => {
    try {
      // The state follows the command name, which is in parentheses and may hold spaces.
      const stat = readFileSync(`${dir}/${tid}/stat`, 'utf8');
      return /^[Tt]$/.test(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3));
    } catch {
      return true; // the thread exited
    }
  });
}

export async function until<T>(f: () => T | Promise<T>, timeoutMs: number, what: string, everyMs = 50): Promise<NonNullable<T>> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(everyMs);
  }
}

/** Every process a test file started, for `stopAll()` in afterAll/afterEach. */
const started = new Set<ChildProcess>();

export function stopAll(): void {
  for (const p of started) if (p.exitCode === null && p.signalCode === null && p.pid) process.kill(p.pid, 'SIGKILL');
  started.clear();
}

function track(p: ChildProcess): Promise<number | null> {
  started.add(p);
  return new Promise((r) => p.once('exit', (code) => r(code)));
}

export interface NatsNode {
  name: string;
  port: number;
  clusterPort: number;
  url: string;
  dir: string;
  proc: ChildProcess;
  log: () => string;
  exited: Promise<number | null>;
}

export interface NatsCluster {
  nodes: NatsNode[];
  urls: string[];
  /** Starts node i again (same store directory and ports) after a kill. */
  restart(i: number): Promise<NatsNode>;
  kill(i: number, signal?: NodeJS.Signals): Promise<void>;
  cleanup(): void;
}

/** A nats-server could not bind a port `freePort` had found free (another process took it in between). */
class PortTaken extends Error {}

/**
 * `n` nats-servers with JetStream, clustered when n > 1, each with its own store directory.
 * Started again on other ports (up to 4 times) when a port found free was taken before the
 * server bound it — test files run in parallel, each choosing ports the same way.
 */
export async function startNats(n: number): Promise<NatsCluster> {
  if (!NATS_SERVER) throw new Error('nats-server is not installed');
  for (let attempt = 1; ; attempt++) {
    try {
      return await startNatsOnce(n);
    } catch (err) {
      if (!(err instanceof PortTaken) || attempt >= 4) throw err;
    }
  }
}

async function startNatsOnce(n: number): Promise<NatsCluster> {
  const base = mkdtempSync(path.join(os.tmpdir(), 'ms-nats-'));
  const specs: Array<{ name: string; port: number; clusterPort: number; dir: string }> = [];
  for (let i = 0; i < n; i++) specs.push({ name: `n${i}`, port: await freePort(), clusterPort: await freePort(), dir: path.join(base, `n${i}`) });
  const spawnNode = async (i: number): Promise<NatsNode> => {
    const s = specs[i]!;
    const args = ['-js', '-sd', s.dir, '-p', String(s.port), '-a', '127.0.0.1', '-n', s.name];
    if (n > 1) {
      const routes = specs.filter((_, j) => j !== i).map((o) => `nats://127.0.0.1:${o.clusterPort}`);
      args.push('--cluster_name', 'c', '--cluster', `nats://127.0.0.1:${s.clusterPort}`, '--routes', routes.join(','));
    }
    const proc = spawn(NATS_SERVER!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    proc.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    const exited = track(proc);
    await until(() => log.includes('Server is ready') || proc.exitCode !== null, 15_000, `nats-server ${s.name} to start`);
    // The cluster (route) port is bound after "Server is ready": a taken one ends it just after.
    if (proc.exitCode === null && n > 1) await until(() => log.includes('Listening for route connections') || proc.exitCode !== null, 15_000, `nats-server ${s.name} to listen for routes`);
    if (proc.exitCode !== null || log.includes('[FTL]')) {
      if (proc.exitCode === null && proc.pid) process.kill(proc.pid, 'SIGKILL');
      throw new (/address already in use/.test(log) ? PortTaken : Error)(`nats-server ${s.name} exited: ${log}`);
    }
    return { ...s, url: `nats://127.0.0.1:${s.port}`, proc, log: () => log, exited };
  };
  const spawned = await Promise.allSettled(specs.map((_, i) => spawnNode(i)));
  const failed = spawned.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    for (const r of spawned) if (r.status === 'fulfilled' && r.value.proc.pid && r.value.proc.exitCode === null) process.kill(r.value.proc.pid, 'SIGKILL');
    rmSync(base, { recursive: true, force: true });
    throw failed.reason;
  }
  const nodes = spawned.map((r) => (r as PromiseFulfilledResult<NatsNode>).value);
  const cluster: NatsCluster = {
    nodes,
    urls: nodes.map((x) => x.url),
    async restart(i) {
      nodes[i] = await spawnNode(i);
      return nodes[i]!;
    },
    async kill(i, signal = 'SIGKILL') {
      const node = nodes[i]!;
      if (node.proc.pid && node.proc.exitCode === null) process.kill(node.proc.pid, signal);
      if (signal === 'SIGKILL' || signal === 'SIGTERM') await Promise.race([node.exited, sleep(10_000)]);
      // A partition test must not write before the pause holds: wait until every thread of
      // the server is stopped (state T in /proc), as the kernel reports it.
      if (signal === 'SIGSTOP' && node.proc.pid) await until(() => allThreadsStopped(node.proc.pid!), 10_000, `nats-server ${node.name} to stop`, 10);
    },
    cleanup() {
      for (const x of nodes) if (x.proc.exitCode === null && x.proc.signalCode === null && x.proc.pid) process.kill(x.proc.pid, 'SIGKILL');
      rmSync(base, { recursive: true, force: true });
    },
  };
  return cluster;
}

export interface Instance {
  nodeId: string;
  port: number;
  url: string;
  dataDir: string;
  proc: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/** A memory-server CLI process joined to the cluster at `natsUrls` (memory server only). */
export async function startInstance(o: { natsUrls: string[]; dataDir: string; nodeId: string; extra?: string[]; port?: number }): Promise<Instance> {
  const args = [bin, '--no-control', '--no-inference', '--host', '127.0.0.1', '--port', String(o.port ?? 0), '--data-dir', o.dataDir];
  args.push('--cluster', o.natsUrls.join(','), '--node-id', o.nodeId, '--log-level', 'warn', '--rate-limit', '0', ...(o.extra ?? []));
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = track(proc);
  const port = await until(
    () => {
      if (proc.exitCode !== null) throw new Error(`instance ${o.nodeId} exited: ${out}`);
      const m = /memory server\s+ws:\/\/[^\s]+:(\d+)/.exec(out);
      return m ? Number(m[1]) : 0;
    },
    60_000,
    `instance ${o.nodeId} to listen`,
  ).catch((err: Error) => {
    throw new Error(`${err.message}\n${out}`);
  });
  return { nodeId: o.nodeId, port, url: `ws://127.0.0.1:${port}`, dataDir: o.dataDir, proc, output: () => out, exited };
}

export async function killInstance(i: Instance): Promise<void> {
  if (i.proc.pid && i.proc.exitCode === null && i.proc.signalCode === null) process.kill(i.proc.pid, 'SIGKILL');
  await Promise.race([i.exited, sleep(10_000)]);
}
