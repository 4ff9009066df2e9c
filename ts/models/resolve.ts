/**
 * `--model` → a directory the onnx embedder can load. A local directory is used as it is;
 * anything else that reads as a hub id (`sentence-transformers/all-MiniLM-L6-v2`) is
 * fetched from the hub into the Hugging Face cache (see cache.ts) and resolved to its
 * snapshot directory: the ONNX export, `tokenizer.json` and the sentence-transformers
 * settings files. Files already in the snapshot are not fetched again.
 *
 * Offline (`HF_HUB_OFFLINE=1`) nothing is requested: the cached snapshot is used or the
 * error says what is missing. When the hub cannot be reached, a complete cached snapshot
 * of the revision is used with a note, as huggingface_hub does.
 */
import { existsSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { hubCacheDir, isBlobName, isRepoId, isRepoPath, isRevision, RepoCache } from './cache.js';
import { HubClient, HubError, type HubClientOptions, type RemoteFile } from './hub.js';
import { createProgress, type Progress } from './progress.js';
import { poolingDir, SETTINGS_FILES } from './st-config.js';

/** Where sentence-transformers repositories keep their ONNX export, in order of preference. */
export const ONNX_FILES = ['onnx/model.onnx', 'model.onnx'];
/** Quantized variants (`--quantized`), in order of preference. */
export const QUANTIZED_ONNX_FILES = [
  'onnx/model_quantized.onnx',
  'onnx/model_int8.onnx',
  'onnx/model_qint8_avx512_vnni.onnx',
  'onnx/model_qint8_avx512.onnx',
  'onnx/model_qint8_avx2.onnx',
  'onnx/model_qint8_arm64.onnx',
  'model_quantized.onnx',
];

export interface ModelSpec {
  /** A local directory, or a hub model id. */
  model: string;
  /** Hub: branch, tag or commit. Default main. */
  revision?: string;
  /** Pick a quantized ONNX variant. */
  quantized?: boolean;
  /** The ONNX file inside the directory or repository (overrides the usual places). */
  modelFile?: string;
}

export interface ResolvedModel {
  /** The directory to load (a snapshot directory for hub models). */
  dir: string;
  /** The ONNX file, relative to `dir`. */
  modelFile: string;
  /** The embedder's name: `onnx:<repo id>` for hub models, `onnx:<directory name>` otherwise. */
  name: string;
  source: 'local' | 'hub';
  repo?: string;
  revision?: string;
  commit?: string;
}

export interface ResolveOptions {
  env?: NodeJS.ProcessEnv;
  /** Notes (cache fallback, which quantized file was chosen). */
  log?: (msg: string) => void;
  /** Download progress; default a bar on stderr when it is a terminal. */
  progress?: Progress;
  hub?: HubClientOptions;
}

const isOffline = (env: NodeJS.ProcessEnv): boolean => /^(1|on|yes|true)$/i.test(env.HF_HUB_OFFLINE ?? '');

/** Whether `model` names a hub repository rather than a local path. */
export function looksLikeHubId(model: string): boolean {
  return !path.isAbsolute(model) && !model.startsWith('.') && !model.startsWith('~') && isRepoId(model) && !existsSync(model);
}

/** Picks the ONNX file among `present` (paths) for the spec, or null. */
export function chooseOnnxFile(present: (p: string) => boolean, spec: ModelSpec): string | null {
  if (spec.modelFile !== undefined) return present(spec.modelFile) ? spec.modelFile : null;
  return (spec.quantized ? QUANTIZED_ONNX_FILES : ONNX_FILES).find(present) ?? null;
}

function describeWanted(spec: ModelSpec): string {
  if (spec.modelFile !== undefined) return spec.modelFile;
  return (spec.quantized ? QUANTIZED_ONNX_FILES : ONNX_FILES).join(', ');
}

export async function resolveModel(spec: ModelSpec, options: ResolveOptions = {}): Promise<ResolvedModel> {
  if (spec.modelFile !== undefined && !isRepoPath(spec.modelFile)) throw new Error(`--model-file must be a relative path inside the model, got ${spec.modelFile}`);
  if (!looksLikeHubId(spec.model)) {
    if (spec.revision !== undefined) throw new Error(`--revision is for hub models; ${spec.model} is a local path`);
    return resolveLocal(spec);
  }
  return resolveHub(spec, options);
}

function resolveLocal(spec: ModelSpec): ResolvedModel {
  const dir = path.resolve(spec.model);
  const isDir = existsSync(dir) && statSync(dir).isDirectory();
  const file = isDir ? chooseOnnxFile((p) => existsSync(path.join(dir, p)), spec) : null;
  // Nothing found: 'model.onnx' (or the file asked for), so the embedder's error names it.
  const modelFile = file ?? spec.modelFile ?? (spec.quantized ? QUANTIZED_ONNX_FILES[0]! : 'model.onnx');
  return { dir, modelFile, name: `onnx:${path.basename(dir)}`, source: 'local' };
}

async function resolveHub(spec: ModelSpec, options: ResolveOptions): Promise<ResolvedModel> {
  const env = options.env ?? process.env;
  const log = options.log ?? ((m: string) => console.warn(m));
  const repo = spec.model;
  const revision = spec.revision ?? 'main';
  if (!isRevision(revision)) throw new Error(`not a revision: ${JSON.stringify(revision)} (a branch, tag or commit)`);
  const cache = new RepoCache(hubCacheDir(env), repo);
  const fromCache = (): ResolvedModel | null => cachedSnapshot(cache, spec, revision);

  if (isOffline(env)) {
    const cached = fromCache();
    if (cached) return cached;
    throw new HubError(
      'offline',
      `HF_HUB_OFFLINE is set and ${repo} (revision ${revision}) is not in the cache ${cache.root} with tokenizer.json and an ONNX file (${describeWanted(spec)}); ` +
        `fetch it where the hub is reachable: memory-server models fetch ${repo}`,
    );
  }
  const hub = new HubClient(options.hub, env);
  let info;
  try {
    info = await hub.repoInfo(repo, revision);
  } catch (e) {
    const cached = e instanceof HubError && e.code === 'network' ? fromCache() : null;
    if (!cached) throw withLocalHint(e, repo);
    log(`${hub.endpoint} unreachable (${(e as Error).message}); using the cached ${repo} at ${cached.commit}`);
    return cached;
  }
  const onnx = chooseOnnxFile((p) => info.files.has(p), spec);
  if (onnx === null) {
    const have = [...info.files.keys()].filter((f) => f.endsWith('.onnx'));
    throw new Error(`${repo} (revision ${revision}) has no ONNX export at ${describeWanted(spec)}${have.length ? `; its .onnx files: ${have.join(', ')} (choose one with --model-file)` : ''}`);
  }
  if (!info.files.has('tokenizer.json')) throw new Error(`${repo} (revision ${revision}) has no tokenizer.json, which the onnx embedder needs`);
  if (spec.quantized && spec.modelFile === undefined) log(`${repo}: using the quantized ${onnx}`);

  const progress = options.progress ?? createProgress(process.stderr, log, env);
  const fetchFile = (file: string) => ensureFile(hub, cache, repo, info.commit, file, info.files.get(file), progress);
  for (const f of SETTINGS_FILES.filter((f) => info.files.has(f))) await fetchFile(f);
  const pool = poolingDir(cache.snapshotDir(info.commit));
  if (pool !== null && info.files.has(`${pool}/config.json`)) await fetchFile(`${pool}/config.json`);
  await fetchFile('tokenizer.json');
  await fetchFile(onnx);
  // Weights larger than 2 GB live beside the graph (ONNX external data).
  for (const extra of [`${onnx}_data`, `${onnx}.data`]) if (info.files.has(extra)) await fetchFile(extra);
  cache.writeRef(revision, info.commit);
  return { dir: cache.snapshotDir(info.commit), modelFile: onnx, name: `onnx:${repo}`, source: 'hub', repo, revision, commit: info.commit };
}

/** A not-found or network error about an id that might have been meant as a local directory. */
function withLocalHint(e: unknown, repo: string): unknown {
  if (!(e instanceof HubError) || (e.code !== 'not_found' && e.code !== 'network')) return e;
  return new HubError(e.code, `${e.message}; there is no local directory ${path.resolve(repo)} either`, { cause: e });
}

/** The revision's snapshot when it holds tokenizer.json and the ONNX file, else null. */
function cachedSnapshot(cache: RepoCache, spec: ModelSpec, revision: string): ResolvedModel | null {
  const commit = cache.commitOf(revision);
  if (!commit || !cache.hasFile(commit, 'tokenizer.json')) return null;
  const onnx = chooseOnnxFile((p) => cache.hasFile(commit, p), spec);
  if (onnx === null) return null;
  return { dir: cache.snapshotDir(commit), modelFile: onnx, name: `onnx:${cache.repo}`, source: 'hub', repo: cache.repo, revision, commit };
}

/** One file of a snapshot: already linked, or its blob already stored (another revision had it), or downloaded. */
async function ensureFile(hub: HubClient, cache: RepoCache, repo: string, commit: string, file: string, remote: RemoteFile | undefined, progress: Progress): Promise<void> {
  if (cache.hasFile(commit, file)) return;
  const known = remote?.sha256 ?? remote?.blobId;
  if (known && isBlobName(known) && existsSync(cache.blobPath(known))) {
    cache.link(cache.blobPath(known), commit, file);
    return;
  }
  const meta = await hub.fileMetadata(repo, commit, file);
  if (meta.commit !== null && meta.commit !== commit) {
    throw new HubError('protocol', `${repo}: ${file} was asked at commit ${commit} and the hub answered for ${meta.commit}`);
  }
  const blob = cache.blobPath(meta.etag);
  if (!existsSync(blob)) {
    const incomplete = `${blob}.incomplete`;
    mkdirSync(path.dirname(blob), { recursive: true });
    progress.start(`${repo}/${file}`, meta.size);
    try {
      await hub.download(meta, remote, incomplete, (done, total) => progress.update(done, total));
    } finally {
      progress.end();
    }
    cache.commitBlob(incomplete, meta.etag, commit, file);
    return;
  }
  cache.link(blob, commit, file);
}
