/**
 * The `memory-server` CLI: start (memory + inference servers), export, import, compact, repair,
 * mcp (the MCP server over stdio: cli/mcp.ts).
 * Exit codes: 0 ok, 1 runtime error, 2 usage error. Loaded by main.ts, which reports a
 * missing native addon or uWebSockets.js build in one line.
 */
import { createWriteStream } from 'node:fs';
import path from 'node:path';
import { pino, destination, type Logger } from 'pino';
import WebSocket from 'ws';
import { createEmbedder, type Embedder, type EmbedderOptions } from '../embedder.js';
import { HASH_DIMS, MemoryStore, NativeError, repair, type LostRange } from '../native.js';
import { createServers, type Servers, type SharedServerOptions } from '../servers.js';
import { startControlCenter, type RunningControlCenter } from '../control/index.js';
import { VERSION } from '../version.js';
import { f32 } from '../server/memory.js';
import { isoOf } from '../server/memory-convert.js';
import { UsageError, helpText, parseArgs, resolveConfig, type CliConfig } from './config.js';
import { runImport } from './import.js';
import { modelLabel, resolveCliModel, runModels } from './models.js';
import type { ResolvedModel } from '../models/resolve.js';
import type { ClusterOptions } from '../cluster/options.js';

const out = (s: string): void => void process.stdout.write(`${s}\n`);
const err = (s: string): void => void process.stderr.write(`${s}\n`);

/**
 * `--model` resolved once per run by main() (a hub id becomes its cached snapshot
 * directory), so every embedder this process or its children make loads the same files.
 */
let resolvedModel: ResolvedModel | undefined;

/** Embedder options from the CLI config (in-process, children and offline commands). */
function embedderOptions(cfg: CliConfig): EmbedderOptions {
  const o: EmbedderOptions = { kind: cfg.embedder ?? (cfg.model !== undefined ? 'onnx' : 'hash') };
  if (cfg.model !== undefined) {
    o.model = resolvedModel?.dir ?? path.resolve(cfg.model);
    if (resolvedModel) {
      o.modelFile = resolvedModel.modelFile;
      o.modelName = resolvedModel.name;
    }
    o.device = cfg.device;
    if (cfg.maxLength !== undefined) o.maxLength = cfg.maxLength;
    if (cfg.threads !== undefined) o.threads = cfg.threads;
    if (cfg.maxBatch !== undefined) o.maxBatch = cfg.maxBatch;
  }
  return o;
}

async function embedderFor(cfg: CliConfig): Promise<Embedder> {
  return createEmbedder(embedderOptions(cfg));
}

// ---------------------------------------------------------------- start

async function start(cfg: CliConfig): Promise<void> {
  const logger: Logger = pino({ level: cfg.logLevel, base: { pid: process.pid } }, destination({ dest: 2, sync: true }));
  if (cfg.control) return startSupervised(cfg, logger);
  const common = { ...connectionOptions(cfg), logger };
  let servers: Servers;
  let embedder: Embedder;
  try {
    embedder = await createEmbedder({ ...embedderOptions(cfg), log: (m) => logger.warn(m) });
    servers = await createServers({
      ...common,
      embedder,
      memory: memoryOptions(cfg),
      inference: inferenceOptions(cfg),
    });
  } catch (e) {
    err(`memory-server: ${(e as Error).message}`);
    process.exit(1);
  }
  const scheme = cfg.tlsCert ? 'wss' : 'ws';
  const hostText = cfg.host.includes(':') ? `[${cfg.host}]` : cfg.host;
  out('');
  out(`memory-server ${VERSION}`);
  out(`  memory server     ${scheme}://${hostText}:${servers.memory!.port}   (data ${path.resolve(cfg.dataDir)}, fsync ${cfg.fsync})`);
  if (servers.inference) {
    out(`  inference server  ${scheme}://${hostText}:${servers.inference.port}   (model ${embedder.name}, ${embedder.device})`);
  }
  out('  Ctrl-C to stop');
  out('');

  stopOnSignals(async () => {
    await servers.close();
    await embedder.close?.();
  }, logger);
}

