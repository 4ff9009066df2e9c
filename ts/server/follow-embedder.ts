/**
 * An inference server beside a memory server that is re-embedding its data directory
 * (`--reembed`, ts/server/reembed.ts) must embed with the embedder the memories are still
 * served with: a client that embeds a query here and searches the memory server with the
 * vector would otherwise compare the new model's query with the old model's memories.
 *
 * So the inference server follows the data directory: while the directory records another
 * embedder than its own (the re-embedding has not switched yet), it serves that one, and it
 * switches when the directory's `store.json` names its own embedder — the moment the memory
 * server's switch installs the new store's files. The memory server holds every command from
 * before those files move until it serves the new store, so a vector from the new model
 * never reaches the old store; what is left is the moment between the memory server's
 * release and this watcher noticing (an fs.watch event, a poll as the fallback).
 *
 * The directory is read, never written: the inference server may run in another process
 * (the CLI's supervised children) as long as it sees the same filesystem.
 */
import { watch, type FSWatcher } from 'node:fs';
import type { Embedder } from '../embedder.js';
import { HashEmbedder } from '../embedder.js';
import { describeIdentity, identityOf, recordedIdentity, sameIdentity } from './reembed-files.js';

/** How often the directory is read when no fs.watch event came (some filesystems send none). */
const POLL_MS = 250;

/**
 * The embedder the memories of `dataDir` are served with now, when it is not `target` and can
 * be made here: the built-in hash, or `previous` when it is the recorded one. Null: serve the
 * target (a new or already switched directory, or a recorded embedder not available here —
 * `warn` says so).
 */
export function embedderServedNow(dataDir: string, target: Embedder, previous: Embedder | undefined, warn: (msg: string) => void): Embedder | null {
  const recorded = recordedIdentity(dataDir);
  if (!recorded || sameIdentity(recorded, identityOf(target))) return null;
  if (previous && sameIdentity(identityOf(previous), recorded)) return previous;
  const hash = new HashEmbedder();
  if (sameIdentity(identityOf(hash), recorded)) return hash;
  warn(
    `${dataDir} is served with ${describeIdentity(recorded)}, which this inference server cannot load; ` +
      `it serves ${describeIdentity(identityOf(target))} already (pass previousEmbedder to serve the old one until the switch)`,
  );
  return null;
}

/** Calls `onSwitched` once, when `dataDir` records `target`'s identity; `close()` stops watching. */
export class DataDirSwitchWatch {
  private watcher: FSWatcher | null = null;
  private readonly timer: NodeJS.Timeout;
  private done = false;

  constructor(
    private readonly dataDir: string,
    private readonly target: Embedder,
    private readonly onSwitched: () => void,
  ) {
    try {
      this.watcher = watch(dataDir, { persistent: false }, () => this.check());
      this.watcher.on('error', () => this.closeWatcher());
    } catch {
      this.watcher = null; // the poll below still notices the switch
    }
    this.timer = setInterval(() => this.check(), POLL_MS);
    this.timer.unref();
  }

  /** Reads the directory's recorded embedder; a moment without `store.json` (mid-switch) is "not yet". */
  check(): void {
    if (this.done) return;
    const recorded = recordedIdentity(this.dataDir);
    if (!recorded || !sameIdentity(recorded, identityOf(this.target))) return;
    this.close();
    this.onSwitched();
  }

  close(): void {
    this.done = true;
    clearInterval(this.timer);
    this.closeWatcher();
  }

  private closeWatcher(): void {
    this.watcher?.close();
    this.watcher = null;
  }
}
