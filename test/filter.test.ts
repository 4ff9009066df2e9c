// The filter language end to end: $and / $or / $not, $contains / $all and nested paths in
// every command that takes a filter (retrieve with and without a query, list, delete), and
// its errors — the same message whether the protocol's schema or the core finds the problem.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryServer } from '../ts/server/memory.js';
import { MemoryStore, NativeError } from '../ts/native.js';
import { MAX_FILTER_DEPTH, listSchema } from '../ts/protocol/memory.js';
import { parseRequestData } from '../ts/protocol/validate.js';
import { ProtocolError } from '../ts/protocol/errors.js';
import { connect, silentLogger, type TestClient } from './helpers/ws-client.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'memsrv-filter-'));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** `$and` wrapped around `inner` until the filter is `levels` filter objects deep. */
function ands(levels: number, inner: Record<string, unknown>): Record<string, unknown> {
  let f = inner;
  for (let i = 1; i < levels; i++) f = { $and: [f] };
  return f;
}

/** `$not` wrapped around `inner` until the filter is `levels` filter objects deep. */
function nots(levels: number, inner: Record<string, unknown>): Record<string, unknown> {
  let f = inner;
  for (let i = 1; i < levels; i++) f = { $not: f };
  return f;
}

const NOTES = [
  { text: 'n1', metadata: { type: 'note', tags: ['a', 'b'], author: { name: 'ada', langs: ['en'] } } },
  { text: 'n2', metadata: { type: 'note', tags: ['b'], author: { name: 'bob' } } },
  { text: 'n3', metadata: { type: 'todo', tags: 'a', n: 5 } },
  { text: 'n4', metadata: { type: 'idea', tags: ['c', 'a'], n: 1 } },
  { text: 'n5', metadata: {} },
];

