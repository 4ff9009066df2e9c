// Issue 19, diagnosis: the JavaScript CPU of one `stats` request in our server, step by step,
// against what the no-handler reference (bench/baselines/uws-floor-server.js) does in
// JavaScript. In one process, no sockets in the loop: a real MemoryServer (store open, one real
// connection for its per-connection state) whose dispatcher is called directly with a frame,
// its reply handed to a stand-in `send`. What it leaves out is the same for both: uWS.js
// reading and writing the socket, the call from C++ into JavaScript, and the kernel.
// Figures are process CPU time (user + system) per call, not wall time, so that a busy
// machine slows them less; each step is run BENCH_ROUNDS (3) times and the median kept.
//   node bench/stats-path.js [--calls 300000]
import { mkdtempSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { MemoryServer } from '../dist/server/memory.js';
import { decodeRequest, encodeMessage, success } from '../dist/protocol/index.js';
import { CommandNames, plainRequest } from '../dist/server/ws/peek.js';
import { median, removeDir, saveResult } from './common.js';

const { values } = parseArgs({ options: { calls: { type: 'string', default: '300000' } } });
const N = Number(values.calls);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const dir = mkdtempSync(join(tmpdir(), 'ms-bench-stats-path-'));
const server = new MemoryServer({
  dataDir: dir,
  host: '127.0.0.1',
  port: 0,
  logLevel: 'warn',
  printListening: false,
  // As in the transport benchmark: the limiter runs per message, never refuses.
  rateLimit: { messagesPerSecond: 1e7, messagesBurst: 1e7, bytesPerSecond: 1e12, bytesBurst: 1e12 },
});
const { port } = await server.listen();
const client = new WebSocket(`ws://127.0.0.1:${port}/`);
await new Promise((resolve, reject) => {
  client.once('open', () => client.send('{"type":"stats","id":1}'));
  client.once('message', resolve);
  client.once('error', reject);
});

// Internals (private in TypeScript, reachable at run time): the dispatcher and the live socket.
const dispatcher = server.ws.dispatcher;
const live = [...server.ws.registry.byId.values()][0];
const userData = live.getUserData();
let sink = '';
const socket = { getUserData: () => userData, getBufferedAmount: () => 0, send: (p) => ((sink = p), 1), cork: (f) => f() };
const frame = new TextEncoder().encode('{"type":"stats","id":12345}').buffer;
const conn = userData.st.conn;
const names = new CommandNames(Object.keys(server.commands));
const decoder = new TextDecoder();
const floorTail = `,"timestamp":"${new Date().toISOString()}","data":${JSON.stringify(server.commands.stats(conn, { type: 'stats' }))}}`;
const reply = server.commands.stats(conn, { type: 'stats', id: 1 });

const steps = {
  'ours: the whole message callback (dispatch.ts onMessage)': () => dispatcher.onMessage(socket, frame, false),
  'ours: plainRequest (ws/peek.ts)': () => plainRequest(frame, names),
  'ours: stats handler (memory.ts, with the counters)': () => server.commands.stats(conn, { type: 'stats', id: 1 }),
  'ours: store.counters() (one native call)': () => server.store.counters(),
  'ours: success() + encodeMessage (stats-text.ts)': () => encodeMessage(success('stats', 1, reply), false),
  'ours: metrics.recordReply': () => server.ws.metrics.recordReply('stats', 0.01, false),
  'general decode (decodeRequest, for comparison)': () => decodeRequest(frame, false),
  'reference: JSON.parse + reply string': () => {
    const req = JSON.parse(decoder.decode(frame));
    sink = `{"status":"success","type":${JSON.stringify(req.type)},"id":${JSON.stringify(req.id)}${floorTail}`;
  },
};

function cpuPerCall(fn) {
  for (let i = 0; i < 20_000; i++) fn();
  const c0 = process.cpuUsage();
  for (let i = 0; i < N; i++) fn();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / N;
}

const us = {};
for (const [name, fn] of Object.entries(steps)) {
  us[name] = Number(median(Array.from({ length: ROUNDS }, () => cpuPerCall(fn))).toFixed(3));
  console.log(`${name.padEnd(60)} ${us[name].toFixed(3)} µs`);
}
if (!sink.startsWith('{"status":"success","type":"stats"')) throw new Error(`unexpected reply ${sink.slice(0, 100)}`);
client.close();
await server.close();
removeDir(dir);
saveResult('stats-path', {
  command: `node bench/stats-path.js --calls ${N}`,
  load_average_at_end: loadavg().map((x) => Number(x.toFixed(2))),
  calls_per_step: N,
  rounds: ROUNDS,
  cpu_us_per_call: us,
  notes: 'process CPU (user + system) per call in one process, median of rounds; no sockets: uWS.js I/O, the C++→JS call and the kernel are outside every figure.',
});
process.exit(0);
