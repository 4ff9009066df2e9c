// The MiniLM-L6-shaped benchmark model and WebSocket clients, shared by the ONNX benchmarks.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { writeModelDir } from '../../scripts/make-bert-onnx.mjs';

export const MODEL_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '.cache', 'minilm-l6-random');

/** Generates the model into bench/.cache on first use (~90 MB, a few seconds). */
export async function ensureModel() {
  if (!existsSync(join(MODEL_DIR, 'model.onnx'))) {
    console.log(`generating the MiniLM-shaped model into ${MODEL_DIR}`);
    await writeModelDir(MODEL_DIR, 'minilm');
  }
}

/** `n` open `ws` clients to `url`. */
export function openClients(url, n) {
  return Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise((resolve, reject) => {
          const ws = new WebSocket(url, { perMessageDeflate: false });
          ws.once('open', () => resolve(ws));
          ws.once('error', reject);
        }),
    ),
  );
}
