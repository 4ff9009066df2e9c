/**
 * MCP end to end with the official SDK's Client: over streamable HTTP at /mcp of a memory
 * server on port 0, and over stdio against `memory-server mcp` (its own data directory, and
 * `--url` to a running server). Errors included: unknown id, bad input, missing auth → 401.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import { MemoryServer, type MemoryServerOptions } from '../ts/server/memory.js';
import { signJwtHs256 } from '../ts/server/auth.js';
import { connect, httpRequest, silentLogger } from './helpers/ws-client.js';
import { ensureBuilt, root } from './helpers/build-dist.js';

const bin = path.join(root, 'dist/cli/main.js');
const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'memsrv-mcp-'));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function startServer(options: MemoryServerOptions = {}): Promise<{ server: MemoryServer; port: number }> {
  const server = new MemoryServer({
    dataDir: tempDir(),
    host: '127.0.0.1',
    port: 0,
    logger: silentLogger,
    printListening: false,
    closeTimeoutMs: 2_000,
    ...options,
  });
  const info = await server.listen();
  return { server, port: info.port };
}

async function httpClient(port: number, token?: string): Promise<Client> {
  const client = new Client({ name: 'mcp-test', version: '1.0.0' });
  const requestInit = token ? { headers: { Authorization: `Bearer ${token}` } } : undefined;
  await client.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${port}/mcp`), requestInit ? { requestInit } : {}));
  return client;
}

type ToolReply = { isError?: boolean; structuredContent?: any; content: Array<{ type: string; text?: string }> };
const call = (client: Client, name: string, args: Record<string, unknown>): Promise<ToolReply> =>
  client.callTool({ name, arguments: args }) as Promise<ToolReply>;

/** The tool calls every transport must answer alike. */
function toolSuite(name: string, setup: () => Promise<{ client: Client; count: () => Promise<number> }>): void {
  describe(name, () => {
    let client: Client;
    let count: () => Promise<number>;
    beforeAll(async () => {
      ({ client, count } = await setup());
    }, 60_000);

    it('lists the tools, with input schemas from the protocol', async () => {
      const { tools } = await client.listTools();
      expect(tools.map((t) => t.name)).toEqual([
        'add_memory',
        'search_memories',
        'list_memories',
        'get_memory',
        'update_memory',
        'delete_memory',
        'list_namespaces',
      ]);
      const add = tools.find((t) => t.name === 'add_memory')!;
      expect(add.inputSchema).toMatchObject({ type: 'object', required: ['text'], additionalProperties: false });
      expect((add.inputSchema.properties as any).metadata).toMatchObject({ type: 'object' });
      expect((add.inputSchema.properties as any).significance).toMatchObject({ type: 'number', minimum: 0, maximum: 1 });
      const search = tools.find((t) => t.name === 'search_memories')!;
      expect((search.inputSchema.properties as any).count).toMatchObject({ type: 'integer', maximum: 1000, default: 5 });
      expect(search.annotations?.readOnlyHint).toBe(true);
      expect(tools.find((t) => t.name === 'delete_memory')!.annotations?.destructiveHint).toBe(true);
    });

    it('add, search, list, get, update, delete, namespaces', async () => {
      const added = await call(client, 'add_memory', { text: 'The user prefers dark mode', metadata: { type: 'preference' }, namespace: 'mcp' });
      expect(added.isError).toBeFalsy();
      const id = added.structuredContent.id as string;
      expect(added.structuredContent).toMatchObject({ existing: false, stats: { namespace_total: 1 } });
      expect(JSON.parse(added.content[0]!.text!)).toEqual(added.structuredContent);
      await call(client, 'add_memory', { text: 'The meeting is on Tuesday', namespace: 'mcp' });

      const found = await call(client, 'search_memories', { query: 'The user prefers dark mode', namespace: 'mcp', count: 1 });
      expect(found.structuredContent.memories).toHaveLength(1);
      expect(found.structuredContent.memories[0]).toMatchObject({ id, text: 'The user prefers dark mode', namespace: 'mcp' });
      expect(typeof found.structuredContent.memories[0].score).toBe('number');

      const listed = await call(client, 'list_memories', { namespace: 'mcp', limit: 1 });
      expect(listed.structuredContent.memories.map((m: any) => m.id)).toEqual([id]);
      expect(listed.structuredContent.next_cursor).not.toBeNull();

      const got = await call(client, 'get_memory', { id, namespace: 'mcp', include_embeddings: true });
      expect(got.structuredContent).toMatchObject({ id, metadata: { type: 'preference' } });
      expect(Array.isArray(got.structuredContent.embedding)).toBe(true);
      expect(got.structuredContent.embedding.length).toBeGreaterThan(0);

      const updated = await call(client, 'update_memory', { id, namespace: 'mcp', metadata: { type: 'ui' }, significance: 0.9 });
      expect(updated.structuredContent).toMatchObject({ id, metadata: { type: 'ui' }, significance: 0.9 });

      const ns = await call(client, 'list_namespaces', {});
      expect(ns.structuredContent.namespaces).toContainEqual({ name: 'mcp', total_memories: 2 });

      const deleted = await call(client, 'delete_memory', { id, namespace: 'mcp' });
      expect(deleted.structuredContent).toEqual({ deleted: 1, not_found: [] });
      const gone = await call(client, 'get_memory', { id, namespace: 'mcp' });
      expect(gone.isError).toBe(true);
    });

    it('errors: unknown id, bad input, unknown field, unknown tool — nothing stored changes', async () => {
      const before = await count();
      const missing = await call(client, 'get_memory', { id: 'no-such-id' });
      expect(missing).toMatchObject({ isError: true, structuredContent: { code: 'not_found', error: 'Memory not found: no-such-id' } });
      expect(missing.content[0]!.text).toBe('not_found: Memory not found: no-such-id');
      const noText = await call(client, 'add_memory', { metadata: { a: 1 } });
      expect(noText).toMatchObject({ isError: true, structuredContent: { code: 'invalid_request', error: 'data.text: is required' } });
      const unknownField = await call(client, 'add_memory', { text: 'x', colour: 'red' });
      expect(unknownField.structuredContent).toMatchObject({ code: 'invalid_request', error: 'data.colour: unknown field' });
      const badSignificance = await call(client, 'update_memory', { id: 'x', significance: 7 });
      expect(badSignificance.structuredContent.code).toBe('invalid_request');
      expect(badSignificance.structuredContent.error).toMatch(/^data\.significance: /);
      const tooLong = await call(client, 'add_memory', { text: 'x'.repeat(70_000) });
      expect(tooLong.structuredContent.code).toBe('payload_too_large');
      await expect(call(client, 'no_such_tool', {})).rejects.toThrow(/Unknown tool: no_such_tool/);
      expect(await count()).toBe(before);
    });

    it('resources: the stats, global and per namespace', async () => {
      await call(client, 'add_memory', { text: 'a memory for the stats', namespace: 'stats-ns' });
      const { resources } = await client.listResources();
      const uris = resources.map((r) => r.uri);
      expect(uris).toContain('memory://stats');
      expect(uris).toContain('memory://stats/stats-ns');
      const global = await client.readResource({ uri: 'memory://stats' });
      const stats = JSON.parse((global.contents[0] as { text: string }).text);
      expect(stats.total_memories).toBe(await count());
      expect(typeof stats.dims).toBe('number');
      const one = await client.readResource({ uri: 'memory://stats/stats-ns' });
      expect(JSON.parse((one.contents[0] as { text: string }).text)).toMatchObject({ namespace: 'stats-ns', total_memories: 1 });
      await expect(client.readResource({ uri: `memory://stats/${'n'.repeat(300)}` })).rejects.toThrow(/payload_too_large: data\.namespace/);
    });
  });
}

