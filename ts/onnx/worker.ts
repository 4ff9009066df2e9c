/**
 * The onnxruntime worker thread. onnxruntime-node runs a session synchronously on
 * the thread that calls it, so the session lives here, off the event loop: the main
 * thread tokenizes and pads a batch (Rust core), posts the tensors (transferred, not
 * copied), and this thread runs the model and pools (mean or CLS) + normalizes the output
 * (Rust core again) before posting the embeddings back. Messages are handled one at a
 * time, so a batch posted while another runs starts the moment that one ends.
 */
import { readlinkSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import ort from 'onnxruntime-node';
import { meanPool } from '../native.js';
import { postTransferring, type InitReply, type RunReply, type RunRequest, type WorkerInit } from './messages.js';

if (!parentPort) throw new Error('onnx worker: must run as a worker thread');
const port = parentPort;
const init = workerData as WorkerInit;

function sessionOptions(device: 'cpu' | 'cuda'): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: device === 'cuda' ? ['cuda'] : ['cpu'],
    intraOpNumThreads: init.intraOpThreads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    // Threads sleep between runs instead of spinning: the memory server may hold the
    // same model in another process on the same small machine.
    extra: { session: { intra_op: { allow_spinning: init.allowSpinning ? '1' : '0' }, inter_op: { allow_spinning: '0' } } },
    logSeverityLevel: ORT_LOG_FATAL,
  };
}

/*
 * onnxruntime logs through its own sink, straight to stderr in colour, and onnxruntime-node
 * offers no way to hand those lines to JavaScript. So its sink is kept to fatal (the
 * process-wide logger, set up by the first session, and each session's and run's own), and
 * what it would have printed reaches us instead: a failed run rejects with the same message
 * (the batcher logs it through the server's logger at warn), a failed CUDA load
 * throws (reported as one fallback line).
 */
const ORT_LOG_FATAL = 4;
ort.env.logLevel = 'fatal';
const RUN_OPTIONS: ort.InferenceSession.RunOptions = { logSeverityLevel: ORT_LOG_FATAL };

/**
 * A background instance (re-embedding) runs at a lower CPU priority: this thread lowers its
 * own, and onnxruntime's intra-op threads, created with the session below, inherit it
 * (Linux: niceness is per thread and inherited). The event loop and the scan threads then
 * take the cores whenever they have work — queries during a re-embedding — and the model
 * has them whenever they do not. Linux only (elsewhere this thread's id is not at hand).
 */
function lowerPriority(by: number): void {
  if (by <= 0 || process.platform !== 'linux') return;
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (Number.isInteger(tid) && tid > 0) setPriority(tid, Math.min(19, getPriority(tid) + by));
  } catch {
    // Not permitted or no /proc: the instance runs at the normal priority.
  }
}
lowerPriority(init.nice);

let session: ort.InferenceSession;
let device: 'cpu' | 'cuda' = 'cpu';
let hiddenName = '';
let pooled = false;
let hasTypeIds = false;

