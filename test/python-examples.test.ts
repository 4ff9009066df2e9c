/**
 * docs/python.md's examples, run as written with Debian's Python against real servers, so
 * they cannot rot: every fenced block marked ` ```python file=NAME ` is written to NAME and
 * run; the ` ```text file=requirements.txt ` block is what the virtual environment gets
 * (built once per requirements, cached under /var/cache/memory-server/). Skipped, with the
 * reason printed, only when /usr/bin/python3 is missing (.ci/run installs python3-venv).
 */
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferenceServer } from '../ts/server/inference.js';
import { MemoryServer } from '../ts/server/memory.js';
import { connect, httpRequest, silentLogger } from './helpers/ws-client.js';

const run = promisify(execFile);
const PYTHON = '/usr/bin/python3';
const DOC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'docs', 'python.md');
const TOKEN = 'python-example-token';
const available = existsSync(PYTHON);
if (!available) console.warn(`skipping the Python examples: ${PYTHON} (Debian's python3) is missing (apt-get install python3-venv)`);

/** The blocks of a page marked with a file name: ` ```lang file=NAME `. */
function fileBlocks(markdown: string): Map<string, string> {
  const blocks = new Map<string, string>();
  for (const m of markdown.matchAll(/^```\w+ file=(\S+)\n([\s\S]*?)^```$/gm)) blocks.set(m[1]!, m[2]!);
  return blocks;
}

function writableDir(dir: string): boolean {
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** A virtual environment of Debian's Python with `requirements` installed; its python. Built once per requirements. */
async function pythonWith(requirements: string): Promise<string> {
  const { stdout: version } = await run(PYTHON, ['--version']);
  const key = createHash('sha256').update(version).update(requirements).digest('hex').slice(0, 12);
  const cache = writableDir('/var/cache/memory-server') ? '/var/cache/memory-server' : tmpdir();
  const dir = path.join(cache, `python-examples-${key}`);
  const python = path.join(dir, 'bin', 'python');
  // The marker is written last: a half-built environment (an interrupted run) is rebuilt.
  if (existsSync(path.join(dir, '.complete'))) return python;
  rmSync(dir, { recursive: true, force: true });
  await run(PYTHON, ['-m', 'venv', dir]);
  writeFileSync(path.join(dir, 'requirements.txt'), requirements);
  await run(python, ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '-r', path.join(dir, 'requirements.txt')], {
    timeout: 300_000,
  });
  writeFileSync(path.join(dir, '.complete'), '');
  return python;
}

describe.skipIf(!available)('docs/python.md examples, run with Debian’s Python', () => {
  const blocks = fileBlocks(readFileSync(DOC, 'utf8'));
  let work: string;
  let python: string;
  let memory: MemoryServer;
  let inference: InferenceServer;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'memsrv-python-'));
    for (const [file, code] of blocks) writeFileSync(path.join(work, file), code);
    python = await pythonWith(blocks.get('requirements.txt') ?? '');
    const common = { host: '127.0.0.1', port: 0, portRange: 0, logger: silentLogger, printListening: false, closeTimeoutMs: 2_000, token: TOKEN };
    memory = new MemoryServer({ ...common, dataDir: path.join(work, 'data') });
    inference = new InferenceServer(common);
    await memory.listen();
    await inference.listen();
    env = {
      ...process.env,
      MEMORY_URL: `http://127.0.0.1:${memory.port}`,
      INFERENCE_URL: `http://127.0.0.1:${inference.port}/v1`,
      MEMORY_SERVER_TOKEN: TOKEN,
      // httpx honours proxy variables: the servers are local.
      NO_PROXY: '127.0.0.1,localhost',
      no_proxy: '127.0.0.1,localhost',
    };
  }, 360_000);
  afterAll(async () => {
    await memory?.close();
    await inference?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** Runs one example (asynchronously: the servers answering it share this event loop); its stdout. */
  async function runExample(file: string): Promise<string> {
    expect(blocks.has(file), `docs/python.md has no block file=${file}`).toBe(true);
    try {
      const { stdout } = await run(python, [path.join(work, file)], { env, cwd: work, timeout: 60_000 });
      return stdout;
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      throw new Error(`${file} failed: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`, { cause: err });
    }
  }

  it('the page holds the requirements and every example', () => {
    expect([...blocks.keys()].sort()).toEqual(['embeddings_httpx.py', 'embeddings_openai.py', 'memories_http.py', 'requirements.txt', 'subscribe_websockets.py']);
    for (const pin of blocks.get('requirements.txt')!.trim().split('\n')) expect(pin).toMatch(/^[a-z-]+==\d+(\.\d+)+$/);
  });

  it('embeddings_openai.py: the openai client with base_url, vectors, a refused request', async () => {
    const before = inference.batcher.requests;
    const out = await runExample('embeddings_openai.py');
    expect(out).toMatch(/^hash-v1: 3 vectors of 384 dims, \d+ tokens$/m);
    expect(out).toMatch(/^refused \(400, param dimensions\): dimensions: 7 is not available/m);
    expect(inference.batcher.requests).toBe(before + 1);
  }, 90_000);

  it('embeddings_httpx.py: a plain POST with base64 vectors', async () => {
    const out = await runExample('embeddings_httpx.py');
    expect(out).toMatch(/^hash-v1: 384 dims, norm 1\.0000$/m);
  }, 90_000);

  it('subscribe_websockets.py: a subscriber sees the memory another connection stored', async () => {
    const out = await runExample('subscribe_websockets.py');
    const id = /^stored (\S+) /m.exec(out)?.[1];
    expect(id, out).toBeDefined();
    expect(out).toMatch(/^event memory_added seq \d+: The user prefers dark mode$/m);
    const c = await connect(`ws://127.0.0.1:${memory.port}`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    try {
      const got = await c.request('get', { id });
      expect(got.data).toMatchObject({ id, text: 'The user prefers dark mode', metadata: { type: 'preference' } });
    } finally {
      c.close();
    }
  }, 90_000);

  it('memories_http.py: the memory HTTP API with httpx', async (ctx) => {
    const probe = await httpRequest(memory.port, 'POST', '/v1/memories', { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, '{}');
    if (probe.status === 404) ctx.skip('needs the HTTP API (POST /v1/memories answers 404 on this build)');
    const out = await runExample('memories_http.py');
    expect(out).toMatch(/^stored \S+$/m);
    expect(out).toMatch(/^deleted$/m);
  }, 90_000);
});
