/**
 * Comparing cluster members: every memory of some namespaces read through `list` (with
 * embeddings), sorted by id, and a sha256 over all of it — equal digests mean equal content
 * (text, metadata, significance, timestamp, expiry, associations and vectors).
 */
import { createHash } from 'node:crypto';
import type { TestClient } from './ws-client.js';

export interface Listed {
  id: string;
  text: string;
  metadata: unknown;
  significance: number;
  timestamp: string;
  associations: string[];
  expires_at?: string;
  embedding?: number[];
}

export async function listAll(c: TestClient, namespace: string): Promise<Listed[]> {
  const out: Listed[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 10_000; page++) {
    const r: any = await c.request('list', { namespace, limit: 1000, include_embeddings: true, ...(cursor !== null ? { cursor } : {}) });
    if (r.status !== 'success') throw new Error(`list failed: ${JSON.stringify(r)}`);
    out.push(...(r.data.memories as Listed[]));
    cursor = r.data.next_cursor;
    if (cursor === null) break;
  }
  return out.sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
}

export async function contentDigest(c: TestClient, namespaces: string[]): Promise<{ digest: string; count: number; memories: Listed[] }> {
  const h = createHash('sha256');
  const all: Listed[] = [];
  for (const ns of namespaces) {
    const rows = await listAll(c, ns);
    for (const m of rows) {
      const { id, text, metadata, significance, timestamp, associations, expires_at, embedding } = m;
      h.update(JSON.stringify([ns, id, text, metadata, significance, timestamp, associations, expires_at ?? null, embedding ?? null]));
    }
    all.push(...rows);
  }
  return { digest: h.digest('hex'), count: all.length, memories: all };
}
