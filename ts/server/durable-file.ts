/** Small JSON state files written so that a crash leaves the old or the new one, never a torn one. */
import { open as openFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** Writes `value` as JSON to `file`: a synced temporary file renamed over it, then its directory synced. */
export async function writeJsonDurably(file: string, value: unknown): Promise<void> {
  const tmp = `${file}.tmp`;
  await writeFile(tmp, JSON.stringify(value));
  await syncPath(tmp);
  await rename(tmp, file);
  await syncPath(path.dirname(file));
}

/** fsync of a file or a directory. */
export async function syncPath(p: string): Promise<void> {
  const fh = await openFile(p, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
