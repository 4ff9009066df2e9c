/**
 * #24 "batch ingest at the size users send": a `store` batch of 1,000 items with 384-d
 * embeddings, realistic texts (~200 characters) and metadata, fits the default frame limit
 * both as JSON at the longest float32 notation and as MessagePack with float32 `bin`
 * embeddings (what MemoryClient sends for a batch that carries embeddings), and every item
 * is stored with exactly the vector sent (the store keeps it L2-normalized in float32).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryClient } from '../ts/client/index.js';
import { DEFAULTS } from '../ts/protocol/constants.js';
import { MEMORY_LIMITS } from '../ts/protocol/memory.js';
import { HASH_DIMS } from '../ts/native.js';
import { MemoryServer } from '../ts/server/memory.js';
import { connect, silentLogger } from './helpers/ws-client.js';

const ITEMS = MEMORY_LIMITS.maxBatchItems;
const dirs: string[] = [];
let server: MemoryServer;
let url: string;

beforeAll(async () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'memsrv-batch-'));
  dirs.push(dataDir);
  // Default limits: no maxFrameBytes, rate limit or reply budget is set here.
  server = new MemoryServer({ dataDir, host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false, closeTimeoutMs: 2_000 });
  url = `ws://127.0.0.1:${(await server.listen()).port}`;
});
afterAll(async () => {
  await server.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Deterministic pseudo-random numbers in [0, 1). */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

/** The longest JSON a float32 value gets: sign, 17 significant digits and a two-digit exponent (23 characters). */
const LONGEST = '-1.2345678901234567e-12'.length;

/** A 384-d float32 vector every element of which prints with LONGEST characters in JSON. */
function worstCaseVector(seed: number): Float32Array {
  const r = rng(seed);
  const v = new Float32Array(HASH_DIMS);
  for (let i = 0; i < v.length; i++) {
    let x: number;
    do x = Math.fround(-(1 + 8.9 * r()) * 10 ** -(10 + Math.floor(r() * 10)));
    while (String(x).length !== LONGEST);
    v[i] = x;
  }
  return v;
}

/** A dense embedding-like float32 vector (values around ±0.05, as a normalized 384-d model output). */
function denseVector(seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: HASH_DIMS }, () => (r() - 0.5) / 10);
}

/** What the store keeps for a vector: L2-normalized in f64, rounded to f32 (search::normalize). */
function storedForm(v: Float32Array): Float32Array {
  let sq = 0;
  for (const x of v) sq += x * x;
  const inv = 1 / Math.sqrt(sq);
  return Float32Array.from(v, (x) => x * inv);
}

const TOPICS = ['garden', 'invoice', 'travel', 'meeting', 'recipe', 'contract', 'workout', 'library'];

function item(i: number, embedding: Float32Array): { id: string; text: string; metadata: Record<string, unknown>; embedding: Float32Array } {
  const topic = TOPICS[i % TOPICS.length]!;
  const text = `Note ${i} about the ${topic}: the user mentioned that the ${topic} plans changed again this week, and asked to be reminded on Friday morning before the call with the team lead.`.padEnd(200, ' .');
  return { id: `item-${String(i).padStart(5, '0')}`, text, metadata: { source: 'import', topic, n: i, tags: [topic, `week-${i % 52}`] }, embedding };
}

/** Every stored memory of the namespace equals its item: text, metadata and the exact stored vector. */
async function expectStoredExactly(namespace: string, items: ReturnType<typeof item>[]): Promise<void> {
  const reader = new MemoryClient({ url, WebSocket, binary: true, namespace });
  try {
    const stored = new Map<string, { text: string; metadata: unknown; embedding?: Float32Array }>();
    for await (const m of reader.listAll({ include_embeddings: true, limit: 1000 })) stored.set(m.id, m as never);
    expect(stored.size).toBe(items.length);
    const wrong: string[] = [];
    for (const it of items) {
      const m = stored.get(it.id);
      const want = storedForm(it.embedding);
      const got = m?.embedding;
      const same = got instanceof Float32Array && got.length === want.length && want.every((x, k) => Object.is(x, got[k]));
      if (!m || m.text !== it.text || JSON.stringify(m.metadata) !== JSON.stringify(it.metadata) || !same) wrong.push(it.id);
    }
    expect(wrong).toEqual([]);
  } finally {
    await reader.close();
  }
}

