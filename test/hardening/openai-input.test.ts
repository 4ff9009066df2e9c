/**
 * Adversarial input to the inference server's OpenAI-compatible `POST /v1/embeddings`: every
 * body gets a clear 4xx in OpenAI's error shape (never a 500, never a dropped connection), and
 * the server goes on answering. Seeded, bounded: the same 400 bodies on every run.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import { ERROR_CODES } from '../../ts/protocol/index.js';
import { InferenceServer } from '../../ts/server/inference.js';
import { httpRequest, silentLogger } from '../helpers/ws-client.js';

/** POST with raw bytes as the body. */
function postRaw(port: number, body: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method: 'POST', path: '/v1/embeddings', agent: false, headers: { 'content-type': 'application/json', 'content-length': body.byteLength } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** xorshift32: the same sequence on every run. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 4294967296;
  };
}

function randomValue(r: () => number, depth = 0): unknown {
  const pick = Math.floor(r() * (depth > 3 ? 7 : 9));
  switch (pick) {
    case 0: return null;
    case 1: return r() < 0.5;
    case 2: return [0, -1, 384, 1e308, -0.5, 2 ** 53, 7][Math.floor(r() * 7)];
    case 3: return ['', 'hash-v1', 'float', 'base64', '\u0000', 'x'.repeat(70_000), 'é✓😀', '__proto__'][Math.floor(r() * 8)];
    case 4: return 'text ' + Math.floor(r() * 1000);
    case 5: return Array.from({ length: Math.floor(r() * 4) }, () => 'w' + Math.floor(r() * 10));
    case 6: return Array.from({ length: Math.floor(r() * 3) }, () => Math.floor(r() * 50_000));
    case 7: return Array.from({ length: Math.floor(r() * 3) }, () => randomValue(r, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = 0; i < Math.floor(r() * 3); i++) o[['a', 'input', 'model', '__proto__', 'constructor'][Math.floor(r() * 5)]!] = randomValue(r, depth + 1);
      return o;
    }
  }
}

function randomBody(r: () => number): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  // How often each field is present: mostly the required ones, now and then an unknown one.
  const fields: Array<[string, number]> = [['input', 0.9], ['model', 0.9], ['encoding_format', 0.3], ['dimensions', 0.3], ['user', 0.2], ['extra', 0.1]];
  for (const [f, p] of fields) {
    if (r() < p) body[f] = f === 'model' && r() < 0.5 ? 'hash-v1' : randomValue(r);
  }
  return body;
}

function expectOpenAiError(res: { status: number; body: string }, label: string): void {
  expect([400, 404, 413], label).toContain(res.status);
  const { error } = JSON.parse(res.body) as { error: { message: unknown; type: unknown; param: unknown; code: unknown } };
  expect(typeof error.message, label).toBe('string');
  expect(['invalid_request_error', 'not_found_error'], label).toContain(error.type);
  expect(ERROR_CODES as readonly unknown[], label).toContain(error.code);
  expect(error.param === null || typeof error.param === 'string', label).toBe(true);
}

describe('hardening: POST /v1/embeddings with adversarial bodies', () => {
  let server: InferenceServer;
  let port: number;
  beforeAll(async () => {
    server = new InferenceServer({ host: '127.0.0.1', port: 0, portRange: 0, logger: silentLogger, printListening: false, closeTimeoutMs: 2_000, rateLimit: false });
    ({ port } = await server.listen());
  });
  afterAll(async () => {
    await server.close();
  });

  it('invalid UTF-8, lone surrogates, deep nesting, prototype keys: 400 naming the problem, nothing embedded', async () => {
    const before = server.batcher.requests;
    const utf8 = await postRaw(port, Buffer.concat([Buffer.from('{"model":"hash-v1","input":"a'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]));
    expect(utf8.status).toBe(400);
    expect(JSON.parse(utf8.body).error).toMatchObject({ code: 'invalid_json', message: 'Invalid JSON format' });

    const deep = await postRaw(port, Buffer.from(`{"model":"hash-v1","input":${'['.repeat(5000)}${']'.repeat(5000)}}`));
    expect(deep.status).toBe(400);
    expect(JSON.parse(deep.body).error.message).toMatch(/nested deeper than 32 levels/);

    const proto = await postRaw(port, Buffer.from('{"model":"hash-v1","input":"x","__proto__":{"polluted":1}}'));
    expect(proto.status).toBe(400);
    expect(JSON.parse(proto.body).error).toMatchObject({ param: '__proto__', code: 'invalid_request' });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();

    const surrogate = await postRaw(port, Buffer.from('{"model":"hash-v1","input":["ok","\\udc00"]}'));
    expect(JSON.parse(surrogate.body).error).toMatchObject({ param: 'input[1]', code: 'invalid_request' });
    expect(server.batcher.requests).toBe(before);
  });

  it('400 seeded random bodies: 200 or a 4xx in OpenAI’s shape, never a 500; the server keeps serving', async () => {
    const r = rng(20);
    let ok = 0;
    for (let i = 0; i < 400; i++) {
      const body = randomBody(r);
      const res = await postRaw(port, Buffer.from(JSON.stringify(body)));
      const label = `#${i} ${JSON.stringify(body).slice(0, 160)} → ${res.status} ${res.body.slice(0, 160)}`;
      if (res.status === 200) {
        ok++;
        expect(JSON.parse(res.body).object, label).toBe('list');
      } else expectOpenAiError(res, label);
    }
    expect(server.ws.metrics.internalErrors).toBe(0);
    const after = await httpRequest(port, 'POST', '/v1/embeddings', { 'content-type': 'application/json' }, JSON.stringify({ model: 'hash-v1', input: 'still here' }));
    expect(after.status).toBe(200);
    // The generator does produce valid requests now and then, so both paths are exercised.
    expect(ok).toBeGreaterThan(0);
  });
});
