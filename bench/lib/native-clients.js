// Native clients in Rust on epoll, each its own cargo workspace under bench/, built with cargo
// on first use and driven over stdin/stdout lines: bench/broadcast-client (broadcast receipts,
// one process per share of the connections) and bench/load-client (open-loop request load).
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const benchDir = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Builds bench/<name> (cargo, release; a no-op when up to date) and returns its binary's path. */
function buildCrate(name) {
  const crate = join(benchDir, name);
  const binary = join(crate, 'target', 'release', name);
  execFileSync('cargo', ['build', '--release', '--quiet', '--manifest-path', join(crate, 'Cargo.toml')], { stdio: 'inherit' });
  if (!existsSync(binary)) throw new Error(`cargo did not produce ${binary}`);
  return binary;
}

export const buildBroadcastClient = () => buildCrate('broadcast-client');
export const buildLoadClient = () => buildCrate('load-client');

function lineReader(child) {
  let buf = '';
  const lines = [];
  const waiters = [];
  let ended = false;
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
    while (lines.length && waiters.length) waiters.shift().resolve(lines.shift());
  });
  child.on('exit', (code, signal) => {
    ended = true;
    for (const w of waiters.splice(0)) w.reject(new Error(`${child.spawnfile} ${child.pid} exited with ${code ?? signal}`));
  });
  return (timeoutMs) =>
    new Promise((resolve, reject) => {
      if (lines.length) return resolve(lines.shift());
      if (ended) return reject(new Error(`${child.spawnfile} ${child.pid} has exited`));
      const timer = setTimeout(() => reject(new Error(`${child.spawnfile} ${child.pid}: no reply in ${timeoutMs} ms`)), timeoutMs);
      waiters.push({
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
}

/**
 * Opens `total` connections to `url` from `procs` client processes. Returns
 * { procs: [{ pid, opened, failed }], report(), setPoll(µs), stop() }; report() resolves to one
 * { open, receipts: { [seq]: { count, first, last } } } per process (CLOCK_MONOTONIC ms).
 */
export async function startNativeClients(bin, url, total, procs, { timeoutMs = 150_000 } = {}) {
  const u = new URL(url);
  const kids = [];
  const stop = () => Promise.all(kids.map(({ child }) => quit(child)));
  try {
    for (let i = 0; i < procs; i++) {
      const n = Math.floor(total / procs) + (i < total % procs ? 1 : 0);
      const child = spawn(bin, [u.hostname, u.port, u.pathname || '/', String(n)], { stdio: ['pipe', 'pipe', 'inherit'] });
      kids.push({ child, next: lineReader(child) });
    }
    const ready = await Promise.all(
      kids.map(async ({ child, next }) => {
        const m = /^ready (\d+) (\d+)$/.exec(await next(timeoutMs));
        if (!m) throw new Error(`broadcast-client ${child.pid}: unexpected first line`);
        return { pid: child.pid, opened: Number(m[1]), failed: Number(m[2]) };
      }),
    );
    const report = () =>
      Promise.all(
        kids.map(async ({ child, next }) => {
          child.stdin.write('report\n');
          return JSON.parse(await next(30_000));
        }),
      );
    const setPoll = (us) =>
      Promise.all(
        kids.map(async ({ child, next }) => {
          child.stdin.write(`poll ${us}\n`);
          const line = await next(30_000);
          if (line !== `ok poll ${us}`) throw new Error(`broadcast-client ${child.pid}: ${line}`);
        }),
      );
    return { procs: ready, report, setPoll, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Ends a client process: `quit` on stdin, SIGKILL (by its PID) if it has not exited in 3 s. */
function quit(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const t = setTimeout(() => child.kill('SIGKILL'), 3000);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    child.stdin.end('quit\n');
  });
}

/**
 * Starts one bench/load-client process with `connections` connections to `url`, sending the
 * request lines of `templatesFile` (each with `{ID}` where the id goes). Returns
 * { pid, opened, failed, run(args), jitter(args), stop() }; run({ rate | depth, warmup_ms,
 * window_ms, …, server_pid }) resolves to the run's JSON report (see
 * bench/load-client/src/main.rs).
 */
export async function startLoadClient(bin, url, connections, templatesFile, { timeoutMs = 60_000 } = {}) {
  const u = new URL(url);
  const child = spawn(bin, [u.hostname, u.port, u.pathname || '/', String(connections), templatesFile], { stdio: ['pipe', 'pipe', 'inherit'] });
  const next = lineReader(child);
  try {
    const m = /^ready (\d+) (\d+)$/.exec(await next(timeoutMs));
    if (!m) throw new Error(`load-client ${child.pid}: unexpected first line`);
    return {
      pid: child.pid,
      opened: Number(m[1]),
      failed: Number(m[2]),
      async run(args) {
        const words = Object.entries(args).map(([k, v]) => `${k}=${v}`);
        // The run's own bounds plus a margin: warm-up, window, tail and drain.
        const bound = (args.warmup_ms ?? 1000) + (args.window_ms ?? 2000) + (args.tail_ms ?? 100) + (args.drain_ms ?? 5000) + 30_000;
        child.stdin.write(`run ${words.join(' ')}\n`);
        const out = JSON.parse(await next(bound));
        if (out.error) throw new Error(`load-client ${child.pid}: ${out.error}`);
        return out;
      },
      /** The generator's own wake-up lateness over `count` sleeps of `sleep_us` (machine jitter). */
      async jitter({ count = 20_000, sleep_us = 50 } = {}) {
        child.stdin.write(`jitter count=${count} sleep_us=${sleep_us}\n`);
        return JSON.parse(await next(60_000));
      },
      stop: () => quit(child),
    };
  } catch (err) {
    await quit(child);
    throw err;
  }
}
