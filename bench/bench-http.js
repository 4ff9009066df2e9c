// Issue 20: `POST /v1/memories/search` (JSON body { embedding: number[384], count: 10 }) over
// HTTP/1.1 keep-alive against the WebSocket `retrieve` with the same body, on ONE memory
// server holding BENCH_RETRIEVE_ROWS (100,000) memories × 384 dims (bulk-loaded), in the same
// run: BENCH_CONNECTIONS (16) connections each, rounds alternating WebSocket / HTTP / pipelined
// WebSocket (BENCH_ROUNDS, 2) so drift hits all alike. HTTP sends one request at a time per
// keep-alive connection, as HTTP clients do (uWebSockets.js 20.30 closes a connection whose next
// request arrives in the same read while the previous answer is still pending, so HTTP/1.1
// pipelining is not used; docs/http.md); the baseline is the WebSocket at that same concurrency
// (one frame in flight per connection), and the WebSocket with BENCH_DEPTH (4) frames in flight
// (as bench-retrieve.js) is reported beside it. The load generators run in
// their own processes: bench/lib/load-child.js (WebSocket, as bench-retrieve.js) and
// bench/lib/http-load-child.js (autocannon). Target: HTTP ≥ 80% of the WebSocket throughput.
// Env: BENCH_RETRIEVE_ROWS, BENCH_CONNECTIONS, BENCH_DEPTH, BENCH_SECONDS (6), BENCH_WARMUP_MS (1500), BENCH_ROUNDS.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomVectors, saveResult } from './common.js';
import { connectAll, cpuDelta, measuredPipeline, procCpuUs, startLoadGens, startServer } from './lib/harness.js';
import { call, startChild, stopAll, waitEvent } from './lib/procs.js';

const here = dirname(fileURLToPath(import.meta.url));
const ROWS = Number(process.env.BENCH_RETRIEVE_ROWS ?? 100_000);
const CONNS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const DEPTH = Number(process.env.BENCH_DEPTH ?? 4);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 6);
const WARMUP = Number(process.env.BENCH_WARMUP_MS ?? 1500);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const K = 10;
const D = 384;

/** The same 256 query vectors as load-child.js's retrieve (seed 4242), as HTTP bodies. */
function searchBodies() {
  const vecs = randomVectors(256, D, 4242);
  const out = [];
  for (let q = 0; q < 256; q++) {
    const arr = Array.from(vecs.subarray(q * D, (q + 1) * D), (x) => Number(x.toPrecision(7)));
    out.push(`{"count":${K},"embedding":${JSON.stringify(arr)}}`);
  }
  return out;
}

async function wsRound(server, depth) {
  const gens = await startLoadGens(1);
  try {
    const [c] = await connectAll(gens, server.url, CONNS);
    if (c.opened !== CONNS) throw new Error(`ws: opened ${c.opened}/${CONNS} connections`);
    const r = await measuredPipeline(server, gens[0], {
      kind: 'retrieve',
      count: K,
      depth,
      warmupMs: WARMUP,
      durationMs: SECONDS * 1000,
      validateEvery: 13,
      drain: true,
      maxRequests: 1_000_000,
    });
    if (r.load.errors || r.load.id_mismatches) throw new Error(`ws: ${r.load.errors} errors, ${r.load.id_mismatches} mismatches: ${r.load.first_error}`);
    const n = r.load.window_replies;
    return { queries_per_s: r.load.replies_per_s, requests: n, latency_ms: r.load.latency_ms, server_cpu_us_per_query: r.procCpu.total_us / n };
  } finally {
    await stopAll(gens);
  }
}

