/**
 * Control center internals: the metric snapshot a server reports, the IPC messages between
 * the supervisor and its forked children, and the ComponentHandle both kinds of component
 * implement. The status message itself is a wire type: protocol/control.ts.
 */

import type { EmbedderOptions } from '../embedder.js';
import type { ClusterStatus, CompactionSummary, ComponentName, ComponentStatus } from '../protocol/control.js';
import type { ReembedProgress } from '../protocol/memory.js';

export {
  COMPONENT_NAMES,
  type ComponentName,
  type ComponentState,
  type ComponentStatus,
} from '../protocol/control.js';

/** Upper bounds (ms) of the latency histogram buckets reported per command. */
export const LATENCY_BUCKETS_MS: readonly number[] = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500];

export interface CommandCounters {
  count: number;
  errors: number;
  latencyMsSum: number;
  /** Non-cumulative counts per LATENCY_BUCKETS_MS bound, plus one overflow slot (+Inf). */
  buckets: number[];
}

/** What a server reports about itself (over IPC every second, or read in-process). */
export interface ServerSnapshot {
  /** Date.now() when taken. */
  at: number;
  pid: number;
  port: number;
  connections: number;
  queriesPerSecond: number;
  /** Replies answered so far and their summed latency (for windowed averages). */
  replies: number;
  latencyMsSum: number;
  /** Memory server only. */
  totalMemories?: number;
  totalAssociations?: number;
  storageBytes?: number;
  storagePath?: string;
  /** Memory server only: a re-embedding under way. */
  reembed?: ReembedProgress;
  /** Memory server in cluster mode only: its view of the cluster. */
  cluster?: ClusterStatus;
  commands: Record<string, CommandCounters>;
  /** process.cpuUsage() of the reporting process (µs, cumulative). */
  cpuUserUs: number;
  cpuSystemUs: number;
  rssBytes: number;
}

/** Configuration sent down to a forked child (never in argv: it may carry secrets). */
export interface ChildStartMessage {
  type: 'start';
  component: ComponentName;
  /** MemoryServerOptions / InferenceServerOptions minus the non-serializable parts. */
  options: Record<string, unknown>;
  /** Embedder for the child to create (`hash` default). */
  embedder?: Omit<EmbedderOptions, 'log'>;
  metricsIntervalMs: number;
  logLevel?: string;
}

/** `ping`: the supervisor's liveness check (the child answers `pong` with the same `n`); `compact`: compact now. */
export type ParentToChild = ChildStartMessage | { type: 'stop' } | { type: 'ping'; n: number } | { type: 'compact'; id: number };

export type ChildToParent =
  | { type: 'ready'; port: number; pid: number }
  | { type: 'compacted'; id: number; compaction?: CompactionSummary; error?: string }
  | { type: 'metrics'; snapshot: ServerSnapshot }
  | { type: 'fatal'; message: string }
  | { type: 'stopping' }
  | { type: 'pong'; n: number };

/** A supervised component: a forked child (ChildComponent) or an in-process server (InProcessComponent). */
export interface ComponentHandle {
  readonly name: ComponentName;
  status(): ComponentStatus;
  /** Latest metric snapshot, or null when not running. */
  snapshot(): ServerSnapshot | null;
  /** Resolve once the transition has settled (running / stopped); reject if the start failed. */
  start(): Promise<void>;
  stop(): Promise<void>;
  restart(): Promise<void>;
  /** The memory server only: compact its store's log now (rejects when not running). */
  compact?(): Promise<CompactionSummary>;
  /** Called on every state change (and when the port or error changes). Returns an unsubscribe function. */
  onChange(listener: (status: ComponentStatus) => void): () => void;
}

export const CONTROL_DEFAULTS = {
  statusIntervalMs: 2_000,
  metricsIntervalMs: 1_000,
  restartInitialMs: 1_000,
  restartMaxMs: 30_000,
  /** A child that ran this long before crashing restarts after restartInitialMs again. */
  stableAfterMs: 10_000,
  killTimeoutMs: 10_000,
  startTimeoutMs: 30_000,
  stderrTailBytes: 4_096,
  /** The supervisor pings each running child this often over IPC. */
  pingIntervalMs: 2_000,
  /** This many pings in a row without an answer → `unresponsive`. */
  unresponsiveAfterMissed: 3,
  /** A child `unresponsive` this long is killed (SIGKILL) and restarted like a crashed one. */
  unresponsiveRestartMs: 10_000,
} as const;
