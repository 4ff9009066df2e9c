// Issue 19: the transport figures, with a native open-loop load generator (bench/load-client,
// Rust on epoll) in place of the Node one that bounded bench-server-cpu.js (one Node client
// process on the same two cores saturated before the servers did).
//
// Servers, each in its own process (bench/lib/server-child.js), all started at once and idle
// while another is measured:
//   ours      MemoryServer on uWebSockets.js;
//   ws        the same MemoryServer.commands over the `ws` package (bench/baselines/ws-memory-server.js);
//   uws-floor a reference, not a baseline: uWebSockets.js that JSON.parses each request and
//             answers a fixed `stats`-sized body, no handler (bench/baselines/uws-floor-server.js).
//   ws-floor  the same reference on the `ws` package (bench/baselines/ws-floor-server.js).
//             uws-floor / ws-floor is the ratio of the two transports alone: the largest
//             ours / ws ratio a handler could give (a handler adds the same CPU to both).
//             The references answer nothing else, so `retrieve` compares ours and ws only.
// Commands: `stats` (empty store) and `retrieve` {embedding: 384 floats, count: 10} against
// BENCH_RETRIEVE_ROWS (10,000) memories preloaded through the harness's bulk-load path.
//
// Per command and server:
//  1. saturation: a closed-loop probe (BENCH_CONNECTIONS × 16 in flight) gives the server's
//     maximum C; then open-loop steps at 0.6, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5 × C and on by
//     × 1.25 (up to 4 × C) until one fails (achieved < 95% of offered, p99 >
//     BENCH_P99_LIMIT_MS (50), or any drop or error; if 0.6 × C fails, down by × 0.7 until
//     one passes), then two bisections between the last pass and the first failure.
//     Saturation throughput = the highest offered rate that passed (what the server sustains
//     open-loop, to ~5%); C is kept too. `bound` says whether the
//     server was busy for a whole core at the first failing step, or held back by the load
//     generator or the machine (then the figure is a lower bound).
//  2. at 25%, 50% and 90% of OUR open-loop saturation rate, for every server: server CPU per
//     reply (time on CPU of all its threads over the window, /proc/<pid>/task/*/schedstat,
//     read by the load generator at the window's edges; user/system split from
//     /proc/<pid>/stat ticks), p50/p99 latency from each request's scheduled send time,
//     achieved rate, and the load generator's own CPU. A server slower than that rate is
//     overloaded there (achieved < 95% of offered, or requests dropped beyond
//     BENCH_MAX_OUTSTANDING unanswered), and reported as such.
//     BENCH_ROUNDS (3) rounds; within a round, rates in turn, and at each rate the servers in
//     an order rotated every round; medians over rounds.
// The load generator is not pinned (BENCH_PIN=1 pins the server to CPU 0 and the generator to
// CPU 1 with taskset). Each window also records what the rest of the machine ran (other_cpu:
// /proc/stat busy time minus server and generator); a point where that exceeds
// BENCH_MAX_OTHER_CPU (0.25 of a core) is measured again 3 s later, up to BENCH_RETRIES (2)
// times, and flagged `disturbed` if still so.
// Env: BENCH_CONNECTIONS (64), BENCH_ROUNDS (3), BENCH_WARMUP_MS (500), BENCH_WINDOW_MS (1500),
// BENCH_TICK_US (50), BENCH_COMMANDS (stats,retrieve), BENCH_MAX_OUTSTANDING (connections × 256).
// Default run: ~4–5 minutes.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { join } from 'node:path';
import { median, randomVectors, removeDir, saveResult, tempDir } from './common.js';
import { startServer } from './lib/harness.js';
import { buildLoadClient, startLoadClient } from './lib/native-clients.js';
import { sleep } from './lib/procs.js';

