/**
 * Adversarial input at /mcp (raw JSON-RPC over HTTP, no SDK client to tidy it up): every
 * bad request gets a clear error, and nothing stored changes because of it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryServer } from '../../ts/server/memory.js';
import { silentLogger } from '../helpers/ws-client.js';

const dir = mkdtempSync(path.join(tmpdir(), 'memsrv-mcp-hard-'));
let server: MemoryServer;
let url: string;
beforeAll(async () => {
  server = new MemoryServer({ dataDir: dir, host: '127.0.0.1', port: 0, logger: silentLogger, printListening: false, closeTimeoutMs: 2_000 });
  url = `http://127.0.0.1:${(await server.listen()).port}/mcp`;
});
afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

let nextId = 0;
/** POSTs a JSON-RPC body (text as given) and returns the parsed reply. */
async function rpc(body: string): Promise<any> {
  const r = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18' },
    body,
  });
  expect(r.headers.get('content-type')).toMatch(/application\/json/);
  return r.json();
}
const toolCall = (name: string, argsJson: string): Promise<any> =>
  rpc(`{"jsonrpc":"2.0","id":${++nextId},"method":"tools/call","params":{"name":"${name}","arguments":${argsJson}}}`);

describe('/mcp adversarial input', () => {
  it('__proto__, constructor and prototype keys in metadata are stored and returned as data', async () => {
    const added = await toolCall('add_memory', '{"text":"proto","id":"p1","metadata":{"__proto__":{"x":1},"a":1,"constructor":"c"}}');
    expect(added.result.isError).toBeUndefined();
    const got = await toolCall('get_memory', '{"id":"p1"}');
    expect(got.result.content[0].text).toContain('"metadata":{"__proto__":{"x":1},"a":1,"constructor":"c"}');
    expect(Object.keys(JSON.parse(got.result.content[0].text).metadata)).toEqual(['__proto__', 'a', 'constructor']);
  });

  it('an argument named __proto__ is an unknown field, not silently dropped', async () => {
    const r = await toolCall('add_memory', '{"text":"x","__proto__":{"namespace":"elsewhere"}}');
    expect(r.result.structuredContent).toMatchObject({ code: 'invalid_request', error: 'data.__proto__: unknown field' });
  });

  it('too deep, ill-formed Unicode, wrong types, arguments that are not an object: clear errors, nothing stored', async () => {
    const before = server.store.stats().totalMemories;
    const deep = `${'{"a":'.repeat(40)}1${'}'.repeat(40)}`;
    const tooDeep = await toolCall('add_memory', `{"text":"deep","metadata":${deep}}`);
    expect(tooDeep.result.structuredContent.code).toBe('invalid_request');
    expect(tooDeep.result.structuredContent.error).toMatch(/nested deeper than 32 levels/);
    const surrogate = await toolCall('add_memory', '{"text":"bad \\ud800 x"}');
    expect(surrogate.result.structuredContent).toMatchObject({ code: 'invalid_request', error: 'data.text: must be well-formed Unicode (it holds a lone surrogate)' });
    const wrongType = await toolCall('add_memory', '{"text":42}');
    expect(wrongType.result.structuredContent).toMatchObject({ code: 'invalid_request', error: 'data.text: must be a string' });
    const badVector = await toolCall('add_memory', '{"text":"v","embedding":[1,2,3]}');
    expect(badVector.result.structuredContent.error).toMatch(/^data\.embedding: must have \d+ dimensions, got 3$/);
    const notObject = await toolCall('add_memory', '["text"]');
    expect(notObject.error).toMatchObject({ code: -32602 });
    expect(notObject.error.message).toMatch(/Invalid tools\/call request/);
    const deleteEverything = await toolCall('delete_memory', '{"filter":{}}');
    expect(deleteEverything.result.structuredContent.error).toMatch(/^data\.filter: an empty filter deletes everything/);
    expect(server.store.stats().totalMemories).toBe(before);
  });

  it('a JSON-RPC batch is answered per message; a non-JSON-RPC body is a JSON-RPC error', async () => {
    const batch = await rpc(
      '[{"jsonrpc":"2.0","id":101,"method":"tools/call","params":{"name":"get_memory","arguments":{"id":"none"}}},' +
        '{"jsonrpc":"2.0","id":102,"method":"tools/call","params":{"name":"list_namespaces","arguments":{}}}]',
    );
    expect(batch.map((m: any) => m.id).sort()).toEqual([101, 102]);
    expect(batch.find((m: any) => m.id === 101).result.structuredContent.code).toBe('not_found');
    expect(await rpc('{"jsonrpc":"1.0","method":5}')).toMatchObject({ jsonrpc: '2.0', error: { code: -32700 } });
    expect(await rpc('null')).toMatchObject({ jsonrpc: '2.0', error: { code: -32700 } });
  });
});
