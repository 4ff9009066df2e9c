/**
 * CLI configuration: every option as a flag, a `MEMORY_SERVER_*` env var and a
 * JSON config-file key; precedence flags > env > config file > defaults;
 * validated with zod into clear errors (exit code 2).
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { DEFAULTS } from '../protocol/constants.js';

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

type Kind = 'string' | 'int' | 'bool' | 'list';

interface OptionDef {
  /** camelCase key in the resolved config (and accepted in the config file, as is the kebab form). */
  key: string;
  flag: string;
  kind: Kind;
  description: string;
  /** Extra env names (the default one is MEMORY_SERVER_<FLAG_IN_SNAKE_CASE>). */
  env?: string[];
  /** Shown in --help. */
  defaultText?: string;
  /** A one-letter alias. */
  short?: string;
}

export const OPTIONS: OptionDef[] = [
  { key: 'host', flag: 'host', kind: 'string', description: 'bind address of both servers', defaultText: 'localhost' },
  { key: 'port', flag: 'port', kind: 'int', description: 'memory server port (0 = any free port)', defaultText: '5000', short: 'p' },
  { key: 'inferencePort', flag: 'inference-port', kind: 'int', description: 'inference server port; tries the next 9 when taken', defaultText: '5005' },
  { key: 'inference', flag: 'inference', kind: 'bool', description: 'run the inference server (--no-inference to skip)', defaultText: 'true' },
  { key: 'control', flag: 'control', kind: 'bool', description: 'run the control center and supervise both servers as child processes (--no-control: both in this process, no control center)', defaultText: 'true' },
  { key: 'controlPort', flag: 'control-port', kind: 'int', description: 'control center port (dashboard, /ws, REST, /metrics)', defaultText: '9000' },
  { key: 'statusIntervalMs', flag: 'status-interval-ms', kind: 'int', description: 'control center status broadcast period', defaultText: '2000' },
  { key: 'dataDir', flag: 'data-dir', kind: 'string', description: 'data directory', env: ['MEMORY_SERVER_DATA'], defaultText: './memory-data', short: 'd' },
  { key: 'fsync', flag: 'fsync', kind: 'string', description: 'always | interval | off', defaultText: 'always' },
  { key: 'embedder', flag: 'embedder', kind: 'string', description: 'hash (built in) | onnx', defaultText: 'onnx with --model, else hash' },
  { key: 'model', flag: 'model', kind: 'string', description: 'onnx embedder model: a directory (model.onnx + tokenizer.json) or a hub id such as sentence-transformers/all-MiniLM-L6-v2 (fetched into the Hugging Face cache; HF_ENDPOINT, HF_TOKEN, HF_HUB_CACHE, HF_HUB_OFFLINE)' },
  { key: 'revision', flag: 'revision', kind: 'string', description: 'hub model: branch, tag or commit to use', defaultText: 'main' },
  { key: 'quantized', flag: 'quantized', kind: 'bool', description: 'onnx: use the model\'s quantized ONNX variant (onnx/model_quantized.onnx, …)', defaultText: 'false' },
  { key: 'modelFile', flag: 'model-file', kind: 'string', description: 'onnx: the ONNX file inside the model directory or repository', defaultText: 'model.onnx or onnx/model.onnx' },
  { key: 'device', flag: 'device', kind: 'string', description: 'onnx: auto (CUDA if onnxruntime has it, else CPU) | cpu | cuda', defaultText: 'auto' },
  { key: 'maxLength', flag: 'max-length', kind: 'int', description: 'onnx: tokens per text after truncation', defaultText: "the model's max_seq_length" },
  { key: 'threads', flag: 'threads', kind: 'int', description: 'onnx: onnxruntime threads per process', defaultText: 'CPU cores' },
  { key: 'reembed', flag: 'reembed', kind: 'bool', description: 'a data directory written by another embedder: re-embed every memory with this one, in the background (queries use the old one until the switch)' },
  { key: 'origins', flag: 'origins', kind: 'list', description: 'allowed browser origins, comma separated (* = any)', defaultText: 'http(s)://localhost:*, http(s)://127.0.0.1:*' },
  { key: 'allowedHosts', flag: 'allowed-hosts', kind: 'list', description: 'Host header names accepted besides localhost, 127.0.0.1, [::1] and --host, comma separated (* = any; DNS rebinding guard)' },
  { key: 'token', flag: 'token', kind: 'string', description: 'shared-secret auth (Authorization: Bearer … or ?token=)' },
  { key: 'jwtSecret', flag: 'jwt-secret', kind: 'string', description: 'HS256 JWT auth key (ns claim limits namespaces)' },
  { key: 'jwtRequireExp', flag: 'jwt-require-exp', kind: 'bool', description: 'refuse JWTs without an exp claim', defaultText: 'false' },
  { key: 'jwtAudience', flag: 'jwt-audience', kind: 'list', description: 'JWT aud must be one of these, comma separated' },
  { key: 'jwtIssuer', flag: 'jwt-issuer', kind: 'list', description: 'JWT iss must be one of these, comma separated' },
  { key: 'tlsCert', flag: 'tls-cert', kind: 'string', description: 'PEM certificate: serve wss://' },
  { key: 'tlsKey', flag: 'tls-key', kind: 'string', description: 'PEM private key' },
  { key: 'compression', flag: 'compression', kind: 'bool', description: 'permessage-deflate', defaultText: 'false' },
  { key: 'logLevel', flag: 'log-level', kind: 'string', description: 'trace | debug | info | warn | error | fatal | silent', defaultText: 'info' },
  { key: 'maxConnections', flag: 'max-connections', kind: 'int', description: 'connections per server', defaultText: String(DEFAULTS.maxConnections) },
  { key: 'maxConnectionsPerIp', flag: 'max-connections-per-ip', kind: 'int', description: 'connections per client address', defaultText: String(DEFAULTS.maxConnectionsPerIp) },
  { key: 'rateLimit', flag: 'rate-limit', kind: 'int', description: 'messages/s per connection (burst 2×; 0 = off)', defaultText: String(DEFAULTS.rateLimit.messagesPerSecond) },
  { key: 'maxFrameBytes', flag: 'max-frame-bytes', kind: 'int', description: 'largest accepted frame', defaultText: String(DEFAULTS.maxFrameBytes) },
  { key: 'maxReplyBytes', flag: 'max-reply-bytes', kind: 'int', description: 'memory: byte budget of one list / retrieve reply', defaultText: String(DEFAULTS.maxReplyBytes) },
  { key: 'maxBatch', flag: 'max-batch', kind: 'int', description: 'inference: texts per embedding batch', defaultText: '256 (hash), 32 (onnx)' },
  { key: 'maxQueue', flag: 'max-queue', kind: 'int', description: 'inference: queued texts before `overloaded`', defaultText: '4096' },
  { key: 'batchWaitMs', flag: 'batch-wait-ms', kind: 'int', description: 'inference: max wait to fill a batch', defaultText: '2' },
  { key: 'url', flag: 'url', kind: 'string', description: 'export, mcp: use a running memory server (ws://…) instead of the data directory' },
  { key: 'batchSize', flag: 'batch-size', kind: 'int', description: 'import: lines per batch (lines stored like `store`: at most 1000)', defaultText: '1000' },
  { key: 'skipInvalid', flag: 'skip-invalid', kind: 'bool', description: 'import: leave out rejected lines and import the rest (without it, one rejected line imports nothing)', defaultText: 'false' },
  { key: 'compactGarbagePercent', flag: 'compact-garbage-percent', kind: 'int', description: 'compact the log automatically once this % of it is garbage (deleted/expired memories; 0 = only when asked)', defaultText: '50' },
  { key: 'compactMinMb', flag: 'compact-min-mb', kind: 'int', description: '…and the log is at least this many MiB', defaultText: '1' },
  { key: 'annMinRows', flag: 'ann-min-rows', kind: 'int', description: 'namespaces of at least this many memories get an ANN graph (approximate search, significance from the graph; docs/search.md)', defaultText: '200000' },
  { key: 'cluster', flag: 'cluster', kind: 'list', description: 'join a cluster on NATS JetStream: NATS server URLs, comma separated (nats://host:port; docs/cluster.md)' },
  { key: 'clusterName', flag: 'cluster-name', kind: 'string', description: 'cluster: its name (names the stream and buckets)', defaultText: 'memory' },
  { key: 'nodeId', flag: 'node-id', kind: 'string', description: 'cluster: this instance\'s id', defaultText: '<hostname>-<pid>-<random>' },
  { key: 'clusterReplicas', flag: 'cluster-replicas', kind: 'int', description: 'cluster: stream replicas when creating it', defaultText: '3 with ≥ 3 URLs, else 1' },
  { key: 'clusterPublishTimeoutMs', flag: 'cluster-publish-timeout-ms', kind: 'int', description: 'cluster: how long a write waits for the quorum\'s ack before `unavailable`', defaultText: '5000' },
  { key: 'clusterSnapshotIntervalS', flag: 'cluster-snapshot-interval-s', kind: 'int', description: 'cluster: seconds between snapshots by the elected instance (0 = none)', defaultText: '300' },
  { key: 'clusterUser', flag: 'cluster-user', kind: 'string', description: 'cluster: NATS user' },
  { key: 'clusterPass', flag: 'cluster-pass', kind: 'string', description: 'cluster: NATS password' },
  { key: 'clusterToken', flag: 'cluster-token', kind: 'string', description: 'cluster: NATS token' },
  { key: 'clusterCreds', flag: 'cluster-creds', kind: 'string', description: 'cluster: NATS .creds file (JWT + nkey)' },
  { key: 'clusterTlsCa', flag: 'cluster-tls-ca', kind: 'string', description: 'cluster: CA certificate (PEM) to trust for NATS' },
  { key: 'clusterTlsCert', flag: 'cluster-tls-cert', kind: 'string', description: 'cluster: client certificate (PEM) for NATS' },
  { key: 'clusterTlsKey', flag: 'cluster-tls-key', kind: 'string', description: 'cluster: client key (PEM) for NATS' },
  { key: 'config', flag: 'config', kind: 'string', description: 'JSON config file (keys as flags, kebab-case or camelCase)', short: 'c' },
];

