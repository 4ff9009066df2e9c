/** Messages between the ONNX embedder (main thread) and its onnxruntime worker. */

export interface WorkerInit {
  modelPath: string;
  device: 'auto' | 'cpu' | 'cuda';
  intraOpThreads: number;
  allowSpinning: boolean;
  /** Token ids of a short text for the probe run at start-up. */
  probeIds: number[];
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
