/**
 * `createServers()`: the memory and inference servers in-process (library use).
 */
import type { Embedder } from './embedder.js';
import { HashEmbedder } from './embedder.js';
import { MemoryServer, type MemoryServerOptions } from './server/memory.js';
import { InferenceServer, type InferenceServerOptions } from './server/inference.js';
import type { WsServerOptions } from './server/ws-server.js';

/** Options shared by both servers (each can be overridden per server). */
export type SharedServerOptions = Pick<
  WsServerOptions,
  | 'host'
  | 'origins'
  | 'token'
  | 'jwtSecret'
  | 'tlsCert'
  | 'tlsKey'
  | 'tlsPassphrase'
  | 'compression'
  | 'logger'
  | 'logLevel'
  | 'maxConnections'
  | 'maxConnectionsPerIp'
  | 'maxFrameBytes'
  | 'rateLimit'
  | 'pingIntervalMs'
  | 'pongTimeoutMs'
  | 'closeTimeoutMs'
  | 'printListening'
>;

export interface CreateServersOptions extends SharedServerOptions {
  /** Shared embedder (default: hash). */
  embedder?: Embedder;
  memory?: MemoryServerOptions | false;
  inference?: InferenceServerOptions | false;
}

export interface Servers {
  memory: MemoryServer | null;
  inference: InferenceServer | null;
  /** Graceful shutdown of both (close 1001, store flushed and closed). */
  close(): Promise<void>;
}

/** Starts the memory server (default port 5000) and the inference server (5005…5014) in-process. */
export async function createServers(options: CreateServersOptions = {}): Promise<Servers> {
  const { embedder: shared, memory: memOpts, inference: infOpts, ...common } = options;
  const embedder = shared ?? new HashEmbedder();
  let memory: MemoryServer | null = null;
  let inference: InferenceServer | null = null;
  try {
    if (memOpts !== false) {
      memory = new MemoryServer({ embedder, ...common, ...(memOpts ?? {}) });
      await memory.listen();
    }
    if (infOpts !== false) {
      inference = new InferenceServer({ embedder, ...common, ...(infOpts ?? {}) });
      await inference.listen();
    }
  } catch (err) {
    await memory?.close();
    await inference?.close();
    throw err;
  }
  let closing: Promise<void> | null = null;
  return {
    memory,
    inference,
    close() {
      closing ??= Promise.all([memory?.close(), inference?.close()]).then(() => undefined);
      return closing;
    },
  };
}
