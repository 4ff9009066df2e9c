#!/usr/bin/env node
/**
 * End-to-end install test against a real registry, as a user installs the package:
 *  1. packs the release tarballs (scripts/pack-release.mjs --no-build) unless --tarballs DIR;
 *  2. starts Verdaccio 6.8 on 127.0.0.1 (storage in a temp dir; memory-server* only from
 *     what is published here, everything else proxied to the public npm registry) and
 *     publishes the platform package(s) and the main package;
 *  3. in empty temp projects, with no compiler on PATH (cc, gcc, c++, make, cargo, rustc,
 *     python3, node-gyp are shims that record their use and fail): `npm install
 *     memory-server`, `pnpm add memory-server`; then `npx memory-server --help` (and each
 *     command's), the CLI started on free ports and used through `memory-server/client`,
 *     `createServers` from an ESM script, a TypeScript file type-checked under `strict`;
 *  4. the bad cases: `--model` without onnxruntime-node, the platform package missing, its
 *     `.node` corrupt: one clear message each, exit code 1, no stack trace.
 * Prints figures (install time, size on disk, start time) and writes them as JSON to
 * .release/install-e2e.json. Options: --node PATH runs npm, pnpm and the product with that
 * Node binary (the harness itself may run on another); --skip-pnpm.
 *
 * Loopback only: Verdaccio listens on 127.0.0.1 and every server started here does too.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const node = path.resolve(opt('--node') ?? process.execPath);
const started = Date.now();
const log = (s) => process.stdout.write(`[install-e2e +${((Date.now() - started) / 1000).toFixed(1)}s] ${s}\n`);
const figures = { node: '', glibc: null, arch: process.arch };
const cleanups = [];
let verdaccioLog = () => '';
let failures = 0;
let passes = 0;

function check(ok, what) {
  if (ok) {
    passes++;
    log(`ok   ${what}`);
  }
  else {
    failures++;
    log(`FAIL ${what}`);
  }
  return ok;
}

/** The JS entry point of a CLI installed globally (npm, pnpm), to run it with `node`. */
function cliScript(name, env) {
  if (process.env[env]) return process.env[env];
  const which = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).stdout.trim();
  if (!which) throw new Error(`${name} is not on PATH (set ${env} to its JS entry point)`);
  return realpathSync(which);
}
const npmCli = cliScript('npm', 'NPM_CLI_JS');
const pnpmCli = args.includes('--skip-pnpm') ? null : cliScript('pnpm', 'PNPM_CLI_JS');

// ------------------------------------------------------------------ no-compiler PATH
const work = mkdtempSync(path.join(os.tmpdir(), 'memory-server-e2e-'));
if (!process.env.E2E_KEEP) cleanups.push(() => rmSync(work, { recursive: true, force: true }));
const shimDir = path.join(work, 'shims');
const binDir = path.join(work, 'bin');
const compilerLog = path.join(work, 'compiler-calls.log');
mkdirSync(shimDir);
mkdirSync(binDir);
for (const tool of ['cc', 'gcc', 'c++', 'g++', 'clang', 'clang++', 'make', 'cmake', 'cargo', 'rustc', 'rustup', 'python', 'python3', 'node-gyp', 'zig']) {
  writeFileSync(path.join(shimDir, tool), `#!/bin/sh\necho "${tool} $*" >> '${compilerLog}'\necho "${tool}: no compilers in this test" >&2\nexit 127\n`);
  chmodSync(path.join(shimDir, tool), 0o755);
}
// node, npm, npx and pnpm for the chosen Node binary.
const wrapper = (file, body) => {
  writeFileSync(path.join(binDir, file), `#!/bin/sh\n${body}\n`);
  chmodSync(path.join(binDir, file), 0o755);
};
wrapper('node', `exec '${node}' "$@"`);
wrapper('npm', `exec '${node}' '${npmCli}' "$@"`);
wrapper('npx', `exec '${node}' '${path.join(path.dirname(npmCli), 'npx-cli.js')}' "$@"`);
if (pnpmCli) wrapper('pnpm', `exec '${node}' '${pnpmCli}' "$@"`);
const cleanPath = [shimDir, binDir, '/usr/local/bin', '/usr/bin', '/bin'].join(':');
const home = path.join(work, 'home');
mkdirSync(home);
const baseEnv = {
  PATH: cleanPath,
  HOME: home,
  TMPDIR: os.tmpdir(),
  LANG: 'C.UTF-8',
  npm_config_userconfig: path.join(home, '.npmrc'),
  npm_config_cache: path.join(work, 'npm-cache'),
  npm_config_update_notifier: 'false',
  npm_config_fund: 'false',
  npm_config_audit: 'false',
  CI: process.env.CI ?? '',
  // Where outbound HTTPS goes through a proxy or a private CA, Verdaccio's uplink needs them.
  ...Object.fromEntries(
    Object.entries(process.env).filter(([k]) => /^(NODE_EXTRA_CA_CERTS|SSL_CERT_FILE|SSL_CERT_DIR|(https?|no)_proxy|(HTTPS?|NO)_PROXY)$/.test(k)),
  ),
};

