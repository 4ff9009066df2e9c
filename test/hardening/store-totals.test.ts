/**
 * #23: the store reply's `stats.total_memories` counted the namespace while `stats` without
 * a namespace counts everything. Now the reply says both: `total_memories` is global (as in
 * `stats`), `namespace_total` the namespace's count right after this store. A connection
 * whose token limits it to some namespaces does not learn the global count: its
 * `total_memories` is the sum over its own namespaces (here one, so `namespace_total`).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signJwtHs256 } from '../../ts/server/auth.js';
import { connect, type TestClient } from '../helpers/ws-client.js';
import { startMemory, type Started } from './protocol-servers.js';
import type { MemoryServer } from '../../ts/server/memory.js';

const SECRET = 'store-totals-secret';

describe('store reply totals', () => {
  let s: Started<MemoryServer>;
  let c: TestClient;
  beforeAll(async () => {
    s = await startMemory({ jwtSecret: SECRET });
    c = await connect(`${s.url}/?token=${signJwtHs256({ sub: 'admin' }, SECRET)}`);
  });
  afterAll(async () => {
    c.close();
    await s.stop();
  });

  it('single and batch replies: total_memories is global, namespace_total the namespace', async () => {
    await c.request('store', { namespace: 'a', text: 'first in a' });
    await c.request('store', { namespace: 'a', text: 'second in a' });
    const one = await c.request('store', { namespace: 'b', id: 'b1', text: 'first in b' });
    expect(one.data.stats).toEqual({ total_memories: 3, namespace_total: 1 });
    const batch = await c.request('store', { namespace: 'b', items: [{ text: 'second in b' }, { text: 'third in b' }] });
    expect(batch.data.stats).toEqual({ total_memories: 5, namespace_total: 3 });
    const again = await c.request('store', { namespace: 'b', id: 'b1', text: 'first in b' });
    expect(again.data).toMatchObject({ existing: true, stats: { total_memories: 5, namespace_total: 3 } });
    // The same count as stats without a namespace, and with one.
    expect((await c.request('stats')).data.total_memories).toBe(5);
    expect((await c.request('stats', { namespace: 'b' })).data.total_memories).toBe(3);
  });

  it('a connection limited to one namespace does not learn the global total', async () => {
    const limited = await connect(`${s.url}/?token=${signJwtHs256({ ns: ['c'] }, SECRET)}`);
    try {
      const r = await limited.request('store', { namespace: 'c', text: 'only c' });
      expect(r.status).toBe('success');
      expect(r.data.stats).toEqual({ total_memories: 1, namespace_total: 1 });
      const b = await limited.request('store', { namespace: 'c', items: [{ text: 'c two' }] });
      expect(b.data.stats).toEqual({ total_memories: 2, namespace_total: 2 });
    } finally {
      limited.close();
    }
  });
});
