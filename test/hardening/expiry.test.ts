/**
 * #23: a memory whose TTL passes is removed like a delete — a delete record in the log
 * (reclaimed by compaction) and a `memory_removed` event with `reason: "expired"`.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryServer } from '../../ts/server/memory.js';
import { connect, silentLogger } from '../helpers/ws-client.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function start(dataDir: string): Promise<{ server: MemoryServer; url: string }> {
  const server = new MemoryServer({ dataDir, host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false, closeTimeoutMs: 2_000 });
  const info = await server.listen();
  return { server, url: `ws://127.0.0.1:${info.port}` };
}

const logText = (dir: string): string =>
  readdirSync(dir)
    .filter((f) => f.startsWith('wal-'))
    .map((f) => readFileSync(path.join(dir, f)).toString('latin1'))
    .join('');

describe('TTL expiry', () => {
  it('emits memory_removed with reason "expired", records the deletion, and compaction reclaims it', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'memsrv-expiry-'));
    dirs.push(dir);
    const { server, url } = await start(dir);
    const c = await connect(url);
    const sub = await connect(url);
    try {
      await sub.request('subscribe', { namespace: 'ttl' });
      const short = await c.request('store', { namespace: 'ttl', id: 'short', text: 'expiring-text-0001 lives one second', ttl_s: 1 });
      await c.request('store', { namespace: 'ttl', id: 'stays', text: 'no ttl' });
      await c.request('store', { namespace: 'ttl', id: 'later', text: 'lives an hour', ttl_s: 3600 });
      // A delete says why, too.
      await c.request('store', { namespace: 'ttl', id: 'del', text: 'deleted by hand' });
      await c.request('delete', { namespace: 'ttl', id: 'del' });

      // Expiry after 1 s, swept within 250 ms of it; 6 s is a generous bound on a busy machine.
      const ev = await sub.waitFor((m) => m.type === 'memory_removed' && m.data.memory.id === 'short', 6_000);
      expect(ev.data).toMatchObject({ memory: { id: 'short', namespace: 'ttl' }, reason: 'expired' });
      const deleted = await sub.waitFor((m) => m.type === 'memory_removed' && m.data.memory.id === 'del');
      expect(deleted.data.reason).toBe('deleted');
      expect(ev.data.seq).toBeGreaterThan(deleted.data.seq);
      expect(Date.now()).toBeGreaterThanOrEqual(Date.parse(short.data.timestamp) + 1000);
      expect((await c.request('get', { namespace: 'ttl', id: 'short' })).code).toBe('not_found');
      const list = await c.request('list', { namespace: 'ttl' });
      expect(list.data.memories.map((m: { id: string }) => m.id)).toEqual(['stays', 'later']);
      // Only the expired one: no event for the others.
      expect(sub.messages.filter((m: any) => m.type === 'memory_removed').map((m: any) => m.data.memory.id)).toEqual(['del', 'short']);

      // A replayed subscription sees it too.
      const late = await connect(url);
      try {
        await late.request('subscribe', { namespace: 'ttl', since_seq: ev.data.seq - 1, events: ['memory_removed'] });
        expect(late.messages.find((m: any) => m.type === 'memory_removed')).toMatchObject({ data: { reason: 'expired', seq: ev.data.seq } });
      } finally {
        late.close();
      }

      expect(logText(dir)).toContain('expiring-text-0001');
      await server.compact();
      expect(logText(dir)).not.toContain('expiring-text-0001');
    } finally {
      c.close();
      sub.close();
      await server.close();
    }
    // The deletion is in the log: after a restart the memory is gone and its seq not reused.
    const again = await start(dir);
    const c2 = await connect(again.url);
    try {
      expect((await c2.request('list', { namespace: 'ttl' })).data.memories.map((m: { id: string }) => m.id)).toEqual(['stays', 'later']);
    } finally {
      c2.close();
      await again.server.close();
    }
  }, 30_000);
});
