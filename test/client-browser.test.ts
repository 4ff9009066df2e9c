/**
 * The browser bundle in a real browser (Debian chromium via playwright-core): the page
 * loads dist-style `memory-client.browser.js`, connects to a real memory server (the
 * page's Origin http://127.0.0.1:<port> is allowed by default), stores and retrieves.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { buildBundle, chromiumArgs, CHROMIUM, freshProfileDir, hasChromium, serveStatic } from './helpers/client-browser.js';
import { removeTempDirs, startServers, type TestServers } from './helpers/client-servers.js';

const available = hasChromium();
if (!available) console.warn(`skipping the browser client test: ${CHROMIUM} is missing (apt-get install chromium)`);

describe.skipIf(!available)('memory client in a real browser', () => {
  let t: TestServers;
  let bundle: Awaited<ReturnType<typeof buildBundle>>;
  let site: Awaited<ReturnType<typeof serveStatic>>;
  let profile: ReturnType<typeof freshProfileDir>;
  let browser: BrowserContext;
  let page: Page;

  beforeAll(async () => {
    [t, bundle] = await Promise.all([startServers(), buildBundle()]);
    site = await serveStatic(bundle.file);
    profile = freshProfileDir();
    browser = await chromium.launchPersistentContext(profile.dir, { executablePath: CHROMIUM, headless: true, args: chromiumArgs() });
    page = browser.pages()[0] ?? (await browser.newPage());
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(site.url);
    await page.waitForFunction(() => (window as unknown as { clientReady?: boolean }).clientReady === true, undefined, { timeout: 15_000 });
    expect(errors).toEqual([]);
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await site?.close();
    await t?.stop();
    bundle?.cleanup();
    profile?.cleanup();
    removeTempDirs();
  });

  it('stores, retrieves, searches and receives events with the global WebSocket (JSON and MessagePack)', async () => {
    const result = await page.evaluate(
      async ({ memoryUrl, inferenceUrl }) => {
        const { MemoryClient, InferenceClient, ClientError } = (window as any).memoryClient;
        const states: string[] = [];
        const m = new MemoryClient({ url: memoryUrl, namespace: 'browser' });
        m.on('state', (s: string) => states.push(s));
        const events: string[] = [];
        await m.subscribe(['memory_added'], (e: { memory: { id: string } }) => events.push(e.memory.id));
        const stored = await m.store('Remember the milk from the browser', { metadata: { type: 'todo' } });
        const second = await m.store({ text: 'A very important browser memory', significance: 0.95 });
        const top = await m.retrieve(5, 0.7);
        const semantic = await m.search('milk', { count: 1 });
        let notFound = '';
        try {
          await m.get('does-not-exist');
        } catch (e) {
          notFound = e instanceof ClientError ? (e as { code: string }).code : 'wrong error type';
        }
        const stats = await m.stats({ namespace: 'browser' });
        for (let i = 0; i < 100 && events.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
        await m.close();

        const inf = new InferenceClient({ url: inferenceUrl, binary: true });
        const emb = await inf.embeddings(['one', 'two']);
        await inf.close();
        const mb = new MemoryClient({ url: memoryUrl, namespace: 'browser', binary: true });
        const got = await mb.get(stored.id, { include_embeddings: true });
        await mb.close();
        return {
          storedId: stored.id,
          existing: stored.existing,
          secondId: second.id,
          topIds: top.memories.map((x: { id: string }) => x.id),
          topSignificances: top.memories.map((x: { significance: number }) => x.significance),
          semanticFirst: semantic.memories[0]?.id,
          hasScore: typeof semantic.memories[0]?.score === 'number',
          notFound,
          total: stats.total_memories,
          events,
          states,
          embIsF32: emb.embeddings.every((e: unknown) => e instanceof Float32Array),
          embDims: emb.embeddings[0].length,
          gotEmbeddingIsF32: got.embedding instanceof Float32Array,
          uuid: /^[0-9a-f-]{36}$/.test(stored.id),
        };
      },
      { memoryUrl: t.memoryUrl, inferenceUrl: t.inferenceUrl },
    );
    expect(result.uuid).toBe(true);
    expect(result.existing).toBe(false);
    expect(result.topIds).toContain(result.secondId);
    for (const s of result.topSignificances) expect(s).toBeGreaterThanOrEqual(0.7);
    expect(result.semanticFirst).toBe(result.storedId);
    expect(result.hasScore).toBe(true);
    expect(result.notFound).toBe('not_found');
    expect(result.total).toBe(2);
    expect(result.events).toEqual([result.storedId, result.secondId]);
    expect(result.states).toEqual(['connecting', 'open', 'closed']);
    expect(result.embIsF32).toBe(true);
    expect(result.embDims).toBe(384);
    expect(result.gotEmbeddingIsF32).toBe(true);

    // What the browser stored is on the server.
    const stored = t.servers.memory!.store.get('browser', result.storedId, false);
    expect(stored?.text).toBe('Remember the milk from the browser');
  });

  it('the page origin is allowed; the bundle pulls in no Node built-ins', async () => {
    const origin = await page.evaluate(() => location.origin);
    expect(origin).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const { readFileSync } = await import('node:fs');
    const code = readFileSync(bundle.file, 'utf8');
    expect(code).not.toMatch(/from ["']node:|require\(["'](?:node:)?(?:fs|net|http|crypto|events|buffer)["']\)/);
  });
});
