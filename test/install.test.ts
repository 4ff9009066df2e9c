/**
 * What an installed package does where it cannot run: no native addon for the platform, no
 * uWebSockets.js build for the Node/glibc at hand, a command's own --help. (The packed
 * package installed from a registry is tested by scripts/install-e2e.mjs, which CI runs.)
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { UwsUnavailableError, glibcVersion, loadUws } from '../ts/server/uws.js';
import { ensureBuilt } from './helpers/build-dist.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.join(root, 'dist/cli/main.js');
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Runs the built CLI with `preload` evaluated first (to pose as another platform). */
function runCli(args: string[], preload?: string) {
  ensureBuilt();
  const dataDir = mkdtempSync(path.join(tmpdir(), 'memsrv-install-'));
  dirs.push(dataDir);
  const pre = preload ? ['--import', `data:text/javascript,${encodeURIComponent(preload)}`] : [];
  return spawnSync(process.execPath, [...pre, bin, ...args, '--data-dir', dataDir], { encoding: 'utf8', timeout: 30_000 });
}

const hasStackTrace = (s: string): boolean => /^\s+at .+[(:]\d+/m.test(s);
const glibcAtLeast = (v: string | null, want: number[]): boolean => {
  if (!v) return false;
  const have = v.split('.').map(Number);
  return have[0]! > want[0]! || (have[0] === want[0] && (have[1] ?? 0) >= want[1]!);
};

describe('uWebSockets.js build selection', () => {
  it('loads a native build, newest first, and names the one it chose', () => {
    const { build } = loadUws();
    // @btc-vision needs glibc ≥ 2.38 and Node ≥ 20; elsewhere the trufflesuite build serves Node 20.
    const expected = glibcAtLeast(glibcVersion(), [2, 38]) ? 'btc-vision' : 'trufflesuite';
    expect(build).toBe(expected);
  });

  it('pinning a build that does not exist is one UwsUnavailableError', () => {
    expect(() => loadUws('no-such-build')).toThrow(UwsUnavailableError);
  });

  it('a build that cannot load is one error naming Node, the platform, glibc and the way out', (ctx) => {
    ctx.skip(glibcAtLeast(glibcVersion(), [2, 38]), `glibc ${glibcVersion()} here: btc-vision loads, so no build fails to`);
    let error: unknown;
    try {
      loadUws('btc-vision');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(UwsUnavailableError);
    const message = (error as Error).message;
    expect(message).toContain(`Node ${process.version}`);
    expect(message).toContain(`${process.platform}-${process.arch}`);
    expect(message).toContain(`glibc ${glibcVersion()}`);
    expect(message).toMatch(/GLIBC_2\.38/);
    expect(message).toMatch(/Install Node 20|glibc ≥ 2\.38/);
  });

  it('the CLI refuses to start without a build: one line, exit 1, no stack trace', () => {
    const r = runCli(['--no-control', '--port', '0', '--inference-port', '0'], "process.env.MEMORY_SERVER_UWS = 'no-such-build';");
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^memory-server: MEMORY_SERVER_UWS=no-such-build names no uWebSockets\.js build/);
  });
});

describe('native addon', () => {
  it('on a platform without a prebuilt package: one message naming it and how to build, exit 1', () => {
    const r = runCli(['--no-control', '--port', '0', '--inference-port', '0'], "Object.defineProperty(process, 'platform', { value: 'freebsd' });");
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^memory-server: memory-server has no working native addon for freebsd-x64 \(Node v/);
    expect(r.stderr).toContain('pnpm install && pnpm build');
    expect(hasStackTrace(r.stderr)).toBe(false);
  });

  it('--help and --version need no native code', () => {
    const preload = "Object.defineProperty(process, 'platform', { value: 'freebsd' });";
    const help = runCli(['--help'], preload);
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('Usage:');
    const version = runCli(['--version'], preload);
    expect(version.stdout.trim()).toBe(JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')).version);
  });
});

describe('the published package', () => {
  it('npm pack holds dist/, the loader, docs, README and LICENSE: no tests, benches, sources, maps or .node', () => {
    ensureBuilt();
    const r = spawnSync('npm', ['pack', '--dry-run', '--json'], { cwd: root, encoding: 'utf8', timeout: 60_000 });
    expect(r.error, 'npm must be on PATH').toBeUndefined();
    expect(r.status).toBe(0);
    const files: string[] = JSON.parse(r.stdout)[0].files.map((f: { path: string }) => f.path);
    for (const f of ['LICENSE', 'README.md', 'package.json', 'native/index.cjs', 'native/index.d.cts', 'dist/cli/main.js', 'dist/index.d.ts']) {
      expect(files).toContain(f);
    }
    const stray = files.filter(
      (f) => !/^(dist\/|docs\/[^/]+\.md$|native\/index\.(cjs|d\.cts)$|LICENSE$|README\.md$|package\.json$)/.test(f) || /\.(node|map)$/.test(f),
    );
    expect(stray).toEqual([]);
    const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
    expect(pkg.scripts.postinstall).toBeUndefined();
    expect(pkg.dependencies['onnxruntime-node']).toBeUndefined();
    expect(pkg.peerDependenciesMeta['onnxruntime-node'].optional).toBe(true);
  });
});

describe('each command has its own --help', () => {
  for (const command of ['export', 'import', 'repair']) {
    it(command, () => {
      const r = runCli([command, '--help']);
      expect(r.status).toBe(0);
      expect(r.stdout).toContain(`memory-server ${command}`);
      expect(r.stdout).toContain('--data-dir');
      // Options of other commands are not listed.
      expect(r.stdout).not.toContain('--control-port');
    });
  }
});
