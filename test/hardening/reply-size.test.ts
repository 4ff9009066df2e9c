/**
 * #23 item 1: replies had no size bound. A `list` of memories of 64 KiB texts made of
 * control characters (6 bytes each in JSON) was one reply of 393 KB per memory. Now `list`
 * and `retrieve` stop at the reply byte budget (`maxReplyBytes`, default 1 MiB): `list`
 * returns a cursor to continue, `retrieve` the best memories that fit and `truncated: true`.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULTS } from '../../ts/protocol/index.js';
import { MEMORY_LIMITS } from '../../ts/protocol/memory.js';
import { MemoryServer, type MemoryServerOptions } from '../../ts/server/memory.js';
import { ensureBuilt, root } from '../helpers/build-dist.js';
import { connect, silentLogger, until, type TestClient } from '../helpers/ws-client.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function start(options: MemoryServerOptions = {}): Promise<{ server: MemoryServer; c: TestClient; sizes: Map<unknown, number> }> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'memsrv-reply-'));
  dirs.push(dataDir);
  const server = new MemoryServer({ dataDir, host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false, ...options });
  const { port } = await server.listen();
  const c = await connect(`ws://127.0.0.1:${port}`, { maxPayload: 1 << 30 });
  // Byte size of every reply frame, by request id.
  const sizes = new Map<unknown, number>();
  c.ws.on('message', (raw: Buffer, isBinary: boolean) => {
    const m = JSON.parse(isBinary ? '{}' : raw.toString('utf8')) as { id?: unknown };
    sizes.set(m.id, raw.length);
  });
  return { server, c, sizes };
}

/** 64 KiB of U+0001: the largest text, and 6 bytes per character in JSON. */
const worstText = (i: number): string => `${i}:`.padEnd(MEMORY_LIMITS.maxTextBytes, '\u0001');
/** Upper bound of one such memory in a JSON reply. */
const worstMemoryJson = 6 * MEMORY_LIMITS.maxTextBytes + 2_000;

async function storeWorst(c: TestClient, n: number): Promise<string[]> {
  const ids: string[] = [];
  // MessagePack carries the texts raw (64 KiB each): 12 per frame stays under 1 MiB.
  for (let i = 0; i < n; i += 12) {
    const items = Array.from({ length: Math.min(12, n - i) }, (_, j) => ({ id: `m${String(i + j).padStart(3, '0')}`, text: worstText(i + j) }));
    const r = await c.request('store', { items }, { binary: true });
    expect(r.status).toBe('success');
    ids.push(...items.map((x) => x.id));
  }
  return ids;
}