/**
 * `start` with the control center: memory and inference run as supervised child processes
 * (configuration goes down over IPC, never in argv); the control center serves the
 * dashboard, status WebSocket, REST and /metrics.
 */
async function startSupervised(cfg: CliConfig, logger: Logger): Promise<void> {
  const shared = { ...connectionOptions(cfg), logLevel: cfg.logLevel };
  let running: RunningControlCenter;
  try {
    running = await startControlCenter({
      ...shared,
      logger,
      port: cfg.controlPort,
      statusIntervalMs: cfg.statusIntervalMs,
      dataDir: cfg.dataDir,
      servers: shared,
      embedder: embedderOptions(cfg),
      memory: memoryOptions(cfg),
      inference: inferenceOptions(cfg),
    });
  } catch (e) {
    err(`memory-server: ${(e as Error).message}`);
    process.exit(1);
  }
  // A component that cannot start at all (locked data directory, bad model, port taken) is a
  // start-up error; crashes after it ran are restarted by the supervisor.
  const failed = Object.values(running.components).filter((c) => c.status().state === 'error');
  if (failed.length > 0) {
    for (const c of failed) err(`memory-server: ${c.name} failed to start: ${c.status().error ?? 'unknown error'}`);
    await running.close().catch(() => undefined);
    process.exit(1);
  }
  const scheme = cfg.tlsCert ? 'wss' : 'ws';
  const http = cfg.tlsCert ? 'https' : 'http';
  const hostText = cfg.host.includes(':') ? `[${cfg.host}]` : cfg.host;
  const mem = running.components.memory?.status();
  const inf = running.components.inference?.status();
  out('');
  out(`memory-server ${VERSION}`);
  if (mem) out(`  memory server     ${scheme}://${hostText}:${mem.port}   (pid ${mem.pid}, data ${path.resolve(cfg.dataDir)}, fsync ${cfg.fsync})`);
  const modelText = resolvedModel ? ` ${modelLabel(resolvedModel)}, device ${cfg.device}` : '';
  if (inf) out(`  inference server  ${scheme}://${hostText}:${inf.port}   (pid ${inf.pid}, embedder ${embedderOptions(cfg).kind}${modelText})`);
  out(`  control center    ${http}://${hostText}:${running.port}/   (dashboard; status ${scheme}://${hostText}:${running.port}/ws)`);
  out('  Ctrl-C to stop');
  out('');

  stopOnSignals(() => running.close(), logger);
}

/** Memory server options from the CLI config (both start paths). */
function memoryOptions(cfg: CliConfig) {
  const compaction =
    cfg.compactGarbagePercent === 0 ? (false as const) : { garbageRatio: cfg.compactGarbagePercent / 100, minBytes: cfg.compactMinMb * 1024 * 1024 };
  const ann = cfg.annMinRows === undefined ? {} : { annMinRows: cfg.annMinRows };
  return { port: cfg.port, dataDir: cfg.dataDir, fsync: cfg.fsync, reembed: cfg.reembed, compaction, ...ann, ...clusterOptions(cfg) };
}

/** `cluster` options from the CLI config (none without --cluster). */
function clusterOptions(cfg: CliConfig): { cluster?: ClusterOptions } {
  if (cfg.cluster === undefined) return {};
  const c: ClusterOptions = { servers: cfg.cluster };
  const set = <K extends keyof ClusterOptions>(k: K, v: ClusterOptions[K] | undefined): void => {
    if (v !== undefined) c[k] = v;
  };
  set('name', cfg.clusterName);
  set('nodeId', cfg.nodeId);
  set('replicas', cfg.clusterReplicas);
  set('publishTimeoutMs', cfg.clusterPublishTimeoutMs);
  set('snapshotIntervalS', cfg.clusterSnapshotIntervalS);
  set('user', cfg.clusterUser);
  set('pass', cfg.clusterPass);
  set('token', cfg.clusterToken);
  set('credsFile', cfg.clusterCreds);
  set('tlsCa', cfg.clusterTlsCa);
  set('tlsCert', cfg.clusterTlsCert);
  set('tlsKey', cfg.clusterTlsKey);
  return { cluster: c };
}

