/**
 * #23 (bounded replies, found while fixing them): the inference server's `process` reply
 * repeats each window's text in its chunk, so overlapping windows multiplied a 256 KiB text
 * into a 63 MB reply (`max_tokens: 8192, stride: 8160`). Such a request is now refused before
 * anything is embedded; the default windows of the largest text still work.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type TestClient } from '../helpers/ws-client.js';
import { startInference, type Started } from './protocol-servers.js';
import { PROCESS_REPLY_TEXT_FACTOR, type InferenceServer } from '../../ts/server/inference.js';
import { INFERENCE_LIMITS } from '../../ts/protocol/inference.js';

/** `n` characters of words (the hash embedder windows by words). */
function words(n: number, word = 'lorem '): string {
  return word.repeat(Math.ceil(n / word.length)).slice(0, n);
}

describe('process: the reply is bounded', () => {
  let s: Started<InferenceServer>;
  let c: TestClient;
  beforeAll(async () => {
    s = await startInference();
    c = await connect(s.url);
  });
  afterAll(async () => {
    c.close();
    await s.stop();
  });

  it('heavily overlapping windows are refused before any embedding', async () => {
    const before = (await c.request('stats')).data.requests as number;
    const r = await c.request('process', {
      text: words(INFERENCE_LIMITS.maxProcessChars),
      config: { max_tokens: 8192, stride: 8160 },
    });
    expect(r).toMatchObject({ status: 'error', code: 'invalid_request', data: { field: 'data.config.stride' } });
    expect(r.message).toMatch(/lower stride or raise max_tokens/);
    expect((await c.request('stats')).data.requests).toBe(before);
  });

  it('the largest text with the default windows is answered, within the bound', async () => {
    for (const word of ['lorem ', 'über ', '漢字 ']) {
      const text = words(INFERENCE_LIMITS.maxProcessChars, word);
      const r = await c.request('process', { text });
      expect(r.status).toBe('success');
      const chunks = r.data.chunks as Array<{ text: string }>;
      expect(chunks.length).toBeGreaterThan(1);
      const chunkBytes = chunks.reduce((n, ch) => n + Buffer.byteLength(JSON.stringify(ch)), 0);
      expect(chunkBytes).toBeLessThanOrEqual(PROCESS_REPLY_TEXT_FACTOR * Buffer.byteLength(JSON.stringify(text)));
    }
  });
});