export const envName = (o: OptionDef): string => `MEMORY_SERVER_${o.flag.toUpperCase().replace(/-/g, '_')}`;

const port = z.number().int().min(0).max(65535);
const positive = z.number().int().min(1);

export const configSchema = z
  .object({
    host: z.string().min(1).default(DEFAULTS.host),
    port: port.default(DEFAULTS.ports.memory),
    inferencePort: port.default(DEFAULTS.ports.inference),
    inference: z.boolean().default(true),
    control: z.boolean().default(true),
    controlPort: port.default(DEFAULTS.ports.control),
    statusIntervalMs: z.number().int().min(100).max(3_600_000).default(2000),
    dataDir: z.string().min(1).default('./memory-data'),
    fsync: z.enum(['always', 'interval', 'off']).default('always'),
    embedder: z.enum(['hash', 'onnx']).optional(),
    model: z.string().min(1).optional(),
    revision: z.string().min(1).optional(),
    quantized: z.boolean().default(false),
    modelFile: z.string().min(1).optional(),
    device: z.enum(['auto', 'cpu', 'cuda']).default('auto'),
    maxLength: z.number().int().min(2).max(8192).optional(),
    threads: positive.max(1024).optional(),
    reembed: z.boolean().default(false),
    origins: z.array(z.string().min(1)).min(1).optional(),
    allowedHosts: z.array(z.string().min(1)).min(1).optional(),
    token: z.string().min(1).optional(),
    jwtSecret: z.string().min(1).optional(),
    jwtRequireExp: z.boolean().default(false),
    jwtAudience: z.array(z.string().min(1)).min(1).optional(),
    jwtIssuer: z.array(z.string().min(1)).min(1).optional(),
    tlsCert: z.string().min(1).optional(),
    tlsKey: z.string().min(1).optional(),
    compression: z.boolean().default(false),
    logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
    maxConnections: positive.optional(),
    maxConnectionsPerIp: positive.optional(),
    rateLimit: z.number().int().min(0).optional(),
    maxFrameBytes: positive.optional(),
    maxReplyBytes: positive.optional(),
    maxBatch: positive.optional(),
    maxQueue: positive.optional(),
    batchWaitMs: z.number().int().min(0).max(1000).optional(),
    url: z.string().regex(/^wss?:\/\//, 'must be a ws:// or wss:// URL').optional(),
    batchSize: positive.max(100_000).default(1000),
    skipInvalid: z.boolean().default(false),
    compactGarbagePercent: z.number().int().min(0).max(99).default(50),
    compactMinMb: z.number().int().min(0).max(1024 * 1024).default(1),
    annMinRows: z.number().int().min(1).max(4_294_967_295).optional(),
    cluster: z.array(z.string().regex(/^(nats|tls):\/\/./, 'must be nats://host:port URLs')).min(1).optional(),
    clusterName: z.string().min(1).max(64).optional(),
    nodeId: z.string().min(1).max(128).optional(),
    clusterReplicas: z.number().int().min(1).max(5).optional(),
    clusterPublishTimeoutMs: z.number().int().min(100).max(600_000).optional(),
    clusterSnapshotIntervalS: z.number().int().min(0).max(86_400 * 7).optional(),
    clusterUser: z.string().min(1).optional(),
    clusterPass: z.string().min(1).optional(),
    clusterToken: z.string().min(1).optional(),
    clusterCreds: z.string().min(1).optional(),
    clusterTlsCa: z.string().min(1).optional(),
    clusterTlsCert: z.string().min(1).optional(),
    clusterTlsKey: z.string().min(1).optional(),
    config: z.string().optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    for (const k of ['jwtAudience', 'jwtIssuer'] as const) {
      if (c[k] !== undefined && c.jwtSecret === undefined) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, path: [k], message: 'only applies with --jwt-secret' });
      }
    }
    if (c.jwtRequireExp && c.jwtSecret === undefined) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['jwtRequireExp'], message: 'only applies with --jwt-secret' });
    }
    if ((c.tlsCert === undefined) !== (c.tlsKey === undefined)) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['tlsKey'], message: '--tls-cert and --tls-key go together' });
    }
    if (c.embedder === 'onnx' && c.model === undefined) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['model'], message: 'the onnx embedder needs --model DIR' });
    }
    for (const k of ['revision', 'modelFile'] as const) {
      if (c[k] !== undefined && c.model === undefined) ctx.addIssue({ code: z.ZodIssueCode.custom, path: [k], message: 'only applies with --model' });
    }
    if (c.quantized && c.model === undefined) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['quantized'], message: 'only applies with --model' });
    for (const k of ['clusterName', 'nodeId', 'clusterReplicas', 'clusterPublishTimeoutMs', 'clusterSnapshotIntervalS', 'clusterUser', 'clusterPass', 'clusterToken', 'clusterCreds', 'clusterTlsCa', 'clusterTlsCert', 'clusterTlsKey'] as const) {
      if (c[k] !== undefined && c.cluster === undefined) ctx.addIssue({ code: z.ZodIssueCode.custom, path: [k], message: 'only applies with --cluster' });
    }
    if (c.embedder === 'hash' && c.model !== undefined) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['model'], message: '--model is for the onnx embedder, not hash' });
    }
  });
