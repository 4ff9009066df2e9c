// The `stats` hot path: plain request frames read without JSON.parse (ws/peek.ts plainRequest)
// and the stats reply's cached JSON text (stats-text.ts). Both must give exactly what the
// general path gives: the same request as decodeRequest, the same text as JSON.stringify.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeRequest, encodeMessage, success } from '../ts/protocol/index.js';
import { MemoryServer } from '../ts/server/memory.js';
import { StatsText, type GlobalStatsReply } from '../ts/server/stats-text.js';
import { CommandNames, plainRequest } from '../ts/server/ws/peek.js';
import type { Connection } from '../ts/server/ws/connection.js';
import { connect, silentLogger, type TestClient } from './helpers/ws-client.js';

const names = new CommandNames(['stats', 'store', 'get', 'namespaces']);
const frame = (s: string): ArrayBuffer => {
  const b = Buffer.from(s, 'utf8');
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
};

describe('plainRequest', () => {
  it('reads the plain forms as decodeRequest does', () => {
    const frames = [
      '{"type":"stats"}',
      '{"type":"stats","id":0}',
      '{"type":"stats","id":7}',
      '{"type":"stats","id":-12}',
      '{"type":"stats","id":-0}',
      '{"type":"stats","id":999999999999999}',
      '{"id":42,"type":"get"}',
      '{"type":"namespaces","id":"r-1 x/y"}',
      '{"type":"stats","id":""}',
      '{"id":"abc","type":"stats"}',
    ];
    for (const f of frames) {
      const got = plainRequest(frame(f), names);
      const want = decodeRequest(frame(f), false);
      expect(want.ok, f).toBe(true);
      expect(got, f).toEqual(want.ok ? want.request : null);
      if (got?.id !== undefined) expect(Object.is(got.id, (want as { request: { id: unknown } }).request.id), f).toBe(true);
    }
  });

  it('leaves every other frame to the full decode (null)', () => {
    const frames = [
      '{ "type":"stats","id":1}', // whitespace
      '{"type":"stats", "id":1}',
      '{"type":"stats","id":01}', // leading zero: JSON.parse refuses it
      '{"type":"stats","id":1.5}',
      '{"type":"stats","id":1e3}',
      '{"type":"stats","id":1234567890123456}', // 16 digits
      '{"type":"stats","id":-}',
      '{"type":"stats","id":null}',
      '{"type":"stats","id":"a\\"b"}', // escape
      '{"type":"stats","id":"é"}', // non-ASCII
      '{"type":"stats","id":"\t"}', // control byte
      '{"type":"stat\\u0073","id":1}',
      '{"type":"unknown","id":1}',
      '{"type":"Stats","id":1}',
      '{"type":"stats","type":"stats"}', // duplicate keys
      '{"id":1,"id":2,"type":"stats"}',
      '{"type":"stats","id":1,"data":{}}', // another field
      '{"type":"stats","data":{}}',
      '{"id":1}',
      '{"type":"stats","id":1}}',
      '{"type":"stats","id":1,}',
      '{"type":"stats","id":"1}',
      '[{"type":"stats"}]',
      '{"type":"stats"',
      `{"type":"stats","id":"${'x'.repeat(200)}"}`, // longer than the scan takes
    ];
    for (const f of frames) expect(plainRequest(frame(f), names), f).toBeNull();
  });

  it('never accepts a frame decodeRequest reads differently (seeded mutations)', () => {
    // Byte mutations of plain frames: whatever plainRequest accepts must decode to the same request.
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return Math.floor((seed / 2147483648) * n); // the high bits (an LCG's low bits repeat quickly)
    };
    const alphabet = Buffer.from('{}[]":,-+.eE0123456789 \\/tsatidpyegxu\u00e9\t');
    const bases = ['{"type":"stats","id":123}', '{"id":"ab","type":"get"}', '{"type":"store"}'];
    let accepted = 0;
    for (let n = 0; n < 20_000; n++) {
      const b = Buffer.from(bases[n % bases.length]!);
      const edits = 1 + rand(3);
      const bytes = [...b];
      for (let e = 0; e < edits; e++) {
        const at = rand(bytes.length + 1);
        const c = alphabet[rand(alphabet.length)]!;
        const op = rand(3);
        if (op === 0) bytes[at] = c;
        else if (op === 1) bytes.splice(at, 0, c);
        else bytes.splice(at, 1);
      }
      const raw = new Uint8Array(bytes);
      const buf = raw.buffer.slice(0, raw.byteLength);
      const got = plainRequest(buf, names);
      if (got === null) continue;
      accepted++;
      const want = decodeRequest(buf, false);
      expect(want.ok, Buffer.from(bytes).toString('latin1')).toBe(true);
      if (want.ok) {
        expect(got).toEqual(want.request);
        if (got.id !== undefined) expect(Object.is(got.id, want.request.id)).toBe(true);
      }
    }
    expect(accepted).toBeGreaterThan(100);
  });
});

