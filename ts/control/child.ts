/**
 * Entry point of a supervised child process (forked by ChildComponent with an
 * IPC channel, `serialization: 'advanced'`). The configuration arrives over IPC
 * (`{ type: 'start', … }`) so that secrets never appear in argv or `ps`; the
 * child starts the memory or inference server in-process, reports
 * `{ type: 'ready', port }`, then a metric snapshot every `metricsIntervalMs`,
 * and shuts down gracefully (close 1001, store flushed) on SIGTERM or `{ type: 'stop' }`.
 */
import { pino, destination } from 'pino';
import { createEmbedder } from '../embedder.js';
import { createMemoryServer, type MemoryServer, type MemoryServerOptions } from '../server/memory.js';
import { createInferenceServer, type InferenceServer, type InferenceServerOptions } from '../server/inference.js';
import { inferenceSnapshot, instrumentLatency, memorySnapshot } from './instrument.js';
import type { ChildStartMessage, ChildToParent, ParentToChild, ServerSnapshot } from './types.js';

let server: MemoryServer | InferenceServer | null = null;
let metricsTimer: NodeJS.Timeout | null = null;
let shuttingDown = false;

function send(msg: ChildToParent): void {
  if (process.connected) process.send?.(msg);
}

async function start(msg: ChildStartMessage): Promise<void> {
  const logger = pino({ level: msg.logLevel ?? 'info', base: { pid: process.pid, component: msg.component } }, destination({ dest: 2, sync: true }));
  const embedder = await createEmbedder({ ...(msg.embedder ?? {}), log: (m) => logger.warn(m) });
  let snapshot: () => ServerSnapshot;
  if (msg.component === 'memory') {
    const s = await createMemoryServer({ ...(msg.options as MemoryServerOptions), embedder, logger });
    server = s;
    snapshot = () => memorySnapshot(s);
  } else {
    const s = await createInferenceServer({ ...(msg.options as InferenceServerOptions), embedder, logger });
    server = s;
    snapshot = () => inferenceSnapshot(s);
  }
  instrumentLatency(server.ws);
  metricsTimer = setInterval(() => send({ type: 'metrics', snapshot: snapshot() }), msg.metricsIntervalMs);
  send({ type: 'metrics', snapshot: snapshot() });
  send({ type: 'ready', port: server.port, pid: process.pid });
  metricsTimer.unref();
  // A shutdown requested while we were starting.
  if (shuttingDown) await shutdown(0);
}

async function shutdown(code: number): Promise<void> {
  if (shuttingDown && server === null) return;
  shuttingDown = true;
  if (metricsTimer) clearInterval(metricsTimer);
  metricsTimer = null;
  const s = server;
  server = null;
  if (!s) {
    // Not started yet (or start in flight: start() calls us again once it has a server).
    if (!starting) process.exit(code);
    return;
  }
  send({ type: 'stopping' });
  try {
    await s.close();
  } catch (err) {
    process.stderr.write(`shutdown failed: ${(err as Error).stack ?? String(err)}\n`);
    code = code || 1;
  }
  process.exit(code);
}

let starting = false;
process.on('message', (raw: unknown) => {
  const msg = raw as ParentToChild;
  if (msg.type === 'start') {
    if (starting || server) return;
    starting = true;
    start(msg)
      .catch((err: unknown) => {
        const message = err instanceof Error ? err.message : String(err);
        process.stderr.write(`start failed: ${message}\n`);
        send({ type: 'fatal', message });
        // Let the IPC message flush before exiting.
        setTimeout(() => process.exit(1), 50);
      })
      .finally(() => {
        starting = false;
      });
  } else if (msg.type === 'stop') {
    void shutdown(0);
  } else if (msg.type === 'ping') {
    // Answered from this event loop: a stopped or blocked process does not answer.
    send({ type: 'pong', n: msg.n });
  } else if (msg.type === 'compact') {
    const s = server;
    if (!s || !('compact' in s)) {
      send({ type: 'compacted', id: msg.id, error: 'the memory server is not running' });
      return;
    }
    s.compact().then(
      (compaction) => send({ type: 'compacted', id: msg.id, compaction }),
      (err: unknown) => send({ type: 'compacted', id: msg.id, error: err instanceof Error ? err.message : String(err) }),
    );
  }
});
process.on('SIGTERM', () => void shutdown(0));
process.on('SIGINT', () => void shutdown(0));
// Orphaned (the supervisor died): shut down rather than hold the port and the data directory.
process.on('disconnect', () => void shutdown(0));
