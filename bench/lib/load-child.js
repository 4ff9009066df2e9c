// Load generator in its own process (driven over IPC by a bench): opens `ws` client
// connections, runs pipelined id-correlated request loops, holds idle connections, and
// stamps broadcast receipts with performance.timeOrigin + performance.now().
import { randomBytes } from 'node:crypto';
import { connect as netConnect } from 'node:net';
import WebSocket from 'ws';
import { randomVectors, rng } from '../common.js';
import { serveParent, sleep, percentile } from './procs.js';

const sockets = [];
const bcast = new Map(); // seq → { count, first, last }
let onReply = null; // set by a running pipeline

function openOne(url) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 64 << 20 });
    let settled = false;
    ws.fifo = [];
    ws.on('open', () => {
      settled = true;
      resolve(ws);
    });
    ws.on('message', (data, isBinary) => {
      const t = performance.timeOrigin + performance.now();
      if (onReply && ws.fifo.length > 0) return onReply(ws, data, isBinary);
      // An unsolicited message: a broadcast?
      const head = data.toString('latin1', 0, Math.min(160, data.length));
      if (head.includes('"bench_broadcast"')) {
        const m = /"seq":(\d+)/.exec(data.toString('latin1', 0, Math.min(400, data.length)));
        const seq = m ? Number(m[1]) : -1;
        let b = bcast.get(seq);
        if (!b) bcast.set(seq, (b = { count: 0, first: t, last: t, bytes: data.length }));
        b.count++;
        if (t < b.first) b.first = t;
        if (t > b.last) b.last = t;
      }
    });
    ws.on('error', () => {
      if (!settled) {
        settled = true;
        resolve(null);
      }
    });
    ws.on('close', (code) => {
      ws.closedWith = code;
      if (!settled) {
        settled = true;
        resolve(null);
      }
    });
  });
}

// Raw TCP clients (upgrade by hand, parse server frames): much cheaper per message than `ws`
// clients, so broadcast receipt times measure the server rather than the load generators.
const rawSockets = [];
const KEY = randomBytes(16).toString('base64');

const TYPE_BYTES = Buffer.from('"type":"bench_broadcast"');
const SEQ_BYTES = Buffer.from('"seq":');

function recordBroadcast(buf, start, end, t) {
  // Byte searches in the frame itself (no string per message): the type, then the seq digits.
  const head = Math.min(end, start + 400);
  const ti = buf.indexOf(TYPE_BYTES, start);
  if (ti < 0 || ti + TYPE_BYTES.length > head) return;
  const si = buf.indexOf(SEQ_BYTES, start);
  let seq = -1;
  if (si >= 0 && si + SEQ_BYTES.length < head) {
    let i = si + SEQ_BYTES.length;
    for (seq = 0; i < end && buf[i] >= 0x30 && buf[i] <= 0x39; i++) seq = seq * 10 + (buf[i] - 0x30);
  }
  let b = bcast.get(seq);
  if (!b) bcast.set(seq, (b = { count: 0, first: t, last: t, bytes: end - start }));
  b.count++;
  if (t < b.first) b.first = t;
  if (t > b.last) b.last = t;
}

const EMPTY = Buffer.alloc(0);
const READ_BUFFER = Buffer.alloc(256 * 1024);

