/**
 * #23 defect 2: `__proto__` (and `constructor`, `prototype`) are data keys like any other.
 * Metadata keeps them exactly, in text (JSON) and binary (MessagePack) frames, and a filter
 * naming them matches them — it is never weakened into one that matches (and deletes) more.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type TestClient } from '../helpers/ws-client.js';
import { plainPackr, rawBinary, rawJson, startMemory, type Started } from './protocol-servers.js';
import type { MemoryServer } from '../../ts/server/memory.js';

// Built with JSON.parse: an object literal `{ __proto__: … }` would set the prototype instead.
const META_TEXT = '{"__proto__":{"x":1},"a":1,"constructor":"c","prototype":{"p":[1]}}';
const meta = (): Record<string, unknown> => JSON.parse(META_TEXT) as Record<string, unknown>;

const ownKeys = (o: unknown): string[] => Object.keys(o as object).sort();

describe('__proto__ keys in metadata and filters', () => {
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

  it('JSON: stored metadata with __proto__/constructor/prototype comes back exactly (get, list, event)', async () => {
    const ns = 'proto-json';
    await c.request('subscribe', { namespace: ns });
    const r = await rawJson(c, `{"type":"store","id":"ID","data":{"namespace":"${ns}","id":"m1","text":"proto json","metadata":${META_TEXT}}}`);
    expect(r.status).toBe('success');
    const ev = await c.waitFor((m) => m.type === 'memory_added' && m.data.memory.id === 'm1');
    expect(ownKeys(ev.data.memory.metadata)).toEqual(['__proto__', 'a', 'constructor', 'prototype']);
    const g = await c.request('get', { namespace: ns, id: 'm1' });
    expect(ownKeys(g.data.metadata)).toEqual(['__proto__', 'a', 'constructor', 'prototype']);
    expect(JSON.stringify(g.data.metadata)).toBe(META_TEXT);
    expect(Object.getPrototypeOf(g.data.metadata)).toBe(Object.prototype);
    const l = await c.request('list', { namespace: ns });
    expect(JSON.stringify(l.data.memories[0].metadata)).toBe(META_TEXT);
  });

  it('MessagePack: stored metadata with __proto__ comes back exactly, in a binary reply too', async () => {
    const ns = 'proto-mp';
    const id = 'mp-store';
    const r = await rawBinary(c, plainPackr.pack({ type: 'store', id, data: { namespace: ns, id: 'm2', text: 'proto mp', metadata: meta() } }), id);
    expect(r.status).toBe('success');
    const g = await c.request('get', { namespace: ns, id: 'm2' }, { binary: true });
    expect(ownKeys(g.data.metadata)).toEqual(['__proto__', 'a', 'constructor', 'prototype']);
    expect(JSON.stringify(g.data.metadata)).toBe(META_TEXT);
    const gj = await c.request('get', { namespace: ns, id: 'm2' });
    expect(JSON.stringify(gj.data.metadata)).toBe(META_TEXT);
  });

  it('a batch item and an update keep __proto__ too', async () => {
    const ns = 'proto-batch';
    const r = await rawJson(c, `{"type":"store","id":"ID","data":{"namespace":"${ns}","items":[{"id":"b1","text":"batch proto","metadata":${META_TEXT}}]}}`);
    expect(r.status).toBe('success');
    expect(JSON.stringify((await c.request('get', { namespace: ns, id: 'b1' })).data.metadata)).toBe(META_TEXT);
    const u = await rawJson(c, `{"type":"update","id":"ID","data":{"namespace":"${ns}","id":"b1","metadata":{"__proto__":"only"}}}`);
    expect(u.status).toBe('success');
    expect(JSON.stringify(u.data.metadata)).toBe('{"__proto__":"only"}');
    expect(JSON.stringify((await c.request('get', { namespace: ns, id: 'b1' })).data.metadata)).toBe('{"__proto__":"only"}');
  });

  for (const binary of [false, true]) {
    it(`delete by a filter on __proto__ deletes only the matching memories (${binary ? 'MessagePack' : 'JSON'})`, async () => {
      const ns = `proto-del-${binary ? 'mp' : 'json'}`;
      await rawJson(c, `{"type":"store","id":"ID","data":{"namespace":"${ns}","id":"hit","text":"has the key","metadata":{"__proto__":"x","a":1}}}`);
      await rawJson(c, `{"type":"store","id":"ID","data":{"namespace":"${ns}","id":"other","text":"lacks the key","metadata":{"a":1}}}`);
      await rawJson(c, `{"type":"store","id":"ID","data":{"namespace":"${ns}","id":"ctor","text":"constructor key","metadata":{"constructor":"x","a":1}}}`);
      const filter = JSON.parse('{"__proto__":"x","a":1}') as Record<string, unknown>;
      const listed = await c.request('list', { namespace: ns, filter }, { binary });
      expect(listed.status).toBe('success');
      expect(listed.data.memories.map((m: { id: string }) => m.id)).toEqual(['hit']);
      const del = await c.request('delete', { namespace: ns, filter }, { binary });
      expect(del.data).toEqual({ deleted: 1, not_found: [] });
      const left = await c.request('list', { namespace: ns });
      expect(left.data.memories.map((m: { id: string }) => m.id)).toEqual(['other', 'ctor']);
      // A filter whose only key is __proto__ is not an empty filter (which would need all: true).
      const only = await c.request('delete', { namespace: ns, filter: JSON.parse('{"__proto__":"nothing-has-this"}') }, { binary });
      expect(only.data).toEqual({ deleted: 0, not_found: [] });
      const ctor = await c.request('retrieve', { namespace: ns, filter: { constructor: 'x' }, count: 10 }, { binary });
      expect(ctor.data.memories.map((m: { id: string }) => m.id)).toEqual(['ctor']);
      expect((await c.request('list', { namespace: ns })).data.memories).toHaveLength(2);
    });
  }

  it('MessagePack: a __proto__ key written as str8 (as other encoders may) is kept too', async () => {
    const str = (text: string): number[] => [0xa0 | text.length, ...Buffer.from(text)];
    const str8 = (text: string): number[] => [0xd9, text.length, ...Buffer.from(text)];
    const frame = [0x83, ...str('type'), ...str('store'), ...str('id'), ...str('str8'), ...str('data')];
    const data = [0x84, ...str('namespace'), ...str('proto-str8'), ...str('id'), ...str('s1'), ...str('text'), ...str('str8 key')];
    const metadata = [...str('metadata'), 0x81, ...str8('__proto__'), 0x01];
    const r = await rawBinary(c, new Uint8Array([...frame, ...data, ...metadata]), 'str8');
    expect(r.status).toBe('success');
    expect(JSON.stringify((await c.request('get', { namespace: 'proto-str8', id: 's1' })).data.metadata)).toBe('{"__proto__":1}');
  });

  it('a MessagePack key "__proto_" stays itself and does not collide with "__proto__"', async () => {
    const ns = 'proto-near';
    const id = 'near';
    const metadata = JSON.parse('{"__proto__":1,"__proto_":2}') as Record<string, unknown>;
    const r = await rawBinary(c, plainPackr.pack({ type: 'store', id, data: { namespace: ns, id: 'n1', text: 'near miss', metadata } }), id);
    expect(r.status).toBe('success');
    expect(JSON.stringify((await c.request('get', { namespace: ns, id: 'n1' })).data.metadata)).toBe('{"__proto__":1,"__proto_":2}');
  });
});
