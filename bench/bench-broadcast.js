// Issue 3, figure 5: a 2 KB broadcast (MemoryServer.ws.broadcast → uWS pub/sub) reaching all
// of BENCH_BROADCAST_CLIENTS (10,000) clients held by BENCH_LOADGENS client processes of their
// own. Latency = last client's receipt − publish.
// BENCH_CLIENT: native (default): bench/broadcast-client, raw WebSocket clients in Rust on
// epoll, stamped with CLOCK_MONOTONIC (the server stamps process.hrtime just before publish);
// raw: Node processes with hand-made upgrade and frame parser on `net` (`onread`); ws: `ws`
// package clients. The last two stamp performance.timeOrigin + performance.now() on both sides.
// The clients share the 2 cores with the server, so their own CPU per receipt is part of
// every figure: the native clients cost the least.
// Native clients run two modes, alternating broadcast by broadcast on the same connections:
// `coalesced` (the figure) sleeps BENCH_CLIENT_POLL_US (500) µs before each epoll_wait, so the
// server's sends do not pay for waking the receiving processes (on loopback that wake-up runs
// inside the sender's syscall; see bench/broadcast-client/src/main.rs), and `blocking` waits
// in epoll_wait. Each receipt in coalesced mode may be stamped up to that much late.
// BENCH_BROADCASTS (10) broadcasts per mode, BENCH_GAP_MS (500) apart. Only our server
// (target: within 100 ms). BENCH_LOADGENS: client processes (2 native, one per core; 4 Node).
import { saveResult } from './common.js';
import { connectAll, procCpuUs, startLoadGens, startServer } from './lib/harness.js';
import { buildBroadcastClient, startNativeClients } from './lib/native-clients.js';
import { call, percentile, sleep, stopAll } from './lib/procs.js';

const N = Number(process.env.BENCH_BROADCAST_CLIENTS ?? 10_000);
const COUNT = Number(process.env.BENCH_BROADCASTS ?? 10);
const GAP = Number(process.env.BENCH_GAP_MS ?? 500);
const BYTES = Number(process.env.BENCH_BROADCAST_BYTES ?? 2048);
const CLIENT = process.env.BENCH_CLIENT ?? 'native';
if (!['native', 'raw', 'ws'].includes(CLIENT)) throw new Error(`BENCH_CLIENT must be native, raw or ws (got ${CLIENT})`);
const GENS = Math.max(1, Number(process.env.BENCH_LOADGENS ?? (CLIENT === 'native' ? 2 : 4)));
const POLL_US = Number(process.env.BENCH_CLIENT_POLL_US ?? 500);
// Modes in broadcast order (seq 1, 2, …, cycling); the first is the figure.
const MODES = CLIENT === 'native' ? [{ name: 'coalesced', pollUs: POLL_US }, { name: 'blocking', pollUs: 0 }] : [{ name: CLIENT, pollUs: null }];
const CLIENT_DESCRIPTION = {
  native: 'bench/broadcast-client: raw WebSocket clients in Rust (hand-made upgrade, epoll, one read per frame)',
  raw: 'Node raw TCP sockets (hand-made upgrade, frame parser on net onread)',
  ws: 'ws package',
};
const bin = CLIENT === 'native' ? buildBroadcastClient() : null;

