/**
 * #23 defect 3: ill-formed strings are refused, never turned into U+FFFD. In JSON a lone
 * surrogate (`"\ud800"`) anywhere — id, namespace, text, metadata keys and values at any
 * depth, filters, the inference server's texts — is `invalid_request` naming the field; in
 * MessagePack, invalid UTF-8 likewise. Before, `"\ud800"` and `"\udfff"` were one id.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type TestClient } from '../helpers/ws-client.js';
import { packWithRawBytes, rawBinary, rawJson, startInference, startMemory, type Started } from './protocol-servers.js';
import type { MemoryServer } from '../../ts/server/memory.js';
import type { InferenceServer } from '../../ts/server/inference.js';
import { parseRequestData, storeSingleSchema } from '../../ts/protocol/memory.js';

describe('lone surrogates and invalid UTF-8: memory server', () => {
  let s: Started<MemoryServer>;
  let c: TestClient;
  beforeAll(async () => {
    s = await startMemory();
    c = await connect(s.url);
  });
  afterAll(async () => {
    c.close();
    await s.stop();
  });

  const total = async (): Promise<number> => (await c.request('stats')).data.total_memories as number;

  // JSON text written by hand: `\ud800` is the six characters of a JSON escape.
  const cases: Array<[string, string, string]> = [
    ['id', '{"type":"store","id":"ID","data":{"text":"t","id":"\\ud800"}}', 'data.id'],
    ['id (low half)', '{"type":"store","id":"ID","data":{"text":"t","id":"a\\udfffb"}}', 'data.id'],
    ['namespace', '{"type":"store","id":"ID","data":{"text":"t","namespace":"\\ud800"}}', 'data.namespace'],
    ['text', '{"type":"store","id":"ID","data":{"text":"a\\ud800b"}}', 'data.text'],
    ['batch text', '{"type":"store","id":"ID","data":{"items":[{"text":"ok"},{"text":"\\udc00"}]}}', 'data.items[1].text'],
    ['metadata value (deep)', '{"type":"store","id":"ID","data":{"text":"t","metadata":{"a":{"b":["x","\\ud83d"]}}}}', 'data.metadata.a.b[1]'],
    ['metadata key', '{"type":"store","id":"ID","data":{"text":"t","metadata":{"k\\ud800":1}}}', 'data.metadata.k\\ud800'],
    ['update metadata', '{"type":"update","id":"ID","data":{"id":"x","metadata":{"v":"\\udfff"}}}', 'data.metadata.v'],
    ['filter value', '{"type":"list","id":"ID","data":{"filter":{"a":"\\ud800"}}}', 'data.filter.a'],
    ['filter key', '{"type":"delete","id":"ID","data":{"filter":{"\\ud800":1}}}', 'data.filter.\\ud800'],
    ['query', '{"type":"retrieve","id":"ID","data":{"query":"\\ud800"}}', 'data.query'],
    ['get id', '{"type":"get","id":"ID","data":{"id":"\\udfff"}}', 'data.id'],
  ];
  for (const [what, text, field] of cases) {
    it(`JSON ${what}: invalid_request naming ${field}, nothing stored`, async () => {
      const before = await total();
      const r = await rawJson(c, text);
      expect(r.status).toBe('error');
      expect(r.code).toBe('invalid_request');
      expect(r.data.field).toBe(field);
      expect(r.message).toMatch(/well-formed Unicode/);
      expect(await total()).toBe(before);
    });
  }

  it('the ids "\\ud800" and "\\udfff" no longer collide (both refused); well-formed pairs are fine', async () => {
    const a = await c.request('store', { text: 'a', id: '\ud800' });
    const b = await c.request('store', { text: 'b', id: '\udfff' });
    expect([a.code, b.code]).toEqual(['invalid_request', 'invalid_request']);
    const ok = await c.request('store', { text: 'emoji \ud83d\ude00', id: 'pair-\ud83d\ude00', metadata: { '\ud83d\ude00': '\ud83d\ude00' } });
    expect(ok.status).toBe('success');
    const g = await c.request('get', { id: 'pair-\ud83d\ude00' });
    expect(g.data).toMatchObject({ text: 'emoji \ud83d\ude00', metadata: { '\ud83d\ude00': '\ud83d\ude00' } });
  });

  it('MessagePack: invalid UTF-8 in a text is invalid_request naming the field (not U+FFFD), and the reply keeps the id', async () => {
    const before = await total();
    const bytes = packWithRawBytes({ type: 'store', id: 'bad-utf8', data: { text: 'aXXXb' } }, 'XXX', [0xff, 0xfe, 0x41]);
    const r = await rawBinary(c, bytes, 'bad-utf8');
    expect(r).toMatchObject({ status: 'error', code: 'invalid_request', data: { field: 'data.text' } });
    expect(r.message).toMatch(/UTF-8/);
    expect(await total()).toBe(before);
  });

  it('MessagePack: a surrogate encoded in UTF-8 (ED A0 80) in an id, and bad UTF-8 in a metadata key, are refused', async () => {
    const before = await total();
    const id = packWithRawBytes({ type: 'store', id: 'cesu', data: { text: 't', id: 'XXX' } }, 'XXX', [0xed, 0xa0, 0x80]);
    expect(await rawBinary(c, id, 'cesu')).toMatchObject({ code: 'invalid_request', data: { field: 'data.id' } });
    const key = packWithRawBytes({ type: 'store', id: 'badkey', data: { text: 't', metadata: { kYY: 1 } } }, 'YY', [0xc3, 0x28]);
    const r = await rawBinary(c, key, 'badkey');
    expect(r).toMatchObject({ code: 'invalid_request' });
    expect(r.data.field).toMatch(/^data\.metadata\.k/);
    expect(await total()).toBe(before);
  });
});

describe('lone surrogates and invalid UTF-8: inference server', () => {
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

  it('embeddings and process texts with a lone surrogate are invalid_request naming the field', async () => {
    const e = await rawJson(c, '{"type":"embeddings","id":"ID","data":{"texts":["fine","x\\ud800"]}}');
    expect(e).toMatchObject({ status: 'error', code: 'invalid_request', data: { field: 'data.texts[1]' } });
    const p = await rawJson(c, '{"type":"process","id":"ID","data":{"text":"hello","context":["\\udfff"]}}');
    expect(p).toMatchObject({ status: 'error', code: 'invalid_request', data: { field: 'data.context[0]' } });
    const ok = await c.request('embeddings', { text: 'fine \ud83d\ude00' });
    expect(ok.status).toBe('success');
  });

  it('MessagePack: invalid UTF-8 in a text is invalid_request', async () => {
    const bytes = packWithRawBytes({ type: 'embeddings', id: 'inf-utf8', data: { text: 'aXXb' } }, 'XX', [0xc0, 0xaf]);
    expect(await rawBinary(c, bytes, 'inf-utf8')).toMatchObject({ status: 'error', code: 'invalid_request', data: { field: 'data.text' } });
  });
});

describe('the schemas check the same without the codec (another transport, import files)', () => {
  it('parseRequestData refuses lone surrogates and deep nesting, naming the field', () => {
    const fail = (data: unknown): unknown => {
      try {
        parseRequestData(storeSingleSchema, data, 'store');
      } catch (err) {
        return err;
      }
      return undefined;
    };
    expect(fail({ text: 'x', id: '\ud800' })).toMatchObject({ code: 'invalid_request', data: { field: 'data.id' } });
    expect(fail({ text: 'x', metadata: { a: { ['\udc00']: 1 } } })).toMatchObject({ code: 'invalid_request', data: { field: 'data.metadata.a.\\udc00' } });
    let deep: unknown = 1;
    for (let i = 0; i < 100; i++) deep = [deep];
    expect(fail({ text: 'x', metadata: { deep } })).toMatchObject({ code: 'invalid_request' });
    expect(parseRequestData(storeSingleSchema, { text: 'fine \ud83d\ude00' }, 'store').text).toBe('fine \ud83d\ude00');
  });
});
