/**
 * The dashboard in a real browser (Debian chromium via playwright-core; never a
 * downloaded one): component dots, stop/start buttons, live charts, the
 * playground, the memory browser, reconnect after a control-center restart, screenshots
 * at 1280/390.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChildComponent, createControlCenter, type ControlCenter } from '../ts/control/index.js';
import { MemoryClient, ClientError } from '../ts/client/index.js';
import { freePort, silentLogger } from './helpers/ws-client.js';
import { ensureBuilt, root } from './helpers/build-dist.js';
import { CHROMIUM, hasChromium } from './helpers/client-browser.js';

const artifacts = path.join(root, 'test-artifacts');

const STATUS_MS = 250;
const available = hasChromium();
if (!available) console.warn(`skipping the dashboard tests: ${CHROMIUM} is missing (apt-get install chromium)`);

describe.skipIf(!available)('dashboard (chromium)', () => {
  let browser: BrowserContext;
  let page: Page;
  let cc: ControlCenter;
  let port: number;
  let dataDir: string;
  let userDataDir: string;
  let components: ChildComponent[];
  const pageErrors: string[] = [];

  const center = (p: number): ControlCenter =>
    createControlCenter({ components, host: '127.0.0.1', port: p, logger: silentLogger, printListening: false, statusIntervalMs: STATUS_MS, dataDir });

  beforeAll(async () => {
    ensureBuilt({ dashboard: true }); // may run tsc (~25 s): within this hook's 180 s
    mkdirSync(artifacts, { recursive: true });
    dataDir = mkdtempSync(path.join(tmpdir(), 'dashboard-test-'));
    userDataDir = mkdtempSync(path.join(tmpdir(), 'dashboard-chromium-'));
    const serverOptions = { host: '127.0.0.1', port: 0, printListening: false };
    components = [
      new ChildComponent({ name: 'memory', serverOptions: { ...serverOptions, dataDir }, logLevel: 'warn' }),
      new ChildComponent({ name: 'inference', serverOptions: { ...serverOptions, portRange: 0 }, logLevel: 'warn' }),
    ];
    await Promise.all(components.map((c) => c.start()));
    // A fixed port, not 0: uSockets sets SO_REUSEADDR only for fixed ports, and the restart
    // test must rebind while the closed connections sit in TIME_WAIT.
    cc = center(await freePort());
    port = (await cc.listen()).port;
    // launchPersistentContext is playwright's form of --user-data-dir (it refuses the flag in launch()).
    browser = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      viewport: { width: 1280, height: 900 },
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    page = browser.pages()[0] ?? (await browser.newPage());
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    await page.goto(`http://127.0.0.1:${port}/`);
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await cc?.close();
    await Promise.all((components ?? []).map((c) => c.stop()));
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(userDataDir, { recursive: true, force: true });
  }, 30_000);

  const dot = (name: string) => page.getByTestId(`dot-${name}`);
  const dotColor = (name: string) => dot(name).evaluate((e) => getComputedStyle(e).backgroundColor);
  const GREEN = 'rgb(46, 160, 67)';
  const RED = 'rgb(229, 83, 75)';

  it('the time axis of each chart span their real window from the first point (not years)', async () => {
    await expect.poll(async () => Number(await page.getByTestId('chart-qps').getAttribute('data-points')), { timeout: 10_000 }).toBeGreaterThanOrEqual(1);
    const windows = await page.evaluate(() => (window as unknown as { __controlCenter: { chartWindows(): Record<string, [number, number]> } }).__controlCenter.chartWindows());
    const now = Date.now() / 1000;
    for (const [name, [min, max]] of Object.entries(windows)) {
      expect(max - min, name).toBeGreaterThanOrEqual(59);
      expect(max - min, name).toBeLessThanOrEqual(120);
      expect(Math.abs(max - now), name).toBeLessThan(30);
    }
  });

  it('shows both components running (green dots) with pid, port and the connection indicator', async () => {
    await expect.poll(() => page.getByTestId('ws-status').getAttribute('data-state'), { timeout: 10_000 }).toBe('connected');
    for (const name of ['memory', 'inference']) {
      await expect.poll(() => dot(name).getAttribute('data-state'), { timeout: 10_000 }).toBe('running');
      expect(await dotColor(name)).toBe(GREEN);
      const s = components.find((c) => c.name === name)!.status();
      expect(await page.getByTestId(`${name}-pid`).textContent()).toBe(String(s.pid));
      expect(await page.getByTestId(`${name}-port`).textContent()).toBe(String(s.port));
    }
    expect(await page.getByTestId('metric-memory_percent').textContent()).toMatch(/%/);
    expect(pageErrors).toEqual([]);
  });

  it('stop turns the dot red, start turns it green again', async () => {
    await page.getByTestId('stop-inference').click();
    await expect.poll(() => dot('inference').getAttribute('data-state'), { timeout: 15_000 }).toBe('stopped');
    expect(await dotColor('inference')).toBe(RED);
    expect(components[1]!.status().state).toBe('stopped');
    await expect.poll(() => page.getByTestId('start-inference').isEnabled(), { timeout: 5_000 }).toBe(true);
    await page.getByTestId('start-inference').click();
    await expect.poll(() => dot('inference').getAttribute('data-state'), { timeout: 15_000 }).toBe('running');
    expect(await dotColor('inference')).toBe(GREEN);
  });

  it('charts move with the status ticks', async () => {
    const chart = page.getByTestId('chart-memories');
    const canvas = chart.locator('canvas');
    const points0 = Number(await chart.getAttribute('data-points'));
    const pixels0 = await canvas.evaluate((c: HTMLCanvasElement) => c.toDataURL());
    await expect.poll(async () => Number(await chart.getAttribute('data-points')), { timeout: 10_000 }).toBeGreaterThanOrEqual(points0 + 2);
    await expect.poll(() => canvas.evaluate((c: HTMLCanvasElement) => c.toDataURL()), { timeout: 5_000 }).not.toBe(pixels0);
    for (const id of ['chart-qps', 'chart-latency']) {
      expect(Number(await page.getByTestId(id).getAttribute('data-points'))).toBeGreaterThan(1);
    }
  });

  it('the playground stores a memory that a retrieve then finds', async () => {
    const text = `playground memory ${Date.now()} about violet herons`;
    await page.getByTestId('pg-target').selectOption('memory');
    await page.getByTestId('pg-input').fill(JSON.stringify({ type: 'store', data: { text } }));
    await page.getByTestId('pg-send').click();
    const reply = page.getByTestId('pg-reply');
    await expect.poll(() => reply.getAttribute('data-state'), { timeout: 10_000 }).toBe('success');
    expect(JSON.parse((await reply.textContent())!).type).toBe('store');
    await page.getByTestId('pg-input').fill(JSON.stringify({ type: 'retrieve', id: 'find-it', data: { query: 'violet herons', count: 3 } }));
    await page.getByTestId('pg-send').click();
    await expect.poll(async () => (await reply.textContent()) ?? '', { timeout: 10_000 }).toContain('find-it');
    const found = JSON.parse((await reply.textContent())!);
    expect(found.status).toBe('success');
    expect(found.data.memories[0].text).toBe(text);
    // the memories card follows
    await expect.poll(async () => Number((await page.getByTestId('metric-total_concepts').locator('.value').textContent())?.replace(/\D/g, '')), { timeout: 10_000 }).toBeGreaterThanOrEqual(1);
    // inference too
    await page.getByTestId('pg-target').selectOption('inference');
    await page.getByTestId('pg-input').fill(JSON.stringify({ type: 'embeddings', id: 'emb', data: { text: 'hello' } }));
    await page.getByTestId('pg-send').click();
    await expect.poll(async () => (await reply.textContent()) ?? '', { timeout: 10_000 }).toContain('"emb"');
    expect(JSON.parse((await reply.textContent())!).data.dims).toBeGreaterThan(0);
  });

  it('the memory browser pages, filters, searches, opens, edits and deletes memories, live', async () => {
    const memoryPort = components[0]!.status().port!;
    const node = new MemoryClient({ url: `ws://127.0.0.1:${memoryPort}/`, namespace: 'browse', WebSocket });
    try {
      // Similar texts, so the hash embedder links some of them (associations).
      const items = Array.from({ length: 30 }, (_, i) => ({ text: `heron note ${i} about violet herons by the lake`, id: `h${i}`, metadata: { type: i % 3 === 0 ? 'todo' : 'note', n: i } }));
      await node.storeMany(items);
      const rows = page.getByTestId('browser-row');
      await page.getByTestId('browser-refresh').click();
      await expect.poll(() => page.getByTestId('browser-namespace').locator('option[value="browse"]').count(), { timeout: 10_000 }).toBe(1);
      await page.getByTestId('browser-namespace').selectOption('browse');
      await expect.poll(() => rows.count(), { timeout: 10_000 }).toBe(25);
      await page.getByTestId('browser-more').click();
      await expect.poll(() => rows.count(), { timeout: 10_000 }).toBe(30);
      await expect(page.getByTestId('browser-more').isHidden()).resolves.toBe(true);

      // A metadata filter on the list, then a bad filter: a clear error, the rows stay.
      await page.getByTestId('browser-filter').fill('{"type": "todo"}');
      await page.getByTestId('browser-search').click();
      await expect.poll(() => rows.count(), { timeout: 10_000 }).toBe(10);
      await page.getByTestId('browser-filter').fill('{"type": ');
      await page.getByTestId('browser-search').click();
      await expect.poll(async () => (await page.getByTestId('browser-error').textContent()) ?? '', { timeout: 5_000 }).toContain('not JSON');
      expect(await rows.count()).toBe(10);
      await page.getByTestId('browser-filter').fill('');

      // Vector search: scored rows.
      await page.getByTestId('browser-query').fill('violet herons by the lake');
      await page.getByTestId('browser-mode').selectOption('vector');
      await page.getByTestId('browser-search').click();
      await expect.poll(async () => (await page.getByTestId('browser-count').textContent()) ?? '', { timeout: 10_000 }).toMatch(/found \(vector\)/);
      expect(await rows.first().textContent()).toMatch(/score/);
      // Text (BM25) finds the exact identifier; hybrid fuses both rankings.
      await node.store('ticket ZX-4471 reopened by the heron team', { id: 'zx' });
      await page.getByTestId('browser-query').fill('ZX-4471');
      await page.getByTestId('browser-mode').selectOption('text');
      await page.getByTestId('browser-search').click();
      await expect.poll(async () => (await page.getByTestId('browser-count').textContent()) ?? '', { timeout: 10_000 }).toBe('1 found (text)');
      expect(await rows.first().getAttribute('data-id')).toBe('zx');
      await page.getByTestId('browser-mode').selectOption('hybrid');
      await page.getByTestId('browser-search').click();
      await expect.poll(async () => (await page.getByTestId('browser-count').textContent()) ?? '', { timeout: 10_000 }).toMatch(/found \(hybrid\)/);
      expect(await rows.first().getAttribute('data-id')).toBe('zx');
      expect(await rows.first().textContent()).toMatch(/text #1/);
      await node.delete('zx');

      // Open one: text, metadata, associations that open the associated memory.
      await page.getByTestId('browser-query').fill('');
      await page.getByTestId('browser-search').click();
      await expect.poll(() => rows.count(), { timeout: 10_000 }).toBe(25);
      await page.getByTestId('browser-more').click();
      await expect.poll(() => rows.count(), { timeout: 10_000 }).toBe(30);
      await page.locator('[data-testid="browser-row"][data-id="h3"]').click();
      const detail = page.getByTestId('browser-detail');
      await expect.poll(() => detail.getAttribute('data-id'), { timeout: 5_000 }).toBe('h3');
      expect(await page.getByTestId('browser-detail-text').textContent()).toBe(items[3]!.text);
      expect(JSON.parse(await page.getByTestId('browser-metadata').inputValue())).toEqual({ type: 'todo', n: 3 });
      const h3 = await node.get('h3');
      expect(h3.associations.length).toBeGreaterThan(0);
      const links = page.getByTestId('browser-assoc-link');
      expect(await links.count()).toBe(h3.associations.length);
      const target = (await links.first().getAttribute('data-id'))!;
      await links.first().click();
      await expect.poll(() => detail.getAttribute('data-id'), { timeout: 5_000 }).toBe(target);

      // Edit metadata: bad JSON is refused with nothing sent; good JSON is saved.
      const before = await node.get(target);
      await page.getByTestId('browser-metadata').fill('{"type": "done",');
      await page.getByTestId('browser-save').click();
      await expect.poll(async () => (await page.getByTestId('browser-error').textContent()) ?? '', { timeout: 5_000 }).toContain('not JSON');
      expect((await node.get(target)).metadata).toEqual(before.metadata);
      await page.getByTestId('browser-metadata').fill('{"type": "done", "edited": true}');
      await page.getByTestId('browser-save').click();
      await expect.poll(async () => (await node.get(target)).metadata, { timeout: 5_000 }).toEqual({ type: 'done', edited: true });

      // Live: an update from elsewhere shows in the open memory; a new memory appears at the top of the list.
      await node.update(target, { metadata: { type: 'done', by: 'node' } });
      await expect.poll(async () => JSON.parse(await page.getByTestId('browser-metadata').inputValue()), { timeout: 5_000 }).toEqual({ type: 'done', by: 'node' });
      await page.getByTestId('browser-query').fill('');
      await page.getByTestId('browser-search').click();
      await expect.poll(() => rows.count(), { timeout: 10_000 }).toBe(25);
      await node.store('a live heron arrives', { id: 'live1' });
      await expect.poll(() => rows.first().getAttribute('data-id'), { timeout: 5_000 }).toBe('live1');

      // Delete: the first click arms, the second deletes; the row and the detail go.
      await page.getByTestId('browser-delete').click();
      expect(await node.get(target)).toBeTruthy();
      await page.getByTestId('browser-delete').click();
      await expect.poll(() => detail.isHidden(), { timeout: 5_000 }).toBe(true);
      const gone = await node.get(target).then(() => null, (e: unknown) => e);
      expect(gone).toBeInstanceOf(ClientError);
      expect((gone as ClientError).code).toBe('not_found');
      expect(await page.locator(`[data-testid="browser-row"][data-id="${target}"]`).count()).toBe(0);
      // A delete from elsewhere removes its row live.
      await node.delete('live1');
      await expect.poll(() => page.locator('[data-testid="browser-row"][data-id="live1"]').count(), { timeout: 5_000 }).toBe(0);
      expect(pageErrors).toEqual([]);
    } finally {
      await node.close();
    }
  }, 60_000);

  it('renders at 1280 and 390 widths (screenshots saved)', async () => {
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.waitForTimeout(STATUS_MS * 2);
    await page.screenshot({ path: path.join(artifacts, 'dashboard-1280.png'), fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(STATUS_MS * 2);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    expect(overflow).toBeLessThanOrEqual(0);
    // cards stack in one column on a phone
    const boxes = await Promise.all(['component-memory', 'component-inference'].map((id) => page.getByTestId(id).boundingBox()));
    expect(boxes[0]!.x).toBe(boxes[1]!.x);
    expect(boxes[0]!.width).toBeLessThanOrEqual(390);
    await page.screenshot({ path: path.join(artifacts, 'dashboard-390.png'), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 900 });
    expect(existsSync(path.join(artifacts, 'dashboard-390.png'))).toBe(true);
  });

  it('reconnects after the control center restarts on the same port', async () => {
    await cc.close();
    await expect.poll(() => page.getByTestId('ws-status').getAttribute('data-state'), { timeout: 5_000 }).not.toBe('connected');
    cc = center(port);
    await cc.listen();
    // first retry after 3 s (backoff 3 s doubling)
    await expect.poll(() => page.getByTestId('ws-status').getAttribute('data-state'), { timeout: 20_000 }).toBe('connected');
    const before = Number(await page.getByTestId('chart-qps').getAttribute('data-points'));
    await expect.poll(async () => Number(await page.getByTestId('chart-qps').getAttribute('data-points')), { timeout: 5_000 }).toBeGreaterThan(before);
    expect(pageErrors).toEqual([]);
  }, 40_000);
});
