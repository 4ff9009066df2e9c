/**
 * #23 item 7: file descriptors ran out before the connection limit. The default
 * maxConnections (20,000) could equal the open-file limit; past it `accept()` failed and new
 * clients hung until they timed out. Now the process caps its connections below the limit
 * minus a reserve, logs the cap at listen, and refuses past it with close 1013.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { CLOSE_CODES } from '../../ts/protocol/index.js';
import { FD_RESERVE_MIN, connectionCap, openFileLimit } from '../../ts/server/fd-limit.js';
import { ensureBuilt, root } from '../helpers/build-dist.js';
import { until } from '../helpers/ws-client.js';

beforeAll(() => ensureBuilt(), 180_000);

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
});

/** A WsServer (default options) in a child whose open-file limit is `nofile`; resolves with its port and log lines. */
function startLimited(nofile: number): Promise<{ port: number; lines: Array<Record<string, unknown>> }> {
  const script = `
    const { WsServer } = await import(${JSON.stringify(path.join(root, 'dist/server/index.js'))});
    const server = new WsServer({ host: '127.0.0.1', port: 0, printListening: false, commands: { echo: () => ({ ok: true }) } });
    const { port } = await server.listen();
    console.log(JSON.stringify({ port }));
  `;
  const child = spawn('bash', ['-c', `ulimit -n ${nofile}; exec "${process.execPath}" --input-type=module -e "$0"`, script], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  const lines: Array<Record<string, unknown>> = [];
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      buf += chunk.toString('utf8');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const j = JSON.parse(line) as Record<string, unknown>;
          lines.push(j);
          if (typeof j.port === 'number' && j.msg === undefined) resolve({ port: j.port, lines });
        } catch {
          /* not JSON */
        }
      }
    });
    child.once('exit', (code) => reject(new Error(`server child exited with ${code}`)));
  });
}

type Attempt = { open: WebSocket } | { closed: number; reason: string } | { timedOut: true };

/** Connects; resolves with the open socket, the close it got straight away, or a timeout. */
function attempt(port: number, timeoutMs = 5_000): Promise<Attempt> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`);
    const t = setTimeout(() => {
      ws.terminate();
      resolve({ timedOut: true });
    }, timeoutMs);
    ws.once('error', () => undefined);
    ws.once('close', (code, reason) => {
      clearTimeout(t);
      resolve({ closed: code, reason: reason.toString() });
    });
    ws.once('open', () => {
      // A refused socket is closed right after the upgrade: an echo answered means admitted.
      ws.send(JSON.stringify({ type: 'echo', id: 1 }));
      ws.once('message', () => {
        clearTimeout(t);
        resolve({ open: ws });
      });
    });
  });
}

describe('open-file limit', () => {
  it('caps connections below RLIMIT_NOFILE, logs it, and refuses past it with 1013 instead of hanging', async () => {
    const { port, lines } = await startLimited(64);
    const isCap = (l: Record<string, unknown>): boolean => typeof l.msg === 'string' && /open-file limit/.test(l.msg);
    // The log line may follow the port on stdout (pino writes asynchronously).
    await until(() => lines.some(isCap), 2_000).catch(() => undefined);
    const capLine = lines.find(isCap);
    expect(capLine).toBeDefined();
    const cap = capLine!.maxConnections as number;
    expect(capLine!.openFileLimit).toBe(64);
    expect(cap).toBeGreaterThan(0);
    expect(cap).toBeLessThanOrEqual(64 - FD_RESERVE_MIN);

    const open: WebSocket[] = [];
    try {
      const outcomes: Attempt[] = [];
      for (let i = 0; i < 80; i++) {
        const a = await attempt(port);
        outcomes.push(a);
        if ('open' in a) open.push(a.open);
        else break;
      }
      const last = outcomes.at(-1)!;
      expect(last).toEqual({ closed: CLOSE_CODES.TRY_AGAIN_LATER, reason: 'Too many connections (open-file limit)' });
      expect(open.length).toBe(cap);
      // Further attempts are refused the same way, not left hanging; a freed slot is usable again.
      for (let i = 0; i < 5; i++) expect(await attempt(port)).toMatchObject({ closed: CLOSE_CODES.TRY_AGAIN_LATER });
      const freed = new Promise((r) => open[0]!.once('close', r));
      open[0]!.close();
      await freed;
      const again = await attempt(port);
      expect('open' in again).toBe(true);
      if ('open' in again) open.push(again.open);
    } finally {
      for (const ws of open) ws.terminate();
    }
  });

  it('reads the soft limit from /proc/self/limits; nothing is capped where it is unknown', () => {
    const text = 'Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 4096                 files\n';
    expect(openFileLimit(text)).toBe(1024);
    expect(openFileLimit('Max open files            unlimited            unlimited            files\n')).toBeNull();
    expect(connectionCap(20_000, 1024, 30)).toMatchObject({ maxConnections: 1024 - 30 - 52, capped: true });
    expect(connectionCap(500, 1024, 30)).toMatchObject({ maxConnections: 500, capped: false });
    expect(connectionCap(20_000, null, 30)).toMatchObject({ maxConnections: 20_000, capped: false });
    expect(connectionCap(100, 40, 30).maxConnections).toBe(1);
  });
});