const env = (k, d) => (process.env[k] === undefined ? d : Number(process.env[k]));
const CONNS = env('BENCH_CONNECTIONS', 64);
const ROUNDS = env('BENCH_ROUNDS', 3);
const WARMUP_MS = env('BENCH_WARMUP_MS', 500);
const WINDOW_MS = env('BENCH_WINDOW_MS', 1500);
const TICK_US = env('BENCH_TICK_US', 50);
const P99_LIMIT_MS = env('BENCH_P99_LIMIT_MS', 50);
const MAX_OUTSTANDING = env('BENCH_MAX_OUTSTANDING', CONNS * 256);
const MAX_OTHER_CPU = env('BENCH_MAX_OTHER_CPU', 0.25);
const RETRIES = env('BENCH_RETRIES', 2);
const RETRIEVE_ROWS = env('BENCH_RETRIEVE_ROWS', 10_000);
const PIN = process.env.BENCH_PIN === '1';
const COMMANDS = (process.env.BENCH_COMMANDS ?? 'stats,retrieve').split(',').filter(Boolean);
const FRACTIONS = [0.25, 0.5, 0.9];
const PROBE_DEPTH = 16;
const STEPS = [0.6, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5];
const BISECTIONS = 2;
const K = 10;
const D = 384;

const SERVERS = {
  ours: { transport: 'uws', what: 'MemoryServer on uWebSockets.js (ts/server/ws-server.ts), rate limiter on (limits raised), log level warn' },
  ws: { transport: 'ws', what: 'bench/baselines/ws-memory-server.js: the same MemoryServer.commands over the `ws` package' },
  uws_floor: { transport: 'uws-floor', what: 'bench/baselines/uws-floor-server.js: uWebSockets.js, JSON.parse, one reply with a fixed stats-sized body; no handler' },
  ws_floor: { transport: 'ws-floor', what: 'bench/baselines/ws-floor-server.js: the `ws` package, JSON.parse, one reply with a fixed stats-sized body; no handler' },
};

const t0 = performance.now();
const bin = buildLoadClient();
const work = tempDir('ms-bench-transport-');
const templates = {
  stats: join(work, 'stats.txt'),
  retrieve: join(work, 'retrieve.txt'),
};
writeFileSync(templates.stats, '{"type":"stats","id":{ID}}\n');
{
  // 256 query vectors, 7 significant digits (the shape of bench-retrieve.js's requests).
  const vecs = randomVectors(256, D, 4242);
  const lines = [];
  for (let q = 0; q < 256; q++) {
    const arr = Array.from(vecs.subarray(q * D, (q + 1) * D), (x) => Number(x.toPrecision(7)));
    lines.push(`{"type":"retrieve","id":{ID},"data":{"count":${K},"embedding":${JSON.stringify(arr)}}}`);
  }
  writeFileSync(templates.retrieve, lines.join('\n') + '\n');
}

const cpuModel = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpus()[0]?.model;
const load = () => loadavg().map((x) => Number(x.toFixed(2)));
const loadAtStart = load();
console.log(`load average at start: ${loadAtStart.join(' ')}${loadAtStart[0] > 1.5 ? ' (above 1.5: figures may be disturbed)' : ''}`);
const pin = (pid, cpu) => PIN && execFileSync('taskset', ['-a', '-cp', String(cpu), String(pid)], { stdio: 'ignore' });

/** Checks one run's sample reply (a real JSON reply to a request of `command`). */
function validate(command, server, r) {
  if (r.replies_in_window === 0) throw new Error(`${server}/${command}: no replies in the window`);
  const msg = JSON.parse(r.sample_reply);
  if (msg.status !== 'success' || msg.type !== command || typeof msg.id !== 'number' || typeof msg.data !== 'object') {
    throw new Error(`${server}/${command}: unexpected reply ${r.sample_reply.slice(0, 200)}`);
  }
  if (command === 'retrieve' && msg.data.memories?.length !== K) throw new Error(`${server}/retrieve: ${msg.data.memories?.length} memories, expected ${K}`);
}

/** The figures kept from one run. */
function point(r) {
  return {
    offered_per_s: r.offered_per_s,
    offered_in_window_per_s: r.offered_in_window_per_s,
    achieved_per_s: r.achieved_per_s,
    window_s: r.window_s,
    replies: r.replies_in_window,
    errors: r.errors_in_window,
    dropped: r.dropped_in_window,
    unanswered: r.unanswered_in_window,
    latency_ms: { p50: r.latency.p50_us / 1e3, p90: r.latency.p90_us / 1e3, p99: r.latency.p99_us / 1e3, max: r.latency.max_us / 1e3 },
    send_lag_ms: { p50: r.send_lag.p50_us / 1e3, p99: r.send_lag.p99_us / 1e3 },
    server_cpu_us_per_reply: r.server_cpu.sched_us_per_reply,
    server_cpu_user_us_per_reply: r.server_cpu.user_us_per_reply,
    server_cpu_system_us_per_reply: r.server_cpu.system_us_per_reply,
    server_cpu_utilization: r.server_cpu.utilization,
    server_ctx_switches_per_reply: r.server_cpu.ctx_switches / Math.max(1, r.replies_in_window),
    client_cpu_us_per_reply: r.client_cpu.us_per_reply,
    client_cpu_utilization: r.client_cpu.utilization,
    softirqd_cpu_utilization: r.softirqd_cpu.utilization,
    other_cpu_utilization: r.other_cpu.utilization,
    reply_bytes: r.reply_bytes,
  };
}

