// Issue #23 (4): the data directory's lock must be an OS lock that no file operation can
// undo. Deleting `LOCK` under a running server used to let a second server open the same
// log and write to it too, losing acknowledged stores.
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HASH_DIMS, MemoryStore, NativeError } from '../../ts/native.js';
import { connect } from '../helpers/ws-client.js';
import { buildCli, run, startCli } from './cli-process.js';

const dirs: string[] = [];
const tempDir = (): string => {
  const d = mkdtempSync(path.join(tmpdir(), 'memsrv-lock-'));
  dirs.push(d);
  return d;
};
beforeAll(buildCli, 120_000);
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const secondServer = (dataDir: string) =>
  run(['--host', '127.0.0.1', '--port', '0', '--no-inference', '--no-control', '--data-dir', dataDir], 15_000);

function openError(dataDir: string): NativeError {
  let store: MemoryStore | undefined;
  try {
    store = MemoryStore.open(dataDir, { dims: HASH_DIMS });
  } catch (e) {
    return e as NativeError;
  }
  store.close();
  throw new Error(`a second open of ${dataDir} succeeded`);
}

describe('data directory lock', () => {
  it('holds against a second process and a second open after LOCK is deleted', async () => {
    const dataDir = tempDir();
    const first = await startCli(dataDir);
    const c = await connect(`ws://127.0.0.1:${first.memoryPort}`);
    expect((await c.request('store', { id: 'a', text: 'stored through the first server' })).status).toBe('success');

    // With LOCK in place the refusal names the directory and the holder's PID.
    const named = secondServer(dataDir);
    expect(named.status).toBe(1);
    expect(named.stderr).toMatch(/locked/);
    expect(named.stderr).toContain(dataDir);
    expect(named.stderr).toContain(`pid ${first.child.pid}`);

    rmSync(path.join(dataDir, 'LOCK'));
    const second = secondServer(dataDir);
    expect(second.status, second.stdout).toBe(1);
    expect(second.stderr).toMatch(/locked/);
    expect(second.stderr).toContain(dataDir);
    // In this process too (a second open file description conflicts with the first's lock).
    const e = openError(dataDir);
    expect(e.code).toBe('locked');
    expect(e.message).toContain(dataDir);

    // The first server is unharmed and everything it acknowledged survives.
    expect((await c.request('store', { id: 'b', text: 'stored after the refused opens' })).status).toBe('success');
    c.close();
    expect(await first.stop()).toBe(0);
    const exp = run(['export', '--data-dir', dataDir]);
    expect(exp.status, exp.stderr).toBe(0);
    expect(exp.stdout.trim().split('\n').map((l) => JSON.parse(l).id).sort()).toEqual(['a', 'b']);
  }, 90_000);

  it('holds in one process after LOCK is deleted, and is released at close', () => {
    const dataDir = tempDir();
    const s = MemoryStore.open(dataDir, { dims: HASH_DIMS });
    expect(existsSync(path.join(dataDir, 'LOCK'))).toBe(true);
    rmSync(path.join(dataDir, 'LOCK'));
    expect(openError(dataDir).code).toBe('locked');
    s.close();
    MemoryStore.open(dataDir, { dims: HASH_DIMS }).close();
  });
});
