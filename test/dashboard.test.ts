/**
 * The dashboard in a real browser (Debian chromium via playwright-core; never a
 * downloaded one): component dots, stop/start buttons, live charts, the
 * playground, reconnect after a control-center restart, screenshots at 1280/390.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChildComponent, createControlCenter, type ControlCenter } from '../ts/control/index.js';
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
