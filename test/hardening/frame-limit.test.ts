/**
 * #23: the frame limit and the batch size disagreed — a batch of 1,000 items with 384-d
 * embeddings is ~7.7 MB of JSON at full float precision (1.6 MB even as MessagePack float32
 * bins), over the old 1 MiB default, and such a frame was cut with 1006 and no reason. Now
 * the default limit (17 MiB) fits the documented batch and the inference server's largest
 * `embeddings` request, a frame over it is closed with 1009 naming the limit to raise, and
 * one so large that uWS drops it logs which limit to raise.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { CLOSE_CODES, DEFAULTS } from '../../ts/protocol/index.js';
import { MEMORY_LIMITS } from '../../ts/protocol/memory.js';
import { INFERENCE_LIMITS } from '../../ts/protocol/inference.js';
import { HASH_DIMS } from '../../ts/native.js';
import { connect, until, type TestClient } from '../helpers/ws-client.js';
import { startInference, startMemory, type Started } from './protocol-servers.js';
import type { MemoryServer } from '../../ts/server/memory.js';
import type { InferenceServer } from '../../ts/server/inference.js';

const WARN = 40;

let s: Started<MemoryServer | InferenceServer> | undefined;
let c: TestClient | undefined;
afterEach(async () => {
  c?.ws.terminate();
  await s?.stop();
  c = undefined;
  s = undefined;
});

/** A dense unit-ish vector whose numbers print like real float32 embeddings (~20 characters each in JSON). */
function denseVector(seed: number): number[] {
  const v = new Float32Array(HASH_DIMS);
  let x = seed + 1;
  for (let i = 0; i < v.length; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    v[i] = (x / 2147483648 - 0.5) / 10;
  }
  return Array.from(v);
}

describe('frame limit vs batch size', () => {
  it('a full batch (1,000 items, 384-d embeddings, JSON) fits the default frame limit and is stored', async () => {
    s = await startMemory();
    c = await connect(s.url);
    const items = Array.from({ length: MEMORY_LIMITS.maxBatchItems }, (_, i) => ({
      id: `big-${i}`,
      text: `memory number ${i}, stored with its own embedding`,
      metadata: { i, kind: 'bulk' },
      embedding: denseVector(i),
    }));
    const frame = JSON.stringify({ type: 'store', id: 'big', data: { items } });
    expect(frame.length).toBeGreaterThan(7_000_000);
    const reply = c.waitFor((m) => m.id === 'big', 20_000);
    c.ws.send(frame);
    const r = await Promise.race([reply, c.closed.then((closed) => ({ status: 'closed', closed }))]);
    expect(r).toMatchObject({ status: 'success' });
    expect(frame.length).toBeLessThan(DEFAULTS.maxFrameBytes);
    expect(r.data.items).toHaveLength(MEMORY_LIMITS.maxBatchItems);
    expect(r.data.stats.namespace_total).toBe(MEMORY_LIMITS.maxBatchItems);
  });

  it("the inference server's largest embeddings request (256 texts of 64 KiB) fits the default frame limit", async () => {
    s = await startInference();
    c = await connect(s.url);
    const text = 'lorem ipsum dolor sit amet '.repeat(Math.ceil(INFERENCE_LIMITS.maxTextBytes / 27)).slice(0, INFERENCE_LIMITS.maxTextBytes);
    const texts = Array.from({ length: INFERENCE_LIMITS.maxTexts }, (_, i) => `${i}`.padEnd(4, ' ') + text.slice(4));
    const frame = JSON.stringify({ type: 'embeddings', id: 'widest', data: { texts } });
    expect(frame.length).toBeGreaterThan(16 * 1024 * 1024);
    const reply = c.waitFor((m) => m.id === 'widest', 25_000);
    c.ws.send(frame);
    const r = await Promise.race([reply, c.closed.then((closed) => ({ status: 'closed', closed }))]);
    expect(r).toMatchObject({ status: 'success' });
    expect(r.data.embeddings).toHaveLength(INFERENCE_LIMITS.maxTexts);
  });

  it('a frame over maxFrameBytes is closed with 1009 and a reason naming the limit to raise', async () => {
    s = await startMemory({ maxFrameBytes: 64 * 1024 });
    c = await connect(s.url);
    c.send({ type: 'store', id: 'over', data: { text: 'x'.repeat(80 * 1024) } });
    const closed = await c.closed;
    expect(closed.code).toBe(CLOSE_CODES.MESSAGE_TOO_BIG);
    expect(closed.reason).toContain('65536');
    expect(closed.reason).toContain('--max-frame-bytes');
  });

  it('a frame so large that uWS drops the connection (1006) logs the limit to raise', async () => {
    s = await startMemory({ maxFrameBytes: 16 * 1024 });
    c = await connect(s.url);
    c.send({ type: 'store', id: 'huge', data: { text: 'x'.repeat(512 * 1024) } });
    expect((await c.closed).code).toBe(1006);
    await until(() => s!.logs.some((l) => l.level === WARN && /--max-frame-bytes/.test(l.msg)));
  });
});
