// MCP overhead: the latency of one tool call, closed loop (one call at a time, as an assistant
// makes them), against the same command over the WebSocket (MemoryClient) in the same run:
//   ws         MemoryClient.request('get' | 'retrieve') to the memory server
//   mcp-http   the SDK's Client + StreamableHTTPClientTransport → POST /mcp of that server
//   mcp-stdio  the SDK's Client + StdioClientTransport → `memory-server mcp --data-dir` (own store)
// Each call: get_memory of a stored id, and search_memories with a text query (hash embedder).
// Bounded: 50 warm-up calls, then --calls per path and kind (default 1000) or --seconds (default
// 10), whichever first.
//   node bench/bench-mcp.js [--calls 1000] [--seconds 10] [--memories 1000]
import { fileURLToPath } from 'node:url';
import { join, dirname } from 'node:path';
import WebSocket from 'ws';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { MemoryServer } from '../dist/server/memory.js';
import { MemoryClient } from '../dist/client/memory.js';
import { saveResult, tempDir, removeDir, median } from './common.js';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
};
const CALLS = arg('calls', 1000);
const SECONDS = arg('seconds', 10);
const MEMORIES = arg('memories', 1000);
const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli', 'main.js');

const texts = Array.from({ length: MEMORIES }, (_, i) => `memory ${i}: the user mentioned topic ${i % 37} on day ${i % 11}`);
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];

const WARMUP = 50;

/** Runs `once(i)` one at a time, bounded in count and time, after WARMUP unmeasured calls; latencies in ms. */
async function loop(once) {
  for (let i = 0; i < WARMUP; i++) await once(i);
  const lat = [];
  const end = performance.now() + SECONDS * 1000;
  for (let i = 0; i < CALLS && performance.now() < end; i++) {
    const t = performance.now();
    await once(i);
    lat.push(performance.now() - t);
  }
  return { calls: lat.length, median_ms: +median(lat).toFixed(3), p99_ms: +pct(lat, 0.99).toFixed(3) };
}

async function mcpLoops(client, ids) {
  const check = (r) => {
    if (r.isError) throw new Error(r.content[0].text);
  };
  return {
    get: await loop(async (i) => check(await client.callTool({ name: 'get_memory', arguments: { id: ids[i % ids.length] } }))),
    search: await loop(async (i) => check(await client.callTool({ name: 'search_memories', arguments: { query: texts[i % texts.length], count: 5 } }))),
  };
}

async function storeAll(call) {
  const ids = [];
  for (let i = 0; i < texts.length; i += 100) {
    const r = await call(texts.slice(i, i + 100));
    ids.push(...r);
  }
  return ids;
}

const dir = tempDir('bench-mcp-');
const stdioDir = tempDir('bench-mcp-stdio-');
const server = new MemoryServer({ dataDir: dir, host: '127.0.0.1', port: 0, logLevel: 'warn', printListening: false, fsync: 'off' });
const { port } = await server.listen();
const results = {};
try {
  const ws = new MemoryClient({ url: `ws://127.0.0.1:${port}`, WebSocket });
  await ws.connect();
  const ids = await storeAll(async (batch) => (await ws.storeMany(batch)).items.map((x) => x.id));
  results.ws = {
    get: await loop((i) => ws.get(ids[i % ids.length])),
    search: await loop((i) => ws.retrieve({ query: texts[i % texts.length], count: 5 })),
  };
  await ws.close();

  const http = new Client({ name: 'bench', version: '1' });
  await http.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${port}/mcp`)));
  results['mcp-http'] = await mcpLoops(http, ids);
  await http.close();

  const stdio = new Client({ name: 'bench', version: '1' });
  await stdio.connect(new StdioClientTransport({ command: process.execPath, args: [BIN, 'mcp', '--data-dir', stdioDir, '--fsync', 'off', '--log-level', 'warn'] }));
  const stdioIds = await storeAll(async (batch) => {
    const out = [];
    for (const text of batch) out.push((await stdio.callTool({ name: 'add_memory', arguments: { text } })).structuredContent.id);
    return out;
  });
  results['mcp-stdio'] = await mcpLoops(stdio, stdioIds);
  await stdio.close();
} finally {
  await server.close();
  removeDir(dir);
  removeDir(stdioDir);
}

const ratio = (path, kind) => +(results[path][kind].median_ms / results.ws[kind].median_ms).toFixed(2);
saveResult('mcp', {
  what: 'one tool call at a time (closed loop): median and p99 latency per path; ratio = median / the same command over the WebSocket',
  memories: MEMORIES,
  results,
  ratios: {
    'mcp-http/ws get': ratio('mcp-http', 'get'),
    'mcp-http/ws search': ratio('mcp-http', 'search'),
    'mcp-stdio/ws get': ratio('mcp-stdio', 'get'),
    'mcp-stdio/ws search': ratio('mcp-stdio', 'search'),
  },
});
process.exit(0);
