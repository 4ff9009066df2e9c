/**
 * `memory-server mcp`: the MCP server over stdio (docs/mcp.md), for an MCP host (a desktop
 * assistant, an IDE) that starts it as a child process. With a data directory of its own
 * (the `start` options) it serves the memory server's command handlers in this process,
 * without listening on any port; with `--url` it is a client of a running memory server.
 * stdout carries MCP messages only: logs go to stderr.
 */
import { homedir } from 'node:os';
import path from 'node:path';
import { pino, destination, type Logger } from 'pino';
import WebSocket from 'ws';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import type { Embedder } from '../embedder.js';
import { MemoryServer, type MemoryServerOptions } from '../server/memory.js';
import { MemoryClient } from '../client/memory.js';
import { clientBackend, commandBackend, type MemoryBackend } from '../mcp/backend.js';
import { createMemoryMcpServer } from '../mcp/server.js';
import type { CliConfig } from './config.js';

/** How long `--url` waits for the first connection before giving up with an error. */
const CONNECT_TIMEOUT_MS = 10_000;

export interface McpCommandParts {
  /** The embedder of the `start` options (created only for a data directory of its own). */
  embedder: () => Promise<Embedder>;
  /** Memory server options of the `start` options. */
  memory: MemoryServerOptions;
}

/** What serves the tools, and how to let go of it once the host closes the session. */
interface Served {
  backend: MemoryBackend;
  close(): Promise<void>;
}

/**
 * `~/…` as the home directory: MCP hosts start the command without a shell, so the
 * `~/.memory-server` a user writes in the host's config would otherwise be a directory named `~`.
 */
export function expandHome(dir: string): string {
  return dir === '~' || dir.startsWith('~/') ? path.join(homedir(), dir.slice(1)) : dir;
}

async function ownStore(cfg: CliConfig, parts: McpCommandParts, logger: Logger): Promise<Served> {
  const embedder = await parts.embedder();
  const { port: _port, ...memory } = parts.memory;
  const server = new MemoryServer({
    ...memory,
    dataDir: expandHome(memory.dataDir ?? cfg.dataDir),
    embedder,
    logger,
    ...(cfg.maxReplyBytes ? { maxReplyBytes: cfg.maxReplyBytes } : {}),
  });
  try {
    await server.open();
  } catch (e) {
    await embedder.close?.();
    const locked = /is locked/.test((e as Error).message);
    throw new Error(`${(e as Error).message}${locked ? '; to use a running server, pass --url ws://HOST:PORT' : ''}`, { cause: e });
  }
  // Stdio is the host's own child process: no auth, every namespace.
  return {
    backend: commandBackend(server.commands, { method: 'none' }, logger),
    async close() {
      await server.close();
      await embedder.close?.();
    },
  };
}

async function remoteServer(cfg: CliConfig, url: string): Promise<Served> {
  const client = new MemoryClient({
    url,
    WebSocket,
    autoConnect: false,
    ...(cfg.token ? { wsOptions: { headers: { Authorization: `Bearer ${cfg.token}` } } } : {}),
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      client.connect(),
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`no connection to ${url} within ${CONNECT_TIMEOUT_MS / 1000} s`)), CONNECT_TIMEOUT_MS);
      }),
    ]);
  } catch (e) {
    await client.close().catch(() => undefined);
    throw new Error(`cannot connect to ${url}: ${(e as Error).message}`, { cause: e });
  } finally {
    clearTimeout(timer);
  }
  return { backend: clientBackend(client), close: () => client.close() };
}

/** Tracks the commands in flight, so that closing waits for them (a store is answered, not cut). */
function tracked(backend: MemoryBackend): MemoryBackend & { idle(): Promise<void> } {
  const inFlight = new Set<Promise<unknown>>();
  return {
    call(command, data) {
      const p = backend.call(command, data);
      inFlight.add(p);
      const done = (): void => void inFlight.delete(p);
      p.then(done, done);
      return p;
    },
    async idle() {
      while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
    },
  };
}

/** Runs the MCP server on stdin/stdout until the host closes stdin (or a signal), then exits 0. */
export async function runMcp(cfg: CliConfig, parts: McpCommandParts): Promise<void> {
  // A stray console.log from any library would corrupt the MCP stream: send it to stderr.
  console.log = console.error;
  console.info = console.error;
  console.debug = console.error;
  const logger = pino({ level: cfg.logLevel, base: { pid: process.pid } }, destination({ dest: 2, sync: true }));
  const served = cfg.url !== undefined ? await remoteServer(cfg, cfg.url) : await ownStore(cfg, parts, logger);
  const backend = tracked(served.backend);
  const mcp = createMemoryMcpServer(backend);
  const transport = new StdioServerTransport();
  let closing: Promise<void> | null = null;
  const shutdown = (why: string): Promise<void> =>
    (closing ??= (async () => {
      logger.info({ why }, 'mcp: closing');
      await backend.idle();
      await mcp.close().catch(() => undefined);
      await served.close();
      logger.flush?.();
      process.exit(0);
    })());
  mcp.server.onclose = () => void shutdown('transport closed');
  process.stdin.once('end', () => void shutdown('stdin closed'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  await mcp.connect(transport);
  logger.info({ source: cfg.url ?? path.resolve(expandHome(cfg.dataDir)) }, 'mcp: serving on stdio');
}
