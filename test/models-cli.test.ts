/**
 * `memory-server models list | fetch | remove` and `start --model <hub id>` as a user runs
 * them: the built CLI in a child process, against the loopback hub (test/helpers/fake-hub.ts)
 * with its own HF_HUB_CACHE. The CLI runs asynchronously — the hub lives in this process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, root } from './helpers/build-dist.js';
import { commitId, startFakeHub, type FakeHub } from './helpers/fake-hub.js';
import { connect } from './helpers/ws-client.js';
import { formatBytes } from '../ts/models/progress.js';

const bin = path.join(root, 'dist/cli/main.js');
const FIXTURE = path.join(root, 'test/fixtures/tiny-bert');
const file = (f: string): Buffer => readFileSync(path.join(FIXTURE, f));
const COMMIT = commitId('cli main');
const TOTAL = formatBytes(['model.onnx', 'tokenizer.json', 'config.json'].reduce((n, f) => n + file(f).length, 0));
const dirs: string[] = [];
const tempDir = (): string => {
  const d = mkdtempSync(path.join(tmpdir(), 'memsrv-models-cli-'));
  dirs.push(d);
  return d;
};

let hub: FakeHub;
let cache: string;
const started: ChildProcess[] = [];

beforeAll(async () => {
  ensureBuilt();
  hub = await startFakeHub({
    'acme/tiny': { revisions: { main: { commit: COMMIT, files: { 'onnx/model.onnx': file('model.onnx'), 'tokenizer.json': file('tokenizer.json'), 'config.json': file('config.json') } } } },
  });
  cache = tempDir();
}, 180_000);
afterEach(() => {
  for (const c of started.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});
afterAll(async () => {
  await hub?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const hubEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({ ...process.env, HF_ENDPOINT: hub.endpoint, HF_HUB_CACHE: cache, ...extra });

/** Runs the CLI to its end (bounded), without blocking this process's event loop. */
function run(args: string[], env: NodeJS.ProcessEnv = hubEnv()): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    started.push(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`memory-server ${args.join(' ')} did not finish: ${stdout}\n${stderr}`));
    }, 30_000);
    child.once('exit', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

describe('memory-server models', () => {
  it('list, fetch, list, remove, list', async () => {
    const empty = await run(['models', 'list']);
    expect(empty.status).toBe(0);
    expect(empty.stdout).toContain(`no models in ${cache}`);

    const fetched = await run(['models', 'fetch', 'acme/tiny']);
    expect(fetched.stderr).not.toMatch(/\r/); // not a terminal: no progress bar, one line per file
    expect(fetched.status).toBe(0);
    expect(fetched.stderr).toContain(`fetching acme/tiny/onnx/model.onnx (${formatBytes(file('model.onnx').length)})`);
    expect(fetched.stdout).toContain(`acme/tiny main → ${COMMIT}`);
    expect(fetched.stdout).toContain(path.join(cache, 'models--acme--tiny', 'snapshots', COMMIT, 'onnx/model.onnx'));

    const listed = await run(['models', 'list']);
    expect(listed.status).toBe(0);
    expect(listed.stdout).toMatch(new RegExp(`acme/tiny {2}${TOTAL.replace('.', '\\.')} {2}main→${COMMIT.slice(0, 12)} {2}1 snapshot`));

    const removed = await run(['models', 'remove', 'acme/tiny']);
    expect(removed.status).toBe(0);
    expect(removed.stdout).toContain(`removed acme/tiny (${TOTAL}) from ${cache}`);
    expect(existsSync(path.join(cache, 'models--acme--tiny'))).toBe(false);
    expect((await run(['models', 'list'])).stdout).toContain('no models in');

    const again = await run(['models', 'remove', 'acme/tiny']);
    expect(again.status).toBe(1);
    expect(again.stderr).toContain(`memory-server: acme/tiny is not in the cache ${cache}`);
  });

  it('usage errors exit 2 with the reason', async () => {
    for (const [args, message] of [
      [['models'], 'models needs a sub-command: list, fetch ID or remove ID'],
      [['models', 'frob'], 'unknown models sub-command "frob" (list, fetch, remove)'],
      [['models', 'fetch'], 'models fetch needs a hub model id'],
      [['models', 'fetch', 'a/b/c'], 'not a hub model id: a/b/c'],
      [['models', 'list', 'extra'], 'unexpected argument "extra"'],
      [['--revision', 'v1'], 'invalid --revision (MEMORY_SERVER_REVISION): only applies with --model'],
    ] as const) {
      const r = await run([...args]);
      expect(r.stderr).toContain(message);
      expect(r.status).toBe(2);
    }
    expect((await run(['models', '--help'])).stdout).toContain('memory-server models fetch HUB_ID [--revision REV]');
  });

  it('fetch of a model the hub does not have exits 1 naming it', async () => {
    const r = await run(['models', 'fetch', 'acme/missing']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/acme\/missing \(revision main\): no such model or revision on http:\/\/127\.0\.0\.1:\d+ \(HTTP 404\)/);
  });

  it('start --model <hub id> fetches once in the CLI and runs both supervised servers on the snapshot; offline it reuses it', async () => {
    const data = tempDir();
    const args = ['start', '--model', 'acme/tiny', '--device', 'cpu', '--threads', '1', '--host', '127.0.0.1', '--port', '0', '--inference-port', '0', '--control-port', '0', '--data-dir', data, '--log-level', 'warn'];
    for (const env of [hubEnv(), hubEnv({ HF_HUB_OFFLINE: '1' })]) {
      hub.requests.length = 0;
      const child = spawn(process.execPath, [bin, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      started.push(child);
      let stdout = '';
      let stderr = '';
      child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      const deadline = Date.now() + 60_000;
      while (!stdout.includes('Ctrl-C to stop')) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`CLI did not start: ${stdout}\n${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(stdout).toContain(`embedder onnx acme/tiny@${COMMIT.slice(0, 12)} (${path.join(cache, 'models--acme--tiny', 'snapshots', COMMIT)}), device cpu`);
      const port = (name: string): number => Number(new RegExp(`${name}\\s+ws://[^\\s]+:(\\d+)`).exec(stdout)![1]);
      const mem = await connect(`ws://127.0.0.1:${port('memory server')}`);
      const inf = await connect(`ws://127.0.0.1:${port('inference server')}`);
      const ms = (await mem.request('stats')).data;
      const is = (await inf.request('stats')).data;
      for (const st of [ms, is]) expect(st.model).toBe('onnx:acme/tiny');
      await mem.request('store', { text: 'the hub model stores this' });
      expect((await mem.request('retrieve', { query: 'the hub model stores this', count: 1 })).data.memories[0].text).toBe('the hub model stores this');
      mem.close();
      inf.close();
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      if (env.HF_HUB_OFFLINE) expect(hub.requests).toEqual([]);
      // The CLI fetched; the children were handed the snapshot and asked the hub nothing.
      else expect(hub.requests.filter((r) => r.url.startsWith('/api/'))).toHaveLength(1);
    }
  });

  it('start --model <hub id> offline without a cached copy exits 1 with what to do', async () => {
    const r = await run(['start', '--model', 'acme/other', '--no-control', '--port', '0', '--inference-port', '0', '--data-dir', tempDir()], hubEnv({ HF_HUB_OFFLINE: '1' }));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/memory-server: HF_HUB_OFFLINE is set and acme\/other \(revision main\) is not in the cache .*memory-server models fetch acme\/other/);
  });
});