function sh(cmd, argv, { cwd, env = {}, timeoutMs = 300_000, input } = {}) {
  const t0 = Date.now();
  const r = spawnSync(cmd, argv, { cwd, env: { ...baseEnv, ...env }, encoding: 'utf8', timeout: timeoutMs, input, maxBuffer: 64 << 20 });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '', ms: Date.now() - t0, error: r.error };
}
function mustSh(what, cmd, argv, o) {
  const r = sh(cmd, argv, o);
  if (r.code !== 0) {
    log(`FAIL ${what} (exit ${r.code})\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-4000)}`);
    throw new Error(`${what} failed`);
  }
  return r;
}
const noStackTrace = (s) => !/^\s+at .+[(:]\d+/m.test(s);
const duBytes = (dir) => Number(spawnSync('du', ['-sb', dir], { encoding: 'utf8' }).stdout.split('\t')[0]);
const mb = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitFor(fn, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// ------------------------------------------------------------------ main
async function main() {
  figures.node = sh(path.join(binDir, 'node'), ['--version']).stdout.trim();
  figures.glibc = sh(path.join(binDir, 'node'), ['-p', 'process.report.getReport().header.glibcVersionRuntime ?? null']).stdout.trim();
  log(`Node ${figures.node} (${node}), glibc ${figures.glibc}, ${process.platform}-${process.arch}; work dir ${work}`);

  // 1. Tarballs.
  let tarballDir = opt('--tarballs') && path.resolve(opt('--tarballs'));
  if (!tarballDir) {
    mustSh('pack-release', process.execPath, [path.join(root, 'scripts/pack-release.mjs'), '--no-build'], { cwd: root, env: { PATH: process.env.PATH } });
    tarballDir = path.join(root, '.release');
  }
  const tarballs = readdirSync(tarballDir).filter((f) => f.endsWith('.tgz')).map((f) => path.join(tarballDir, f));
  const main = tarballs.find((t) => /\/memory-server-\d/.test(t));
  const platforms = tarballs.filter((t) => t !== main);
  if (!main || platforms.length === 0) throw new Error(`no tarballs in ${tarballDir}`);
  log(`tarballs: ${tarballs.map((t) => path.basename(t)).join(', ')}`);

  // 2. Verdaccio on loopback.
  const port = await freePort();
  const registry = `http://127.0.0.1:${port}/`;
  const vdir = path.join(work, 'verdaccio');
  mkdirSync(vdir);
  writeFileSync(
    path.join(vdir, 'config.yaml'),
    [
      `storage: ${path.join(vdir, 'storage')}`,
      'auth:',
      '  htpasswd:',
      `    file: ${path.join(vdir, 'htpasswd')}`,
      '    max_users: 10',
      'uplinks:',
      '  npmjs:',
      `    url: ${process.env.E2E_UPLINK ?? 'https://registry.npmjs.org/'}`,
      '    timeout: 60s',
      'packages:',
      "  'memory-server':",
      '    access: $all',
      '    publish: $authenticated',
      "  'memory-server-*':",
      '    access: $all',
      '    publish: $authenticated',
      "  '@*/*':",
      '    access: $all',
      '    publish: $authenticated',
      '    proxy: npmjs',
      "  '**':",
      '    access: $all',
      '    publish: $authenticated',
      '    proxy: npmjs',
      `log: { type: stdout, format: pretty, level: ${process.env.E2E_VERBOSE ? 'http' : 'warn'} }`,
      'web: { enable: false }',
      'server: { keepAliveTimeout: 60 }',
    ].join('\n'),
  );
  const verdaccioBin = path.join(root, 'node_modules/verdaccio/bin/verdaccio');
  const vproc = spawn(node, [verdaccioBin, '--config', path.join(vdir, 'config.yaml'), '--listen', `127.0.0.1:${port}`], {
    env: { ...baseEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let vlog = '';
  verdaccioLog = () => vlog;
  vproc.stdout.on('data', (d) => (vlog += d));
  vproc.stderr.on('data', (d) => (vlog += d));
  cleanups.push(() => vproc.kill('SIGTERM'));
  await waitFor(
    async () => {
      if (vproc.exitCode !== null) throw new Error(`verdaccio exited: ${vlog}`);
      return fetch(`${registry}-/ping`).then((r) => r.ok).catch(() => false);
    },
    60_000,
    'verdaccio',
  );
  const user = await fetch(`${registry}-/user/org.couchdb.user:e2e`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'e2e', password: 'e2e-password', email: 'e2e@example.invalid', type: 'user' }),
  }).then((r) => r.json());
  if (!user.token) throw new Error(`verdaccio refused the user: ${JSON.stringify(user)}`);
  writeFileSync(baseEnv.npm_config_userconfig, `registry=${registry}\n//127.0.0.1:${port}/:_authToken=${user.token}\n`);
  log(`verdaccio ${registry} up`);
  for (const t of [...platforms, main]) mustSh(`npm publish ${path.basename(t)}`, 'npm', ['publish', t], { cwd: work });
  check(true, `published ${tarballs.length} packages`);

  // 3a. npm install into an empty project.
  const app = path.join(work, 'app-npm');
  mkdirSync(app);
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app-npm', version: '1.0.0', private: true, type: 'module' }, null, 2));
  const npmInstall = mustSh('npm install memory-server', 'npm', ['install', 'memory-server'], { cwd: app });
  figures.npm_install_s = +(npmInstall.ms / 1000).toFixed(1);
  figures.npm_node_modules_bytes = duBytes(path.join(app, 'node_modules'));
  figures.npm_package_bytes = duBytes(path.join(app, 'node_modules/memory-server'));
  const plat = readdirSync(path.join(app, 'node_modules')).filter((d) => d.startsWith('memory-server-'));
  check(plat.length === 1, `npm installed one platform package (${plat.join(', ')})`);
  figures.platform_package_bytes = plat[0] ? duBytes(path.join(app, 'node_modules', plat[0])) : 0;
  check(!existsSync(path.join(app, 'node_modules/onnxruntime-node')), 'onnxruntime-node is not installed (optional peer)');
  log(`npm install: ${figures.npm_install_s} s, node_modules ${mb(figures.npm_node_modules_bytes)} (memory-server ${mb(figures.npm_package_bytes)}, ${plat[0]} ${mb(figures.platform_package_bytes)})`);

  // --help, per command.
  const help = sh('npx', ['memory-server', '--help'], { cwd: app });
  check(help.code === 0 && /Usage:/.test(help.stdout), 'npx memory-server --help');
  for (const c of ['export', 'import', 'repair']) {
    const h = sh('npx', ['memory-server', c, '--help'], { cwd: app });
    check(h.code === 0 && h.stdout.includes(`memory-server ${c}`), `npx memory-server ${c} --help`);
  }

  // 3b. The CLI (supervised: control center + two child servers) on free ports.
  const [mPort, iPort, cPort] = [await freePort(), await freePort(), await freePort()];
  const t0 = Date.now();
  const cli = spawn(path.join(binDir, 'npx'), ['memory-server', '--port', String(mPort), '--inference-port', String(iPort), '--control-port', String(cPort), '--data-dir', './data'], {
    cwd: app,
    env: { ...baseEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let cliOut = '';
  let cliErr = '';
  cli.stdout.on('data', (d) => (cliOut += d));
  cli.stderr.on('data', (d) => (cliErr += d));
  cleanups.push(() => {
    try {
      process.kill(-cli.pid, 'SIGKILL');
    } catch {}
  });
  await waitFor(() => {
    if (cli.exitCode !== null) throw new Error(`memory-server exited ${cli.exitCode}: ${cliOut}\n${cliErr}`);
    return (cliOut.match(/WebSocket server listening on/g) ?? []).length >= 2;
  }, 60_000, 'both servers listening');
  figures.npx_start_to_listening_s = +((Date.now() - t0) / 1000).toFixed(2);
  check(true, `npx memory-server: both servers listening after ${figures.npx_start_to_listening_s} s`);
  mustSh('npm install ws typescript @types/node @types/ws', 'npm', ['install', 'ws@8', 'typescript@5', '@types/node@20', '@types/ws@8'], { cwd: app });
  writeFileSync(
    path.join(app, 'client.mjs'),
    `import WebSocket from 'ws';
import { MemoryClient } from 'memory-server/client';
const memory = new MemoryClient({ url: 'ws://127.0.0.1:${mPort}', WebSocket, reconnect: false });
const stored = await memory.store('The user prefers dark mode', { metadata: { type: 'preference' } });
const { memories } = await memory.retrieve(5, 0);
const found = await memory.search('dark mode', { count: 1 });
console.log(JSON.stringify({ id: stored.id, texts: memories.map((m) => m.text), top: found.memories[0]?.text }));
await memory.close();
`,
  );
  const client = sh('node', ['client.mjs'], { cwd: app, timeoutMs: 60_000 });
  let clientOk = false;
  try {
    const r = JSON.parse(client.stdout.trim().split('\n').pop());
    clientOk = r.texts.includes('The user prefers dark mode') && r.top === 'The user prefers dark mode';
  } catch {}
  check(clientOk, `store + retrieve + search through memory-server/client (${client.stdout.trim() || client.stderr.trim()})`);
  // Ctrl-C in a terminal signals the whole process group (npx, the CLI and its children).
  process.kill(-cli.pid, 'SIGINT');
  const groupGone = () => {
    try {
      process.kill(-cli.pid, 0);
      return false;
    } catch {
      return true;
    }
  };
  await waitFor(groupGone, 30_000, 'every process of the CLI to stop on SIGINT');
  check(/memory-server stopped/.test(cliOut), 'Ctrl-C stops it gracefully, children included');

  // 3c. createServers from an ESM script.
  writeFileSync(
    path.join(app, 'library.mjs'),
    `import WebSocket from 'ws';
import { createServers, uwsBuild, kernelInfo } from 'memory-server';
import { MemoryClient } from 'memory-server/client';
console.log(JSON.stringify({ uws: uwsBuild, kernels: kernelInfo() }));
const servers = await createServers({ host: '127.0.0.1', memory: { port: 0, dataDir: './lib-data' }, inference: { port: 0 } });
const memory = new MemoryClient({ url: 'ws://127.0.0.1:' + servers.memory.port, WebSocket, reconnect: false });
await memory.store('written through createServers');
const { memories } = await memory.retrieve(1);
console.log(memories[0].text);
await memory.close();
await servers.close();
`,
  );
  const lib = sh('node', ['library.mjs'], { cwd: app, timeoutMs: 60_000 });
  check(lib.code === 0 && lib.stdout.includes('written through createServers'), `createServers from an ESM script${lib.code ? `: ${lib.stderr.slice(-2000)}` : ''}`);
  try {
    const info = JSON.parse(lib.stdout.split('\n')[0]);
    figures.uws_build = info.uws;
    figures.kernels = info.kernels;
    log(`uWebSockets.js build: ${info.uws}; kernels: ${JSON.stringify(info.kernels)}`);
  } catch {}

  // 3d. TypeScript under strict: the README's library example and the client.
  writeFileSync(
    path.join(app, 'check.ts'),
    `import { createServers } from 'memory-server';
import { MemoryClient, type RetrieveReply } from 'memory-server/client';
import WebSocket from 'ws';

const servers = await createServers({ memory: { port: 0, dataDir: './memory-data' }, inference: { port: 0 } });
const ports: [number, number] = [servers.memory.port, servers.inference.port];
const memory = new MemoryClient({ url: \`ws://localhost:\${ports[0]}\`, WebSocket });
const reply: RetrieveReply = await memory.retrieve(5, 0.7);
const first: string | undefined = reply.memories[0]?.text;
console.log(ports, first);
await servers.close();
`,
  );
  writeFileSync(
    path.join(app, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { strict: true, noEmit: true, target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', types: ['node'] }, files: ['check.ts'] }),
  );
  const tsc = sh('node', [path.join(app, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: app, timeoutMs: 120_000 });
  check(tsc.code === 0, `tsc --strict type-checks a file using createServers and memory-server/client${tsc.code ? `:\n${tsc.stdout}${tsc.stderr}` : ''}`);

  // 4. Bad cases: one clear message each, exit 1, no stack trace.
  const model = path.join(root, 'test/fixtures/tiny-bert');
  const noOrt = sh('npx', ['memory-server', '--no-control', '--port', '0', '--inference-port', '0', '--data-dir', './ort-data', '--model', model], { cwd: app, timeoutMs: 60_000 });
  check(noOrt.code === 1 && /npm install onnxruntime-node/.test(noOrt.stderr) && noOrt.stderr.trim().split('\n').length === 1 && noOrt.stderr.startsWith('memory-server:'), `--model without onnxruntime-node: ${noOrt.stderr.trim()}`);

  const platDir = path.join(app, 'node_modules', plat[0] ?? 'memory-server-linux-x64-gnu');
  const aside = path.join(work, 'platform-aside');
  cpSync(platDir, aside, { recursive: true });
  rmSync(platDir, { recursive: true, force: true });
  const missing = sh('npx', ['memory-server', '--no-control', '--port', '0', '--inference-port', '0', '--data-dir', './x'], { cwd: app, timeoutMs: 60_000 });
  check(
    missing.code === 1 && /no working native addon for linux-/.test(missing.stderr) && /pnpm build/.test(missing.stderr) && noStackTrace(missing.stderr),
    `platform package missing: ${missing.stderr.trim().slice(0, 300)}`,
  );
  const helpWithout = sh('npx', ['memory-server', '--help'], { cwd: app });
  check(helpWithout.code === 0, '--help still works without the native addon');
  cpSync(aside, platDir, { recursive: true });
  const nodeFile = readdirSync(platDir).find((f) => f.endsWith('.node'));
  writeFileSync(path.join(platDir, nodeFile), 'not an ELF file');
  const corrupt = sh('npx', ['memory-server', '--no-control', '--port', '0', '--inference-port', '0', '--data-dir', './x'], { cwd: app, timeoutMs: 60_000 });
  check(corrupt.code === 1 && /no working native addon/.test(corrupt.stderr) && noStackTrace(corrupt.stderr), `platform .node corrupt: ${corrupt.stderr.trim().slice(0, 300)}`);
  rmSync(platDir, { recursive: true, force: true });
  cpSync(aside, platDir, { recursive: true });

  // 3e. pnpm add into another empty project.
  if (pnpmCli) {
    const papp = path.join(work, 'app-pnpm');
    mkdirSync(papp);
    writeFileSync(path.join(papp, 'package.json'), JSON.stringify({ name: 'app-pnpm', version: '1.0.0', private: true, type: 'module' }, null, 2));
    const padd = mustSh('pnpm add memory-server', 'pnpm', ['add', 'memory-server', 'ws@8', '--store-dir', path.join(work, 'pnpm-store')], { cwd: papp });
    figures.pnpm_add_s = +(padd.ms / 1000).toFixed(1);
    const phelp = sh('pnpm', ['exec', 'memory-server', '--help'], { cwd: papp });
    check(phelp.code === 0 && /Usage:/.test(phelp.stdout), 'pnpm exec memory-server --help');
    cpSync(path.join(app, 'library.mjs'), path.join(papp, 'library.mjs'));
    const plib = sh('node', ['library.mjs'], { cwd: papp, timeoutMs: 60_000 });
    check(plib.code === 0 && plib.stdout.includes('written through createServers'), `pnpm project: createServers + client${plib.code ? `: ${plib.stderr.slice(-2000)}` : ''}`);
    log(`pnpm add: ${figures.pnpm_add_s} s`);
  }

  const calls = existsSync(compilerLog) ? readFileSync(compilerLog, 'utf8').trim() : '';
  check(calls === '', `no compiler, cargo or node-gyp was invoked${calls ? `: ${calls}` : ''}`);
}

try {
  await main();
} catch (e) {
  failures++;
  log(`FAIL ${e instanceof Error ? e.message : String(e)}`);
  if (process.env.E2E_VERBOSE) log(`verdaccio log:\n${verdaccioLog()}`);
} finally {
  for (const c of cleanups.reverse()) {
    try {
      c();
    } catch {}
  }
}
figures.failures = failures;
mkdirSync(path.join(root, '.release'), { recursive: true });
writeFileSync(path.join(root, '.release', `install-e2e-${figures.node || 'node'}.json`), `${JSON.stringify(figures, null, 2)}\n`);
log(`figures: ${JSON.stringify(figures)}`);
log(failures === 0 ? 'install e2e passed' : `install e2e: ${failures} failed`);
process.stdout.write(`install-e2e: ${passes} passed, ${failures} failed\n`);
process.exit(failures === 0 ? 0 : 1);
