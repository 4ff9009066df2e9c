/**
 * The OpenAI-compatible routes of the inference server, driven by OpenAI's own npm client
 * (`openai`) where it can say what a user sees, and by plain HTTP where the exact bytes
 * matter. The vectors must equal the WebSocket `embeddings` command's for the same texts.
 */
import path from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HashEmbedder, type Embedder } from '../ts/embedder.js';
import { InferenceServer, type InferenceServerOptions } from '../ts/server/inference.js';
import { signJwtHs256 } from '../ts/server/index.js';
import { OnnxEmbedder } from '../ts/onnx/embedder.js';
import { ensureBuilt, root } from './helpers/build-dist.js';
import { connect, httpRequest, silentLogger, type TestClient } from './helpers/ws-client.js';

async function start(options: InferenceServerOptions = {}): Promise<{ server: InferenceServer; port: number; baseURL: string }> {
  const server = new InferenceServer({
    host: '127.0.0.1',
    port: 0,
    portRange: 0,
    logger: silentLogger,
    printListening: false,
    closeTimeoutMs: 2_000,
    ...options,
  });
  const { port } = await server.listen();
  return { server, port, baseURL: `http://127.0.0.1:${port}/v1` };
}

/** OpenAI's client against our server; no retries, so an error status is seen as it is. */
const client = (baseURL: string, apiKey = 'unused'): OpenAI => new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 10_000 });

const postEmbeddings = (port: number, body: unknown, headers: Record<string, string> = {}) =>
  httpRequest(port, 'POST', '/v1/embeddings', { 'content-type': 'application/json', ...headers }, typeof body === 'string' ? body : JSON.stringify(body));

/** The OpenAI error a request got: status and the `error` object of the body. */
async function openAiFailure(p: Promise<unknown>): Promise<{ status: number; error: { message: string; type: string; param: string | null; code: string } }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof OpenAI.APIError) return { status: err.status!, error: err.error as never };
    throw err;
  }
  throw new Error('the request succeeded');
}

