/**
 * A long-absent member catching up from a snapshot (docs/cluster.md, "Joining, restarting,
 * catching up"): its checkpoint is older than the stream's first sequence (the stream was
 * purged up to a snapshot), so it replaces its store by the latest snapshot and then applies
 * the stream from the snapshot's sequence.
 *
 * Never losing the old store:
 *   1. The snapshot is restored into a fresh store in `cluster-restore/` beside the live one,
 *      made durable, with its own checkpoint (`cluster-state.json`) at the snapshot's sequence.
 *      A failure here removes that directory; the live store is untouched.
 *   2. With the live store closed and the data directory locked, a short switch of renames,
 *      restartable from a phase recorded (fsynced) in `cluster-restore.json` before each step:
 *        switching  → every file of the data directory (store, log, caches, checkpoint; not
 *                     the LOCK, not subdirectories) moves to `cluster-restore-old/`;
 *        installing → every file of `cluster-restore/` moves into the data directory;
 *        done       → both directories and the phase file are removed.
 *      A crash during the switch is finished by the next start (`finishRestoreSwitch`, called
 *      before the store opens): the new store was complete before the switch began.
 *
 * This module touches files only (no NATS): the memory server calls `finishRestoreSwitch` on
 * every start, with or without `--cluster`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { syncPath, writeJsonDurably } from '../server/durable-file.js';
import { lockDataDir, type MemoryStore } from '../native.js';
import { Checkpoint, type CheckpointState } from './checkpoint.js';

export const RESTORE_STATE_FILE = 'cluster-restore.json';
export const RESTORE_DIR = 'cluster-restore';
const OLD_DIR = 'cluster-restore-old';
/** The store's directory lock: it stays where it is. */
const LOCK_FILE = 'LOCK';

type SwitchPhase = 'switching' | 'installing' | 'done';

interface SwitchState {
  phase: SwitchPhase;
  /** The snapshot's sequence (the installed checkpoint's), for the log. */
  seq: number;
}

/** How the memory server lets the cluster replace its store (ts/server/memory.ts). */
export interface StoreFiles {
  /** Opens a store in another directory with the server's embedder and options. */
  openAt(dir: string): Promise<MemoryStore>;
  /** Closes the served store (the switch needs the data directory unlocked). */
  close(): void;
  /** Serves (and returns) the store opened anew from the data directory. */
  reopen(): Promise<MemoryStore>;
}

/**
 * Builds the restored store beside the live one (`fill` loads the snapshot into it and
 * returns its sequence), then switches it in. Resolves with the store now served and the
 * snapshot's sequence; on a failure before the switch the live store is left as it was.
 */
export async function replaceStoreFromSnapshot(
  dataDir: string,
  stream: Omit<CheckpointState, 'applied_seq'>,
  files: StoreFiles,
  fill: (fresh: MemoryStore) => Promise<number>,
): Promise<{ store: MemoryStore; seq: number }> {
  const side = path.join(dataDir, RESTORE_DIR);
  await rm(side, { recursive: true, force: true });
  await mkdir(side);
  let seq: number;
  try {
    const fresh = await files.openAt(side);
    try {
      seq = await fill(fresh);
      await fresh.flush();
    } finally {
      fresh.close();
    }
    // fsynced whatever the server's --fsync: the switch must not install a checkpoint that is not on disk.
    const checkpoint = new Checkpoint(side, true);
    await checkpoint.save({ ...stream, applied_seq: seq });
    await syncPath(side);
    await syncPath(dataDir);
  } catch (err) {
    await rm(side, { recursive: true, force: true }).catch(() => undefined);
    throw err;
  }
  files.close();
  const lock = lockDataDir(dataDir);
  try {
    await runSwitch(dataDir, { phase: 'switching', seq });
  } finally {
    lock.release();
  }
  return { store: await files.reopen(), seq };
}

/**
 * Finishes a switch a crash interrupted (the phase file exists), or drops a half-built
 * restore (its directory without a phase file). Called before the data directory opens.
 */
export async function finishRestoreSwitch(dataDir: string): Promise<void> {
  const stateFile = path.join(dataDir, RESTORE_STATE_FILE);
  const side = path.join(dataDir, RESTORE_DIR);
  if (!existsSync(stateFile) && !existsSync(side)) return;
  const lock = lockDataDir(dataDir);
  try {
    if (existsSync(stateFile)) await runSwitch(dataDir, readSwitchState(stateFile));
    else await rm(side, { recursive: true, force: true });
  } finally {
    lock.release();
  }
}

function readSwitchState(file: string): SwitchState {
  try {
    const s = JSON.parse(readFileSync(file, 'utf8')) as SwitchState;
    if ((s.phase === 'switching' || s.phase === 'installing' || s.phase === 'done') && Number.isSafeInteger(s.seq)) return s;
  } catch {
    // fall through
  }
  // Written by rename over a synced temporary file, so never torn: damage or a foreign file.
  throw new Error(`${file} is not a cluster restore's progress file; move it away to start the server (see docs/cluster.md)`);
}

/** The switch from `state.phase` on; the data directory must be locked with no store open. Each step is safe to repeat. */
async function runSwitch(dataDir: string, state: SwitchState): Promise<void> {
  const side = path.join(dataDir, RESTORE_DIR);
  const old = path.join(dataDir, OLD_DIR);
  let phase = state.phase;
  if (phase === 'switching') {
    await saveSwitchState(dataDir, { ...state, phase });
    await mkdir(old, { recursive: true });
    // Nothing of the new store has moved in yet: every file here is the old store's.
    for (const name of await filesOf(dataDir)) await rename(path.join(dataDir, name), path.join(old, name));
    await syncPath(old);
    await syncPath(dataDir);
    phase = 'installing';
    await saveSwitchState(dataDir, { ...state, phase });
  }
  if (phase === 'installing') {
    for (const name of await filesOf(side)) await rename(path.join(side, name), path.join(dataDir, name));
    await syncPath(dataDir);
    phase = 'done';
    await saveSwitchState(dataDir, { ...state, phase });
  }
  await rm(side, { recursive: true, force: true });
  await rm(old, { recursive: true, force: true });
  await rm(path.join(dataDir, RESTORE_STATE_FILE), { force: true });
  await syncPath(dataDir);
}

/** The plain files of a directory that belong to its store (all but the lock and the switch's own). */
async function filesOf(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const name of await readdir(dir)) {
    if (name === LOCK_FILE || name === RESTORE_STATE_FILE || name === `${RESTORE_STATE_FILE}.tmp`) continue;
    if ((await stat(path.join(dir, name))).isFile()) out.push(name);
  }
  return out;
}

async function saveSwitchState(dataDir: string, state: SwitchState): Promise<void> {
  await writeJsonDurably(path.join(dataDir, RESTORE_STATE_FILE), state);
}

