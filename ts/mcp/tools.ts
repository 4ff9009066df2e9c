/**
 * The MCP tools of the memory server (docs/mcp.md): one tool per memory command, its
 * arguments being that command's `data`. The input schemas are the protocol's zod schemas
 * (ts/protocol/memory.ts) turned into JSON Schema, so there is no second copy to drift; the
 * arguments are validated by the command handler itself, with the protocol's messages.
 */
import type { ZodTypeAny } from 'zod';
import { zodToJsonSchema } from 'zod-to-json-schema';
import {
  deleteSchema,
  getSchema,
  listSchema,
  namespacesSchema,
  retrieveSchema,
  storeSingleSchema,
  updateSchema,
  type MemoryCommand,
} from '../protocol/memory.js';

/** The commands the tools call (subscribe/unsubscribe push events, which MCP tools cannot). */
export type ToolCommand = Extract<MemoryCommand, 'store' | 'retrieve' | 'list' | 'get' | 'update' | 'delete' | 'namespaces' | 'stats'>;

export interface ToolAnnotations {
  readOnlyHint?: boolean;
  destructiveHint?: boolean;
  idempotentHint?: boolean;
  openWorldHint?: boolean;
}

export interface MemoryTool {
  name: string;
  title: string;
  command: ToolCommand;
  description: string;
  inputSchema: Record<string, unknown>;
  annotations: ToolAnnotations;
}

/**
 * JSON Schema of the fields the protocol checks by hand (z.custom: a plain loop is faster than
 * zod for a 384-number vector, and objects are passed through uncopied), which therefore have
 * no JSON Schema of their own. Only these names get one, and only where the generated one is empty.
 */
const HAND_CHECKED_FIELDS: Record<string, Record<string, unknown>> = {
  metadata: { type: 'object', description: 'Any JSON object (at most 16 KiB as JSON)' },
  filter: {
    type: 'object',
    description: 'Match on metadata keys (dotted keys reach into nested objects): {"type": "preference"} is equality; operators such as {"n": {"$gte": 3}} as in the protocol',
  },
  embedding: { type: 'array', items: { type: 'number' }, description: "A vector of the server's dimensions" },
};

/** The JSON Schema of a protocol `data` schema, as a tool's input schema. */
export function toolInputSchema(schema: ZodTypeAny): Record<string, unknown> {
  const json = zodToJsonSchema(schema, { target: 'jsonSchema7', $refStrategy: 'none', pipeStrategy: 'input' }) as Record<string, unknown>;
  delete json.$schema;
  const props = (json.properties ?? {}) as Record<string, Record<string, unknown>>;
  for (const [name, prop] of Object.entries(props)) {
    const known = HAND_CHECKED_FIELDS[name];
    if (known && Object.keys(prop).length === 0) props[name] = { ...known };
  }
  return json;
}

const tool = (
  name: string,
  title: string,
  command: ToolCommand,
  schema: ZodTypeAny,
  annotations: ToolAnnotations,
  description: string,
): MemoryTool => ({ name, title, command, description, inputSchema: toolInputSchema(schema), annotations });

/** Every tool, in the order `tools/list` gives them. */
export const MEMORY_TOOLS: readonly MemoryTool[] = [
  tool('add_memory', 'Add a memory', 'store', storeSingleSchema, { readOnlyHint: false, destructiveHint: false, idempotentHint: false }, [
    'Stores a memory: text, optional metadata (a JSON object), significance (0..1), ttl_s, namespace and id.',
    'Replies with its id, significance, timestamp and associated memories. Storing an existing id changes nothing (existing: true).',
  ].join(' ')),
  tool('search_memories', 'Search memories', 'retrieve', retrieveSchema, { readOnlyHint: true }, [
    'Finds memories: with `query`, the most similar by meaning (each with a score);',
    'without it, the most significant. `count` (default 5), `filter` on metadata, `since`/`until` (ISO-8601),',
    '`min_significance`, `min_score`, `namespace`.',
  ].join(' ')),
  tool('list_memories', 'List memories', 'list', listSchema, { readOnlyHint: true }, [
    'Lists the memories of a namespace, oldest first, a page at a time (`limit`, default 100);',
    'pass `next_cursor` of a reply as `cursor` for the next page. Optional metadata `filter`.',
  ].join(' ')),
  tool('get_memory', 'Get a memory', 'get', getSchema, { readOnlyHint: true }, 'Returns one memory by `id` (and `namespace`).'),
  tool('update_memory', 'Update a memory', 'update', updateSchema, { readOnlyHint: false, destructiveHint: true, idempotentHint: true }, [
    "Changes a memory's metadata (replaced whole) and/or significance. Its text and embedding cannot change:",
    'delete it and add it again.',
  ].join(' ')),
  tool('delete_memory', 'Delete memories', 'delete', deleteSchema, { readOnlyHint: false, destructiveHint: true, idempotentHint: true }, [
    'Deletes one memory (`id`), several (`ids`), those matching a metadata `filter`, or every memory of the',
    'namespace (`all: true`). Replies with the count deleted and the ids not found.',
  ].join(' ')),
  tool('list_namespaces', 'List namespaces', 'namespaces', namespacesSchema, { readOnlyHint: true }, 'Lists the namespaces and how many memories each holds.'),
];

const byName = new Map(MEMORY_TOOLS.map((t) => [t.name, t]));

/** The tool of a name, or undefined. */
export function memoryTool(name: string): MemoryTool | undefined {
  return byName.get(name);
}