async function httpRound(server, bodies) {
  const gen = startChild(join(here, 'lib', 'http-load-child.js'), { name: 'http-load' });
  try {
    await waitEvent(gen, 'ready', 30_000);
    let p0 = null;
    let p1 = null;
    const onMark = (m) => {
      if (m?.event === 'mark0') p0 = procCpuUs(server.child.pid);
      else if (m?.event === 'mark1') p1 = procCpuUs(server.child.pid);
    };
    gen.on('message', onMark);
    const r = await call(gen, 'load', {
      url: `http://127.0.0.1:${server.port}/v1/memories/search`,
      connections: CONNS,
      pipelining: 1,
      durationS: SECONDS,
      warmupS: Math.max(1, Math.round(WARMUP / 1000)),
      bodies,
      headers: { 'content-type': 'application/json' },
    }, (SECONDS + 60) * 1000);
    gen.off('message', onMark);
    if (r.error) throw new Error(r.error);
    if (r.errors || r.non2xx || r.timeouts) throw new Error(`http: ${r.errors} errors, ${r.non2xx} non-2xx, ${r.timeouts} timeouts`);
    const cpuUs = p0 && p1 ? cpuDelta(p0, p1).total_us : null;
    return {
      queries_per_s: r.replies_per_s,
      requests: r.requests,
      latency_ms: r.latency_ms,
      server_cpu_us_per_query: cpuUs === null ? null : cpuUs / r.requests,
    };
  } finally {
    await stopAll([gen]);
  }
}

/** One real reply, checked: 10 memories with scores, best first. */
async function checkReply(port, body) {
  const res = await fetch(`http://127.0.0.1:${port}/v1/memories/search`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  const json = await res.json();
  if (res.status !== 200 || json.memories?.length !== K) throw new Error(`unexpected reply ${res.status}: ${JSON.stringify(json).slice(0, 300)}`);
  for (let i = 1; i < K; i++) if (json.memories[i].score > json.memories[i - 1].score) throw new Error('reply not ordered by score');
}

const server = await startServer({ transport: 'uws', store: 'native', rows: ROWS });
const rounds = [];
try {
  const bodies = searchBodies();
  await checkReply(server.port, bodies[0]);
  for (let i = 0; i < ROUNDS; i++) {
    const ws = await wsRound(server, 1);
    console.log(`round ${i + 1}: ws (1 in flight per connection) ${ws.queries_per_s.toFixed(0)} q/s`);
    const http = await httpRound(server, bodies);
    console.log(`round ${i + 1}: http ${http.queries_per_s.toFixed(0)} q/s`);
    const wsPipelined = await wsRound(server, DEPTH);
    console.log(`round ${i + 1}: ws (${DEPTH} in flight per connection) ${wsPipelined.queries_per_s.toFixed(0)} q/s`);
    rounds.push({ ws, http, ws_pipelined: wsPipelined });
  }
} finally {
  await server.stop();
}
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const wsQps = mean(rounds.map((r) => r.ws.queries_per_s));
const httpQps = mean(rounds.map((r) => r.http.queries_per_s));
const wsPipelinedQps = mean(rounds.map((r) => r.ws_pipelined.queries_per_s));
const ratio = httpQps / wsQps;
const ratioPipelined = httpQps / wsPipelinedQps;
console.log(`HTTP / WebSocket at the same concurrency: ${(ratio * 100).toFixed(1)}%; HTTP / pipelined WebSocket: ${(ratioPipelined * 100).toFixed(1)}%`);
saveResult('http', {
  workload: {
    command: 'POST /v1/memories/search { embedding: number[384] (JSON), count: 10 } vs WebSocket retrieve, same data',
    store_memories: ROWS,
    dims: D,
    store_built_by: 'bulkLoad (not store)',
    connections: CONNS,
    in_flight_per_connection: { websocket: DEPTH, http: 1 },
    window_s: SECONDS,
    rounds: ROUNDS,
  },
  ours: { transport: 'HTTP/1.1 keep-alive, one request in flight per connection; uWS HTTP routes (ts/server/http/memory-api.ts)', queries_per_s: httpQps, load_generator: 'autocannon in its own process (bench/lib/http-load-child.js)' },
  baseline: {
    transport: 'WebSocket retrieve on the same server and port, one request in flight per connection (the same concurrency as HTTP)',
    queries_per_s: wsQps,
    load_generator: 'bench/lib/load-child.js (ws) in its own process',
  },
  websocket_pipelined: { in_flight_per_connection: DEPTH, queries_per_s: wsPipelinedQps, http_over_it: ratioPipelined },
  rounds,
  http_over_ws: ratio,
  target: '≥ 0.8× the WebSocket retrieve throughput',
  meets_target: ratio >= 0.8,
  notes: 'Both transports call the same retrieve handler; concurrent queries with equal options share one pass over the vectors in either case.',
});
