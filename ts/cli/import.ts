/**
 * `memory-server import FILE|-`: JSON lines into a stopped data directory, each on the path
 * that keeps what it carries:
 *
 * - A **recorded** line (it has `associations`, as every `export` line has) is bulk-loaded:
 *   significance, associations and timestamps kept exactly, no scan (`bulkLoad`).
 * - Any other line (a user's own JSONL of texts, with or without embeddings) is stored the
 *   way `store` stores it, through the store's batch `put`: significance (unless the line
 *   gives one) and associations are computed against everything stored before it, in
 *   batches of up to 1,000 — one group commit and one fsync (policy `always`) each.
 *
 * Consecutive lines of one kind form a batch; a change of kind ends it, so every line is
 * applied in file order. One batch is written while the next is read, checked and embedded.
 *
 * Every line is validated first, with the rules of `store` (ts/protocol/import.ts), before
 * anything is written: a rejected line is reported as `line N: <field>: <reason>` on stderr
 * and, unless `--skip-invalid` is given, nothing at all is imported and the exit code is 1.
 * With `--skip-invalid` the valid lines are imported and the rejected ones left out. A line
 * whose `expires_at` has already passed is valid but not loaded (it would never be visible);
 * the summary counts it.
 */
import { createReadStream } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { ZodIssue } from 'zod';
import type { Embedder } from '../embedder.js';
import type { BulkRecord, MemoryStore, PutItem } from '../native.js';
import { ProtocolError } from '../protocol/errors.js';
import { importRowSchema } from '../protocol/import.js';
import { DEFAULT_NAMESPACE, MEMORY_LIMITS, checkTextSize, metadataJson } from '../protocol/memory.js';

/** Rejected lines printed before "… and N more". */
const MAX_REPORTED = 50;

export interface ImportOptions {
  file: string;
  dataDir: string;
  batchSize: number;
  skipInvalid: boolean;
  embedder: Embedder;
  open: () => Promise<MemoryStore>;
  out: (s: string) => void;
  err: (s: string) => void;
}

/** A valid line: a recorded one (bulk-loaded as is) or one to store like `store` (scored on the way). */
export type ImportEntry = { kind: 'recorded'; record: BulkRecord } | { kind: 'scored'; put: PutItem };

/** A line as an import entry (embedding empty when it must be embedded), or why it is rejected. */
export function parseImportLine(line: string, dims: number, now: number): { entry: ImportEntry; expired: boolean } | { error: string } {
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch {
    return { error: 'not valid JSON' };
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return { error: 'must be a JSON object' };
  const r = importRowSchema.safeParse(json);
  if (!r.success) return { error: issueText(r.error.issues[0]) };
  const row = r.data;
  let metadata: string | undefined;
  try {
    checkTextSize(row.text, 'text');
    metadata = metadataJson(row.metadata, 'metadata');
  } catch (e) {
    if (e instanceof ProtocolError) return { error: e.message };
    throw e;
  }
  const embedding = row.embedding === undefined ? new Float32Array(0) : Float32Array.from(row.embedding);
  if (row.embedding !== undefined && embedding.length !== dims) {
    return { error: `embedding: must have ${dims} dimensions (the embedder's), got ${embedding.length}` };
  }
  if (row.embedding !== undefined && embedding.every((x) => x === 0)) return { error: 'embedding: must not be the zero vector' };
  const namespace = row.namespace ?? DEFAULT_NAMESPACE;
  const expired = row.expires_at !== undefined && row.expires_at <= now;
  if (row.associations === undefined) {
    const put: PutItem = { namespace, text: row.text, embedding };
    if (row.id !== undefined) put.id = row.id;
    if (metadata !== undefined) put.metadata = metadata;
    if (row.significance !== undefined) put.significance = row.significance;
    if (row.timestamp !== undefined) put.timestampMs = row.timestamp;
    if (row.expires_at !== undefined) put.expiresAtMs = row.expires_at;
    return { entry: { kind: 'scored', put }, expired };
  }
  // Recorded associations are kept only with the significance recorded beside them: half a
  // record would be loaded with a made-up value, so it is refused.
  const recordedHint = '(a line with associations is loaded as recorded; leave associations out to have them computed)';
  if (row.id === undefined) return { error: `id: is required beside associations ${recordedHint}` };
  if (row.significance === undefined) return { error: `significance: is required beside associations ${recordedHint}` };
  const record: BulkRecord = {
    namespace,
    id: row.id,
    text: row.text,
    metadata: metadata ?? '{}',
    significance: row.significance,
    timestamp: row.timestamp ?? now,
    associations: row.associations,
    embedding,
  };
  if (row.expires_at !== undefined) record.expiresAt = row.expires_at;
  return { entry: { kind: 'recorded', record }, expired };
}

function issueText(issue: ZodIssue | undefined): string {
  if (!issue) return 'invalid';
  const field = issue.path.length === 0 ? 'line' : issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : p)).join('.').replace(/\.\[/g, '[');
  if (issue.code === 'unrecognized_keys') return `${issue.keys.join(', ')}: unknown field${issue.keys.length > 1 ? 's' : ''}`;
  if (issue.code === 'invalid_type' && issue.received === 'undefined') return `${field}: is required`;
  return `${field}: ${issue.message}`;
}

