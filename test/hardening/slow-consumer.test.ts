/**
 * #23 item 1, the output-buffer half: a client that sends requests and never reads its
 * replies is closed once its send buffer passes maxBufferedBytes (1013, counted and logged),
 * with the close frame queued behind the buffered replies; every reply it was sent is
 * bounded; other clients are served meanwhile. Before: one unbounded reply took the buffer
 * to hundreds of MB, and the close frame was dropped (uWS drops any send over its
 * maxBackpressure, which was the same bound), so the client never learnt why it was cut.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLOSE_CODES, DEFAULTS } from '../../ts/protocol/index.js';
import { MEMORY_LIMITS } from '../../ts/protocol/memory.js';
import { MemoryServer } from '../../ts/server/memory.js';
import { connect, silentLogger, until } from '../helpers/ws-client.js';
import { closeCode, frame, rawConnect } from './raw-ws.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('slow consumer', () => {
  it('a client that never reads is closed with 1013 once its buffer passes the limit; others are served', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'memsrv-slow-'));
    dirs.push(dataDir);
    const server = new MemoryServer({ dataDir, host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false, rateLimit: false });
    const { port } = await server.listen();
    const other = await connect(`ws://127.0.0.1:${port}`);
    try {
      // 24 memories of 64 KiB of control characters: ~9.4 MB as one JSON list before the fix.
      const text = (i: number): string => `${i}:`.padEnd(MEMORY_LIMITS.maxTextBytes, '\u0001');
      for (let i = 0; i < 24; i += 12) {
        const items = Array.from({ length: 12 }, (_, j) => ({ text: text(i + j) }));
        expect((await other.request('store', { items }, { binary: true })).status).toBe('success');
      }

      const slow = await rawConnect(port, { read: false });
      // Enough list requests to fill the kernel's socket buffers and then ours.
      for (let i = 0; i < 200; i++) slow.write(frame(1, JSON.stringify({ type: 'list', id: i, data: { limit: 1000 } })));
      // Served meanwhile.
      expect((await other.request('stats')).status).toBe('success');
      await until(() => server.ws.metrics.slowConsumersClosed === 1, 20_000);
      expect(server.ws.connectionCount()).toBe(1);
      expect((await other.request('list', { limit: 1 })).status).toBe('success');

      // Reading now, the client finds bounded replies and then the close frame.
      slow.socket.resume();
      await slow.ended;
      const data = slow.frames.filter((f) => f.opcode === 1);
      expect(data.length).toBeGreaterThan(0);
      for (const f of data) expect(f.payload.length).toBeLessThanOrEqual(DEFAULTS.maxReplyBytes + 6 * MEMORY_LIMITS.maxTextBytes + 2_000);
      const close = slow.frames.find((f) => f.opcode === 8);
      expect(close && closeCode(close)).toBe(CLOSE_CODES.TRY_AGAIN_LATER);
      expect(close!.payload.subarray(2).toString()).toBe('Send buffer full');
      expect(server.ws.metrics.slowConsumersClosed).toBe(1);
    } finally {
      other.close();
      await server.close();
    }
  });
});
