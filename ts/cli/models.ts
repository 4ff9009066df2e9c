/**
 * `memory-server models list | fetch ID | remove ID`, and the resolution of `--model` the
 * other commands share: a hub id is fetched once, in the CLI process (with a progress bar
 * on a terminal), and the servers — in this process or supervised children — are handed
 * the snapshot directory, so children never download.
 */
import path from 'node:path';
import { hubCacheDir, isRepoId, listCachedModels, removeCachedModel } from '../models/cache.js';
import { formatBytes } from '../models/progress.js';
import { looksLikeHubId, resolveModel, type ModelSpec, type ResolvedModel } from '../models/resolve.js';
import { UsageError, type CliConfig } from './config.js';

type Print = (s: string) => void;

export function modelSpec(cfg: CliConfig, model: string): ModelSpec {
  return {
    model,
    ...(cfg.revision !== undefined ? { revision: cfg.revision } : {}),
    ...(cfg.quantized ? { quantized: true } : {}),
    ...(cfg.modelFile !== undefined ? { modelFile: cfg.modelFile } : {}),
  };
}

/** `--model` resolved to a loadable directory (a hub id fetched into the cache first). */
export function resolveCliModel(cfg: CliConfig, log: Print): Promise<ResolvedModel> {
  return resolveModel(modelSpec(cfg, cfg.model!), { log });
}

/** How the start banner names the model: the directory, or `repo@commit (directory)`. */
export function modelLabel(m: ResolvedModel): string {
  return m.source === 'hub' ? `${m.repo}@${m.commit!.slice(0, 12)} (${m.dir})` : m.dir;
}

export async function runModels(cfg: CliConfig, positionals: string[], out: Print, err: Print): Promise<void> {
  const [sub, id, ...rest] = positionals;
  if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`);
  const root = hubCacheDir();
  switch (sub) {
    case 'list':
    case 'ls': {
      if (id !== undefined) throw new UsageError(`unexpected argument "${id}"`);
      listModels(root, out);
      return;
    }
    case 'fetch':
    case 'download': {
      const repo = needId(id, sub);
      if (!looksLikeHubId(repo)) throw new UsageError(`${repo} is a local path; models fetch takes a hub id (org/name)`);
      const m = await resolveModel(modelSpec(cfg, repo), { log: err });
      out(`${m.repo} ${m.revision} → ${m.commit}`);
      out(`  ${path.join(m.dir, m.modelFile)}`);
      return;
    }
    case 'remove':
    case 'rm': {
      const repo = needId(id, sub);
      const removed = removeCachedModel(root, repo);
      if (!removed) throw new Error(`${repo} is not in the cache ${root}`);
      out(`removed ${repo} (${formatBytes(removed.bytes + removed.partialBytes)}) from ${root}`);
      return;
    }
    case undefined:
      throw new UsageError('models needs a sub-command: list, fetch ID or remove ID');
    default:
      throw new UsageError(`unknown models sub-command "${sub}" (list, fetch, remove)`);
  }
}

function needId(id: string | undefined, sub: string): string {
  if (id === undefined) throw new UsageError(`models ${sub} needs a hub model id, e.g. sentence-transformers/all-MiniLM-L6-v2`);
  if (!isRepoId(id)) throw new UsageError(`not a hub model id: ${id} (org/name)`);
  return id;
}

function listModels(root: string, out: Print): void {
  const models = listCachedModels(root);
  if (models.length === 0) {
    out(`no models in ${root}`);
    return;
  }
  out(`models in ${root}:`);
  for (const m of models) {
    const refs = Object.entries(m.refs).map(([rev, commit]) => `${rev}→${commit.slice(0, 12)}`);
    const partial = m.partialBytes > 0 ? `, ${formatBytes(m.partialBytes)} partial` : '';
    out(`  ${m.repo}  ${formatBytes(m.bytes)}${partial}  ${refs.length ? refs.join(' ') : 'no refs'}  ${m.snapshots.length} snapshot${m.snapshots.length === 1 ? '' : 's'}`);
  }
}
