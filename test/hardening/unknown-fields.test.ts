/**
 * #23: unknown fields were dropped silently — `{"items": [{"text": …, "namespace": "b"}]}`
 * stored into the default namespace with a success reply. Every command of both servers now
 * answers an unknown field (in `data`, nested in it, or beside `data` in the envelope) with
 * `invalid_request` naming it, and nothing changes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { connect, type TestClient } from '../helpers/ws-client.js';
import { startInference, startMemory, type Started } from './protocol-servers.js';
import type { MemoryServer } from '../../ts/server/memory.js';
import type { InferenceServer } from '../../ts/server/inference.js';
import { MemoryClient } from '../../ts/client/index.js';

describe('unknown fields: memory server', () => {
  let s: Started<MemoryServer>;
  let c: TestClient;
  beforeAll(async () => {
    s = await startMemory();
    c = await connect(s.url);
    await c.request('store', { id: 'k1', text: 'a memory to address' });
  });
  afterAll(async () => {
    c.close();
    await s.stop();
  });

  const counts = async (): Promise<string> => JSON.stringify((await c.request('namespaces')).data);

  it('a per-item namespace in a batch is refused, nothing stored in either namespace', async () => {
    const before = await counts();
    for (const binary of [false, true]) {
      const r = await c.request('store', { items: [{ text: 'ok' }, { text: 'misplaced', namespace: 'b' }] }, { binary });
      expect(r).toMatchObject({ status: 'error', code: 'invalid_request', data: { field: 'data.items[1].namespace' } });
      expect(r.message).toBe('data.items[1].namespace: unknown field');
    }
    expect(await counts()).toBe(before);
  });

  const cases: Array<[string, Record<string, unknown>, string]> = [
    ['store', { text: 't', metdata: { a: 1 } }, 'data.metdata'],
    ['store', { items: [{ text: 't' }], significance: 0.5 }, 'data.significance'],
    ['retrieve', { query: 'q', limit: 3 }, 'data.limit'],
    ['list', { count: 3 }, 'data.count'],
    ['get', { id: 'k1', embedding: true }, 'data.embedding'],
    ['update', { id: 'k1', significance: 0.5, ttl_s: 5 }, 'data.ttl_s'],
    ['delete', { ids: ['k1'], force: true }, 'data.force'],
    ['namespaces', { namespace: 'x' }, 'data.namespace'],
    ['subscribe', { events: ['memory_added'], since: 1 }, 'data.since'],
    ['unsubscribe', { event: 'memory_added' }, 'data.event'],
    ['stats', { verbose: true }, 'data.verbose'],
  ];
  for (const [type, data, field] of cases) {
    it(`${type}: ${field} is refused`, async () => {
      const before = await counts();
      const r = await c.request(type, data);
      expect(r).toMatchObject({ status: 'error', code: 'invalid_request', data: { field } });
      expect(await counts()).toBe(before);
      expect((await c.request('get', { id: 'k1' })).data).toMatchObject({ significance: expect.any(Number), metadata: {} });
    });
  }

  it('an unknown field beside data in the envelope is refused (not a silent default namespace)', async () => {
    const before = await counts();
    c.send({ type: 'store', id: 'env-1', namespace: 'b', data: { text: 'wrong place' } });
    const r = await c.waitFor((m) => m.id === 'env-1');
    expect(r).toMatchObject({ status: 'error', code: 'invalid_request', data: { field: 'namespace' } });
    expect(await counts()).toBe(before);
  });

  // A guard for this change rather than a defect test: it passes before and after.
  const everyCall = async (binary: boolean): Promise<void> => {
    const client = new MemoryClient({ url: s.url, reconnect: false, binary, WebSocket: WebSocket as never });
    const ns = binary ? 'cl-mp' : 'cl';
    try {
      await client.connect();
      await client.store('from the client', { metadata: { a: 1 }, significance: 0.5, ttl_s: 60, namespace: ns });
      await client.storeMany(['one', { text: 'two', metadata: { b: 2 } }], { namespace: ns });
      await client.retrieve({ query: 'client', count: 2, type: 'x', namespace: ns, include_embeddings: true });
      await client.retrieve(5, 0.1, { namespace: ns });
      const page = await client.list({ limit: 2, namespace: ns });
      await client.list({ cursor: page.next_cursor, namespace: ns });
      const got = await client.get(page.memories[0]!.id, { namespace: ns, include_embeddings: true });
      await client.update(got.id, { significance: 0.2 }, { namespace: ns });
      await client.subscribe(['memory_added'], undefined, { namespace: ns, since_seq: 0 });
      await client.unsubscribe(null, { namespace: ns });
      await client.namespaces();
      await client.stats({ namespace: ns });
      await client.stats();
      await client.deleteMany([got.id], { namespace: ns });
      await client.deleteMany({ filter: { b: 2 } }, { namespace: ns });
      await client.delete(page.memories[1]!.id, { namespace: ns });
    } finally {
      client.close();
    }
  };
  it('the official client only sends known fields (JSON)', () => everyCall(false));
  it('the official client only sends known fields (MessagePack)', () => everyCall(true));
});

describe('unknown fields: inference server', () => {
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

  const cases: Array<[string, Record<string, unknown>, string]> = [
    ['embeddings', { text: 't', model: 'other' }, 'data.model'],
    ['embeddings', { text: 't', config: { normalise: false } }, 'data.config.normalise'],
    ['process', { text: 't', contexts: ['a'] }, 'data.contexts'],
    ['process', { text: 't', config: { max_token: 4 } }, 'data.config.max_token'],
    ['stats', { verbose: true }, 'data.verbose'],
  ];
  for (const [type, data, field] of cases) {
    it(`${type}: ${field} is refused`, async () => {
      const r = await c.request(type, data);
      expect(r).toMatchObject({ status: 'error', code: 'invalid_request', data: { field } });
    });
  }

  it('an unknown envelope field is refused', async () => {
    c.send({ type: 'embeddings', id: 'inf-env', text: 'beside data', data: { text: 'x' } });
    expect(await c.waitFor((m) => m.id === 'inf-env')).toMatchObject({ code: 'invalid_request', data: { field: 'text' } });
  });
});
