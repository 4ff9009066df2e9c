/**
 * `memory-server import FILE|-`: JSON lines (the export format) into a stopped data directory
 * through the bulk-load path.
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
import type { BulkRecord, MemoryStore } from '../native.js';
import { ProtocolError } from '../protocol/errors.js';
import { importRowSchema } from '../protocol/import.js';
import { DEFAULT_NAMESPACE, checkTextSize, metadataJson } from '../protocol/memory.js';

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

/** A line as a bulk record (embedding empty when it must be embedded), or why it is rejected. */
export function parseImportLine(line: string, dims: number, now: number): { record: BulkRecord; expired: boolean } | { error: string } {
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
  const record: BulkRecord = {
    namespace: row.namespace ?? DEFAULT_NAMESPACE,
    id: row.id,
    text: row.text,
    metadata: metadata ?? '{}',
    significance: row.significance ?? 0.5,
    timestamp: row.timestamp ?? now,
    associations: row.associations ?? [],
    embedding,
  };
  if (row.expires_at !== undefined) record.expiresAt = row.expires_at;
  return { record, expired: row.expires_at !== undefined && row.expires_at <= now };
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
  let added = 0;
  let expired = 0;
  let valid = 0;
  try {
    let batch: BulkRecord[] = [];
    let needEmbed: number[] = [];
    const flush = async (): Promise<void> => {
      if (batch.length === 0) return;
      if (needEmbed.length > 0) {
        const rows = await embedder.embed(needEmbed.map((i) => batch[i]!.text));
        needEmbed.forEach((i, j) => (batch[i]!.embedding = rows.slice(j * embedder.dims, (j + 1) * embedder.dims)));
      }
      added += await store.bulkLoad(batch);
      batch = [];
      needEmbed = [];
    };
    for await (const [n, line] of lines(o.file, stdin)) {
      if (rejected.has(n)) continue;
      const p = parseImportLine(line, embedder.dims, now);
      if ('error' in p) continue;
      valid++;
      if (p.expired) {
        expired++;
        continue;
      }
      if (p.record.embedding.length === 0) needEmbed.push(batch.length);
      batch.push(p.record);
      if (batch.length >= o.batchSize) await flush();
    }
    await flush();
    await store.flush();
  } finally {
    store.close();
  }
  const notes = [
    valid - expired - added > 0 ? `${valid - expired - added} already stored` : '',
    expired > 0 ? `${expired} already expired` : '',
    rejected.size > 0 ? `${rejected.size} rejected` : '',
  ].filter(Boolean);
  o.out(`imported ${added} memories into ${path.resolve(o.dataDir)}${notes.length > 0 ? ` (skipped: ${notes.join(', ')})` : ''}`);
  return 0;
}