export type CliConfig = z.infer<typeof configSchema>;

export const COMMANDS = ['start', 'export', 'import', 'compact', 'repair', 'models', 'mcp'] as const;
export type CliCommand = (typeof COMMANDS)[number];

export interface ParsedArgs {
  command: CliCommand;
  positionals: string[];
  help: boolean;
  version: boolean;
  /** Raw values from flags, by key. */
  flags: Record<string, unknown>;
}

const byFlag = new Map(OPTIONS.map((o) => [o.flag, o]));
const byShort = new Map(OPTIONS.filter((o) => o.short).map((o) => [o.short!, o]));
const byKey = new Map(OPTIONS.map((o) => [o.key, o]));

function convert(o: OptionDef, raw: string, source: string): unknown {
  switch (o.kind) {
    case 'string':
      return raw;
    case 'list':
      return raw
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s.length > 0);
    case 'bool': {
      const v = raw.toLowerCase();
      if (['1', 'true', 'yes', 'on', ''].includes(v)) return true;
      if (['0', 'false', 'no', 'off'].includes(v)) return false;
      throw new UsageError(`${source}: expected true or false, got "${raw}"`);
    }
    case 'int': {
      if (!/^-?\d+$/.test(raw.trim())) throw new UsageError(`${source}: expected an integer, got "${raw}"`);
      return Number(raw.trim());
    }
  }
}

