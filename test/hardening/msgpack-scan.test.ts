/**
 * The MessagePack pre-scan (ts/protocol/well-formed.ts) runs on every binary request: it must
 * accept every well-formed value msgpackr writes (each type and length class), refuse every
 * truncated one as malformed, and measure depth and UTF-8 as the decoder will see them.
 * (Unit tests of new code: nothing to fail on the old main, which had no scanner.)
 */
import { describe, expect, it } from 'vitest';
import { Packr } from 'msgpackr';
import { MalformedMessagePack, scanMessagePack } from '../../ts/protocol/well-formed.js';

const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

/** A deterministic pseudo-random generator (no flaky inputs). */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

function randomValue(r: () => number, depth: number): unknown {
  const pick = Math.floor(r() * (depth > 4 ? 9 : 12));
  const len = [0, 1, 15, 16, 31, 32, 255, 256, 70_000][Math.floor(r() * 9)]!;
  switch (pick) {
    case 0: return null;
    case 1: return r() < 0.5;
    case 2: return Math.floor(r() * 256) - 128; // fixints, int8, uint8
    case 3: return Math.floor(r() * 2 ** 32) * (r() < 0.5 ? -1 : 1); // 16/32-bit
    case 4: return 2 ** 40 + Math.floor(r() * 1000); // 64-bit
    case 5: return r() * 1e6 - 5e5; // float64
    case 6: return 'é€😀a'.repeat(Math.ceil(len / 4)).slice(0, len); // str 8/16/32, multi-byte
    case 7: return new Uint8Array(Math.min(len, 300)).fill(7); // bin 8/16
    case 8: return new Date(1_700_000_000_000 + Math.floor(r() * 1e9)); // ext (timestamp)
    case 9: return Array.from({ length: [0, 3, 16, 20][Math.floor(r() * 4)]! }, () => randomValue(r, depth + 1)); // fixarray, array16
    default: {
      const o: Record<string, unknown> = {};
      const n = [0, 2, 15, 17][Math.floor(r() * 4)]!; // fixmap, map16
      for (let i = 0; i < n; i++) o[`k${i}${'é'.repeat(i % 3)}`] = randomValue(r, depth + 1);
      return o;
    }
  }
}

describe('scanMessagePack', () => {
  it('accepts every value msgpackr writes, and refuses every strict prefix of it as malformed', () => {
    const r = rng(23);
    for (let n = 0; n < 200; n++) {
      const bytes = new Uint8Array(packr.pack({ type: 'store', id: n, data: { v: randomValue(r, 0) } }));
      expect(scanMessagePack(bytes)).toBeNull();
      for (const cut of [1, 2, Math.floor(bytes.length / 2), bytes.length - 1]) {
        if (cut <= 0 || cut >= bytes.length) continue;
        expect(() => scanMessagePack(bytes.subarray(0, cut))).toThrow(MalformedMessagePack);
      }
    }
  });

  it('counts depth from the envelope and names the field, with the envelope type and id', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 40; i++) deep = { a: deep };
    const p = scanMessagePack(new Uint8Array(packr.pack({ type: 'store', id: 7, data: { metadata: deep } })));
    expect(p).toMatchObject({ type: 'store', id: 7, rule: 'nested deeper than 32 levels of objects and arrays' });
    expect(p!.path).toBe(`data.metadata${'.a'.repeat(30)}`);
    expect(scanMessagePack(new Uint8Array(packr.pack([[[1]]])), 2)).toMatchObject({ path: '[0][0]' });
  });

  it('finds invalid UTF-8 anywhere, in keys and values, by path', () => {
    const bytes = Buffer.from(packr.pack({ type: 'x', data: { list: ['ok', 'bXXd'] } }));
    bytes[bytes.indexOf('XX')] = 0xe2; // a 3-byte lead followed by ASCII
    expect(scanMessagePack(new Uint8Array(bytes))).toMatchObject({ path: 'data.list[1]', rule: 'must be valid UTF-8', type: 'x' });
  });
});