/** Inference server options from the CLI config, or false with --no-inference. */
function inferenceOptions(cfg: CliConfig) {
  if (!cfg.inference) return false as const;
  return {
    port: cfg.inferencePort,
    portRange: cfg.inferencePort === 0 ? 0 : 9,
    ...(cfg.maxBatch ? { maxBatch: cfg.maxBatch } : {}),
    ...(cfg.maxQueue ? { maxQueue: cfg.maxQueue } : {}),
    ...(cfg.batchWaitMs !== undefined ? { maxWaitMs: cfg.batchWaitMs } : {}),
    // The inference server serves the old embedder until the memory server's re-embedding switches.
    ...(cfg.reembed ? { followDataDir: path.resolve(cfg.dataDir) } : {}),
  };
}

/** Connection-layer options shared by every server the CLI starts. */
function connectionOptions(cfg: CliConfig): SharedServerOptions {
  return {
    host: cfg.host,
    compression: cfg.compression,
    ...(cfg.origins ? { origins: cfg.origins } : {}),
    ...(cfg.allowedHosts ? { allowedHosts: cfg.allowedHosts } : {}),
    ...(cfg.token ? { token: cfg.token } : {}),
    ...(cfg.jwtSecret ? { jwtSecret: cfg.jwtSecret } : {}),
    ...(cfg.jwtRequireExp ? { jwtRequireExp: true } : {}),
    ...(cfg.jwtAudience ? { jwtAudience: cfg.jwtAudience } : {}),
    ...(cfg.jwtIssuer ? { jwtIssuer: cfg.jwtIssuer } : {}),
    ...(cfg.tlsCert ? { tlsCert: cfg.tlsCert } : {}),
    ...(cfg.tlsKey ? { tlsKey: cfg.tlsKey } : {}),
    ...(cfg.maxConnections ? { maxConnections: cfg.maxConnections } : {}),
    ...(cfg.maxConnectionsPerIp ? { maxConnectionsPerIp: cfg.maxConnectionsPerIp } : {}),
    ...(cfg.maxFrameBytes ? { maxFrameBytes: cfg.maxFrameBytes } : {}),
    ...(cfg.maxReplyBytes ? { maxReplyBytes: cfg.maxReplyBytes } : {}),
    ...(cfg.rateLimit !== undefined
      ? { rateLimit: cfg.rateLimit === 0 ? (false as const) : { messagesPerSecond: cfg.rateLimit, messagesBurst: cfg.rateLimit * 2 } }
      : {}),
  };
}

/** Ctrl-C / SIGTERM: graceful shutdown (clients closed with 1001, store flushed), then exit 0; a second signal exits at once. */
function stopOnSignals(close: () => Promise<void>, logger: Logger): void {
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) {
      err(`memory-server: ${signal} again, exiting now`);
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, 'shutting down');
    close()
      .then(() => {
        logger.flush?.();
        out('memory-server stopped');
        process.exit(0);
      })
      .catch((e: unknown) => {
        err(`memory-server: shutdown failed: ${(e as Error).message}`);
        process.exit(1);
      });
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

// ---------------------------------------------------------------- offline store access

/** Opens a stopped data directory (dims from the directory when they differ from the embedder's). */
async function openOffline(cfg: CliConfig, embedder: Embedder | null): Promise<MemoryStore> {
  const dir = path.resolve(cfg.dataDir);
  const open = (dims: number) =>
    MemoryStore.openAsync(dir, {
      dims,
      fsync: cfg.fsync,
      ...(embedder ? { embedderName: embedder.name, embedderHash: embedder.hash } : {}),
    });
  try {
    try {
      // Without an embedder (export), try the default dims first; the error names the real ones.
      return await open(embedder?.dims ?? HASH_DIMS);
    } catch (e) {
      const m = /holds (\d+)-dimensional vectors/.exec((e as Error).message);
      if (!embedder && m) return await open(Number(m[1]));
      throw e;
    }
  } catch (e) {
    if (e instanceof NativeError && e.code === 'locked') {
      throw new Error(`data directory ${dir} is in use by a running memory server; stop it first${cfg.url === undefined ? ' (or export with --url ws://…)' : ''}`, {
        cause: e,
      });
    }
    throw new Error(`cannot open data directory ${dir}: ${(e as Error).message}`, { cause: e });
  }
}

