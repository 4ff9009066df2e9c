/**
 * Builds what forked children and the browser load (dist/ via tsc, dist/dashboard via
 * esbuild) when it is missing or older than its sources. A lock directory keeps test
 * files running in parallel from compiling over each other (a child forked while
 * another tsc rewrites dist/ could load a half-written file).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';

export const root = path.resolve(__dirname, '..', '..');

function newest(dir: string): number {
  if (!existsSync(dir)) return 0;
  return Math.max(
    0,
    ...readdirSync(dir, { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => statSync(path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name)).mtimeMs),
  );
}

const mtime = (p: string): number => (existsSync(p) ? statSync(p).mtimeMs : 0);

function withLock(fn: () => void): void {
  const lock = path.join(root, '.vitest-tmp', 'build.lock');
  mkdirSync(path.dirname(lock), { recursive: true });
  const end = Date.now() + 170_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      // a lock left by a killed run
      if (Date.now() - mtime(lock) > 300_000) rmSync(lock, { recursive: true, force: true });
      if (Date.now() > end) throw new Error(`build lock ${lock} held too long`);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
    }
  }
  try {
    fn();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/** dist/control/child.js (and the rest of dist/) up to date; with `dashboard`, dist/dashboard too. */
export function ensureBuilt(options: { dashboard?: boolean } = {}): void {
  const child = path.join(root, 'dist/control/child.js');
  const app = path.join(root, 'dist/dashboard/app.js');
  const tsStale = (): boolean =>
    mtime(child) <
    Math.max(
      ...['ts/control', 'ts/server', 'ts/protocol', 'ts/onnx', 'ts/cli', 'ts/mcp', 'ts/client', 'ts/cluster'].map((d) => newest(path.join(root, d))),
      ...['ts/native.ts', 'ts/embedder.ts', 'ts/servers.ts'].map((f) => mtime(path.join(root, f))),
    );
  // The dashboard bundles ts/dashboard and the protocol types it imports.
  const dashStale = (): boolean =>
    !!options.dashboard && mtime(app) < Math.max(...['ts/dashboard', 'ts/protocol'].map((d) => newest(path.join(root, d))));
  if (tsStale() || dashStale()) {
    withLock(() => {
      if (tsStale()) {
        try {
          execFileSync(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: root, stdio: 'pipe' });
        } catch {
          // type errors elsewhere do not stop emit; the existence check below is what matters
        }
      }
      if (dashStale()) execFileSync(process.execPath, [path.join(root, 'scripts/build-dashboard.mjs')], { cwd: root, stdio: 'pipe' });
    });
  }
  if (!existsSync(child)) throw new Error('dist/control/child.js missing: build with `npx tsc -p tsconfig.json`');
  if (options.dashboard && !existsSync(app)) throw new Error('dist/dashboard/app.js missing: run `node scripts/build-dashboard.mjs`');
}
