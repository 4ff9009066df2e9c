// Issue 22: cluster mode on NATS JetStream (`pnpm bench cluster`; not run by default: it
// starts 3 nats-servers and up to 5 memory-server processes and loads 100,000 memories).
//  (a) durable stores/s through 3 instances on an R3 stream, BENCH_CONNECTIONS (16) `ws`
//      connections spread over the instances with BENCH_DEPTH (4) stores in flight each,
//      against one single-node server with --fsync always under the same load in the same run;
//      CPU per store = CPU time of every process involved (nats-servers + instances, or the
//      single server) over the stores acknowledged;
//  (b) replication lag: one store at a time through instance A; the time from its ack at the
//      client to its `memory_added` event from B and from C (same client clock), p50/p99;
//  (c) failover: a MemoryClient with [A, B] sends `stats` every 2 ms; A is killed (SIGKILL);
//      the time from the kill to the first reply served by B;
//  (d) catch-up: BENCH_CLUSTER_ROWS (100,000) memories stored in batches of 200; then a new
//      instance starts on an empty data directory; the time from its spawn until it has
//      applied the whole stream. The members run with --cluster-snapshot-interval-s
//      BENCH_SNAPSHOT_S (5), and the fill waits for a snapshot at its end, so the new
//      instance restores the snapshot and applies only what follows it.
// All processes share this machine's cores with the load generator: read the figures as
// relative, not as what separate machines would give.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { saveResult, tempDir, removeDir, median } from './common.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const CONNS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const DEPTH = Number(process.env.BENCH_DEPTH ?? 4);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROWS = Number(process.env.BENCH_CLUSTER_ROWS ?? 100_000);
const LAG_SAMPLES = Number(process.env.BENCH_LAG_SAMPLES ?? 300);
const NATS = process.env.NATS_SERVER ?? '/usr/sbin/nats-server';
const SNAPSHOT_S = Number(process.env.BENCH_SNAPSHOT_S ?? 5);
const t0 = Date.now();
const phase = (what) => console.error(`[bench-cluster ${((Date.now() - t0) / 1000).toFixed(1)} s] ${what}`);
const { MemoryClient } = await import(join(root, 'dist/client/index.js'));

const procs = new Set();
const dirs = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function cleanup() {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) process.kill(p.pid, 'SIGKILL');
  for (const d of dirs) removeDir(d);
}
process.on('exit', cleanup);

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function until(f, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f().catch(() => null);
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function spawnLogged(cmd, args) {
  const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.on('data', (d) => (out += d));
  p.stderr.on('data', (d) => (out += d));
  procs.add(p);
  p.output = () => out;
  return p;
}

async function startNats(n) {
  const base = tempDir('bench-nats-');
  dirs.push(base);
  const specs = [];
  for (let i = 0; i < n; i++) specs.push({ port: await freePort(), cport: await freePort(), dir: join(base, `n${i}`) });
  const nodes = specs.map((s, i) => {
    const args = ['-js', '-sd', s.dir, '-p', String(s.port), '-a', '127.0.0.1', '-n', `n${i}`];
    if (n > 1) args.push('--cluster_name', 'bench', '--cluster', `nats://127.0.0.1:${s.cport}`, '--routes', specs.filter((_, j) => j !== i).map((o) => `nats://127.0.0.1:${o.cport}`).join(','));
    return spawnLogged(NATS, args);
  });
  for (const p of nodes) await until(async () => p.output().includes('Server is ready'), 15_000, 'nats-server');
  return { nodes, urls: specs.map((s) => `nats://127.0.0.1:${s.port}`) };
}

async function startMember(extra) {
  const dir = tempDir('bench-member-');
  dirs.push(dir);
  const spawnedAt = Date.now();
  const p = spawnLogged(process.execPath, [join(root, 'dist/cli/main.js'), '--no-control', '--no-inference', '--host', '127.0.0.1', '--port', '0', '--data-dir', dir, '--fsync', 'always', '--rate-limit', '0', '--log-level', 'warn', ...extra]);
  const port = await until(async () => {
    if (p.exitCode !== null) throw new Error(p.output());
    const m = /memory server\s+ws:\/\/[^\s]+:(\d+)/.exec(p.output());
    return m ? Number(m[1]) : null;
  }, 120_000, 'a memory server');
  return { proc: p, url: `ws://127.0.0.1:${port}`, spawnedAt, listenedAt: Date.now() };
}

/** Process CPU time (user + system) in µs from /proc. */
function cpuUs(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / 100; // clock ticks of 10 ms
}

function client(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const pending = new Map();
    const listeners = [];
    let n = 0;
    ws.on('message', (raw) => {
      const m = JSON.parse(raw.toString());
      if (m.id !== undefined && pending.has(m.id)) {
        pending.get(m.id)(m);
        pending.delete(m.id);
      } else for (const l of listeners) l(m);
    });
    ws.once('open', () =>
      resolve({
        ws,
        on: (f) => listeners.push(f),
        request: (type, data) => new Promise((r) => {
          const id = ++n;
          pending.set(id, r);
          ws.send(JSON.stringify({ type, id, data }));
        }),
        close: () => ws.close(),
      }),
    );
    ws.once('error', reject);
  });
}