async function open(): Promise<InitReply> {
  const notes: string[] = [];
  if (init.device === 'cuda' || init.device === 'auto') {
    try {
      session = await ort.InferenceSession.create(init.modelPath, sessionOptions('cuda'));
      device = 'cuda';
    } catch (e) {
      const why = e instanceof Error ? e.message.split('\n')[0]! : String(e);
      if (init.device === 'cuda') throw new Error(`CUDA execution provider unavailable: ${why}`, { cause: e });
      notes.push(`CUDA execution provider unavailable (${why}); using CPU`);
    }
  }
  if (device === 'cpu') session = await ort.InferenceSession.create(init.modelPath, sessionOptions('cpu'));
  const inputs = session.inputNames;
  for (const need of ['input_ids', 'attention_mask']) {
    if (!inputs.includes(need)) throw new Error(`model.onnx has no '${need}' input (inputs: ${inputs.join(', ')})`);
  }
  hasTypeIds = inputs.includes('token_type_ids');
  const unknown = inputs.filter((n) => n !== 'input_ids' && n !== 'attention_mask' && n !== 'token_type_ids');
  if (unknown.length > 0) throw new Error(`model.onnx needs inputs this server does not provide: ${unknown.join(', ')}`);
  const outs = session.outputNames;
  if (outs.length === 0) throw new Error('model.onnx has no outputs');
  hiddenName = outs.includes('last_hidden_state') ? 'last_hidden_state' : outs.includes('token_embeddings') ? 'token_embeddings' : outs[0]!;
  // Probe once: proves the model runs and gives its output width.
  const n = init.probeIds.length;
  const probe = await runRaw(BigInt64Array.from(init.probeIds, (v) => BigInt(v)), 1, n);
  const dims = probe.dims;
  let width: number;
  if (dims.length === 3 && dims[0] === 1 && dims[1] === n) {
    width = dims[2]!;
  } else if (dims.length === 2 && dims[0] === 1) {
    pooled = true; // the graph pools already ([batch, dims], e.g. sentence_embedding)
    width = dims[1]!;
  } else {
    throw new Error(`model.onnx output '${hiddenName}' has shape [${dims.join(', ')}]; expected [batch, sequence, hidden]`);
  }
  if (!(width > 0)) throw new Error(`model.onnx output '${hiddenName}' has no width`);
  return { ok: true, device, dims: width, output: hiddenName, notes };
}

async function runRaw(ids: BigInt64Array, batch: number, seq: number, mask?: BigInt64Array, types?: BigInt64Array) {
  const m = mask ?? new BigInt64Array(batch * seq).fill(1n);
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', ids, [batch, seq]),
    attention_mask: new ort.Tensor('int64', m, [batch, seq]),
  };
  if (hasTypeIds) feeds.token_type_ids = new ort.Tensor('int64', types ?? new BigInt64Array(batch * seq), [batch, seq]);
  const out = await session.run(feeds, [hiddenName], RUN_OPTIONS);
  const t = out[hiddenName];
  if (!t || t.type !== 'float32') throw new Error(`model.onnx output '${hiddenName}' is not float32`);
  return t;
}

/** CLS pooling as a mean over a mask that keeps only each row's first token ([CLS]): the same core kernel, no second one. */
function firstTokenMask(batch: number, seqLen: number): BigInt64Array {
  const mask = new BigInt64Array(batch * seqLen);
  for (let b = 0; b < batch; b++) mask[b * seqLen] = 1n;
  return mask;
}

async function run(req: RunRequest): Promise<Extract<RunReply, { ok: true }>> {
  const t0 = performance.now();
  const t = await runRaw(req.inputIds, req.batch, req.seqLen, req.attentionMask, req.tokenTypeIds);
  const t1 = performance.now();
  const hidden = t.data as Float32Array;
  let embeddings: Float32Array;
  if (pooled) {
    embeddings = meanPool(hidden, new BigInt64Array(req.batch).fill(1n), req.batch, 1, hidden.length / req.batch, true);
  } else {
    const mask = init.pooling === 'cls' ? firstTokenMask(req.batch, req.seqLen) : req.attentionMask;
    embeddings = meanPool(hidden, mask, req.batch, req.seqLen, t.dims[2]!, true);
  }
  t.dispose?.();
  const t2 = performance.now();
  return { id: req.id, ok: true, embeddings, ortMs: t1 - t0, poolMs: t2 - t1 };
}

port.on('message', (msg: RunRequest) => {
  run(msg).then(
    (r) => postTransferring(port, r, [r.embeddings.buffer]),
    (e: unknown) => port.postMessage({ id: msg.id, ok: false, error: e instanceof Error ? e.message : String(e) } satisfies RunReply),
  );
});

open().then(
  (r) => port.postMessage(r),
  (e: unknown) => port.postMessage({ ok: false, error: e instanceof Error ? e.message : String(e) } satisfies InitReply),
);