/** The server answered what was offered: ≥ 95% of it in the window, nothing dropped or left unanswered. */
const keepsUp = (p) => p.achieved_per_s >= 0.95 * p.offered_in_window_per_s && p.dropped === 0 && p.unanswered === 0;
/** A saturation step passes when the server keeps up, with p99 ≤ BENCH_P99_LIMIT_MS and no errors. */
const passes = (p) => keepsUp(p) && p.latency_ms.p99 <= P99_LIMIT_MS && p.errors === 0;

async function measure(command, name, s, args) {
  for (let attempt = 0; ; attempt++) {
    const r = await s.client.run({ server_pid: s.server.child.pid, warmup_ms: WARMUP_MS, window_ms: WINDOW_MS, tick_us: TICK_US, max_outstanding: MAX_OUTSTANDING, ...args });
    validate(command, name, r);
    const p = point(r);
    if (p.other_cpu_utilization <= MAX_OTHER_CPU || attempt >= RETRIES) return { ...p, disturbed: p.other_cpu_utilization > MAX_OTHER_CPU, attempts: attempt + 1 };
    console.log(`  ${name}: other processes used ${p.other_cpu_utilization.toFixed(2)} of a core; measuring again in 3 s`);
    await sleep(3000);
  }
}

async function saturation(command, name, s) {
  const probe = await measure(command, name, s, { depth: PROBE_DEPTH, drain_ms: 10_000 });
  const c = probe.achieved_per_s;
  console.log(`  ${name}: closed-loop max ${Math.round(c)}/s (p99 ${probe.latency_ms.p99.toFixed(2)} ms, server ${probe.server_cpu_utilization.toFixed(2)} core)`);
  const steps = [];
  const step = async (rate) => {
    const p = await measure(command, name, s, { rate: Math.round(rate), drain_ms: 10_000 });
    const ok = passes(p);
    steps.push({ ...p, passed: ok });
    console.log(
      `  ${name}: open loop ${Math.round(rate)}/s → ${Math.round(p.achieved_per_s)}/s, p99 ${p.latency_ms.p99.toFixed(2)} ms${p.dropped ? `, ${p.dropped} dropped` : ''} ${ok ? 'ok' : 'FAIL'} ` +
        `(CPU: server ${p.server_cpu_utilization.toFixed(2)}, generator ${p.client_cpu_utilization.toFixed(2)}, others ${p.other_cpu_utilization.toFixed(2)})`,
    );
    return ok;
  };
  // Bracket the sustained rate between a passing `lo` and a failing `hi`, then bisect.
  let lo = 0;
  let hi = 0;
  if (await step(c * STEPS[0])) {
    lo = c * STEPS[0];
    // The listed steps, then on by × 1.25 (a server can sustain more open-loop than its
    // closed-loop maximum: `ws` does), up to 4 × C.
    for (let i = 1, f = STEPS[1]; f <= 4; i++, f = i < STEPS.length ? STEPS[i] : f * 1.25) {
      if (await step(c * f)) lo = c * f;
      else {
        hi = c * f;
        break;
      }
    }
  } else {
    hi = c * STEPS[0];
    for (let r = hi * 0.7; r >= c * 0.02; r *= 0.7) {
      if (await step(r)) {
        lo = r;
        break;
      }
      hi = r;
    }
  }
  for (let i = 0; i < BISECTIONS && lo > 0 && hi > 0; i++) {
    const mid = (lo + hi) / 2;
    if (await step(mid)) lo = mid;
    else hi = mid;
  }
  // What bound it: a server whose threads were not busy for a whole core when it first failed
  // was held back by something else (the load generator, or the machine).
  const failed = steps.filter((p) => !p.passed).sort((a, b) => a.offered_per_s - b.offered_per_s)[0];
  const bound = !failed ? null : failed.server_cpu_utilization >= 0.95 ? 'server' : 'not the server (below one core busy): load generator or machine';
  return {
    closed_loop_max_per_s: c,
    closed_loop_probe: probe,
    sustained_per_s: Math.round(lo),
    first_failing_per_s: failed ? Math.round(failed.offered_per_s) : null,
    bound,
    first_failure_cpu: failed ? { server: failed.server_cpu_utilization, generator: failed.client_cpu_utilization, others: failed.other_cpu_utilization } : null,
    disturbed_steps: steps.filter((p) => p.disturbed).length,
    steps,
  };
}