const words = 'memory cluster stream replica quorum durable vector search event apply log node'.split(' ');
const text = (i) => Array.from({ length: 8 + (i % 24) }, (_, j) => words[(i * 7 + j * 13) % words.length]).join(' ') + ` ${i}`;

/** Closed-loop durable stores from CONNS connections over `urls` for SECONDS; CPU of `pids`. */
async function storeLoad(urls, pids, label) {
  const conns = await Promise.all(Array.from({ length: CONNS }, (_, i) => client(urls[i % urls.length])));
  let acked = 0;
  let errors = 0;
  let firstError = null;
  let counting = false;
  let stop = false;
  let seq = 0;
  const loop = async (c) => {
    while (!stop) {
      const r = await c.request('store', { namespace: 'load', text: text(seq++) });
      if (r.status !== 'success') {
        errors++;
        firstError ??= r;
      } else if (counting) acked++;
    }
  };
  const loops = conns.flatMap((c) => Array.from({ length: DEPTH }, () => loop(c)));
  await sleep(1000); // warm-up
  const cpu0 = pids.reduce((s, p) => s + cpuUs(p), 0);
  const t0 = performance.now();
  counting = true;
  await sleep(SECONDS * 1000);
  counting = false;
  const t1 = performance.now();
  const cpu1 = pids.reduce((s, p) => s + cpuUs(p), 0);
  stop = true;
  await Promise.all(loops);
  for (const c of conns) c.close();
  if (errors) console.error(`${label}: ${errors} errors, first: ${JSON.stringify(firstError)}`);
  return { stores_per_s: Math.round((acked / (t1 - t0)) * 1000), cpu_us_per_store: Math.round((cpu1 - cpu0) / acked), acknowledged: acked, errors };
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

async function main() {
  phase('single-node load');
  const single = await startMember([]);
  const singleLoad = await storeLoad([single.url], [single.proc.pid], 'single');
  process.kill(single.proc.pid, 'SIGKILL');

  const nats = await startNats(3);
  const members = [];
  const clusterArgs = ['--cluster', nats.urls.join(','), '--cluster-snapshot-interval-s', String(SNAPSHOT_S)];
  for (const id of ['a', 'b', 'c']) members.push(await startMember([...clusterArgs, '--node-id', id]));
  phase('cluster load');
  const pids = [...nats.nodes, ...members.map((m) => m.proc)].map((p) => p.pid);
  const clusterLoad = await storeLoad(members.map((m) => m.url), pids, 'cluster');

  phase('replication lag');
  const [ca, cb, cc] = await Promise.all(members.map((m) => client(m.url)));
  const seenAt = new Map();
  for (const [c, name] of [[cb, 'b'], [cc, 'c']]) {
    await c.request('subscribe', { namespace: 'lag' });
    c.on((m) => {
      if (m.type === 'memory_added') seenAt.set(`${name}/${m.data.memory.id}`, performance.now());
    });
  }
  const lags = [];
  for (let i = 0; i < LAG_SAMPLES; i++) {
    const r = await ca.request('store', { namespace: 'lag', text: text(i) });
    const acked = performance.now();
    await until(async () => seenAt.has(`b/${r.data.id}`) && seenAt.has(`c/${r.data.id}`), 10_000, 'the event on B and C');
    lags.push(seenAt.get(`b/${r.data.id}`) - acked, seenAt.get(`c/${r.data.id}`) - acked);
  }
  for (const c of [ca, cb, cc]) c.close();

  phase(`fill to ${ROWS}`);
  const filler = await client(members[1].url);
  for (let i = 0; i < ROWS; i += 200) {
    const items = Array.from({ length: Math.min(200, ROWS - i) }, (_, j) => ({ text: text(i + j) }));
    const r = await filler.request('store', { namespace: 'bulk', items });
    if (r.status !== 'success') throw new Error(JSON.stringify(r));
    if (i % 20_000 === 0) phase(`filled ${i}`);
  }
  const streamSeq = (await filler.request('stats')).data.cluster.stream_seq;
  const total = (await filler.request('stats')).data.total_memories;
  filler.close();
  // A snapshot covering the fill (the lease holder writes one within SNAPSHOT_S once the stream moved).
  const { connect: natsConnect } = await import('@nats-io/transport-node');
  const { Objm } = await import('@nats-io/obj');
  const nc = await natsConnect({ servers: nats.urls });
  const os = await new Objm(nc).open('memory_memory_snapshots');
  const snapSeq = await until(async () => {
    const seq = Number((await os.info('latest'))?.metadata?.seq ?? 0);
    return seq >= streamSeq ? seq : null;
  }, 600_000, 'a snapshot of the fill');
  await nc.close();
  phase('catch-up');
  const late = await startMember([...clusterArgs, '--node-id', 'late']);
  const lc = await client(late.url);
  await until(async () => (await lc.request('stats')).data.cluster.applied_seq >= streamSeq, 600_000, 'the late member to catch up');
  const catchUpMs = Date.now() - late.spawnedAt;
  const listenMs = late.listenedAt - late.spawnedAt;
  lc.close();

  phase('failover');
  const fo = new MemoryClient({ urls: [members[0].url, members[1].url], WebSocket, reconnect: { initialDelayMs: 10, maxDelayMs: 100, maxAttempts: 100 } });
  await fo.connect();
  let servedByB = null;
  let killedAt = 0;
  let stop = false;
  const poll = (async () => {
    while (!stop) {
      try {
        const s = await fo.stats();
        if (killedAt && s.cluster?.node_id === 'b' && servedByB === null) servedByB = performance.now();
      } catch {
        // the in-flight request of the killed instance is replayed on B
      }
      await sleep(2);
    }
  })();
  await sleep(300);
  killedAt = performance.now();
  process.kill(members[0].proc.pid, 'SIGKILL');
  await until(async () => servedByB !== null, 30_000, 'the client to be served by B');
  stop = true;
  await poll;
  await fo.close();

  saveResult('cluster', {
    note: 'every process (3 nats-servers, the instances, the load client) shares this machine; CPU per store counts all of them',
    connections: CONNS,
    depth: DEPTH,
    seconds: SECONDS,
    single_node_fsync_always: singleLoad,
    cluster_3_instances_r3: clusterLoad,
    replication_lag_ms: { samples: lags.length, p50: +median(lags).toFixed(2), p99: +pct(lags, 99).toFixed(2), max: +Math.max(...lags).toFixed(2) },
    failover_ms: +(servedByB - killedAt).toFixed(1),
    catch_up: { memories: total, stream_seq: streamSeq, snapshot_seq: snapSeq, ms: catchUpMs, listening_after_ms: listenMs, from: 'snapshot, then the stream after it' },
  });
}

main()
  .catch((err) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(cleanup);
