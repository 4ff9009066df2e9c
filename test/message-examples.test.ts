/**
 * Requests written as existing clients write them (pretty-printed JSON, a client
 * `timestamp`, no `id`, empty `config` / `context`; docs/protocol.md "Envelope"), sent
 * verbatim, get success replies of the right shape.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServers, type Servers } from '../ts/servers.js';
import { connect, silentLogger, type TestClient } from './helpers/ws-client.js';

const STORE = `{
    "type": "store",
    "timestamp": "2025-02-10T02:48:49.000Z",
    "data": {
        "text": "message content",
        "metadata": {
            "type": "user",
            "context": {}
        }
    }
}`;
const RETRIEVE = `{
    "type": "retrieve",
    "timestamp": "2025-02-10T02:48:49.000Z",
    "data": {
        "count": 5,
        "min_significance": 0.7
    }
}`;
const EMBEDDINGS = `{
    "type": "embeddings",
    "timestamp": "2025-02-10T02:48:49.000Z",
    "data": {
        "text": "content to embed",
        "config": {}
    }
}`;
const PROCESS = `{
    "type": "process",
    "timestamp": "2025-02-10T02:48:49.000Z",
    "data": {
        "text": "input text",
        "context": []
    }
}`;

describe('client message examples, verbatim', () => {
  let servers: Servers;
  let dir: string;
  let mem: TestClient;
  let inf: TestClient;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'memsrv-examples-'));
    servers = await createServers({
      host: '127.0.0.1',
      logger: silentLogger,
      printListening: false,
      memory: { port: 0, dataDir: dir },
      inference: { port: 0, portRange: 0 },
    });
    mem = await connect(`ws://127.0.0.1:${servers.memory!.port}`);
    inf = await connect(`ws://127.0.0.1:${servers.inference!.port}/ws`);
  });
  afterAll(async () => {
    mem.close();
    inf.close();
    await servers.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('store (metadata type/context)', async () => {
    mem.send(STORE);
    const r = await mem.waitFor((m) => m.type === 'store');
    expect(r).toMatchObject({ status: 'success', type: 'store', data: { existing: false, stats: { total_memories: 1 } } });
    expect(typeof r.data.id).toBe('string');
    // First memory: novelty = surprise = 1, importance 0.5 → 0.5 + 0.3 + 0.1.
    expect(r.data.significance).toBeCloseTo(0.9, 5);
  });

  it('retrieve count 5 min_significance 0.7', async () => {
    mem.send(RETRIEVE);
    const r = await mem.waitFor((m) => m.type === 'retrieve');
    expect(r.status).toBe('success');
    expect(Array.isArray(r.data.memories)).toBe(true);
    expect(r.data.memories.length).toBeLessThanOrEqual(5);
    for (const m of r.data.memories) {
      expect(m.significance).toBeGreaterThanOrEqual(0.7);
      expect(m).toMatchObject({ text: 'message content', metadata: { type: 'user', context: {} } });
    }
  });

  it('embeddings', async () => {
    inf.send(EMBEDDINGS);
    const r = await inf.waitFor((m) => m.type === 'embeddings');
    expect(r).toMatchObject({ status: 'success', data: { dims: 384, model: 'hash-v1' } });
    expect(r.data.embedding).toHaveLength(384);
  });

  it('process', async () => {
    inf.send(PROCESS);
    const r = await inf.waitFor((m) => m.type === 'process');
    expect(r.status).toBe('success');
    expect(r.data.embedding).toHaveLength(384);
    expect(r.data.significance).toBe(0.5);
    expect(r.data.chunks).toEqual([{ text: 'input text', start: 0, end: 10, significance: 0.5 }]);
  });
});
