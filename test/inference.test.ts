import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferenceServer, type InferenceServerOptions } from '../ts/server/inference.js';
import { HASH_DIMS } from '../ts/native.js';
import { connect, freePort, silentLogger, type TestClient } from './helpers/ws-client.js';

async function start(options: InferenceServerOptions = {}): Promise<{ server: InferenceServer; url: string }> {
  const server = new InferenceServer({
    host: '127.0.0.1',
    port: 0,
    portRange: 0,
    logger: silentLogger,
    printListening: false,
    closeTimeoutMs: 2_000,
    ...options,
  });
  const info = await server.listen();
  return { server, url: `ws://127.0.0.1:${info.port}` };
}

const listenOn = (srv: net.Server, port: number): Promise<void> =>
  new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', () => resolve());
  });

/** A port held by the returned server whose next port was free when checked (by listening on it). */
async function blockedPortWithFreeNext(): Promise<{ base: number; blocker: net.Server }> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const base = await freePort();
    if (base >= 65535 - 3) continue;
    const blocker = net.createServer();
    const next = net.createServer();
    try {
      await listenOn(blocker, base);
      await listenOn(next, base + 1);
    } catch {
      blocker.close();
      next.close();
      continue;
    }
    await new Promise<void>((r) => next.close(() => r()));
    return { base, blocker };
  }
  throw new Error('found no port whose next port is free');
}

const norm = (v: number[]): number => Math.sqrt(v.reduce((s, x) => s + x * x, 0));

describe('inference server', () => {
  let server: InferenceServer;
  let url: string;
  let c: TestClient;
  beforeAll(async () => {
    ({ server, url } = await start());
    c = await connect(url);
  });
  afterAll(async () => {
    c.close();
    await server.close();
  });

  it('embeddings: single, deterministic, normalized', async () => {
    const a = await c.request('embeddings', { text: 'hello world' });
    expect(a).toMatchObject({ status: 'success', type: 'embeddings', data: { dims: HASH_DIMS, model: 'hash-v1' } });
    expect(a.data.embedding).toHaveLength(HASH_DIMS);
    expect(norm(a.data.embedding)).toBeCloseTo(1, 5);
    const b = await c.request('embeddings', { text: 'hello world' });
    expect(b.data.embedding).toEqual(a.data.embedding);
  });

  it('embeddings: batch matches singles; normalize false', async () => {
    const texts = ['one', 'two three', 'four five six'];
    const r = await c.request('embeddings', { texts });
    expect(r.data.embeddings).toHaveLength(3);
    for (let i = 0; i < texts.length; i++) {
      const s = await c.request('embeddings', { text: texts[i] });
      expect(r.data.embeddings[i]).toEqual(s.data.embedding);
    }
    const raw = await c.request('embeddings', { text: 'one', config: { normalize: false } });
    expect(raw.data.embedding).toHaveLength(HASH_DIMS);
  });

  it('embeddings: binary frames carry float32', async () => {
    const r = await c.request('embeddings', { texts: ['a b', 'c d'] }, { binary: true });
    expect(r.data.embeddings[0]).toBeInstanceOf(Float32Array);
  });

  it('embeddings: validation errors name the field', async () => {
    const none = await c.request('embeddings', {});
    expect(none).toMatchObject({ code: 'invalid_request' });
    expect(none.message).toMatch(/^data\.text: /);
    const tooMany = await c.request('embeddings', { texts: Array.from({ length: 257 }, () => 'x') });
    expect(tooMany).toMatchObject({ code: 'payload_too_large' });
    expect(tooMany.message).toMatch(/^data\.texts: /);
    const wrong = await c.request('embeddings', { texts: [1, 2] });
    expect(wrong.message).toMatch(/^data\.texts\[0\]: /);
    const u = await c.request('store', { text: 'x' });
    expect(u).toMatchObject({ code: 'unknown_type', message: 'Unknown command type: store' });
  });

  it('process: chunks with offsets into the input', async () => {
    const words = Array.from({ length: 300 }, (_, i) => `w${i}`);
    const text = `  ${words.join(' ')}  é ü`;
    const r = await c.request('process', { text, config: { max_tokens: 50, stride: 10 } });
    expect(r.status).toBe('success');
    const { chunks, embedding, significance } = r.data;
    expect(chunks.length).toBeGreaterThan(5);
    for (const ch of chunks) {
      expect(text.slice(ch.start, ch.end)).toBe(ch.text);
      expect(ch.significance).toBe(0.5);
    }
    expect(significance).toBe(0.5);
    expect(embedding).toHaveLength(HASH_DIMS);
    expect(norm(embedding)).toBeCloseTo(1, 5);
    // overlap: second chunk starts before the first ends
    expect(chunks[1].start).toBeLessThan(chunks[0].end);
    const one = await c.request('process', { text: 'short text' });
    expect(one.data.chunks).toEqual([{ text: 'short text', start: 0, end: 10, significance: 0.5 }]);
  });

  it('process: significance against context', async () => {
    const same = await c.request('process', { text: 'the quick brown fox', context: ['the quick brown fox'] });
    expect(same.data.significance).toBeLessThan(0.01);
    expect(same.data.chunks[0].significance).toBeLessThan(0.01);
    const diff = await c.request('process', { text: 'the quick brown fox', context: ['completely unrelated words here'] });
    expect(diff.data.significance).toBeGreaterThan(0.9);
    const bad = await c.request('process', { text: 'x', config: { max_tokens: 10, stride: 10 } });
    expect(bad.code).toBe('invalid_request');
    expect(bad.message).toMatch(/^data\.config\.stride: /);
  });

  it('batches concurrent requests from several connections', async () => {
    const before = (await c.request('stats')).data;
    const clients = await Promise.all([1, 2, 3, 4].map(() => connect(url)));
    const all: Promise<any>[] = [];
    for (let i = 0; i < 200; i++) all.push(clients[i % 4]!.request('embeddings', { text: `concurrent text ${i}` }));
    const replies = await Promise.all(all);
    expect(replies.every((r) => r.status === 'success')).toBe(true);
    const s = (await c.request('stats')).data;
    const requests = s.requests - before.requests;
    const batches = s.batches - before.batches;
    expect(requests).toBe(200);
    expect(batches).toBeLessThan(requests);
    for (const k of ['model', 'device', 'dims', 'max_batch', 'queue_depth', 'requests', 'batches', 'avg_batch_size', 'embeddings_per_second', 'p50_ms', 'p99_ms']) {
      expect(s).toHaveProperty(k);
    }
    expect(s.avg_batch_size).toBeGreaterThan(1);
    for (const cl of clients) cl.close();
  });
});