/** Parses argv (without node and script). Throws UsageError. */
export function parseArgs(argv: string[]): ParsedArgs {
  const out: ParsedArgs = { command: 'start', positionals: [], help: false, version: false, flags: {} };
  let commandSeen = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--help' || a === '-h') {
      out.help = true;
      continue;
    }
    if (a === '--version' || a === '-v' || a === '-V') {
      out.version = true;
      continue;
    }
    if (a === '--') {
      out.positionals.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('-') && a !== '-') {
      let name: string;
      let value: string | undefined;
      let o: OptionDef | undefined;
      if (a.startsWith('--')) {
        const eq = a.indexOf('=');
        name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
        value = eq >= 0 ? a.slice(eq + 1) : undefined;
        o = byFlag.get(name);
        if (!o && name.startsWith('no-')) {
          const neg = byFlag.get(name.slice(3));
          if (neg && neg.kind === 'bool' && value === undefined) {
            out.flags[neg.key] = false;
            continue;
          }
        }
      } else {
        name = a.slice(1);
        o = byShort.get(name);
      }
      if (!o) throw new UsageError(`unknown option ${a}`);
      if (value === undefined) {
        if (o.kind === 'bool') {
          const next = argv[i + 1];
          if (next !== undefined && /^(true|false)$/i.test(next)) {
            value = next;
            i++;
          } else value = 'true';
        } else {
          const next = argv[i + 1];
          if (next === undefined || (next.startsWith('-') && next.length > 1 && !/^-\d/.test(next))) {
            throw new UsageError(`option --${o.flag} needs a value`);
          }
          value = next;
          i++;
        }
      }
      out.flags[o.key] = convert(o, value, `--${o.flag}`);
      continue;
    }
    if (!commandSeen && out.positionals.length === 0 && (COMMANDS as readonly string[]).includes(a)) {
      out.command = a as CliCommand;
      commandSeen = true;
      continue;
    }
    if (!commandSeen && out.positionals.length === 0 && a === 'bench') {
      throw new UsageError('`memory-server bench` is run from the repository as `pnpm bench`');
    }
    if (!commandSeen && out.positionals.length === 0 && !a.includes('.') && !a.includes('/')) {
      throw new UsageError(`unknown command "${a}" (commands: ${COMMANDS.join(', ')})`);
    }
    out.positionals.push(a);
  }
  return out;
}