describe('reply size bound', () => {
  it('list pages by bytes: each reply stays within the budget, the cursor walks all memories once', async () => {
    const { server, c, sizes } = await start();
    try {
      const ids = await storeWorst(c, 24); // ~9.4 MB of JSON in all
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const id: string = `p${pages}`;
        const r: { status: string; data: { memories: Array<{ id: string; text: string }>; next_cursor: string | null } } = await c.request('list', { limit: 1000, ...(cursor === null ? {} : { cursor }) }, { id });
        expect(r.status).toBe('success');
        expect(r.data.memories.length).toBeGreaterThan(0);
        expect(sizes.get(id)).toBeLessThanOrEqual(DEFAULTS.maxReplyBytes + worstMemoryJson);
        for (const m of r.data.memories) {
          expect(m.text).toBe(worstText(Number(m.id.slice(1))));
          seen.push(m.id);
        }
        cursor = r.data.next_cursor;
        pages++;
      } while (cursor !== null && pages < 50);
      expect(seen).toEqual(ids);
      expect(pages).toBeGreaterThan(2);
    } finally {
      c.close();
      await server.close();
    }
  });

  it('retrieve returns the best memories that fit and truncated: true', async () => {
    const { server, c, sizes } = await start();
    try {
      await storeWorst(c, 24);
      for (const data of [{ count: 1000 }, { count: 1000, query: 'anything' }]) {
        const id = `q${'query' in data ? 1 : 0}`;
        const r = await c.request('retrieve', data, { id });
        expect(r.status).toBe('success');
        expect(r.data.truncated).toBe(true);
        expect(r.data.memories.length).toBeGreaterThan(0);
        expect(r.data.memories.length).toBeLessThan(24);
        expect(sizes.get(id)).toBeLessThanOrEqual(DEFAULTS.maxReplyBytes + worstMemoryJson);
        // The best ones: the same as the head of an unbounded ranking of a count that fits.
        const few = await c.request('retrieve', { ...data, count: r.data.memories.length });
        expect(few.data.truncated).toBeUndefined();
        expect(few.data.memories.map((m: { id: string }) => m.id)).toEqual(r.data.memories.map((m: { id: string }) => m.id));
      }
    } finally {
      c.close();
      await server.close();
    }
  });

  it('embeddings count against the budget, and one memory over the budget is still sent', async () => {
    const { server, c, sizes } = await start({ maxReplyBytes: 32 * 1024 });
    try {
      const items = Array.from({ length: 40 }, (_, i) => ({ id: `e${String(i).padStart(2, '0')}`, text: `short memory ${i}` }));
      expect((await c.request('store', { items })).status).toBe('success');
      const r = await c.request('list', { limit: 1000, include_embeddings: true }, { id: 'emb' });
      expect(r.data.memories.length).toBeGreaterThan(1);
      expect(r.data.memories.length).toBeLessThan(40);
      expect(r.data.next_cursor).not.toBeNull();
      expect(sizes.get('emb')).toBeLessThanOrEqual(32 * 1024 + 16 * 1024);
      const t = await c.request('retrieve', { count: 40, include_embeddings: true });
      expect(t.data.truncated).toBe(true);
      expect(t.data.memories.length).toBe(r.data.memories.length);

      await storeWorst(c, 2); // each alone is ~393 KB of JSON, over the 32 KiB budget
      const big = await c.request('list', { limit: 1000, cursor: r.data.next_cursor });
      let cursor = big.data.next_cursor as string | null;
      const rest = [...big.data.memories];
      while (cursor !== null && rest.length < 100) {
        const p = await c.request('list', { limit: 1000, cursor });
        expect(p.data.memories.length).toBeGreaterThan(0);
        rest.push(...p.data.memories);
        cursor = p.data.next_cursor;
      }
      expect(rest.length).toBe(40 - r.data.memories.length + 2);
      expect(rest.slice(-2).map((m: { id: string }) => m.id)).toEqual(['m000', 'm001']);
    } finally {
      c.close();
      await server.close();
    }
  });

  it('small pages are unchanged: limit and next_cursor as before', async () => {
    const { server, c } = await start();
    try {
      const items = Array.from({ length: 5 }, (_, i) => ({ text: `memory ${i}` }));
      await c.request('store', { items });
      const a = await c.request('list', { limit: 2 });
      expect(a.data.memories).toHaveLength(2);
      const b = await c.request('list', { limit: 3, cursor: a.data.next_cursor });
      expect(b.data.memories).toHaveLength(3);
      expect(b.data.next_cursor).toBeNull();
      const all = await c.request('retrieve', { count: 5 });
      expect(all.data.memories).toHaveLength(5);
      expect(all.data.truncated).toBeUndefined();
    } finally {
      c.close();
      await server.close();
    }
  });
});

describe('--max-reply-bytes', () => {
  it('reaches the memory server the CLI supervises', async () => {
    ensureBuilt();
    const dataDir = mkdtempSync(path.join(tmpdir(), 'memsrv-reply-cli-'));
    dirs.push(dataDir);
    const args = ['--host', '127.0.0.1', '--port', '0', '--no-inference', '--control-port', '0', '--data-dir', dataDir, '--log-level', 'silent', '--max-reply-bytes', '4096'];
    const child = spawn(process.execPath, [path.join(root, 'dist/cli/main.js'), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      await until(() => /memory server\s+ws:\/\/[^\s]+:\d+/.test(out), 20_000);
      const port = Number(/memory server\s+ws:\/\/[^\s]+:(\d+)/.exec(out)![1]);
      const c = await connect(`ws://127.0.0.1:${port}`);
      const items = Array.from({ length: 10 }, (_, i) => ({ text: `${i} ${'y'.repeat(1000)}` }));
      expect((await c.request('store', { items })).status).toBe('success');
      const page = await c.request('list', { limit: 10 });
      // ~1.2 KB of JSON each: a 4 KiB budget stops the page at three or four.
      expect(page.data.memories.length).toBeGreaterThan(1);
      expect(page.data.memories.length).toBeLessThan(5);
      expect(page.data.next_cursor).not.toBeNull();
      c.close();
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
    }
  });
});