// ---------------------------------------------------------------- streamable HTTP at /mcp

let httpServer: MemoryServer;
let httpPort: number;
beforeAll(async () => {
  ({ server: httpServer, port: httpPort } = await startServer());
});
toolSuite('MCP over streamable HTTP (/mcp)', async () => {
  const client = await httpClient(httpPort);
  return { client, count: async () => httpServer.store.stats().totalMemories };
});
afterAll(async () => {
  await httpServer?.close();
});

describe('/mcp over HTTP', () => {
  it('shares the store with the WebSocket commands', async () => {
    const client = await httpClient(httpPort);
    const added = await call(client, 'add_memory', { text: 'written over MCP', namespace: 'shared' });
    const ws = await connect(`ws://127.0.0.1:${httpPort}`);
    const got = await ws.request('get', { id: added.structuredContent.id, namespace: 'shared' });
    expect(got.data).toMatchObject({ text: 'written over MCP' });
    ws.close();
    await client.close();
  });

  it('tool calls are counted in the server metrics as their commands; over the rate limit a POST gets 429 with Retry-After and runs nothing', async () => {
    const { server, port } = await startServer({ rateLimit: { messagesPerSecond: 0.001, messagesBurst: 4 } });
    try {
      const client = await httpClient(port); // initialize + initialized: two POSTs
      const added = await call(client, 'add_memory', { text: 'counted' });
      expect(added.isError).toBeFalsy();
      expect(server.ws.metrics.byType.get('store')).toMatchObject({ count: 1, errors: 0 });
      const missing = await call(client, 'get_memory', { id: 'no-such-id' });
      expect(missing.isError).toBe(true);
      expect(server.ws.metrics.byType.get('get')).toMatchObject({ count: 1, errors: 1 });
      const before = server.store.stats().totalMemories;
      const body = JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'add_memory', arguments: { text: 'over the limit' } } });
      const r = await fetch(`http://127.0.0.1:${port}/mcp`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body,
      });
      expect(r.status).toBe(429);
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(await r.json()).toMatchObject({ code: 'rate_limited' });
      expect(server.store.stats().totalMemories).toBe(before);
      expect(server.ws.metrics.rateLimited).toBe(1);
      await client.close().catch(() => undefined);
    } finally {
      await server.close();
    }
  });

  it('GET and DELETE are 405 (no SSE stream, no sessions); an oversized body is 413', async () => {
    const get = await fetch(`http://127.0.0.1:${httpPort}/mcp`, { headers: { accept: 'text/event-stream' } });
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');
    expect((await fetch(`http://127.0.0.1:${httpPort}/mcp`, { method: 'DELETE' })).status).toBe(405);
    const big = await fetch(`http://127.0.0.1:${httpPort}/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: 'x'.repeat(httpServer.ws.options.maxFrameBytes + 1),
    });
    expect(big.status).toBe(413);
  });

  it('a foreign Origin or Host (DNS rebinding) is refused with 403 before any tool runs', async () => {
    const before = httpServer.store.stats().totalMemories;
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'add_memory', arguments: { text: 'should not be stored' } } });
    const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18' };
    const origin = await httpRequest(httpPort, 'POST', '/mcp', { ...headers, origin: 'http://evil.example' }, body);
    expect(origin.status).toBe(403);
    expect(JSON.parse(origin.body)).toMatchObject({ status: 'error', error: 'Origin not allowed' });
    const host = await httpRequest(httpPort, 'POST', '/mcp', { ...headers, host: 'evil.example:5000' }, body);
    expect(host.status).toBe(403);
    expect(JSON.parse(host.body)).toMatchObject({ status: 'error', error: 'Host not allowed' });
    const allowed = await httpRequest(httpPort, 'POST', '/mcp', { ...headers, origin: 'http://localhost:3000' }, body);
    expect(allowed.status).toBe(200);
    expect(httpServer.store.stats().totalMemories).toBe(before + 1);
  });

  it('a body that is not JSON-RPC gets a JSON-RPC parse error', async () => {
    const r = await fetch(`http://127.0.0.1:${httpPort}/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: '{not json',
    });
    expect(r.status).toBe(400);
    expect(await r.json()).toMatchObject({ jsonrpc: '2.0', error: { code: -32700 } });
  });

  it('with auth: no token → 401, a token works, a JWT ns claim scopes the tools', async () => {
    const { server, port } = await startServer({ token: 'sekrit', jwtSecret: 'jwt-key' });
    try {
      await expect(httpClient(port)).rejects.toMatchObject({ code: 401, message: expect.stringMatching(/Unauthorized: missing token/) });
      await expect(httpClient(port, 'wrong')).rejects.toMatchObject({ code: 401 });
      const client = await httpClient(port, 'sekrit');
      expect((await call(client, 'add_memory', { text: 'with a token' })).isError).toBeFalsy();
      await client.close();

      const scoped = await httpClient(port, signJwtHs256({ sub: 'agent', ns: ['team'] }, 'jwt-key'));
      expect((await call(scoped, 'add_memory', { text: 'team memory', namespace: 'team' })).isError).toBeFalsy();
      const other = await call(scoped, 'add_memory', { text: 'elsewhere', namespace: 'default' });
      expect(other.structuredContent).toMatchObject({ code: 'invalid_request', error: 'data.namespace: namespace "default" is not allowed for this token' });
      const ns = await call(scoped, 'list_namespaces', {});
      expect(ns.structuredContent.namespaces).toEqual([{ name: 'team', total_memories: 1 }]);
      await scoped.close();
      expect(server.store.count('default')).toBe(1);
    } finally {
      await server.close();
    }
  });
});

