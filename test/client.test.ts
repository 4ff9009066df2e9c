/**
 * memory-server/client against real servers (createServers on 127.0.0.1, port 0),
 * plus unit tests of the request manager, reconnect policy and heartbeat with fake timers.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import {
  ClientError,
  ControlCenterClient,
  DEFAULTS,
  Heartbeat,
  InferenceClient,
  MemoryClient,
  ReconnectScheduler,
  RequestManager,
  TypedEmitter,
  randomId,
  reconnectDelay,
  shouldReconnect,
  type ConnectionState,
  type MemoryEvent,
  type StatusMessage,
} from '../ts/client/index.js';
import { removeTempDirs, sleep, startServers, tempDir, until, type TestServers } from './helpers/client-servers.js';
import { silentLogger } from './helpers/ws-client.js';
import { createServers } from '../ts/servers.js';
import { createControlCenter, inProcessComponents } from '../ts/control/index.js';
import { controlledWebSocket } from './helpers/client-ws.js';
import { tcpProxy } from './helpers/client-proxy.js';

const fast = { initialDelayMs: 10, maxDelayMs: 10, factor: 1, jitter: 0, maxAttempts: 200 };

const clients: Array<{ close(): Promise<void> }> = [];
function track<T extends { close(): Promise<void> }>(c: T): T {
  clients.push(c);
  return c;
}
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});
afterAll(() => removeTempDirs());

async function rejection(p: Promise<unknown>): Promise<ClientError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(ClientError);
    return err as ClientError;
  }
  throw new Error('expected a rejection');
}

// ---------------------------------------------------------------- unit: modules

describe('RequestManager', () => {
  afterEach(() => vi.useRealTimers());

  it('times out a request with code timeout and ignores a late reply', async () => {
    vi.useFakeTimers();
    const rm = new RequestManager({ timeoutMs: 100, maxQueued: 10 });
    const { entry, promise } = rm.create({ type: 'stats' });
    rm.sent(entry);
    const p = rejection(promise);
    vi.advanceTimersByTime(100);
    const err = await p;
    expect(err.code).toBe('timeout');
    expect(rm.inflightCount).toBe(0);
    expect(rm.handleReply(entry.id, () => expect.unreachable())).toBe(false);
  });

  it('bounds the queue by rejecting the oldest with queue_full; internal requests do not count', async () => {
    const rm = new RequestManager({ timeoutMs: 0, maxQueued: 2 });
    const made = [0, 1, 2, 3].map(() => rm.create({ type: 'store' }));
    const internal = rm.create({ type: 'subscribe' }, { internal: true });
    rm.enqueue(internal.entry);
    for (const m of made) rm.enqueue(m.entry);
    expect((await rejection(made[0]!.promise)).code).toBe('queue_full');
    expect((await rejection(made[1]!.promise)).code).toBe('queue_full');
    expect(rm.drainQueue().map((e) => e.id)).toEqual([internal.entry.id, made[2]!.entry.id, made[3]!.entry.id]);
  });

  it('requeues retriable in-flight requests ahead of queued ones and rejects the others', async () => {
    const rm = new RequestManager({ timeoutMs: 0, maxQueued: 10 });
    const a = rm.create({ type: 'store' });
    const del = rm.create({ type: 'delete' }, { retriable: false });
    const b = rm.create({ type: 'retrieve' });
    const q = rm.create({ type: 'list' });
    rm.sent(a.entry);
    rm.sent(del.entry);
    rm.sent(b.entry);
    rm.enqueue(q.entry);
    rm.requeueInflight('close 1006');
    expect((await rejection(del.promise)).code).toBe('disconnected');
    expect(rm.drainQueue().map((e) => e.message.type)).toEqual(['store', 'retrieve', 'list']);
  });

  it('ids are unique and correlate replies', async () => {
    const rm = new RequestManager({ timeoutMs: 0, maxQueued: 10 });
    const a = rm.create<number>({ type: 'x' });
    const b = rm.create<number>({ type: 'y' });
    expect(a.entry.id).not.toBe(b.entry.id);
    rm.sent(a.entry);
    rm.sent(b.entry);
    expect(rm.handleReply(b.entry.id, (e) => e.resolve(2))).toBe(true);
    expect(rm.handleReply(a.entry.id, (e) => e.resolve(1))).toBe(true);
    expect(await Promise.all([a.promise, b.promise])).toEqual([1, 2]);
  });
});

describe('reconnect policy', () => {
  afterEach(() => vi.useRealTimers());

  it('memory/inference: every 5 s, 5 tries; control center: 3 s doubling capped at 60 s, 10 tries', () => {
    const noJitter = () => 0.5;
    const mem = DEFAULTS.reconnect.memory;
    expect([1, 2, 3, 4, 5].map((n) => reconnectDelay(n, mem, noJitter))).toEqual([5000, 5000, 5000, 5000, 5000]);
    expect(mem.maxAttempts).toBe(5);
    expect(DEFAULTS.reconnect.inference.maxAttempts).toBe(5);
    const cc = DEFAULTS.reconnect.control;
    expect([1, 2, 3, 4, 5, 6, 7, 10].map((n) => reconnectDelay(n, cc, noJitter))).toEqual([
      3000, 6000, 12000, 24000, 48000, 60000, 60000, 60000,
    ]);
    expect(cc.maxAttempts).toBe(10);
  });

  it('jitter stays within ±jitter of the delay', () => {
    const o = { ...DEFAULTS.reconnect.memory, jitter: 0.1 };
    expect(reconnectDelay(1, o, () => 0)).toBe(4500);
    expect(reconnectDelay(1, o, () => 1)).toBe(5500);
  });

  it('no reconnect after 1000 and 1008; reconnect after 1001, 1006, 1011, 1013', () => {
    expect(shouldReconnect(1000)).toBe(false);
    expect(shouldReconnect(1008)).toBe(false);
    for (const code of [1001, 1006, 1009, 1011, 1013, 4000]) expect(shouldReconnect(code)).toBe(true);
  });

  it('the scheduler counts attempts and gives up after maxAttempts', () => {
    vi.useFakeTimers();
    const s = new ReconnectScheduler({ enabled: true, initialDelayMs: 100, factor: 2, maxDelayMs: 250, maxAttempts: 3, jitter: 0 });
    const runs: number[] = [];
    expect(s.schedule(() => runs.push(1))).toEqual({ attempt: 1, delayMs: 100 });
    vi.advanceTimersByTime(99);
    expect(runs).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(runs).toEqual([1]);
    expect(s.schedule(() => runs.push(2))).toEqual({ attempt: 2, delayMs: 200 });
    expect(s.schedule(() => runs.push(3))).toEqual({ attempt: 3, delayMs: 250 });
    expect(s.schedule(() => runs.push(4))).toBeNull();
    vi.advanceTimersByTime(1000);
    expect(runs).toEqual([1, 3]); // scheduling again replaced the pending timer
    s.reset();
    expect(s.schedule(() => undefined)?.attempt).toBe(1);
    s.cancel();
    expect(new ReconnectScheduler({ ...DEFAULTS.reconnect.memory, enabled: false }).schedule(() => undefined)).toBeNull();
  });
});

describe('Heartbeat', () => {
  afterEach(() => vi.useRealTimers());

  it('probes after the interval of silence and declares the peer dead after the timeout', () => {
    vi.useFakeTimers();
    const probes: number[] = [];
    let dead = 0;
    const hb = new Heartbeat({ enabled: true, intervalMs: 100, timeoutMs: 50 }, { probe: () => probes.push(1), onDead: () => dead++ });
    hb.start();
    vi.advanceTimersByTime(90);
    hb.touch(); // traffic resets the interval
    vi.advanceTimersByTime(90);
    expect(probes.length).toBe(0);
    vi.advanceTimersByTime(10);
    expect(probes.length).toBe(1);
    hb.touch(); // the probe was answered
    vi.advanceTimersByTime(140);
    expect(dead).toBe(0);
    vi.advanceTimersByTime(10 + 50);
    expect(probes.length).toBe(2);
    expect(dead).toBe(1);
    hb.stop();
  });

  it('does nothing when disabled or stopped', () => {
    vi.useFakeTimers();
    let dead = 0;
    const off = new Heartbeat({ enabled: false, intervalMs: 10, timeoutMs: 10 }, { onDead: () => dead++ });
    off.start();
    const stopped = new Heartbeat({ enabled: true, intervalMs: 10, timeoutMs: 10 }, { onDead: () => dead++ });
    stopped.start();
    stopped.stop();
    vi.advanceTimersByTime(1000);
    expect(dead).toBe(0);
  });
});

describe('TypedEmitter and ids', () => {
  it('on/once/off and isolated listener errors', () => {
    class E extends TypedEmitter<{ x: (n: number) => void }> {
      fire(n: number) {
        this.emit('x', n);
      }
    }
    const e = new E();
    const seen: number[] = [];
    const off = e.on('x', (n) => seen.push(n));
    e.once('x', (n) => seen.push(n * 10));
    e.fire(1);
    e.fire(2);
    off();
    e.fire(3);
    expect(seen).toEqual([1, 10, 2]);
    expect(e.listenerCount('x')).toBe(0);
  });

  it('randomId gives UUIDs, with a fallback when crypto.randomUUID is missing', () => {
    expect(randomId()).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const spy = vi.spyOn(globalThis, 'crypto', 'get').mockReturnValue(undefined as unknown as Crypto);
    try {
      const ids = new Set(Array.from({ length: 100 }, () => randomId()));
      expect(ids.size).toBe(100);
      for (const id of ids) expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    } finally {
      spy.mockRestore();
    }
  });

  it('ts/client imports nothing from Node (it must bundle for browsers) and nothing that pulls zod in', async () => {
    const { readdirSync, readFileSync } = await import('node:fs');
    const dir = new URL('../ts/client/', import.meta.url);
    const files = readdirSync(dir).filter((f) => f.endsWith('.ts'));
    expect(files).toContain('index.ts');
    for (const f of files) {
      const src = readFileSync(new URL(f, dir), 'utf8');
      const imports = [...src.matchAll(/^import\s+(type\s+)?[^;]*?from\s+'([^']+)'/gms)].map((m) => ({ type: !!m[1], from: m[2]! }));
      for (const i of imports) {
        expect(i.from, `${f} imports ${i.from}`).toMatch(/^\.\.?\//);
        // protocol/memory.ts and protocol/inference.ts hold zod schemas: types only.
        if (/protocol\/(memory|inference|validate)\.js$/.test(i.from)) expect(i.type, `${f}: import type from ${i.from}`).toBe(true);
      }
    }
  });

  it('errors clearly without a WebSocket implementation', () => {
    // Node 22+ has a global WebSocket: take it away for this test (Node 20 has none).
    const g = globalThis as { WebSocket?: unknown };
    const saved = Object.getOwnPropertyDescriptor(g, 'WebSocket');
    if (saved) delete g.WebSocket;
    let err: unknown;
    try {
      expect(g.WebSocket).toBeUndefined();
      new MemoryClient({ url: 'ws://127.0.0.1:1' });
    } catch (e) {
      err = e;
    } finally {
      if (saved) Object.defineProperty(g, 'WebSocket', saved);
    }
    expect(err).toBeInstanceOf(ClientError);
    expect((err as ClientError).code).toBe('no_websocket');
    expect((err as Error).message).toMatch(/WebSocket/);
  });
});

// ---------------------------------------------------------------- real servers

describe('MemoryClient and InferenceClient against real servers', () => {
  let t: TestServers;
  beforeAll(async () => {
    t = await startServers();
  });
  afterAll(async () => {
    await t.stop();
  });

  const memory = (opts: ConstructorParameters<typeof MemoryClient>[0] = {}) =>
    track(new MemoryClient({ url: t.memoryUrl, WebSocket, reconnect: fast, ...opts }));

  it('every memory command, with reply types', async () => {
    const c = memory({ namespace: 'basic' });
    const states: ConnectionState[] = [];
    c.on('state', (s) => states.push(s));
    await c.connect();
    expect(c.state).toBe('open');

    const a = await c.store('The cat sat on the mat', { metadata: { type: 'note', importance: 0.9 } });
    expect(a).toMatchObject({ existing: false, stats: { namespace_total: 1 } });
    expect(a.id).toMatch(/^[0-9a-f-]{36}$/); // client-assigned
    expect(typeof a.significance).toBe('number');
    const b = await c.store({ text: 'Dogs bark at night', id: 'dog-1', significance: 0.2, metadata: { type: 'fact' } });
    expect(b.id).toBe('dog-1');
    const batch = await c.storeMany(['Birds fly south in winter', { text: 'Fish swim', significance: 0.95, metadata: { type: 'fact' } }]);
    expect(batch.items).toHaveLength(2);
    expect(batch.stats.namespace_total).toBe(4);

    const top = await c.retrieve(5, 0.7);
    expect(top.memories.length).toBeGreaterThan(0);
    for (const m of top.memories) expect(m.significance).toBeGreaterThanOrEqual(0.7);
    expect(top.memories.map((m) => m.id)).not.toContain('dog-1');
    const sorted = [...top.memories].sort((x, y) => y.significance - x.significance);
    expect(top.memories.map((m) => m.id)).toEqual(sorted.map((m) => m.id));

    const all = await c.retrieve({ count: 10 });
    expect(all.memories).toHaveLength(4);
    const facts = await c.retrieve({ type: 'fact', count: 10 });
    expect(facts.memories.map((m) => m.id).sort()).toEqual(['dog-1', batch.items[1]!.id].sort());

    const sem = await c.search('cat on a mat', { count: 2 });
    expect(sem.memories[0]!.id).toBe(a.id);
    expect(typeof sem.memories[0]!.score).toBe('number');

    const page = await c.list({ limit: 3 });
    expect(page.memories).toHaveLength(3);
    expect(page.next_cursor).not.toBeNull();
    const everything: string[] = [];
    for await (const m of c.listAll({ limit: 3 })) everything.push(m.id);
    expect(everything).toEqual([a.id, 'dog-1', batch.items[0]!.id, batch.items[1]!.id]); // store order

    const got = await c.get('dog-1');
    expect(got).toMatchObject({ id: 'dog-1', namespace: 'basic', text: 'Dogs bark at night' });
    const withVec = await c.get('dog-1', { include_embeddings: true });
    expect(withVec.embedding).toBeInstanceOf(Float32Array); // revived from JSON numbers
    const upd = await c.update('dog-1', { metadata: { type: 'fact', edited: true }, significance: 0.5 });
    expect(upd.metadata).toEqual({ type: 'fact', edited: true });
    expect(upd.significance).toBeCloseTo(0.5, 5);

    const ns = await c.namespaces();
    expect(ns.namespaces).toContainEqual({ name: 'basic', total_memories: 4 });

    const stats = await c.stats({ namespace: 'basic' });
    expect(stats).toMatchObject({ total_memories: 4, memory_count: 4, dims: 384, namespace: 'basic' });
    expect(stats.totals?.total_memories).toBeGreaterThanOrEqual(4);

    const notFound = await rejection(c.get('missing'));
    expect(notFound.code).toBe('not_found');
    expect(notFound.type).toBe('get');
    const invalid = await rejection(c.retrieve({ count: 0 }));
    expect(invalid.code).toBe('invalid_request');
    expect(invalid.message).toMatch(/count/);

    const del = await c.delete('dog-1');
    expect(del).toEqual({ deleted: 1, not_found: [] });
    expect((await rejection(c.delete('dog-1'))).code).toBe('not_found');
    const many = await c.deleteMany([batch.items[0]!.id, 'nope']);
    expect(many).toEqual({ deleted: 1, not_found: ['nope'] });
    const rest = await c.deleteMany({ filter: {}, all: true });
    expect(rest.deleted).toBe(2);
    expect((await c.stats({ namespace: 'basic' })).total_memories).toBe(0);

    await c.close();
    expect(c.state).toBe('closed');
    expect(states).toEqual(['connecting', 'open', 'closed']);
  });

  it('subscribe delivers typed events; unsubscribe stops them', async () => {
    const c = memory({ namespace: 'events' });
    const other = memory({ namespace: 'events' });
    const got: MemoryEvent[] = [];
    const viaOn: string[] = [];
    c.on('memory_removed', (e) => viaOn.push(e.memory.id));
    const sub = await c.subscribe(null, (e) => got.push(e));
    expect(sub.events).toEqual(['memory_added', 'memory_updated', 'memory_removed']);
    expect(typeof sub.seq).toBe('number');
    await other.store('event one', { id: 'e1' });
    await other.update('e1', { significance: 0.3 });
    await other.delete('e1');
    await until(() => got.length === 3, 5_000, 'three events');
    expect(got.map((e) => e.type)).toEqual(['memory_added', 'memory_updated', 'memory_removed']);
    expect(got[0]!.memory).toMatchObject({ id: 'e1', text: 'event one', namespace: 'events' });
    expect(got.map((e) => e.seq)).toEqual([...got.map((e) => e.seq)].sort((x, y) => x - y));
    expect(viaOn).toEqual(['e1']);
    expect(c.subscriptionSeq()).toBe(got[2]!.seq);
    const un = await c.unsubscribe();
    expect(un.events).toEqual([]);
    expect(c.listenerCount('memory_added')).toBe(0); // the handler was removed
    expect(c.listenerCount('memory_removed')).toBe(1); // the on() listener stays
    await other.store('event two');
    await c.stats(); // a round trip after the store: an event would have arrived before this reply
    expect(got).toHaveLength(3);
  });

  it('pipelines requests: all answered, in order, later ones see earlier stores', async () => {
    const c = memory({ namespace: 'pipe' });
    const n = 200;
    const stores = Array.from({ length: n }, (_, i) => c.store(`pipelined memory number ${i}`, { id: `p${i}` }));
    const after = c.retrieve({ count: 1000 });
    const stats = c.stats({ namespace: 'pipe' });
    const replies = await Promise.all(stores);
    expect(replies.map((r) => r.id)).toEqual(Array.from({ length: n }, (_, i) => `p${i}`));
    expect(replies.map((r) => r.stats.namespace_total)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    expect((await after).memories).toHaveLength(n);
    expect((await stats).total_memories).toBe(n);
  });

  it('MessagePack transport: vectors travel and arrive as Float32Array', async () => {
    const c = memory({ namespace: 'bin', binary: true });
    const inf = track(new InferenceClient({ url: t.inferenceUrl, WebSocket, binary: true }));
    const { embedding } = await inf.embeddings('a vector for the memory');
    expect(embedding).toBeInstanceOf(Float32Array);
    const s = await c.store('a vector for the memory', { embedding, id: 'v1' });
    expect(s.id).toBe('v1');
    const got = await c.get('v1', { include_embeddings: true });
    expect(got.embedding).toBeInstanceOf(Float32Array);
    expect(Array.from(got.embedding!)).toEqual(Array.from(embedding));
    const byVec = await c.retrieve({ embedding, count: 1, include_embeddings: true });
    expect(byVec.memories[0]!.id).toBe('v1');
    expect(byVec.memories[0]!.score).toBeCloseTo(1, 4);
    expect(byVec.memories[0]!.embedding).toBeInstanceOf(Float32Array);
  });

  it('inference: embeddings (one and many), process, stats; JSON vectors revived to Float32Array', async () => {
    const c = track(new InferenceClient({ url: t.inferenceUrl, WebSocket }));
    const one = await c.embeddings('hello world');
    expect(one.embedding).toBeInstanceOf(Float32Array);
    expect(one.embedding.length).toBe(one.dims);
    expect(one.dims).toBe(384);
    expect(typeof one.model).toBe('string');
    const norm = Math.hypot(...one.embedding);
    expect(norm).toBeCloseTo(1, 4);
    const many = await c.embeddings(['first text', 'second text', 'hello world'], { normalize: true });
    expect(many.embeddings).toHaveLength(3);
    for (const e of many.embeddings) expect(e).toBeInstanceOf(Float32Array);
    expect(Array.from(many.embeddings[2]!)).toEqual(Array.from(one.embedding));

    const text = Array.from({ length: 40 }, (_, i) => `word${i}`).join(' ');
    const p = await c.process(text, ['word0 word1 word2'], { max_tokens: 16, stride: 4 });
    expect(p.embedding).toBeInstanceOf(Float32Array);
    expect(p.chunks.length).toBeGreaterThan(1);
    for (const ch of p.chunks) expect(text.slice(ch.start, ch.end)).toBe(ch.text);
    expect(p.significance).toBeGreaterThanOrEqual(0);
    expect(p.significance).toBeLessThanOrEqual(1);
    const noContext = await c.process('short text');
    expect(noContext.significance).toBeCloseTo(0.5, 5);

    const st = await c.stats();
    expect(st).toMatchObject({ dims: 384 });
    expect(st.requests).toBeGreaterThanOrEqual(3);
    expect((await rejection(c.process(''))).code).toBe('invalid_request');
  });

  it('queue bound: while disconnected the oldest request is rejected with queue_full', async () => {
    const c = memory({ namespace: 'queue', maxQueued: 3, autoConnect: false });
    const ps = [0, 1, 2, 3, 4].map((i) => c.store(`queued ${i}`, { id: `q${i}` }));
    expect(c.queued).toBe(3);
    expect((await rejection(ps[0]!)).code).toBe('queue_full');
    expect((await rejection(ps[1]!)).code).toBe('queue_full');
    await c.connect();
    const ok = await Promise.all(ps.slice(2));
    expect(ok.map((r) => r.id)).toEqual(['q2', 'q3', 'q4']);
    expect((await c.list()).memories.map((m) => m.id)).toEqual(['q2', 'q3', 'q4']);
  });

  it('a request times out with code timeout (queued while the connection is held back)', async () => {
    const cws = controlledWebSocket();
    cws.gate.close();
    const c = memory({ WebSocket: cws.WebSocket, requestTimeoutMs: 50 });
    const err = await rejection(c.stats());
    expect(err.code).toBe('timeout');
    expect(err.type).toBe('stats');
    expect(c.queued).toBe(0);
    cws.gate.open();
    await until(() => c.state === 'open', 5_000, 'open');
    expect((await c.stats()).dims).toBe(384);
  });

  it('close(): state closed with 1000, no reconnect, pending and later requests reject with disconnected', async () => {
    const c = memory();
    await c.connect();
    const events: string[] = [];
    for (const ev of ['reconnecting', 'closed'] as const) c.on(ev, () => events.push(ev));
    let closedCode = 0;
    c.on('closed', (i) => (closedCode = i.code));
    await c.close();
    expect(c.state).toBe('closed');
    expect(closedCode).toBe(1000);
    expect((await rejection(c.stats())).code).toBe('disconnected');
    await sleep(50);
    expect(events).toEqual(['closed']);
  });

  it('no reconnect after the server closes with 1008', async () => {
    const c = memory({ namespace: 'policy' });
    await c.connect();
    const reconnecting: number[] = [];
    c.on('reconnecting', (i) => reconnecting.push(i.attempt));
    const closed = new Promise<{ code: number }>((r) => c.once('closed', r));
    const ws = t.servers.memory!.ws;
    const before = new Set(ws.connections());
    // Find this client's connection: the one that appears with a fresh request.
    await c.stats();
    for (const id of ws.connections()) ws.close(id, 1008, 'policy');
    expect(before.size).toBeGreaterThan(0);
    expect((await closed).code).toBe(1008);
    expect(c.state).toBe('closed');
    await sleep(100);
    expect(reconnecting).toEqual([]);
    expect((await rejection(c.stats())).code).toBe('disconnected');
  });

  it('a store whose reply was lost in a drop is replayed after reconnect without duplicating', async () => {
    const cws = controlledWebSocket();
    const c = memory({ namespace: 'replay', WebSocket: cws.WebSocket });
    await c.connect();
    cws.loseReplyAndDrop((r) => r.type === 'store');
    const opened = new Promise((r) => c.once('open', r));
    const reply = await c.store('stored exactly once');
    await opened;
    expect(reply.existing).toBe(true); // the first attempt took effect; the replay found it
    const storesSent = cws.sent.filter((m) => m.type === 'store');
    expect(storesSent).toHaveLength(2);
    expect((storesSent[0]!.data as { id: string }).id).toBe((storesSent[1]!.data as { id: string }).id);
    expect((await c.stats({ namespace: 'replay' })).total_memories).toBe(1);
    expect(cws.created).toBe(2);
  });

  it('a delete in flight during a drop rejects with disconnected instead of being replayed', async () => {
    const cws = controlledWebSocket();
    const c = memory({ namespace: 'nodelete', WebSocket: cws.WebSocket });
    await c.store('to delete', { id: 'd1' });
    cws.loseReplyAndDrop((r) => r.type === 'delete');
    const err = await rejection(c.delete('d1'));
    expect(err.code).toBe('disconnected');
    await until(() => c.state === 'open', 5_000, 'reopen');
    expect(cws.sent.filter((m) => m.type === 'delete')).toHaveLength(1);
  });
});

describe('reconnect across a server restart (same data dir)', () => {
  let t: TestServers;
  beforeAll(async () => {
    t = await startServers({ inference: false });
  });
  afterAll(async () => {
    await t.stop();
  });

  /**
   * Same port: the clients cut their sockets first (a network failure, close 1006), so the
   * server's port is left without TIME_WAIT sockets and can be bound again at once.
   */
  async function cutClientsAndStop(...gates: Array<ReturnType<typeof controlledWebSocket>>): Promise<void> {
    for (const g of gates) g.gate.close();
    for (const g of gates) g.dropAll();
    await until(() => t.servers.memory!.ws.connectionCount() === 0, 5_000, 'server sees no connections');
    await t.stop();
  }

  it('same port: in-flight requests are replayed and queued ones complete after reconnect, none lost or duplicated', async () => {
    const cws = controlledWebSocket();
    const c = track(new MemoryClient({ url: t.memoryUrl, WebSocket: cws.WebSocket, namespace: 'restart', reconnect: fast }));
    const log: string[] = [];
    c.on('reconnecting', () => log.push('reconnecting'));
    c.on('open', (i) => log.push(i.reconnected ? 'reopen' : 'open'));
    const first = await Promise.all(Array.from({ length: 20 }, (_, i) => c.store(`before restart ${i}`, { id: `b${i}` })));
    expect(first.every((r) => !r.existing)).toBe(true);

    // A stream of stores with the connection cut and the server restarted in the middle of it.
    const midStream = Array.from({ length: 50 }, (_, i) => c.store(`mid stream ${i}`, { id: `m${i}` }));
    await cutClientsAndStop(cws);
    expect(c.state).not.toBe('open');
    const whileDown = Array.from({ length: 30 }, (_, i) => c.store(`while down ${i}`, { id: `w${i}` }));
    const retrieveWhileDown = c.retrieve({ count: 1000 });
    expect(c.queued).toBeGreaterThanOrEqual(31);
    await t.restart();
    cws.gate.open();

    const mid = await Promise.all(midStream);
    const down = await Promise.all(whileDown);
    expect(mid.map((r) => r.id)).toEqual(Array.from({ length: 50 }, (_, i) => `m${i}`));
    expect(down.map((r) => r.id)).toEqual(Array.from({ length: 30 }, (_, i) => `w${i}`));
    expect(down.every((r) => !r.existing)).toBe(true);
    expect((await retrieveWhileDown).memories).toHaveLength(100);
    const stats = await c.stats({ namespace: 'restart' });
    expect(stats.total_memories).toBe(100); // no store lost, none duplicated
    expect(log[0]).toBe('open');
    expect(log).toContain('reconnecting');
    expect(log.at(-1)).toBe('reopen');
  });

  it('same port: a subscription resumes with since_seq, events stored while the client was away are replayed, none twice', async () => {
    const subWs = controlledWebSocket();
    const writerWs = controlledWebSocket();
    const sub = track(new MemoryClient({ url: t.memoryUrl, WebSocket: subWs.WebSocket, namespace: 'resume', reconnect: fast }));
    const writer = track(new MemoryClient({ url: t.memoryUrl, WebSocket: writerWs.WebSocket, namespace: 'resume', reconnect: fast }));
    const seen: MemoryEvent[] = [];
    await sub.subscribe(['memory_added'], (e) => seen.push(e));
    for (let i = 0; i < 3; i++) await writer.store(`event ${i}`, { id: `ev${i}` });
    await until(() => seen.length === 3, 5_000, 'first events');

    const resubscribed = new Promise<{ replayed?: number; gap?: boolean }>((r) => sub.once('resubscribed', r));
    await cutClientsAndStop(subWs, writerWs);
    await t.restart();
    writerWs.gate.open(); // the subscriber stays away while these are stored
    for (let i = 3; i < 8; i++) await writer.store(`event ${i}`, { id: `ev${i}` });
    expect(sub.state).not.toBe('open');
    subWs.gate.open();
    const r = await resubscribed;
    expect(r.replayed).toBe(5);
    await writer.store('event 8', { id: 'ev8' }); // live again
    await until(() => seen.length === 9, 5_000, 'all events');
    await writer.stats();
    expect(seen.map((e) => e.memory.id)).toEqual(Array.from({ length: 9 }, (_, i) => `ev${i}`));
    expect(new Set(seen.map((e) => e.seq)).size).toBe(9);
    const subscribes = subWs.sent.filter((m) => m.type === 'subscribe');
    expect(subscribes).toHaveLength(2);
    expect((subscribes[1]!.data as { since_seq: number }).since_seq).toBe(seen[2]!.seq);
  });

  it('graceful server shutdown (1001) mid-stream: refused and in-flight requests are replayed on the restarted server', async () => {
    // The server closes first here, so its old port sits in TIME_WAIT: restart it on a new
    // port behind a fixed-port TCP forwarder, so the client's URL stays the same.
    const proxy = await tcpProxy(t.memoryPort);
    try {
      const c = track(new MemoryClient({ url: proxy.url, WebSocket, namespace: 'graceful', reconnect: { ...fast, maxAttempts: 2000 } }));
      const codes: number[] = [];
      c.on('reconnecting', (i) => codes.push(i.code));
      await c.connect();
      const stream = Array.from({ length: 300 }, (_, i) => c.store(`graceful ${i}`, { id: `g${i}` }));
      await sleep(1);
      const stopping = t.stop();
      proxy.setTarget(null);
      await stopping;
      await t.restart({ samePort: false });
      proxy.setTarget(t.memoryPort);
      const replies = await Promise.all(stream);
      expect(replies.map((r) => r.id)).toEqual(Array.from({ length: 300 }, (_, i) => `g${i}`));
      // When every store was answered before the shutdown, the replies resolve before the
      // close frame (forwarded by the proxy) reaches the client: wait for its event.
      await until(() => codes.length > 0, 5_000, 'the reconnecting event');
      expect(codes[0]).toBe(1001);
      expect((await c.stats({ namespace: 'graceful' })).total_memories).toBe(300);
    } finally {
      await proxy.close();
    }
  });

  it('gives up after maxAttempts when the server is gone for good: closed, requests rejected', async () => {
    const c = track(
      new MemoryClient({ url: t.memoryUrl, WebSocket, reconnect: { ...fast, maxAttempts: 3 }, requestTimeoutMs: 60_000 }),
    );
    await c.connect();
    const attempts: number[] = [];
    c.on('reconnecting', (i) => attempts.push(i.attempt));
    const closed = new Promise<{ code: number; reconnectAttempts: number }>((r) => c.once('closed', r));
    await t.stop();
    const pending = c.stats();
    const info = await closed;
    expect(attempts).toEqual([1, 2, 3]);
    expect(info.reconnectAttempts).toBe(3);
    expect(c.state).toBe('closed');
    const err = await rejection(pending);
    expect(err.code).toBe('disconnected');
    expect(err.message).toMatch(/3 reconnect attempts/);
  });
});

