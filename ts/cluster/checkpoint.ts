/**
 * The last stream sequence this instance applied to its store, kept next to the store
 * (`cluster-state.json` in the data directory). Written after each applied batch, once the
 * store has made the batch durable, by write-then-rename (never half-written). After a
 * process crash it is exact; after an OS crash without `--fsync always` it may be older than
 * the store, and the instance re-applies the writes in between (docs/cluster.md).
 */
import { existsSync, readFileSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import path from 'node:path';

export interface CheckpointState {
  stream: string;
  /** The stream's creation time: a stream deleted and created again is another log. */
  created: string;
  applied_seq: number;
}

export const CHECKPOINT_FILE = 'cluster-state.json';

export class Checkpoint {
  private readonly file: string;
  private writing: Promise<void> | null = null;
  private pending: CheckpointState | null = null;

  constructor(
    dataDir: string,
    private readonly fsync: boolean,
  ) {
    this.file = path.join(dataDir, CHECKPOINT_FILE);
  }

  read(): CheckpointState | null {
    if (!existsSync(this.file)) return null;
    const s = JSON.parse(readFileSync(this.file, 'utf8')) as CheckpointState;
    if (typeof s.stream !== 'string' || !Number.isSafeInteger(s.applied_seq)) throw new Error(`${this.file}: not a cluster checkpoint`);
    return s;
  }

  /** Records `state` (writes coalesce: only the newest pending one is written). */
  save(state: CheckpointState): Promise<void> {
    this.pending = state;
    this.writing ??= this.drain();
    return this.writing;
  }

  private async drain(): Promise<void> {
    try {
      while (this.pending) {
        const s = this.pending;
        this.pending = null;
        const tmp = `${this.file}.tmp`;
        const f = await open(tmp, 'w');
        try {
          await f.writeFile(JSON.stringify(s));
          if (this.fsync) await f.datasync();
        } finally {
          await f.close();
        }
        await rename(tmp, this.file);
      }
    } finally {
      this.writing = null;
    }
  }

  /** Resolves once every save so far is written. */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
  }
}
