// Starting server and load-generator processes for the multi-process benchmarks.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { call, startChild, stopAll, waitEvent } from './procs.js';
import { removeDir, tempDir } from '../common.js';

const here = dirname(fileURLToPath(import.meta.url));

/** Starts a memory server process; cfg as in server-child.js (dir defaults to a fresh temp dir, removed by stop()). */
export async function startServer(cfg, { readyTimeoutMs = 150_000, fds = 0 } = {}) {
  const dir = cfg.dir ?? tempDir('ms-bench-srv-');
  const child = startChild(join(here, 'server-child.js'), {
    env: { BENCH_SERVER: JSON.stringify({ ...cfg, dir }) },
    fds,
    name: `server(${cfg.transport ?? 'uws'}/${cfg.store ?? 'native'})`,
  });
  try {
    const ready = await waitEvent(child, 'ready', readyTimeoutMs);
    return {
      child,
      ready,
      port: ready.port,
      url: `ws://127.0.0.1:${ready.port}/`,
      dir,
      async stop() {
        await stopAll([child]);
        if (!cfg.dir) removeDir(dir);
      },
    };
  } catch (err) {
    await stopAll([child], 2000);
    if (!cfg.dir) removeDir(dir);
    throw err;
  }
}

export async function startLoadGens(n, { fds = 0 } = {}) {
  const gens = [];
  try {
    for (let i = 0; i < n; i++) gens.push(startChild(join(here, 'load-child.js'), { fds, name: `loadgen${i}` }));
    await Promise.all(gens.map((g) => waitEvent(g, 'ready', 30_000)));
    return gens;
  } catch (err) {
    await stopAll(gens, 2000);
    throw err;
  }
}

/** Splits `total` connections over the generators and opens them; returns per-generator results. */
export async function connectAll(gens, url, total, { concurrency = 100, timeoutMs = 120_000, raw = false } = {}) {
  const per = gens.map((_, i) => Math.floor(total / gens.length) + (i < total % gens.length ? 1 : 0));
  return Promise.all(gens.map((g, i) => call(g, 'connect', { url, n: per[i], concurrency, raw }, timeoutMs)));
}

/** CPU time (µs, user+system) of a server process between two cpu snapshots. */
export const cpuDelta = (a, b) => ({
  user_us: b.user - a.user,
  system_us: b.system - a.system,
  total_us: b.user - a.user + (b.system - a.system),
  wall_ms: b.wall - a.wall,
});

let clkTck = 0;
/**
 * CPU time (µs) of a process from /proc/<pid>/stat, read by the parent: unlike an IPC
 * cpuUsage() call it is not delayed when the server's event loop is blocked (JS baselines).
 * Resolution 1 clock tick (10 ms).
 */
export function procCpuUs(pid) {
  clkTck ||= Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After the comm field: f[0] = state (field 3) … utime = field 14 → f[11], stime = field 15 → f[12].
  return { user: (Number(f[11]) * 1e6) / clkTck, system: (Number(f[12]) * 1e6) / clkTck, wall: performance.now() };
}

/**
 * Runs a pipelined load from one generator and measures the server's CPU time inside the
 * generator's measurement window. Returns { load, cpu, storeBefore, storeAfter }.
 */
export async function measuredPipeline(server, gen, pipelineArgs, { timeoutMs = 120_000 } = {}) {
  // Read /proc the moment the generator's marks arrive (not after the IPC calls below, which a
  // blocked server answers late).
  let p0 = null;
  let p1 = null;
  const onMark = (m) => {
    if (m?.event === 'mark0') p0 = procCpuUs(server.child.pid);
    else if (m?.event === 'mark1') p1 = procCpuUs(server.child.pid);
  };
  gen.on('message', onMark);
  try {
    const run = call(gen, 'pipeline', pipelineArgs, timeoutMs);
    run.catch(() => {});
    await waitEvent(gen, 'mark0', timeoutMs);
    const cpu0P = call(server.child, 'cpu', {}, timeoutMs);
    const st0P = call(server.child, 'storeStats', {}, timeoutMs);
    await waitEvent(gen, 'mark1', timeoutMs);
    const [cpu0, st0] = await Promise.all([cpu0P, st0P]);
    const [cpu1, st1] = await Promise.all([call(server.child, 'cpu', {}, timeoutMs), call(server.child, 'storeStats', {}, timeoutMs)]);
    const load = await run;
    // cpu: the server's own process.cpuUsage() over IPC (exact, but answered only when its event
    // loop is free: use it for responsive servers); procCpu: /proc ticks at the window's edges.
    return { load, cpu: cpuDelta(cpu0, cpu1), procCpu: cpuDelta(p0, p1), storeBefore: st0, storeAfter: st1 };
  } finally {
    gen.off('message', onMark);
  }
}
