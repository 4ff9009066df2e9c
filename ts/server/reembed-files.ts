/**
 * The files of a re-embedding (docs/embeddings.md, "Changing the embedder: --reembed"): the
 * embedder a data directory records, the durable progress file (`reembed.json`), and the
 * switch on disk that replaces the directory's log by the new embedder's.
 *
 * The switch is a short sequence of renames made restartable by a phase recorded before
 * each step, so a crash at any point is finished by the next start (`finishSwitch`):
 *   switching   → every log, vectors file and `store.json` of the directory moves to
 *                 `reembed-old/`;
 *   installing  → the new store's log, vectors file and `store.json` (in `reembed/`) move
 *                 into the directory;
 *   done        → `reembed/`, `reembed-old/` and `reembed.json` are removed.
 * Only this process writes these files, and only while the data directory is not open.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { syncPath, writeJsonDurably } from './durable-file.js';
import type { Embedder } from '../embedder.js';

/** What a data directory's vectors are: the embedder's name, model hash and width. */
export interface EmbedderIdentity {
  name: string;
  hash: string;
  dims: number;
}

export type ReembedPhase = 'copying' | 'switching' | 'installing' | 'done';

/** `reembed.json`: a re-embedding under way. */
export interface ReembedState {
  format: 1;
  from: EmbedderIdentity;
  to: EmbedderIdentity;
  /** Every memory of the live store up to this sequence number is in the new store. */
  cursor: number;
  phase: ReembedPhase;
  started_at: string;
}

export const STATE_FILE = 'reembed.json';
/** The new embedder's store, built beside the live one. */
export const SHADOW_DIR = 'reembed';
const OLD_DIR = 'reembed-old';

export const identityOf = (e: Embedder): EmbedderIdentity => ({ name: e.name, hash: e.hash, dims: e.dims });

export const sameIdentity = (a: EmbedderIdentity, b: EmbedderIdentity): boolean => a.name === b.name && a.hash === b.hash && a.dims === b.dims;

export const describeIdentity = (e: EmbedderIdentity): string => `${e.name} (model hash ${e.hash}, ${e.dims} dims)`;

/** The embedder `store.json` records (null: a new directory, or none recorded). */
export function recordedIdentity(dataDir: string): EmbedderIdentity | null {
  const file = path.join(dataDir, 'store.json');
  if (!existsSync(file)) return null;
  // An unreadable store.json is the store's to report (it refuses to open, naming the file).
  let meta: { dims?: unknown; embedder?: { name?: unknown; hash?: unknown } | null };
  try {
    meta = JSON.parse(readFileSync(file, 'utf8')) as typeof meta;
  } catch {
    return null;
  }
  const e = meta.embedder;
  if (!e || typeof e.name !== 'string' || typeof e.hash !== 'string' || typeof meta.dims !== 'number') return null;
  return { name: e.name, hash: e.hash, dims: meta.dims };
}

export function readState(dataDir: string): ReembedState | null {
  const file = path.join(dataDir, STATE_FILE);
  if (!existsSync(file)) return null;
  const text = readFileSync(file, 'utf8');
  try {
    const s = JSON.parse(text) as ReembedState;
    if (s.format === 1 && typeof s.cursor === 'number' && s.from && s.to && typeof s.phase === 'string') return s;
  } catch {
    // fall through
  }
  // Written by rename over a synced temporary file, so never torn: this is damage or a
  // foreign file. Refuse rather than guess which store holds the memories.
  throw new Error(`${file} is not a re-embedding progress file; move it away to start the server (the memories are in the directory's log)`);
}

/** Writes the progress file durably: a synced temporary file renamed over it, then the directory synced. */
export async function saveState(dataDir: string, state: ReembedState): Promise<void> {
  await writeJsonDurably(path.join(dataDir, STATE_FILE), state);
}


/** A store's own files that the switch moves: its identity, its log and its vectors file (the one copy of its vectors). */
const isStoreFile = (name: string): boolean => name === 'store.json' || /^wal-\d+\.log$/.test(name) || /^vectors-\d+\.f32$/.test(name);

/** Drops a re-embedding that was never switched to (another target was asked for). */
export async function discardShadow(dataDir: string): Promise<void> {
  await rm(path.join(dataDir, SHADOW_DIR), { recursive: true, force: true });
  await rm(path.join(dataDir, STATE_FILE), { force: true });
  await syncPath(dataDir);
}

/**
 * Runs (or finishes, after a crash) the switch on disk from `state.phase` on; both stores
 * must be closed. Afterwards the directory holds the new embedder's log and identity.
 */
export async function finishSwitch(dataDir: string, state: ReembedState): Promise<void> {
  const shadow = path.join(dataDir, SHADOW_DIR);
  const old = path.join(dataDir, OLD_DIR);
  let phase = state.phase;
  if (phase === 'copying') phase = 'switching';
  if (phase === 'switching') {
    await saveState(dataDir, { ...state, phase });
    await mkdir(old, { recursive: true });
    // No file of the new store has moved in yet: every log here is the old store's.
    for (const name of await readdir(dataDir)) if (isStoreFile(name)) await rename(path.join(dataDir, name), path.join(old, name));
    await syncPath(old);
    await syncPath(dataDir);
    phase = 'installing';
    await saveState(dataDir, { ...state, phase });
  }
  if (phase === 'installing') {
    if (existsSync(shadow)) {
      for (const name of await readdir(shadow)) {
        if (isStoreFile(name)) await rename(path.join(shadow, name), path.join(dataDir, name));
      }
    }
    await syncPath(dataDir);
    phase = 'done';
    await saveState(dataDir, { ...state, phase });
  }
  await rm(shadow, { recursive: true, force: true });
  await rm(old, { recursive: true, force: true });
  await rm(path.join(dataDir, STATE_FILE), { force: true });
  await syncPath(dataDir);
}