describe('auth', () => {
  let t: TestServers;
  beforeAll(async () => {
    t = await startServers({ inference: false, extra: { token: 's3cret' } });
  });
  afterAll(async () => {
    await t.stop();
  });

  it('the token travels as ?token=; a refused upgrade (401) ends in closed without retrying', async () => {
    const ok = track(new MemoryClient({ url: t.memoryUrl, WebSocket, token: 's3cret', reconnect: fast }));
    expect((await ok.store('authorized')).existing).toBe(false);

    const bad = track(new MemoryClient({ url: t.memoryUrl, WebSocket, token: 'wrong', reconnect: fast }));
    const attempts: number[] = [];
    bad.on('reconnecting', (i) => attempts.push(i.attempt));
    const err = await rejection(bad.connect());
    expect(err.code).toBe('disconnected');
    expect(err.message).toMatch(/1008|401/);
    expect(bad.state).toBe('closed');
    expect(attempts).toEqual([]);
  });
});

describe('heartbeat on a live connection', () => {
  it('a server that stops answering is detected: the socket is dropped (4000) and reconnected', async () => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise((r) => wss.once('listening', r));
    const port = (wss.address() as { port: number }).port;
    let probes = 0;
    wss.on('connection', (ws) => ws.on('message', () => probes++)); // never answers
    try {
      const c = track(
        new MemoryClient({ url: `ws://127.0.0.1:${port}`, WebSocket, heartbeat: { intervalMs: 30, timeoutMs: 30 }, reconnect: fast }),
      );
      const reconnecting = new Promise<{ code: number; reason: string }>((r) => c.once('reconnecting', r));
      await c.connect();
      const info = await reconnecting;
      expect(info.code).toBe(4000);
      expect(info.reason).toBe('heartbeat timeout');
      expect(probes).toBeGreaterThanOrEqual(1);
      await until(() => c.state === 'open', 5_000, 'reopen');
    } finally {
      await new Promise((r) => wss.close(r));
    }
  });
});