/** The file's non-empty lines with their numbers (stdin is read once and kept for the second pass). */
async function* lines(file: string, keep: string[] | null): AsyncGenerator<[number, string]> {
  if (keep && keep.length > 0) {
    for (let i = 0; i < keep.length; i++) if (keep[i]!.trim() !== '') yield [i + 1, keep[i]!];
    return;
  }
  const rl = createInterface({ input: file === '-' ? process.stdin : createReadStream(file), crlfDelay: Infinity });
  let n = 0;
  for await (const line of rl) {
    n++;
    keep?.push(line);
    if (line.trim() !== '') yield [n, line];
  }
}

/** Counts of what the loader wrote. */
interface Loaded {
  recorded: number;
  scored: number;
  /** Lines whose (namespace, id) was already stored: left as they were. */
  existing: number;
}

/**
 * Batches entries of one kind and writes them in file order, one batch at a time: the next
 * batch is read, checked and embedded while the store writes the previous one (a second
 * write is never handed over before the first one settles, so a failure stops the import).
 */
class BatchLoader {
  private kind: ImportEntry['kind'] = 'recorded';
  private batch: Array<BulkRecord | PutItem> = [];
  private writing: Promise<void> = Promise.resolve();
  readonly loaded: Loaded = { recorded: 0, scored: 0, existing: 0 };

  constructor(
    private readonly store: MemoryStore,
    private readonly embedder: Embedder,
    private readonly batchSize: number,
  ) {}

  async add(entry: ImportEntry): Promise<void> {
    if (entry.kind !== this.kind && this.batch.length > 0) await this.flush();
    this.kind = entry.kind;
    this.batch.push(entry.kind === 'recorded' ? entry.record : entry.put);
    // Scored lines go through `put` in batches of at most a `store` batch (1,000).
    const limit = entry.kind === 'scored' ? Math.min(this.batchSize, MEMORY_LIMITS.maxBatchItems) : this.batchSize;
    if (this.batch.length >= limit) await this.flush();
  }

  /** Hands the current batch to the store once the previous write has settled. */
  async flush(): Promise<void> {
    const batch = this.batch;
    const kind = this.kind;
    if (batch.length === 0) return;
    this.batch = [];
    await this.embedMissing(batch);
    await this.writing;
    const write = kind === 'recorded' ? this.loadRecorded(batch as BulkRecord[]) : this.putScored(batch as PutItem[]);
    // Handled here so a failure while the next batch is being read is not an unhandled
    // rejection; the next flush or finish() awaits it and throws.
    write.catch(() => undefined);
    this.writing = write;
  }

  /** Waits for the last write. */
  async finish(): Promise<void> {
    await this.flush();
    await this.writing;
  }

  private async embedMissing(batch: Array<BulkRecord | PutItem>): Promise<void> {
    const missing = batch.filter((x) => x.embedding.length === 0);
    if (missing.length === 0) return;
    const dims = this.embedder.dims;
    const rows = await this.embedder.embed(missing.map((x) => x.text));
    missing.forEach((x, j) => (x.embedding = rows.slice(j * dims, (j + 1) * dims)));
  }

  private async loadRecorded(batch: BulkRecord[]): Promise<void> {
    const added = await this.store.bulkLoad(batch);
    this.loaded.recorded += added;
    this.loaded.existing += batch.length - added;
  }

  private async putScored(batch: PutItem[]): Promise<void> {
    const results = await this.store.put(batch);
    for (const r of results) {
      if (r.existing) this.loaded.existing++;
      else this.loaded.scored++;
    }
  }
}

export async function runImport(o: ImportOptions): Promise<number> {
  const { embedder } = o;
  const now = Date.now();
  const stdin = o.file === '-' ? [] : null;
  // Pass 1: validate every line; nothing is opened or written yet.
  const rejected = new Set<number>();
  for await (const [n, line] of lines(o.file, stdin)) {
    const p = parseImportLine(line, embedder.dims, now);
    if ('error' in p) {
      if (rejected.size < MAX_REPORTED) o.err(`line ${n}: ${p.error}`);
      rejected.add(n);
    }
  }
  if (rejected.size > MAX_REPORTED) o.err(`… and ${rejected.size - MAX_REPORTED} more rejected lines`);
  if (rejected.size > 0 && !o.skipInvalid) {
    o.err(`${rejected.size} line${rejected.size > 1 ? 's' : ''} rejected; nothing imported (fix them, or pass --skip-invalid to import the valid lines)`);
    return 1;
  }
  // Pass 2: load the valid lines.
  const store = await o.open();
  let expired = 0;
  const loader = new BatchLoader(store, embedder, o.batchSize);
  try {
    for await (const [n, line] of lines(o.file, stdin)) {
      if (rejected.has(n)) continue;
      const p = parseImportLine(line, embedder.dims, now);
      if ('error' in p) continue;
      if (p.expired) expired++;
      else await loader.add(p.entry);
    }
    await loader.finish();
    await store.flush();
  } finally {
    store.close();
  }
  const { recorded, scored, existing } = loader.loaded;
  const notes = [
    existing > 0 ? `${existing} already stored` : '',
    expired > 0 ? `${expired} already expired` : '',
    rejected.size > 0 ? `${rejected.size} rejected` : '',
  ].filter(Boolean);
  o.out(
    `imported ${recorded + scored} memories into ${path.resolve(o.dataDir)}: ${recorded} as recorded, ${scored} scored like store` +
      (notes.length > 0 ? ` (skipped: ${notes.join(', ')})` : ''),
  );
  return 0;
}
