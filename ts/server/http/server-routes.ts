/**
 * The HTTP routes each server adds beside its WebSocket paths: the memory server its API
 * (`/v1/…`, `/openapi.json`), the inference server OpenAI's embeddings API (`/v1/embeddings`,
 * `/v1/models`), both servers `/healthz`, `/readyz` and `/metrics`. Kept apart
 * from the servers' files so that more routes (OpenAI-compatible, MCP) join here.
 */
import { inferenceSnapshot, memorySnapshot } from '../../control/instrument.js';
import type { InferenceServer } from '../inference.js';
import type { MemoryServer } from '../memory.js';
import { addMemoryApiRoutes } from './memory-api.js';
import { memoryOpenApiDocument } from './openapi.js';
import { addOperationalRoutes } from './operational.js';
import { addOpenAiRoutes } from '../openai.js';

export function addMemoryServerRoutes(server: MemoryServer): void {
  addMemoryApiRoutes(server);
  let openapi: string | null = null;
  server.ws.http(
    'get',
    '/openapi.json',
    () => ({ headers: { 'Content-Type': 'application/json' }, body: (openapi ??= JSON.stringify(memoryOpenApiDocument())) }),
    { public: true },
  );
  addOperationalRoutes({
    ws: server.ws,
    component: 'memory',
    readiness: () => ({ store: storeOpen(server), embedder: server.embedder.dims > 0 }),
    snapshot: () => memorySnapshot(server),
  });
}

export function addInferenceServerRoutes(server: InferenceServer): void {
  addOpenAiRoutes(server);
  addOperationalRoutes({
    ws: server.ws,
    component: 'inference',
    readiness: () => ({ embedder: server.embedder.dims > 0 }),
    snapshot: () => inferenceSnapshot(server),
  });
}

function storeOpen(server: MemoryServer): boolean {
  try {
    return server.store !== null;
  } catch {
    return false; // `store` throws `unavailable` while the store is not open
  }
}
