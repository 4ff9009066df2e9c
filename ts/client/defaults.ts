/**
 * Every tunable of the client with its named default (docs/client.md). Constructor
 * options override these per client; tests pass tiny delays.
 */
import { DEFAULTS as PROTOCOL_DEFAULTS } from '../protocol/constants.js';
import type { ReconnectOptions } from './reconnect.js';
import type { HeartbeatOptions } from './heartbeat.js';

const c = PROTOCOL_DEFAULTS.client;
const p = PROTOCOL_DEFAULTS.ports;

const fixedEvery5s: ReconnectOptions = {
  enabled: true,
  initialDelayMs: c.reconnectIntervalMs,
  factor: 1,
  maxDelayMs: c.reconnectIntervalMs,
  maxAttempts: c.reconnectAttempts,
  jitter: 0.1,
};

export const DEFAULTS = {
  urls: {
    memory: `ws://localhost:${p.memory}`,
    inference: `ws://localhost:${p.inference}`,
    control: `ws://localhost:${p.control}/ws`,
  },
  /** Per request, from the call until the reply (time spent queued included). */
  requestTimeoutMs: c.requestTimeoutMs as number,
  /** Requests held while disconnected; when full the oldest is rejected with `queue_full`. */
  maxQueued: c.maxQueuedWhileDisconnected as number,
  /** close() waits this long for the close handshake, then cuts the socket. */
  closeTimeoutMs: 3_000,
  /** Send MessagePack binary frames instead of JSON text. */
  binary: false,
  reconnect: {
    /** Memory and inference: every 5 s, 5 tries. */
    memory: fixedEvery5s,
    inference: fixedEvery5s,
    /** Control center: from 3 s doubling, capped at 60 s, 10 tries. */
    control: {
      enabled: true,
      initialDelayMs: c.controlReconnectInitialMs,
      factor: 2,
      maxDelayMs: c.controlReconnectMaxMs,
      maxAttempts: c.controlReconnectAttempts,
      jitter: 0.1,
    } as ReconnectOptions,
  },
  /**
   * Dead-peer detection: after `intervalMs` without any incoming frame the client sends a
   * cheap probe (`stats`); no frame within `timeoutMs` more → the socket is dropped and
   * reconnected. The control center is probe-less (status arrives every 2 s) and off by default.
   */
  heartbeat: {
    memory: { enabled: true, intervalMs: 30_000, timeoutMs: 10_000 } as HeartbeatOptions,
    inference: { enabled: true, intervalMs: 30_000, timeoutMs: 10_000 } as HeartbeatOptions,
    control: { enabled: false, intervalMs: 10_000, timeoutMs: 5_000 } as HeartbeatOptions,
  },
  /** Highest event `seq`s remembered per namespace to drop a duplicate after a resubscribe replay. */
  seenEventWindow: 4096,
} as const;