describe('OpenAI-compatible embeddings API', () => {
  let server: InferenceServer;
  let port: number;
  let openai: OpenAI;
  let ws: TestClient;
  beforeAll(async () => {
    let baseURL: string;
    ({ server, port, baseURL } = await start());
    openai = client(baseURL);
    ws = await connect(`ws://127.0.0.1:${port}`);
  });
  afterAll(async () => {
    ws.close();
    await server.close();
  });

  it('the openai client (base64 by default) gets the WebSocket command’s vector, bit for bit', async () => {
    const text = 'The user prefers dark mode';
    const res = await openai.embeddings.create({ model: 'hash-v1', input: text });
    expect(res.object).toBe('list');
    expect(res.model).toBe('hash-v1');
    expect(res.data).toHaveLength(1);
    expect(res.data[0]!.index).toBe(0);
    const viaWs = await ws.request('embeddings', { text });
    expect(viaWs.status).toBe('success');
    expect(Array.from(Float32Array.from(res.data[0]!.embedding))).toEqual(Array.from(Float32Array.from(viaWs.data.embedding as number[])));
    expect(res.usage).toEqual({ prompt_tokens: 5, total_tokens: 5 });
  });

  it('array input, encoding_format float and base64, dimensions equal to the model’s', async () => {
    const input = ['first text', 'second, longer text here', ''];
    const float = await openai.embeddings.create({ model: 'hash-v1', input, encoding_format: 'float', dimensions: 384 });
    expect(float.data.map((d) => d.index)).toEqual([0, 1, 2]);
    for (const d of float.data) expect(d.embedding).toHaveLength(384);
    const viaWs = await ws.request('embeddings', { texts: input });
    for (let i = 0; i < input.length; i++) expect(float.data[i]!.embedding).toEqual(viaWs.data.embeddings[i]);

    const raw = await postEmbeddings(port, { model: 'hash-v1', input, encoding_format: 'base64' });
    expect(raw.status).toBe(200);
    expect(raw.headers['content-type']).toBe('application/json');
    const body = JSON.parse(raw.body) as { data: Array<{ embedding: string }> };
    for (let i = 0; i < input.length; i++) {
      const bytes = Buffer.from(body.data[i]!.embedding, 'base64');
      expect(bytes.byteLength).toBe(384 * 4);
      const v = new Float32Array(bytes.buffer, bytes.byteOffset, 384);
      expect(Array.from(v)).toEqual(float.data[i]!.embedding);
    }
  });

  it('GET /v1/models lists the served model; models.retrieve finds it and 404s others', async () => {
    const list = await openai.models.list();
    expect(list.data.map((m) => m.id)).toEqual(['hash-v1']);
    expect(list.data[0]).toMatchObject({ object: 'model', owned_by: 'memory-server' });
    expect(list.data[0]!.created).toBeGreaterThan(1_700_000_000);
    expect((await openai.models.retrieve('hash-v1')).id).toBe('hash-v1');
    const missing = await openAiFailure(openai.models.retrieve('text-embedding-3-small'));
    expect(missing.status).toBe(404);
    expect(missing.error).toMatchObject({ type: 'not_found_error', code: 'not_found', param: 'model' });
  });

  it('bad requests: OpenAI error shape, proper status, the field in param; nothing is embedded', async () => {
    const before = server.batcher.requests;
    const cases: Array<[unknown, number, string, string | null, RegExp]> = [
      [{ model: 'hash-v1', input: 'x', dimensions: 256 }, 400, 'invalid_request', 'dimensions', /384 dimensions/],
      [{ model: 'text-embedding-3-small', input: 'x' }, 404, 'not_found', 'model', /hash-v1/],
      [{ input: 'x' }, 400, 'invalid_request', 'model', /model: is required/],
      [{ model: 'hash-v1' }, 400, 'invalid_request', 'input', /input: is required/],
      [{ model: 'hash-v1', input: [1, 2, 3] }, 400, 'invalid_request', 'input', /token ids are not supported/],
      [{ model: 'hash-v1', input: 42 }, 400, 'invalid_request', 'input', /string or an array of strings/],
      [{ model: 'hash-v1', input: 'x', encoding_format: 'int8' }, 400, 'invalid_request', 'encoding_format', /"float" or "base64"/],
      [{ model: 'hash-v1', input: 'x', temperature: 1 }, 400, 'invalid_request', 'temperature', /unknown field/],
      [{ model: 'hash-v1', input: new Array(257).fill('a') }, 400, 'payload_too_large', 'input', /input: exceeds the limit of 256 items/],
      [{ model: 'hash-v1', input: ['ok', 'y'.repeat(64 * 1024 + 1)] }, 400, 'payload_too_large', 'input[1]', /^input\[1\]: exceeds/],
      [{ model: 'hash-v1', input: [] }, 400, 'invalid_request', 'input', /input: /],
      [['not', 'an', 'object'], 400, 'invalid_request', 'body', /JSON object/],
      ['{"model": "hash-v1", "input": "\\ud800"}', 400, 'invalid_request', 'input', /well-formed Unicode/],
      ['{"model": "hash-v1", "input": ', 400, 'invalid_json', null, /Invalid JSON format/],
    ];
    for (const [body, status, code, param, message] of cases) {
      const res = await postEmbeddings(port, body);
      const label = `${JSON.stringify(body).slice(0, 80)} → ${res.body.slice(0, 200)}`;
      expect(res.status, label).toBe(code === 'payload_too_large' ? 413 : status);
      const { error } = JSON.parse(res.body) as { error: { message: string; type: string; param: string | null; code: string } };
      expect(error.code, label).toBe(code);
      expect(error.param, label).toBe(param);
      expect(error.message, label).toMatch(message);
      expect(error.type, label).toBe(status === 404 ? 'not_found_error' : 'invalid_request_error');
    }
    expect(server.batcher.requests).toBe(before);
    // And the openai client turns them into its typed errors.
    const bad = await openAiFailure(openai.embeddings.create({ model: 'hash-v1', input: 'x', dimensions: 12 }));
    expect(bad.status).toBe(400);
    expect(bad.error.param).toBe('dimensions');
  });

  it('counts as the embeddings command in the server’s metrics and batcher', async () => {
    const before = server.ws.metrics.snapshot().byType.embeddings?.count ?? 0;
    const batched = server.batcher.requests;
    await openai.embeddings.create({ model: 'hash-v1', input: ['a', 'b'] });
    await postEmbeddings(port, { model: 'hash-v1', input: 'x', dimensions: 3 });
    const after = server.ws.metrics.snapshot().byType.embeddings!;
    expect(after.count).toBe(before + 2);
    expect(server.batcher.requests).toBe(batched + 1);
    const stats = await ws.request('stats');
    expect(stats.data.requests).toBe(server.batcher.requests);
  });
});

