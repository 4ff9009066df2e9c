/**
 * The Hugging Face hub cache, in the layout huggingface_hub writes, so a model fetched
 * by Python tools is reused here and the other way round:
 *
 *   <cache>/models--{org}--{name}/
 *     blobs/<etag>                    file contents; etag = sha256 (LFS files) or git blob sha1
 *     blobs/<etag>.incomplete         a download in progress (resumed with an HTTP Range request)
 *     refs/<revision>                 the commit a branch or tag pointed to when last fetched
 *     snapshots/<commit>/<path>       relative symlinks into ../../blobs
 *
 * <cache> is HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
 * ~/.cache/huggingface/hub.
 */
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';

/** A 40-hex git commit id. */
export const COMMIT_RE = /^[0-9a-f]{40}$/;

export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const direct = env.HF_HUB_CACHE || env.HUGGINGFACE_HUB_CACHE;
  if (direct) return path.resolve(direct);
  const home = env.HF_HOME || path.join(env.XDG_CACHE_HOME || path.join(homedir(), '.cache'), 'huggingface');
  return path.resolve(home, 'hub');
}

/** `org/name` or a legacy one-part id; the hub's own rules, which also keep ids from escaping the cache. */
export function isRepoId(s: string): boolean {
  return /^[A-Za-z0-9][\w.-]{0,95}(\/[A-Za-z0-9][\w.-]{0,95})?$/.test(s) && !s.includes('--') && !s.includes('..') && !/[.-]$/.test(s);
}

/** Branch, tag (`v1.0`, `refs/pr/1`) or commit: no `..`, no absolute path, nothing a file name cannot hold. */
export function isRevision(s: string): boolean {
  return /^[\w.-]+(\/[\w.-]+)*$/.test(s) && !s.split('/').some((p) => p === '..' || p === '.') && s.length <= 255;
}

/** A path inside a repository: relative, no `..`. */
export function isRepoPath(s: string): boolean {
  return s.length > 0 && !s.startsWith('/') && !s.includes('\\') && s.split('/').every((p) => p !== '' && p !== '.' && p !== '..');
}

/** A blob name the cache may hold (an etag without quotes): hex, never a path. */
export function isBlobName(s: string): boolean {
  return /^[0-9a-f]{40}$|^[0-9a-f]{64}$/.test(s);
}

export interface CachedModel {
  repo: string;
  dir: string;
  /** revision → commit, from refs/. */
  refs: Record<string, string>;
  /** Commits with a snapshot directory. */
  snapshots: string[];
  /** Bytes of complete blobs. */
  bytes: number;
  /** Bytes of partial downloads (resumed by the next fetch). */
  partialBytes: number;
}

/** One model's folder of the cache. */
export class RepoCache {
  readonly dir: string;

  constructor(
    readonly root: string,
    readonly repo: string,
  ) {
    if (!isRepoId(repo)) throw new Error(`not a hub model id: ${JSON.stringify(repo)}`);
    this.dir = path.join(root, `models--${repo.replace(/\//g, '--')}`);
  }

  blobPath(etag: string): string {
    if (!isBlobName(etag)) throw new Error(`${this.repo}: the hub sent an unusable ETag ${JSON.stringify(etag)}`);
    return path.join(this.dir, 'blobs', etag);
  }

  snapshotDir(commit: string): string {
    if (!COMMIT_RE.test(commit)) throw new Error(`${this.repo}: not a commit id: ${JSON.stringify(commit)}`);
    return path.join(this.dir, 'snapshots', commit);
  }

  /** The commit `revision` names: itself when it is one, else what refs/<revision> recorded. */
  commitOf(revision: string): string | null {
    if (COMMIT_RE.test(revision)) return revision;
    const ref = path.join(this.dir, 'refs', revision);
    if (!existsSync(ref)) return null;
    const commit = readFileSync(ref, 'utf8').trim();
    return COMMIT_RE.test(commit) ? commit : null;
  }