// ---------------------------------------------------------------- stdio: memory-server mcp

beforeAll(() => ensureBuilt(), 180_000);

/** Runs the CLI to its end without blocking this process (whose event loop serves the test's servers). */
function runCli(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.stdin.end();
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

interface StdioSession {
  client: Client;
  transport: StdioClientTransport;
  stderr: () => string;
  errors: Error[];
}

async function stdioClient(args: string[], env?: Record<string, string>): Promise<StdioSession> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [bin, 'mcp', ...args],
    stderr: 'pipe',
    ...(env ? { env: { ...getDefaultEnvironment(), ...env } } : {}),
  });
  let stderr = '';
  transport.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
  const client = new Client({ name: 'mcp-test', version: '1.0.0' });
  const errors: Error[] = [];
  await client.connect(transport);
  // After connect: the SDK sets its own handler there; stray non-MCP output on stdout lands here.
  const sdkOnError = transport.onerror;
  transport.onerror = (e) => {
    errors.push(e);
    sdkOnError?.(e);
  };
  return { client, transport, stderr: () => stderr, errors };
}

const stdioDir = tempDir();
const sessions: StdioSession[] = [];
afterAll(async () => {
  for (const s of sessions) await s.client.close().catch(() => undefined);
});

toolSuite('MCP over stdio (memory-server mcp --data-dir)', async () => {
  const s = await stdioClient(['--data-dir', stdioDir, '--log-level', 'info']);
  sessions.push(s);
  const count = async (): Promise<number> => {
    const r = await s.client.readResource({ uri: 'memory://stats' });
    return JSON.parse((r.contents[0] as { text: string }).text).total_memories as number;
  };
  return { client: s.client, count };
});

