// Issue 20: server CPU per `POST /v1/embeddings` (the OpenAI-compatible route) against the
// WebSocket `embeddings` command it adapts, same server process, same texts, same count.
// Target: the HTTP route within 1.5× the WebSocket command's CPU per request.
//
// One inference server (hash embedder) runs in its own process (bench/lib/inference-child.js);
// this process is the load generator: 16 connections each way, one request in flight per
// connection (HTTP/1.1 keep-alive through one agent of 16 sockets; 16 `ws` clients). Each
// request embeds one text of 8–32 words from a fixed set. Server CPU = the server process's
// process.cpuUsage() delta over the measured requests (checked against utime + stime of
// /proc/<pid>/stat), divided by their count; a warm-up runs first. Variants alternate within
// each round and the best round of each is kept (the machine is shared).
// Env: BENCH_REQUESTS (20000 per variant and round), BENCH_WARMUP (2000), BENCH_ROUNDS (3),
// BENCH_CONNECTIONS (16).
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { rng, saveResult } from './common.js';
import { call, startChild, stopChild, waitEvent } from './lib/procs.js';

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 20_000);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 2_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONNS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const TARGET = 1.5;
const MODEL = 'hash-v1';

/** 64 fixed texts of 8–32 words. */
function texts() {
  const r = rng(2020);
  const words = ['memory', 'user', 'prefers', 'dark', 'mode', 'the', 'server', 'embeds', 'text', 'quickly', 'cat', 'sat', 'on', 'mat',
    'vector', 'search', 'finds', 'similar', 'notes', 'about', 'meeting', 'tomorrow', 'project', 'deadline', 'coffee', 'with', 'milk'];
  const out = [];
  for (let i = 0; i < 64; i++) {
    const n = 8 + Math.floor(r() * 25);
    const t = [];
    for (let k = 0; k < n; k++) t.push(words[Math.floor(r() * words.length)]);
    out.push(t.join(' '));
  }
  return out;
}
const TEXTS = texts();

/** utime + stime of a process in µs, from /proc/<pid>/stat (clock ticks of 10 ms). */
function procCpuUs(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

/** Runs `count` requests over CONNS workers, each awaiting `one(worker, i)` in turn. */
async function drive(count, one) {
  let next = 0;
  let errors = 0;
  let firstError = null;
  await Promise.all(
    Array.from({ length: CONNS }, async (_, w) => {
      while (next < count) {
        const i = next++;
        try {
          await one(w, i);
        } catch (err) {
          errors++;
          firstError ??= err;
        }
      }
    }),
  );
  if (errors) throw new Error(`${errors} failed requests; first: ${firstError?.message ?? firstError}`);
}

function httpClient(port, format) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONNS });
  const post = (i) =>
    new Promise((resolve, reject) => {
      const body = JSON.stringify({ model: MODEL, input: TEXTS[i % TEXTS.length], encoding_format: format });
      const req = http.request(
        { host: '127.0.0.1', port, method: 'POST', path: '/v1/embeddings', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
        (res) => {
          const chunks = [];
          res.on('data', (c) => chunks.push(c));
          res.on('end', () => {
            if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}: ${Buffer.concat(chunks).toString().slice(0, 200)}`));
            const reply = JSON.parse(Buffer.concat(chunks).toString());
            const v = reply.data[0].embedding;
            if ((format === 'base64' ? Buffer.from(v, 'base64').byteLength / 4 : v.length) !== 384) return reject(new Error('wrong dims'));
            resolve();
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  return { name: `http-${format}`, run: (count) => drive(count, (_, i) => post(i)), close: () => agent.destroy() };
}

async function wsClient(port) {
  const sockets = await Promise.all(
    Array.from({ length: CONNS }, () => new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}`);
      ws.once('open', () => resolve(ws));
      ws.once('error', reject);
    })),
  );
  let seq = 0;
  const ask = (ws, i) =>
    new Promise((resolve, reject) => {
      const id = ++seq;
      ws.once('message', (raw) => {
        const reply = JSON.parse(raw.toString());
        if (reply.id !== id || reply.status !== 'success') return reject(new Error(`bad reply ${raw.toString().slice(0, 200)}`));
        if (reply.data.embedding.length !== 384) return reject(new Error('wrong dims'));
        resolve();
      });
      ws.send(JSON.stringify({ type: 'embeddings', id, data: { text: TEXTS[i % TEXTS.length] } }));
    });
  return { name: 'ws', run: (count) => drive(count, (w, i) => ask(sockets[w], i)), close: () => sockets.forEach((s) => s.close()) };
}

async function measure(child, pid, variant) {
  await variant.run(WARMUP);
  const c0 = await call(child, 'cpu');
  const p0 = procCpuUs(pid);
  const t0 = performance.now();
  await variant.run(REQUESTS);
  const wallMs = performance.now() - t0;
  const c1 = await call(child, 'cpu');
  const p1 = procCpuUs(pid);
  const cpuUs = c1.user - c0.user + (c1.system - c0.system);
  return {
    variant: variant.name,
    requests: REQUESTS,
    wall_ms: Math.round(wallMs),
    requests_per_s: Math.round((REQUESTS / wallMs) * 1000),
    server_cpu_us_per_request: cpuUs / REQUESTS,
    proc_stat_cpu_us_per_request: (p1 - p0) / REQUESTS,
    server_cpu_utilization: cpuUs / 1000 / wallMs,
  };
}

const child = startChild(fileURLToPath(new URL('./lib/inference-child.js', import.meta.url)), { name: 'server-inference' });
try {
  const { port, pid } = await waitEvent(child, 'ready');
  const variants = [await wsClient(port), httpClient(port, 'float'), httpClient(port, 'base64')];
  const rounds = [];
  for (let r = 0; r < ROUNDS; r++) {
    // Alternate the order so that neither side always runs first.
    const order = r % 2 === 0 ? variants : [...variants].reverse();
    const round = {};
    for (const v of order) round[v.name] = await measure(child, pid, v);
    rounds.push(round);
    console.log(`round ${r + 1}: ${variants.map((v) => `${v.name} ${round[v.name].server_cpu_us_per_request.toFixed(1)} µs`).join(', ')}`);
  }
  for (const v of variants) v.close();
  const best = (name) => rounds.map((r) => r[name]).reduce((a, b) => (b.server_cpu_us_per_request < a.server_cpu_us_per_request ? b : a));
  const ws = best('ws');
  const float = best('http-float');
  const base64 = best('http-base64');
  const ratio = float.server_cpu_us_per_request / ws.server_cpu_us_per_request;
  saveResult('openai', {
    figure: 'server CPU per POST /v1/embeddings (encoding_format float) vs the WebSocket embeddings command, hash embedder, 16 connections',
    connections: CONNS,
    texts: '64 fixed texts of 8–32 words, one per request',
    ws,
    http_float: float,
    http_base64: base64,
    ratio_http_float_to_ws: ratio,
    ratio_http_base64_to_ws: base64.server_cpu_us_per_request / ws.server_cpu_us_per_request,
    target: `≤ ${TARGET}× the WebSocket command`,
    met: ratio <= TARGET,
    rounds,
  });
} finally {
  await stopChild(child);
}