describe('a 1,000-item batch with 384-d embeddings under the default limits', () => {
  it('as JSON with every number at the longest float32 notation: fits the default frame, every item stored exactly', async () => {
    const items = Array.from({ length: ITEMS }, (_, i) => item(i, worstCaseVector(i + 1)));
    const wireItems = items.map((it) => ({ ...it, embedding: Array.from(it.embedding) }));
    const frame = JSON.stringify({ type: 'store', id: 'json-batch', data: { namespace: 'json-batch', items: wireItems } });
    // The measured size, so the docs' figure stays true: 384 numbers × 24 bytes (23 + comma) per item, plus text and metadata.
    const bytes = Buffer.byteLength(frame);
    expect(bytes).toBeGreaterThan(ITEMS * HASH_DIMS * LONGEST);
    expect(bytes).toBeLessThan(10 * 1024 * 1024);
    expect(bytes).toBeLessThan(DEFAULTS.maxFrameBytes);
    const c = await connect(url);
    try {
      const reply = c.waitFor((m) => m.id === 'json-batch', 30_000);
      c.ws.send(frame);
      const r = await Promise.race([reply, c.closed.then((closed) => ({ status: 'closed', closed }))]);
      expect(r).toMatchObject({ status: 'success' });
      expect(r.data.items).toHaveLength(ITEMS);
      expect(r.data.stats.namespace_total).toBe(ITEMS);
    } finally {
      c.close();
    }
    await expectStoredExactly('json-batch', items);
  }, 60_000);

  it('MemoryClient.storeMany sends a batch with embeddings as one MessagePack frame of float32 bins, on a JSON client too', async () => {
    const frames: Array<string | Uint8Array | ArrayBuffer> = [];
    /** `ws` recording every frame the client sends. */
    class Recording extends WebSocket {
      override send(data: never, ...rest: never[]): void {
        frames.push(data);
        (super.send as (...a: unknown[]) => void)(data, ...rest);
      }
    }
    const client = new MemoryClient({ url, WebSocket: Recording, namespace: 'bin-batch' });
    const items = Array.from({ length: ITEMS }, (_, i) => item(i, denseVector(i + 1)));
    try {
      await client.connect();
      const reply = await client.storeMany(items);
      expect(reply.items).toHaveLength(ITEMS);
      expect(reply.items.every((r) => r.existing === false)).toBe(true);
      const batchFrames = frames.filter((f) => typeof f !== 'string' && (f as Uint8Array).byteLength > 1_000_000);
      expect(batchFrames).toHaveLength(1);
      const size = (batchFrames[0] as Uint8Array).byteLength;
      // 4 bytes per value (+ the bin header) beside the texts and metadata: far below the limit.
      expect(size).toBeGreaterThan(ITEMS * HASH_DIMS * 4);
      expect(size).toBeLessThan(ITEMS * (HASH_DIMS * 4 + 400));
      // number[] embeddings travel as float32 bins too, and `binary: false` keeps a batch JSON.
      frames.length = 0;
      const small = [item(ITEMS, denseVector(0)), item(ITEMS + 1, denseVector(-1))];
      await client.storeMany(small.map((it) => ({ ...it, embedding: Array.from(it.embedding) })), { namespace: 'bin-small' });
      expect(frames.filter((f) => typeof f !== 'string').map((f) => (f as Uint8Array).byteLength < 2 * (HASH_DIMS * 4 + 400))).toEqual([true]);
      frames.length = 0;
      await client.storeMany([{ text: 'kept as JSON', embedding: denseVector(7) }], { namespace: 'bin-small', binary: false });
      expect(frames.filter((f) => typeof f !== 'string')).toEqual([]);
      expect(frames.some((f) => typeof f === 'string' && f.includes('kept as JSON'))).toBe(true);
    } finally {
      await client.close();
    }
    await expectStoredExactly('bin-batch', items);
  }, 60_000);
});
