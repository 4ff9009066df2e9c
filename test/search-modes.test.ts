// retrieve modes (docs/search.md): `text` (BM25 over the core's text index, no embedding),
// `hybrid` (vector and text fused by reciprocal rank fusion), `vector`; signals on every
// result, filters inside both rankings, the index following stores, updates and deletes,
// and surviving a reopen.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryServer } from '../ts/server/memory.js';
import { HashEmbedder } from '../ts/embedder.js';
import { RRF_K } from '../ts/server/retrieve-modes.js';
import { connect, silentLogger, type TestClient } from './helpers/ws-client.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** The hash embedder, counting the texts it is asked to embed. */
class CountingEmbedder extends HashEmbedder {
  texts = 0;
  override embed(texts: string[]): Promise<Float32Array> {
    this.texts += texts.length;
    return super.embed(texts);
  }
}

async function start(dataDir: string, embedder = new CountingEmbedder()): Promise<{ server: MemoryServer; c: TestClient; embedder: CountingEmbedder }> {
  const server = new MemoryServer({ dataDir, host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false, closeTimeoutMs: 2_000, embedder });
  const info = await server.listen();
  return { server, c: await connect(`ws://127.0.0.1:${info.port}`), embedder };
}

const MEMORIES = [
  { id: 'crash', text: 'The deploy failed with error ERR-4521 in the payment parser', metadata: { type: 'incident', team: 'pay' } },
  { id: 'theme', text: 'The user prefers dark mode in every editor', metadata: { type: 'preference' } },
  { id: 'ada', text: 'Ada Lovelace wrote the first published algorithm', metadata: { type: 'fact' } },
  { id: 'parser', text: 'Parsing errors in the payment service were fixed last week', metadata: { type: 'note', team: 'pay' } },
  { id: 'cafe', text: 'Meeting at the Café Crème on Friday', metadata: { type: 'note' } },
  { id: 'runs', text: 'She was running three services for the payments team', metadata: { type: 'note', team: 'pay' } },
];

type Hit = { id: string; score: number; signals: { vector?: { rank: number; score: number }; text?: { rank: number; score: number } } };