describe('OpenAI-compatible API: auth, rate limits, overload', () => {
  it('a shared token is the API key: wrong or missing → 401 in OpenAI’s shape', async () => {
    const { server, baseURL, port } = await start({ token: 's3cret' });
    try {
      const ok = await client(baseURL, 's3cret').embeddings.create({ model: 'hash-v1', input: 'hello' });
      expect(ok.data).toHaveLength(1);
      const wrong = await openAiFailure(client(baseURL, 'nope').embeddings.create({ model: 'hash-v1', input: 'hello' }));
      expect(wrong.status).toBe(401);
      expect(wrong.error).toMatchObject({ type: 'authentication_error', code: 'unauthorized', param: null });
      const models = await openAiFailure(client(baseURL, 'nope').models.list());
      expect(models.status).toBe(401);
      const none = await postEmbeddings(port, { model: 'hash-v1', input: 'x' });
      expect(none.status).toBe(401);
      expect(JSON.parse(none.body).error.type).toBe('authentication_error');
    } finally {
      await server.close();
    }
  });

  it('a JWT is the API key too; an expired one is refused', async () => {
    const secret = 'jwt-key';
    const { server, baseURL } = await start({ jwtSecret: secret });
    try {
      const now = Math.floor(Date.now() / 1000);
      const good = signJwtHs256({ sub: 'py', exp: now + 60 }, secret);
      expect((await client(baseURL, good).models.list()).data[0]!.id).toBe('hash-v1');
      expect((await client(baseURL, good).embeddings.create({ model: 'hash-v1', input: 'x' })).data).toHaveLength(1);
      const expired = signJwtHs256({ sub: 'py', exp: now - 60 }, secret);
      const refused = await openAiFailure(client(baseURL, expired).embeddings.create({ model: 'hash-v1', input: 'x' }));
      expect(refused.status).toBe(401);
      expect(refused.error.type).toBe('authentication_error');
    } finally {
      await server.close();
    }
  });

  it('the WebSocket rate limit applies per client address: 429 with Retry-After, counted', async () => {
    const { server, port } = await start({ rateLimit: { messagesPerSecond: 0.5, messagesBurst: 2 } });
    try {
      const body = { model: 'hash-v1', input: 'x' };
      expect((await postEmbeddings(port, body)).status).toBe(200);
      expect((await postEmbeddings(port, body)).status).toBe(200);
      const limited = await postEmbeddings(port, body);
      expect(limited.status).toBe(429);
      expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(JSON.parse(limited.body).error).toMatchObject({ type: 'rate_limit_error', code: 'rate_limited', message: 'Rate limit exceeded' });
      expect(server.ws.metrics.rateLimited).toBe(1);
    } finally {
      await server.close();
    }
  });

  it('a body over maxFrameBytes is 413 and a refused Origin 403, both in OpenAI’s shape', async () => {
    const { server, port } = await start({ maxFrameBytes: 4096 });
    try {
      const big = await postEmbeddings(port, { model: 'hash-v1', input: 'x'.repeat(8192) });
      expect(big.status).toBe(413);
      expect(JSON.parse(big.body).error).toMatchObject({ type: 'invalid_request_error', code: 'payload_too_large' });
      expect(JSON.parse(big.body).error.message).toMatch(/^Body exceeds .*4096 bytes$/);
      const foreign = await postEmbeddings(port, { model: 'hash-v1', input: 'x' }, { origin: 'https://evil.example' });
      expect(foreign.status).toBe(403);
      expect(JSON.parse(foreign.body).error).toMatchObject({ type: 'permission_error', code: 'forbidden' });
      expect(server.batcher.requests).toBe(0);
    } finally {
      await server.close();
    }
  });

  it('a hub model id (with a slash) is listed, retrieved and accepted as model', async () => {
    const hash = new HashEmbedder();
    const named: Embedder = {
      name: 'onnx:sentence-transformers/all-MiniLM-L6-v2',
      hash: hash.hash,
      dims: hash.dims,
      device: 'cpu',
      maxBatch: hash.maxBatch,
      embed: (texts) => hash.embed(texts),
    };
    const { server, baseURL } = await start({ embedder: named });
    try {
      const openai = client(baseURL);
      expect((await openai.models.list()).data.map((m) => m.id)).toEqual([named.name]);
      expect((await openai.models.retrieve(named.name)).id).toBe(named.name);
      const res = await openai.embeddings.create({ model: named.name, input: 'x' });
      expect(res.model).toBe(named.name);
    } finally {
      await server.close();
    }
  });

  it('a full embedding queue is 503 overloaded, as the WebSocket command’s', async () => {
    // An embedder whose first run waits until released: the queue fills deterministically.
    const hash = new HashEmbedder();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const slow: Embedder = {
      name: hash.name,
      hash: hash.hash,
      dims: hash.dims,
      device: 'cpu',
      maxBatch: 2,
      embed: async (texts) => {
        await gate;
        return hash.embed(texts);
      },
    };
    const { server, port } = await start({ embedder: slow, maxQueue: 2, maxBatch: 2 });
    try {
      const first = postEmbeddings(port, { model: 'hash-v1', input: ['a', 'b'] });
      const second = postEmbeddings(port, { model: 'hash-v1', input: ['c', 'd'] });
      const deadline = Date.now() + 5_000;
      while (server.batcher.queueDepth < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      const over = await postEmbeddings(port, { model: 'hash-v1', input: ['e', 'f', 'g'] });
      expect(over.status).toBe(503);
      expect(JSON.parse(over.body).error).toMatchObject({ type: 'server_error', code: 'overloaded' });
      release();
      expect((await first).status).toBe(200);
      expect((await second).status).toBe(200);
    } finally {
      release();
      await server.close();
    }
  });
});

describe('OpenAI-compatible API with the onnx embedder (test/fixtures/tiny-bert)', () => {
  let emb: OnnxEmbedder;
  let server: InferenceServer;
  let baseURL: string;
  let port: number;
  beforeAll(async () => {
    ensureBuilt(); // the onnxruntime worker runs from dist/onnx/worker.js
    emb = await OnnxEmbedder.load({ model: path.join(root, 'test/fixtures/tiny-bert'), device: 'cpu', threads: 1 });
    ({ server, baseURL, port } = await start({ embedder: emb }));
  }, 180_000);
  afterAll(async () => {
    await server?.close();
    await emb?.close();
  });

  it('lists onnx:<directory>, embeds with it as the WebSocket command does, counts tokenizer tokens', async () => {
    const openai = client(baseURL);
    const [model] = (await openai.models.list()).data;
    expect(model!.id).toBe('onnx:tiny-bert');
    const input = ['hello world', 'the quick brown fox jumps over the lazy dog'];
    const res = await openai.embeddings.create({ model: model!.id, input, encoding_format: 'float' });
    expect(res.model).toBe('onnx:tiny-bert');
    const ws = await connect(`ws://127.0.0.1:${port}`);
    try {
      const viaWs = await ws.request('embeddings', { texts: input });
      for (let i = 0; i < input.length; i++) {
        expect(res.data[i]!.embedding).toHaveLength(emb.dims);
        const a = res.data[i]!.embedding;
        const b = viaWs.data.embeddings[i] as number[];
        // Deterministic within 1e-5 whatever shares the batch (docs/protocol.md).
        for (let k = 0; k < a.length; k++) expect(Math.abs(a[k]! - b[k]!)).toBeLessThan(1e-5);
      }
    } finally {
      ws.close();
    }
    const counts = Array.from(emb.tokenCounts(input));
    // [CLS] and [SEP] around at least one token per word.
    expect(counts[0]).toBeGreaterThanOrEqual(4);
    expect(res.usage.prompt_tokens).toBe(counts[0]! + counts[1]!);
    const wrong = await openAiFailure(openai.embeddings.create({ model: 'hash-v1', input: 'x' }));
    expect(wrong.status).toBe(404);
    expect(wrong.error.message).toContain('onnx:tiny-bert');
  }, 60_000);
});
