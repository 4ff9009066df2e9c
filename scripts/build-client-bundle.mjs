#!/usr/bin/env node
/**
 * Builds the browser bundle of `memory-server/client`:
 * dist/client/memory-client.browser.js (ESM, platform browser, msgpackr bundled,
 * no Node built-ins). Usage: node scripts/build-client-bundle.mjs [--outfile path] [--minify]
 */
import { build } from 'esbuild';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const at = args.indexOf('--outfile');
const outfile = at >= 0 && args[at + 1] ? path.resolve(args[at + 1]) : path.join(root, 'dist/client/memory-client.browser.js');

const result = await build({
  absWorkingDir: root,
  entryPoints: [path.join(root, 'ts/client/index.ts')],
  outfile,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2020'],
  sourcemap: true,
  minify: args.includes('--minify'),
  legalComments: 'none',
  metafile: true,
  logLevel: 'warning',
});

// The client must not drag Node built-ins or the server-side zod schemas into browsers.
const inputs = Object.keys(result.metafile.inputs);
const bad = inputs.filter((f) => f.startsWith('node:') || /node_modules[\\/](zod|ws|pino)[\\/]/.test(f));
if (bad.length > 0) {
  console.error(`client bundle pulls in server-side modules: ${bad.join(', ')}`);
  process.exit(1);
}
const bytes = result.metafile.outputs[path.relative(root, outfile)]?.bytes;
console.log(`built ${path.relative(root, outfile)}${bytes ? ` (${(bytes / 1024).toFixed(1)} KiB)` : ''}`);
