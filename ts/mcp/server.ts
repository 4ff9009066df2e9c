/**
 * The MCP server of the memory server (docs/mcp.md), on the official SDK: the tools of
 * tools.ts, each calling one memory command through a MemoryBackend, and the stats as
 * resources (`memory://stats`, `memory://stats/{namespace}`). The same server runs over
 * stdio (`memory-server mcp`) and over streamable HTTP (`/mcp` on the memory server).
 */
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import { ErrorCode, ListToolsRequestSchema, McpError, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv';
import { z } from 'zod/v4';
import { VERSION } from '../version.js';
import { CommandError, type MemoryBackend } from './backend.js';
import { MEMORY_TOOLS, memoryTool } from './tools.js';

export const STATS_URI = 'memory://stats';
const STATS_TEMPLATE = 'memory://stats/{namespace}';

/**
 * `tools/call` as the handler is registered with: only the method. The SDK's Server checks the
 * request against the full schema itself, answering invalid params (-32602) for, e.g.,
 * arguments that are not an object; registered with the full schema, the same request would
 * fail an earlier parse and be answered as an internal error (-32603).
 */
const ToolCallRequest = z.object({
  method: z.literal('tools/call'),
  // Not z.record: that would copy the arguments, and a copy made by assignment loses a `__proto__` key.
  params: z.object({ name: z.string(), arguments: z.unknown() }).passthrough(),
});

const INSTRUCTIONS = [
  'A durable semantic memory. Save what is worth remembering with add_memory (short, self-contained texts;',
  'metadata for structure), and look things up with search_memories (query by meaning).',
  'Memories live in namespaces ("default" unless given).',
].join(' ');

/** JSON text of a reply; vectors (Float32Array) as number arrays. */
function replyJson(reply: unknown): string {
  return JSON.stringify(reply, (_key, value: unknown) => (value instanceof Float32Array ? Array.from(value) : value));
}

/** A tool's result: the reply as JSON text and as structured content. */
function toolResult(reply: unknown): CallToolResult {
  const text = replyJson(reply ?? {});
  const parsed = JSON.parse(text) as unknown;
  const structured = parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : { result: parsed };
  return { content: [{ type: 'text', text }], structuredContent: structured };
}

/** A failed command as a tool error: `code: message`, and the same as structured content. */
function toolError(err: CommandError): CallToolResult {
  const { code, message, data } = err.failure;
  const structured: Record<string, unknown> = { code, error: message };
  if (data !== undefined) structured.data = data;
  return { isError: true, content: [{ type: 'text', text: `${code}: ${message}` }], structuredContent: structured };
}

/** A failed resource read: a JSON-RPC error (resources have no error result), invalid params for bad input. */
function resourceError(err: unknown): never {
  if (!(err instanceof CommandError)) throw err;
  const { code, message } = err.failure;
  const rpcCode = code === 'invalid_request' || code === 'payload_too_large' ? ErrorCode.InvalidParams : ErrorCode.InternalError;
  throw new McpError(rpcCode, `${code}: ${message}`, { code });
}

async function statsContents(backend: MemoryBackend, uri: string, namespace: string | undefined) {
  try {
    const reply = await backend.call('stats', namespace === undefined ? undefined : { namespace });
    return { contents: [{ uri, mimeType: 'application/json', text: replyJson(reply) }] };
  } catch (err) {
    return resourceError(err);
  }
}

/**
 * One JSON Schema validator for every server made here: /mcp makes a server per request, and
 * each would otherwise build its own Ajv instance (the larger part of making one).
 */
let validator: AjvJsonSchemaValidator | null = null;

/** An MCP server whose tools and resources call `backend`; connect it to a transport. */
export function createMemoryMcpServer(backend: MemoryBackend): McpServer {
  validator ??= new AjvJsonSchemaValidator();
  const mcp = new McpServer(
    { name: 'memory-server', title: 'memory-server', version: VERSION },
    { instructions: INSTRUCTIONS, jsonSchemaValidator: validator },
  );

  // Tools are served through the low-level handlers rather than registerTool: the SDK would
  // validate the arguments with the zod schema itself, before the command, with messages of
  // its own; here the command handler is the one validator, as for every other interface.
  mcp.server.registerCapabilities({ tools: { listChanged: false } });
  mcp.server.setRequestHandler(ListToolsRequestSchema, () => ({
    tools: MEMORY_TOOLS.map((t) => ({
      name: t.name,
      title: t.title,
      description: t.description,
      inputSchema: t.inputSchema as { type: 'object' },
      annotations: { title: t.title, ...t.annotations },
    })),
  }));
  mcp.server.setRequestHandler(ToolCallRequest, async (request) => {
    const tool = memoryTool(request.params.name);
    if (!tool) throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${request.params.name}`);
    try {
      // An object by now: the SDK's Server checked the request against the full schema.
      const args = (request.params.arguments ?? {}) as Record<string, unknown>;
      return toolResult(await backend.call(tool.command, args));
    } catch (err) {
      if (err instanceof CommandError) return toolError(err);
      throw err;
    }
  });

  mcp.registerResource(
    'stats',
    STATS_URI,
    { title: 'Memory store statistics', description: 'Counts, storage, model and server figures (the `stats` command)', mimeType: 'application/json' },
    (uri) => statsContents(backend, uri.href, undefined),
  );
  const perNamespace = new ResourceTemplate(STATS_TEMPLATE, {
    list: async () => {
      let reply: { namespaces: Array<{ name: string }> };
      try {
        reply = (await backend.call('namespaces', {})) as typeof reply;
      } catch (err) {
        return resourceError(err);
      }
      return {
        resources: reply.namespaces.map((n) => ({
          uri: `memory://stats/${encodeURIComponent(n.name)}`,
          name: `stats of ${n.name}`,
          mimeType: 'application/json',
        })),
      };
    },
  });
  mcp.registerResource(
    'namespace-stats',
    perNamespace,
    { title: 'Statistics of one namespace', description: 'The `stats` command for one namespace', mimeType: 'application/json' },
    (uri, variables) => {
      const raw = variables.namespace;
      let name: string;
      try {
        name = decodeURIComponent(Array.isArray(raw) ? (raw[0] ?? '') : (raw ?? ''));
      } catch {
        throw new McpError(ErrorCode.InvalidParams, `invalid_request: ${uri.href}: the namespace is not valid percent-encoding`, { code: 'invalid_request' });
      }
      return statsContents(backend, uri.href, name);
    },
  );
  return mcp;
}
