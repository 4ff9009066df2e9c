// The load of `pnpm soak` (bench/soak.js): a client that never reads, a flooder above the rate
// limit, a churner (store-then-delete cycles) and writers whose acknowledged ids go to a
// ledger file. Each runs until its `stop()`; every loop is bounded in count per step and
// every wait in time, and each keeps its own counters for the summary.
import { randomBytes } from 'node:crypto';
import { writeSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import WebSocket from 'ws';
import { MemoryClient } from '../../dist/client/index.js';
import { sleep } from './procs.js';

/** A masked client text frame (RFC 6455 §5.2), as a raw socket must send it. */
export function encodeFrame(text) {
  const payload = Buffer.from(text, 'utf8');
  const n = payload.length;
  const lenBytes = n < 126 ? 0 : n < 65536 ? 2 : 8;
  const head = Buffer.alloc(2 + lenBytes + 4);
  head[0] = 0x81; // FIN + text
  head[1] = 0x80 | (lenBytes === 0 ? n : lenBytes === 2 ? 126 : 127);
  if (lenBytes === 2) head.writeUInt16BE(n, 2);
  if (lenBytes === 8) head.writeBigUInt64BE(BigInt(n), 2);
  const mask = randomBytes(4);
  mask.copy(head, 2 + lenBytes);
  for (let i = 0; i < n; i++) payload[i] ^= mask[i & 3];
  return Buffer.concat([head, payload]);
}

export const memoryClient = (url) => new MemoryClient({ url, WebSocket, reconnect: false, requestTimeoutMs: 30_000 });

/** A loop that runs `step` until stopped; `stop()` waits for the current step to end. */
function loop(step) {
  let running = true;
  const done = (async () => {
    while (running) {
      try {
        await step(() => running);
      } catch {
        // Each step counts its own failures; after the kill, connecting fails until stop().
        await sleep(200);
      }
    }
  })();
  return async () => {
    running = false;
    await done;
  };
}

/**
 * Never reads: a raw TCP WebSocket upgrade, then big `list` / `retrieve` requests (every
 * memory of `namespace` with embeddings) every `intervalMs`, its socket paused for good. The
 * server must close it once its send buffer is over the limit; a closed socket is seen as
 * the next write failing. One at a time; a new one connects after each close. Not closed
 * within `maxOpenMs` → counted in `not_closed` and cut by us.
 */
export function neverReader(url, { namespace, intervalMs = 250, maxOpenMs = 120_000 }) {
  const stats = { connections: 0, upgrade_failures: 0, requests_sent: 0, closed_by_server: 0, not_closed: 0, open_ms: [] };
  const u = new URL(url);
  const requests = [
    JSON.stringify({ type: 'list', id: 'l', data: { namespace, limit: 1000, include_embeddings: true } }),
    JSON.stringify({ type: 'retrieve', id: 'r', data: { namespace, count: 1000, include_embeddings: true } }),
  ].map(encodeFrame);
  const one = (isRunning) =>
    new Promise((resolve) => {
      const sock = netConnect({ host: u.hostname, port: Number(u.port) });
      const t0 = Date.now();
      let upgraded = false;
      let head = '';
      let timer = null;
      let finished = false;
      const finish = (how) => {
        if (finished) return;
        finished = true;
        if (timer) clearInterval(timer);
        timer = null;
        if (how === 'server') {
          stats.closed_by_server++;
          stats.open_ms.push(Date.now() - t0);
        } else if (how === 'timeout') stats.not_closed++;
        sock.destroy();
        resolve();
      };
      sock.on('error', () => finish(upgraded ? 'server' : 'upgrade'));
      sock.on('close', () => finish(upgraded ? 'server' : 'upgrade'));
      sock.on('connect', () => {
        sock.write(`GET / HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
      });
      const onData = (chunk) => {
        head += chunk.toString('latin1');
        if (!head.includes('\r\n\r\n')) return;
        sock.off('data', onData);
        sock.pause(); // from here on, nothing is read
        if (!head.startsWith('HTTP/1.1 101')) {
          stats.upgrade_failures++;
          return finish('upgrade');
        }
        upgraded = true;
        stats.connections++;
        let k = 0;
        timer = setInterval(() => {
          if (!isRunning()) return finish('stopped');
          if (Date.now() - t0 > maxOpenMs) return finish('timeout');
          // The server has stopped reading too (its buffers full): keep ours bounded.
          if (sock.writableLength > 64 * 1024) return;
          sock.write(requests[k++ % requests.length]);
          stats.requests_sent++;
        }, intervalMs);
      };
      sock.on('data', onData);
      setTimeout(() => !upgraded && finish('upgrade'), 10_000).unref();
    });
  const stop = loop(async (isRunning) => {
    await one(isRunning);
    await sleep(500);
  });
  return { stats, stop };
}

/**
 * Floods above the rate limit: bursts of `stats` requests written back to back, alternately
 * `bigBurst` (more than the bucket plus the server's close-after-rejected count: the server
 * should close with 1008) and `smallBurst`; counts replies by kind and closes by code, and
 * reconnects after a close. Each burst waits at most 10 s for its replies.
 */
export function flooder(url, { bigBurst, smallBurst, pauseMs = 250 }) {
  const stats = { connections: 0, bursts: 0, requests_sent: 0, replies: 0, success: 0, rate_limited: 0, other_errors: 0, closes: {} };
  let ws = null;
  let nextBig = true;
  const open = () =>
    new Promise((resolve, reject) => {
      const s = new WebSocket(url, { perMessageDeflate: false });
      s.on('open', () => resolve(s));
      s.on('error', reject);
      s.on('message', (data) => {
        stats.replies++;
        const text = data.toString();
        if (text.startsWith('{"status":"success"')) stats.success++;
        else if (text.includes('"code":"rate_limited"')) stats.rate_limited++;
        else stats.other_errors++;
        s.onReply?.();
      });
      s.on('close', (code) => {
        stats.closes[code] = (stats.closes[code] ?? 0) + 1;
        s.onReply?.();
      });
    });
  const frame = JSON.stringify({ type: 'stats', data: { namespace: 'soak-flood' } });
  const stop = loop(async (isRunning) => {
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      ws = null;
      ws = await open();
      stats.connections++;
    }
    const n = nextBig ? bigBurst : smallBurst;
    nextBig = !nextBig;
    const target = stats.replies + n;
    const s = ws;
    for (let i = 0; i < n && s.readyState === WebSocket.OPEN; i++) {
      s.send(frame);
      stats.requests_sent++;
    }
    stats.bursts++;
    await new Promise((resolve) => {
      const t = setTimeout(resolve, 10_000);
      s.onReply = () => {
        if (stats.replies >= target || s.readyState !== WebSocket.OPEN || !isRunning()) {
          clearTimeout(t);
          s.onReply = null;
          resolve();
        }
      };
    });
    await sleep(pauseMs);
  });
  return {
    stats,
    async stop() {
      const s = ws;
      const stopped = stop(); // clears the running flag at once…
      s?.onReply?.(); // …so that a burst waiting for its replies ends now
      await stopped;
      s?.terminate();
    },
  };
}

/**
 * Store-then-delete cycles of `batch` distinctive memories (`c<cycle>-<i>`) in `namespace`,
 * one cycle per `intervalMs`: the log grows while the live set stays empty (compaction's
 * work). `last_deleted_cycle` is the last cycle whose delete was acknowledged: after a kill
 * no id of a cycle ≤ it may come back.
 */
export function churner(url, { namespace, batch = 50, intervalMs = 250 }) {
  const stats = { cycles: 0, stores: 0, deletes: 0, failures: 0, last_deleted_cycle: -1 };
  const client = memoryClient(url);
  let cycle = 0;
  const stop = loop(async () => {
    const c = cycle++;
    const t0 = Date.now();
    const items = Array.from({ length: batch }, (_, i) => ({ id: `c${c}-${i}`, text: `churn cycle ${c} item ${i} ${randomBytes(12).toString('hex')} transient` }));
    try {
      await client.storeMany(items, { namespace });
      stats.stores += batch;
      const r = await client.deleteMany(items.map((x) => x.id), { namespace });
      stats.deletes += r.deleted;
      stats.last_deleted_cycle = c;
      stats.cycles++;
    } catch (e) {
      stats.failures++;
      if (e?.code === 'rate_limited') await sleep(Number(e.data?.retry_after_ms ?? 100));
      else await sleep(1000);
    }
    await sleep(Math.max(0, intervalMs - (Date.now() - t0)));
  });
  return {
    stats,
    async stop() {
      await stop();
      await client.close().catch(() => {});
    },
  };
}

/**
 * Writers of permanent memories (`w<writer>-<n>` in `namespace`): each acknowledged id is
 * appended to the ledger (an open fd, written synchronously) before anything else happens.
 * `setRate(perSecond)` paces all writers together (0 = stop); `burst(depth)` switches each
 * writer to `depth` stores in flight, as fast as the server acknowledges them (the kill).
 */
export function writers(url, { namespace, n = 2, ledgerFd, maxPerWriter = 1_000_000 }) {
  const stats = { acked: 0, failures: 0, rate_limited: 0, acked_in_burst: 0 };
  let perWriterIntervalMs = Infinity;
  let depth = 0;
  const clients = [];
  const stops = [];
  for (let w = 0; w < n; w++) {
    const client = memoryClient(url);
    clients.push(client);
    let next = 0;
    const storeOne = async () => {
      if (next >= maxPerWriter) return sleep(1000);
      const id = `w${w}-${next++}`;
      try {
        await client.store(`soak write ${id} ${randomBytes(12).toString('hex')} permanent`, { namespace, id, metadata: { writer: w } });
        writeSync(ledgerFd, `${namespace}\t${id}\n`);
        stats.acked++;
        if (depth > 0) stats.acked_in_burst++;
      } catch (e) {
        if (e?.code === 'rate_limited') {
          stats.rate_limited++;
          await sleep(Number(e.data?.retry_after_ms ?? 100));
        } else {
          stats.failures++;
          await sleep(200);
        }
      }
    };
    stops.push(
      loop(async (isRunning) => {
        if (depth > 0) {
          // Bounded: `depth` stores, then the loop comes round again (and sees stop()).
          await Promise.all(Array.from({ length: depth }, () => isRunning() && storeOne()));
          return;
        }
        if (perWriterIntervalMs === Infinity) return sleep(1000);
        const next = Date.now() + perWriterIntervalMs;
        await storeOne();
        // To the next store in steps of ≤ 1 s, so stop() and burst() are seen within a second
        // (a single capped sleep made 2 writers at 1/s in all store 2/s).
        while (isRunning() && depth === 0 && Date.now() < next) await sleep(Math.min(1000, next - Date.now()));
      }),
    );
  }
  return {
    stats,
    setRate(perSecond) {
      perWriterIntervalMs = perSecond > 0 ? (1000 * n) / perSecond : Infinity;
    },
    burst(d) {
      depth = d;
    },
    async stop() {
      await Promise.all(stops.map((s) => s()));
      await Promise.all(clients.map((c) => c.close().catch(() => {})));
    },
  };
}