const summary = (runs) => {
  const m = (f) => median(runs.map(f));
  return {
    offered_per_s: runs[0].offered_per_s,
    achieved_per_s: m((p) => p.achieved_per_s),
    overloaded: runs.filter((p) => !keepsUp(p)).length > runs.length / 2,
    server_cpu_us_per_reply: m((p) => p.server_cpu_us_per_reply),
    server_cpu_user_us_per_reply: m((p) => p.server_cpu_user_us_per_reply),
    server_cpu_system_us_per_reply: m((p) => p.server_cpu_system_us_per_reply),
    server_cpu_utilization: m((p) => p.server_cpu_utilization),
    server_ctx_switches_per_reply: m((p) => p.server_ctx_switches_per_reply),
    p50_ms: m((p) => p.latency_ms.p50),
    p99_ms: m((p) => p.latency_ms.p99),
    client_cpu_us_per_reply: m((p) => p.client_cpu_us_per_reply),
    client_cpu_utilization: m((p) => p.client_cpu_utilization),
    softirqd_cpu_utilization: m((p) => p.softirqd_cpu_utilization),
    other_cpu_utilization: m((p) => p.other_cpu_utilization),
    disturbed_runs: runs.filter((p) => p.disturbed).length,
    runs,
  };
};

async function runCommand(command) {
  const names = command === 'stats' ? ['ours', 'ws', 'uws_floor', 'ws_floor'] : ['ours', 'ws'];
  const rows = command === 'retrieve' ? RETRIEVE_ROWS : 0;
  const started = {};
  try {
    for (const name of names) {
      const server = await startServer({ transport: SERVERS[name].transport, store: 'native', rows });
      started[name] = { server };
      pin(server.child.pid, 0);
      const client = await startLoadClient(bin, server.url, CONNS, templates[command]);
      started[name].client = client;
      pin(client.pid, 1);
      if (client.opened !== CONNS) throw new Error(`${name}: opened ${client.opened}/${CONNS} connections`);
    }
    // The machine's own wake-up jitter (servers idle): a floor under every p99 below.
    const jitter = await started[names[0]].client.jitter();
    console.log(`${command}: wake-up lateness of a 50 µs sleep, p50 ${jitter.late.p50_us} µs, p99 ${jitter.late.p99_us} µs, p99.9 ${jitter.late.p999_us} µs, max ${jitter.late.max_us} µs`);
    console.log(`${command}: saturation`);
    const sat = {};
    for (const name of names) sat[name] = await saturation(command, name, started[name]);
    const ours = sat.ours.sustained_per_s;
    const rates = FRACTIONS.map((f) => Math.round(f * ours));
    console.log(`${command}: at ${rates.join(', ')}/s (25/50/90% of ours), ${ROUNDS} rounds`);
    const raw = Object.fromEntries(names.map((n) => [n, rates.map(() => [])]));
    for (let round = 0; round < ROUNDS; round++) {
      const order = names.map((_, i) => names[(i + round) % names.length]);
      for (let i = 0; i < rates.length; i++) {
        for (const name of order) {
          const p = await measure(command, name, started[name], { rate: rates[i], drain_ms: 5000 });
          raw[name][i].push(p);
          console.log(
            `  round ${round + 1} ${name} @ ${rates[i]}/s: ${p.server_cpu_us_per_reply.toFixed(2)} µs/reply (user ${p.server_cpu_user_us_per_reply.toFixed(2)}, sys ${p.server_cpu_system_us_per_reply.toFixed(2)}), ` +
              `p50 ${p.latency_ms.p50.toFixed(2)} p99 ${p.latency_ms.p99.toFixed(2)} ms, achieved ${Math.round(p.achieved_per_s)}/s; generator ${p.client_cpu_utilization.toFixed(2)} core, others ${p.other_cpu_utilization.toFixed(2)}`,
          );
        }
      }
    }
    const at = Object.fromEntries(names.map((n) => [n, Object.fromEntries(FRACTIONS.map((f, i) => [`${Math.round(f * 100)}%`, summary(raw[n][i])]))]));
    const out = {
      store_memories: rows,
      machine_jitter_50us_sleep: jitter.late,
      servers: Object.fromEntries(names.map((n) => [n, { server: SERVERS[n].what, bulk_load_s: started[n].server.ready.loadS }])),
      saturation: sat,
      rates_per_s: Object.fromEntries(FRACTIONS.map((f, i) => [`${Math.round(f * 100)}%`, rates[i]])),
      at,
      saturation_ratio_ours_over_ws: sat.ours.sustained_per_s / sat.ws.sustained_per_s,
      closed_loop_max_ratio_ours_over_ws: sat.ours.closed_loop_max_per_s / sat.ws.closed_loop_max_per_s,
      meets_saturation_target: sat.ours.sustained_per_s >= 3 * sat.ws.sustained_per_s,
    };
    if (names.includes('uws_floor')) {
      out.cpu_ratio_ours_over_uws_floor = Object.fromEntries(Object.keys(at.ours).map((k) => [k, at.ours[k].server_cpu_us_per_reply / at.uws_floor[k].server_cpu_us_per_reply]));
      out.meets_cpu_target = Object.values(out.cpu_ratio_ours_over_uws_floor).every((x) => x <= 1.3);
    }
    if (names.includes('ws_floor')) {
      // The transports alone: no handler could give ours / ws more than this.
      out.saturation_ratio_uws_floor_over_ws_floor = sat.uws_floor.sustained_per_s / sat.ws_floor.sustained_per_s;
      out.closed_loop_max_ratio_uws_floor_over_ws_floor = sat.uws_floor.closed_loop_max_per_s / sat.ws_floor.closed_loop_max_per_s;
    }
    return out;
  } finally {
    for (const s of Object.values(started)) {
      await s.client?.stop();
      await s.server.stop();
    }
  }
}

