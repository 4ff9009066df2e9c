/** Messages between the ONNX embedder (main thread) and its onnxruntime worker. */

export interface WorkerInit {
  modelPath: string;
  device: 'auto' | 'cpu' | 'cuda';
  intraOpThreads: number;
  allowSpinning: boolean;
  /** Token ids of a short text for the probe run at start-up. */
  probeIds: number[];
  /** mean: over the attention mask; cls: the first token's state. */
  pooling: 'mean' | 'cls';
  /** Raise the worker's niceness by this much before the session starts its threads (they inherit it). */
  nice: number;
}

export type InitReply =
  | { ok: true; device: 'cpu' | 'cuda'; dims: number; output: string; notes: string[] }
  | { ok: false; error: string };

export interface RunRequest {
  id: number;
  inputIds: BigInt64Array;
  attentionMask: BigInt64Array;
  tokenTypeIds: BigInt64Array;
  batch: number;
  seqLen: number;
}

export type RunReply =
  | { id: number; ok: true; embeddings: Float32Array; ortMs: number; poolMs: number }
  | { id: number; ok: false; error: string };

/** Anything with `postMessage(value, transferList)`: a Worker or a MessagePort. */
interface Poster {
  postMessage(value: unknown, transferList?: readonly ArrayBuffer[]): void;
}

/**
 * Posts `msg`, moving `buffers` rather than copying them where the runtime allows it. Arrays
 * the addon created are backed by memory outside V8, which Node 22+ (V8's sandbox) refuses
 * to detach (DataCloneError); those are copied by the structured clone instead, once.
 */
export function postTransferring(to: Poster, msg: unknown, buffers: ArrayBufferLike[]): void {
  try {
    to.postMessage(msg, buffers as ArrayBuffer[]);
  } catch (e) {
    if ((e as { name?: string }).name !== 'DataCloneError') throw e;
    to.postMessage(msg);
  }
}