describe('memory-server mcp', () => {
  it('logs go to stderr, stdout carries only MCP; after the session the process is gone and the memories are on disk', async () => {
    const dir = tempDir();
    const s = await stdioClient(['--data-dir', dir, '--log-level', 'info']);
    const added = await call(s.client, 'add_memory', { text: 'kept across sessions', id: 'keep-1' });
    expect(added.isError).toBeFalsy();
    const pid = s.transport.pid!;
    await s.client.close();
    expect(s.stderr()).toMatch(/mcp: serving on stdio/);
    expect(s.errors).toEqual([]);
    // The process is gone (exit 0 after closing the store): a fresh one can open the directory.
    const again = await stdioClient(['--data-dir', dir]);
    sessions.push(again);
    const got = await call(again.client, 'get_memory', { id: 'keep-1' });
    expect(got.structuredContent).toMatchObject({ id: 'keep-1', text: 'kept across sessions' });
    expect(() => process.kill(pid, 0)).toThrow();
  }, 60_000);

  it('stdin closed at once: exit 0, nothing on stdout', async () => {
    const r = await runCli(['mcp', '--data-dir', tempDir(), '--log-level', 'info']);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/mcp: closing/);
  }, 40_000);

  it('--data-dir ~/… is under the home directory (hosts start the command without a shell)', async () => {
    const home = tempDir();
    const s = await stdioClient(['--data-dir', '~/.memory-server'], { HOME: home });
    sessions.push(s);
    expect((await call(s.client, 'add_memory', { text: 'at home' })).isError).toBeFalsy();
    expect(existsSync(path.join(home, '.memory-server'))).toBe(true);
    expect(existsSync(path.join(root, '~'))).toBe(false);
  }, 60_000);

  it('a data directory in use by a running server: exit 1 naming --url', async () => {
    const { server } = await startServer();
    try {
      const r = await runCli(['mcp', '--data-dir', server.dataDir]);
      expect(r.status).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/locked.*--url ws:\/\//s);
    } finally {
      await server.close();
    }
  }, 40_000);

  it('--url: the tools call the running server (with its token); its errors pass through', async () => {
    const { server, port } = await startServer({ token: 'tok' });
    try {
      const s = await stdioClient(['--url', `ws://127.0.0.1:${port}`, '--token', 'tok']);
      sessions.push(s);
      const added = await call(s.client, 'add_memory', { text: 'through the client', namespace: 'remote' });
      expect(added.isError).toBeFalsy();
      expect(server.store.get('remote', added.structuredContent.id, false)?.text).toBe('through the client');
      const missing = await call(s.client, 'get_memory', { id: 'nope', namespace: 'remote' });
      expect(missing.structuredContent).toMatchObject({ code: 'not_found', error: 'Memory not found: nope' });
      const bad = await call(s.client, 'search_memories', { count: 0 });
      expect(bad.structuredContent.code).toBe('invalid_request');
      const stats = JSON.parse(((await s.client.readResource({ uri: 'memory://stats' })).contents[0] as { text: string }).text);
      expect(stats.total_memories).toBe(1);
      await s.client.close();

      const refused = await runCli(['mcp', '--url', `ws://127.0.0.1:${port}`, '--token', 'wrong']);
      expect(refused.status).toBe(1);
      expect(refused.stdout).toBe('');
      expect(refused.stderr).toMatch(/cannot connect to ws:\/\/127\.0\.0\.1:\d+: .*401/);
    } finally {
      await server.close();
    }
  }, 60_000);

  it('--help names the command and its options', () => {
    const r = spawnSync(process.execPath, [bin, 'mcp', '--help'], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/memory-server mcp --url ws:\/\/HOST:PORT/);
    expect(r.stdout).toMatch(/--data-dir/);
  });
});