  writeRef(revision: string, commit: string): void {
    if (revision === commit) return;
    const ref = path.join(this.dir, 'refs', revision);
    mkdirSync(path.dirname(ref), { recursive: true });
    writeFileSync(ref, commit);
  }

  /** Whether snapshots/<commit>/<file> resolves to a stored blob (a dangling link does not count). */
  hasFile(commit: string, file: string): boolean {
    return existsSync(path.join(this.snapshotDir(commit), file));
  }

  /** Files present in a snapshot (relative paths), for choosing an ONNX file offline. */
  snapshotFiles(commit: string): string[] {
    const dir = this.snapshotDir(commit);
    if (!existsSync(dir)) return [];
    return readdirSync(dir, { recursive: true, encoding: 'utf8' })
      .map((p) => p.split(path.sep).join('/'))
      .filter((p) => existsSync(path.join(dir, p)) && statSync(path.join(dir, p)).isFile());
  }

  /** Moves a verified download into blobs/ and links snapshots/<commit>/<file> to it. */
  commitBlob(incomplete: string, etag: string, commit: string, file: string): void {
    const blob = this.blobPath(etag);
    renameSync(incomplete, blob);
    this.link(blob, commit, file);
  }

  /** Links snapshots/<commit>/<file> to an existing blob (relative, as huggingface_hub does). */
  link(blob: string, commit: string, file: string): void {
    const pointer = path.join(this.snapshotDir(commit), file);
    mkdirSync(path.dirname(pointer), { recursive: true });
    if (existsSync(pointer) || isDanglingLink(pointer)) rmSync(pointer, { force: true });
    symlinkSync(path.relative(path.dirname(pointer), blob), pointer);
  }
}

function isDanglingLink(p: string): boolean {
  try {
    return lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}

function refsOf(dir: string): Record<string, string> {
  const refs: Record<string, string> = {};
  const base = path.join(dir, 'refs');
  if (!existsSync(base)) return refs;
  for (const p of readdirSync(base, { recursive: true, encoding: 'utf8' })) {
    const full = path.join(base, p);
    if (statSync(full).isFile()) refs[p.split(path.sep).join('/')] = readFileSync(full, 'utf8').trim();
  }
  return refs;
}

/** Every model in the cache (other repo types — datasets, spaces — are not listed). */
export function listCachedModels(root: string): CachedModel[] {
  if (!existsSync(root)) return [];
  const models: CachedModel[] = [];
  for (const name of readdirSync(root).sort()) {
    if (!name.startsWith('models--')) continue;
    const dir = path.join(root, name);
    if (!statSync(dir).isDirectory()) continue;
    let bytes = 0;
    let partialBytes = 0;
    const blobs = path.join(dir, 'blobs');
    if (existsSync(blobs)) {
      for (const b of readdirSync(blobs)) {
        const size = statSync(path.join(blobs, b)).size;
        if (b.endsWith('.incomplete')) partialBytes += size;
        else bytes += size;
      }
    }
    const snaps = path.join(dir, 'snapshots');
    models.push({
      repo: name.slice('models--'.length).replace(/--/g, '/'),
      dir,
      refs: refsOf(dir),
      snapshots: existsSync(snaps) ? readdirSync(snaps).sort() : [],
      bytes,
      partialBytes,
    });
  }
  return models;
}

/** Removes one model's folder (blobs, snapshots, refs, partial downloads); its bytes, or null when not cached. */
export function removeCachedModel(root: string, repo: string): CachedModel | null {
  const cache = new RepoCache(root, repo);
  const found = listCachedModels(root).find((m) => m.dir === cache.dir);
  if (!found) return null;
  rmSync(cache.dir, { recursive: true, force: true });
  rmSync(path.join(root, '.locks', path.basename(cache.dir)), { recursive: true, force: true });
  return found;
}
