/**
 * Keep-alive: a JS sweep pings each idle connection every `pingIntervalMs` and drops one
 * that has not answered (pong or any frame) within `pongTimeoutMs`. uWS's own idle timeout
 * moves in 4 s steps, too coarse for the short intervals tests and clients use.
 */
import type { Logger } from 'pino';
import type { ResolvedOptions } from '../options.js';
import type { ConnectionRegistry } from '../pubsub.js';
import { stateOf } from './connection.js';

/** Starts the sweep; clear the returned timer to stop it. */
export function startKeepAlive(
  registry: ConnectionRegistry,
  options: Pick<ResolvedOptions, 'pingIntervalMs' | 'pongTimeoutMs'>,
  logger: Logger,
): ReturnType<typeof setInterval> {
  const period = Math.max(10, Math.min(1000, Math.floor(Math.min(options.pingIntervalMs, options.pongTimeoutMs) / 4)));
  const timer = setInterval(() => sweep(registry, options, logger), period);
  timer.unref();
  return timer;
}

function sweep(registry: ConnectionRegistry, o: Pick<ResolvedOptions, 'pingIntervalMs' | 'pongTimeoutMs'>, logger: Logger): void {
  const now = performance.now();
  for (const ws of registry.sockets()) {
    const st = stateOf(ws);
    if (st.closed) continue;
    if (st.awaitingPong) {
      if (now - st.pingSentAt >= o.pongTimeoutMs) {
        logger.info({ id: st.id }, 'pong timeout: dropping connection');
        st.closed = true;
        ws.close(); // hard cut: the peer is not answering, a close handshake would not finish either
      }
    } else if (now - st.lastPingAt >= o.pingIntervalMs) {
      st.lastPingAt = now;
      st.pingSentAt = now;
      st.awaitingPong = true;
      ws.cork(() => ws.ping());
    }
  }
}
