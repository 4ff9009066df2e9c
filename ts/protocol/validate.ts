/**
 * Validation of request data for every server: zod failures become protocol errors whose
 * message names the wire field and the rule (`invalid_request`, or `payload_too_large`
 * for strings and lists over their limit; docs/protocol.md "Errors"). Browser-safe.
 */
import { z, type ZodIssue, type ZodType, type ZodTypeDef } from 'zod';
import { ProtocolError } from './errors.js';
import type { Request } from './envelope.js';
import { checkDecoded, printable } from './well-formed.js';

function issuePath(issue: ZodIssue): string {
  return issue.path.length === 0 ? 'data' : issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : p)).join('.').replace(/\.\[/g, '[');
}

/** The ProtocolError for one zod issue: `<field path>: <rule>`. */
export function issueToProtocolError(issue: ZodIssue): ProtocolError {
  const path = issuePath(issue);
  if (issue.code === 'unrecognized_keys') {
    const field = `${path}.${printable(issue.keys[0] ?? '')}`;
    return new ProtocolError('invalid_request', `${field}: unknown field`, { field });
  }
  if (issue.code === 'too_big' && (issue.type === 'string' || issue.type === 'array' || issue.type === 'set')) {
    const unit = issue.type === 'string' ? 'characters' : 'items';
    return new ProtocolError('payload_too_large', `${path}: exceeds the limit of ${String(issue.maximum)} ${unit}`, {
      field: path,
      limit: Number(issue.maximum),
    });
  }
  if (issue.code === 'invalid_type' && issue.received === 'undefined') {
    return new ProtocolError('invalid_request', `${path}: is required`, { field: path });
  }
  return new ProtocolError('invalid_request', `${path}: ${issue.message}`, { field: path });
}

/**
 * Validates a request's `data` against a schema; returns the parsed value or
 * throws ProtocolError. Strings must be well-formed and nesting within MAX_NESTING_DEPTH
 * (well-formed.ts) whatever the schema says. `type` is only used to name the command in the message
 * when `data` itself is missing.
 */
export function parseData<Out, Def extends ZodTypeDef, In>(
  schema: ZodType<Out, Def, In>,
  data: unknown,
  type?: string,
): Out {
  // Also checked per frame by decodeRequest; here too for data that comes another way
  // (commands served over another transport, import files).
  const problem = checkDecoded(data ?? {});
  if (problem) throw new ProtocolError('invalid_request', `${problem.path}: ${problem.rule}`, { field: problem.path });
  const result = schema.safeParse(data ?? {});
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  if (!issue) {
    throw new ProtocolError('invalid_request', `data: invalid${type ? ` for ${type}` : ''}`);
  }
  throw issueToProtocolError(issue);
}

/**
 * Validates `data` against a schema whose field paths are reported under `data.`
 * (`data.text: is required`). Throws ProtocolError (invalid_request / payload_too_large).
 */
export function parseRequestData<Out, Def extends ZodTypeDef, In>(
  schema: ZodType<Out, Def, In>,
  data: unknown,
  type?: string,
): Out {
  // Wrapping costs as much as the parse itself: build each wrapper once.
  let wrapped = wrappedSchemas.get(schema);
  if (!wrapped) {
    wrapped = z.object({ data: schema as ZodType<unknown, ZodTypeDef, unknown> });
    wrappedSchemas.set(schema, wrapped);
  }
  return (parseData(wrapped, { data: data ?? {} }, type) as { data: Out }).data;
}
const wrappedSchemas = new WeakMap<object, ZodType<unknown, ZodTypeDef, unknown>>();

/**
 * Wraps a command table so that a request with fields beside `type`, `id`, `timestamp` and
 * `data` is `invalid_request` naming the first one (e.g. a `namespace` next to `data` would
 * otherwise be ignored and the default namespace used).
 */
export function strictEnvelope<C, H extends (conn: C, request: Request) => unknown>(table: Record<string, H>): Record<string, H> {
  const out: Record<string, H> = {};
  for (const [type, handler] of Object.entries(table)) {
    out[type] = ((conn: C, request: Request) => {
      if (request.extra !== undefined) {
        const field = printable(Object.keys(request.extra)[0] ?? '');
        throw new ProtocolError('invalid_request', `${field}: unknown field (a request has type, id, timestamp and data)`, { field });
      }
      return handler(conn, request);
    }) as H;
  }
  return out;
}
