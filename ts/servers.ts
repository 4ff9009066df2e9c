/**
 * `createServers()`: the memory and inference servers in-process (library use).
 */
import { createEmbedder, type Embedder, type EmbedderOptions } from './embedder.js';
import { MemoryServer, type MemoryServerOptions } from './server/memory.js';
import { InferenceServer, type InferenceServerOptions } from './server/inference.js';
import type { SharedServerOptions } from './server/options.js';

export type { SharedServerOptions } from './server/options.js';

export interface CreateServersOptions extends SharedServerOptions {
  /**
   * Shared embedder: an `Embedder` you own (not closed by `close()`), or options for one
   * created here and closed by `close()` (e.g. `{ model: './all-MiniLM-L6-v2' }`). Default: hash.
   */
  embedder?: Embedder | EmbedderOptions;
  memory?: MemoryServerOptions | false;
  inference?: InferenceServerOptions | false;
}

export interface Servers<
  M extends MemoryServer | null = MemoryServer | null,
  I extends InferenceServer | null = InferenceServer | null,
> {
  /** The memory server; null when `memory: false` was given. */
  memory: M;
  /** The inference server; null when `inference: false` was given. */
  inference: I;
  /** Graceful shutdown of both (close 1001, store flushed and closed). */
  close(): Promise<void>;
}

/**
 * A server is typed as present unless the options may turn it off: with options written in
 * place (`createServers({ memory: { port: 0 } })`) `servers.memory` is a `MemoryServer`, with
 * `memory: false` it is `null`, and with options whose `memory` may be `false` it is either.
 */
type Started<O, K extends 'memory' | 'inference', S> = O extends { [P in K]: false }
  ? null
  : K extends keyof O
    ? false extends O[K]
      ? S | null
      : S
    : S;

export type ServersFor<O extends CreateServersOptions> = Servers<
  Started<O, 'memory', MemoryServer>,
  Started<O, 'inference', InferenceServer>
>;

/** Starts the memory server (default port 5000) and the inference server (5005…5014) in-process. */
// Without options O is the empty object type, so both servers are typed present.
export async function createServers<const O extends CreateServersOptions = Record<never, never>>(options?: O): Promise<ServersFor<O>>;
export async function createServers(options: CreateServersOptions = {}): Promise<Servers> {
  const { embedder: shared, memory: memOpts, inference: infOpts, ...common } = options;
  const owned = !(shared && 'embed' in shared);
  const embedder = owned ? await createEmbedder((shared as EmbedderOptions | undefined) ?? {}) : (shared as Embedder);
  let memory: MemoryServer | null = null;
  let inference: InferenceServer | null = null;
  try {
    if (memOpts !== false) {
      memory = new MemoryServer({ embedder, ...common, ...(memOpts ?? {}) });
      await memory.listen();
    }
    if (infOpts !== false) {
      // Beside a re-embedding memory server, embed with what its memories are served with until the switch.
      const follow = memory && memOpts && memOpts.reembed ? { followDataDir: memory.dataDir, ...(memOpts.previousEmbedder ? { previousEmbedder: memOpts.previousEmbedder } : {}) } : {};
      inference = new InferenceServer({ embedder, ...common, ...follow, ...(infOpts ?? {}) });
      await inference.listen();
    }
  } catch (err) {
    await memory?.close();
    await inference?.close();
    if (owned) await embedder.close?.();
    throw err;
  }
  let closing: Promise<void> | null = null;
  return {
    memory,
    inference,
    close() {
      closing ??= Promise.all([memory?.close(), inference?.close()]).then(async () => {
        if (owned) await embedder.close?.();
      });
      return closing;
    },
  };
}
