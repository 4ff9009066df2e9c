/**
 * #23 defect 13: deeply nested metadata or filters (10k+ levels) overflowed the stack
 * (`internal`, an error log line per frame). A frame nests at most MAX_NESTING_DEPTH
 * objects/arrays (the envelope is level 1); deeper is `invalid_request` naming the field,
 * in JSON and MessagePack, with no error logged and nothing stored.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_NESTING_DEPTH } from '../../ts/protocol/index.js';
import { connect, until, type TestClient } from '../helpers/ws-client.js';
import { rawBinary, rawJson, startMemory, type Started } from './protocol-servers.js';
import type { MemoryServer } from '../../ts/server/memory.js';

const ERROR_LEVEL = 50;

/** JSON of `levels` nested arrays around 1. */
const nestedJson = (levels: number): string => '['.repeat(levels) + '1' + ']'.repeat(levels);

/** MessagePack of the envelope {type, id, data: {text, metadata: {a: <levels nested 1-arrays>}}}, built by hand. */
function deepStoreMessagePack(id: string, levels: number): Uint8Array {
  const str = (s: string): number[] => [0xa0 | s.length, ...Buffer.from(s)];
  const head = [0x83, ...str('type'), ...str('store'), ...str('id'), ...str(id), ...str('data')];
  const data = [0x82, ...str('text'), ...str('deep'), ...str('metadata'), 0x81, ...str('a')];
  return new Uint8Array([...head, ...data, ...new Array<number>(levels).fill(0x91), 0x01]);
}

describe('nesting depth', () => {
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
  const errorLines = (): number => s.logs.filter((l) => l.level >= ERROR_LEVEL).length;

  for (const levels of [100, 20_000]) {
    it(`JSON metadata and filters nested ${levels} levels: invalid_request naming the field, no error log`, async () => {
      const before = await total();
      const st = await rawJson(c, `{"type":"store","id":"ID","data":{"text":"deep","metadata":{"a":${nestedJson(levels)}}}}`);
      expect(st).toMatchObject({ status: 'error', code: 'invalid_request', type: 'store' });
      expect(st.data.field).toMatch(/^data\.metadata\.a(\[0\])+$/);
      expect(st.message).toContain(`nested deeper than ${MAX_NESTING_DEPTH} levels`);
      const ls = await rawJson(c, `{"type":"list","id":"ID","data":{"filter":{"a":${nestedJson(levels)}}}}`);
      expect(ls).toMatchObject({ status: 'error', code: 'invalid_request' });
      expect(ls.data.field).toMatch(/^data\.filter\.a/);
      const dl = await rawJson(c, `{"type":"delete","id":"ID","data":{"filter":{"a":${nestedJson(levels)}}}}`);
      expect(dl).toMatchObject({ status: 'error', code: 'invalid_request' });
      expect(await total()).toBe(before);
      expect(errorLines()).toBe(0);
    });

    it(`MessagePack metadata nested ${levels} levels: invalid_request naming the field, no error log`, async () => {
      const before = await total();
      const r = await rawBinary(c, deepStoreMessagePack(`mp-${levels}`, levels), `mp-${levels}`);
      expect(r).toMatchObject({ status: 'error', code: 'invalid_request', type: 'store' });
      expect(r.data.field).toMatch(/^data\.metadata\.a(\[0\])+$/);
      expect(await total()).toBe(before);
      expect(errorLines()).toBe(0);
    });
  }

  it('exactly at the limit is accepted and stored intact; one level more is refused', async () => {
    // Envelope (1) → data (2) → metadata (3) → a: arrays from level 4 down to MAX_NESTING_DEPTH.
    const fits = MAX_NESTING_DEPTH - 3;
    const ok = await rawJson(c, `{"type":"store","id":"ID","data":{"id":"at-limit","text":"at the limit","metadata":{"a":${nestedJson(fits)}}}}`);
    expect(ok.status).toBe('success');
    const g = await c.request('get', { id: 'at-limit' });
    expect(JSON.stringify(g.data.metadata)).toBe(`{"a":${nestedJson(fits)}}`);
    const over = await rawJson(c, `{"type":"store","id":"ID","data":{"id":"over","text":"over","metadata":{"a":${nestedJson(fits + 1)}}}}`);
    expect(over.code).toBe('invalid_request');
    const bin = await rawBinary(c, deepStoreMessagePack('mp-fits', fits), 'mp-fits');
    expect(bin.status).toBe('success');
    const binOver = await rawBinary(c, deepStoreMessagePack('mp-over', fits + 1), 'mp-over');
    expect(binOver.code).toBe('invalid_request');
  });

  it('a truncated or padded MessagePack frame is still invalid_json', async () => {
    const bytes = deepStoreMessagePack('trunc', 3);
    c.ws.send(bytes.subarray(0, bytes.length - 2), { binary: true });
    const padded = new Uint8Array([...bytes, 0xc0]);
    c.ws.send(padded, { binary: true });
    await until(() => c.messages.filter((m) => (m as { code?: string } | null)?.code === 'invalid_json').length === 2);
    expect(errorLines()).toBe(0);
  });
});