describe('retrieve modes', () => {
  let dataDir: string;
  let server: MemoryServer;
  let c: TestClient;
  let embedder: CountingEmbedder;
  const ns = 'modes';
  const retrieve = async (data: Record<string, unknown>): Promise<Hit[]> => {
    const r = await c.request('retrieve', { namespace: ns, ...data });
    expect(r.status, JSON.stringify(r)).toBe('success');
    return r.data.memories as Hit[];
  };

  beforeAll(async () => {
    dataDir = mkdtempSync(path.join(tmpdir(), 'memsrv-modes-'));
    dirs.push(dataDir);
    ({ server, c, embedder } = await start(dataDir));
    const r = await c.request('store', { namespace: ns, items: MEMORIES });
    expect(r.status).toBe('success');
  });
  afterAll(async () => {
    c.close();
    await server.close();
  });

  it('text mode finds an exact identifier by BM25 and never embeds', async () => {
    const before = embedder.texts;
    const hits = await retrieve({ query: 'ERR-4521', mode: 'text', count: 3 });
    expect(embedder.texts).toBe(before);
    expect(hits.map((h) => h.id)).toEqual(['crash']);
    expect(hits[0]!.signals).toEqual({ text: { rank: 1, score: hits[0]!.score } });
    expect(hits[0]!.score).toBeGreaterThan(0);
  });

  it('text mode folds case and accents and stems English words', async () => {
    expect((await retrieve({ query: 'cafe CREME', mode: 'text' })).map((h) => h.id)).toEqual(['cafe']);
    // "runs" and "running" share the stem "run"; "errors" and "error" the stem "error".
    expect((await retrieve({ query: 'runs', mode: 'text' })).map((h) => h.id)).toEqual(['runs']);
    const errs = (await retrieve({ query: 'errors', mode: 'text' })).map((h) => h.id).sort();
    expect(errs).toEqual(['crash', 'parser']);
  });

  it('text results are ranked by BM25: more matching rare terms rank higher, scores descend', async () => {
    const hits = await retrieve({ query: 'payment parser error', mode: 'text', count: 10 });
    expect(hits.slice(0, 2).map((h) => h.id).sort()).toEqual(['crash', 'parser']);
    for (let i = 1; i < hits.length; i++) expect(hits[i]!.score).toBeLessThanOrEqual(hits[i - 1]!.score);
    hits.forEach((h, i) => expect(h.signals.text!.rank).toBe(i + 1));
  });

  it('hybrid fuses both rankings by RRF and says which signals scored each result', async () => {
    const hits = await retrieve({ query: 'payment parser error', mode: 'hybrid', count: 6 });
    expect(hits.length).toBe(6); // the vector ranking brings the memories without those words
    for (const h of hits) {
      const want = (h.signals.vector ? 1 / (RRF_K + h.signals.vector.rank) : 0) + (h.signals.text ? 1 / (RRF_K + h.signals.text.rank) : 0);
      expect(h.score).toBeCloseTo(want, 12);
    }
    for (let i = 1; i < hits.length; i++) expect(hits[i]!.score).toBeLessThanOrEqual(hits[i - 1]!.score);
    const both = hits.filter((h) => h.signals.vector && h.signals.text).map((h) => h.id);
    expect(both).toEqual(expect.arrayContaining(['crash', 'parser']));
    expect(hits.find((h) => h.id === 'theme')!.signals.text).toBeUndefined();
    // A vector-only ranking with mode: "vector" carries signals too.
    const v = await retrieve({ query: 'payment parser error', mode: 'vector', count: 2 });
    expect(v.map((h) => Object.keys(h.signals))).toEqual([['vector'], ['vector']]);
  });

  it('hybrid takes an embedding for the vector ranking alongside the query text', async () => {
    const [vec] = [await new HashEmbedder().embed(['dark mode editor'])];
    const before = embedder.texts;
    const hits = await retrieve({ query: 'Lovelace', embedding: Array.from(vec), mode: 'hybrid', count: 2 });
    expect(embedder.texts).toBe(before);
    const ids = hits.map((h) => h.id);
    expect(ids).toContain('ada'); // text
    expect(ids).toContain('theme'); // vector
  });

  it('filters apply inside both rankings', async () => {
    const text = await retrieve({ query: 'payment parser error services', mode: 'text', filter: { team: 'pay', type: 'note' }, count: 10 });
    expect(text.map((h) => h.id).sort()).toEqual(['parser', 'runs']);
    const hybrid = await retrieve({ query: 'payment parser error', mode: 'hybrid', filter: { type: 'note' }, count: 10 });
    expect(hybrid.length).toBeGreaterThan(0);
    for (const h of hybrid) expect(['parser', 'cafe', 'runs']).toContain(h.id);
    // The type shortcut, min_significance and time windows too.
    expect(await retrieve({ query: 'ERR-4521', mode: 'text', type: 'note' })).toEqual([]);
    expect(await retrieve({ query: 'ERR-4521', mode: 'text', min_significance: 1 })).toEqual([]);
    expect(await retrieve({ query: 'ERR-4521', mode: 'hybrid', until: '2000-01-01T00:00:00.000Z' })).toEqual([]);
  });

  it('bad mode requests are invalid_request naming the field, and change nothing', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ mode: 'fuzzy', query: 'x' }, 'data.mode'],
      [{ mode: 'text' }, 'data.query'],
      [{ mode: 'hybrid', embedding: new Array(384).fill(0.1) }, 'data.query'],
      [{ mode: 'text', query: 'x', embedding: new Array(384).fill(0.1) }, 'data.embedding'],
      [{ mode: 'text', query: 'x', min_score: 0.5 }, 'data.min_score'],
      [{ mode: 'vector' }, 'data.query'],
    ];
    for (const [data, field] of cases) {
      const r = await c.request('retrieve', { namespace: ns, ...data });
      expect(r.status, JSON.stringify(data)).toBe('error');
      expect(r.code).toBe('invalid_request');
      expect(r.error).toContain(field);
    }
    const listed = await c.request('list', { namespace: ns, limit: 100 });
    expect(listed.data.memories.map((m: { id: string }) => m.id)).toEqual(MEMORIES.map((m) => m.id));
    expect((await retrieve({ query: 'Lovelace', mode: 'text' })).map((h) => h.id)).toEqual(['ada']);
  });

  it('the text index follows deletes, updates and re-stores, and is rebuilt right on reopen', async () => {
    const ns2 = 'churn';
    const items = Array.from({ length: 40 }, (_, i) => ({ id: `n${i}`, text: `note ${i} about widget${i % 4} and gadget`, metadata: { k: i % 2 } }));
    expect((await c.request('store', { namespace: ns2, items })).status).toBe('success');
    const q = async (data: Record<string, unknown>) => (await c.request('retrieve', { namespace: ns2, mode: 'text', count: 50, ...data })).data.memories as Hit[];
    expect((await q({ query: 'widget1' })).length).toBe(10);
    expect((await c.request('delete', { namespace: ns2, ids: ['n1', 'n5'] })).data.deleted).toBe(2);
    const after = (await q({ query: 'widget1' })).map((h) => h.id);
    expect(after.length).toBe(8);
    expect(after).not.toContain('n1');
    // An update changes metadata (filters see it), never the indexed text.
    await c.request('update', { namespace: ns2, id: 'n9', metadata: { k: 7 } });
    expect((await q({ query: 'widget1', filter: { k: 7 } })).map((h) => h.id)).toEqual(['n9']);
    // A deleted id stored again with new text: only the new words find it.
    await c.request('store', { namespace: ns2, id: 'n1', text: 'completely different sprocket' });
    expect((await q({ query: 'sprocket' })).map((h) => h.id)).toEqual(['n1']);
    expect((await q({ query: 'widget1' })).map((h) => h.id)).not.toContain('n1');
    const snapshot = await q({ query: 'widget1 gadget sprocket note' });

    c.close();
    await server.close();
    ({ server, c, embedder } = await start(dataDir));
    const reopened = await q({ query: 'widget1 gadget sprocket note' });
    expect(reopened.map((h) => [h.id, h.score])).toEqual(snapshot.map((h) => [h.id, h.score]));
    expect((await q({ query: 'widget1', filter: { k: 7 } })).map((h) => h.id)).toEqual(['n9']);
    expect((await retrieve({ query: 'ERR-4521', mode: 'text' })).map((h) => h.id)).toEqual(['crash']);
  });
});