describe('inference server limits and ports', () => {
  it('overloaded with a tiny queue', async () => {
    const { server, url } = await start({ maxQueue: 4, maxWaitMs: 500 });
    const c = await connect(url);
    const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => c.request('embeddings', { text: `t${i}` })));
    const over = replies.filter((r) => r.code === 'overloaded');
    expect(over.length).toBeGreaterThan(0);
    expect(replies.filter((r) => r.status === 'success').length).toBeGreaterThan(0);
    expect(over[0].message).toMatch(/queue is full/);
    c.close();
    await server.close();
  });

  it('takes the next port when the first is occupied; then No available ports found', async () => {
    // `base` is held by us and base + 1 was free a moment ago, so the range [base, base + 3]
    // has a free port unless other processes take three in between: listen() must succeed.
    const { base, blocker } = await blockedPortWithFreeNext();
    let server: InferenceServer | null = null;
    try {
      server = new InferenceServer({ host: '127.0.0.1', port: base, portRange: 3, logger: silentLogger, printListening: false });
      const info = await server.listen();
      expect(info.port).toBeGreaterThan(base);
      expect(info.port).toBeLessThanOrEqual(base + 3);
      const none = new InferenceServer({ host: '127.0.0.1', port: base, portRange: 0, logger: silentLogger, printListening: false });
      await expect(none.listen()).rejects.toThrow();
      // A range that is fully taken: [base, base] is blocked.
      const ranged = new InferenceServer({ host: '127.0.0.1', port: info.port, portRange: 0, logger: silentLogger, printListening: false });
      await expect(ranged.listen()).rejects.toThrow();
      const full = new InferenceServer({ host: '127.0.0.1', port: base, portRange: info.port - base, logger: silentLogger, printListening: false });
      await expect(full.listen()).rejects.toThrow('No available ports found');
    } finally {
      await server?.close();
      await new Promise<void>((r) => blocker.close(() => r()));
    }
  });
});
