// #24: a 1,000-item `store` batch with 384-d embeddings over the WebSocket, JSON against
// MessagePack (embeddings as float32 `bin`), on one memory server under its default limits.
//
// The server is the CLI (`--no-control --no-inference`, 127.0.0.1, fsync always, hash
// embedder) in its own process; this process sends pre-encoded frames on one connection, one
// batch at a time (send, await the reply). Items carry ~200-character texts, metadata and
// random unit float32 embeddings; JSON numbers are the float32 values as JavaScript prints
// them (what `JSON.stringify(Array.from(f32))` gives, ~20 characters). Each batch goes to a
// namespace of its own, so the store's nearest-neighbour pass costs the same for every batch
// and the two encodings differ only in what the JS thread does with the frame.
// Figures per encoding: frame bytes, items/s, server CPU per batch (utime + stime of every
// thread, /proc/<pid>/stat) and of its JS thread alone (/proc/<pid>/task/<pid>/stat).
// Encodings alternate in rounds after a warm-up; the median batch of all rounds is reported.
// Env: BENCH_BATCHES (per encoding and round, default 8), BENCH_ROUNDS (default 3).
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { decodeMessage, encodeMessage } from '../dist/protocol/codec.js';
import { median, now, randomVectors, removeDir, saveResult, tempDir } from './common.js';

const BATCHES = Number(process.env.BENCH_BATCHES ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const ITEMS = 1000;
const D = 384;
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const vecs = randomVectors(ITEMS, D, 5);

/** utime + stime in ms of a process (all threads) or of one of its threads (clock ticks of 10 ms). */
function cpuMs(statPath) {
  const f = readFileSync(statPath, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

function startServer(dataDir) {
  const child = spawn(
    process.execPath,
    [join(root, 'dist/cli/main.js'), '--no-control', '--no-inference', '--host', '127.0.0.1', '--port', '0', '--data-dir', dataDir, '--fsync', 'always', '--log-level', 'warn'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  return new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error('server did not start within 60 s')), 60_000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = /memory server\s+ws:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve({ child, url: `ws://127.0.0.1:${m[1]}/` });
      }
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code} before listening`)));
  });
}

/** The batch `key` as a frame of one encoding. */
function frame(key, binary) {
  const items = Array.from({ length: ITEMS }, (_, i) => {
    const embedding = vecs.slice(i * D, (i + 1) * D);
    return {
      id: `${key}-${i}`,
      text: `Batch ${key}, note ${i}: the user said the garden plans changed again this week and asked to be reminded on Friday morning before the call with the team lead about the budget.`,
      metadata: { source: 'bench', batch: key, n: i, tags: ['garden', 'reminder'] },
      embedding: binary ? embedding : Array.from(embedding),
    };
  });
  const msg = { type: 'store', id: key, data: { namespace: `ns-${key}`, items } };
  return binary ? encodeMessage(msg, true) : JSON.stringify(msg);
}

function connect(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { maxPayload: 64 * 1024 * 1024 });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

/** Sends one frame and resolves with the wall ms until its (successful) reply. */
function storeBatch(ws, key, data) {
  return new Promise((resolve, reject) => {
    const t = now();
    ws.once('message', (raw, isBinary) => {
      const reply = decodeMessage(isBinary ? new Uint8Array(raw) : raw.toString(), isBinary);
      if (reply.id !== key || reply.status !== 'success' || reply.data.items.length !== ITEMS) {
        return reject(new Error(`batch ${key}: ${JSON.stringify(reply).slice(0, 300)}`));
      }
      resolve(now() - t);
    });
    ws.send(data, { binary: typeof data !== 'string' });
  });
}

const work = tempDir('ms-bench-batch-');
const { child, url } = await startServer(join(work, 'data'));
const pid = child.pid;
const runs = { json: [], msgpack: [] };
const bytes = {};
try {
  const ws = await connect(url);
  let n = 0;
  const phase = async (enc, count, keep) => {
    for (let b = 0; b < count; b++) {
      const key = `${enc}-${n++}`;
      const data = frame(key, enc === 'msgpack');
      bytes[enc] = typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
      const all0 = cpuMs(`/proc/${pid}/stat`);
      const js0 = cpuMs(`/proc/${pid}/task/${pid}/stat`);
      const ms = await storeBatch(ws, key, data);
      const all1 = cpuMs(`/proc/${pid}/stat`);
      const js1 = cpuMs(`/proc/${pid}/task/${pid}/stat`);
      if (keep) runs[enc].push({ wall_ms: ms, server_cpu_ms: all1 - all0, js_thread_cpu_ms: js1 - js0 });
    }
  };
  await phase('json', 2, false);
  await phase('msgpack', 2, false);
  for (let r = 0; r < ROUNDS; r++) {
    await phase('json', BATCHES, true);
    await phase('msgpack', BATCHES, true);
  }
  ws.close();
} finally {
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  removeDir(work);
}

const summary = (enc) => {
  const rs = runs[enc];
  // Per-batch CPU readings have a 10 ms tick: the sums over all batches are the figure.
  const sum = (k) => rs.reduce((s, x) => s + x[k], 0);
  const wall = median(rs.map((x) => x.wall_ms));
  return {
    frame_bytes: bytes[enc],
    batches: rs.length,
    median_batch_ms: Math.round(wall * 10) / 10,
    items_per_s: Math.round((ITEMS / wall) * 1000),
    server_cpu_ms_per_batch: Math.round((sum('server_cpu_ms') / rs.length) * 10) / 10,
    js_thread_cpu_ms_per_batch: Math.round((sum('js_thread_cpu_ms') / rs.length) * 10) / 10,
  };
};
const json = summary('json');
const msgpack = summary('msgpack');
saveResult('batch-store', {
  setup: { items_per_batch: ITEMS, dims: D, text_chars: 190, fsync: 'always', embedder: 'hash (not used: embeddings given)', connection: 'one, 127.0.0.1, one batch in flight', rounds: ROUNDS, batches_per_round: BATCHES },
  json,
  msgpack,
  json_vs_msgpack: {
    frame_bytes: json.frame_bytes / msgpack.frame_bytes,
    js_thread_cpu: json.js_thread_cpu_ms_per_batch / msgpack.js_thread_cpu_ms_per_batch,
    server_cpu: json.server_cpu_ms_per_batch / msgpack.server_cpu_ms_per_batch,
    items_per_s: msgpack.items_per_s / json.items_per_s,
  },
});