const server = await startServer({ transport: 'uws', store: 'native', rows: 0, maxConnectionsPerIp: 20_000 }, { fds: N + 500 });
let gens = [];
let natives = null;
try {
  const t0 = performance.now();
  let res;
  let genPids;
  let report;
  let setMode = async () => {};
  if (bin) {
    natives = await startNativeClients(bin, server.url, N, GENS);
    res = natives.procs;
    genPids = natives.procs.map((p) => p.pid);
    report = () => natives.report();
    setMode = (m) => natives.setPoll(m.pollUs);
  } else {
    gens = await startLoadGens(GENS, { fds: Math.ceil(N / GENS) + 200 });
    res = await connectAll(gens, server.url, N, { concurrency: 50, timeoutMs: 150_000, raw: CLIENT === 'raw' });
    genPids = gens.map((g) => g.pid);
    report = () => Promise.all(gens.map((g) => call(g, 'broadcastReport', {}, 30_000)));
  }
  // The server's publish stamp in the clients' clock.
  const stamp = (s) => (bin ? s.mono : s.t);
  const connectS = (performance.now() - t0) / 1000;
  await sleep(1000);
  const { connections } = await call(server.child, 'connections');
  const opened = res.reduce((a, r) => a + r.opened, 0);
  if (connections !== N || opened !== N) throw new Error(`server has ${connections} connections, clients opened ${opened}, wanted ${N}`);

  const sent = [];
  // seq 0 is a warm-up broadcast (not counted).
  const cpuMs = (pid) => {
    const c = procCpuUs(pid);
    return (c.user + c.system) / 1000;
  };
  // The server's CPU over one gap with no broadcast (keep-alive sweep etc.), to compare with.
  const i0 = cpuMs(server.child.pid);
  await sleep(GAP);
  const idleCpu = cpuMs(server.child.pid) - i0;
  for (let seq = 0; seq <= COUNT * MODES.length; seq++) {
    // seq 0 (warm-up) in the last mode, then the modes in turn.
    const mode = MODES[(seq + MODES.length - 1) % MODES.length];
    await setMode(mode);
    const sys0 = procCpuUs(server.child.pid).system;
    const s0 = cpuMs(server.child.pid);
    const g0 = genPids.map((pid) => cpuMs(pid));
    const r = await call(server.child, 'broadcast', { seq, bytes: BYTES });
    await sleep(GAP);
    // CPU each side spent on this broadcast (idle otherwise; /proc resolution 10 ms).
    const serverCpu = cpuMs(server.child.pid) - s0;
    const serverSys = (procCpuUs(server.child.pid).system - sys0) / 1000;
    const genCpu = genPids.map((pid, i) => cpuMs(pid) - g0[i]);
    sent.push({ seq, mode: mode.name, ...r, serverCpu, serverSys, genCpu });
  }
  await sleep(1000);
  const reports = await report();
  const rows = [];
  for (const s of sent.slice(1)) {
    let received = 0;
    let last = -Infinity;
    let first = Infinity;
    const perGen = [];
    for (const rep of reports) {
      const b = rep.receipts[s.seq];
      perGen.push(b ? Math.round((b.last - stamp(s)) * 10) / 10 : null);
      if (!b) continue;
      received += b.count;
      last = Math.max(last, b.last);
      first = Math.min(first, b.first);
    }
    rows.push({
      seq: s.seq,
      mode: s.mode,
      reached_at_publish: s.reached,
      received,
      publish_call_ms: s.tAfter - s.t,
      first_receipt_ms: first - stamp(s),
      last_receipt_ms: last - stamp(s),
      last_receipt_ms_per_generator: perGen,
      server_cpu_ms: s.serverCpu,
      server_cpu_system_ms: s.serverSys,
      load_generator_cpu_ms: s.genCpu,
    });
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const summarize = (rs) => {
    const lats = rs.map((r) => (r.received === N ? r.last_receipt_ms : Infinity)).sort((a, b) => a - b);
    return {
      broadcasts_complete: `${rs.filter((r) => r.received === N).length}/${rs.length}`,
      publish_to_last_receipt_ms: { p50_ms: percentile(lats, 50), p99_ms: percentile(lats, 99), max_ms: lats[lats.length - 1] },
      server_cpu_ms_per_broadcast_median: median(rs.map((r) => r.server_cpu_ms)),
      server_cpu_system_ms_per_broadcast_median: median(rs.map((r) => r.server_cpu_system_ms)),
      load_generators_cpu_ms_per_broadcast_median: median(rs.map((r) => r.load_generator_cpu_ms.reduce((a, b) => a + b, 0))),
      publish_call_ms_median: median(rs.map((r) => r.publish_call_ms)),
    };
  };
  const modes = Object.fromEntries(MODES.map((m) => [m.name, { client_poll_us: m.pollUs, ...summarize(rows.filter((r) => r.mode === m.name)) }]));
  const figure = modes[MODES[0].name];
  saveResult('broadcast', {
    workload: { client: CLIENT_DESCRIPTION[CLIENT], clients: N, load_generator_processes: GENS, broadcasts_per_mode: COUNT, gap_ms: GAP, message_bytes: sent[1]?.bytes, frame: 'JSON text via uWS pub/sub (WsServer.broadcast)' },
    connect_s: connectS,
    figure_mode: MODES[0].name,
    ...figure,
    server_cpu_ms_idle_gap: idleCpu,
    modes,
    target: 'last client within 100 ms',
    meets_target: figure.publish_to_last_receipt_ms.max_ms <= 100,
    per_broadcast: rows,
    notes: `Receipt times include the client processes' own scheduling delay (${GENS} processes share the 2 cores with the server; their CPU per broadcast is load_generators_cpu_ms_per_broadcast_median), so this is an upper bound on delivery time.`,
  });
} finally {
  if (natives) await natives.stop();
  await stopAll(gens);
  await server.stop();
}
