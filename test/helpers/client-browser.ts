/**
 * Browser test helpers: build the client bundle into a temp dir, serve it with a
 * tiny HTML page on 127.0.0.1, and launch Debian's chromium via playwright-core
 * (never downloads a browser).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

export const CHROMIUM = '/usr/bin/chromium';
export const hasChromium = (): boolean => existsSync(CHROMIUM);

const root = path.resolve(import.meta.dirname, '../..');

export async function buildBundle(): Promise<{ dir: string; file: string; cleanup(): void }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'memclient-bundle-'));
  const file = path.join(dir, 'memory-client.browser.js');
  await promisify(execFile)(process.execPath, [path.join(root, 'scripts/build-client-bundle.mjs'), '--outfile', file], { cwd: root });
  return { dir, file, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>memory client</title></head>
<body>
<script type="module">
  import * as client from './memory-client.browser.js';
  window.memoryClient = client;
  window.clientReady = true;
</script>
</body></html>`;

export async function serveStatic(bundleFile: string): Promise<{ url: string; close(): Promise<void> }> {
  const bundle = readFileSync(bundleFile);
  const server = http.createServer((req, res) => {
    if (req.url === '/' || req.url === '/index.html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
    } else if (req.url === '/memory-client.browser.js') {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(bundle);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}/`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/**
 * Chromium flags. The fresh profile directory is given to `launchPersistentContext`
 * (playwright refuses `--user-data-dir` in `args`).
 */
export function chromiumArgs(): string[] {
  return [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ];
}

export function freshProfileDir(): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(path.join(tmpdir(), 'memclient-chromium-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