function writeLine(stream: NodeJS.WritableStream, line: string): Promise<void> {
  return new Promise((resolve) => {
    if (stream.write(`${line}\n`)) resolve();
    else stream.once('drain', () => resolve());
  });
}

async function exportOffline(cfg: CliConfig, target: NodeJS.WritableStream): Promise<number> {
  const store = await openOffline(cfg, null);
  let n = 0;
  try {
    let after = 0;
    for (;;) {
      const page = store.export(after, 1000);
      if (page.length === 0) break;
      for (const m of page) {
        const rec: Record<string, unknown> = {
          namespace: m.namespace,
          id: m.id,
          text: m.text,
          metadata: JSON.parse(m.metadata || '{}'),
          significance: f32(m.significance),
          timestamp: isoOf(m.timestamp),
          associations: m.associations,
        };
        if (m.expiresAt !== undefined && m.expiresAt !== null) rec.expires_at = isoOf(m.expiresAt);
        rec.embedding = m.embedding ? Array.from(m.embedding, f32) : [];
        await writeLine(target, JSON.stringify(rec));
        n++;
      }
      after = page[page.length - 1]!.seq;
    }
  } finally {
    store.close();
  }
  return n;
}

/** Export from a running server: namespaces → list pages → get with embeddings. */
async function exportOnline(cfg: CliConfig, target: NodeJS.WritableStream): Promise<number> {
  const headers: Record<string, string> = cfg.token ? { Authorization: `Bearer ${cfg.token}` } : {};
  const ws = new WebSocket(cfg.url!, { headers });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  let seq = 0;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  ws.on('message', (raw) => {
    const msg = JSON.parse(String(raw)) as { id?: number; status: string; message?: string; data?: unknown };
    const p = msg.id !== undefined ? pending.get(msg.id) : undefined;
    if (!p) return;
    pending.delete(msg.id!);
    if (msg.status === 'success') p.resolve(msg.data);
    else p.reject(new Error(msg.message ?? 'request failed'));
  });
  const request = <T>(type: string, data: unknown): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const id = ++seq;
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      ws.send(JSON.stringify({ type, id, data }));
    });
  type ListPage = { memories: Array<Record<string, unknown>>; next_cursor: string | null };
  let n = 0;
  try {
    const { namespaces } = await request<{ namespaces: Array<{ name: string }> }>('namespaces', {});
    for (const { name } of namespaces) {
      let cursor: string | null = null;
      do {
        const page: ListPage = await request<ListPage>('list', {
          namespace: name,
          limit: 1000,
          include_embeddings: true,
          ...(cursor ? { cursor } : {}),
        });
        for (const m of page.memories) {
          const { score: _s, ...rest } = m;
          await writeLine(target, JSON.stringify({ ...rest, embedding: rest.embedding ?? [] }));
          n++;
        }
        cursor = page.next_cursor;
      } while (cursor);
    }
  } finally {
    ws.close();
  }
  return n;
}

async function runExport(cfg: CliConfig, positionals: string[]): Promise<void> {
  const file = positionals[0];
  const target: NodeJS.WritableStream = file ? createWriteStream(file) : process.stdout;
  const n = cfg.url ? await exportOnline(cfg, target) : await exportOffline(cfg, target);
  if (file) await new Promise<void>((r) => (target as ReturnType<typeof createWriteStream>).end(() => r()));
  err(`exported ${n} memories${file ? ` to ${file}` : ''}`);
}

async function runImportCommand(cfg: CliConfig, positionals: string[]): Promise<void> {
  const file = positionals[0];
  if (!file) throw new UsageError('import needs a file: memory-server import f.jsonl');
  const embedder = await embedderFor(cfg);
  const code = await runImport({
    file,
    dataDir: cfg.dataDir,
    batchSize: cfg.batchSize,
    skipInvalid: cfg.skipInvalid,
    embedder,
    open: () => openOffline(cfg, embedder),
    out,
    err,
  });
  if (code !== 0) process.exit(code);
}

