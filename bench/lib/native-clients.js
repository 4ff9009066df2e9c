// Native broadcast receipt clients (bench/broadcast-client, Rust on epoll): built with cargo on
// first use, one process per share of the connections, driven over stdin/stdout lines.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const crate = join(dirname(fileURLToPath(import.meta.url)), '..', 'broadcast-client');
const binary = join(crate, 'target', 'release', 'broadcast-client');

/** Builds the client (cargo, release; a no-op when up to date) and returns its path. */
export function buildBroadcastClient() {
  execFileSync('cargo', ['build', '--release', '--quiet', '--manifest-path', join(crate, 'Cargo.toml')], { stdio: 'inherit' });
  if (!existsSync(binary)) throw new Error(`cargo did not produce ${binary}`);
  return binary;
}

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
    for (const w of waiters.splice(0)) w.reject(new Error(`broadcast-client ${child.pid} exited with ${code ?? signal}`));
  });
  return (timeoutMs) =>
    new Promise((resolve, reject) => {
      if (lines.length) return resolve(lines.shift());
      if (ended) return reject(new Error(`broadcast-client ${child.pid} has exited`));
      const timer = setTimeout(() => reject(new Error(`broadcast-client ${child.pid}: no reply in ${timeoutMs} ms`)), timeoutMs);
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
  const stop = async () => {
    await Promise.all(
      kids.map(
        ({ child }) =>
          new Promise((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            const t = setTimeout(() => child.kill('SIGKILL'), 3000);
            child.once('exit', () => {
              clearTimeout(t);
              resolve();
            });
            child.stdin.end('quit\n');
          }),
      ),
    );
  };
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