describe('StatsText', () => {
  const base = (): GlobalStatsReply => ({
    total_memories: 3,
    memory_count: 3,
    namespaces: 1,
    dims: 384,
    model: 'hash-v1',
    device: 'cpu',
    storage_bytes: 4096,
    storage_path: '/tmp/a "quoted" dir/é',
    connections: 2,
    uptime_s: 1.234,
    queries_per_second: 10.5,
    avg_latency_ms: 0.012,
    fsync: 'always',
    total_associations: 0,
    fsyncs: 9,
    last_seq: 3,
    isa: 'avx512',
    live_bytes: 1000,
    garbage_bytes: 0,
    last_compaction: null,
    plans: { exact: 1, graph: 0 },
  });

  it('is JSON.stringify of the reply through a change of every field, one at a time', () => {
    const text = new StatsText();
    let r = base();
    expect(text.text(r)).toBe(JSON.stringify(r));
    const compaction = { at: '2026-12-05T00:00:00.000Z', duration_ms: 5, bytes_before: 10, bytes_after: 5, rows_before: 2, rows_after: 1, start_seq: 1, automatic: false };
    const changes: Array<(r: GlobalStatsReply) => void> = [
      (x) => (x.total_memories = 4),
      (x) => (x.memory_count = 4),
      (x) => (x.namespaces = 2),
      (x) => (x.dims = 768),
      (x) => (x.model = 'other\nmodel'),
      (x) => (x.device = 'gpu'),
      (x) => (x.storage_bytes = 8192),
      (x) => (x.storage_path = '/elsewhere'),
      (x) => (x.connections = 3),
      (x) => (x.uptime_s = 2.5),
      (x) => (x.queries_per_second = 0),
      (x) => (x.avg_latency_ms = 1e-7),
      (x) => (x.fsync = 'never'),
      (x) => (x.total_associations = 5),
      (x) => (x.fsyncs = 10),
      (x) => (x.last_seq = 4),
      (x) => (x.isa = 'scalar'),
      (x) => (x.live_bytes = 2000),
      (x) => (x.garbage_bytes = 7),
      (x) => (x.last_compaction = compaction),
      (x) => (x.last_compaction = { ...compaction, rows_after: 0 }),
      (x) => (x.plans = { exact: 2, graph: 0 }),
      (x) => (x.plans = { exact: 2, graph: 1 }),
      (x) => (x.storage_bytes = -0),
      (x) => (x.avg_latency_ms = 123456789012345680000),
    ];
    for (const change of changes) {
      r = { ...r, plans: { ...r.plans! } };
      change(r);
      expect(text.text(r)).toBe(JSON.stringify(r));
      // Unchanged values again: the cached parts are reused and still right.
      expect(text.text({ ...r })).toBe(JSON.stringify(r));
    }
  });
});

describe('stats over the fast path', () => {
  const dirs: string[] = [];
  let server: MemoryServer;
  let url: string;
  let c: TestClient;
  beforeAll(async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'memsrv-stats-fast-'));
    dirs.push(dir);
    server = new MemoryServer({ dataDir: dir, host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false, closeTimeoutMs: 2_000 });
    const info = await server.listen();
    url = `ws://127.0.0.1:${info.port}`;
    c = await connect(url);
  });
  afterAll(async () => {
    c?.close();
    await server?.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  /** The handler's own reply, encoded as a text frame, against JSON.stringify of it. */
  const statsTextMatches = (): void => {
    const conn = { auth: { method: 'none' } } as unknown as Connection;
    const reply = success('stats', 1, server.commands.stats!(conn, { type: 'stats', id: 1 }));
    expect(encodeMessage(reply, false)).toBe(JSON.stringify(reply));
  };

  it("the handler's text equals JSON.stringify as the store changes (stores, deletes, a compaction)", async () => {
    statsTextMatches();
    for (let i = 0; i < 5; i++) {
      const r = await c.request('store', { text: `memory ${i}`, id: `m${i}`, namespace: i % 2 ? 'a' : 'b' });
      expect(r.status).toBe('success');
      statsTextMatches();
    }
    expect((await c.request('delete', { ids: ['m0'], namespace: 'b' })).status).toBe('success');
    statsTextMatches();
    await server.compact();
    const s = await c.request('stats');
    expect(s.data.last_compaction).not.toBeNull();
    statsTextMatches();
  });

  it('plain and general frames get the same reply (ids echoed exactly)', async () => {
    const cases: Array<[string, unknown]> = [
      ['{"type":"stats","id":9001}', 9001],
      ['{"id":-3,"type":"stats"}', -3],
      ['{"type":"stats","id":"plain id"}', 'plain id'],
      ['{ "type": "stats", "id": 9002 }', 9002], // whitespace: the general decode
      ['{"type":"stats","id":1.25}', 1.25],
      ['{"type":"stats","id":"esc\\"aped"}', 'esc"aped'],
    ];
    for (const [f, id] of cases) {
      const p = c.waitFor((m) => m.id === id);
      c.send(f);
      const r = await p;
      expect(r.status, f).toBe('success');
      expect(r.type).toBe('stats');
      expect(r.data.total_memories).toBe(4);
      expect(r.data.namespaces).toBe(2);
    }
  });

  it('frames the fast path refuses still get the general errors', async () => {
    let p = c.waitFor((m) => m.status === 'error' && m.code === 'invalid_json');
    c.send('{"type":"stats","id":01}');
    expect((await p).code).toBe('invalid_json');
    p = c.waitFor((m) => m.status === 'error' && m.id === 77);
    c.send('{"type":"stats","id":77,"extra":1}');
    expect((await p).code).toBe('invalid_request');
    p = c.waitFor((m) => m.status === 'error' && m.id === 78);
    c.send('{"type":"nope","id":78}');
    expect((await p).code).toBe('unknown_type');
  });
});
