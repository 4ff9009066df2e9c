#!/usr/bin/env node
// Builds the control center dashboard (ts/dashboard/) into dist/dashboard/:
// index.html, app.js (main.ts + uPlot, bundled and minified) and app.css (ours + uPlot's).
// Self-contained: served by the control center itself, no CDN.
import { build } from 'esbuild';
import { mkdirSync, copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'ts', 'dashboard');
const out = join(root, 'dist', 'dashboard');
const require = createRequire(import.meta.url);
mkdirSync(out, { recursive: true });

await build({
  entryPoints: [join(src, 'main.ts')],
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2020'],
  minify: true,
  sourcemap: false,
  legalComments: 'none',
  outfile: join(out, 'app.js'),
  logLevel: 'warning',
});

const uplotCss = readFileSync(require.resolve('uplot/dist/uPlot.min.css'), 'utf8');
const ours = readFileSync(join(src, 'style.css'), 'utf8');
const css = await build({ stdin: { contents: `${uplotCss}\n${ours}`, loader: 'css' }, write: false, minify: true, logLevel: 'warning' });
writeFileSync(join(out, 'app.css'), css.outputFiles[0].text);
copyFileSync(join(src, 'index.html'), join(out, 'index.html'));
console.log(`dashboard built in ${out}`);