function openRaw(url) {
  const u = new URL(url);
  return new Promise((resolve) => {
    let upgraded = false;
    let settled = false;
    let buf = EMPTY;
    // `onread` hands each read to us in one shared buffer (no Buffer per read, no stream
    // machinery): the receipts cost the load generators, which share the cores with the
    // server, about a third less CPU. A partial frame left at the end of a read is copied out.
    const sock = netConnect({ host: u.hostname, port: Number(u.port), onread: { buffer: READ_BUFFER, callback: (n, b) => onData(b.subarray(0, n)) } });
    sock.setNoDelay(true);
    const settle = (v) => {
      if (!settled) {
        settled = true;
        resolve(v);
      }
    };
    sock.on('connect', () => {
      sock.write(`GET ${u.pathname || '/'} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    });
    const onData = (chunk) => {
      const t = performance.timeOrigin + performance.now();
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) {
          buf = Buffer.from(buf);
          return;
        }
        if (!buf.toString('latin1', 0, 12).includes(' 101')) {
          sock.destroy();
          return settle(null);
        }
        upgraded = true;
        sock.isOpen = true;
        buf = buf.subarray(end + 4);
        settle(sock);
      }
      // Server frames are unmasked: [fin|op][len] (+2 or +8 bytes of length) payload.
      let off = 0;
      while (buf.length - off >= 2) {
        const op = buf[off] & 0x0f;
        let len = buf[off + 1] & 0x7f;
        let h = 2;
        if (len === 126) {
          if (buf.length - off < 4) break;
          len = buf.readUInt16BE(off + 2);
          h = 4;
        } else if (len === 127) {
          if (buf.length - off < 10) break;
          len = Number(buf.readBigUInt64BE(off + 2));
          h = 10;
        }
        if (buf.length - off < h + len) break;
        const p0 = off + h;
        if (op === 0x1 || op === 0x2) recordBroadcast(buf, p0, p0 + len, t);
        else if (op === 0x9) {
          // ping → masked pong with the same payload (mask 0 keeps it unchanged)
          const pong = Buffer.alloc(6 + len);
          pong[0] = 0x8a;
          pong[1] = 0x80 | len;
          buf.copy(pong, 6, p0, p0 + len);
          sock.write(pong);
        } else if (op === 0x8) {
          sock.isOpen = false;
          sock.end();
        }
        off = p0 + len;
      }
      buf = off === buf.length ? EMPTY : Buffer.from(buf.subarray(off));
    };
    sock.on('error', () => settle(null));
    sock.on('close', () => {
      sock.isOpen = false;
      settle(null);
    });
  });
}

const openCount = () => sockets.filter((s) => s.readyState === WebSocket.OPEN).length + rawSockets.filter((s) => s.isOpen).length;

async function connect({ url, n, concurrency = 100, raw = false }) {
  if (raw) {
    const t0 = performance.now();
    let failed = 0;
    let next = 0;
    const worker = async () => {
      while (next < n) {
        next++;
        const s = await openRaw(url);
        if (s) rawSockets.push(s);
        else failed++;
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
    await sleep(200);
    const open = rawSockets.filter((s) => s.isOpen).length;
    return { opened: open, failed: failed + (rawSockets.length - open), ms: performance.now() - t0 };
  }
  const t0 = performance.now();
  let failed = 0;
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next++;
      const ws = await openOne(url);
      if (ws) sockets.push(ws);
      else failed++;
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  // Sockets refused at open (1013) close right after opening: give them a moment, then count.
  await sleep(200);
  const open = sockets.filter((s) => s.readyState === WebSocket.OPEN).length;
  return { opened: open, failed: failed + (sockets.length - open), ms: performance.now() - t0 };
}

/** Request builders: each returns the frame text for request `id`. */
function makeRequests(kind, opts) {
  if (kind === 'stats') return (id) => `{"type":"stats","id":${id}}`;
  if (kind === 'retrieve') {
    const D = opts.dims ?? 384;
    const pool = 256;
    const vecs = randomVectors(pool, D, opts.seed ?? 4242);
    const tails = [];
    for (let q = 0; q < pool; q++) {
      const arr = Array.from(vecs.subarray(q * D, (q + 1) * D), (x) => Number(x.toPrecision(7)));
      tails.push(`,"data":{"count":${opts.count ?? 10},"embedding":${JSON.stringify(arr)}}}`);
    }
    return (id) => `{"type":"retrieve","id":${id}${tails[id % pool]}`;
  }
  if (kind === 'store') {
    const r = rng(opts.seed ?? 777);
    const words = 'alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon phi chi psi omega memory agent user session note fact plan goal'.split(' ');
    const prefix = `p${process.pid}`;
    return (id) => {
      const n = 8 + Math.floor(r() * 25);
      let text = `${prefix} item ${id}`;
      for (let i = 0; i < n; i++) text += ' ' + words[Math.floor(r() * words.length)];
      return `{"type":"store","id":${id},"data":{"text":${JSON.stringify(text)},"metadata":{"importance":${(id % 10) / 10}}}}`;
    };
  }
  throw new Error(`unknown request kind ${kind}`);
}

/**
 * Pipelined, id-correlated load on the open connections: `depth` requests in flight on each.
 * Events: { event: 'mark0' } after warmupMs, { event: 'mark1' } at the end of the window
 * (durationMs or maxRequests replies in the window, whichever first). Then stops issuing,
 * waits for in-flight replies, and returns the window's counts and latencies.
 */
async function pipeline({ kind, depth = 16, warmupMs = 1000, durationMs = 5000, maxRequests = Infinity, validateEvery = 97, drain = true, ...opts }) {
  const build = makeRequests(kind, opts);
  const conns = sockets.filter((s) => s.readyState === WebSocket.OPEN);
  if (conns.length === 0) throw new Error('no open connections');
  let nextId = 1;
  let phase = 0; // 0 warmup, 1 window, 2 draining
  let windowCount = 0;
  let totalCount = 0;
  let errors = 0;
  let mismatched = 0;
  let validated = 0;
  const lat = [];
  let firstError = null;
  let inFlight = 0;
  let endWindow;
  const windowDone = new Promise((r) => (endWindow = r));
  const send = (ws) => {
    const id = nextId++;
    ws.fifo.push(id, performance.now());
    inFlight++;
    ws.send(build(id));
  };
  let drained;
  const allDrained = new Promise((r) => (drained = r));
  onReply = (ws, data) => {
    const t = performance.now();
    const id = ws.fifo.shift();
    const sent = ws.fifo.shift();
    inFlight--;
    totalCount++;
    const head = data.toString('latin1', 0, Math.min(96, data.length));
    const ok = head.startsWith('{"status":"success"');
    if (!ok) {
      errors++;
      firstError ??= data.toString('utf8', 0, Math.min(400, data.length));
    }
    const m = /"id":(\d+)/.exec(head);
    if (!m || Number(m[1]) !== id) mismatched++;
    if (ok && totalCount % validateEvery === 0) {
      const msg = JSON.parse(data.toString('utf8'));
      if (msg.id !== id || msg.type !== kind || typeof msg.data !== 'object') mismatched++;
      if (kind === 'retrieve' && !(Array.isArray(msg.data.memories) && msg.data.memories.length === (opts.count ?? 10))) mismatched++;
      validated++;
    }
    if (phase === 1) {
      windowCount++;
      if ((windowCount & 7) === 0 || lat.length < 20000) lat.push(t - sent);
      if (windowCount >= maxRequests) {
        phase = 2;
        endWindow();
      }
    }
    if (phase < 2) send(ws);
    else if (inFlight === 0) drained();
  };
  const t0 = performance.now();
  for (const ws of conns) for (let i = 0; i < depth; i++) send(ws);
  await sleep(warmupMs);
  phase = 1;
  const w0 = performance.now();
  process.send({ event: 'mark0' });
  const timer = setTimeout(() => {
    phase = 2;
    endWindow();
  }, durationMs);
  await windowDone;
  clearTimeout(timer);
  const windowS = (performance.now() - w0) / 1000;
  process.send({ event: 'mark1' });
  let d = 'skipped';
  if (drain) {
    // Wait for the replies still in flight (bounded), so the server is idle afterwards.
    d = await Promise.race([allDrained.then(() => 'ok'), sleep(30_000).then(() => 'timeout')]);
  } else {
    // A slow server (e.g. a JS baseline) would take long to answer what is queued: hang up instead.
    for (const ws of conns) ws.terminate();
  }
  onReply = null;
  lat.sort((a, b) => a - b);
  return {
    connections: conns.length,
    depth,
    window_s: windowS,
    window_replies: windowCount,
    replies_per_s: windowCount / windowS,
    total_replies: totalCount,
    errors,
    first_error: firstError,
    id_mismatches: mismatched,
    validated,
    drained: d,
    latency_ms: { p50: percentile(lat, 50), p99: percentile(lat, 99), max: lat[lat.length - 1] ?? null },
    total_s: (performance.now() - t0) / 1000,
  };
}

serveParent({
  connect,
  pipeline,
  open() {
    return { open: openCount() };
  },
  broadcastReport() {
    const out = {};
    for (const [seq, b] of bcast) out[seq] = b;
    return { open: openCount(), receipts: out };
  },
  async closeAll() {
    for (const s of sockets) s.terminate();
    sockets.length = 0;
    for (const s of rawSockets) s.destroy();
    rawSockets.length = 0;
    return {};
  },
  exit() {
    for (const s of sockets) s.terminate();
    for (const s of rawSockets) s.destroy();
    process.exit(0);
  },
});
process.send({ event: 'ready', pid: process.pid });
