#!/usr/bin/env node
/**
 * Packs what `npm publish` would publish, the napi-rs way, into .release/*.tgz:
 *   memory-server-linux-x64-gnu-<v>.tgz, memory-server-linux-arm64-gnu-<v>.tgz  (one `.node` each)
 *   memory-server-<v>.tgz  (dist/, the generated loader, docs; `optionalDependencies` on the above)
 *
 * It works on a staging copy (.release/stage), so the repository's package.json is never
 * rewritten: the addons go in as napi artifacts (`napi artifacts`), `napi pre-publish
 * --skip-optional-publish` writes the main package's optionalDependencies for the targets
 * that were built, and `npm pack` packs each package.
 *
 * Inputs: dist/ and native/memory-node.linux-x64-gnu.node from `pnpm build` (run first unless
 * --no-build), and the arm64 addon from `scripts/build-arm64.sh addon` if it is in
 * npm/linux-arm64-gnu/ (or --arm64 PATH). Targets without an addon are left out, and said so.
 *
 *   node scripts/pack-release.mjs [--no-build] [--arm64 PATH] [--out DIR]
 * Prints the tarball paths, one a line, on stdout (everything else goes to stderr).
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const outDir = path.resolve(opt('--out') ?? path.join(root, '.release'));
const stage = path.join(outDir, 'stage');
const log = (s) => process.stderr.write(`pack-release: ${s}\n`);
const run = (cmd, argv, cwd = root) => execFileSync(cmd, argv, { cwd, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
const napi = (argv, cwd) => run(process.execPath, [path.join(root, 'node_modules/@napi-rs/cli/dist/cli.js'), ...argv], cwd);

if (!args.includes('--no-build')) {
  log('pnpm build');
  execFileSync('pnpm', ['run', 'build'], { cwd: root, stdio: ['ignore', process.stderr, 'inherit'] });
}

const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
const binaryName = pkg.napi.binaryName;
// Where each target's addon comes from (napi-rs's platform suffix → file).
const addons = {
  'x86_64-unknown-linux-gnu': path.join(root, 'native', `${binaryName}.linux-x64-gnu.node`),
  'aarch64-unknown-linux-gnu': opt('--arm64') ?? path.join(root, 'npm/linux-arm64-gnu', `${binaryName}.linux-arm64-gnu.node`),
};
const suffix = (target) => ({ 'x86_64-unknown-linux-gnu': 'linux-x64-gnu', 'aarch64-unknown-linux-gnu': 'linux-arm64-gnu' })[target];

rmSync(outDir, { recursive: true, force: true });
mkdirSync(path.join(stage, 'artifacts'), { recursive: true });

const built = [];
for (const target of pkg.napi.targets) {
  const file = addons[target];
  if (file && existsSync(file)) {
    cpSync(file, path.join(stage, 'artifacts', `${binaryName}.${suffix(target)}.node`));
    built.push(target);
  } else {
    log(`no addon for ${target}${file ? ` (${path.relative(root, file)} is missing)` : ''}: left out of this release`);
  }
}
if (!built.includes('x86_64-unknown-linux-gnu')) throw new Error('the linux-x64-gnu addon is missing: run `pnpm build` first');

// The staged package: what `files` publishes, the platform package skeletons from
// `napi create-npm-dirs` (committed in npm/), and package.json with the built targets only.
for (const f of ['README.md', 'LICENSE', 'dist', 'docs', 'native/index.cjs', 'native/index.d.cts']) {
  cpSync(path.join(root, f), path.join(stage, f), { recursive: true });
}
for (const target of built) {
  const dir = suffix(target);
  mkdirSync(path.join(stage, 'npm', dir), { recursive: true });
  for (const f of readdirSync(path.join(root, 'npm', dir)).filter((f) => !f.endsWith('.node'))) {
    cpSync(path.join(root, 'npm', dir, f), path.join(stage, 'npm', dir, f));
  }
}
const { scripts: _scripts, devDependencies: _dev, packageManager: _pm, ...published } = pkg;
published.napi = { ...pkg.napi, targets: built };
writeFileSync(path.join(stage, 'package.json'), `${JSON.stringify(published, null, 2)}\n`);

log(`napi artifacts (${built.join(', ')})`);
napi(['artifacts', '--output-dir', 'artifacts', '--npm-dir', 'npm'], stage);
log('napi pre-publish --skip-optional-publish (writes optionalDependencies)');
napi(['pre-publish', '--npm-dir', 'npm', '--tag-style', 'npm', '--no-gh-release', '--skip-optional-publish'], stage);
rmSync(path.join(stage, 'artifacts'), { recursive: true, force: true });

const staged = JSON.parse(readFileSync(path.join(stage, 'package.json'), 'utf8'));
log(`optionalDependencies: ${JSON.stringify(staged.optionalDependencies)}`);
for (const target of built) {
  if (staged.optionalDependencies?.[`${pkg.name}-${suffix(target)}`] !== pkg.version) {
    throw new Error(`napi pre-publish did not list ${pkg.name}-${suffix(target)}@${pkg.version}`);
  }
}

const tarballs = [];
const pack = (dir) => {
  const name = run('npm', ['pack', '--silent', '--pack-destination', outDir], dir).trim().split('\n').pop();
  tarballs.push(path.join(outDir, name));
};
for (const target of built) pack(path.join(stage, 'npm', suffix(target)));
pack(stage);
process.stdout.write(`${tarballs.join('\n')}\n`);
