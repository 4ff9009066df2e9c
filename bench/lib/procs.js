// Child-process plumbing for the multi-process benchmarks: fork with IPC, request/reply
// calls with timeouts, and cleanup of every child we started (by PID) on any exit path.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

const children = new Set();
let cleanedUp = false;

function killAll() {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }
  children.clear();
}

process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    if (cleanedUp) return;
    cleanedUp = true;
    killAll();
    process.exit(130);
  });
}
process.on('uncaughtException', (err) => {
  console.error(err);
  killAll();
  process.exit(1);
});
process.on('unhandledRejection', (err) => {
  console.error(err);
  killAll();
  process.exit(1);
});

/** Soft limit on open files of this process (children inherit it). */
export function openFileLimit() {
  try {
    const m = /Max open files\s+(\d+|unlimited)/.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m ? (m[1] === 'unlimited' ? Infinity : Number(m[1])) : Infinity;
  } catch {
    return Infinity;
  }
}

/**
 * Starts `node script` with an IPC channel. `fds`: file descriptors it needs; if the inherited
 * soft limit is lower, the child is started through `bash -c 'ulimit -n …; exec node …'`.
 */
export function startChild(script, { args = [], env = {}, fds = 0, name = script } = {}) {
  const execArgv = ['--expose-gc'];
  // BENCH_SERVER_EXEC_ARGV: extra node flags for server children only (e.g. --cpu-prof), for diagnosis.
  if (name.startsWith('server') && process.env.BENCH_SERVER_EXEC_ARGV) execArgv.push(...process.env.BENCH_SERVER_EXEC_ARGV.split(' ').filter(Boolean));
  const nodeArgs = [...execArgv, script, ...args];
  const stdio = ['ignore', 'inherit', 'inherit', 'ipc'];
  const fullEnv = { ...process.env, ...env };
  let child;
  if (fds > 0 && openFileLimit() < fds) {
    const want = Math.min(fds, 20000);
    child = spawn('bash', ['-c', `ulimit -n ${want} || exit 97; exec "$0" "$@"`, process.execPath, ...nodeArgs], { stdio, env: fullEnv });
  } else {
    child = spawn(process.execPath, nodeArgs, { stdio, env: fullEnv });
  }
  children.add(child);
  child.benchName = name;
  child.pending = new Map();
  child.events = [];
  child.eventWaiters = [];
  child.nextRid = 1;
  child.on('message', (msg) => {
    if (msg && msg.rid !== undefined && child.pending.has(msg.rid)) {
      const p = child.pending.get(msg.rid);
      child.pending.delete(msg.rid);
      clearTimeout(p.timer);
      if (msg.error) p.reject(new Error(`${name}: ${msg.error}`));
      else p.resolve(msg);
      return;
    }
    child.events.push(msg);
    for (const w of [...child.eventWaiters]) w();
  });
  child.on('exit', (code, signal) => {
    children.delete(child);
    const err = new Error(`${name} (pid ${child.pid}) exited with ${code ?? signal}`);
    for (const p of child.pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    child.pending.clear();
    child.exitError = err;
    for (const w of [...child.eventWaiters]) w();
  });
  return child;
}

/** Sends `{ cmd, rid, ...args }` and resolves with the child's reply `{ rid, ... }`. */
export function call(child, cmd, args = {}, timeoutMs = 60_000) {
  return new Promise((resolve, reject) => {
    if (child.exitError) return reject(child.exitError);
    const rid = child.nextRid++;
    const timer = setTimeout(() => {
      child.pending.delete(rid);
      reject(new Error(`${child.benchName}: '${cmd}' timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    child.pending.set(rid, { resolve, reject, timer });
    child.send({ cmd, rid, ...args });
  });
}

/** Waits for an unsolicited message `{ event: name }` from the child. */
export function waitEvent(child, name, timeoutMs = 60_000) {
  return new Promise((resolve, reject) => {
    const check = () => {
      const i = child.events.findIndex((m) => m && m.event === name);
      if (i >= 0) {
        const [m] = child.events.splice(i, 1);
        done();
        resolve(m);
        return true;
      }
      if (child.exitError) {
        done();
        reject(child.exitError);
        return true;
      }
      return false;
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`${child.benchName}: no '${name}' within ${timeoutMs} ms`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      const k = child.eventWaiters.indexOf(check);
      if (k >= 0) child.eventWaiters.splice(k, 1);
    };
    if (!check()) child.eventWaiters.push(check);
  });
}

/** Asks the child to exit, then SIGKILLs it (by PID) if it has not within `graceMs`. */
export async function stopChild(child, graceMs = 10_000) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  try {
    child.send({ cmd: 'exit' });
  } catch {
    /* channel closed */
  }
  const t = setTimeout(() => {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }, graceMs);
  await exited;
  clearTimeout(t);
}

export async function stopAll(list, graceMs) {
  await Promise.all(list.filter(Boolean).map((c) => stopChild(c, graceMs)));
}

/** In a child: serve `{ cmd, rid }` requests with `handlers[cmd](msg)`; exit when the parent goes away. */
export function serveParent(handlers) {
  process.on('disconnect', () => process.exit(0));
  process.on('message', async (msg) => {
    if (!msg || typeof msg.cmd !== 'string') return;
    const h = handlers[msg.cmd];
    try {
      if (!h) throw new Error(`unknown command ${msg.cmd}`);
      const out = (await h(msg)) ?? {};
      if (msg.rid !== undefined) process.send({ rid: msg.rid, ...out });
    } catch (err) {
      if (msg.rid !== undefined) process.send({ rid: msg.rid, error: String(err?.stack ?? err) });
    }
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}
