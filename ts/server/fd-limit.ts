/**
 * Connections against the process's open-file limit. Every WebSocket is a file descriptor;
 * when they run out, `accept()` fails and new clients hang until they time out instead of
 * being refused. So the effective `maxConnections` is capped below the limit, keeping a
 * reserve for everything else (the data directory's files, listen sockets, child pipes, the
 * sockets of clients being refused with 1013).
 *
 * Node has no getrlimit; on Linux `/proc/self/limits` has it ("Max open files", the soft
 * limit, which Node raises to the hard limit at start) and `/proc/self/fd` the files open
 * now. Elsewhere (no /proc) nothing is capped.
 */
import { readFileSync, readdirSync } from 'node:fs';

/** Descriptors kept free beyond those open at listen: at least this many… */
export const FD_RESERVE_MIN = 32;
/** …or this share of the limit, whichever is larger. */
export const FD_RESERVE_SHARE = 0.05;

/** The soft RLIMIT_NOFILE, or null when unknown or unlimited. */
export function openFileLimit(limitsText?: string): number | null {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/limits', 'utf8');
    } catch {
      return null;
    }
  }
  const m = /^Max open files\s+(\S+)/m.exec(text);
  if (!m || m[1] === 'unlimited') return null;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) && n > 0 ? n : null;
}

/** Descriptors open in this process now, or null when unknown. */
export function openFileCount(): number | null {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return null;
  }
}

export interface ConnectionCap {
  /** The limit to enforce. */
  maxConnections: number;
  /** Whether it is below the configured one (then the caller logs it). */
  capped: boolean;
  openFileLimit: number | null;
  openFiles: number | null;
}

/** The connection limit that leaves a reserve of descriptors: min(requested, limit − open − reserve), at least 1. */
export function connectionCap(requested: number, limit = openFileLimit(), open = openFileCount()): ConnectionCap {
  if (limit === null) return { maxConnections: requested, capped: false, openFileLimit: null, openFiles: open };
  const reserve = Math.max(FD_RESERVE_MIN, Math.ceil(limit * FD_RESERVE_SHARE));
  const available = Math.max(1, limit - (open ?? 0) - reserve);
  return available < requested
    ? { maxConnections: available, capped: true, openFileLimit: limit, openFiles: open }
    : { maxConnections: requested, capped: false, openFileLimit: limit, openFiles: open };
}

/**
 * One budget for the whole process: every server in it (memory, inference, control center
 * may share one process) takes its sockets from the same descriptors. Computed once, at the
 * first listen (the data directory is open by then).
 */
export const processSockets = {
  /** WebSocket connections admitted by all servers of this process. */
  open: 0,
  cap: null as ConnectionCap | null,
};

/** The process-wide connection cap (computed on first use). */
export function processConnectionCap(): ConnectionCap {
  return (processSockets.cap ??= connectionCap(Number.MAX_SAFE_INTEGER));
}