const results = {};
try {
  for (const command of COMMANDS) results[command] = await runCommand(command);
} finally {
  removeDir(work);
}
const loadAtEnd = load();
let commit = null;
try {
  commit = execFileSync('git', ['rev-parse', 'HEAD'], { encoding: 'utf8' }).trim();
} catch {
  /* not a checkout */
}
const knobs = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('BENCH_')));
saveResult('transport', {
  machine_detail: { cpu_model: cpuModel, cpus: cpus().length, kernel: release(), load_average_at_start: loadAtStart, load_average_at_end: loadAtEnd },
  command: `${Object.entries(knobs).map(([k, v]) => `${k}=${v} `).join('')}node --expose-gc bench/bench-transport.js`,
  commit,
  workload: {
    connections: CONNS,
    rounds: ROUNDS,
    warmup_ms: WARMUP_MS,
    window_ms: WINDOW_MS,
    tick_us: TICK_US,
    p99_limit_ms: P99_LIMIT_MS,
    max_outstanding: MAX_OUTSTANDING,
    fractions_of_ours: FRACTIONS,
    saturation_steps_of_closed_loop_max: STEPS,
    closed_loop_probe_depth: PROBE_DEPTH,
    requests: { stats: '{"type":"stats","id":N}', retrieve: `{"type":"retrieve","id":N,"data":{"count":${K},"embedding":[${D} floats]}} (256 distinct vectors)` },
    frames: 'JSON text, masked client frames',
  },
  load_generator: {
    binary: 'bench/load-client (Rust, std + libc, one thread, epoll_pwait2)',
    mode: 'open loop: request k due at start + k/rate on connection k mod connections; latency from the due time',
    pinned: PIN ? 'server on CPU 0, generator on CPU 1 (taskset -a)' : 'no: server, generator and the rest of the machine share both cores',
  },
  results,
  elapsed_s: (performance.now() - t0) / 1000,
  notes:
    'server CPU = time on CPU of all the server process\'s threads (schedstat) over the window / replies received in it; user/system from /proc/<pid>/stat ticks (10 ms). ' +
    'On loopback the sender\'s syscall also runs the receiver\'s TCP input and wake-up, so each side\'s system time includes part of delivering to the other.',
});