function fromEnv(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const o of OPTIONS) {
    for (const name of [envName(o), ...(o.env ?? [])]) {
      const raw = env[name];
      if (raw !== undefined && raw !== '') {
        out[o.key] = convert(o, raw, name);
        break;
      }
    }
  }
  return out;
}

function fromFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read config file ${file}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`config file ${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new UsageError(`config file ${file} must hold a JSON object`);
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(json as Record<string, unknown>)) {
    const o = byFlag.get(k) ?? byKey.get(k);
    if (!o) throw new UsageError(`config file ${file}: unknown key "${k}"`);
    out[o.key] = o.kind === 'list' && typeof v === 'string' ? convert(o, v, `${file}: ${k}`) : v;
  }
  return out;
}

/** Resolves flags > env > config file > defaults and validates. Throws UsageError. */
export function resolveConfig(args: ParsedArgs, env: NodeJS.ProcessEnv = process.env): CliConfig {
  const envValues = fromEnv(env);
  const configFile = (args.flags.config as string | undefined) ?? (envValues.config as string | undefined);
  const fileValues = configFile ? fromFile(configFile) : {};
  const merged = { ...fileValues, ...envValues, ...args.flags };
  const r = configSchema.safeParse(merged);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const key = String(issue.path[0] ?? '');
    const o = byKey.get(key);
    const where = o ? `--${o.flag} (${envName(o)})` : key || 'config';
    throw new UsageError(`invalid ${where}: ${issue.message}`);
  }
  return r.data;
}

/** What each sub-command does, its usage, and the options that apply to it (by key). */
const COMMAND_HELP: Record<Exclude<CliCommand, 'start'>, { usage: string[]; about: string[]; keys: string[] }> = {
  export: {
    usage: ['memory-server export [FILE] [options]', 'memory-server export --url ws://HOST:PORT [FILE] [options]'],
    about: [
      'Writes every memory (all namespaces, with embeddings) as JSON lines to FILE or stdout.',
      'Reads a stopped data directory (--data-dir), or a running server with --url.',
    ],
    keys: ['dataDir', 'url', 'token', 'embedder', 'model', 'config', 'logLevel'],
  },
  import: {
    usage: ['memory-server import FILE|- [options]'],
    about: [
      'Loads JSON lines into a stopped data directory. Lines with associations (the export format)',
      'keep their recorded significance and associations (bulk load); other lines (e.g. {"text": …})',
      'are stored like `store`, significance and associations computed, in batches of up to 1,000.',
      'Lines without an embedding are embedded.',
      'Every line is checked first with the rules of `store`; a rejected line is reported as',
      '`line N: <field>: <reason>` and then nothing is imported (exit 1) unless --skip-invalid.',
    ],
    keys: ['dataDir', 'batchSize', 'skipInvalid', 'embedder', 'model', 'revision', 'quantized', 'modelFile', 'device', 'maxLength', 'threads', 'fsync', 'config', 'logLevel'],
  },
  compact: {
    usage: ['memory-server compact [options]'],
    about: [
      'Compacts a stopped data directory: rewrites its log with only the live memories, so',
      'deleted and expired memories leave the disk. A running server compacts by itself',
      '(--compact-garbage-percent) and on POST /api/components/memory/compact (control center).',
    ],
    keys: ['dataDir', 'config'],
  },
  models: {
    usage: ['memory-server models list', 'memory-server models fetch HUB_ID [--revision REV] [--quantized] [--model-file PATH]', 'memory-server models remove HUB_ID'],
    about: [
      'Manages the models --model HUB_ID uses, in the Hugging Face cache (HF_HUB_CACHE, else',
      '$HF_HOME/hub, else ~/.cache/huggingface/hub; shared with Python tools).',
      '  list    every cached model: revisions, snapshots, size on disk',
      '  fetch   download a model ahead of time (ONNX export, tokenizer, settings); resumes a cut download',
      '  remove  delete a model from the cache',
      'Environment: HF_ENDPOINT (a mirror), HF_TOKEN (gated models), HF_HUB_OFFLINE=1 (cache only).',
    ],
    keys: ['revision', 'quantized', 'modelFile', 'config'],
  },
  mcp: {
    usage: ['memory-server mcp [options]', 'memory-server mcp --url ws://HOST:PORT [--token T]'],
    about: [
      'Serves MCP (Model Context Protocol) over stdio, for an MCP host that starts it as a child',
      'process: tools to add, search, list, get, update and delete memories and list namespaces;',
      'the stats as resources. Uses a data directory of its own (--data-dir, no port opened), or',
      'a running memory server with --url (its --token). stdout carries MCP only; logs go to',
      'stderr. A running memory server also serves MCP over HTTP at /mcp. See docs/mcp.md.',
    ],
    keys: ['dataDir', 'url', 'token', 'fsync', 'embedder', 'model', 'revision', 'quantized', 'modelFile', 'device', 'maxLength', 'threads', 'reembed', 'maxReplyBytes', 'compactGarbagePercent', 'compactMinMb', 'annMinRows', 'config', 'logLevel'],
  },
  repair: {
    usage: ['memory-server repair [options]'],
    about: [
      'Repairs a stopped data directory: keeps every intact record of a damaged log (before and',
      'after the damage), reports the lost byte and sequence ranges, and keeps the damaged bytes',
      'aside in a file it names; rebuilds an unreadable store.json from the log.',
    ],
    keys: ['dataDir', 'config'],
  },
};

function optionLines(options: readonly OptionDef[]): string[] {
  const lines: string[] = [];
  for (const o of options) {
    const flag = `${o.short ? `-${o.short}, ` : '    '}--${o.flag}${o.kind === 'bool' ? '' : o.kind === 'int' ? ' N' : ' VALUE'}`;
    const env = [envName(o), ...(o.env ?? [])].join(', ');
    lines.push(`  ${flag.padEnd(32)} ${o.description}${o.defaultText ? ` (default ${o.defaultText})` : ''}`);
    lines.push(`  ${''.padEnd(32)} env ${env}`);
  }
  return lines;
}

/** `--help` text: the whole CLI for `start` (the default command), else that command's. */
export function helpText(version: string, command: CliCommand = 'start'): string {
  if (command !== 'start') {
    const h = COMMAND_HELP[command];
    return [
      `memory-server ${version} — ${command}`,
      '',
      'Usage:',
      ...h.usage.map((u) => `  ${u}`),
      '',
      ...h.about,
      '',
      'Options (each also as the env var shown, and as a key in --config file.json):',
      ...optionLines(h.keys.map((k) => byKey.get(k)!)),
      '',
      'Exit codes: 0 ok, 1 runtime error, 2 usage error.',
    ].join('\n');
  }
  const lines = [
    `memory-server ${version} — semantic memory service over WebSocket`,
    '',
    'Usage:',
    '  memory-server [start] [options]        run the memory and inference servers',
    '  memory-server export [options] > f.jsonl   every memory as JSON lines (stopped data dir, or --url)',
    '  memory-server import f.jsonl [options]  load JSON lines into the data directory',
    '  memory-server compact [options]         rewrite the log without deleted and expired memories',
    '  memory-server repair [options]          salvage every intact record of a damaged log, set the damage aside',
    '  memory-server models list|fetch ID|remove ID   the hub models in the Hugging Face cache (--model HUB_ID)',
    '  memory-server mcp [options]             MCP over stdio for an MCP host (own data dir, or --url)',
    '  memory-server COMMAND --help            the options of one command',
    '  memory-server --help | --version',
    '',
    'Options (each also as the env var shown, and as a key in --config file.json;',
    'precedence: flags > env > config file > defaults):',
    ...optionLines(OPTIONS),
    '',
    'Exit codes: 0 ok, 1 runtime error, 2 usage error.',
  ];
  return lines.join('\n');
}
