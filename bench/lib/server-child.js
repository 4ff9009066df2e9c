// A memory server in its own process for the multi-process benchmarks. Config (JSON) in
// BENCH_SERVER: { transport: 'uws' | 'ws' | 'uws-floor' | 'ws-floor', store: 'native' | 'js', rows, fsync, dir,
// maxConnectionsPerIp, groupCommit (native store; default true), annMinRows (native store: the
// namespace size from which significance comes from the ANN graph), data ('random': uniform
// unit vectors, the default; 'clustered': bench/lib/clustered.js's rows of a `rows`-row set) }. Reports { event: 'ready', port, rows } and then serves IPC commands:
// cpu (process.cpuUsage of this process), mem (RSS after GC), storeStats, broadcast, exit.
import { MemoryServer } from '../../dist/server/memory.js';
import { MemoryStore, HASH_DIMS } from '../../dist/native.js';
import { HashEmbedder } from '../../dist/embedder.js';
import { JsMemoryStore } from '../baselines/js-store.js';
import { startWsMemoryServer } from '../baselines/ws-memory-server.js';
import { startUwsFloorServer } from '../baselines/uws-floor-server.js';
import { startWsFloorServer } from '../baselines/ws-floor-server.js';
import { randomVectors } from '../common.js';
import { clusteredData } from './clustered.js';
import { serveParent } from './procs.js';

const cfg = JSON.parse(process.env.BENCH_SERVER ?? '{}');
const D = HASH_DIMS;
const rows = cfg.rows ?? 0;
const fsync = cfg.fsync ?? 'always';
const embedder = new HashEmbedder();

let store;
if (cfg.store === 'js') store = new JsMemoryStore(cfg.dir, { dims: D, fsync });
else store = MemoryStore.open(cfg.dir, { dims: D, fsync, embedderName: embedder.name, embedderHash: embedder.hash, groupCommit: cfg.groupCommit ?? true, ...(cfg.annMinRows ? { annMinRows: cfg.annMinRows } : {}) });

const t0 = performance.now();
if (rows > 0) {
  const BATCH = 20_000;
  const ts = Date.now() - rows;
  const clustered = cfg.data === 'clustered' ? clusteredData(rows, D) : null;
  for (let s = 0; s < rows; s += BATCH) {
    const n = Math.min(BATCH, rows - s);
    const vecs = clustered ? clustered(s, n, 7) : randomVectors(n, D, 1000 + s);
    const recs = [];
    for (let i = 0; i < n; i++) {
      const k = s + i;
      recs.push({
        namespace: 'default',
        id: `b${k}`,
        text: `bulk memory ${k}`,
        metadata: JSON.stringify({ k }),
        significance: (k % 1000) / 1000,
        timestamp: ts + k,
        embedding: vecs.subarray(i * D, (i + 1) * D),
      });
    }
    await store.bulkLoad(recs);
  }
}
const loadS = (performance.now() - t0) / 1000;

const server = new MemoryServer({
  host: '127.0.0.1',
  port: 0,
  store,
  embedder,
  fsync,
  logLevel: 'warn',
  printListening: false,
  maxConnections: 20_000,
  maxConnectionsPerIp: cfg.maxConnectionsPerIp ?? 20_000,
  // Generous enough that no benchmark request is refused (the limiter still runs per message).
  rateLimit: { messagesPerSecond: 1e7, messagesBurst: 1e7, bytesPerSecond: 1e12, bytesBurst: 1e12 },
});

let port;
let transport;
if (cfg.transport === 'ws') {
  await server.open();
  transport = await startWsMemoryServer(server, { host: '127.0.0.1', port: 0 });
  port = transport.port;
} else if (cfg.transport === 'uws-floor' || cfg.transport === 'ws-floor') {
  // The fixed body: a real global `stats` reply's data, taken once.
  await server.open();
  const conn = { id: 'floor', auth: { method: 'none' }, allowsNamespace: () => true };
  const data = await server.commands.stats(conn, { type: 'stats' });
  const startFloor = cfg.transport === 'ws-floor' ? startWsFloorServer : startUwsFloorServer;
  transport = await startFloor({ host: '127.0.0.1', port: 0, dataJson: JSON.stringify(data) });
  port = transport.port;
} else {
  const info = await server.listen();
  port = info.port;
}
const connectionCount = () => (transport ? transport.connectionCount() : server.ws.connectionCount());

const pad = (n) => 'x'.repeat(Math.max(0, n));

serveParent({
  cpu() {
    const u = process.cpuUsage();
    return { user: u.user, system: u.system, wall: performance.now() };
  },
  mem() {
    globalThis.gc?.();
    globalThis.gc?.();
    const m = process.memoryUsage();
    return { rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers, connections: connectionCount() };
  },
  storeStats() {
    const s = store.stats();
    return { totalMemories: s.totalMemories, fsyncs: s.fsyncs, groups: s.groups, records: s.records, lastSeq: s.lastSeq, storageBytes: s.storageBytes, annPending: s.annPending, annBytes: s.annBytes };
  },
  connections() {
    return { connections: connectionCount() };
  },
  /** Broadcasts a `bytes`-long JSON event carrying seq; returns the publish stamps. */
  broadcast({ seq, bytes }) {
    const base = JSON.stringify({ status: 'success', type: 'bench_broadcast', timestamp: new Date().toISOString(), data: { seq, pad: '' } });
    const message = { status: 'success', type: 'bench_broadcast', timestamp: new Date().toISOString(), data: { seq, pad: pad(bytes - base.length) } };
    // Two clocks: timeOrigin + now for Node clients, CLOCK_MONOTONIC (process.hrtime) for
    // the native ones (bench/broadcast-client).
    const mono = Number(process.hrtime.bigint()) / 1e6;
    const t = performance.timeOrigin + performance.now();
    const reached = transport ? transport.broadcast(message) : server.ws.broadcast(message);
    const tAfter = performance.timeOrigin + performance.now();
    return { t, tAfter, mono, reached, bytes: JSON.stringify(message).length };
  },
  async exit() {
    setTimeout(() => process.exit(0), 3000).unref();
    if (transport) await transport.close();
    await server.close();
    process.exit(0);
  },
});

process.send({ event: 'ready', port, rows, loadS, pid: process.pid, transport: cfg.transport ?? 'uws', store: cfg.store ?? 'native' });