describe('filter language over the memory server', () => {
  let server: MemoryServer;
  let c: TestClient;
  const ns = 'filter-lang';
  beforeAll(async () => {
    server = new MemoryServer({ dataDir: tempDir(), host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false, closeTimeoutMs: 2_000 });
    const info = await server.listen();
    c = await connect(`ws://127.0.0.1:${info.port}`);
    const r = await c.request('store', { namespace: ns, items: NOTES });
    expect(r.status).toBe('success');
  });
  afterAll(async () => {
    c.close();
    await server.close();
  });

  const texts = (memories: { text: string }[]) => memories.map((m) => m.text).sort();
  async function retrieve(filter: unknown, query?: string): Promise<string[]> {
    const r = await c.request('retrieve', { namespace: ns, filter, count: 100, ...(query ? { query } : {}) });
    expect(r.status, JSON.stringify(r)).toBe('success');
    return texts(r.data.memories);
  }
  async function list(filter: unknown): Promise<string[]> {
    const r = await c.request('list', { namespace: ns, filter, limit: 100 });
    expect(r.status, JSON.stringify(r)).toBe('success');
    return texts(r.data.memories);
  }

  const cases: [string, unknown, string[]][] = [
    ['$or', { $or: [{ type: 'todo' }, { 'author.name': 'bob' }] }, ['n2', 'n3']],
    ['$and', { $and: [{ type: 'note' }, { tags: 'a' }] }, ['n1']],
    ['$not', { $not: { type: 'note' } }, ['n3', 'n4', 'n5']],
    ['$not of a missing key', { $not: { n: { $gt: 2 } } }, ['n1', 'n2', 'n4', 'n5']],
    ['$contains (arrays only)', { tags: { $contains: 'a' } }, ['n1', 'n4']],
    ['equality (arrays contain, scalars equal)', { tags: 'a' }, ['n1', 'n3', 'n4']],
    ['$all', { tags: { $all: ['a', 'b'] } }, ['n1']],
    ['$exists on a nested path', { 'author.name': { $exists: true } }, ['n1', 'n2']],
    ['nested array', { 'author.langs': { $contains: 'en' } }, ['n1']],
    ['logical beside plain keys', { type: 'note', $or: [{ tags: 'a' }, { 'author.name': 'bob' }] }, ['n1', 'n2']],
    ['nested logic', { $or: [{ $and: [{ type: 'note' }, { $not: { tags: 'b' } }] }, { n: { $in: [1, 5] } }] }, ['n3', 'n4']],
    ['$ne keeps rows without the key', { type: { $ne: 'note' } }, ['n3', 'n4', 'n5']],
  ];

  it.each(cases)('%s: retrieve (by significance and by query) and list agree', async (_name, filter, want) => {
    expect(await retrieve(filter)).toEqual(want);
    expect(await retrieve(filter, 'some query text')).toEqual(want);
    expect(await list(filter)).toEqual(want);
  });

  it('retrieve merges `type` into a logical filter', async () => {
    const r = await c.request('retrieve', { namespace: ns, type: 'note', filter: { $or: [{ tags: 'a' }, { n: 5 }] }, count: 10 });
    expect(texts(r.data.memories)).toEqual(['n1']);
  });

  it('delete by a logical filter removes exactly what it matches', async () => {
    const dns = 'filter-delete';
    await c.request('store', { namespace: dns, items: NOTES });
    const del = await c.request('delete', { namespace: dns, filter: { $or: [{ tags: { $contains: 'c' } }, { $not: { type: { $exists: true } } }] } });
    expect(del.data).toEqual({ deleted: 2, not_found: [] });
    const left = await c.request('list', { namespace: dns });
    expect(texts(left.data.memories)).toEqual(['n1', 'n2', 'n3']);
  });

  it('delete refuses a filter that names no field (it matches everything or nothing) unless all: true', async () => {
    const dns = 'filter-delete-vacuous';
    await c.request('store', { namespace: dns, items: NOTES });
    for (const filter of [{ $and: [{}] }, { $or: [{}, { $and: [{}] }] }, { $not: { $or: [{}] } }]) {
      const r = await c.request('delete', { namespace: dns, filter });
      expect(r, JSON.stringify(filter)).toMatchObject({ status: 'error', code: 'invalid_request' });
      expect(r.message).toBe('data.filter: a filter that names no field matches every memory or none; pass all: true to empty the namespace');
    }
    expect((await c.request('list', { namespace: dns })).data.memories).toHaveLength(NOTES.length);
    // A field anywhere inside makes it a real filter; all: true empties the namespace.
    expect((await c.request('delete', { namespace: dns, filter: { $and: [{}, { n: 5 }] } })).status).toBe('success');
    expect((await c.request('delete', { namespace: dns, filter: { $and: [{}] }, all: true })).status).toBe('success');
    expect((await c.request('list', { namespace: dns })).data.memories).toHaveLength(0);
  });

  it('bad filters are invalid_request naming where, and change nothing', async () => {
    const bad: [unknown, string][] = [
      [{ $nor: [{ a: 1 }] }, 'data.filter: unknown operator $nor'],
      [{ $or: [{ type: 'note' }, { tags: { $regex: 'a' } }] }, 'data.filter.$or[1].tags: unknown operator $regex'],
      [{ $or: [] }, 'data.filter.$or: must be a non-empty array of filters'],
      [{ $not: [{ a: 1 }] }, 'data.filter.$not: must be an object'],
      [{ tags: { $all: [] } }, 'data.filter.tags.$all: must be a non-empty array'],
      [{ $and: [{ n: { $gt: [1] } }] }, 'data.filter.$and[0].n.$gt must be a number or a string'],
      [nots(MAX_FILTER_DEPTH + 1, { a: 1 }), `data.filter${'.$not'.repeat(MAX_FILTER_DEPTH)}: filters nest deeper than ${MAX_FILTER_DEPTH} levels`],
    ];
    for (const [filter, message] of bad) {
      for (const [type, data] of [
        ['retrieve', { namespace: ns, filter }],
        ['list', { namespace: ns, filter }],
        ['delete', { namespace: ns, filter }],
      ] as const) {
        const r = await c.request(type, data);
        expect(r.status, `${type} ${JSON.stringify(filter)}`).toBe('error');
        expect(r.code).toBe('invalid_request');
        expect(r.message).toBe(message);
      }
    }
    expect(await list({})).toEqual(['n1', 'n2', 'n3', 'n4', 'n5']);
    // The deepest filter allowed is served.
    expect(await retrieve(ands(MAX_FILTER_DEPTH, { type: 'note' }))).toEqual(['n1', 'n2']);
    expect((await c.request('list', { namespace: ns, filter: ands(MAX_FILTER_DEPTH + 1, { type: 'note' }) })).code).toBe('invalid_request');
  });
});

describe('the protocol schema and the core agree on filter errors', () => {
  let store: MemoryStore;
  beforeAll(() => {
    store = MemoryStore.open(tempDir(), { dims: 4 });
  });
  afterAll(() => store.close());

  function schemaMessage(filter: unknown): string {
    try {
      parseRequestData(listSchema, { filter });
    } catch (e) {
      if (e instanceof ProtocolError) return e.message;
      throw e;
    }
    return 'accepted';
  }
  function coreMessage(filter: unknown): string {
    try {
      store.list('default', 0, 10, JSON.stringify(filter));
    } catch (e) {
      if (e instanceof NativeError) return `data.${e.message}`;
      throw e;
    }
    return 'accepted';
  }

  it.each([
    [{ $xor: [] }],
    [{ a: { $regex: 'x' } }],
    [{ $and: [{ a: 1 }, { b: { $where: 1 } }] }],
    [{ $or: [{ $not: { c: { $size: 1 } } }] }],
    [{ $or: {} }],
    [{ $and: [1] }],
    [{ $not: 'x' }],
    [{ a: { $not: { $gt: 1 } } }],
    [nots(MAX_FILTER_DEPTH + 1, {})],
    [nots(MAX_FILTER_DEPTH, { a: { $in: [1], $contains: 1, $all: [1], $exists: true } })],
    [{ $or: [{ a: 1 }, { b: { $gte: 2, $lte: 3, $ne: 1, $nin: [], $gt: 0, $lt: 9 } }] }],
  ])('%j', (filter) => {
    expect(schemaMessage(filter)).toBe(coreMessage(filter));
  });
});
