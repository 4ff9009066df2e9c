/**
 * What a sentence-transformers model directory says about turning token states into one
 * embedding: `modules.json` names the Pooling module's folder (usually `1_Pooling`), whose
 * `config.json` sets the mode. Mean and CLS pooling are supported; a mode this server
 * cannot do is a start-up error rather than silently different embeddings.
 *
 * (`max_seq_length` from `sentence_bert_config.json` is read by the onnx embedder with the
 * rest of its length defaults; normalization is always applied — see docs/models.md.)
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

export type Pooling = 'mean' | 'cls';

/** Files (relative paths) that carry a model's sentence-transformers settings, fetched with it when present. */
export const SETTINGS_FILES = ['config.json', 'sentence_bert_config.json', 'modules.json', 'tokenizer_config.json', 'special_tokens_map.json'];
export const DEFAULT_POOLING_DIR = '1_Pooling';

function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`, { cause: e });
  }
}

/** The Pooling module's folder from modules.json (a relative path), or null when there is none. */
export function poolingDir(dir: string): string | null {
  const modules = path.join(dir, 'modules.json');
  if (!existsSync(modules)) return existsSync(path.join(dir, DEFAULT_POOLING_DIR, 'config.json')) ? DEFAULT_POOLING_DIR : null;
  const list = readJson(modules);
  if (!Array.isArray(list)) throw new Error(`${modules}: expected a list of modules`);
  for (const m of list as Array<{ type?: unknown; path?: unknown }>) {
    if (typeof m?.type === 'string' && m.type.endsWith('.Pooling') && typeof m.path === 'string') {
      if (m.path.split('/').includes('..') || path.isAbsolute(m.path)) throw new Error(`${modules}: the Pooling path ${m.path} leaves the model directory`);
      return m.path;
    }
  }
  return null;
}

const MODE_FLAGS: Record<string, string> = {
  pooling_mode_cls_token: 'cls',
  pooling_mode_mean_tokens: 'mean',
  pooling_mode_max_tokens: 'max',
  pooling_mode_mean_sqrt_len_tokens: 'mean_sqrt_len',
  pooling_mode_weightedmean_tokens: 'weightedmean',
  pooling_mode_lasttoken: 'lasttoken',
};

/** The model's pooling: from its Pooling module config when present, else mean. */
export function readPooling(dir: string): Pooling {
  const sub = poolingDir(dir);
  if (sub === null) return 'mean';
  const file = path.join(dir, sub, 'config.json');
  if (!existsSync(file)) return 'mean';
  const cfg = readJson(file) as Record<string, unknown>;
  const modes = Object.entries(MODE_FLAGS)
    .filter(([flag]) => cfg[flag] === true)
    .map(([, mode]) => mode);
  if (modes.length === 0) return 'mean';
  if (modes.length === 1 && (modes[0] === 'mean' || modes[0] === 'cls')) return modes[0];
  throw new Error(`${file}: pooling ${modes.join(' + ')} is not supported (this server pools by mean or cls)`);
}