// ---------------------------------------------------------------- control center

describe('ControlCenterClient against a real control center (in-process servers)', () => {
  it('status events, a subscribe filter (re-sent after a reconnect), status(), and the REST helpers', async () => {
    const dataDir = tempDir();
    const common = { host: '127.0.0.1', logger: silentLogger, printListening: false, closeTimeoutMs: 2_000 };
    const servers = await createServers({ ...common, memory: { port: 0, dataDir }, inference: { port: 0 } });
    const components = inProcessComponents(servers, {
      memory: async () => (await createServers({ ...common, memory: { port: 0, dataDir }, inference: false })).memory!,
    });
    const cc = createControlCenter({ components, ...common, port: 0, statusIntervalMs: 100 });
    await cc.listen();
    try {
      const cws = controlledWebSocket();
      const c = track(new ControlCenterClient({ url: `ws://127.0.0.1:${cc.port}/ws`, WebSocket: cws.WebSocket, reconnect: fast }));
      expect(c.httpUrl).toBe(`http://127.0.0.1:${cc.port}`);
      const first = await c.nextStatus();
      expect(first.type).toBe('status');
      expect(first.components.memory).toMatchObject({ state: 'running', pid: process.pid });
      expect(first.components.inference?.state).toBe('running');
      expect(typeof first.metrics.total_concepts).toBe('number');

      const reply = await c.subscribe({ components: ['memory'], metrics: ['qps'] });
      expect(reply).toEqual({ components: ['memory'], metrics: ['queries_per_second'] });
      const filtered = (m: StatusMessage | null): boolean =>
        !!m && Object.keys(m.components).join() === 'memory' && Object.keys(m.metrics).sort().join() === 'queries_per_second,timestamp';
      await until(() => filtered(c.lastStatus), 5_000, 'a filtered status');
      const full = await c.status();
      expect(Object.keys(full.components).sort()).toEqual(['inference', 'memory']);
      expect((await rejection(c.subscribe({ metrics: ['no_such_metric'] }))).code).toBe('invalid_request');
      await c.subscribe({ components: ['memory'], metrics: ['qps'] });

      // A dropped connection: the filter is restored on the new one.
      const reopened = new Promise<{ reconnected: boolean }>((r) => c.once('open', r));
      cws.dropAll();
      expect((await reopened).reconnected).toBe(true);
      await until(() => cws.sent.filter((m) => m.type === 'subscribe').length === 4, 5_000, 'subscribe re-sent');
      expect(cws.sent.filter((m) => m.type === 'subscribe').at(-1)!.data).toEqual({ components: ['memory'], metrics: ['qps'] });
      const statuses: StatusMessage[] = [];
      c.on('status', (m) => statuses.push(m));
      await until(() => statuses.length >= 2, 5_000, 'statuses after reconnect');
      expect(statuses.slice(1).every(filtered)).toBe(true);

      // REST (Node 20's global fetch).
      expect((await c.getStatus()).components.memory?.state).toBe('running');
      expect((await c.getComponents()).components.memory?.state).toBe('running');
      expect((await c.healthz()).status).toBe('ok');
      expect(await c.metrics()).toContain('memory_server_component_up');
      const restarted = await c.restartComponent('memory');
      expect(restarted).toMatchObject({ success: true, component: { state: 'running', restarts: 1 } });
      const err = await rejection(c.startComponent('nope' as 'memory'));
      expect(err.code).toBe('http_error');
      expect(err.data?.status).toBe(404);
      await c.close();
    } finally {
      await cc.close();
      for (const comp of components) await comp.stop();
      await servers.close();
    }
  });

  it('defaults: ws://localhost:9000/ws, REST base http://localhost:9000, backoff 3 s doubling to 60 s, 10 tries', () => {
    const c = new ControlCenterClient({ WebSocket, autoConnect: false });
    expect(c.url).toBe('ws://localhost:9000/ws');
    expect(c.httpUrl).toBe('http://localhost:9000');
    expect(new MemoryClient({ WebSocket, autoConnect: false }).url).toBe('ws://localhost:5000');
    expect(new InferenceClient({ WebSocket, autoConnect: false }).url).toBe('ws://localhost:5005');
  });
});