/** `compact`: rewrite a stopped data directory's log without deleted and expired memories. */
async function runCompact(cfg: CliConfig): Promise<void> {
  const store = await openOffline(cfg, null);
  try {
    const r = await store.compact();
    out(
      `${path.resolve(cfg.dataDir)}: compacted ${r.bytesBefore} → ${r.bytesAfter} bytes (${r.rowsBefore} → ${r.rowsAfter} rows) in ${r.durationMs} ms`,
    );
  } finally {
    store.close();
  }
}

function runRepair(cfg: CliConfig): void {
  const dir = path.resolve(cfg.dataDir);
  const r = repair(dir);
  if (r.metaReason) {
    out(`${path.join(dir, 'store.json')} was unreadable (${r.metaReason}): rebuilt from the log; the embedder is recorded at the next start`);
    out(`the old store.json kept in ${r.metaMovedTo}`);
  }
  if (r.lost.length === 0) {
    out(`${r.file}: ${r.metaReason ? 'the log is intact' : 'nothing to repair'} (${r.keptRecords} records, ${r.keptBytes} bytes)`);
    return;
  }
  out(`${r.file}: kept ${r.keptRecords} records (${r.keptBytes} bytes); lost ${r.lost.length} damaged range${r.lost.length === 1 ? '' : 's'} (${r.lostBytes} bytes):`);
  for (const l of r.lost) out(`  ${describeLost(l)}`);
  out(`damaged bytes kept in ${r.damagedTo} (described in ${r.reportTo})`);
}

/** `bytes a..b (n bytes): sequence s (1 record): reason`, as in the report beside the damaged bytes. */
function describeLost(l: LostRange): string {
  const seqs =
    l.lastSeq === undefined
      ? `sequences from ${l.firstSeq} to the end`
      : l.lastSeq === l.firstSeq
        ? `sequence ${l.firstSeq}`
        : l.lastSeq > l.firstSeq
          ? `sequences ${l.firstSeq}..${l.lastSeq}`
          : 'no sequence number missing';
  const records = l.records === undefined ? '' : ` (${l.records} record${l.records === 1 ? '' : 's'})`;
  return `bytes ${l.start}..${l.end} (${l.end - l.start} bytes): ${seqs}${records}: ${l.reason}`;
}

// ---------------------------------------------------------------- main

export async function main(): Promise<void> {
  let cfg: CliConfig;
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
    if (args.help) {
      out(helpText(VERSION, args.command));
      return;
    }
    if (args.version) {
      out(VERSION);
      return;
    }
    // `models fetch ID --revision R`: the id plays --model's part for the options that need one.
    const modelsId = args.command === 'models' ? args.positionals[1] : undefined;
    cfg = resolveConfig(modelsId !== undefined ? { ...args, flags: { model: modelsId, ...args.flags } } : args);
    if (args.command === 'start' && args.positionals.length > 0) {
      throw new UsageError(`unexpected argument "${args.positionals[0]}"`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      err(`memory-server: ${e.message}`);
      err('Run `memory-server --help` for the options.');
      process.exit(2);
    }
    throw e;
  }
  try {
    if ((args.command === 'start' || args.command === 'import') && cfg.model !== undefined && cfg.embedder !== 'hash') {
      resolvedModel = await resolveCliModel(cfg, err);
    }
    switch (args.command) {
      case 'models':
        await runModels(cfg, args.positionals, out, err);
        return;
      case 'start':
        await start(cfg);
        return;
      case 'export':
        await runExport(cfg, args.positionals);
        return;
      case 'import':
        await runImportCommand(cfg, args.positionals);
        return;
      case 'compact':
        await runCompact(cfg);
        return;
      case 'repair':
        runRepair(cfg);
        return;
      case 'mcp': {
        // Loaded only here: the MCP SDK is not needed by the other commands.
        const { runMcp } = await import('./mcp.js');
        if (args.positionals.length > 0) throw new UsageError(`unexpected argument "${args.positionals[0]}"`);
        await runMcp(cfg, { embedder: () => embedderFor(cfg), memory: memoryOptions(cfg) });
        return;
      }
    }
  } catch (e) {
    if (e instanceof UsageError) {
      err(`memory-server: ${e.message}`);
      process.exit(2);
    }
    err(`memory-server: ${(e as Error).message}`);
    process.exit(1);
  }
}
